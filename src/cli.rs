//! Command-line flags (clap derive) with their environment fallbacks. Parsing only: every value
//! stays a string here and is checked in `config`, so that each bad value gets one clear line.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "pg-s3-backup",
    version,
    about = "Stream pg_dump through parallel gzip or zstd, optionally age-encrypted, into S3"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Dump a database and stream it, compressed (and encrypted with --age-recipient), into one S3 object.
    Backup(Box<BackupArgs>),
    /// List backups under the prefix, newest first.
    List(ListArgs),
    /// Delete old backups under a keep policy (restic's `forget` rules).
    Prune(PruneArgs),
    /// Stream a backup back into a database (psql or pg_restore), or to stdout.
    Restore(RestoreArgs),
    /// Check that a backup is whole: sha256, age authentication, the gzip CRC or zstd checksum, pg_dump's completion.
    Verify(VerifyArgs),
    /// Exit 1 when the newest backup of a database is missing or older than --max-age (for
    /// monitors and scheduled workflows); or print a backmon backup definition.
    Check(CheckArgs),
    /// Print least-privilege IAM JSON for a bucket and prefix (and a GitHub OIDC trust policy).
    Policy(PolicyArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub s3: S3Args,
    /// Only this database's backups (default: every database under the prefix).
    #[arg(long, env = "PGS3_DATABASE")]
    pub database: Option<String>,
    /// Only the globals backups (roles and tablespaces, from --all-databases).
    #[arg(long, conflicts_with = "database")]
    pub globals: bool,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Keep rules, as restic's `forget` has them; rules are ORed.
#[derive(Debug, Args, Default)]
pub struct RetentionArgs {
    /// Keep the N newest backups.
    #[arg(long, allow_hyphen_values = true, env = "KEEP_LAST")]
    pub keep_last: Option<String>,
    /// Keep the newest backup of each of the last N hours that have one.
    #[arg(long, allow_hyphen_values = true, env = "KEEP_HOURLY")]
    pub keep_hourly: Option<String>,
    /// Keep the newest backup of each of the last N days (UTC) that have one.
    #[arg(long, allow_hyphen_values = true, env = "KEEP_DAILY")]
    pub keep_daily: Option<String>,
    /// Keep the newest backup of each of the last N ISO weeks (Monday start) that have one.
    #[arg(long, allow_hyphen_values = true, env = "KEEP_WEEKLY")]
    pub keep_weekly: Option<String>,
    /// Keep the newest backup of each of the last N months that have one.
    #[arg(long, allow_hyphen_values = true, env = "KEEP_MONTHLY")]
    pub keep_monthly: Option<String>,
    /// Keep the newest backup of each of the last N years that have one.
    #[arg(long, allow_hyphen_values = true, env = "KEEP_YEARLY")]
    pub keep_yearly: Option<String>,
    /// Keep every backup within this span of the newest one, e.g. 36h, 30d, 2w, 1y6m.
    #[arg(long, allow_hyphen_values = true, env = "KEEP_WITHIN")]
    pub keep_within: Option<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub s3: S3Args,
    /// Only this database's backups (default: each database under the prefix, separately).
    #[arg(long, env = "PGS3_DATABASE")]
    pub database: Option<String>,
    /// Only the globals backups (roles and tablespaces, from --all-databases).
    #[arg(long, conflicts_with = "database")]
    pub globals: bool,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// Print the plan and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// Abort this tool's multipart uploads under the prefix, and delete its lock objects, older
    /// than this (e.g. 24h, 3d): what a killed run left behind.
    #[arg(long, env = "ABORT_INCOMPLETE_AFTER", default_value = "24h")]
    pub abort_incomplete_after: String,
}

/// Where backups live in S3 and how to talk to the store.
#[derive(Debug, Args)]
pub struct S3Args {
    /// Bucket name (S3 naming rules: 3-63 lowercase letters, digits, dots, hyphens).
    #[arg(long, allow_hyphen_values = true, env = "S3_BUCKET")]
    pub bucket: String,
    /// Key prefix under which backups are written, e.g. `backups/` (no leading `/`).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "S3_PREFIX",
        default_value = ""
    )]
    pub prefix: String,
    /// AWS region of the bucket.
    #[arg(long, visible_alias = "aws-region", env = "AWS_REGION")]
    pub region: Option<String>,
    /// S3 endpoint for S3-compatible stores (MinIO, R2, moto). Also read from
    /// AWS_ENDPOINT_URL_S3 and AWS_ENDPOINT_URL.
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// Use path-style addressing (`endpoint/bucket/key`), which most S3-compatible stores need.
    #[arg(long, env = "S3_FORCE_PATH_STYLE")]
    pub force_path_style: bool,
    /// Request checksums: `auto` is the SDK default on AWS and `when-required` on a custom endpoint,
    /// unless AWS_REQUEST_CHECKSUM_CALCULATION says otherwise.
    #[arg(long, value_enum, env = "S3_CHECKSUM", default_value = "auto")]
    pub checksum: ChecksumArg,
    /// Seconds an S3 request may take before it is abandoned and retried, plus one second per
    /// MiB it sends (CompleteMultipartUpload gets ten times as long).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "S3_REQUEST_TIMEOUT",
        default_value = "60"
    )]
    pub request_timeout: String,
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// How to get AWS credentials when not from the standard chain.
#[derive(Debug, Args)]
pub struct AuthArgs {
    /// IAM role to assume: with a GitHub Actions ID token (needs `permissions: id-token: write`),
    /// else AWS_WEB_IDENTITY_TOKEN_FILE, else sts:AssumeRole from the default credentials.
    #[arg(long, env = "ROLE_TO_ASSUME")]
    pub role_to_assume: Option<String>,
    /// STS session name (default: pg-s3-backup-ORG-REPO-RUNID in GitHub Actions).
    #[arg(long, env = "ROLE_SESSION_NAME")]
    pub role_session_name: Option<String>,
    /// Lifetime of the role session; credentials are refreshed before it ends.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "ROLE_DURATION_SECONDS",
        default_value = "3600"
    )]
    pub role_duration_seconds: String,
    /// Audience of the GitHub ID token.
    #[arg(long, env = "OIDC_AUDIENCE", default_value = "sts.amazonaws.com")]
    pub audience: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChecksumArg {
    Auto,
    WhenSupported,
    WhenRequired,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// PostgreSQL connection: a URL (`postgres://user:pass@host:5432/db?sslmode=require`) or a
    /// libpq `key=value` string. Without it, the PG* environment variables are used.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Back up every database of the server that accepts connections and is not a template,
    /// each as its own backup, and the roles and tablespaces (`pg_dumpall --globals-only`) as
    /// one more; --database-url names the server and the database to connect to first.
    #[arg(long, env = "ALL_DATABASES", value_parser = clap::builder::BoolishValueParser::new())]
    pub all_databases: bool,
    /// With --all-databases: leave out this database (its exact name; repeatable).
    #[arg(long = "exclude-database")]
    pub exclude_databases: Vec<String>,
    /// Seconds to wait for PostgreSQL to answer a connection, and the tool's own short queries
    /// (default 30, or the connection string's / PGCONNECT_TIMEOUT's connect_timeout).
    #[arg(long, allow_hyphen_values = true)]
    pub connect_timeout: Option<String>,
    #[command(flatten)]
    pub s3: S3Args,
    /// Dump format: `plain` (SQL text, restore with psql) or `custom` (pg_restore; dumped with
    /// `-Fc -Z0` and compressed by us).
    #[arg(long, env = "PG_DUMP_FORMAT", default_value = "plain")]
    pub format: String,
    /// Extra argument for pg_dump (repeatable), e.g. `--pg-dump-arg=--exclude-table=audit_log`.
    #[arg(long = "pg-dump-arg", allow_hyphen_values = true)]
    pub pg_dump_args: Vec<String>,
    /// pg_dump to run instead of the one chosen by the server's major version.
    #[arg(long, env = "PG_DUMP_PATH")]
    pub pg_dump_path: Option<PathBuf>,
    /// Compressor: `gzip` (parallel, any tool reads it) or `zstd` (multithreaded, faster and
    /// smaller; `zstd -d` reads it).
    #[arg(long, env = "COMPRESSION", default_value = "gzip")]
    pub compression: String,
    /// gzip: 1 (fastest) to 9 (smallest), default 6; zstd: 1 to 19, default 3.
    #[arg(long, allow_hyphen_values = true, env = "COMPRESSION_LEVEL")]
    pub compression_level: Option<String>,
    /// Encrypt the backup to this age public key (`age1...`, or an ssh-ed25519/ssh-rsa public
    /// key); repeatable: any one recipient's identity decrypts it. Env AGE_RECIPIENTS takes a
    /// comma- or newline-separated list.
    #[arg(long = "age-recipient", allow_hyphen_values = true)]
    pub age_recipients: Vec<String>,
    /// A file of age recipients, one per line (`#` comments), as `age -R` reads it.
    #[arg(long, env = "AGE_RECIPIENTS_FILE")]
    pub age_recipients_file: Option<PathBuf>,
    /// Compression threads (default: all cores).
    #[arg(long, allow_hyphen_values = true, env = "COMPRESSION_THREADS")]
    pub threads: Option<String>,
    /// First multipart part size (at least 5MiB); later parts grow so that 5 TiB fits in --max-parts.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "PART_SIZE",
        default_value = "8MiB"
    )]
    pub part_size: String,
    /// Most parts the store accepts in one upload (S3: 10000).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "MAX_PARTS",
        default_value = "10000"
    )]
    pub max_parts: String,
    /// Parts uploaded at once; memory use is about (this + 1) x part size.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "UPLOAD_CONCURRENCY",
        default_value = "4"
    )]
    pub upload_concurrency: String,
    /// S3 storage class, e.g. STANDARD_IA, GLACIER_IR.
    #[arg(long, env = "S3_STORAGE_CLASS")]
    pub storage_class: Option<String>,
    /// Server-side encryption: AES256 or aws:kms.
    #[arg(long, env = "S3_SSE")]
    pub sse: Option<String>,
    /// KMS key for `--sse aws:kms`.
    #[arg(long, env = "S3_SSE_KMS_KEY_ID")]
    pub sse_kms_key_id: Option<String>,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// Print the retention plan instead of deleting anything (the backup itself still runs).
    #[arg(long)]
    pub dry_run: bool,
    /// Read the new backup back and verify it (sha256, decompression, completeness; of an encrypted
    /// backup only the sha256 of the stored bytes) before pruning.
    #[arg(long)]
    pub verify: bool,
    /// With a keep rule: also abort this tool's multipart uploads under the prefix, and delete
    /// its lock objects, older than this (e.g. 24h, 3d): what a killed run left behind.
    #[arg(long, env = "ABORT_INCOMPLETE_AFTER", default_value = "24h")]
    pub abort_incomplete_after: String,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Health-check URL (healthchecks.io protocol): POST `URL/start` when the backup begins,
    /// `URL` with the JSON outcome on success, `URL/fail` with the error line on failure. A
    /// failed ping warns and never changes the outcome.
    #[arg(long, env = "PING_URL", hide_env_values = true)]
    pub ping_url: Option<String>,
}

