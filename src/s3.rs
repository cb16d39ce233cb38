//! The S3 client: region, endpoint and addressing for S3-compatible stores, checksum policy,
//! retries, and one-line descriptions of S3 errors. It does not decide what to upload.

use crate::auth::CredentialsCache;
use crate::cli::ChecksumArg;
use crate::config::S3Config;
use crate::error::usage;
use anyhow::Result;
use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::Client;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{ClassifyRetry, RetryAction};
use aws_smithy_types::retry::ErrorKind;
use std::time::Duration;

/// Attempts per request, first included. The SDK's standard mode retries throttling
/// (SlowDown, 503), 5xx, and transient I/O errors (connection reset, timeouts) with jittered
/// exponential backoff from `INITIAL_BACKOFF` up to 20 s; part bodies are `Bytes`, cheap to resend.
/// `RefreshOnExpiry` adds ExpiredToken, retried with new credentials.
pub const MAX_ATTEMPTS: u32 = 8;
const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The slowest upload rate a request is given time for: a request that sends a body gets one
/// second per MiB on top of `--request-timeout`.
const MIN_SEND_RATE: u64 = 1 << 20;
/// CompleteMultipartUpload can take S3 minutes on large objects; it gets this
/// many times `--request-timeout`.
const SLOW_OPERATION_FACTOR: u32 = 10;

pub async fn client(cfg: &S3Config) -> Result<Client> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(INITIAL_BACKOFF),
        )
        .timeout_config(attempt_timeout(cfg.request_timeout))
        // The SDK fails a body that stalls for 5 s by default; --request-timeout is the
        // documented limit for a stalled download (see `download`), so it is the SDK's too.
        .stalled_stream_protection(
            StalledStreamProtectionConfig::enabled()
                .grace_period(cfg.request_timeout)
                .build(),
        );
    if let Some(region) = &cfg.region {
        loader = loader.region(Region::new(region.clone()));
    } else if cfg.endpoint_url.is_some() {
        // S3-compatible stores ignore the region, but the SDK needs one to sign.
        loader = loader.region(
            aws_config::meta::region::RegionProviderChain::default_provider()
                .or_else(Region::new("us-east-1")),
        );
    }
    let sdk = loader.load().await;
    if sdk.region().is_none() {
        return Err(usage!("no AWS region is set: pass --region (or set AWS_REGION) to the bucket's region, e.g. us-east-1"));
    }
    let mut builder =
        aws_sdk_s3::config::Builder::from(&sdk).force_path_style(cfg.force_path_style);
    if let Some(cache) = crate::auth::credentials(&cfg.auth, &sdk).await {
        // Ours instead of the SDK's identity cache: it refreshes minutes ahead of expiry, not
        // seconds, and can drop credentials that S3 calls expired.
        builder = builder
            .credentials_provider(cache.clone())
            .identity_cache(IdentityCache::no_cache())
            .retry_classifier(RefreshOnExpiry(cache));
    }
    if let Some(url) = &cfg.endpoint_url {
        builder = builder.endpoint_url(url);
    }
    // The store's clock, the second opinion on "now" (see `clock`).
    builder = builder.interceptor(crate::clock::StoreDate);
    if let Some((request, response)) = checksum_policy(cfg) {
        builder = builder
            .request_checksum_calculation(request)
            .response_checksum_validation(response);
    }
    Ok(Client::from_conf(builder.build()))
}

fn attempt_timeout(limit: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(limit)
        .build()
}

/// Per-request configuration for a request that sends `bytes`: each attempt may take
/// `--request-timeout` plus one second per MiB before it is abandoned and retried, so a stalled
/// connection is given up on without cutting off a large part on a slow link.
pub fn sending(client: &Client, bytes: u64) -> aws_sdk_s3::config::Builder {
    let base = request_timeout(client);
    let limit = base + Duration::from_secs(bytes.div_ceil(MIN_SEND_RATE));
    aws_sdk_s3::config::Builder::new().timeout_config(attempt_timeout(limit))
}

