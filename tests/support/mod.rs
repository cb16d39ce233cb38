//! Shared helpers for the integration tests: the services started by `scripts/services`, a
//! builder that runs the real binary, S3 access to both stores, and PostgreSQL helpers.

#![allow(dead_code)]

pub mod cluster;
pub mod github;
pub mod proxy;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::Client;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// Reads a variable written by `scripts/services start`; tests never skip silently.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with `scripts/test`, which starts the services")
    })
}

/// A name unique to this test process and call, usable as bucket and database name.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The two independent S3 servers every S3 behaviour is tested on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Moto,
    S3sFs,
    /// moto with IAM enforced; these keys belong to an admin user.
    MotoIam,
}

pub const STORES: [Store; 2] = [Store::Moto, Store::S3sFs];

impl Store {
    pub fn endpoint(self) -> String {
        match self {
            Store::Moto => env("PGS3_TEST_MOTO_URL"),
            Store::S3sFs => env("PGS3_TEST_S3S_URL"),
            Store::MotoIam => env("PGS3_TEST_MOTO_IAM_URL"),
        }
    }

    pub fn keys(self) -> (String, String) {
        match self {
            Store::Moto => ("motoaccesskey".into(), "motosecretkey".into()),
            Store::S3sFs => (
                env("PGS3_TEST_S3S_ACCESS_KEY"),
                env("PGS3_TEST_S3S_SECRET_KEY"),
            ),
            Store::MotoIam => (
                env("PGS3_TEST_MOTO_IAM_ADMIN_KEY"),
                env("PGS3_TEST_MOTO_IAM_ADMIN_SECRET"),
            ),
        }
    }

    /// Puts `body` at `key`, as anyone with s3:PutObject could: the one way tests seed objects.
    pub async fn put(self, bucket: &str, key: &str, body: impl Into<Vec<u8>>) {
        self.put_with(bucket, key, body, &[]).await
    }

    /// The integrity record `backup` would write for `body` stored at `key` (`KEY.json`), so
    /// that a planted backup counts as recorded.
    pub async fn put_record(self, bucket: &str, key: &str, body: &[u8]) {
        use pg_s3_backup::layout::Codec;
        use pg_s3_backup::record::{About, Record};
        use sha2::Digest;
        let file = key.rsplit('/').next().unwrap();
        let (_, format, codec) = Codec::of_name(file).expect("a backup's key");
        let about = About {
            kind: "database",
            database: None,
            format,
            codec,
            compression_level: 6,
            age_recipients: None,
            server_version: "15",
            pg_dump_version: "15",
            run: "planted",
        };
        let sha = hex::encode(sha2::Sha256::digest(body));
        let record = Record::new(key, &about, &sha, body.len() as u64, 0);
        self.put(bucket, &format!("{key}.json"), record.to_bytes())
            .await
    }

