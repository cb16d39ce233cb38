//! `check` and `policy`: freshness checks on both S3 servers, the backmon definition read back as
//! YAML, the IAM documents' exact contents, and the real test of `policy`: an IAM user on moto
//! whose only policy is `policy --prune`'s output runs `backup` and `prune`, and every single
//! action taken out of it makes the command that needs it fail or warn, naming it.

use crate::support::{iam_user, unique, Done, Pg, Run, Store, STORES};
use chrono::{Duration, Utc};
use pg_s3_backup::layout::{BackupId, DumpFormat};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;

/// A planted backup of five bytes, with its integrity record.
async fn put(store: Store, bucket: &str, key: &str) {
    store.put(bucket, key, b"12345").await;
    store.put_record(bucket, key, b"12345").await;
}

fn check(store: Store, bucket: &str, database: &str, extra: &[&str]) -> Done {
    let endpoint = store.endpoint();
    let mut args = vec![
        "check",
        "--bucket",
        bucket,
        "--prefix",
        "pg",
        "--database",
        database,
        "--region",
        "us-east-1",
        "--endpoint-url",
        &endpoint,
        "--force-path-style",
    ];
    args.extend_from_slice(extra);
    let (ak, sk) = store.keys();
    Run::new(&args)
        .env("AWS_ACCESS_KEY_ID", &ak)
        .env("AWS_SECRET_ACCESS_KEY", &sk)
        .run()
}

#[tokio::test]
async fn check_passes_on_a_fresh_backup_and_fails_on_a_stale_or_missing_one() {
    for store in STORES {
        let bucket = store.bucket("check").await;
        let key_at = |db: &str, ago: Duration| {
            BackupId::new(db, Utc::now() - ago, DumpFormat::Plain).key("pg/")
        };
        // `fresh` has an old and a new backup (the new one counts), plus a foreign file.
        let fresh = key_at("fresh", Duration::minutes(5));
        put(store, &bucket, &key_at("fresh", Duration::days(3))).await;
        put(store, &bucket, &fresh).await;
        put(store, &bucket, "pg/fresh/zzz-newer-but-not-ours.sql.gz").await;
        let stale = key_at("stale", Duration::days(3));
        put(store, &bucket, &stale).await;

        let out = check(store, &bucket, "fresh", &["--max-age", "26h"]);
        let text = out.ok_plain();
        assert!(
            text.contains(&format!("s3://{bucket}/{fresh} is 5m old")),
            "{store:?}: {text}"
        );
        let json = check(store, &bucket, "fresh", &["--json"]).ok();
        assert_eq!(json["key"], fresh.as_str());
        assert_eq!(json["uri"], format!("s3://{bucket}/{fresh}"));
        assert_eq!(json["size"], 5);
        let age = json["age_seconds"].as_i64().unwrap();
        assert!((300..400).contains(&age), "{age}");

        check(store, &bucket, "stale", &["--max-age", "26h"]).fails(
            1,
            &[
                "newest backup of `stale` is 3d old",
                &format!("(s3://{bucket}/{stale})"),
                "older than --max-age 26h",
            ],
        );
        // The same backup passes a weekly backup's limit.
        check(store, &bucket, "stale", &["--max-age", "8d"]).ok_plain();
        check(store, &bucket, "missing", &["--max-age", "26h"]).fails(
            1,
            &[&format!("no backup of `missing` under s3://{bucket}/pg/")],
        );

        // A newer backup without its record is unverified: it does not count, and says so.
        let unrecorded = key_at("stale", Duration::minutes(1));
        store.put(&bucket, &unrecorded, b"12345").await;
        let out = check(store, &bucket, "stale", &["--max-age", "26h"]);
        out.fails(1, &["newest backup of `stale` is 3d old"]);
        assert!(
            out.stderr
                .contains("1 newer backups of `stale` have no integrity record")
                && out.stderr.contains(&unrecorded),
            "{}",
            out.stderr
        );
        let json = check(store, &bucket, "stale", &["--json", "--max-age", "8d"]).ok();
        assert_eq!(json["key"], stale.as_str());
        assert_eq!(json["unrecorded_newer"], 1);
        // A record that only exists is not one: it must give the backup's size.
        let wrong = key_at("wrongsize", Duration::minutes(1));
        store.put(&bucket, &wrong, b"12345").await;
        store.put_record(&bucket, &wrong, b"123456").await;
        check(store, &bucket, "wrongsize", &["--max-age", "26h"]).fails(
            1,
            &["is listed with 5 bytes but its integrity record says 6"],
        );
        store.put(&bucket, &format!("{wrong}.json"), b"{}").await;
        check(store, &bucket, "wrongsize", &["--max-age", "26h"]).fails(
            1,
            &[
                "integrity record",
                "is refused",
                "not a record this tool writes",
            ],
        );
        // With no recorded backup at all, check fails naming the newest.
        let only = key_at("norecord", Duration::minutes(1));
        store.put(&bucket, &only, b"12345").await;
        check(store, &bucket, "norecord", &["--max-age", "26h"])
            .fails(1, &["has its integrity record", &only, "unverified"]);
    }
}

