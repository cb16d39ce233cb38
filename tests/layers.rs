//! The module graph has layers (README, "Layers"): a module uses only modules of its own layer
//! or below, no command uses another command, and no module reaches itself through others.
//! `LAYERS` is the README's table in code: a new module must be placed in it. Read from the
//! source (test code excluded), so the check fails the moment an upward `use` is added.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom first.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaves: limits, rules, formats and output, no network",
        &[
            "backmon",
            "cli",
            "clock",
            "compress",
            "crypt",
            "error",
            "iam",
            "layout",
            "limits",
            "output",
            "progress",
            "record",
            "retention",
            "signals",
        ],
    ),
    (
        "the database side: connection strings, preflight, pg_dump, child processes, the script reader",
        &["source", "sql_script"],
    ),
    ("flags to validated configuration, and GitHub Actions I/O", &["config", "action"]),
    ("credentials", &["auth"]),
    ("the S3 client", &["s3"]),
    (
        "sinks and sources of bytes, and the health-check pings",
        &["upload", "store", "target", "download", "ping"],
    ),
    ("operations and what they report", &["ops", "report"]),
    ("commands", &["commands"]),
];

/// A file's module path: `src/ops/backup.rs` is `ops::backup`, `src/config/mod.rs` `config`.
fn module_path(file: &Path) -> Vec<String> {
    let rel = file
        .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
        .unwrap();
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Expands a use tree (`a::{b, c::{d}}`, `self`, `x as y`, `*`) into paths, each with the name
/// it is known by in the file (its last segment, or its rename; `*` for a glob).
fn expand(tree: &str) -> Vec<(Vec<String>, String)> {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let prefix: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let inner = &tree[open + 1..tree.rfind('}').unwrap()];
        let (mut depth, mut start, mut items) = (0, 0, Vec::new());
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&inner[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        items.push(&inner[start..]);
        return items
            .into_iter()
            .filter(|i| !i.trim().is_empty())
            .flat_map(expand)
            .map(|(tail, name)| {
                let mut p = prefix.clone();
                p.extend(tail);
                // `self` names the prefix itself.
                let name = if name == "self" {
                    prefix.last().cloned().unwrap_or_default()
                } else {
                    name
                };
                (p, name)
            })
            .collect();
    }
    let (path, rename) = match tree.split_once(" as ") {
        Some((path, rename)) => (path, Some(rename.trim().to_string())),
        None => (tree, None),
    };
    let segments: Vec<String> = path
        .split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let last = segments.last().cloned().unwrap_or_default();
    let path: Vec<String> = segments.into_iter().filter(|s| s != "self").collect();
    vec![(path, rename.unwrap_or(last))]
}

/// At `b[i]`, the start of `r"`, `r#"`, `b"`, `br"` or `br#"` (not the end of an identifier):
/// where its text begins, whether it is raw, and its number of `#`.
fn literal_prefix(b: &[char], i: usize) -> Option<(usize, bool, usize)> {
    if i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_') {
        return None;
    }
    let mut k = i;
    if b.get(k) == Some(&'b') {
        k += 1;
    }
    let raw = b.get(k) == Some(&'r');
    if raw {
        k += 1;
    }
    if k == i {
        return None;
    }
    let mut hashes = 0;
    while raw && b.get(k) == Some(&'#') {
        hashes += 1;
        k += 1;
    }
    (b.get(k) == Some(&'"')).then_some((k + 1, raw, hashes))
}

/// The length of the `{ ... }` group `text` starts with, braces balanced (all of `text` if it
/// never closes).
fn group_len(text: &str) -> usize {
    let mut depth = 0;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    text.len()
}

