//! AssumeRoleWithWebIdentity with a token fetched fresh for every refresh: GitHub's ID tokens
//! live about 5 minutes and role sessions often 1 hour, so a token read once cannot renew
//! credentials during a long dump. The identity cache calls this provider again before expiry.

use crate::action;
use crate::config::{AuthConfig, TokenSource};
use crate::error::root_cause;
use aws_config::SdkConfig;
use aws_credential_types::provider::{self, error::CredentialsError, ProvideCredentials};
use aws_credential_types::Credentials;
use aws_sdk_sts::error::ProvideErrorMetadata;
use base64::Engine;
use std::fmt;
use std::time::{Duration, SystemTime};

/// Attempts at the token endpoint before giving up; backoff doubles from 500 ms.
const TOKEN_ATTEMPTS: u32 = 4;
const TOKEN_TIMEOUT: Duration = Duration::from_secs(15);

/// A credentials failure whose message is complete as it is: what failed, the values that
/// matter (never a secret) and the fix. `s3::describe` shows it without adding a hint.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

#[derive(Debug)]
pub struct WebIdentityProvider {
    tokens: TokenSource,
    http: reqwest::Client,
    sts: aws_sdk_sts::Client,
    role: String,
    session_name: String,
    duration: Duration,
    audience: String,
}

impl WebIdentityProvider {
    pub fn new(tokens: TokenSource, cfg: &AuthConfig, sdk: &SdkConfig) -> Self {
        // AssumeRoleWithWebIdentity is unsigned: the token is the credential. The regional STS
        // endpoint comes from the region; AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL are honoured
        // through the shared config.
        let sts_conf = aws_sdk_sts::config::Builder::from(sdk).build();
        Self {
            tokens,
            http: reqwest::Client::builder()
                .timeout(TOKEN_TIMEOUT)
                .build()
                .unwrap_or_default(),
            sts: aws_sdk_sts::Client::from_conf(sts_conf),
            role: cfg
                .role
                .as_ref()
                .map(|r| r.as_str().to_string())
                .unwrap_or_default(),
            session_name: cfg.session_name.clone(),
            duration: cfg.duration,
            audience: cfg.audience.clone(),
        }
    }

    async fn token(&self) -> Result<String, AuthError> {
        match &self.tokens {
            TokenSource::File(path) => std::fs::read_to_string(path)
                .map(|t| t.trim().to_string())
                .map_err(|e| AuthError(format!("cannot read the web identity token file `{}`: {e}: check AWS_WEB_IDENTITY_TOKEN_FILE", path.display()))),
            TokenSource::GitHub { url, token } => self.github_token(url, token).await,
        }
    }