    /// [`Store::put`] with user metadata.
    pub async fn put_with(
        self,
        bucket: &str,
        key: &str,
        body: impl Into<Vec<u8>>,
        metadata: &[(&str, String)],
    ) {
        let mut put = self
            .client()
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body.into().into());
        for (k, v) in metadata {
            put = put.metadata(*k, v);
        }
        put.send()
            .await
            .unwrap_or_else(|e| panic!("seeding s3://{bucket}/{key} on {self:?}: {e:?}"));
    }

    /// [`Store::put`] with the body's sha256 as metadata, as `backup` writes it.
    pub async fn put_hashed(self, bucket: &str, key: &str, body: impl Into<Vec<u8>>) {
        let body = body.into();
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
        self.put_with(bucket, key, body, &[("sha256", sha)]).await
    }

    pub fn client(self) -> Client {
        let (ak, sk) = self.keys();
        self.client_with(&ak, &sk)
    }

    /// A client of this store with other credentials (an IAM user's on moto-iam).
    pub fn client_with(self, ak: &str, sk: &str) -> Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .credentials_provider(Credentials::new(ak, sk, None, None, "test"))
            .build();
        Client::from_conf(conf)
    }

    /// Creates a fresh bucket for one test.
    pub async fn bucket(self, prefix: &str) -> String {
        let name = unique(prefix);
        self.client()
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .expect("create bucket");
        name
    }

    /// Every key in the bucket.
    /// Every key in the bucket but the integrity records (`KEY.json`) of the backups listed
    /// with them: what a test of anything else expects to find. An orphan record is kept.
    pub async fn keys_in(self, bucket: &str) -> Vec<String> {
        let all = self.all_keys_in(bucket).await;
        let present: std::collections::HashSet<&String> = all.iter().collect();
        all.iter()
            .filter(|k| {
                k.strip_suffix(".json")
                    .is_none_or(|backup| !present.contains(&backup.to_string()))
            })
            .cloned()
            .collect()
    }

    /// The integrity record `backup` wrote beside `key` (`KEY.json`), parsed.
    pub async fn record(self, bucket: &str, key: &str) -> serde_json::Value {
        let (body, _, content_type) = self.get(bucket, &format!("{key}.json")).await;
        assert_eq!(content_type.as_deref(), Some("application/json"), "{key}");
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{key}.json: {e}"))
    }

    /// Every key in the bucket.
    pub async fn all_keys_in(self, bucket: &str) -> Vec<String> {
        let mut pages = self
            .client()
            .list_objects_v2()
            .bucket(bucket)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.expect("list");
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(String::from)),
            );
        }
        keys
    }

    pub async fn get(
        self,
        bucket: &str,
        key: &str,
    ) -> (Vec<u8>, HashMap<String, String>, Option<String>) {
        let out = self
            .client()
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .expect("get object");
        let meta = out.metadata().cloned().unwrap_or_default();
        for (name, value) in &meta {
            assert_no_secrets(&format!("metadata `{name}` of {key}"), value);
        }
        let content_type = out.content_type().map(String::from);
        let body = out
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .to_vec();
        (body, meta, content_type)
    }

    /// Multipart uploads still open in the bucket. s3s-fs 0.14 does not implement
    /// ListMultipartUploads, so its data directory is read instead.
    pub async fn open_uploads(self, bucket: &str) -> usize {
        match self {
            Store::Moto | Store::MotoIam => {
                let out = self
                    .client()
                    .list_multipart_uploads()
                    .bucket(bucket)
                    .send()
                    .await
                    .expect("list uploads");
                out.uploads().len()
            }
            Store::S3sFs => {
                use base64::Engine;
                let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bucket);
                let marker = format!(".bucket-{b64}.object-");
                std::fs::read_dir(env("PGS3_TEST_S3S_DATA"))
                    .expect("s3s-fs data dir")
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&marker) && n.contains(".upload-"))
                    .count()
            }
        }
    }
}

