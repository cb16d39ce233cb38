//! Credentials for every command that talks to AWS. Without a role: the standard aws-config
//! chain (environment keys, profile, web identity token file, instance roles). With
//! `--role-to-assume`: a GitHub Actions ID token, else `AWS_WEB_IDENTITY_TOKEN_FILE`, exchanged
//! through STS AssumeRoleWithWebIdentity and refreshed before expiry; else `sts:AssumeRole`
//! on top of the chain's credentials (role chaining). It does not build the S3 client.

mod cache;
mod web_identity;

use crate::config::{AuthConfig, Source};
use aws_config::SdkConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
pub use cache::CredentialsCache;
use std::time::Duration;
pub use web_identity::AuthError;
use web_identity::WebIdentityProvider;

/// Refresh credentials when this much validity is left (or half the session, if shorter), so a
/// large part never starts on credentials about to expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(600);

/// The cached credentials for S3 clients: the role's when a role is set, else the default
/// chain's; `None` when the environment configures no provider at all.
pub async fn credentials(cfg: &AuthConfig, sdk: &SdkConfig) -> Option<CredentialsCache> {
    let provider = match (&cfg.source, &cfg.role) {
        (Source::WebIdentity(tokens), _) => {
            SharedCredentialsProvider::new(WebIdentityProvider::new(tokens.clone(), cfg, sdk))
        }
        (Source::AssumeRole, Some(role)) => SharedCredentialsProvider::new(
            aws_config::sts::AssumeRoleProvider::builder(role.as_str())
                .session_name(&cfg.session_name)
                .session_length(cfg.duration)
                .configure(sdk)
                .build()
                .await,
        ),
        _ => sdk.credentials_provider()?,
    };
    Some(CredentialsCache::new(provider, refresh_margin(cfg)))
}

fn refresh_margin(cfg: &AuthConfig) -> Duration {
    REFRESH_MARGIN.min(cfg.duration / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_margin_is_ten_minutes_or_half_a_short_session() {
        let cfg = AuthConfig::new(None, None, "3600", "sts.amazonaws.com").unwrap();
        assert_eq!(refresh_margin(&cfg), Duration::from_secs(600));
        let short = AuthConfig::new(None, None, "8", "sts.amazonaws.com").unwrap();
        assert_eq!(refresh_margin(&short), Duration::from_secs(4));
    }
}
