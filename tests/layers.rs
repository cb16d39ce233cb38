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
            "error",
            "iam",
            "layout",
            "limits",
            "output",
            "progress",
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
    ("sinks and sources of bytes", &["upload", "store", "target", "download"]),
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

/// Expands a use tree (`a::{b, c::{d}}`, `self`) into paths.
fn expand(tree: &str) -> Vec<Vec<String>> {
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
            .map(|tail| {
                let mut p = prefix.clone();
                p.extend(tail.into_iter().filter(|s| s != "self"));
                p
            })
            .collect();
    }
    let path: Vec<String> = tree
        .split(" as ")
        .next()
        .unwrap()
        .split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "self")
        .map(String::from)
        .collect();
    vec![path]
}

/// Every `crate::` and `super::` path in a file's non-test code, as absolute module paths.
fn references(file: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(file).unwrap();
    let code = text.split("#[cfg(test)]").next().unwrap();
    let me = module_path(file);
    let is_mod_rs = file.ends_with("mod.rs");
    let mut out = Vec::new();
    for (root, base) in [
        ("crate::", Vec::new()),
        ("super::", {
            let mut parent = me.clone();
            if !is_mod_rs || !parent.is_empty() {
                parent.pop();
            }
            parent
        }),
    ] {
        for (at, _) in code.match_indices(root) {
            // Not part of a longer path (`my_crate::`) and not in a comment.
            let before = &code[..at];
            if before.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let line = before.rsplit('\n').next().unwrap_or("");
            if line.contains("//") {
                continue;
            }
            let rest = &code[at + root.len()..];
            let end = if rest.starts_with('{') {
                let mut depth = 0;
                rest.char_indices()
                    .find(|(_, c)| {
                        match c {
                            '{' => depth += 1,
                            '}' => depth -= 1,
                            _ => {}
                        }
                        depth == 0
                    })
                    .map_or(rest.len(), |(i, _)| i + 1)
            } else {
                let path_end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(rest.len());
                if rest[path_end..].starts_with('{') {
                    let mut depth = 0;
                    rest[path_end..]
                        .char_indices()
                        .find(|(_, c)| {
                            match c {
                                '{' => depth += 1,
                                '}' => depth -= 1,
                                _ => {}
                            }
                            depth == 0
                        })
                        .map_or(rest.len(), |(i, _)| path_end + i + 1)
                } else {
                    path_end
                }
            };
            for tail in expand(rest[..end].trim_end_matches(':')) {
                let mut path = base.clone();
                path.extend(tail);
                out.push(path);
            }
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
    let mut edges = 0;
    for file in &files {
        let me = module_path(file);
        for path in references(file) {
            if path.is_empty() || !tops.contains(&path[0]) {
                continue;
            }
            let to = node_of(&path);
            if to == me || (me.len() > 1 && to == me[..1]) {
                continue; // itself, or its own folder module's re-exports
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
            .contains(&vec!["ops".to_string(), "claim".to_string()]),
        "the parser misses `use crate::ops::{{self, claim, ...}}`"
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
    assert_eq!(
        expand("{ops::{self, claim}, output as out, s3}"),
        vec![
            vec!["ops".to_string()],
            vec!["ops".into(), "claim".into()],
            vec!["output".into()],
            vec!["s3".into()],
        ]
    );
}
