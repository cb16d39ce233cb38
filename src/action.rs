//! GitHub Actions I/O: the action's inputs (`INPUT_*`) turned into the same flags the CLI takes,
//! secret masks before any other output, outputs in `$GITHUB_OUTPUT` and a Markdown job summary.
//! The lines themselves are printed by `output`. Nothing here runs outside Actions.

use crate::error::usage;
use crate::output;
use anyhow::{Context, Result};
use std::io::Write;

/// How an input becomes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `--flag=value`.
    Value,
    /// `true` adds `--flag`; `false` adds nothing.
    Switch,
    /// One `--flag=line` per line that is neither empty nor a `#` comment.
    Lines,
}

/// Every input action.yml declares, and the flag it fills. This table is the only place that
/// reads `INPUT_*`; a test checks it against action.yml both ways.
pub const INPUTS: &[(&str, &str, Kind)] = &[
    ("database-url", "--database-url", Kind::Value),
    ("all-databases", "--all-databases", Kind::Switch),
    ("exclude-databases", "--exclude-database", Kind::Lines),
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
    ("compression", "--compression", Kind::Value),
    ("compression-level", "--compression-level", Kind::Value),
    ("age-recipients", "--age-recipient", Kind::Lines),
    ("format", "--format", Kind::Value),
    ("pg-dump-args", "--pg-dump-arg", Kind::Lines),
    ("storage-class", "--storage-class", Kind::Value),
    ("sse", "--sse", Kind::Value),
    ("sse-kms-key-id", "--sse-kms-key-id", Kind::Value),
    ("dry-run", "--dry-run", Kind::Switch),
    ("ping-url", "--ping-url", Kind::Value),
    ("connect-timeout", "--connect-timeout", Kind::Value),
    (
        "abort-incomplete-after",
        "--abort-incomplete-after",
        Kind::Value,
    ),
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
    "backups",
    "failed-count",
];

/// Environment variables whose values are secrets wherever they are set.
const SECRET_ENV: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "PGPASSWORD",
    "AGE_IDENTITY",
    "PING_URL",
];

/// Flags and variables that hold a database connection string (and so maybe a password).
const CONN_FLAGS: &[&str] = &["--database-url", "--target-url", "--restore-check"];
const CONN_ENV: &[&str] = &["DATABASE_URL", "TARGET_DATABASE_URL"];

/// True when running inside a GitHub Actions job.
pub fn in_actions() -> bool {
    output::in_actions()
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
            Kind::Lines => {
                let lines: Vec<String> = value
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(|l| format!("{flag}={l}"))
                    .collect();
                // An input that was given but holds only comments is a mistake (a key commented
                // out in a rotation): for `age-recipients`, dropping it would store the backup
                // unencrypted.
                if lines.is_empty() {
                    return Err(usage!(
                        "input `{name}` holds only # comment lines: give at least one value, or remove the input"
                    ));
                }
                args.extend(lines);
            }
        }
    }
    Ok(args)
}

/// Masks every secret known at start, before anything else is printed and before anything is
/// parsed: the password of every connection string among the arguments, the inputs and the
/// environment (read leniently, so that a URL that will fail to parse is masked too), and the
/// secret environment variables. Secrets obtained later (ID tokens, STS credentials) are masked
/// when they arrive.
pub fn mask_known_secrets(args: &[String]) {
    if !in_actions() {
        return;
    }
    let mut conns: Vec<String> = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        for flag in CONN_FLAGS {
            match arg.strip_prefix(flag) {
                Some("") => conns.extend(args.get(i + 1).cloned()),
                Some(rest) if rest.starts_with('=') => conns.push(rest[1..].to_string()),
                _ => {}
            }
        }
    }
    conns.extend(CONN_ENV.iter().filter_map(|v| std::env::var(v).ok()));
    conns.extend(std::env::var(input_var("database-url")).ok());
    for conn in &conns {
        for secret in crate::source::conninfo::password_candidates(conn) {
            output::mask(&secret);
        }
    }
    for var in SECRET_ENV {
        if let Ok(v) = std::env::var(var) {
            output::mask(&v);
        }
    }
    // A health-check URL holds its check's token.
    for (i, arg) in args.iter().enumerate() {
        match arg.strip_prefix("--ping-url") {
            Some("") => args.get(i + 1).into_iter().for_each(|v| output::mask(v)),
            Some(rest) if rest.starts_with('=') => output::mask(&rest[1..]),
            _ => {}
        }
    }
    if let Ok(v) = std::env::var(input_var("ping-url")) {
        output::mask(v.trim());
    }
}

/// Asks the runner to mask `secret` (see [`output::mask`]).
pub fn mask(secret: &str) {
    output::mask(secret);
}

/// The run failed: the error line (and annotation), and a job summary saying so.
pub fn error(message: &str) {
    output::error(message);
    if in_actions() {
        let _ = write_summary(&format!(
            "### PostgreSQL backup failed\n\n{}\n",
            output::markdown_code(message, false)
        ));
    }
}

/// Appends `name=value` pairs to `$GITHUB_OUTPUT` in the multi-line delimiter form, which is
/// safe for any value.
pub fn write_outputs(pairs: &[(&str, String)]) -> Result<()> {
    let Ok(path) = std::env::var("GITHUB_OUTPUT") else {
        return Ok(());
    };
    let mut text = String::new();
    for (name, value) in pairs {
        let mut delimiter = format!("ghadelimiter_{}", random_token());
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

/// 128 random bits as hex, for output delimiters no value can predict.
pub fn random_token() -> String {
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if read.is_err() {
        // Never expected on Linux; a per-process random hasher seed is the fallback.
        use std::hash::{BuildHasher, Hasher};
        for chunk in bytes.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    hex::encode(bytes)
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
    fn random_tokens_differ() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
