//! `check`: is the newest recorded backup of a database (one with its integrity record, see
//! `record`, which must be this backup's and give its size) younger than `--max-age`? Exit 0 with its key and age, or 1 with one line saying
//! why not (for monitors and scheduled workflows). A newer backup without a record is
//! unverified: it does not count, and a warning names how many there are. With
//! `--backmon-definition` it prints a backup definition for the backmon monitor instead
//! (`backmon`), without touching the network.

use crate::backmon::{self, Backmon};
use crate::cli::CheckArgs;
use crate::clock::Now;
use crate::config::CheckConfig;
use crate::{download, output, s3, store};
use anyhow::{anyhow, bail, Result};
use serde::Serialize;

#[derive(Serialize)]
struct Fresh<'a> {
    key: &'a str,
    uri: String,
    time: String,
    age_seconds: i64,
    size: u64,
    /// Newer backups without an integrity record, which did not count.
    unrecorded_newer: usize,
}

pub async fn run(args: &CheckArgs) -> Result<()> {
    let cfg = CheckConfig::from_args(args)?;
    let series = &cfg.series;
    let db = series.shown();
    if let Some(b) = &cfg.backmon {
        let def = backmon::definition(&Backmon {
            bucket: &cfg.s3.bucket,
            prefix: &cfg.s3.prefix,
            series,
            format: b.format,
            codec: b.codec,
            schedule: &b.schedule,
            max_age: &args.max_age,
            retention: &b.retention,
        });
        // YAML, multi-line: each line made inert like any other data line.
        for line in def.lines() {
            output::data_line(line);
        }
        return Ok(());
    }
    let client = s3::client(&cfg.s3).await?;
    let (bucket, prefix) = (&cfg.s3.bucket, &cfg.s3.prefix);
    let backups = store::list_backups(&client, bucket, prefix, Some(series)).await?;
    // A monitor must hear of a wrong clock and of keys from the future: either can hide
    // missing backups.
    let now = Now::read();
    now.check_skew().map_err(|skew| anyhow!("{skew}"))?;
    let (backups, future) = store::split_future(backups, &now);
    if let Some(f) = future.first() {
        bail!(
            "{} of {db} is dated {}, in the future ({} in all): it was written by a machine with a wrong clock or planted; it is not counted, so delete it once checked",
            f.key,
            f.id.time.format("%Y-%m-%dT%H:%M:%SZ"),
            future.len()
        );
    }
    let Some(first) = backups.first() else {
        bail!(
            "no backup of {db} under s3://{bucket}/{prefix}: check the bucket, prefix and database, and that the backup job runs"
        );
    };
    let unrecorded_newer = backups.iter().take_while(|b| !b.recorded).count();
    let Some(newest) = backups.get(unrecorded_newer) else {
        bail!(
            "no backup of {db} under s3://{bucket}/{prefix} has its integrity record (the newest is s3://{bucket}/{}): they are unverified, left by runs that stopped before the record or written by an older pg-s3-backup; check that the backup job completes",
            first.key
        );
    };
    // Its record must be this backup's, with its size: a record that only exists is not one.
    let (format, codec) = (newest.id.format, newest.id.codec);
    match download::get_record(&client, bucket, &newest.key, (format, codec)).await? {
        Some(record) if record.size == newest.size => {}
        Some(record) => bail!(
            "newest backup of {db} (s3://{bucket}/{}) is listed with {} bytes but its integrity record says {}: the object was changed or cut; check it with `pg-s3-backup verify --key KEY`",
            newest.key,
            newest.size,
            record.size
        ),
        None => bail!(
            "the integrity record of the newest backup of {db} (s3://{bucket}/{}) is listed but could not be read: it was deleted while check ran, or this role lacks s3:GetObject on it (see `pg-s3-backup policy --purpose restore`)",
            newest.key
        ),
    }
    if unrecorded_newer > 0 {
        output::warn(format_args!(
            "{unrecorded_newer} newer backups of {db} have no integrity record and do not count (the newest is s3://{bucket}/{}): check that the backup job completes",
            first.key
        ));
    }
    let uri = format!("s3://{bucket}/{}", newest.key);
    let age_seconds = (now.reference() - newest.id.time).num_seconds().max(0);
    let age = human_age(age_seconds as u64);
    if age_seconds as u64 > cfg.max_age.as_secs() {
        bail!(
            "newest backup of {db} is {age} old ({uri}), older than --max-age {}: check that the backup job runs and succeeds",
            cfg.max_age_text
        );
    }
    if cfg.json {
        let fresh = Fresh {
            key: &newest.key,
            uri,
            time: newest.id.time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            age_seconds,
            size: newest.size,
            unrecorded_newer,
        };
        output::json(&fresh)?;
    } else {
        output::data_line(format_args!(
            "{uri} is {age} old (within --max-age {})",
            cfg.max_age_text
        ));
    }
    Ok(())
}

/// Ages as people read them: `42s`, `17m`, `30h`, `3d 4h`.
fn human_age(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{m}m"),
        3600..172_800 => format!("{}h", secs / 3600),
        _ if h == 0 => format!("{d}d"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_people_read_them() {
        for (secs, want) in [
            (5, "5s"),
            (125, "2m"),
            (3600, "1h"),
            (30 * 3600 + 59, "30h"),
            (72 * 3600, "3d"),
            (75 * 3600, "3d 3h"),
        ] {
            assert_eq!(human_age(secs), want);
        }
    }
}