/// Backups without their record (runs that died before it, or keys planted without one) never
/// take a recorded backup's place in the keep rules; a pruned backup goes with its record.
#[tokio::test]
async fn unrecorded_backups_never_push_out_recorded_ones() {
    for store in STORES {
        let bucket = store.bucket("prune-unrecorded").await;
        let now = Utc::now();
        let keys: Vec<String> = (1..=5)
            .map(|d| BackupId::new("app", now - Duration::days(d), DumpFormat::Plain).key("pg/"))
            .collect();
        for key in &keys[..2] {
            store.put(&bucket, key, b"12345").await;
        }
        for key in &keys[2..] {
            put(store, &bucket, key).await;
        }
        let out = crate::support::s3_command(
            store,
            &store.endpoint(),
            "prune",
            &bucket,
            &["--keep-last", "2", "--json"],
        )
        .run();
        let report = out.ok();
        assert_eq!(report["deleted"], json!([keys[4]]), "{store:?}: {report}");
        assert_eq!(
            report["removed_records"],
            json!([format!("{}.json", keys[4])])
        );
        let decisions = report["plans"][0]["decisions"].as_array().unwrap();
        let reasons =
            |key: &str| decisions.iter().find(|d| d["key"] == key).unwrap()["reasons"].clone();
        assert_eq!(reasons(&keys[2]), json!(["last of recorded"]), "{report}");
        assert_eq!(reasons(&keys[0]), json!(["last"]), "{report}");
        let mut left = store.keys_in(&bucket).await;
        left.sort();
        let mut want = keys[..4].to_vec();
        want.sort();
        assert_eq!(left, want, "{store:?}");
    }
}

/// `--latest` means the newest recorded backup: a newer key without a record (a run that died
/// before it, or a planted object) is skipped with a warning naming it.
#[tokio::test]
async fn latest_skips_newer_backups_without_a_record() {
    let db = unique("latest-recorded");
    Pg::create_db(&db);
    let url = Pg::url(&db);
    Pg::psql(
        &url,
        "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 50) g",
    );
    let store = Store::S3sFs;
    let bucket = store.bucket("latest-recorded").await;
    let real = Run::backup(store, &bucket, &url, &[]).run().ok()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let planted =
        BackupId::new(&db, Utc::now() + Duration::seconds(2), DumpFormat::Plain).key("pg/");
    store
        .put(&bucket, &planted, crate::support::gzip(b"DROP TABLE t;\n"))
        .await;
    let run = |cmd: &str, extra: &[&str]| {
        crate::support::s3_command(store, &store.endpoint(), cmd, &bucket, extra).run()
    };
    let out = run("verify", &["--database", &db, "--latest"]);
    let line = out.ok_plain();
    assert!(line.contains(&real), "{line}");
    assert!(
        out.stderr
            .contains("skipping 1 newer backups without an integrity record")
            && out.stderr.contains(&planted),
        "{}",
        out.stderr
    );
    let target = unique("latest-target");
    Pg::create_db(&target);
    let target_url = Pg::url(&target);
    run(
        "restore",
        &["--database", &db, "--latest", "--target-url", &target_url],
    )
    .ok_plain();
    assert_eq!(Pg::psql(&target_url, "SELECT count(*) FROM t"), "50");
}

/// A prune role that may delete backups but not their records: the backups it deleted are
/// still reported (and printed), the records it could not delete are failures, and the run
/// exits 1 saying so; the records left are orphans.
#[tokio::test]
async fn a_refused_record_deletion_does_not_hide_what_prune_deleted() {
    let db = unique("iam-norecdel");
    let (bucket, _, old) = setup(&db).await;
    let newer = BackupId::new(&db, Utc::now() - Duration::days(1), DumpFormat::Plain).key("pg/");
    put(Store::MotoIam, &bucket, &newer).await;
    let mut doc = purpose_policy(&bucket, "prune");
    for s in doc["Statement"].as_array_mut().unwrap() {
        if s["Action"]
            .as_array()
            .unwrap()
            .contains(&json!("s3:DeleteObject"))
        {
            s["Resource"] = json!(format!("arn:aws:s3:::{bucket}/pg/*.sql.gz"));
        }
    }
    let user = iam_user(&doc);
    let out = as_user(prune_run(&bucket, &db, &[]), &user);
    let line = out.fails(1, &["deletions failed", &format!("{old}.json")]);
    assert!(line.contains("1 of 2 deletions failed"), "{line}");
    assert!(out.stdout.contains("keep 1, delete 1"), "{}", out.stdout);
    let mut left = Store::MotoIam.all_keys_in(&bucket).await;
    left.sort();
    let mut want = vec![
        newer.clone(),
        format!("{newer}.json"),
        format!("{old}.json"),
    ];
    want.sort();
    assert_eq!(left, want);
}

#[test]
fn check_flags_are_usage_errors_before_any_request() {
    for (extra, needle) in [
        (vec!["--max-age", "soon"], "--max-age `soon` is invalid"),
        (vec!["--max-age", "0s"], "--max-age `0s` is invalid"),
        (vec!["--max-age", "26"], "--max-age `26` is invalid"),
        (
            vec!["--backmon-definition", "--schedule", "daily"],
            "--schedule `daily` is invalid",
        ),
        (
            vec!["--backmon-definition", "--format", "tar"],
            "--format `tar` is unknown",
        ),
    ] {
        let mut args = vec![
            "check",
            "--bucket",
            "some-bucket",
            "--database",
            "app",
            "--endpoint-url",
            "http://127.0.0.1:1",
        ];
        args.extend(extra);
        Run::new(&args).run().fails(2, &[needle]);
    }
    // Port 1 refuses connections: with valid flags the request is made and fails with 1.
    Run::new(&[
        "check",
        "--bucket",
        "some-bucket",
        "--database",
        "app",
        "--endpoint-url",
        "http://127.0.0.1:1",
    ])
    .env("AWS_ACCESS_KEY_ID", "x")
    .env("AWS_SECRET_ACCESS_KEY", "y")
    .run()
    .fails(1, &[]);
}

