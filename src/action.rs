//! GitHub Actions I/O: the action's inputs (`INPUT_*`) turned into the same flags the CLI takes,
//! secret masks before any other output, `::group::` and `::error::` lines, outputs in
//! `$GITHUB_OUTPUT` and a Markdown job summary. Nothing here runs outside Actions.

use crate::error::usage;
use anyhow::{Context, Result};
use std::io::Write;

/// How an input becomes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `--flag=value`.
    Value,
    /// `true` adds `--flag`; `false` adds nothing.
    Switch,
    /// One `--flag=line` per non-empty line.
    Lines,
}

/// Every input action.yml declares, and the flag it fills. This table is the only place that
/// reads `INPUT_*`; a test checks it against action.yml both ways.
pub const INPUTS: &[(&str, &str, Kind)] = &[
    ("database-url", "--database-url", Kind::Value),
    ("bucket", "--bucket", Kind::Value),
    ("prefix", "--prefix", Kind::Value),
    ("aws-region", "--region", Kind::Value),
    ("role-to-assume", "--role-to-assume", Kind::Value),
    ("role-session-name", "--role-session-name", Kind::Value),
    (
        "role-duration-seconds",
        "--role-duration-seconds",
        Kind::Value,
    ),
    ("audience", "--audience", Kind::Value),
    ("endpoint-url", "--endpoint-url", Kind::Value),
    ("force-path-style", "--force-path-style", Kind::Switch),
    ("keep-last", "--keep-last", Kind::Value),
    ("keep-hourly", "--keep-hourly", Kind::Value),
    ("keep-daily", "--keep-daily", Kind::Value),
    ("keep-weekly", "--keep-weekly", Kind::Value),
    ("keep-monthly", "--keep-monthly", Kind::Value),
    ("keep-yearly", "--keep-yearly", Kind::Value),
    ("keep-within", "--keep-within", Kind::Value),
    ("compression-level", "--compression-level", Kind::Value),
    ("format", "--format", Kind::Value),
    ("pg-dump-args", "--pg-dump-arg", Kind::Lines),
    ("storage-class", "--storage-class", Kind::Value),
    ("sse", "--sse", Kind::Value),
    ("sse-kms-key-id", "--sse-kms-key-id", Kind::Value),
    ("dry-run", "--dry-run", Kind::Switch),
];

/// Every output action.yml declares; `write_outputs` writes each of them.
pub const OUTPUTS: &[&str] = &[
    "key",
    "uri",
    "size",
    "raw-size",
    "sha256",
    "duration-seconds",
    "pruned-count",
];

/// Environment variables whose values are secrets wherever they are set.
const SECRET_ENV: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "PGPASSWORD",
];

/// True when running inside a GitHub Actions job.
pub fn in_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// The runner's variable for an input: uppercased, spaces to underscores, hyphens kept.
pub fn input_var(name: &str) -> String {
    format!("INPUT_{}", name.to_uppercase().replace(' ', "_"))
}

/// Adds flags for the inputs the runner set to `args` (the process arguments) for `backup`.
/// Empty inputs mean "not set"; a flag already on the command line wins.
pub fn with_inputs(mut args: Vec<String>) -> Result<Vec<String>> {
    if !in_actions() || args.get(1).map(String::as_str) != Some("backup") {
        return Ok(args);
    }
    for (name, flag, kind) in INPUTS {
        let value = std::env::var(input_var(name)).unwrap_or_default();
        let value = value.trim();
        let given = args
            .iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")));
        if value.is_empty() || given {
            continue;
        }
        match kind {
            Kind::Value => args.push(format!("{flag}={value}")),
            Kind::Switch => match value.to_ascii_lowercase().as_str() {
                "true" => args.push(flag.to_string()),
                "false" => {}
                _ => return Err(usage!("input `{name}` is `{value}`: use true or false")),
            },
            Kind::Lines => args.extend(
                value
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|l| format!("{flag}={l}")),
            ),
        }
    }
    Ok(args)
}

/// Masks every secret known at start, before anything else is printed: the database password
/// (from `--database-url`, the input, or DATABASE_URL / PGPASSWORD) and the secret environment
/// variables. Secrets obtained later (ID tokens, STS credentials) are masked when they arrive.
pub fn mask_known_secrets(args: &[String]) {
    if !in_actions() {
        return;
    }
    let from_args =
        args.iter()
            .enumerate()
            .find_map(|(i, a)| match a.strip_prefix("--database-url") {
                Some("") => args.get(i + 1).cloned(),
                Some(rest) => rest.strip_prefix('=').map(String::from),
                None => None,
            });
    let urls = [
        from_args,
        std::env::var(input_var("database-url")).ok(),
        std::env::var("DATABASE_URL").ok(),
    ];
    for url in urls.iter().flatten() {
        if let Ok(info) = crate::source::conninfo::ConnInfo::parse(Some(url)) {
            info.password().map(mask);
        }
    }
    for var in SECRET_ENV {
        if let Ok(v) = std::env::var(var) {
            mask(&v);
        }
    }
}

/// Asks the runner to mask `secret` in every log line from now on (`::add-mask::`). A no-op
/// outside Actions and for empty values.
pub fn mask(secret: &str) {
    if in_actions() && !secret.trim().is_empty() {
        // The runner masks each line of a multi-line value separately.
        for line in secret.lines().filter(|l| !l.trim().is_empty()) {
            println!("::add-mask::{line}");
        }
    }
}

/// Starts a collapsible log group; ends the previous one.
pub fn group(title: &str) {
    if in_actions() {
        println!("::endgroup::");
        println!("::group::{title}");
    }
}

pub fn end_group() {
    if in_actions() {
        println!("::endgroup::");
    }
}

/// An `::error::` annotation with the one-line cause and fix.
pub fn error(message: &str) {
    if in_actions() {
        println!("::endgroup::");
        println!("::error::{}", escape(message));
        let _ = write_summary(&format!("### PostgreSQL backup failed\n\n{message}\n"));
    }
}

/// Workflow-command data escaping (`%`, CR, LF).
fn escape(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Appends `name=value` pairs to `$GITHUB_OUTPUT` in the multi-line delimiter form, which is
/// safe for any value.
pub fn write_outputs(pairs: &[(&str, String)]) -> Result<()> {
    let Ok(path) = std::env::var("GITHUB_OUTPUT") else {
        return Ok(());
    };
    let mut text = String::new();
    for (name, value) in pairs {
        let mut delimiter = format!("ghadelimiter_{}", unique_suffix());
        while value.contains(&delimiter) {
            delimiter.push('_');
        }
        text.push_str(&format!("{name}<<{delimiter}\n{value}\n{delimiter}\n"));
    }
    append(&path, &text).context("writing $GITHUB_OUTPUT")
}

/// Appends Markdown to the job summary.
pub fn write_summary(markdown: &str) -> Result<()> {
    match std::env::var("GITHUB_STEP_SUMMARY") {
        Ok(path) => append(&path, markdown).context("writing $GITHUB_STEP_SUMMARY"),
        Err(_) => Ok(()),
    }
}

fn append(path: &str, text: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", nanos, std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_variable_names_follow_the_runner() {
        assert_eq!(input_var("database-url"), "INPUT_DATABASE-URL");
        assert_eq!(input_var("keep within"), "INPUT_KEEP_WITHIN");
    }

    #[test]
    fn escaping_keeps_annotations_on_one_line() {
        assert_eq!(escape("50% done\r\nnext"), "50%25 done%0D%0Anext");
    }
}
