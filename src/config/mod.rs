//! Turns parsed flags into a validated configuration of concrete types. No network and no child
//! process here, and no file read but the age key files the flags name: every check that can
//! fail before the first network call or child process lives in this file.

mod auth;
mod commands;
mod ping;

use crate::cli::{BackupArgs, ChecksumArg, RetentionArgs, S3Args};
use crate::compress::{self, GzipOptions, ZstdOptions};
use crate::crypt::{Identities, Recipients};
use crate::error::usage;
use crate::layout::DumpFormat;
use crate::layout::{Codec, Compression};
use crate::limits::{MAX_PART_SIZE, MIN_PART_SIZE, S3_MAX_PARTS};
use crate::retention::{Policy, Span};
use crate::source::conninfo::ConnInfo;
use anyhow::Result;
pub use auth::{AuthConfig, RoleArn, Source, TokenSource, MAX_DURATION_SECONDS};
pub use commands::{
    series_from, BackmonConfig, CheckConfig, Destination, PolicyConfig, PruneConfig, RestoreConfig,
    VerifyConfig, Which,
};
pub use ping::PingUrl;
use std::path::PathBuf;
use std::time::Duration;

/// S3 location and client settings shared by every command.
#[derive(Debug, Clone)]
pub struct S3Config {
    pub bucket: String,
    /// Empty, or ending in `/`.
    pub prefix: String,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub force_path_style: bool,
    pub checksum: ChecksumArg,
    /// Per-attempt limit for S3 requests without a body; see `s3::sending` for the others.
    pub request_timeout: Duration,
    pub auth: AuthConfig,
}

/// Object attributes set on each backup.
#[derive(Debug, Clone, Default)]
pub struct ObjectOptions {
    pub storage_class: Option<aws_sdk_s3::types::StorageClass>,
    pub sse: Option<aws_sdk_s3::types::ServerSideEncryption>,
    pub sse_kms_key_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// `--part-size`: the smallest part; the plan may choose larger ones for a large database.
    pub part_size: u64,
    pub max_parts: u32,
    pub concurrency: usize,
}

#[derive(Debug)]
pub struct BackupConfig {
    /// The database backed up; with `all`, the server and the database to connect to first.
    pub conn: ConnInfo,
    /// `--all-databases`: these names left out (each given once, none empty).
    pub all: Option<Vec<String>>,
    pub s3: S3Config,
    pub format: DumpFormat,
    pub pg_dump_args: Vec<String>,
    pub pg_dump_path: Option<PathBuf>,
    /// The compressor and its options.
    pub compress: compress::Options,
    /// Set: the stored bytes are encrypted to these age recipients.
    pub recipients: Option<Recipients>,
    pub upload: UploadOptions,
    pub object: ObjectOptions,
    /// Applied after a verified upload; empty means no pruning.
    pub retention: Policy,
    /// Plan retention only; delete nothing.
    pub dry_run: bool,
    /// Verify the new object before pruning.
    pub verify: bool,
    /// With a keep policy: clean up killed runs' uploads and locks older than this.
    pub abort_after: std::time::Duration,
    pub json: bool,
    /// `--ping-url`: the health-check pings of this run.
    pub ping: Option<PingUrl>,
}

impl BackupConfig {
    pub fn from_args(args: &BackupArgs) -> Result<Self> {
        let s3 = S3Config::from_args(&args.s3)?;
        let threads = args
            .threads
            .as_deref()
            .map(|t| int_in(t, "--threads", 1, 256).map(|n| n as usize))
            .transpose()?;
        let compress = compress_options(
            &args.compression,
            args.compression_level.as_deref(),
            threads,
        )?;
        let recipients = recipients_from(args)?;
        let part_size = parse_size(&args.part_size, "--part-size")?;
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
            return Err(usage!(
                "--part-size `{}` is out of range: S3 parts must be from 5MiB to 5GiB",
                args.part_size
            ));
        }
        let max_parts = int_in(&args.max_parts, "--max-parts", 1, S3_MAX_PARTS.into())? as u32;
        let upload = UploadOptions {
            part_size,
            max_parts,
            concurrency: int_in(&args.upload_concurrency, "--upload-concurrency", 1, 64)? as usize,
        };
        Ok(Self {
            conn: ConnInfo::parse_with_connect_timeout(
                args.database_url.as_deref(),
                args.connect_timeout.as_deref(),
            )?,
            all: all_databases(args)?,
            s3,
            format: parse_format(&args.format)?,
            pg_dump_args: crate::source::pg_dump_args::check(&args.pg_dump_args)?,
            pg_dump_path: args.pg_dump_path.clone(),
            compress,
            recipients,
            upload,
            object: ObjectOptions::from_args(args)?,
            retention: policy_from(&args.retention)?,
            dry_run: args.dry_run,
            verify: args.verify,
            abort_after: parse_abort_after(
                &args.abort_incomplete_after,
                std::time::Duration::from_secs(3600),
            )?,
            json: args.json,
            ping: ping_url(args.ping_url.as_deref())?,
        })
    }
}

