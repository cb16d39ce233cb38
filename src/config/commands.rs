//! The side commands' flags, validated: prune's policy and age, the backup a restore or verify
//! selects, restore's destination and age identity, and check's age, schedule and format. No
//! I/O but reading the identity file.

use super::{
    check_bucket, identities_from, normalize_prefix, parse_abort_after, parse_compression,
    parse_format, policy_from, S3Config,
};
use crate::cli::{CheckArgs, PolicyArgs, PruneArgs, Purpose, RestoreArgs, Selection, VerifyArgs};
use crate::crypt::Identities;
use crate::error::usage;
use crate::iam::{Features, GitHubTrust, Subject};
use crate::layout::{Codec, DumpFormat, Series};
use crate::retention::Policy;
use crate::source::conninfo::ConnInfo;
use anyhow::Result;
use chrono::{DateTime, NaiveDateTime, Utc};
use std::time::Duration;

#[derive(Debug)]
pub struct PruneConfig {
    pub s3: S3Config,
    /// Only this series; `None`: every series under the prefix.
    pub series: Option<Series>,
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
            series: series_from(args.database.as_deref(), args.globals)?,
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
    /// The newest backup of the series, at or before the time if one is given.
    Newest {
        series: Series,
        at: Option<DateTime<Utc>>,
    },
}

impl Which {
    pub fn from_args(which: &Selection) -> Result<Self> {
        if let Some(key) = &which.key {
            return Ok(Self::Key(key.clone()));
        }
        match series_from(which.database.as_deref(), which.globals)? {
            Some(series) => Ok(Self::Newest {
                series,
                at: which.at.as_deref().map(parse_time).transpose()?,
            }),
            None => Err(usage!(
                "no backup selected: pass --key KEY, or --database NAME (or --globals) with --latest or --at TIME"
            )),
        }
    }
}

/// `--database NAME` or `--globals` (clap refuses both); an empty name is refused.
pub fn series_from(database: Option<&str>, globals: bool) -> Result<Option<Series>> {
    match database {
        _ if globals => Ok(Some(Series::Globals)),
        Some("") => Err(usage!(
            "--database is empty: name the database, or pass --globals for the roles and tablespaces"
        )),
        Some(name) => Ok(Some(Series::Database(name.to_string()))),
        None => Ok(None),
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
    /// For encrypted backups.
    pub identities: Option<Identities>,
    /// `--unverified`: a backup without an integrity record is accepted.
    pub unverified: bool,
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
            identities: identities_from(args.age_identity.as_deref())?,
            unverified: args.which.unverified,
        })
    }
}

#[derive(Debug)]
pub struct VerifyConfig {
    pub s3: S3Config,
    pub which: Which,
    /// `--restore-check`: a scratch database the backup is also restored into.
    pub scratch: Option<ConnInfo>,
    /// For encrypted backups.
    pub identities: Option<Identities>,
    /// `--unverified`: a backup without an integrity record is accepted.
    pub unverified: bool,
}

impl VerifyConfig {
    pub fn from_args(args: &VerifyArgs) -> Result<Self> {
        let s3 = S3Config::from_args(&args.s3)?;
        let which = Which::from_args(&args.which)?;
        // Known from the flags: refused before the object is read, not after it is verified.
        let globals = match &which {
            Which::Key(key) => crate::layout::BackupId::is_globals(&s3.prefix, key),
            Which::Newest { series, .. } => *series == Series::Globals,
        };
        if globals && args.restore_check.is_some() {
            return Err(usage!(
                "--restore-check with a globals backup (roles and tablespaces, which are server-wide): restoring it into a scratch database would change the whole server's roles; verify it without --restore-check, and restore it with `restore --target-url`"
            ));
        }
        Ok(Self {
            s3,
            which,
            scratch: args
                .restore_check
                .as_deref()
                .map(|u| {
                    ConnInfo::parse_with_connect_timeout(Some(u), args.connect_timeout.as_deref())
                })
                .transpose()?,
            identities: identities_from(args.age_identity.as_deref())?,
            unverified: args.which.unverified,
        })
    }
}

#[derive(Debug)]
pub struct CheckConfig {
    pub s3: S3Config,
    pub series: Series,
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
    pub codec: Codec,
    pub retention: Policy,
}

