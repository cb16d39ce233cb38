//! Backup selection: the key a restore or verify reads, given `--key` or the newest backup of a
//! database (at or before a time) by the store's listing and clock. A key dated in the future is
//! never the newest backup (see `clock`). It reads nothing but the listing.

use crate::clock::Now;
use crate::config::{S3Config, Which};
use crate::{output, store};
use anyhow::{anyhow, Result};

/// The key `which` names.
pub async fn key(client: &aws_sdk_s3::Client, cfg: &S3Config, which: &Which) -> Result<String> {
    let (series, at) = match which {
        Which::Key(key) => return Ok(key.clone()),
        Which::Newest { series, at } => (series, at),
    };
    let backups = store::list_backups(client, &cfg.bucket, &cfg.prefix, Some(series)).await?;
    let now = Now::read();
    if let Err(skew) = now.check_skew() {
        output::warn(format_args!("{skew}; choosing by the store's clock"));
    }
    let (backups, future) = store::split_future(backups, &now);
    for f in &future {
        output::warn(format_args!(
            "skipping {}: it is dated {}, in the future",
            f.key,
            f.id.time.format("%Y-%m-%dT%H:%M:%SZ")
        ));
    }
    let candidates: Vec<store::Listed> = backups
        .into_iter()
        .filter(|b| at.is_none_or(|t| b.id.time <= t))
        .collect();
    let (chosen, skipped) = newest_recorded(&candidates);
    if let (Some(chosen), false) = (chosen, skipped.is_empty()) {
        output::warn(format_args!(
            "skipping {} newer backups without an integrity record (the newest is {}): they are unverified; chose {}, the newest recorded one (pass --key to read another)",
            skipped.len(),
            skipped[0].key,
            chosen.key
        ));
    }
    chosen
        .map(|b| b.key.clone())
        .ok_or_else(|| match at {
            Some(t) => anyhow!(
                "no backup of {} at or before {t} under s3://{}/{}: check the name and time with `pg-s3-backup list`",
                series.shown(),
                cfg.bucket,
                cfg.prefix
            ),
            None => anyhow!(
                "no backup of {} under s3://{}/{}: check the name with `pg-s3-backup list`",
                series.shown(),
                cfg.bucket,
                cfg.prefix
            ),
        })
}

/// Of `backups` (newest first), the newest with its integrity record, and the newer ones
/// without (skipped: a run that stopped before its record, or a planted key, is not what
/// `--latest` means, and `restore` would refuse it only after streaming it). When none is
/// recorded (backups of an older pg-s3-backup, which carry sha256 metadata instead), the
/// newest, with nothing skipped.
fn newest_recorded(backups: &[store::Listed]) -> (Option<&store::Listed>, &[store::Listed]) {
    match backups.iter().position(|b| b.recorded) {
        Some(i) => (Some(&backups[i]), &backups[..i]),
        None => (backups.first(), &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{BackupId, DumpFormat};
    use chrono::{TimeZone, Utc};

    fn listed(h: u32, recorded: bool) -> store::Listed {
        let id = BackupId::new(
            "app",
            Utc.with_ymd_and_hms(2026, 12, 1, h, 0, 0).unwrap(),
            DumpFormat::Plain,
        );
        store::Listed {
            key: id.key("p/"),
            id,
            size: 1,
            stored: None,
            recorded,
            companions: Vec::new(),
        }
    }

    #[test]
    fn latest_is_the_newest_recorded_backup() {
        let list = [
            listed(5, false),
            listed(4, false),
            listed(3, true),
            listed(2, true),
        ];
        let (chosen, skipped) = newest_recorded(&list);
        assert_eq!(chosen.unwrap().key, list[2].key);
        assert_eq!(skipped.len(), 2);
        // None recorded (an older pg-s3-backup's): the newest, nothing skipped.
        let old = [listed(5, false), listed(4, false)];
        let (chosen, skipped) = newest_recorded(&old);
        assert_eq!(chosen.unwrap().key, old[0].key);
        assert!(skipped.is_empty());
        assert!(newest_recorded(&[]).0.is_none());
    }
}