/// `--all-databases` and its `--exclude-database` names.
fn all_databases(args: &BackupArgs) -> Result<Option<Vec<String>>> {
    if !args.all_databases {
        return match args.exclude_databases.first() {
            Some(name) => Err(usage!(
                "--exclude-database `{name}` is given without --all-databases: add --all-databases, or drop the exclusion"
            )),
            None => Ok(None),
        };
    }
    let mut names: Vec<String> = Vec::new();
    for name in &args.exclude_databases {
        if name.is_empty() {
            return Err(usage!(
                "--exclude-database is empty: give the exact name of a database to leave out"
            ));
        }
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    Ok(Some(names))
}

/// `--ping-url` (env PING_URL), empty meaning none. The value is never quoted: it holds the
/// check's token.
fn ping_url(value: Option<&str>) -> Result<Option<PingUrl>> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => PingUrl::parse(v).map(Some).map_err(|why| {
            usage!("--ping-url (or PING_URL) is not a health-check URL: {why}: give the check's http(s) ping URL, e.g. https://hc-ping.com/UUID")
        }),
    }
}

impl BackupConfig {
    /// How the stored bytes are made, as the key and the metadata say it.
    pub fn codec(&self) -> Codec {
        Codec {
            compression: match self.compress {
                compress::Options::Gzip(_) => Compression::Gzip,
                compress::Options::Zstd(_) => Compression::Zstd,
            },
            encrypted: self.recipients.is_some(),
        }
    }
}

/// zstd's default thread count at most: libzstd at level 3 compresses pg_dump's output at
/// ~300 MB/s a thread, so 8 outrun any single pg_dump, while each thread holds ~10 MB. From
/// level 10 a thread holds up to ~95 MB (level 19: an 8 MiB window, and libzstd raises the job
/// to its overlap), so at most [`ZSTD_HIGH_LEVEL_THREADS`]. `--threads` sets any count.
const ZSTD_DEFAULT_THREADS: usize = 8;
const ZSTD_HIGH_LEVEL_THREADS: usize = 4;

fn compress_options(
    name: &str,
    level: Option<&str>,
    threads: Option<usize>,
) -> Result<compress::Options> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match parse_compression(name)? {
        Compression::Gzip => Ok(compress::Options::Gzip(GzipOptions {
            level: level.map_or(Ok(6), |l| int_in(l, "--compression-level", 1, 9))? as u32,
            threads: threads.unwrap_or(cores),
            ..GzipOptions::default()
        })),
        Compression::Zstd => {
            let level = level.map_or(Ok(compress::ZSTD_DEFAULT_LEVEL.into()), |l| {
                int_in(l, "--compression-level", 1, 19)
            })? as i32;
            let most = match level {
                ..=9 => ZSTD_DEFAULT_THREADS,
                _ => ZSTD_HIGH_LEVEL_THREADS,
            };
            Ok(compress::Options::Zstd(ZstdOptions {
                level,
                threads: threads.unwrap_or(cores.min(most)),
            }))
        }
    }
}

pub fn parse_compression(name: &str) -> Result<Compression> {
    match name.trim().to_ascii_lowercase().as_str() {
        "gzip" | "gz" => Ok(Compression::Gzip),
        "zstd" | "zst" => Ok(Compression::Zstd),
        _ => Err(usage!(
            "--compression `{name}` is not supported: use gzip or zstd"
        )),
    }
}

