//! `prune`: apply a keep policy to this tool's backups under the prefix, per database, delete
//! what it does not keep (or only print the plan with `--dry-run`), and clean up after killed
//! runs: abort stale multipart uploads and delete stale lock objects. `backup` calls [`prune`]
//! after a verified upload. Keys from the future (see `clock`) are reported and left alone:
//! they never count as the newest backup, and nothing is deleted because of them. A machine
//! whose clock disagrees with the store's deletes nothing.

use crate::cli::PruneArgs;
use crate::clock::Now;
use crate::config::{policy_from, S3Config};
use crate::error::usage;
use crate::retention::{Backup, Decision, Policy};
use crate::store::{self, Aborted};
use crate::{output, s3};
use anyhow::{anyhow, bail, Result};
use indicatif::HumanBytes;
use serde::Serialize;
use std::collections::BTreeMap;

/// The decisions for one database.
#[derive(Debug, Serialize)]
pub struct Plan {
    pub database: String,
    pub decisions: Vec<Decision>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub dry_run: bool,
    /// Why retention did not run (a missing permission), when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub plans: Vec<Plan>,
    pub deleted: Vec<String>,
    /// Keys the store refused to delete, with its reason.
    pub failed: Vec<(String, String)>,
    pub aborted_uploads: Vec<String>,
    /// Keys dated later than now plus the clock tolerance: not counted, not deleted.
    pub future: Vec<String>,
    /// Lock objects of backups that started before `--abort-incomplete-after` (a killed run's).
    pub removed_locks: Vec<String>,
    /// A signal stopped the deletions: only `deleted` were deleted, the rest were not sent.
    pub interrupted: bool,
}

impl Report {
    /// What a signal left done and undone, for the error line.
    pub fn stopped(&self) -> String {
        let planned = self
            .plans
            .iter()
            .flat_map(|p| &p.decisions)
            .filter(|d| !d.keep)
            .count();
        format!(
            "prune stopped after deleting {} of {planned} backups (listed above); the rest were not sent: run prune again to finish",
            self.deleted.len()
        )
    }

    pub fn kept(&self) -> usize {
        self.plans
            .iter()
            .flat_map(|p| &p.decisions)
            .filter(|d| d.keep)
            .count()
    }
}

/// What must be true of the new backup before anything is deleted (backup passes it).
pub struct Expect<'a> {
    pub key: &'a str,
    pub size: u64,
}

pub async fn run(args: &PruneArgs) -> Result<()> {
    let cfg = S3Config::from_args(&args.s3)?;
    let policy = policy_from(&args.retention)?;
    if policy.is_empty() {
        return Err(usage!(
            "no keep rule given: pass at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly, --keep-within"
        ));
    }
    let abort_after =
        crate::config::parse_abort_after(&args.abort_incomplete_after, std::time::Duration::ZERO)?;
    let client = s3::client(&cfg).await?;
    let mut report = prune(
        &client,
        &cfg,
        args.database.as_deref(),
        &policy,
        None,
        args.dry_run,
    )
    .await?;
    if !args.dry_run {
        clean_up(&client, &cfg, abort_after, &mut report).await?;
    }
    print_report(&report, args.json)?;
    if let Some(sig) = crate::signals::stop_requested() {
        return Err(anyhow::Error::new(crate::error::Interrupted(sig)).context(report.stopped()));
    }
    if !report.failed.is_empty() {
        let (key, why) = &report.failed[0];
        bail!(
            "{} of {} deletions failed; first: {key}: {why}",
            report.failed.len(),
            report.failed.len() + report.deleted.len()
        );
    }
    Ok(())
}