    /// GET `$ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD` with the request token as bearer; the
    /// JSON answer's `value` is the ID token. Transient failures are retried with backoff.
    async fn github_token(&self, url: &str, request_token: &str) -> Result<String, AuthError> {
        let sep = if url.contains('?') { '&' } else { '?' };
        let full = format!(
            "{url}{sep}audience={}",
            percent_encoding::utf8_percent_encode(
                &self.audience,
                percent_encoding::NON_ALPHANUMERIC
            )
        );
        let mut delay = Duration::from_millis(500);
        let mut last = String::new();
        for attempt in 1..=TOKEN_ATTEMPTS {
            match self.http.get(&full).bearer_auth(request_token).send().await {
                Ok(resp) if resp.status().is_success() => {
                    let body: serde_json::Value = resp.json().await.map_err(|e| {
                        AuthError(format!(
                            "GitHub's ID token endpoint returned invalid JSON: {e}"
                        ))
                    })?;
                    let value = body["value"].as_str().filter(|v| !v.is_empty()).ok_or_else(|| {
                        AuthError("GitHub's ID token endpoint returned no `value`: check ACTIONS_ID_TOKEN_REQUEST_URL".into())
                    })?;
                    action::mask(value);
                    return Ok(value.to_string());
                }
                Ok(resp) => {
                    let status = resp.status();
                    last = format!("HTTP {status}");
                    // Client errors (bad request token, unknown audience) will not heal on retry.
                    if status.is_client_error() && status.as_u16() != 429 {
                        break;
                    }
                }
                Err(e) => last = root_cause(&e),
            }
            if attempt < TOKEN_ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        Err(AuthError(format!(
            "cannot get a GitHub ID token (audience `{}`): {last}: check that the job has `permissions: id-token: write` and that --audience is right",
            self.audience
        )))
    }

    async fn assume(&self) -> Result<Credentials, AuthError> {
        let token = self.token().await?;
        let out = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(&self.role)
            .role_session_name(&self.session_name)
            .web_identity_token(&token)
            .duration_seconds(self.duration.as_secs() as i32)
            .send()
            .await
            .map_err(|e| self.explain(&e, &token))?;
        let creds = out.credentials.ok_or_else(|| {
            AuthError("STS AssumeRoleWithWebIdentity returned no credentials".into())
        })?;
        action::mask(&creds.secret_access_key);
        action::mask(&creds.session_token);
        let expires = SystemTime::try_from(creds.expiration)
            .unwrap_or_else(|_| SystemTime::now() + self.duration);
        crate::output::note(format_args!(
            "assumed role {} (session {}); credentials valid until {}",
            self.role,
            self.session_name,
            chrono::DateTime::<chrono::Utc>::from(expires).format("%Y-%m-%dT%H:%M:%SZ")
        ));
        Ok(Credentials::new(
            creds.access_key_id,
            creds.secret_access_key,
            Some(creds.session_token),
            Some(expires),
            "web-identity",
        ))
    }

    /// STS refusals name the role and the token's `sub` and `aud` claims (decoded, not
    /// verified), which is what the role's trust policy has to match.
    fn explain<E: ProvideErrorMetadata + std::error::Error + 'static, R: fmt::Debug + 'static>(
        &self,
        err: &aws_sdk_sts::error::SdkError<E, R>,
        token: &str,
    ) -> AuthError {
        let code = err.code().unwrap_or_default();
        let message = err
            .message()
            .map(str::to_string)
            .unwrap_or_else(|| root_cause(err));
        match code {
            "AccessDenied" | "InvalidIdentityToken" | "IDPRejectedClaim" => {
                let (sub, aud) = claims(token);
                AuthError(format!(
                    "STS refused AssumeRoleWithWebIdentity for role {} ({code}: {message}): the token has sub `{sub}` and aud `{aud}`; the role's trust policy must allow both (GitHub's immutable sub form `repo:ORG@ORGID/REPO@REPOID:...` is a common mismatch)",
                    self.role
                ))
            }
            "" => AuthError(format!(
                "cannot reach STS to assume role {}: {message}: check the region and the network",
                self.role
            )),
            _ => AuthError(format!(
                "STS AssumeRoleWithWebIdentity for role {} failed: {code}: {message}",
                self.role
            )),
        }
    }
}

impl ProvideCredentials for WebIdentityProvider {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            self.assume()
                .await
                .map_err(CredentialsError::provider_error)
        })
    }
}

/// The `sub` and `aud` claims of a JWT, without verifying it (for error messages only).
fn claims(token: &str) -> (String, String) {
    let payload = token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.trim_end_matches('='))
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .unwrap_or_default();
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str())
            .collect::<Vec<_>>()
            .join(","),
        _ => "?".into(),
    };
    (text(&payload["sub"]), text(&payload["aud"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_read_without_verification() {
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let token = format!(
            "{}.{}.sig",
            enc(r#"{"alg":"RS256"}"#),
            enc(r#"{"sub":"repo:o/r:ref:refs/heads/main","aud":"sts.amazonaws.com"}"#)
        );
        assert_eq!(
            claims(&token),
            (
                "repo:o/r:ref:refs/heads/main".into(),
                "sts.amazonaws.com".into()
            )
        );
        let many = format!("h.{}.s", enc(r#"{"sub":"s","aud":["a","b"]}"#));
        assert_eq!(claims(&many), ("s".into(), "a,b".into()));
        assert_eq!(claims("garbage"), ("?".into(), "?".into()));
    }
}
