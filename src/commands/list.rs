//! `list`: this tool's backups under the prefix (one database or all), newest first, as a
//! table or JSON. Objects that are not this tool's backups are never shown; keys from the
//! future (see `clock`) are shown, flagged, and warned about; so are backups without their
//! integrity record (`record`), which verify and restore take for unverified.

use crate::cli::ListArgs;
use crate::clock::Now;
use crate::config::S3Config;
use crate::layout::Series;
use crate::{output, s3, store};
use anyhow::Result;
use indicatif::{HumanBytes, HumanDuration};
use serde::Serialize;

#[derive(Serialize)]
struct Row<'a> {
    key: &'a str,
    /// `kind` (`database` or `globals`) and `database` (null for the globals).
    #[serde(flatten)]
    series: &'a Series,
    time: String,
    age_seconds: i64,
    size: u64,
    format: &'static str,
    /// `gzip` or `zstd`.
    compression: &'static str,
    /// Encrypted with age: restore and verify need an identity.
    encrypted: bool,
    /// Later than now plus the clock tolerance: not a real backup's time, never the newest.
    future: bool,
    /// Its integrity record is stored beside it; without one the backup is unverified.
    recorded: bool,
}

pub async fn run(args: &ListArgs) -> Result<()> {
    let cfg = S3Config::from_args(&args.s3)?;
    let client = s3::client(&cfg).await?;
    let series = crate::config::series_from(args.database.as_deref(), args.globals)?;
    let backups = store::list_backups(&client, &cfg.bucket, &cfg.prefix, series.as_ref()).await?;
    let now = Now::read();
    if let Err(skew) = now.check_skew() {
        output::warn(format_args!("{skew}; ages are by the store's clock"));
    }
    let rows: Vec<Row> = backups
        .iter()
        .map(|b| Row {
            key: &b.key,
            series: &b.id.series,
            time: b.id.time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            age_seconds: (now.reference() - b.id.time).num_seconds(),
            size: b.size,
            format: b.id.format.name(),
            compression: b.id.codec.compression.name(),
            encrypted: b.id.codec.encrypted,
            future: store::is_future(b, &now),
            recorded: b.recorded,
        })
        .collect();
    let unrecorded = rows.iter().filter(|r| !r.recorded).count();
    if unrecorded > 0 {
        output::warn(format_args!(
            "{unrecorded} of {} backups have no integrity record (`KEY.json`), so they are unverified: the backup stopped before writing it, an older pg-s3-backup wrote them (verify and restore accept the sha256 metadata it attached), or they are not this tool's",
            rows.len()
        ));
    }
    for r in rows.iter().filter(|r| r.future) {
        output::warn(format_args!(
            "{} is dated {}, in the future: it is not counted as a backup time (written by a machine with a wrong clock, or planted)",
            r.key, r.time
        ));
    }
    if args.json {
        return output::json(&rows);
    }
    if rows.is_empty() {
        output::note(format_args!(
            "no backups under s3://{}/{}",
            cfg.bucket, cfg.prefix
        ));
        return Ok(());
    }
    let width = rows.iter().map(|r| r.key.len()).max().unwrap_or(3).max(3);
    output::data_line(format_args!(
        "{:width$}  {:20}  {:>14}  {:>10}",
        "KEY", "TIME", "AGE", "SIZE"
    ));
    for r in &rows {
        let age = if r.future {
            "FUTURE".to_string()
        } else {
            HumanDuration(std::time::Duration::from_secs(r.age_seconds.max(0) as u64)).to_string()
        };
        output::data_line(format_args!(
            "{:width$}  {:20}  {:>14}  {:>10}{}",
            r.key,
            r.time,
            age,
            HumanBytes(r.size).to_string(),
            if r.recorded {
                ""
            } else {
                "  unverified: no record"
            }
        ));
    }
    Ok(())
}