impl CheckConfig {
    pub fn from_args(args: &CheckArgs) -> Result<Self> {
        let s3 = S3Config::from_args(&args.s3)?;
        let series = series_from(args.database.as_deref(), args.globals)?
            .ok_or_else(|| usage!("no database to check: pass --database NAME, or --globals"))?;
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
                codec: Codec {
                    compression: parse_compression(&args.compression)?,
                    encrypted: args.encrypted,
                },
                schedule: check_schedule(&args.schedule)?,
                retention: policy_from(&args.retention)?,
            }),
        };
        Ok(Self {
            s3,
            series,
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

/// `policy`: the bucket, prefix and features, and the GitHub trust if asked for (all of its
/// flags or none).
#[derive(Debug)]
pub struct PolicyConfig {
    pub bucket: String,
    pub prefix: String,
    pub features: Features,
    pub github: Option<GitHubTrust>,
}

impl PolicyConfig {
    pub fn from_args(args: &PolicyArgs) -> Result<Self> {
        Ok(Self {
            bucket: check_bucket(&args.bucket)?,
            prefix: normalize_prefix(&args.prefix)?,
            features: features(args),
            github: github_trust(args)?,
        })
    }
}

/// The purposes asked for: `--purpose`, plus the older `--prune` and `--restore` (each with
/// backup); backup alone when none is given.
fn features(args: &PolicyArgs) -> Features {
    let has = |p: Purpose| args.purpose.contains(&p);
    let legacy = args.prune || args.restore;
    Features {
        backup: has(Purpose::Backup) || legacy || args.purpose.is_empty(),
        prune: has(Purpose::Prune) || args.prune,
        restore: has(Purpose::Restore) || args.restore,
    }
}

/// Validates the GitHub flags: all of them or none.
fn github_trust(args: &PolicyArgs) -> Result<Option<GitHubTrust>> {
    let Some(repo) = &args.github_repo else {
        if args.account_id.is_some()
            || args.github_ref.is_some()
            || args.github_environment.is_some()
            || args.any_ref
        {
            return Err(usage!(
                "--account-id, --github-ref, --github-environment and --any-ref need --github-repo ORG/REPO"
            ));
        }
        return Ok(None);
    };
    check_repo(repo)?;
    let Some(account_id) = &args.account_id else {
        return Err(usage!(
            "--github-repo needs --account-id: the 12-digit AWS account that holds the OIDC provider"
        ));
    };
    if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(usage!(
            "--account-id `{account_id}` is invalid: use the 12-digit AWS account id, e.g. 123456789012"
        ));
    }
    let role_ok = (1..=64).contains(&args.role_name.len())
        && args
            .role_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if !role_ok {
        return Err(usage!(
            "--role-name `{}` is invalid: IAM role names are 1-64 letters, digits and +=,.@_-",
            args.role_name
        ));
    }
    let subject = match (&args.github_ref, &args.github_environment) {
        (Some(r), _) => {
            if !r.starts_with("refs/") || r.len() <= 5 || r.chars().any(char::is_whitespace) {
                return Err(usage!(
                    "--github-ref `{r}` is invalid: use a full ref such as refs/heads/main or refs/tags/v1"
                ));
            }
            Subject::Ref(r.clone())
        }
        (None, Some(e)) => {
            if e.trim().is_empty() || e.contains(':') || e.chars().any(char::is_control) {
                return Err(usage!(
                    "--github-environment `{e}` is invalid: use the environment's name, e.g. production"
                ));
            }
            Subject::Environment(e.clone())
        }
        (None, None) if args.any_ref => Subject::AnyRef,
        (None, None) => {
            return Err(usage!(
                "--github-repo {repo} alone would let every branch, tag and pull request of the repository assume the role: pin it with --github-ref refs/heads/main or --github-environment NAME, or pass --any-ref to trust them all"
            ))
        }
    };
    Ok(Some(GitHubTrust {
        repo: repo.clone(),
        subject,
        account_id: account_id.clone(),
        role_name: args.role_name.clone(),
    }))
}

/// GitHub owners are 1-39 letters, digits and hyphens; repositories 1-100 letters, digits, `-`,
/// `_` and `.`.
fn check_repo(repo: &str) -> Result<()> {
    let ok = repo.split_once('/').is_some_and(|(org, name)| {
        (1..=39).contains(&org.len())
            && org.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !org.starts_with('-')
            && (1..=100).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && name != "."
            && name != ".."
    });
    if ok {
        Ok(())
    } else {
        Err(usage!(
            "--github-repo `{repo}` is invalid: use ORG/REPO as in github.com/ORG/REPO, e.g. my-org/my-repo"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_needs_a_key_or_a_database_and_a_real_time() {
        let sel = |key: Option<&str>, db: Option<&str>, at: Option<&str>| Selection {
            key: key.map(str::to_string),
            database: db.map(str::to_string),
            globals: false,
            latest: at.is_none(),
            at: at.map(str::to_string),
            unverified: false,
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
                    series: Series::Database("db".into()),
                    at: Some(t.with_timezone(&Utc))
                }
            );
        }
        let none = Which::from_args(&sel(None, None, None)).unwrap_err();
        assert!(none.is::<crate::error::UsageError>(), "{none}");
        let bad = Which::from_args(&sel(None, Some("db"), Some("yesterday"))).unwrap_err();
        assert!(bad.to_string().contains("`yesterday`"), "{bad}");
        let empty = Which::from_args(&sel(None, Some(""), None)).unwrap_err();
        assert!(empty.is::<crate::error::UsageError>(), "{empty}");
        let globals = Selection {
            globals: true,
            ..sel(None, None, None)
        };
        assert_eq!(
            Which::from_args(&globals).unwrap(),
            Which::Newest {
                series: Series::Globals,
                at: None
            }
        );
    }

    #[test]
    fn schedules_are_cron_shaped() {
        assert_eq!(check_schedule(" 0  3 * * * ").unwrap(), "0 3 * * *");
        for bad in ["", "0 3 * *", "@daily", "0 3 * * * ; rm"] {
            assert!(check_schedule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repo_names() {
        for good in ["o/r", "my-org/my.repo_2", "A1/.github"] {
            assert!(check_repo(good).is_ok(), "{good}");
        }
        for bad in [
            "", "org", "org/", "/repo", "o/r/x", "o_o/r", "-o/r", "o/r r", "o/..",
        ] {
            assert!(check_repo(bad).is_err(), "{bad}");
        }
    }
}
