//! The credential flags, validated: the role ARN, where its tokens come from (decided from the
//! environment, before any call), the session name, its duration and the audience. No I/O
//! beyond reading the environment; `auth` turns this into credentials.

use crate::cli::AuthArgs;
use crate::error::usage;
use anyhow::Result;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// STS's limits on DurationSeconds; roles often cap sessions at 1 hour.
pub const MAX_DURATION_SECONDS: i64 = 43_200;
/// A validated IAM role ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleArn(String);

impl RoleArn {
    pub fn parse(arn: &str) -> Result<Self> {
        let fail =
            || usage!("role ARN `{arn}` is malformed: use arn:aws:iam::123456789012:role/NAME");
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [scheme, partition, service, region, account, resource] = parts.as_slice() else {
            return Err(fail());
        };
        let ok = *scheme == "arn"
            && partition.starts_with("aws")
            && *service == "iam"
            && region.is_empty()
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && resource.strip_prefix("role/").is_some_and(|name| {
                !name.is_empty()
                    && name.len() <= 512
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c))
            });
        if ok {
            Ok(Self(arn.to_string()))
        } else {
            Err(fail())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What `--role-to-assume` and its companions resolved to.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub role: Option<RoleArn>,
    /// Decided from the role and the environment at validation time, before any call.
    pub source: Source,
    pub session_name: String,
    pub duration: Duration,
    pub audience: String,
}

impl AuthConfig {
    pub fn new(
        role: Option<&str>,
        session_name: Option<&str>,
        duration: &str,
        audience: &str,
    ) -> Result<Self> {
        let role = role
            .filter(|r| !r.is_empty())
            .map(RoleArn::parse)
            .transpose()?;
        let session_name = match session_name.filter(|s| !s.is_empty()) {
            Some(name) => check_session_name(name)?,
            None => default_session_name(|k| std::env::var(k).ok()),
        };
        let seconds = super::int_in(duration, "--role-duration-seconds", 1, MAX_DURATION_SECONDS)?;
        if audience.trim().is_empty() {
            return Err(usage!(
                "--audience is empty: use sts.amazonaws.com, the audience AWS expects"
            ));
        }
        let source = select(role.as_ref(), |k| std::env::var(k).ok())?;
        Ok(Self {
            role,
            source,
            session_name,
            duration: Duration::from_secs(seconds as u64),
            audience: audience.to_string(),
        })
    }

    pub fn from_args(args: &AuthArgs) -> Result<Self> {
        Self::new(
            args.role_to_assume.as_deref(),
            args.role_session_name.as_deref(),
            &args.role_duration_seconds,
            &args.audience,
        )
    }
}

/// Where credentials come from, decided from the role and the environment before any call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    DefaultChain,
    WebIdentity(TokenSource),
    AssumeRole,
}

fn select(role: Option<&RoleArn>, env: impl Fn(&str) -> Option<String>) -> Result<Source> {
    if role.is_none() {
        return Ok(Source::DefaultChain);
    }
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    if let (Some(url), Some(token)) = (
        var("ACTIONS_ID_TOKEN_REQUEST_URL"),
        var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
    ) {
        return Ok(Source::WebIdentity(TokenSource::GitHub { url, token }));
    }
    if var("GITHUB_ACTIONS").as_deref() == Some("true") {
        return Err(usage!(
            "--role-to-assume is set but this GitHub Actions job has no ID token: add `permissions: id-token: write` to the job (or workflow)"
        ));
    }
    if let Some(path) = var("AWS_WEB_IDENTITY_TOKEN_FILE") {
        return Ok(Source::WebIdentity(TokenSource::File(path.into())));
    }
    Ok(Source::AssumeRole)
}

/// Where each refresh gets its web identity token.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// GitHub Actions' token endpoint (`ACTIONS_ID_TOKEN_REQUEST_URL` / `_TOKEN`).
    GitHub { url: String, token: String },
    /// A file kept fresh by the platform (EKS, other CI): `AWS_WEB_IDENTITY_TOKEN_FILE`.
    File(PathBuf),
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::GitHub { url, .. } => write!(f, "GitHub({url}, <request token>)"),
            Self::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

