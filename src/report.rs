//! What a completed backup reports, as the user sees it: the text lines or JSON on stdout, and
//! in GitHub Actions the step outputs and the job summary. Every value from outside (names,
//! keys, versions) is data: inert on stdout, code spans in the summary.

use crate::layout::Series;
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
    /// `kind` (`database` or `globals`) and `database` (null for the globals).
    #[serde(flatten)]
    pub series: Series,
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
    /// The integrity record (`{key}.json`) was written: verify and restore check the backup
    /// against it.
    pub recorded: bool,
    /// The same as `recorded`, under the name older versions gave it.
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
    // The same `backups` list an `--all-databases` run writes, of this one backup.
    let mut entry = serde_json::to_value(o)?;
    entry["status"] = "complete".into();
    action::write_outputs(&[
        ("backups", serde_json::Value::Array(vec![entry]).to_string()),
        ("failed-count", "0".to_string()),
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

/// The series, for a Markdown title: its name as code.
fn title(series: &Series) -> String {
    match series {
        Series::Database(name) => output::markdown_code(name, false),
        Series::Globals => "the globals (roles and tablespaces)".to_string(),
    }
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
        title(&o.series),
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
    let what = match &o.series {
        Series::Database(name) => format!("database  {name}"),
        Series::Globals => "globals   roles and tablespaces".to_string(),
    };
    output::data_line(format_args!(
        "  {what} (PostgreSQL {}), {}",
        o.server_version, o.pg_dump_version
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

/// One backup of an `--all-databases` run, as the `backups` output and `--json` list it.
#[derive(Debug, Serialize)]
pub struct Entry {
    /// `complete`, `failed`, `skipped` (a database dropped after the run listed it), or `not
    /// run` (a signal stopped the run first).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A stored backup's outcome (it names the series): a complete one's, or a failed one's
    /// whose verification or retention failed.
    #[serde(flatten)]
    pub outcome: Option<Outcome>,
    /// The series of a backup that did not complete.
    #[serde(flatten)]
    pub series: Option<Series>,
}

impl Entry {
    pub fn complete(outcome: Outcome) -> Self {
        Self {
            status: "complete",
            error: None,
            outcome: Some(outcome),
            series: None,
        }
    }

    /// A backup that was stored, and whose verification or retention then failed.
    pub fn failed_stored(outcome: Outcome, error: String) -> Self {
        Self {
            status: "failed",
            error: Some(error),
            outcome: Some(outcome),
            series: None,
        }
    }

    pub fn failed(series: Series, error: String) -> Self {
        Self {
            status: "failed",
            error: Some(error),
            outcome: None,
            series: Some(series),
        }
    }

    /// A database dropped after the run listed it.
    pub fn skipped(series: Series, why: String) -> Self {
        Self {
            status: "skipped",
            error: Some(why),
            outcome: None,
            series: Some(series),
        }
    }

    pub fn not_run(series: Series) -> Self {
        Self {
            status: "not run",
            error: None,
            outcome: None,
            series: Some(series),
        }
    }

    pub fn series(&self) -> &Series {
        match (&self.outcome, &self.series) {
            (Some(o), _) => &o.series,
            (None, Some(s)) => s,
            (None, None) => unreachable!("an entry names its series"),
        }
    }
}

/// Prints an `--all-databases` run, and in Actions writes its outputs and summary first.
pub fn server(entries: &[Entry], json: bool) -> Result<()> {
    if action::in_actions() {
        let failed = entries.iter().filter(|e| e.status == "failed").count();
        action::write_outputs(&[
            ("backups", serde_json::to_string(entries)?),
            ("failed-count", failed.to_string()),
        ])?;
        action::write_summary(&server_markdown(entries))?;
    }
    if json {
        return output::json(entries);
    }
    for e in entries {
        let line = match (&e.outcome, &e.error) {
            (Some(o), Some(why)) => format!(
                "{:9} {}: {}, {}: {why}",
                e.status,
                e.series().label(),
                o.uri,
                HumanBytes(o.size)
            ),
            (Some(o), None) => format!(
                "{:9} {}: {}, {}",
                e.status,
                e.series().label(),
                o.uri,
                HumanBytes(o.size)
            ),
            (None, Some(why)) => format!("{:9} {}: {why}", e.status, e.series().label()),
            (None, None) => format!("{:9} {}", e.status, e.series().label()),
        };
        output::data_line(line);
    }
    Ok(())
}

fn server_markdown(entries: &[Entry]) -> String {
    let md = |s: &str| output::markdown_code(s, true);
    let complete = entries.iter().filter(|e| e.status == "complete").count();
    let mut text = format!(
        "### PostgreSQL server backup: {complete} of {} complete\n\n| Backup | Status | Key | Size |\n|---|---|---|---|\n",
        entries.len()
    );
    for e in entries {
        let name = match e.series() {
            Series::Database(name) => md(name),
            Series::Globals => "globals (roles and tablespaces)".to_string(),
        };
        let (key, size) = match (&e.outcome, &e.error) {
            (Some(o), _) => (md(&o.key), HumanBytes(o.size).to_string()),
            (None, Some(why)) => (md(why), String::new()),
            (None, None) => (String::new(), String::new()),
        };
        text.push_str(&format!("| {name} | {} | {key} | {size} |\n", e.status));
    }
    text
}