#[test]
fn backmon_definition_is_yaml_in_backmons_schema() {
    let out = Run::new(&[
        "check",
        "--bucket",
        "my-backups",
        "--prefix",
        "prod/db",
        "--database",
        "app",
        "--backmon-definition",
        "--schedule",
        "15 2 * * *",
        "--format",
        "custom",
        "--keep-last",
        "7",
        "--keep-within",
        "30d",
    ])
    .run();
    let yaml = out.ok_plain();
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let parsed = std::process::Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin.read())))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(yaml.as_bytes())?;
            child.wait_with_output()
        })
        .expect("the venv's python with PyYAML (scripts/setup installs it)");
    assert!(parsed.status.success(), "not YAML:\n{yaml}");
    let def: Value = serde_json::from_slice(&parsed.stdout).unwrap();
    assert_eq!(
        def,
        json!({"directories": {"prod/db/app": {
            "alias": "app",
            "defaults": {"schedule": "15 2 * * *", "sort": "interpolation", "purge": false},
            "files": {"app-%Y%M%DT%h%m%sZ.dump.gz": {
                "alias": "app-custom",
                "schedule": "15 2 * * *",
                "sort": "interpolation",
                "purge": false,
                "retention-count": 7,
                "retention-age": "30d",
            }},
        }}}),
        "{yaml}"
    );
    assert!(yaml.contains("--max-age 26h"), "{yaml}");
}

fn policy(extra: &[&str]) -> Done {
    let mut args = vec!["policy", "--bucket", "my-backups", "--prefix", "prod"];
    args.extend_from_slice(extra);
    Run::new(&args).run()
}

/// Every action of a document, sorted and without repeats.
fn actions(doc: &Value) -> Vec<String> {
    let mut all: Vec<String> = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["Action"].as_array().unwrap().clone())
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    all.sort();
    all.dedup();
    all
}

fn statement<'a>(doc: &'a Value, action: &str) -> Vec<&'a Value> {
    doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Action"].as_array().unwrap().contains(&json!(action)))
        .collect()
}