/// Per-request configuration for CompleteMultipartUpload, which S3 may take
/// minutes to finish on large objects.
pub fn slow(client: &Client) -> aws_sdk_s3::config::Builder {
    let limit = request_timeout(client) * SLOW_OPERATION_FACTOR;
    aws_sdk_s3::config::Builder::new().timeout_config(attempt_timeout(limit))
}

/// `--request-timeout` as configured on `client`.
pub fn request_timeout(client: &Client) -> Duration {
    client
        .config()
        .timeout_config()
        .and_then(|t| t.operation_attempt_timeout())
        .unwrap_or(crate::limits::DEFAULT_REQUEST_TIMEOUT)
}

/// Error codes meaning the request was signed with credentials that have expired.
const EXPIRED: &[&str] = &[
    "ExpiredToken",
    "ExpiredTokenException",
    "TokenRefreshRequired",
];

/// Makes an ExpiredToken answer retryable, after dropping the cached credentials so that the
/// retry signs with new ones. A role session can end during a long part, or the clock can be
/// off; without this the backup would fail on its first expired request.
#[derive(Debug)]
struct RefreshOnExpiry(CredentialsCache);

impl ClassifyRetry for RefreshOnExpiry {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(Err(err)) = ctx.output_or_error() else {
            return RetryAction::NoActionIndicated;
        };
        match err.as_operation_error().and_then(error_code) {
            Some(code) if EXPIRED.contains(&code) => {
                self.0.invalidate();
                RetryAction::retryable_error(ErrorKind::TransientError)
            }
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "RefreshOnExpiry"
    }
}

/// The store's error code, for the S3 operations this tool sends (the orchestrator hands
/// classifiers a type-erased error).
fn error_code(err: &aws_smithy_runtime_api::client::interceptors::context::Error) -> Option<&str> {
    macro_rules! code_of {
        ($($module:ident::$error:ident),*) => {
            $(if let Some(e) = err.downcast_ref::<aws_sdk_s3::operation::$module::$error>() {
                return e.code();
            })*
        };
    }
    code_of!(
        upload_part::UploadPartError,
        put_object::PutObjectError,
        create_multipart_upload::CreateMultipartUploadError,
        complete_multipart_upload::CompleteMultipartUploadError,
        abort_multipart_upload::AbortMultipartUploadError,
        head_object::HeadObjectError,
        get_object::GetObjectError,
        list_objects_v2::ListObjectsV2Error,
        list_multipart_uploads::ListMultipartUploadsError,
        delete_objects::DeleteObjectsError,
        delete_object::DeleteObjectError
    );
    None
}

/// Since 2025 the SDK adds CRC checksums to every upload by default, which several
/// S3-compatible stores reject. `auto` keeps that default on AWS and sends checksums only where
/// an operation requires them on a custom endpoint, unless AWS_REQUEST_CHECKSUM_CALCULATION
/// (read by the SDK itself) says otherwise.
fn checksum_policy(
    cfg: &S3Config,
) -> Option<(RequestChecksumCalculation, ResponseChecksumValidation)> {
    let when_required = (
        RequestChecksumCalculation::WhenRequired,
        ResponseChecksumValidation::WhenRequired,
    );
    let when_supported = (
        RequestChecksumCalculation::WhenSupported,
        ResponseChecksumValidation::WhenSupported,
    );
    match cfg.checksum {
        ChecksumArg::WhenRequired => Some(when_required),
        ChecksumArg::WhenSupported => Some(when_supported),
        ChecksumArg::Auto => {
            let env_set = std::env::var_os("AWS_REQUEST_CHECKSUM_CALCULATION").is_some();
            (cfg.endpoint_url.is_some() && !env_set).then_some(when_required)
        }
    }
}