/// Cleans up after killed runs: aborts this tool's multipart uploads and deletes its lock
/// objects older than `abort_after` (by the store's clock, and the key's own time too). A backup
/// in flight is never touched, however long it has run: it rewrites its lock every
/// `layout::HEARTBEAT`, so its lock is younger than any age allowed on `backup` (1h).
pub async fn clean_up(
    client: &aws_sdk_s3::Client,
    cfg: &S3Config,
    abort_after: std::time::Duration,
    report: &mut Report,
) -> Result<()> {
    if crate::signals::stop_requested().is_some() {
        return Ok(());
    }
    let before = chrono::Duration::from_std(abort_after)
        .ok()
        .and_then(|age| Now::read().reference().checked_sub_signed(age))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    let locks = store::locks(client, &cfg.bucket, &cfg.prefix, before).await?;
    let removed = store::delete(client, &cfg.bucket, &locks.stale).await?;
    report.removed_locks = removed.deleted;
    report.failed.extend(removed.failed);
    match store::abort_stale_uploads(client, &cfg.bucket, &cfg.prefix, before, &locks.alive).await? {
        Aborted::Done(keys) => report.aborted_uploads = keys,
        Aborted::Unsupported => crate::output::note(
            "note: this store does not implement ListMultipartUploads, so stale multipart uploads were not checked",
        ),
    }
    Ok(())
}

/// Lists, decides per database, and deletes what the policy does not keep. With `expect`, the
/// new backup must be listed with the size that was sent, or nothing is deleted.
pub async fn prune(
    client: &aws_sdk_s3::Client,
    cfg: &S3Config,
    database: Option<&str>,
    policy: &Policy,
    expect: Option<Expect<'_>>,
    dry_run: bool,
) -> Result<Report> {
    let listed = store::list_backups(client, &cfg.bucket, &cfg.prefix, database).await?;
    // The listing's answer carried the store's clock.
    let now = Now::read();
    now.check_skew()
        .map_err(|skew| anyhow!("{skew}; nothing was pruned"))?;
    let (listed, future) = store::split_future(listed, &now);
    for f in &future {
        output::warn(format_args!(
            "{} is dated {}, in the future: it is not counted as the newest backup and not deleted; delete it by hand if it is not a real backup",
            f.key,
            f.id.time.format("%Y-%m-%dT%H:%M:%SZ")
        ));
    }
    if let Some(e) = &expect {
        match listed.iter().find(|l| l.key == e.key) {
            Some(l) if l.size == e.size => {}
            Some(l) => bail!(
                "the new backup {} is listed with {} bytes but {} were sent: nothing was pruned",
                e.key,
                l.size,
                e.size
            ),
            None => bail!(
                "the new backup {} is not in the bucket listing: nothing was pruned",
                e.key
            ),
        }
    }
    let mut by_db: BTreeMap<String, Vec<Backup>> = BTreeMap::new();
    for l in listed {
        by_db
            .entry(l.id.database.clone())
            .or_default()
            .push(Backup {
                key: l.key,
                time: l.id.time,
                seq: l.id.seq,
                size: l.size,
            });
    }
    let protect: Vec<&str> = expect.as_ref().map(|e| vec![e.key]).unwrap_or_default();
    let mut report = Report {
        dry_run,
        future: future.into_iter().map(|f| f.key).collect(),
        ..Report::default()
    };
    for (database, backups) in by_db {
        let decisions = policy.apply(&backups, &protect)?;
        report.plans.push(Plan {
            database,
            decisions,
        });
    }
    let doomed: Vec<String> = report
        .plans
        .iter()
        .flat_map(|p| &p.decisions)
        .filter(|d| !d.keep)
        .map(|d| d.key.clone())
        .collect();
    if !dry_run && !doomed.is_empty() {
        let result = store::delete(client, &cfg.bucket, &doomed).await?;
        report.deleted = result.deleted;
        report.failed = result.failed;
        report.interrupted = result.stopped;
    }
    Ok(report)
}

fn print_report(report: &Report, json: bool) -> Result<()> {
    if json {
        return output::json(report);
    }
    for plan in &report.plans {
        let delete = plan.decisions.iter().filter(|d| !d.keep).count();
        output::data_line(format_args!(
            "database {}: keep {}, {} {delete}",
            plan.database,
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
    for key in &report.future {
        output::data_line(format_args!("left alone (dated in the future): {key}"));
    }
    Ok(())
}