#[test]
fn policy_action_sets_per_purpose() {
    const OBJECTS: &str = "arn:aws:s3:::my-backups/prod/*";
    const BACKUP: &[&str] = &["s3:AbortMultipartUpload", "s3:PutObject"];
    const PRUNE: &[&str] = &[
        "s3:AbortMultipartUpload",
        "s3:DeleteObject",
        "s3:ListBucket",
        "s3:ListBucketMultipartUploads",
    ];
    const RESTORE: &[&str] = &["s3:GetObject", "s3:ListBucket"];
    let union = |sets: &[&[&'static str]]| -> Vec<&'static str> {
        let mut all: Vec<&'static str> = sets.iter().flat_map(|s| s.iter().copied()).collect();
        all.sort();
        all.dedup();
        all
    };
    for (extra, want) in [
        (&[][..], BACKUP.to_vec()),
        (&["--purpose", "backup"], BACKUP.to_vec()),
        (&["--purpose", "prune"], PRUNE.to_vec()),
        (&["--purpose", "restore"], RESTORE.to_vec()),
        (&["--purpose", "backup,prune"], union(&[BACKUP, PRUNE])),
        (
            &["--purpose", "prune", "--purpose", "restore"],
            union(&[PRUNE, RESTORE]),
        ),
        // The older flags: a role that backs up and also prunes, or restores.
        (&["--prune"], union(&[BACKUP, PRUNE])),
        (&["--restore", "--latest"], union(&[BACKUP, RESTORE])),
        (&["--minimal"], BACKUP.to_vec()),
    ] {
        let doc = policy(extra).ok();
        assert_eq!(doc["Version"], "2012-10-17");
        assert_eq!(actions(&doc), want, "{extra:?}");
        for s in doc["Statement"].as_array().unwrap() {
            assert_eq!(s["Effect"], "Allow");
            assert!(s["Sid"].as_str().is_some_and(|sid| !sid.is_empty()), "{s}");
            let bucket_level = s["Action"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a.as_str().unwrap().starts_with("s3:ListBucket"));
            let want_resource = if bucket_level {
                "arn:aws:s3:::my-backups"
            } else {
                OBJECTS
            };
            assert_eq!(s["Resource"], want_resource, "{s}");
        }
        // Listing is always confined to the prefix.
        for list in statement(&doc, "s3:ListBucket") {
            assert_eq!(
                list["Condition"],
                json!({"StringLike": {"s3:prefix": ["prod/*"]}})
            );
        }
    }
    // Without a prefix there is no condition to put on the listing.
    let doc = Run::new(&["policy", "--bucket", "b-1", "--purpose", "restore"])
        .run()
        .ok();
    assert_eq!(statement(&doc, "s3:ListBucket")[0].get("Condition"), None);
    assert_eq!(
        statement(&doc, "s3:GetObject")[0]["Resource"],
        "arn:aws:s3:::b-1/*"
    );
}

#[test]
fn policy_trust_policy_subjects_and_bucket_policy() {
    let github = |extra: &[&str]| {
        let mut args = vec![
            "--prune",
            "--github-repo",
            "my-org/my-repo",
            "--account-id",
            "123456789012",
        ];
        args.extend_from_slice(extra);
        policy(&args).ok()
    };
    let aud = "token.actions.githubusercontent.com:aud";
    let sub = "token.actions.githubusercontent.com:sub";
    for (extra, condition) in [
        (
            &["--github-ref", "refs/heads/main"][..],
            json!({"StringEquals": {aud: "sts.amazonaws.com", sub: "repo:my-org/my-repo:ref:refs/heads/main"}}),
        ),
        (
            &["--github-environment", "production"],
            json!({"StringEquals": {aud: "sts.amazonaws.com", sub: "repo:my-org/my-repo:environment:production"}}),
        ),
        (
            &["--any-ref"],
            json!({"StringEquals": {aud: "sts.amazonaws.com"}, "StringLike": {sub: "repo:my-org/my-repo:*"}}),
        ),
    ] {
        let out = github(extra);
        let trust = &out["trust_policy"]["Statement"][0];
        assert_eq!(trust["Condition"], condition, "{extra:?}");
        assert_eq!(
            trust["Principal"]["Federated"],
            "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
        );
        assert_eq!(trust["Action"], json!(["sts:AssumeRoleWithWebIdentity"]));
        assert_eq!(out["permissions"], policy(&["--prune"]).ok());
    }
    // A reader role for restores, pinned to an environment, gets only its own grants.
    let reader = policy(&[
        "--purpose",
        "restore",
        "--github-repo",
        "my-org/my-repo",
        "--account-id",
        "123456789012",
        "--github-environment",
        "restore",
        "--role-name",
        "pg-backup-reader",
    ])
    .ok();
    assert_eq!(
        actions(&reader["permissions"]),
        ["s3:GetObject", "s3:ListBucket"]
    );
    assert_eq!(
        reader["bucket_policy"]["Statement"][0]["Principal"],
        json!({"AWS": "arn:aws:iam::123456789012:role/pg-backup-reader"})
    );
    let out = github(&[
        "--role-name",
        "db-backup",
        "--github-ref",
        "refs/heads/main",
    ]);
    let bucket_policy = out["bucket_policy"]["Statement"].as_array().unwrap();
    let permissions = out["permissions"]["Statement"].as_array().unwrap();
    assert_eq!(bucket_policy.len(), permissions.len());
    for (b, p) in bucket_policy.iter().zip(permissions) {
        assert_eq!(
            b["Principal"],
            json!({"AWS": "arn:aws:iam::123456789012:role/db-backup"})
        );
        let mut without = b.clone();
        without.as_object_mut().unwrap().remove("Principal");
        assert_eq!(&without, p);
    }
}

#[test]
fn policy_usage_errors_are_one_line() {
    for (extra, needle) in [
        (
            &["--github-repo", "my-repo", "--account-id", "123456789012"][..],
            "--github-repo `my-repo` is invalid",
        ),
        (
            &["--github-repo", "a/b/c", "--account-id", "123456789012"],
            "--github-repo `a/b/c` is invalid",
        ),
        (
            &["--github-repo", "o/r", "--account-id", "12345"],
            "--account-id `12345` is invalid",
        ),
        (
            &["--github-repo", "o/r", "--account-id", "12345678901x"],
            "--account-id `12345678901x`",
        ),
        (
            &["--github-repo", "o/r"],
            "--github-repo needs --account-id",
        ),
        (&["--account-id", "123456789012"], "need --github-repo"),
        (
            &[
                "--github-repo",
                "o/r",
                "--account-id",
                "123456789012",
                "--github-ref",
                "main",
            ],
            "--github-ref `main` is invalid",
        ),
        (
            &[
                "--github-repo",
                "o/r",
                "--account-id",
                "123456789012",
                "--github-ref",
                "refs/heads/main",
                "--github-environment",
                "prod",
            ],
            "cannot be used with",
        ),
        (&["--latest"], "--restore"),
        // Unpinned, the trust policy would let any branch or pull request assume the role.
        (
            &["--github-repo", "o/r", "--account-id", "123456789012"],
            "pin it with --github-ref refs/heads/main or --github-environment NAME, or pass --any-ref",
        ),
        (
            &[
                "--github-repo",
                "o/r",
                "--account-id",
                "123456789012",
                "--any-ref",
                "--github-ref",
                "refs/heads/main",
            ],
            "cannot be used with",
        ),
        (&["--any-ref"], "need --github-repo"),
        (&["--purpose", "everything"], "invalid value 'everything'"),
    ] {
        let out = policy(extra);
        out.fails(2, &[needle]);
        assert_eq!(out.stdout, "", "{extra:?}");
    }
    Run::new(&["policy", "--bucket", "b-1", "--prefix", "/abs"])
        .run()
        .fails(2, &["prefix `/abs` is invalid"]);
    Run::new(&["policy", "--bucket", "My_Bucket"])
        .run()
        .fails(2, &["bucket name `My_Bucket` is invalid"]);
}

/// `doc` without `action` (statements left with no action are dropped).
fn without(doc: &Value, action: &str) -> Value {
    let mut doc = doc.clone();
    let statements = doc["Statement"].as_array_mut().unwrap();
    for s in statements.iter_mut() {
        s["Action"]
            .as_array_mut()
            .unwrap()
            .retain(|a| a != &json!(action));
    }
    statements.retain(|s| !s["Action"].as_array().unwrap().is_empty());
    assert_ne!(actions(&doc).len(), 0);
    doc
}

/// A bucket on moto-iam with one backup of `db` from two days ago, and `policy --prune`'s
/// permissions for it.
async fn setup(db: &str) -> (String, Value, String) {
    let bucket = Store::MotoIam.bucket("iam-policy").await;
    let old = BackupId::new(db, Utc::now() - Duration::days(2), DumpFormat::Plain).key("pg/");
    put(Store::MotoIam, &bucket, &old).await;
    let doc = Run::new(&["policy", "--bucket", &bucket, "--prefix", "pg", "--prune"])
        .run()
        .ok();
    (bucket, doc, old)
}

fn as_user(run: Run, keys: &(String, String)) -> Done {
    run.env("AWS_ACCESS_KEY_ID", &keys.0)
        .env("AWS_SECRET_ACCESS_KEY", &keys.1)
        .run()
}

fn prune_run(bucket: &str, db: &str, extra: &[&str]) -> Run {
    let endpoint = Store::MotoIam.endpoint();
    let mut args = vec![
        "prune",
        "--bucket",
        bucket,
        "--prefix",
        "pg",
        "--database",
        db,
        "--region",
        "us-east-1",
        "--endpoint-url",
        &endpoint,
        "--force-path-style",
        "--keep-last",
        "1",
    ];
    args.extend_from_slice(extra);
    Run::new(&args)
}

/// A multipart upload of this tool's layout, started now (stale for `--abort-incomplete-after 0s`).
async fn open_upload(bucket: &str, db: &str) -> String {
    let key = BackupId::new(db, Utc::now() - Duration::days(3), DumpFormat::Plain).key("pg/");
    Store::MotoIam
        .client()
        .create_multipart_upload()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    key
}

#[tokio::test]
async fn the_prune_policy_is_exactly_enough_for_backup_and_prune() {
    let db = unique("iam-ok");
    Pg::create_db(&db);
    let (bucket, doc, old) = setup(&db).await;
    let user = iam_user(&doc);
    let url = Pg::url(&db);

    // backup --keep-last 1: the backup, its collision check and verification, and retention.
    let out = as_user(
        Run::backup(Store::MotoIam, &bucket, &url, &["--keep-last", "1"]),
        &user,
    );
    let json = out.ok();
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    assert_eq!(json["pruned"], json!([old]), "{}", out.stderr);
    let newest = json["key"].as_str().unwrap().to_string();
    assert_eq!(Store::MotoIam.keys_in(&bucket).await, vec![newest.clone()]);

    // prune --keep-last 1: lists, deletes, lists and aborts stale uploads.
    let older = BackupId::new(&db, Utc::now() - Duration::days(1), DumpFormat::Plain).key("pg/");
    put(Store::MotoIam, &bucket, &older).await;
    let upload = open_upload(&bucket, &db).await;
    let out = as_user(
        prune_run(&bucket, &db, &["--abort-incomplete-after", "0s"]),
        &user,
    );
    let text = out.ok_plain();
    assert!(text.contains("keep 1, delete 1"), "{text}");
    assert!(
        text.contains(&format!("aborted stale multipart upload of {upload}")),
        "{text}"
    );
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    assert_eq!(Store::MotoIam.keys_in(&bucket).await, vec![newest]);
    assert_eq!(Store::MotoIam.open_uploads(&bucket).await, 0);
}

/// The IAM policy `policy --purpose PURPOSE` prints for the test bucket's `pg/` prefix.
fn purpose_policy(bucket: &str, purpose: &str) -> Value {
    Run::new(&[
        "policy",
        "--bucket",
        bucket,
        "--prefix",
        "pg",
        "--purpose",
        purpose,
    ])
    .run()
    .ok()
}

/// `cmd` as the user with `keys`, against moto with IAM enforced.
fn iam_command(keys: &(String, String), cmd: &str, bucket: &str, extra: &[&str]) -> Done {
    let endpoint = Store::MotoIam.endpoint();
    as_user(
        crate::support::s3_command(Store::MotoIam, &endpoint, cmd, bucket, extra),
        keys,
    )
}

/// The writer role (`policy`, backup alone: PutObject and AbortMultipartUpload) backs up with no
/// warning and writes the integrity record without reading anything; it leaves its lock, which
/// it may not delete, and can neither read, list nor delete. A reader role (`--purpose
/// restore`) then lists both backups as recorded, checks, verifies and restores the newest; a
/// pruner (`--purpose prune`) deletes the older one with its record and lock, and the new one's
/// spent lock. With its record gone, the reader takes the backup for unverified.
#[tokio::test]
async fn a_write_only_backup_is_verified_and_restored_by_a_reader_and_pruned_by_a_pruner() {
    let db = unique("iam-writer");
    Pg::create_db(&db);
    let url = Pg::url(&db);
    Pg::psql(
        &url,
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g",
    );
    let bucket = Store::MotoIam.bucket("iam-writer").await;
    let writer_doc = purpose_policy(&bucket, "backup");
    assert_eq!(
        actions(&writer_doc),
        ["s3:AbortMultipartUpload", "s3:PutObject"]
    );
    let writer = iam_user(&writer_doc);
    let mut keys = Vec::new();
    for _ in 0..2 {
        let out = as_user(Run::backup(Store::MotoIam, &bucket, &url, &[]), &writer);
        let json = out.ok();
        assert!(!out.stderr.contains("warning"), "{}", out.stderr);
        assert_eq!(json["recorded"], true);
        keys.push(json.clone());
        // Keys are per second.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let (first, second) = (
        keys[0]["key"].as_str().unwrap().to_string(),
        keys[1]["key"].as_str().unwrap().to_string(),
    );
    // The record is what was stored: the bytes' sha256 and size, the dump's size and versions.
    let (body, _, _) = Store::MotoIam.get(&bucket, &second).await;
    let record = Store::MotoIam.record(&bucket, &second).await;
    assert_eq!(record["sha256"], hex::encode(Sha256::digest(&body)));
    assert_eq!(record["sha256"], keys[1]["sha256"]);
    assert_eq!(record["size"], body.len() as u64);
    assert_eq!(record["raw_size"], keys[1]["raw_size"]);
    assert_eq!(record["format"], "plain");
    assert_eq!(record["pg_dump_version"], keys[1]["pg_dump_version"]);
    assert_eq!(record["server_version"], keys[1]["server_version"]);
    let mut all = Store::MotoIam.all_keys_in(&bucket).await;
    all.sort();
    let mut want: Vec<String> = [&first, &second]
        .iter()
        .flat_map(|k| [k.to_string(), format!("{k}.json"), format!("{k}.lock")])
        .collect();
    want.sort();
    assert_eq!(
        all, want,
        "each backup, its record and its lock (not deleted)"
    );
    // The writer may not read, list or delete.
    let client = Store::MotoIam.client_with(&writer.0, &writer.1);
    assert!(client
        .get_object()
        .bucket(&bucket)
        .key(&second)
        .send()
        .await
        .is_err());
    assert!(client
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("pg/")
        .send()
        .await
        .is_err());
    assert!(client
        .delete_object()
        .bucket(&bucket)
        .key(&first)
        .send()
        .await
        .is_err());

    // The reader.
    let reader = iam_user(&purpose_policy(&bucket, "restore"));
    let listed = iam_command(&reader, "list", &bucket, &["--json"]).ok();
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{listed}");
    assert!(rows.iter().all(|r| r["recorded"] == true), "{listed}");
    let checked = iam_command(&reader, "check", &bucket, &["--database", &db, "--json"]).ok();
    assert_eq!(checked["key"], second.as_str());
    let verified = iam_command(&reader, "verify", &bucket, &["--database", &db, "--latest"]);
    let line = verified.ok_plain();
    assert!(line.contains("sha256 matches its record"), "{line}");
    let target = unique("iam-read");
    Pg::create_db(&target);
    let target_url = Pg::url(&target);
    let restore = ["--database", &db, "--latest", "--target-url", &target_url];
    iam_command(&reader, "restore", &bucket, &restore).ok_plain();
    assert_eq!(Pg::canonical_dump(&target), Pg::canonical_dump(&db));

    // The pruner.
    let pruner = iam_user(&purpose_policy(&bucket, "prune"));
    let out = iam_command(&pruner, "prune", &bucket, &["--keep-last", "1", "--json"]);
    let report = out.ok();
    assert_eq!(report["deleted"], json!([first]), "{report}");
    let mut locks = report["removed_locks"].as_array().unwrap().clone();
    locks.sort_by_key(|v| v.to_string());
    assert_eq!(
        locks,
        [
            json!(format!("{first}.lock")),
            json!(format!("{second}.lock"))
        ]
    );
    assert_eq!(report["removed_records"], json!([format!("{first}.json")]));
    let mut all = Store::MotoIam.all_keys_in(&bucket).await;
    all.sort();
    assert_eq!(all, [second.clone(), format!("{second}.json")]);

    // Without its record the backup is unverified: listed so, refused by verify and restore,
    // and no longer counted by check.
    Store::MotoIam
        .client()
        .delete_object()
        .bucket(&bucket)
        .key(format!("{second}.json"))
        .send()
        .await
        .unwrap();
    let listed = iam_command(&reader, "list", &bucket, &["--json"]).ok();
    assert_eq!(listed[0]["recorded"], false, "{listed}");
    iam_command(&reader, "verify", &bucket, &["--key", &second])
        .fails(1, &["no integrity record", "unverified", "--unverified"]);
    let target = unique("iam-unverified");
    Pg::create_db(&target);
    let target_url = Pg::url(&target);
    let restore = ["--key", &second, "--target-url", &target_url];
    iam_command(&reader, "restore", &bucket, &restore)
        .fails(1, &["no integrity record", "nothing was restored"]);
    assert_eq!(
        Pg::psql(
            &target_url,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "0"
    );
    let restore = [
        "--key",
        &second,
        "--target-url",
        &target_url,
        "--unverified",
    ];
    iam_command(&reader, "restore", &bucket, &restore).ok_plain();
    assert_eq!(Pg::canonical_dump(&target), Pg::canonical_dump(&db));
    iam_command(&reader, "check", &bucket, &["--database", &db])
        .fails(1, &["has its integrity record"]);
}

/// A policy that lets the backup write `*.sql.gz` objects and their records but no lock: the
/// lock write is denied, the backup warns once about it and completes.
#[tokio::test]
async fn a_denied_lock_write_is_a_warning_not_a_failure() {
    let db = unique("iam-nolock");
    Pg::create_db(&db);
    let bucket = Store::MotoIam.bucket("iam-nolock").await;
    let user = iam_user(&json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
            "Resource": [
                format!("arn:aws:s3:::{bucket}/pg/*.sql.gz"),
                format!("arn:aws:s3:::{bucket}/pg/*.sql.gz.json")
            ]
        }, {
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": format!("arn:aws:s3:::{bucket}/pg/*")
        }]
    }));
    let out = as_user(
        Run::backup(Store::MotoIam, &bucket, &Pg::url(&db), &[]),
        &user,
    );
    let json = out.ok();
    assert_eq!(out.stderr.matches("warning").count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("PutObject (lock)") && out.stderr.contains("AccessDenied"),
        "{}",
        out.stderr
    );
    assert_eq!(
        Store::MotoIam.keys_in(&bucket).await,
        vec![json["key"].as_str().unwrap().to_string()]
    );
}

/// Objects at this tool's keys for `db` for every second of the next minute, so the next
/// backup's key is taken unless it checks (HeadObject, s3:GetObject) and moves on to `-2`.
async fn occupy_the_next_minute(bucket: &str, db: &str) {
    let now = Utc::now();
    for s in 0..60 {
        let key = BackupId::new(db, now + Duration::seconds(s), DumpFormat::Plain).key("pg/");
        put(Store::MotoIam, bucket, &key).await;
    }
}

/// A stand-in pg_dump whose dump starts as pg_dump's does, runs past one 5 MiB part even
/// compressed, then fails once that part had time to be uploaded: the backup must abort its
/// multipart upload.
fn failing_pg_dump() -> std::path::PathBuf {
    crate::support::fake_pg_dump("head -c 6000000 /dev/urandom | base64; sleep 3; exit 1")
}

#[tokio::test]
async fn every_action_taken_out_of_each_purpose_is_named_by_the_command_that_needs_it() {
    let db = unique("iam-minus");
    Pg::create_db(&db);
    let url = Pg::url(&db);
    let backup = |bucket: &str, extra: &[&str]| Run::backup(Store::MotoIam, bucket, &url, extra);

    // backup, s3:PutObject: no backup at all, nothing written.
    let bucket = Store::MotoIam.bucket("iam-minus").await;
    let writer = purpose_policy(&bucket, "backup");
    let user = iam_user(&without(&writer, "s3:PutObject"));
    as_user(backup(&bucket, &[]), &user).fails(1, &["lack s3:PutObject"]);
    assert_eq!(
        Store::MotoIam.all_keys_in(&bucket).await,
        Vec::<String>::new()
    );

    // backup, s3:AbortMultipartUpload: a dump that fails after its first part leaves the upload,
    // and the error names the permission and the command that removes the parts. With it, the
    // upload is aborted.
    let fake = failing_pg_dump();
    let fake = fake.to_str().unwrap();
    let failing = ["--part-size", "5MiB", "--pg-dump-path", fake];
    let user = iam_user(&without(&writer, "s3:AbortMultipartUpload"));
    let out = as_user(backup(&bucket, &failing), &user);
    out.fails(1, &["could not be aborted", "lack s3:AbortMultipartUpload"]);
    assert!(
        out.stderr.contains("aws s3api abort-multipart-upload"),
        "{}",
        out.stderr
    );
    assert_eq!(Store::MotoIam.open_uploads(&bucket).await, 1);
    let bucket = Store::MotoIam.bucket("iam-minus").await;
    let writer = purpose_policy(&bucket, "backup");
    let out = as_user(backup(&bucket, &failing), &iam_user(&writer));
    out.fails(1, &["the upload was aborted and nothing was stored"]);
    assert!(out.stderr.contains("in parts of 5MiB"), "{}", out.stderr);
    assert_eq!(Store::MotoIam.open_uploads(&bucket).await, 0);
    assert_eq!(
        Store::MotoIam.all_keys_in(&bucket).await.len(),
        1,
        "the lock only"
    );

    // The writer cannot see that its key is taken (HeadObject answers 403, as AWS does for a
    // missing key without s3:ListBucket); its final write is conditional (If-None-Match), so it
    // fails cleanly instead of overwriting the object there.
    let bucket = Store::MotoIam.bucket("iam-minus").await;
    let writer = purpose_policy(&bucket, "backup");
    occupy_the_next_minute(&bucket, &db).await;
    let before = Store::MotoIam.keys_in(&bucket).await;
    as_user(backup(&bucket, &[]), &iam_user(&writer)).fails(
        1,
        &["another object was written", "nothing was overwritten"],
    );
    let mut after = Store::MotoIam.keys_in(&bucket).await;
    after.retain(|k| !k.ends_with(".lock"));
    let mut before = before;
    before.sort();
    after.sort();
    assert_eq!(after, before, "the occupied keys are untouched");

    // prune: each action, taken away, is named by the failure, and nothing is deleted.
    for (action, needle) in [
        ("s3:ListBucket", "s3:ListBucket is denied"),
        ("s3:DeleteObject", "s3:DeleteObject is denied"),
        (
            "s3:ListBucketMultipartUploads",
            "s3:ListBucketMultipartUploads is denied",
        ),
        ("s3:AbortMultipartUpload", "lack s3:AbortMultipartUpload"),
    ] {
        let (bucket, _, _) = setup(&db).await;
        let newer =
            BackupId::new(&db, Utc::now() - Duration::days(1), DumpFormat::Plain).key("pg/");
        put(Store::MotoIam, &bucket, &newer).await;
        open_upload(&bucket, &db).await;
        let pruner = purpose_policy(&bucket, "prune");
        let user = iam_user(&without(&pruner, action));
        let before = Store::MotoIam.all_keys_in(&bucket).await;
        as_user(
            prune_run(&bucket, &db, &["--abort-incomplete-after", "0s"]),
            &user,
        )
        .fails(1, &[needle]);
        if action != "s3:AbortMultipartUpload" && action != "s3:ListBucketMultipartUploads" {
            assert_eq!(
                Store::MotoIam.all_keys_in(&bucket).await,
                before,
                "{action}"
            );
        }
        assert_eq!(Store::MotoIam.open_uploads(&bucket).await, 1, "{action}");
        // The whole prune policy does it all.
        as_user(
            prune_run(&bucket, &db, &["--abort-incomplete-after", "0s"]),
            &iam_user(&pruner),
        )
        .ok_plain();
        assert_eq!(
            Store::MotoIam.keys_in(&bucket).await,
            std::slice::from_ref(&newer),
            "{action}"
        );
        assert_eq!(Store::MotoIam.open_uploads(&bucket).await, 0, "{action}");
    }

    // restore: s3:GetObject (verify reads the backup and its record), s3:ListBucket (list,
    // check and --latest list the prefix).
    let bucket = Store::MotoIam.bucket("iam-minus").await;
    let key = backup(&bucket, &[]).run().ok()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let reader = purpose_policy(&bucket, "restore");
    let no_get = iam_user(&without(&reader, "s3:GetObject"));
    iam_command(&no_get, "verify", &bucket, &["--key", &key]).fails(1, &["lack s3:GetObject"]);
    let no_list = iam_user(&without(&reader, "s3:ListBucket"));
    for (cmd, extra) in [
        ("list", &[][..]),
        ("check", &["--database", db.as_str()]),
        ("verify", &["--database", db.as_str(), "--latest"]),
    ] {
        iam_command(&no_list, cmd, &bucket, extra).fails(1, &["s3:ListBucket is denied"]);
    }
    let full = iam_user(&reader);
    iam_command(&full, "verify", &bucket, &["--database", &db, "--latest"]).ok_plain();
    iam_command(&full, "check", &bucket, &["--database", &db]).ok_plain();
}

/// The policy confines ListBucket to the prefix with an `s3:prefix` condition. moto 5.2 does
/// not enforce it: it passes no `s3:prefix` context key to its condition checks (only
/// `sts:ExternalId`, see moto/iam/utils.py `format_incoming_conditional_values`), so a listing
/// outside the prefix is allowed there though AWS denies it. The condition stays in the policy;
/// this test pins moto's behaviour so that the day moto enforces it, the second assertion fails
/// and should become `.fails(1, &["s3:ListBucket is denied"])`.
#[tokio::test]
async fn list_bucket_prefix_condition_on_moto() {
    let db = unique("iam-prefix");
    let (bucket, doc, _) = setup(&db).await;
    let user = iam_user(&doc);
    let endpoint = Store::MotoIam.endpoint();
    let list = |prefix: &str| {
        as_user(
            Run::new(&[
                "list",
                "--bucket",
                &bucket,
                "--prefix",
                prefix,
                "--region",
                "us-east-1",
                "--endpoint-url",
                &endpoint,
                "--force-path-style",
                "--json",
            ]),
            &user,
        )
    };
    assert_eq!(list("pg").ok().as_array().unwrap().len(), 1);
    assert_eq!(
        list("other").ok(),
        json!([]),
        "moto now enforces s3:prefix: assert AccessDenied here"
    );
}

#[tokio::test]
async fn the_restore_policy_is_exactly_enough_for_restore_latest_and_each_action_is_named() {
    let db = unique("iam-restore");
    Pg::create_db(&db);
    Pg::psql(
        &Pg::url(&db),
        "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 100) g",
    );
    let bucket = Store::MotoIam.bucket("iam-restore").await;
    // A real backup written with admin keys, then a reader with exactly `policy --purpose
    // restore`.
    Run::backup(Store::MotoIam, &bucket, &Pg::url(&db), &[])
        .run()
        .ok();
    let doc = purpose_policy(&bucket, "restore");
    let endpoint = Store::MotoIam.endpoint();
    let restore = |target: &str| {
        Run::new(&[
            "restore",
            "--bucket",
            &bucket,
            "--prefix",
            "pg",
            "--region",
            "us-east-1",
            "--endpoint-url",
            &endpoint,
            "--force-path-style",
            "--database",
            &db,
            "--latest",
            "--target-url",
            &Pg::url(target),
        ])
    };
    let target = unique("iam-restored");
    Pg::create_db(&target);
    let out = as_user(restore(&target), &iam_user(&doc));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(Pg::psql(&Pg::url(&target), "SELECT count(*) FROM t"), "100");
    // Each action the restore statement grants, taken away, is named by the failure.
    for (action, needle) in [
        ("s3:GetObject", "lack s3:GetObject"),
        ("s3:ListBucket", "s3:ListBucket is denied"),
    ] {
        let target = unique("iam-denied");
        Pg::create_db(&target);
        let out = as_user(restore(&target), &iam_user(&without(&doc, action)));
        out.fails(1, &[needle]);
    }
}