/// Which backup: an exact key, or the newest (at or before a time) of a database.
#[derive(Debug, Args)]
pub struct Selection {
    /// The object key of the backup.
    #[arg(long, conflicts_with_all = ["latest", "at"])]
    pub key: Option<String>,
    /// The database whose backup to use (with --latest or --at).
    #[arg(long, env = "PGS3_DATABASE")]
    pub database: Option<String>,
    /// Use the globals backups (roles and tablespaces) instead of a database's (with --latest
    /// or --at).
    #[arg(long, conflicts_with_all = ["database", "key"])]
    pub globals: bool,
    /// The newest backup of --database.
    #[arg(long)]
    pub latest: bool,
    /// The newest backup of --database at or before this UTC time (RFC 3339 or 20261123T030000Z).
    #[arg(long)]
    pub at: Option<String>,
    /// Accept a backup that has no integrity record (`KEY.json`, written when the backup
    /// completed) nor sha256 metadata: its stream is still checked whole, but not against what
    /// its backup wrote. An encrypted one needs --age-identity for that.
    #[arg(long)]
    pub unverified: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub which: Selection,
    /// Database to restore into (URL or key=value); it must have no tables unless --force.
    #[arg(long, env = "TARGET_DATABASE_URL", hide_env_values = true)]
    pub target_url: Option<String>,
    /// `-` writes the decompressed dump to stdout instead of restoring.
    #[arg(long)]
    pub output: Option<String>,
    /// Restore even if the target database already has tables.
    #[arg(long)]
    pub force: bool,
    /// age identity to decrypt an encrypted backup with: age-keygen's key file, or an
    /// unencrypted OpenSSH private key. Env AGE_IDENTITY may hold the identity itself instead.
    #[arg(long, env = "AGE_IDENTITY_FILE")]
    pub age_identity: Option<PathBuf>,
    /// Seconds to wait for PostgreSQL to answer a connection, and the tool's own short queries
    /// (default 30, or the connection string's / PGCONNECT_TIMEOUT's connect_timeout).
    #[arg(long, allow_hyphen_values = true)]
    pub connect_timeout: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub which: Selection,
    /// Also restore into this scratch database and count its tables.
    #[arg(long)]
    pub restore_check: Option<String>,
    /// age identity to decrypt an encrypted backup with: age-keygen's key file, or an
    /// unencrypted OpenSSH private key. Env AGE_IDENTITY may hold the identity itself instead.
    #[arg(long, env = "AGE_IDENTITY_FILE")]
    pub age_identity: Option<PathBuf>,
    /// Seconds to wait for PostgreSQL to answer a connection, and the tool's own short queries
    /// (default 30, or the connection string's / PGCONNECT_TIMEOUT's connect_timeout).
    #[arg(long, allow_hyphen_values = true)]
    pub connect_timeout: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub s3: S3Args,
    /// The database whose newest backup is checked.
    #[arg(long, env = "PGS3_DATABASE", required_unless_present = "globals")]
    pub database: Option<String>,
    /// Check the newest globals backup (roles and tablespaces) instead of a database's.
    #[arg(long, conflicts_with = "database")]
    pub globals: bool,
    /// Most age the newest backup may have, e.g. 26h for a nightly backup, 8d for a weekly one.
    #[arg(long, env = "MAX_AGE", default_value = "26h")]
    pub max_age: String,
    /// Print `{key, uri, time, age_seconds, size}` as JSON when the check passes.
    #[arg(long)]
    pub json: bool,
    /// Print a backup definition (backup_definitions.yaml) for the backmon monitor instead of
    /// checking; it needs no credentials.
    #[arg(long)]
    pub backmon_definition: bool,
    /// With --backmon-definition: the cron schedule the backup runs on (UTC).
    #[arg(long, env = "BACKUP_SCHEDULE", default_value = "0 3 * * *")]
    pub schedule: String,
    /// With --backmon-definition: the dump format the backups use (`plain`: .sql.*, `custom`:
    /// .dump.*).
    #[arg(long, env = "PG_DUMP_FORMAT", default_value = "plain")]
    pub format: String,
    /// With --backmon-definition: the compressor the backups use (`gzip` or `zstd`).
    #[arg(long, env = "COMPRESSION", default_value = "gzip")]
    pub compression: String,
    /// With --backmon-definition: the backups are encrypted with age (keys end in `.age`).
    #[arg(long)]
    pub encrypted: bool,
    /// With --backmon-definition: the keep rules the backups are pruned with.
    #[command(flatten)]
    pub retention: RetentionArgs,
}