/// The age recipients of `--age-recipient` and `--age-recipients-file`, or of AGE_RECIPIENTS
/// (comma- or newline-separated), which may not be combined with them. A file that cannot be
/// read, a list that names nothing, or any entry that is not a public key, is a usage error
/// naming where it came from.
fn recipients_from(args: &BackupArgs) -> Result<Option<Recipients>> {
    let mut entries: Vec<(String, String)> = args
        .age_recipients
        .iter()
        .map(|r| ("--age-recipient".to_string(), r.clone()))
        .collect();
    if let Some(path) = &args.age_recipients_file {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            usage!("--age-recipients-file `{shown}` cannot be read: {e}: give a file of age public keys, one per line")
        })?;
        let lines = Recipients::file_entries(&shown, &text);
        if lines.is_empty() {
            return Err(usage!(
                "--age-recipients-file `{shown}` holds no recipient: add one age public key per line"
            ));
        }
        entries.extend(lines);
    }
    if let Some(list) = env_nonempty("AGE_RECIPIENTS") {
        // Dropping it for the flags would encrypt to keys the operator may not hold; dropping
        // an AGE_RECIPIENTS that names nothing would not encrypt at all.
        if !entries.is_empty() {
            return Err(usage!(
                "AGE_RECIPIENTS is set, and so are --age-recipient or --age-recipients-file: keep one, or list every recipient in one of them"
            ));
        }
        entries = list
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
            .map(|(nr, e)| (format!("AGE_RECIPIENTS entry {}", nr + 1), e.to_string()))
            .collect();
        if entries.is_empty() {
            return Err(usage!(
                "AGE_RECIPIENTS is set but names no recipient: give age public keys (age1...), comma- or newline-separated, or unset it"
            ));
        }
    }
    if let Some((origin, _)) = entries.iter().find(|(_, e)| e.trim().is_empty()) {
        return Err(usage!(
            "{origin} is empty: give an age public key (age1...)"
        ));
    }
    Recipients::parse(entries.iter().map(|(o, e)| (o.clone(), e.as_str())))
}

/// The identities of `--age-identity` (env AGE_IDENTITY_FILE), or AGE_IDENTITY holding one
/// itself; `None` when neither is set. Both set is a usage error: which one was meant?
pub fn identities_from(file: Option<&std::path::Path>) -> Result<Option<Identities>> {
    let inline = std::env::var("AGE_IDENTITY")
        .ok()
        .filter(|v| !v.trim().is_empty());
    match (file, inline) {
        (Some(_), Some(_)) => Err(usage!(
            "both --age-identity (or AGE_IDENTITY_FILE) and AGE_IDENTITY are set: keep one"
        )),
        (Some(path), None) => {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| {
                usage!("--age-identity `{shown}` cannot be read: {e}: give the key file age-keygen wrote")
            })?;
            Identities::parse(&format!("--age-identity `{shown}`"), &text).map(Some)
        }
        (None, Some(text)) => Identities::parse("AGE_IDENTITY", &text).map(Some),
        (None, None) => Ok(None),
    }
}

impl S3Config {
    pub fn from_args(args: &S3Args) -> Result<Self> {
        let endpoint_url = args
            .endpoint_url
            .clone()
            .or_else(|| env_nonempty("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env_nonempty("AWS_ENDPOINT_URL"));
        if let Some(url) = &endpoint_url {
            check_endpoint(url)?;
        }
        let region = args.region.clone().filter(|r| !r.is_empty());
        if let Some(r) = &region {
            let ok = r.len() <= 32
                && !r.is_empty()
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(usage!(
                    "region `{r}` is invalid: use an AWS region name such as us-east-1"
                ));
            }
        }
        Ok(Self {
            bucket: check_bucket(&args.bucket)?,
            prefix: normalize_prefix(&args.prefix)?,
            region,
            endpoint_url,
            force_path_style: args.force_path_style,
            checksum: args.checksum,
            request_timeout: Duration::from_secs(int_in(
                &args.request_timeout,
                "--request-timeout",
                1,
                3600,
            )? as u64),
            auth: AuthConfig::from_args(&args.auth)?,
        })
    }
}

impl ObjectOptions {
    fn from_args(args: &BackupArgs) -> Result<Self> {
        use aws_sdk_s3::types::{ServerSideEncryption, StorageClass};
        let storage_class = match args.storage_class.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => {
                let class = StorageClass::from(s);
                if !StorageClass::values().contains(&s) {
                    return Err(usage!(
                        "--storage-class `{s}` is unknown: use one of {}",
                        StorageClass::values().join(", ")
                    ));
                }
                Some(class)
            }
        };
        let sse = match args.sse.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some("AES256") => Some(ServerSideEncryption::Aes256),
            Some("aws:kms") => Some(ServerSideEncryption::AwsKms),
            Some(other) => return Err(usage!("--sse `{other}` is unknown: use AES256 or aws:kms")),
        };
        let sse_kms_key_id = args.sse_kms_key_id.clone().filter(|s| !s.is_empty());
        if sse_kms_key_id.is_some() && sse != Some(ServerSideEncryption::AwsKms) {
            return Err(usage!(
                "--sse-kms-key-id needs --sse aws:kms: add --sse aws:kms or drop the key id"
            ));
        }
        Ok(Self {
            storage_class,
            sse,
            sse_kms_key_id,
        })
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Checks a bucket name against S3's naming rules; real users lose backups to a bucket
/// that was never created because its name had an underscore or a capital letter.
pub fn check_bucket(name: &str) -> Result<String> {
    let fail = |why: &str| Err(usage!("bucket name `{name}` is invalid: {why}"));
    if name.len() < 3 || name.len() > 63 {
        return fail("S3 bucket names are 3 to 63 characters long");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        let hint = if c.is_ascii_uppercase() {
            "uppercase letters are not allowed, use lowercase"
        } else if c == '_' {
            "underscores are not allowed, use hyphens"
        } else {
            "S3 bucket names use only lowercase letters, digits, dots and hyphens"
        };
        return fail(&format!("character `{c}`: {hint}"));
    }
    let first_last_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_last_ok(name.chars().next()) || !first_last_ok(name.chars().last()) {
        return fail("S3 bucket names start and end with a letter or digit");
    }
    if name.contains("..") {
        return fail("S3 bucket names have no two dots in a row");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return fail("S3 bucket names may not look like an IP address");
    }
    let reserved_prefix = ["xn--", "sthree-", "amzn-s3-demo-"];
    let reserved_suffix = ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];
    if reserved_prefix.iter().any(|p| name.starts_with(p))
        || reserved_suffix.iter().any(|s| name.ends_with(s))
    {
        return fail("the name uses a prefix or suffix reserved by S3");
    }
    Ok(name.to_string())
}

