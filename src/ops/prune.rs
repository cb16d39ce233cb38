//! Pruning: apply a keep policy to this tool's backups under the prefix, per database, and
//! delete what it does not keep; clean up after killed runs (abort stale multipart uploads,
//! delete stale lock objects); and the gate a backup passes before it prunes. Keys from the
//! future (see `clock`) are reported and left alone: they never count as the newest backup, and
//! nothing is deleted because of them. A machine whose clock disagrees with the store's deletes
//! nothing. Printing is the caller's.

use crate::clock::Now;
use crate::config::{BackupConfig, S3Config};
use crate::layout::{BackupId, Companion, Series};
use crate::retention::{Backup, Decision, Policy};
use crate::store::{self, Aborted};
use crate::{output, s3, signals};
use anyhow::{anyhow, bail, Result};
use serde::Serialize;
use std::collections::BTreeMap;

/// The decisions for one series (a database, or the globals).
#[derive(Debug, Serialize)]
pub struct Plan {
    #[serde(flatten)]
    pub series: Series,
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
    /// Lock objects deleted: a deleted backup's, a complete backup's (spent), and those of
    /// backups that started before `--abort-incomplete-after` and never completed (a killed
    /// run's).
    pub removed_locks: Vec<String>,
    /// Integrity records deleted: a deleted backup's, and those from before
    /// `--abort-incomplete-after` whose backup is gone.
    pub removed_records: Vec<String>,
    /// A signal stopped the deletions: only `deleted` were deleted, the rest were not sent.
    pub interrupted: bool,
}

impl Report {
    /// Sorts deleted keys into backups, locks and records.
    fn file_companions(&mut self, prefix: &str, deleted: Vec<String>) {
        for key in deleted {
            match BackupId::companion_of(prefix, &key) {
                Some((_, Companion::Record)) => self.removed_records.push(key),
                Some((_, Companion::Lock)) => self.removed_locks.push(key),
                None => self.deleted.push(key),
            }
        }
    }

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
    if signals::stop_requested().is_some() {
        return Ok(());
    }
    let before = chrono::Duration::from_std(abort_after)
        .ok()
        .and_then(|age| Now::read().reference().checked_sub_signed(age))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    let left = store::leftovers(client, &cfg.bucket, &cfg.prefix, before).await?;
    let doomed: Vec<String> = [&left.spent, &left.stale, &left.orphans]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let removed = store::delete(client, &cfg.bucket, &doomed).await?;
    report.file_companions(&cfg.prefix, removed.deleted);
    report.failed.extend(removed.failed);
    match store::abort_stale_uploads(client, &cfg.bucket, &cfg.prefix, before, &left.alive).await? {
        Aborted::Done(keys) => report.aborted_uploads = keys,
        Aborted::Unsupported => crate::output::note(
            "note: this store does not implement ListMultipartUploads, so stale multipart uploads were not checked",
        ),
    }
    Ok(())
}

