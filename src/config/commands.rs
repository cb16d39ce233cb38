//! The side commands' flags, validated: prune's policy and age, the backup a restore or verify
//! selects, restore's destination, and check's age, schedule and format. No I/O.

use super::{parse_abort_after, parse_format, policy_from, S3Config};
use crate::cli::{CheckArgs, PruneArgs, RestoreArgs, Selection, VerifyArgs};
use crate::error::usage;
use crate::layout::DumpFormat;
use crate::retention::Policy;
use crate::source::conninfo::ConnInfo;
use anyhow::Result;
use chrono::{DateTime, NaiveDateTime, Utc};
use std::time::Duration;

#[derive(Debug)]
pub struct PruneConfig {
    pub s3: S3Config,
    pub database: Option<String>,
    /// Never empty.
    pub policy: Policy,
    pub abort_after: Duration,
    pub dry_run: bool,
    pub json: bool,
}

impl PruneConfig {
    pub fn from_args(args: &PruneArgs) -> Result<Self> {
        let s3 = S3Config::from_args(&args.s3)?;
        let policy = policy_from(&args.retention)?;
        if policy.is_empty() {
            return Err(usage!(
                "no keep rule given: pass at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly, --keep-within"
            ));
        }
        Ok(Self {
            s3,
            database: args.database.clone(),
            policy,
            abort_after: parse_abort_after(&args.abort_incomplete_after, Duration::ZERO)?,
            dry_run: args.dry_run,
            json: args.json,
        })
    }
}

/// Which backup a restore or verify reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    Key(String),
    /// The newest backup of the database, at or before the time if one is given.
    Newest {
        database: String,
        at: Option<DateTime<Utc>>,
    },
}

impl Which {
    pub fn from_args(which: &Selection) -> Result<Self> {
        match (&which.key, &which.database) {
            (Some(key), _) => Ok(Self::Key(key.clone())),
            (None, Some(database)) => Ok(Self::Newest {
                database: database.clone(),
                at: which.at.as_deref().map(parse_time).transpose()?,
            }),
            (None, None) => Err(usage!(
                "no backup selected: pass --key KEY, or --database NAME with --latest or --at TIME"
            )),
        }
    }
}

fn parse_time(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%SZ").map(|t| t.and_utc()))
        .map_err(|_| usage!("--at `{text}` is not a time: use RFC 3339 (2026-11-23T03:00:00Z) or 20261123T030000Z"))
}

/// Where a restore writes.
#[derive(Debug)]
pub enum Destination {
    Database(ConnInfo),
    Stdout,
}

#[derive(Debug)]
pub struct RestoreConfig {
    pub s3: S3Config,
    pub which: Which,
    pub destination: Destination,
    pub force: bool,
}

impl RestoreConfig {
    pub fn from_args(args: &RestoreArgs) -> Result<Self> {
        let s3 = S3Config::from_args(&args.s3)?;
        let which = Which::from_args(&args.which)?;
        let destination = match (&args.target_url, args.output.as_deref()) {
            (Some(url), None) => Destination::Database(ConnInfo::parse_with_connect_timeout(
                Some(url),
                args.connect_timeout.as_deref(),
            )?),
            (None, Some("-")) => Destination::Stdout,
            (None, Some(other)) => return Err(usage!("--output `{other}` is not supported: use `--output -` for stdout (nothing is written to disk)")),
            (Some(_), Some(_)) => return Err(usage!("--target-url and --output both given: choose one")),
            (None, None) => return Err(usage!("no destination: pass --target-url URL, or --output - for stdout")),
        };
        Ok(Self {
            s3,
            which,
            destination,
            force: args.force,
        })
    }
}

#[derive(Debug)]
pub struct VerifyConfig {
    pub s3: S3Config,
    pub which: Which,
    /// `--restore-check`: a scratch database the backup is also restored into.
    pub scratch: Option<ConnInfo>,
}