/// What a role is for (`policy --purpose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Purpose {
    Backup,
    Prune,
    Restore,
}

/// `policy` prints one JSON document: the permissions policy alone, or, with --github-repo and
/// --account-id, `{"permissions": ..., "trust_policy": ..., "bucket_policy": ...}`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Bucket name.
    #[arg(long, allow_hyphen_values = true, env = "S3_BUCKET")]
    pub bucket: String,
    /// Key prefix the backups are written under (normalized as for `backup`).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "S3_PREFIX",
        default_value = ""
    )]
    pub prefix: String,
    /// What the role is for: `backup` (write only: PutObject and AbortMultipartUpload),
    /// `prune` (list, delete, abort stale uploads), `restore` (list and read: restore, verify,
    /// list, check). Repeat, or separate with commas, for a role that does several; default
    /// `backup`.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub purpose: Vec<Purpose>,
    /// The same as `--purpose backup,prune` (a role that runs `backup --keep-*`).
    #[arg(long)]
    pub prune: bool,
    /// The same as `--purpose backup,restore` (a role that also restores and verifies).
    #[arg(long)]
    pub restore: bool,
    /// Accepted for older scripts: restore always includes listing now.
    #[arg(long, requires = "restore", hide = true)]
    pub latest: bool,
    /// Accepted for older scripts: the backup policy is always write-only now.
    #[arg(long, hide = true)]
    pub minimal: bool,
    /// GitHub repository (ORG/REPO) whose Actions assume the role through OIDC; prints a trust
    /// policy and a bucket policy as well (needs --account-id).
    #[arg(long)]
    pub github_repo: Option<String>,
    /// Trust only workflows run from this ref, e.g. refs/heads/main. With --github-repo, one
    /// of --github-ref, --github-environment and --any-ref is required.
    #[arg(long, conflicts_with_all = ["github_environment", "any_ref"])]
    pub github_ref: Option<String>,
    /// Trust only jobs that run in this GitHub environment.
    #[arg(long, conflicts_with = "any_ref")]
    pub github_environment: Option<String>,
    /// Trust every branch, tag, environment and pull request of the repository (`repo:ORG/REPO:*`):
    /// anyone who can push a branch can then assume the role.
    #[arg(long)]
    pub any_ref: bool,
    /// AWS account id (12 digits) that holds the OIDC provider and the role.
    #[arg(long, allow_hyphen_values = true)]
    pub account_id: Option<String>,
    /// Name of the IAM role (for the bucket policy's principal).
    #[arg(long, default_value = "pg-s3-backup")]
    pub role_name: String,
}
