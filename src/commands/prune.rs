//! `prune`: the keep policy's plan per database, what was deleted (or, with `--dry-run`, would
//! be), and the cleanup after killed runs (`ops::prune` does the work; this wires and prints).

use crate::cli::PruneArgs;
use crate::config::PruneConfig;
use crate::error::Interrupted;
use crate::layout::Series;
use crate::ops::prune::{self, Report};
use crate::{output, s3, signals};
use anyhow::{bail, Result};
use indicatif::HumanBytes;

pub async fn run(args: &PruneArgs) -> Result<()> {
    let cfg = PruneConfig::from_args(args)?;
    let client = s3::client(&cfg.s3).await?;
    let series = cfg.series.as_ref();
    let mut report = prune::prune(&client, &cfg.s3, series, &cfg.policy, None, cfg.dry_run).await?;
    // What was deleted is printed even when the cleanup after it fails.
    let cleaned = match cfg.dry_run {
        true => Ok(()),
        false => prune::clean_up(&client, &cfg.s3, cfg.abort_after, &mut report).await,
    };
    print_report(&report, cfg.json)?;
    cleaned?;
    if let Some(sig) = signals::stop_requested() {
        return Err(anyhow::Error::new(Interrupted(sig)).context(report.stopped()));
    }
    if let Some((key, why)) = report.failed.first() {
        bail!(
            "{} of {} deletions failed; first: {key}: {why}: check the key's permissions and run prune again",
            report.failed.len(),
            report.failed.len()
                + report.deleted.len()
                + report.removed_locks.len()
                + report.removed_records.len()
        );
    }
    Ok(())
}

fn print_report(report: &Report, json: bool) -> Result<()> {
    if json {
        return output::json(report);
    }
    for plan in &report.plans {
        let delete = plan.decisions.iter().filter(|d| !d.keep).count();
        output::data_line(format_args!(
            "{}: keep {}, {} {delete}",
            match &plan.series {
                Series::Database(name) => format!("database {name}"),
                Series::Globals => "globals".to_string(),
            },
            plan.decisions.len() - delete,
            if report.dry_run {
                "would delete"
            } else {
                "delete"
            }
        ));
        let width = plan
            .decisions
            .iter()
            .map(|d| d.key.len())
            .max()
            .unwrap_or(3);
        output::data_line(format_args!(
            "  {:width$}  {:20}  {:>10}  {:6}  REASONS",
            "KEY", "TIME", "SIZE", "ACTION"
        ));
        for d in &plan.decisions {
            output::data_line(format_args!(
                "  {:width$}  {:20}  {:>10}  {:6}  {}",
                d.key,
                d.time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                HumanBytes(d.size).to_string(),
                if d.keep { "keep" } else { "delete" },
                d.reasons.join(", ")
            ));
        }
    }
    if report.plans.is_empty() {
        output::data_line(format_args!("no backups to prune"));
    }
    if report.interrupted {
        output::data_line(format_args!(
            "stopped by a signal: deleted only these {}",
            report.deleted.len()
        ));
        for key in &report.deleted {
            output::data_line(format_args!("  deleted {key}"));
        }
    }
    for key in &report.aborted_uploads {
        output::data_line(format_args!("aborted stale multipart upload of {key}"));
    }
    for key in &report.removed_locks {
        output::data_line(format_args!("removed stale lock {key}"));
    }
    for key in &report.removed_records {
        output::data_line(format_args!("removed integrity record {key}"));
    }
    for key in &report.future {
        output::data_line(format_args!("left alone (dated in the future): {key}"));
    }
    Ok(())
}