/// One line for an S3 error: the operation, the object, the store's code and message, and a fix
/// for the common ones.
pub fn describe<E, R>(op: &str, target: &str, err: &SdkError<E, R>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    if let Some(auth) = find_in_chain::<crate::auth::AuthError>(err) {
        return anyhow::anyhow!("{auth}");
    }
    if let Some(creds) = find_in_chain::<CredentialsError>(err) {
        if matches!(creds, CredentialsError::CredentialsNotLoaded(_)) {
            return anyhow::anyhow!("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or --role-to-assume");
        }
        return anyhow::anyhow!(
            "cannot get AWS credentials for S3 {op}: {}: check the base credentials, --role-to-assume and the role's trust policy",
            chain_text(creds)
        );
    }
    let (code, message) = match err {
        SdkError::ServiceError(_) => (
            err.code().unwrap_or("unknown").to_string(),
            // Stores end messages with a period; the hint follows after a colon.
            err.message()
                .unwrap_or("")
                .trim_end_matches('.')
                .to_string(),
        ),
        _ => ("".to_string(), crate::error::root_cause(err)),
    };
    let hint = match code.as_str() {
        "AccessDenied" | "Forbidden" => &*format!(
            "the credentials lack {} on {target}: grant it (see `pg-s3-backup policy`)",
            permission_for(op)
        ),
        "NoSuchBucket" => "check --bucket, and create the bucket first",
        "InvalidAccessKeyId" | "SignatureDoesNotMatch" => "check the AWS access key and secret",
        "ExpiredToken" | "InvalidToken" => "the credentials expired: refresh them",
        "PermanentRedirect" | "AuthorizationHeaderMalformed" => {
            "check --region: it must be the bucket's region"
        }
        "" => "check --endpoint-url and the network",
        _ => "see the store's message",
    };
    let code = if code.is_empty() {
        String::new()
    } else {
        format!("{code}: ")
    };
    anyhow::anyhow!("S3 {op} on {target} failed: {code}{message}: {hint}")
}

/// The SDK's error type for S3 operations.
pub type S3Error<E> = SdkError<E, aws_smithy_runtime_api::http::Response>;

/// The credentials may not do this: an AccessDenied code, or a bare 403 for HEAD requests, which
/// carry no error body (a 403 with another code, such as InvalidAccessKeyId, is not a denial).
pub fn is_denied<E: ProvideErrorMetadata>(err: &S3Error<E>) -> bool {
    match err.code() {
        Some(code) => matches!(code, "AccessDenied" | "Forbidden"),
        None => err
            .raw_response()
            .is_some_and(|r| r.status().as_u16() == 403),
    }
}

/// The store does not implement this request (s3s-fs 0.14 lacks ListMultipartUploads, some
/// stores DeleteObjects or conditional writes).
pub fn is_not_implemented<E: ProvideErrorMetadata>(err: &S3Error<E>) -> bool {
    matches!(err.code(), Some("NotImplemented" | "MethodNotAllowed"))
        || err
            .raw_response()
            .is_some_and(|r| matches!(r.status().as_u16(), 501 | 405))
}

/// A conditional write lost: the object exists (412), or another conditional write of it is in
/// flight (409).
pub fn lost_condition<E: ProvideErrorMetadata>(err: &S3Error<E>) -> bool {
    matches!(
        err.code(),
        Some("PreconditionFailed" | "ConditionalRequestConflict")
    ) || err
        .raw_response()
        .is_some_and(|r| matches!(r.status().as_u16(), 409 | 412))
}

/// The IAM permission an S3 operation needs.
fn permission_for(op: &str) -> &'static str {
    let name = op.split_whitespace().next().unwrap_or(op);
    match name {
        "PutObject" | "UploadPart" | "CreateMultipartUpload" | "CompleteMultipartUpload" => {
            "s3:PutObject"
        }
        "AbortMultipartUpload" => "s3:AbortMultipartUpload",
        "GetObject" | "HeadObject" => "s3:GetObject",
        "ListObjectsV2" => "s3:ListBucket",
        "DeleteObject" | "DeleteObjects" => "s3:DeleteObject",
        "ListMultipartUploads" => "s3:ListBucketMultipartUploads",
        _ => "the permission for this action",
    }
}

/// The first error of type `T` in the source chain (credential failures arrive wrapped).
fn find_in_chain<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        source = e.source();
    }
    None
}

/// Every message in the chain, once each, on one line.
fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        let text = e.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}