/// Normalizes a key prefix to empty or `something/`; rejects forms that escape or confuse it.
pub fn normalize_prefix(prefix: &str) -> Result<String> {
    let fail = |why: &str| {
        Err(usage!(
            "prefix `{}` is invalid: {why}",
            prefix.escape_debug()
        ))
    };
    if prefix.is_empty() {
        return Ok(String::new());
    }
    if prefix.starts_with('/') {
        return fail("remove the leading `/` (S3 keys do not start with one)");
    }
    if prefix.chars().any(char::is_control) {
        return fail("remove the control characters");
    }
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.split('/').any(|s| s == ".." || s == ".") {
        return fail("`.` and `..` segments are not allowed");
    }
    if trimmed.split('/').any(str::is_empty) {
        return fail("empty segments (`//`) are not allowed");
    }
    if prefix.len() > 512 {
        return fail("keep it under 512 bytes");
    }
    Ok(format!("{trimmed}/"))
}

fn check_endpoint(url: &str) -> Result<()> {
    let ok = url::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if ok.is_none() {
        return Err(usage!(
            "endpoint URL `{url}` is invalid: use http(s)://host[:port], e.g. http://127.0.0.1:9000"
        ));
    }
    Ok(())
}

pub fn parse_format(s: &str) -> Result<DumpFormat> {
    match s {
        "plain" | "p" => Ok(DumpFormat::Plain),
        "custom" | "c" => Ok(DumpFormat::Custom),
        other => Err(usage!("--format `{other}` is unknown: use plain or custom")),
    }
}

/// The keep policy from the keep flags (all optional; an empty policy is the caller's call).
pub fn policy_from(args: &RetentionArgs) -> Result<Policy> {
    let count = |value: &Option<String>, flag: &str| -> Result<Option<u32>> {
        match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => Ok(Some(int_in(v, flag, 1, 1_000_000)? as u32)),
        }
    };
    let keep_within = match args
        .keep_within
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        None => None,
        Some(v) => Some(v.parse::<Span>().map_err(|e| usage!("--keep-within {e}"))?),
    };
    Ok(Policy {
        keep_last: count(&args.keep_last, "--keep-last")?,
        keep_hourly: count(&args.keep_hourly, "--keep-hourly")?,
        keep_daily: count(&args.keep_daily, "--keep-daily")?,
        keep_weekly: count(&args.keep_weekly, "--keep-weekly")?,
        keep_monthly: count(&args.keep_monthly, "--keep-monthly")?,
        keep_yearly: count(&args.keep_yearly, "--keep-yearly")?,
        keep_within,
    })
}

/// `--abort-incomplete-after`: how old a killed run's upload or lock must be to be cleaned up.
/// `at_least` is the smallest age accepted: `backup` runs next to other backups of the same
/// prefix (a matrix job), so it refuses an age at which it could abort one still in flight.
pub fn parse_abort_after(
    value: &str,
    at_least: std::time::Duration,
) -> Result<std::time::Duration> {
    let parsed = humantime::parse_duration(value.trim()).map_err(|_| {
        usage!("--abort-incomplete-after `{value}` is invalid: use a duration such as 24h or 3d")
    })?;
    if parsed < at_least {
        return Err(usage!(
            "--abort-incomplete-after `{value}` is shorter than {}: a backup still running in another job could be aborted; use at least {0}, such as 24h",
            humantime::format_duration(at_least)
        ));
    }
    Ok(parsed)
}