impl VerifyConfig {
    pub fn from_args(args: &VerifyArgs) -> Result<Self> {
        Ok(Self {
            s3: S3Config::from_args(&args.s3)?,
            which: Which::from_args(&args.which)?,
            scratch: args
                .restore_check
                .as_deref()
                .map(|u| {
                    ConnInfo::parse_with_connect_timeout(Some(u), args.connect_timeout.as_deref())
                })
                .transpose()?,
        })
    }
}

#[derive(Debug)]
pub struct CheckConfig {
    pub s3: S3Config,
    pub database: String,
    pub max_age: Duration,
    /// `--max-age` as given, for messages and backmon.
    pub max_age_text: String,
    pub json: bool,
    /// `--backmon-definition`: print the definition instead of checking.
    pub backmon: Option<BackmonConfig>,
}

#[derive(Debug)]
pub struct BackmonConfig {
    pub schedule: String,
    pub format: DumpFormat,
    pub retention: Policy,
}

impl CheckConfig {
    pub fn from_args(args: &CheckArgs) -> Result<Self> {
        let s3 = S3Config::from_args(&args.s3)?;
        if args.database.is_empty() {
            return Err(usage!("--database is empty: name the database to check"));
        }
        let max_age = humantime::parse_duration(args.max_age.trim())
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                usage!(
                    "--max-age `{}` is invalid: use a duration such as 26h, 36h or 8d",
                    args.max_age
                )
            })?;
        let backmon = match args.backmon_definition {
            false => None,
            true => Some(BackmonConfig {
                format: parse_format(&args.format)?,
                schedule: check_schedule(&args.schedule)?,
                retention: policy_from(&args.retention)?,
            }),
        };
        Ok(Self {
            s3,
            database: args.database.clone(),
            max_age,
            max_age_text: args.max_age.trim().to_string(),
            json: args.json,
            backmon,
        })
    }
}

/// A cron expression of 5 fields (backmon's cronexpr also takes 6 or 7, with seconds and
/// years; we only check the shape here, not each field's range).
fn check_schedule(value: &str) -> Result<String> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let ok = (5..=7).contains(&fields.len())
        && fields.iter().all(|f| {
            f.chars()
                .all(|c| c.is_ascii_alphanumeric() || "*/,-?LW#".contains(c))
        });
    if !ok {
        return Err(usage!(
            "--schedule `{value}` is invalid: use a cron expression such as `0 3 * * *` (minute hour day month weekday, UTC)"
        ));
    }
    Ok(fields.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_needs_a_key_or_a_database_and_a_real_time() {
        let sel = |key: Option<&str>, db: Option<&str>, at: Option<&str>| Selection {
            key: key.map(str::to_string),
            database: db.map(str::to_string),
            latest: at.is_none(),
            at: at.map(str::to_string),
        };
        assert_eq!(
            Which::from_args(&sel(Some("k"), None, None)).unwrap(),
            Which::Key("k".into())
        );
        let t = DateTime::parse_from_rfc3339("2026-11-23T03:00:00Z").unwrap();
        for at in ["2026-11-23T03:00:00Z", "20261123T030000Z"] {
            assert_eq!(
                Which::from_args(&sel(None, Some("db"), Some(at))).unwrap(),
                Which::Newest {
                    database: "db".into(),
                    at: Some(t.with_timezone(&Utc))
                }
            );
        }
        let none = Which::from_args(&sel(None, None, None)).unwrap_err();
        assert!(none.is::<crate::error::UsageError>(), "{none}");
        let bad = Which::from_args(&sel(None, Some("db"), Some("yesterday"))).unwrap_err();
        assert!(bad.to_string().contains("`yesterday`"), "{bad}");
    }

    #[test]
    fn schedules_are_cron_shaped() {
        assert_eq!(check_schedule(" 0  3 * * * ").unwrap(), "0 3 * * *");
        for bad in ["", "0 3 * *", "@daily", "0 3 * * * ; rm"] {
            assert!(check_schedule(bad).is_err(), "{bad}");
        }
    }
}