/// Runs the AWS CLI from the test venv against `store` with its keys (IAM setup on moto).
#[track_caller]
pub fn aws(store: Store, args: &[&str]) -> String {
    let (ak, sk) = store.keys();
    let cli = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/aws");
    let out = Command::new(cli)
        .args([
            "--endpoint-url",
            &store.endpoint(),
            "--region",
            "us-east-1",
            "--output",
            "json",
        ])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", ak)
        .env("AWS_SECRET_ACCESS_KEY", sk)
        .output()
        .expect("run the venv's aws CLI (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "aws {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An IAM user on moto-iam whose only (inline) policy is `doc`, exactly.
pub fn iam_user(doc: &serde_json::Value) -> (String, String) {
    let name = unique("policy-user");
    aws(
        Store::MotoIam,
        &["iam", "create-user", "--user-name", &name],
    );
    aws(
        Store::MotoIam,
        &[
            "iam",
            "put-user-policy",
            "--user-name",
            &name,
            "--policy-name",
            "pg-s3-backup",
            "--policy-document",
            &doc.to_string(),
        ],
    );
    let key: serde_json::Value = serde_json::from_str(&aws(
        Store::MotoIam,
        &["iam", "create-access-key", "--user-name", &name],
    ))
    .unwrap();
    (
        key["AccessKey"]["AccessKeyId"].as_str().unwrap().into(),
        key["AccessKey"]["SecretAccessKey"].as_str().unwrap().into(),
    )
}

/// Values that must never appear in anything the binary prints or writes, except in the
/// `::add-mask::` line that hides it: database passwords, AWS secret keys and session tokens,
/// GitHub request and ID tokens. `Run` registers the ones it is given; the fake token endpoint
/// and the proxy register what they hand out. Every finished run is checked against all of them.
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Registers `value` as a secret (too-short values would match by accident and are ignored).
pub fn secret(value: &str) {
    if value.len() < 8 {
        return;
    }
    let mut all = SECRETS.lock().unwrap();
    if !all.iter().any(|s| s == value) {
        all.push(value.to_string());
    }
}

/// Environment variables whose values are secrets.
const SECRET_VARS: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "PGPASSWORD",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "AGE_IDENTITY",
];

/// Registers the password of a database URL or libpq `key=value` string, decoded and as written.
fn secret_in_conninfo(value: &str) {
    if let Ok(url) = url::Url::parse(value) {
        if let Some(pw) = url.password() {
            secret(pw);
            secret(&percent_encoding::percent_decode_str(pw).decode_utf8_lossy());
        }
        return;
    }
    for word in value.split_whitespace() {
        if let Some(pw) = word.strip_prefix("password=") {
            secret(pw.trim_matches('\''));
        }
    }
}

/// Asserts that no registered secret appears in `text` (named `what`) outside mask lines.
#[track_caller]
pub fn assert_no_secrets(what: &str, text: &str) {
    let secrets = SECRETS.lock().unwrap().clone();
    for secret in &secrets {
        for line in text.lines().filter(|l| l.contains(secret.as_str())) {
            assert_eq!(
                line,
                format!("::add-mask::{secret}"),
                "a secret appears in {what}:\n{text}"
            );
        }
    }
}

/// Runs the real binary with a clean environment plus what the test sets.
pub struct Run {
    cmd: Command,
    /// `$GITHUB_OUTPUT` and `$GITHUB_STEP_SUMMARY`, checked for secrets after the run.
    files: Vec<PathBuf>,
}

pub struct Done {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn new(args: &[&str]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pg-s3-backup"));
        cmd.args(args).env_clear().stdin(Stdio::null());
        for var in ["PATH", "HOME", "TMPDIR", "LANG"] {
            if let Ok(v) = std::env::var(var) {
                cmd.env(var, v);
            }
        }
        cmd.env("AWS_EC2_METADATA_DISABLED", "true");
        secret_in_conninfo(&Pg::admin_url());
        for arg in args {
            secret_in_conninfo(arg);
        }
        Self {
            cmd,
            files: Vec::new(),
        }
    }

    /// A backup of `db` to `bucket` on `store`, with the store's credentials.
    /// `backup` of `db_url` into `bucket` on `store` under `pg/`, with its keys and `--json`;
    /// [`Backup`] for the variations.
    pub fn backup(store: Store, bucket: &str, db_url: &str, extra: &[&str]) -> Self {
        Backup::new(store, bucket, db_url).args(extra).run()
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        if SECRET_VARS.contains(&key) {
            secret(value);
        }
        if key.contains("DATABASE") {
            secret_in_conninfo(value);
        }
        if key == "GITHUB_OUTPUT" || key == "GITHUB_STEP_SUMMARY" {
            self.files.push(value.into());
        }
        self.cmd.env(key, value);
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    pub fn spawn(mut self) -> std::process::Child {
        self.cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn binary")
    }

    /// Runs a backup that must succeed, and returns its key.
    #[track_caller]
    pub fn key(self) -> String {
        self.run().ok()["key"]
            .as_str()
            .expect("a key in the JSON outcome")
            .to_string()
    }

    pub fn run(mut self) -> Done {
        let out = self.cmd.output().expect("run binary");
        for file in &self.files {
            if let Ok(text) = std::fs::read_to_string(file) {
                assert_no_secrets(&file.display().to_string(), &text);
            }
        }
        Done::from(out)
    }
}

/// Every finished run, spawned or not, is checked for secrets in its output.
impl From<Output> for Done {
    fn from(out: Output) -> Self {
        let done = Done {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert_no_secrets("stdout", &done.stdout);
        assert_no_secrets("stderr", &done.stderr);
        done
    }
}

impl Done {
    #[track_caller]
    pub fn ok(&self) -> serde_json::Value {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// Asserts success without parsing stdout.
    #[track_caller]
    pub fn ok_plain(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Asserts a failure with `code` whose error is one line containing every `needle`.
    #[track_caller]
    pub fn fails(&self, code: i32, needles: &[&str]) -> &str {
        assert_eq!(
            self.code, code,
            "exit code\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "exactly one error line expected in:\n{}",
            self.stderr
        );
        for needle in needles {
            assert!(
                errors[0].contains(needle),
                "`{needle}` missing from: {}",
                errors[0]
            );
        }
        errors[0]
    }
}

/// PostgreSQL helpers: a superuser URL, databases, and psql.
pub struct Pg;

impl Pg {
    pub fn admin_url() -> String {
        env("PGS3_TEST_PG_URL")
    }

    pub fn bin(tool: &str) -> PathBuf {
        Path::new(&env("PGS3_TEST_PG_BIN")).join(tool)
    }

    /// URL of database `db` (name percent-encoded) on the test server.
    pub fn url(db: &str) -> String {
        let admin = Self::admin_url();
        let base = admin.rsplit_once('/').expect("url with db").0;
        format!(
            "{base}/{}",
            percent_encoding::utf8_percent_encode(db, percent_encoding::NON_ALPHANUMERIC)
        )
    }

    pub fn create_db(db: &str) {
        Self::psql(
            &Self::admin_url(),
            &format!("CREATE DATABASE \"{}\"", db.replace('"', "\"\"")),
        );
    }

    /// Runs SQL with psql, stopping at the first error; returns unaligned output.
    #[track_caller]
    pub fn psql(url: &str, sql: &str) -> String {
        let out = Command::new(Self::bin("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                url,
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Feeds a script to psql on stdin in one transaction.
    #[track_caller]
    pub fn psql_stdin(url: &str, script: &[u8]) {
        use std::io::Write;
        let mut child = Command::new(Self::bin("psql"))
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "--single-transaction",
                "-d",
                url,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn psql");
        let mut stdin = child.stdin.take().unwrap();
        let data = script.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().expect("psql");
        writer.join().unwrap();
        assert!(
            out.status.success(),
            "psql restore failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A full plain dump of `db`, normalized so two databases with equal content compare equal
    /// (pg_dump 15.14+ writes a random `\restrict` key per dump).
    pub fn canonical_dump(db: &str) -> String {
        Self::canonical_dump_at(&Self::url(db))
    }

    /// [`Pg::canonical_dump`] of the database `url` names, on any server.
    pub fn canonical_dump_at(url: &str) -> String {
        let out = Command::new(Self::bin("pg_dump"))
            .args(["--no-owner", "-d", url])
            .output()
            .expect("pg_dump");
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf8 dump")
            .lines()
            .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Decompresses with the system's `gzip -dc` (also proves `gzip -t`-level validity).
/// gzip at level 6, as a backup object's body.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub fn gunzip(data: &[u8]) -> Vec<u8> {
    pipe("gzip", &["-dc"], data)
}

/// Runs `program args` with `input` on stdin; its stdout, or a panic with its stderr.
pub fn pipe(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The flags that point a command at `bucket` (prefix `pg/`) on the store at `url`.
pub fn s3_args(url: &str, bucket: &str) -> Vec<String> {
    [
        "--bucket",
        bucket,
        "--prefix",
        "pg/",
        "--region",
        "us-east-1",
        "--endpoint-url",
        url,
        "--force-path-style",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The one builder of backup runs: `backup` of a database into a bucket under `pg/` with
/// `--json`, sent to the store (or `via` a proxy in front of it), with the store's keys unless
/// `without_keys`.
pub struct Backup {
    store: Store,
    endpoint: String,
    bucket: String,
    db_url: String,
    prefix: String,
    keys: bool,
    extra: Vec<String>,
}

impl Backup {
    pub fn new(store: Store, bucket: &str, db_url: &str) -> Self {
        Self {
            store,
            endpoint: store.endpoint(),
            bucket: bucket.into(),
            db_url: db_url.into(),
            prefix: "pg/".into(),
            keys: true,
            extra: Vec::new(),
        }
    }

    /// Sends every request to `endpoint` (a proxy in front of the store).
    pub fn via(mut self, endpoint: &str) -> Self {
        self.endpoint = endpoint.into();
        self
    }

    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// No AWS keys in the environment (credentials come from a role, say).
    pub fn without_keys(mut self) -> Self {
        self.keys = false;
        self
    }

    pub fn args(mut self, extra: &[&str]) -> Self {
        self.extra.extend(extra.iter().map(|s| s.to_string()));
        self
    }

    pub fn run(self) -> Run {
        let mut args: Vec<String> = ["backup", "--database-url", &self.db_url, "--json"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(s3_args(&self.endpoint, &self.bucket));
        if let Some(p) = args.iter().position(|a| a == "--prefix") {
            args[p + 1] = self.prefix.clone();
        }
        args.extend(self.extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = Run::new(&refs);
        if !self.keys {
            return run;
        }
        let (ak, sk) = self.store.keys();
        run.env("AWS_ACCESS_KEY_ID", &ak)
            .env("AWS_SECRET_ACCESS_KEY", &sk)
    }
}

/// `command` against `bucket` on `store`'s keys, sent to `url` (the store, or a proxy in
/// front of it), with `extra` flags.
pub fn s3_command(store: Store, url: &str, command: &str, bucket: &str, extra: &[&str]) -> Run {
    let mut args = vec![command.to_string()];
    args.extend(s3_args(url, bucket));
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ak, sk) = store.keys();
    Run::new(&refs)
        .env("AWS_ACCESS_KEY_ID", &ak)
        .env("AWS_SECRET_ACCESS_KEY", &sk)
}

/// pg_dump's plain-format header and trailer: a stand-in pg_dump's output must look like a
/// complete dump, or the backup refuses to complete it.
pub const DUMP_HEADER: &str = "--\n-- PostgreSQL database dump\n--\n";
pub const DUMP_TRAILER: &str = "\n--\n-- PostgreSQL database dump complete\n--\n";

/// A stand-in pg_dump (version 99.1) that writes pg_dump's header, then what the shell
/// command `body` writes, then pg_dump's trailer.
pub fn fake_pg_dump(body: &str) -> PathBuf {
    script(
        "pg_dump",
        &format!(
            "if [ \"$1\" = \"--version\" ]; then echo \"pg_dump (PostgreSQL) 99.1\"; exit 0; fi\n\
             cat <<'EOF'\n{DUMP_HEADER}EOF\n\
             {body}\n\
             cat <<'EOF'\n{DUMP_TRAILER}EOF"
        ),
    )
}

/// Writes an executable shell script (a stand-in pg_dump) into a fresh directory.
pub fn script(name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(unique("pgs3-test-bin"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The sweep itself: a registered secret in output fails the run's checks; its mask line does not.
#[test]
fn the_secret_sweep_catches_a_leak_but_not_a_mask() {
    secret("sweep-check-secret-value");
    assert_no_secrets("stdout", "::add-mask::sweep-check-secret-value\nok");
    let leak = std::panic::catch_unwind(|| {
        assert_no_secrets("stderr", "error: login as sweep-check-secret-value failed")
    });
    assert!(leak.is_err(), "a leaked secret went unnoticed");
}

/// Every Rust source file under `src/`, sorted.
pub fn source_files() -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    files.sort();
    files
}