/// Parses an integer flag within bounds, naming the flag and the range on failure.
pub fn int_in(value: &str, flag: &str, min: i64, max: i64) -> Result<i64> {
    match value.trim().parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(usage!(
            "{flag} `{value}` is invalid: use a whole number from {min} to {max}"
        )),
    }
}

/// Parses sizes like `8MiB`, `8M`, `512KiB`, `1GiB` or plain bytes (binary units).
pub fn parse_size(value: &str, flag: &str) -> Result<u64> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => 0,
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            usage!("{flag} `{value}` is invalid: use a size such as 8MiB, 64MiB or 1GiB")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_defaults_per_codec() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        match compress_options("gzip", None, None).unwrap() {
            compress::Options::Gzip(g) => assert_eq!((g.level, g.threads), (6, cores)),
            other => panic!("{other:?}"),
        }
        match compress_options("ZSTD", None, None).unwrap() {
            compress::Options::Zstd(z) => {
                assert_eq!((z.level, z.threads), (3, cores.min(ZSTD_DEFAULT_THREADS)))
            }
            other => panic!("{other:?}"),
        }
        match compress_options("zstd", Some("19"), Some(16)).unwrap() {
            compress::Options::Zstd(z) => assert_eq!((z.level, z.threads), (19, 16)),
            other => panic!("{other:?}"),
        }
        match compress_options("zstd", Some("10"), None).unwrap() {
            compress::Options::Zstd(z) => {
                assert_eq!(z.threads, cores.min(ZSTD_HIGH_LEVEL_THREADS))
            }
            other => panic!("{other:?}"),
        }
        for (name, level) in [("gzip", "10"), ("zstd", "20"), ("zstd", "0"), ("lz4", "1")] {
            let err = compress_options(name, Some(level), None).unwrap_err();
            assert_eq!(crate::error::exit_code(&err), 2, "{name} {level}: {err}");
        }
    }

    #[test]
    fn bucket_names() {
        for good in [
            "abc",
            "my-backups",
            "my.backups.2026",
            "a1b",
            &"a".repeat(63),
        ] {
            assert!(check_bucket(good).is_ok(), "{good}");
        }
        let bad = [
            ("ab", "3 to 63"),
            (&*"a".repeat(64), "3 to 63"),
            ("My-Backups", "uppercase"),
            ("my_backups", "underscores"),
            ("-abc", "start and end"),
            ("abc-", "start and end"),
            (".abc", "start and end"),
            ("abc.", "start and end"),
            ("a..b", "two dots"),
            ("192.168.1.1", "IP address"),
            ("xn--abc", "reserved"),
            ("abc-s3alias", "reserved"),
            ("a b c", "character ` `"),
        ];
        for (name, why) in bad {
            let err = check_bucket(name).unwrap_err().to_string();
            assert!(
                err.contains(why) && err.contains(&format!("`{name}`")),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn prefixes() {
        assert_eq!(normalize_prefix("").unwrap(), "");
        assert_eq!(normalize_prefix("backups").unwrap(), "backups/");
        assert_eq!(normalize_prefix("a/b/").unwrap(), "a/b/");
        assert_eq!(normalize_prefix("a/b//").unwrap(), "a/b/");
        for (bad, why) in [
            ("/backups", "leading"),
            ("a/../b", ".."),
            ("..", ".."),
            ("a/./b", "`.`"),
            ("a//b", "empty"),
            ("a\nb", "control"),
        ] {
            let err = normalize_prefix(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn sizes_and_numbers() {
        assert_eq!(parse_size("8MiB", "x").unwrap(), 8 << 20);
        assert_eq!(parse_size("5M", "x").unwrap(), 5 << 20);
        assert_eq!(parse_size("1GiB", "x").unwrap(), 1 << 30);
        assert_eq!(parse_size("1048576", "x").unwrap(), 1 << 20);
        for bad in ["", "0", "-5MiB", "5 XB", "MiB", "99999999999999999999GiB"] {
            assert!(parse_size(bad, "--part-size").is_err(), "{bad}");
        }
        assert_eq!(int_in("9", "--compression-level", 1, 9).unwrap(), 9);
        for bad in ["0", "10", "-1", "six", ""] {
            let err = int_in(bad, "--compression-level", 1, 9)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("--compression-level") && err.contains("from 1 to 9"),
                "{err}"
            );
        }
    }
}