/// The code of a file without comments, string and char literals (emptied), and
/// `#[cfg(test)] mod ... { }` blocks: what the compiler builds outside tests.
fn code_of(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let at = |k: usize| b.get(k).copied().unwrap_or('\0');
        match b[i] {
            '/' if at(i + 1) == '/' => {
                while i < b.len() && b[i] != '\n' {
                    i += 1;
                }
            }
            '/' if at(i + 1) == '*' => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == '/' && at(i + 1) == '*' {
                        depth += 1;
                        i += 2;
                    } else if b[i] == '*' && at(i + 1) == '/' {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(' ');
            }
            'r' | 'b' if literal_prefix(&b, i).is_some() => {
                // r"..", r#".."#, b"..", br"..": skip to the matching close.
                let (mut k, raw, hashes) = literal_prefix(&b, i).unwrap();
                loop {
                    match b.get(k) {
                        None => break,
                        Some('\\') if !raw => k += 2,
                        Some('"') if (1..=hashes).all(|h| b.get(k + h) == Some(&'#')) => {
                            k += 1 + hashes;
                            break;
                        }
                        _ => k += 1,
                    }
                }
                out.push_str("\"\"");
                i = k;
            }
            '"' => {
                i += 1;
                while i < b.len() && b[i] != '"' {
                    i += if b[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            // A char literal ('x', '\'', '\u{..}'), not a lifetime ('a).
            '\'' if at(i + 1) == '\\' || at(i + 2) == '\'' => {
                i += 1;
                while i < b.len() && b[i] != '\'' {
                    i += if b[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("' '");
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    // Test modules, with their braces.
    while let Some(at) = out.find("#[cfg(test)]") {
        let after = &out[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let Some(open) = trimmed
            .strip_prefix("mod ")
            .and_then(|m| m.find('{').filter(|o| !m[..*o].contains(';')))
        else {
            // Another test-only item: kept as code (stricter, never laxer).
            out.replace_range(at..at + "#[cfg(test)]".len(), "");
            continue;
        };
        let start = at + "#[cfg(test)]".len() + (after.len() - trimmed.len()) + 4 + open;
        let end = start + group_len(&out[start..]);
        out.replace_range(at..end, "");
    }
    out
}

/// Every `crate::` and `super::` path in a file's non-test code, as absolute module paths, and
/// every path written through a module imported by name (`use crate::ops; ops::claim::x`).
/// Panics on what would hide a path: a glob import of this crate's modules, an alias of the
/// crate root.
fn references(file: &Path, modules: &BTreeSet<Vec<String>>) -> Vec<Vec<String>> {
    let code = code_of(&std::fs::read_to_string(file).unwrap());
    let me = module_path(file);
    let mut aliases: Vec<(String, Vec<String>)> = Vec::new();
    let mut out = Vec::new();
    for root in ["crate::", "super::"] {
        for (at, _) in code.match_indices(root) {
            // Not part of a longer path (`my_crate::`, `self::super::`).
            let before = &code[..at];
            if before.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let mut rest = &code[at + root.len()..];
            let mut base = if root == "crate::" {
                Vec::new()
            } else {
                let mut parent = me.clone();
                parent.pop();
                parent
            };
            // `super::super::...`
            while let Some(more) = rest.strip_prefix("super::") {
                base.pop();
                rest = more;
            }
            let path_end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let end = if rest[path_end..].starts_with('{') {
                path_end + group_len(&rest[path_end..])
            } else {
                path_end
            };
            let tree = rest[..end].trim_end_matches(':');
            let glob_follows = rest[end..].trim_start().starts_with('*');
            assert!(
                !glob_follows && !tree.contains('*'),
                "{} imports a glob of this crate's modules (`{root}{tree}*`): name what it uses",
                file.display()
            );
            for (tail, name) in expand(tree) {
                let mut path = base.clone();
                path.extend(tail);
                assert!(
                    !path.is_empty() || name.is_empty() || root == "super::",
                    "{} aliases the crate root as `{name}`",
                    file.display()
                );
                if modules.contains(&path) && !name.is_empty() {
                    aliases.push((name, path.clone()));
                }
                out.push(path);
            }
        }
    }
    // Paths through a module imported by name.
    for (name, module) in &aliases {
        for (at, _) in code.match_indices(&format!("{name}::")) {
            let before = &code[..at];
            if before.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest = &code[at + name.len() + 2..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let mut path = module.clone();
            path.extend(
                rest[..end]
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
            out.push(path);
        }
    }
    out
}

fn layer_of(top: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&top))
}

#[test]
fn modules_use_only_their_layer_and_below_and_no_module_reaches_itself() {
    let files: Vec<_> = crate::support::source_files()
        .into_iter()
        .filter(|f| !f.ends_with("src/lib.rs") && !f.ends_with("src/main.rs"))
        .collect();
    let tops: BTreeSet<String> = files.iter().map(|f| module_path(f)[0].clone()).collect();
    let placed: BTreeSet<String> = LAYERS
        .iter()
        .flat_map(|(_, m)| m.iter().map(|s| s.to_string()))
        .collect();
    assert_eq!(
        tops, placed,
        "every module in src/ is placed in LAYERS, and only those"
    );
    // Nodes: a folder module's submodules each, so that `ops::backup` -> `ops::claim` is an edge.
    let nodes: BTreeSet<Vec<String>> = files.iter().map(|f| module_path(f)).collect();
    let node_of = |path: &[String]| -> Vec<String> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| nodes.contains(p))
            .unwrap_or_else(|| path[..1].to_vec())
    };
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut upward = Vec::new();
    // The crate root and the commands folder only declare modules: a re-export there would be
    // a way around the layers (`crate::run_prune`, `crate::commands::prune_run`).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for decl in [root.join("lib.rs"), root.join("commands/mod.rs")] {
        let code = code_of(&std::fs::read_to_string(&decl).unwrap());
        for line in code.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let is_decl = line
                .strip_prefix("pub ")
                .unwrap_or(line)
                .strip_prefix("mod ")
                .and_then(|m| m.strip_suffix(';'))
                .is_some_and(|m| m.chars().all(|c| c.is_alphanumeric() || c == '_'));
            assert!(
                is_decl,
                "{} does more than declare modules: {line}",
                decl.display()
            );
        }
    }
    let mut edges = 0;
    for file in &files {
        let me = module_path(file);
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        // An alias of the crate root (`use crate as root;`, `crate::{self as root}`) would hide
        // every path written through it.
        let flat = code.split_whitespace().collect::<Vec<_>>().join(" ");
        let aliased = flat.contains("crate as ") || flat.contains("extern crate");
        assert!(!aliased, "{} aliases the crate root", file.display());
        for path in references(file, &nodes) {
            if path.is_empty() || !tops.contains(&path[0]) {
                continue;
            }
            let to = node_of(&path);
            if to == me {
                continue;
            }
            edges += 1;
            let (from_layer, to_layer) = (layer_of(&me[0]).unwrap(), layer_of(&to[0]).unwrap());
            if to_layer > from_layer {
                upward.push(format!(
                    "{} (layer `{}`) uses {} (layer `{}`)",
                    me.join("::"),
                    LAYERS[from_layer].0,
                    to.join("::"),
                    LAYERS[to_layer].0
                ));
            }
            if me[0] == "commands" && to[0] == "commands" && to.len() > 1 {
                upward.push(format!(
                    "command {} uses command {}",
                    me.join("::"),
                    to.join("::")
                ));
            }
            graph.entry(me.clone()).or_default().insert(to);
        }
    }
    // The parser must see the graph, or the check would pass on nothing.
    assert!(edges > 100, "only {edges} uses found: the parser is broken");
    assert!(
        graph[&vec!["commands".to_string(), "backup".to_string()]]
            .contains(&vec!["ops".to_string(), "backup".to_string()]),
        "the parser misses paths through a module imported by name (`ops::backup::store`)"
    );
    assert!(
        upward.is_empty(),
        "uses against the layers:\n{}",
        upward.join("\n")
    );
    // No cycle, at the level of files (a folder module's mod.rs and each submodule).
    fn visit(
        n: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        stack: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let cycle: Vec<String> = stack[i..].iter().chain([n]).map(|p| p.join("::")).collect();
            panic!("import cycle: {}", cycle.join(" -> "));
        }
        if !done.insert(n.clone()) {
            return;
        }
        stack.push(n.clone());
        for m in graph.get(n).into_iter().flatten() {
            visit(m, graph, stack, done);
        }
        stack.pop();
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        visit(n, &graph, &mut Vec::new(), &mut done);
    }
}

#[test]
fn the_use_tree_reader_sees_nested_groups_and_renames() {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        expand("{ops::{self, claim}, output as out, s3}"),
        vec![
            (v(&["ops"]), "ops".to_string()),
            (v(&["ops", "claim"]), "claim".into()),
            (v(&["output"]), "out".into()),
            (v(&["s3"]), "s3".into()),
        ]
    );
    assert_eq!(expand("{self as root}"), vec![(v(&[]), "root".to_string())]);
}