/// Lists, decides per series (each database, the globals), and deletes what the policy does not keep. With `expect`, the
/// new backup must be listed with the size that was sent, or nothing is deleted.
pub async fn prune(
    client: &aws_sdk_s3::Client,
    cfg: &S3Config,
    series: Option<&Series>,
    policy: &Policy,
    expect: Option<Expect<'_>>,
    dry_run: bool,
) -> Result<Report> {
    let listed = store::list_backups(client, &cfg.bucket, &cfg.prefix, series).await?;
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
            Some(l) if l.size == e.size && l.recorded => {}
            Some(l) if l.size == e.size => bail!(
                "the new backup {} is listed without its integrity record: nothing was pruned; the store's listing may lag behind its writes, so run prune later",
                l.key
            ),
            Some(l) => bail!(
                "the new backup {} is listed with {} bytes but {} were sent: nothing was pruned; check it with `pg-s3-backup verify --key KEY`",
                e.key,
                l.size,
                e.size
            ),
            None => bail!(
                "the new backup {} is not in the bucket listing: nothing was pruned; the store's listing may lag behind its writes, so run prune later",
                e.key
            ),
        }
    }
    let mut by_series: BTreeMap<Series, Vec<Backup>> = BTreeMap::new();
    let recorded = listed
        .iter()
        .filter(|l| l.recorded)
        .map(|l| l.key.as_str())
        .collect();
    let companions: std::collections::HashMap<&str, &[String]> = listed
        .iter()
        .map(|l| (l.key.as_str(), l.companions.as_slice()))
        .collect();
    for l in &listed {
        by_series
            .entry(l.id.series.clone())
            .or_default()
            .push(Backup {
                key: l.key.clone(),
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
    for (series, backups) in by_series {
        // A backup without its integrity record never takes a recorded backup's place.
        let decisions = policy.apply_recorded(&backups, &recorded, &protect)?;
        report.plans.push(Plan { series, decisions });
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
        // Then the records and locks of the backups that are gone, never of one still there:
        // a backup whose deletion failed keeps its record. Any left by a stop are orphans that
        // a later cleanup removes.
        let with: Vec<String> = report
            .deleted
            .iter()
            .filter_map(|k| companions.get(k.as_str()))
            .flat_map(|c| c.iter().cloned())
            .collect();
        // The backups are gone by now: a failure here (a denial, a store that stopped
        // answering) must not hide that they were deleted, so it is reported per key and the
        // records and locks left are orphans a later cleanup removes.
        if !report.interrupted && !with.is_empty() {
            match store::delete(client, &cfg.bucket, &with).await {
                Ok(result) => {
                    report.file_companions(&cfg.prefix, result.deleted);
                    report.failed.extend(result.failed);
                    report.interrupted = result.stopped;
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    report
                        .failed
                        .extend(with.into_iter().map(|k| (k, why.clone())));
                }
            }
        }
    }
    Ok(report)
}

/// Prunes under the keep policy, only after checking the new object is stored whole
/// (HeadObject size equals what was sent, where the role may read, and the listing shows it
/// with that size and its integrity record). Missing permissions (the write-only backup role)
/// skip retention with one warning; the backup still succeeds.
pub async fn after_backup(
    client: &aws_sdk_s3::Client,
    cfg: &BackupConfig,
    series: &Series,
    key: &str,
    size: u64,
) -> Result<Option<Report>> {
    if cfg.retention.is_empty() {
        return Ok(None);
    }
    let uri = format!("s3://{}/{key}", cfg.s3.bucket);
    match client.head_object().bucket(&cfg.s3.bucket).key(key).send().await {
        Ok(head) if head.content_length() == Some(size as i64) => {}
        Ok(head) => anyhow::bail!(
            "{uri} is stored with {:?} bytes but {size} were sent: retention skipped; check the object",
            head.content_length()
        ),
        // Without s3:GetObject, the listing's size check in `prune` is the verification.
        Err(e) if s3::is_denied(&e) => {}
        Err(e) => return Err(s3::describe("HeadObject", &uri, &e)),
    }
    let expect = Expect { key, size };
    match prune(
        client,
        &cfg.s3,
        Some(series),
        &cfg.retention,
        Some(expect),
        cfg.dry_run,
    )
    .await
    {
        Ok(mut report) => {
            if !cfg.dry_run {
                clean_up_after_backup(client, cfg, &mut report).await;
            }
            if let Some((key, why)) = report.failed.first() {
                output::warn(format_args!(
                    "the backup is complete, but {} of {} deletions failed; first: {key}: {why}",
                    report.failed.len(),
                    report.failed.len()
                        + report.deleted.len()
                        + report.removed_locks.len()
                        + report.removed_records.len()
                ));
            }
            Ok(Some(report))
        }
        Err(e) => match e.chain().find_map(|c| c.downcast_ref::<store::Denied>()) {
            Some(denied) => {
                let why = format!("retention was skipped: {denied}");
                output::warn(format_args!("the backup is complete, but {why}"));
                Ok(Some(Report {
                    skipped: Some(why),
                    ..Report::default()
                }))
            }
            None => Err(e.context(format!("the backup {uri} is complete, but pruning failed"))),
        },
    }
}

/// After retention, what killed runs left behind (stale uploads and locks) is cleaned up under
/// the same age rule as `prune --abort-incomplete-after`. The backup is complete by now, so a
/// failure here is a warning, and the keys that could not be deleted are in the report.
async fn clean_up_after_backup(
    client: &aws_sdk_s3::Client,
    cfg: &BackupConfig,
    report: &mut Report,
) {
    if let Err(e) = clean_up(client, &cfg.s3, cfg.abort_after, report).await {
        output::warn(format_args!(
            "the backup is complete, but cleaning up killed runs' uploads and locks failed: {e:#}"
        ));
    }
}
