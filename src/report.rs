//! What a completed backup reports, as the user sees it: the text lines or JSON on stdout, and
//! in GitHub Actions the step outputs and the job summary. Every value from outside (names,
//! keys, versions) is data: inert on stdout, code spans in the summary.

use crate::ops::prune::Report;
use crate::{action, output};
use anyhow::Result;
use indicatif::HumanBytes;
use serde::Serialize;

/// What a completed backup reports (`--json` prints it as is).
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub key: String,
    pub uri: String,
    pub bucket: String,
    pub database: String,
    pub format: &'static str,
    /// `gzip` or `zstd`.
    pub compression: &'static str,
    /// Encrypted with age to `--age-recipient`s: restore and verify need an identity.
    pub encrypted: bool,
    /// Bytes stored (compressed, and encrypted if `encrypted`).
    pub size: u64,
    /// Bytes pg_dump wrote.
    pub raw_size: u64,
    pub sha256: String,
    pub duration_seconds: f64,
    pub parts: u64,
    /// The plan's part size: every part but the last is this size unless the dump outgrew
    /// the plan (then a warning said so).
    pub part_size: u64,
    pub server_version: String,
    pub pg_dump_version: String,
    /// False when sha256/raw-size could not be attached as object metadata (see warnings).
    pub metadata_complete: bool,
    /// True when `--verify` read the object back and found it whole.
    pub verified: bool,
    /// Backups deleted by the keep policy after this one was verified.
    pub pruned_count: usize,
    /// Backups the policy kept (none when no policy was given or retention was skipped).
    pub kept_count: Option<usize>,
    pub pruned: Vec<String>,
    /// The retention plan and what it did, when a keep policy was given and could run.
    pub retention: Option<Report>,
}

/// Prints the outcome, and in Actions writes the outputs and the summary first.
pub fn backup(o: &Outcome, json: bool) -> Result<()> {
    if action::in_actions() {
        to_actions(o)?;
    }
    print(o, json)
}

/// `$GITHUB_OUTPUT` and the job summary.
fn to_actions(o: &Outcome) -> Result<()> {
    action::write_outputs(&[
        ("key", o.key.clone()),
        ("uri", o.uri.clone()),
        ("size", o.size.to_string()),
        ("raw-size", o.raw_size.to_string()),
        ("sha256", o.sha256.clone()),
        ("duration-seconds", format!("{:.1}", o.duration_seconds)),
        ("pruned-count", o.pruned_count.to_string()),
    ])?;
    action::write_summary(&summary_markdown(o))
}

fn codec(o: &Outcome) -> String {
    match o.encrypted {
        true => format!("{}, encrypted with age", o.compression),
        false => o.compression.to_string(),
    }
}

/// The job summary. Every value from outside (names, keys, versions) goes through
/// `output::markdown_code`, so a database or key name cannot add Markdown or HTML.
fn summary_markdown(o: &Outcome) -> String {
    let md = |s: &str| output::markdown_code(s, true);
    let ratio = if o.size == 0 {
        0.0
    } else {
        o.raw_size as f64 / o.size as f64
    };
    let rate = o.raw_size as f64 / o.duration_seconds.max(0.001) / 1e6;
    let mut text = format!(
        "### PostgreSQL backup of {} complete\n\n| | |\n|---|---|\n\
         | Object | {} |\n\
         | Size | {} compressed from {} (ratio {ratio:.1}) |\n\
         | Duration | {:.1} s ({rate:.1} MB/s) |\n\
         | Codec | {} |\n\
         | pg_dump | {} |\n\
         | Server | {} |\n\
         | sha256 | {} |\n",
        output::markdown_code(&o.database, false),
        md(&o.uri),
        HumanBytes(o.size),
        HumanBytes(o.raw_size),
        o.duration_seconds,
        codec(o),
        md(&o.pg_dump_version),
        md(&format!("PostgreSQL {}", o.server_version)),
        md(&o.sha256)
    );
    match &o.retention {
        None => text.push_str("| Retention | not run |\n"),
        Some(Report {
            skipped: Some(why), ..
        }) => text.push_str(&format!("| Retention | {} |\n", md(why))),
        Some(r) => {
            let verb = if r.dry_run { "would delete" } else { "deleted" };
            let doomed: Vec<&str> = r
                .plans
                .iter()
                .flat_map(|p| &p.decisions)
                .filter(|d| !d.keep)
                .map(|d| d.key.as_str())
                .collect();
            text.push_str(&format!(
                "| Retention | kept {}, {verb} {} |\n",
                r.kept(),
                doomed.len()
            ));
            for key in doomed {
                text.push_str(&format!("| | {verb} {} |\n", md(key)));
            }
        }
    }
    text
}

fn print(o: &Outcome, json: bool) -> Result<()> {
    if json {
        return output::json(o);
    }
    let ratio = if o.size == 0 {
        0.0
    } else {
        o.raw_size as f64 / o.size as f64
    };
    let rate = o.raw_size as f64 / o.duration_seconds.max(0.001) / 1e6;
    output::data_line(format_args!("backup complete: {}", o.uri));
    output::data_line(format_args!(
        "  database  {} (PostgreSQL {}), {}",
        o.database, o.server_version, o.pg_dump_version
    ));
    output::data_line(format_args!(
        "  size      {} compressed from {} (ratio {ratio:.1}), {} parts",
        HumanBytes(o.size),
        HumanBytes(o.raw_size),
        o.parts
    ));
    output::data_line(format_args!(
        "  duration  {:.1} s ({rate:.1} MB/s)",
        o.duration_seconds
    ));
    output::data_line(format_args!("  codec     {}", codec(o)));
    output::data_line(format_args!("  sha256    {}", o.sha256));
    if let Some(kept) = o.kept_count {
        output::data_line(format_args!(
            "  retention kept {kept}, deleted {}",
            o.pruned_count
        ));
        for key in &o.pruned {
            output::data_line(format_args!("            deleted {key}"));
        }
    }
    if let Some(r) = &o.retention {
        for key in &r.aborted_uploads {
            output::data_line(format_args!(
                "  cleanup   aborted stale multipart upload of {key}"
            ));
        }
        for key in &r.removed_locks {
            output::data_line(format_args!("  cleanup   removed stale lock {key}"));
        }
    }
    Ok(())
}