fn is_session_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

fn check_session_name(name: &str) -> Result<String> {
    if (2..=64).contains(&name.len()) && name.chars().all(is_session_char) {
        Ok(name.to_string())
    } else {
        Err(usage!(
            "--role-session-name `{name}` is invalid: use 2 to 64 letters, digits or _+=,.@-"
        ))
    }
}

/// `pg-s3-backup-ORG-REPO-RUNID` in Actions, sanitized to STS's rules; `pg-s3-backup` elsewhere.
fn default_session_name(env: impl Fn(&str) -> Option<String>) -> String {
    let mut name = String::from("pg-s3-backup");
    for var in ["GITHUB_REPOSITORY", "GITHUB_RUN_ID"] {
        if let Some(v) = env(var).filter(|v| !v.is_empty()) {
            name.push('-');
            name.extend(v.chars().map(|c| if is_session_char(c) { c } else { '-' }));
        }
    }
    name.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn role_arns() {
        for good in [
            "arn:aws:iam::123456789012:role/backup",
            "arn:aws-us-gov:iam::123456789012:role/path/to/r+=,.@_-",
        ] {
            assert!(RoleArn::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "backup",
            "arn:aws:iam::12345:role/x",
            "arn:aws:s3:::bucket",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam:us-east-1:123456789012:role/x",
        ] {
            let err = RoleArn::parse(bad).unwrap_err().to_string();
            assert!(
                err.contains(&format!("`{bad}`")) && err.contains("arn:aws:iam::"),
                "{err}"
            );
        }
    }

    #[test]
    fn source_selection() {
        let role = RoleArn::parse("arn:aws:iam::123456789012:role/r").unwrap();
        assert_eq!(
            select(None, env(&[("ACTIONS_ID_TOKEN_REQUEST_URL", "u")])).unwrap(),
            Source::DefaultChain
        );
        let gh = env(&[
            ("GITHUB_ACTIONS", "true"),
            ("ACTIONS_ID_TOKEN_REQUEST_URL", "u"),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "t"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/f"),
        ]);
        assert_eq!(
            select(Some(&role), gh).unwrap(),
            Source::WebIdentity(TokenSource::GitHub {
                url: "u".into(),
                token: "t".into()
            })
        );
        let err = select(Some(&role), env(&[("GITHUB_ACTIONS", "true")])).unwrap_err();
        assert!(err.to_string().contains("permissions: id-token: write"));
        assert!(err.is::<crate::error::UsageError>());
        assert_eq!(
            select(Some(&role), env(&[("AWS_WEB_IDENTITY_TOKEN_FILE", "/f")])).unwrap(),
            Source::WebIdentity(TokenSource::File("/f".into()))
        );
        assert_eq!(select(Some(&role), env(&[])).unwrap(), Source::AssumeRole);
    }

    #[test]
    fn session_names() {
        assert_eq!(default_session_name(env(&[])), "pg-s3-backup");
        assert_eq!(
            default_session_name(env(&[
                ("GITHUB_REPOSITORY", "my-org/db.backups"),
                ("GITHUB_RUN_ID", "123")
            ])),
            "pg-s3-backup-my-org-db.backups-123"
        );
        let long = default_session_name(env(&[(
            "GITHUB_REPOSITORY",
            &format!("o/{}", "r".repeat(100)),
        )]));
        assert_eq!(long.len(), 64);
        assert!(check_session_name(&long).is_ok());
        for bad in ["x", "has space", "slash/no", &"a".repeat(65)] {
            assert!(check_session_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_and_audience() {
        let cfg = AuthConfig::new(None, None, "3600", "sts.amazonaws.com").unwrap();
        assert_eq!(cfg.duration, Duration::from_secs(3600));
        for bad in ["0", "-5", "43201", "1h"] {
            assert!(AuthConfig::new(None, None, bad, "a").is_err(), "{bad}");
        }
        assert!(AuthConfig::new(None, None, "900", " ")
            .unwrap_err()
            .to_string()
            .contains("--audience"));
    }
}
