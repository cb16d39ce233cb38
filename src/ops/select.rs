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
    backups
        .into_iter()
        .find(|b| at.is_none_or(|t| b.id.time <= t))
        .map(|b| b.key)
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
