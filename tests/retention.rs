//! `list` and `prune` on both S3 servers: restic-style keep rules over three years of daily
//! backups, foreign objects never touched, dry runs, batching past 1,000 keys, stale uploads,
//! and least privilege (retention skipped with a warning when the backup user may not list or
//! delete).

use crate::support::{unique, Pg, Run, Store, STORES};
use chrono::{Duration, NaiveDate, TimeZone, Utc};
use pg_s3_backup::layout::{BackupId, DumpFormat};

/// Objects under the prefix that are not this tool's backups of `app`, plus one outside it.
const FOREIGN: &[&str] = &[
    "pg/app/",
    "pg/app/notes.txt",
    "pg/app/app-backup.sql.gz",
    "pg/app/app-20260101T000000Z.sql.gz.tmp",
    "pg/rootfile.sql.gz",
    "pg/other/other-20200101T000000Z.sql.gz",
    "elsewhere/app/app-20200101T000000Z.sql.gz",
];

/// "Folder" placeholders are empty (s3s-fs refuses a body for them).
fn body_for(key: &str) -> Vec<u8> {
    if key.ends_with('/') {
        Vec::new()
    } else {
        b"x".to_vec()
    }
}

fn daily_key(day: NaiveDate) -> String {
    let time = Utc.from_utc_datetime(&day.and_hms_opt(3, 0, 0).unwrap());
    BackupId::new("app", time, DumpFormat::Plain).key("pg/")
}

/// Three years of daily backups (1,096 keys, so listing and deleting cross 1,000) plus FOREIGN.
async fn seed(store: Store, bucket: &str) -> Vec<String> {
    let last = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
    let keys: Vec<String> = (0..1096)
        .map(|i| daily_key(last - Duration::days(i)))
        .collect();
    let client = store.client();
    let all: Vec<String> = keys
        .iter()
        .cloned()
        .chain(FOREIGN.iter().map(|s| s.to_string()))
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in all.chunks(64) {
        let (client, bucket, chunk) = (client.clone(), bucket.to_string(), chunk.to_vec());
        tasks.spawn(async move {
            for key in chunk {
                client
                    .put_object()
                    .bucket(&bucket)
                    .key(&key)
                    .body(body_for(&key).into())
                    .send()
                    .await
                    .unwrap();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    keys
}

/// The survivors of `--keep-daily 7 --keep-weekly 4 --keep-monthly 6 --keep-yearly 2` on daily
/// backups ending Monday 2026-11-23, worked out by hand with restic's rules: 7 days; the newest
/// of ISO weeks 48 (11-23), 47 (11-22), 46 (11-15), 45 (11-08); of each month back to June; of
/// 2026 and 2025. Every rule's count is used up, so restic's "keep the oldest" never applies.
fn expected_survivors() -> Vec<String> {
    let days = [
        "2026-11-23",
        "2026-11-22",
        "2026-11-21",
        "2026-11-20",
        "2026-11-19",
        "2026-11-18",
        "2026-11-17",
        "2026-11-15",
        "2026-11-08",
        "2026-10-31",
        "2026-09-30",
        "2026-08-31",
        "2026-07-31",
        "2026-06-30",
        "2025-12-31",
    ];
    days.iter().map(|d| daily_key(d.parse().unwrap())).collect()
}

fn prune(store: Store, bucket: &str, extra: &[&str]) -> Run {
    let endpoint = store.endpoint();
    let mut args = vec![
        "prune",
        "--bucket",
        bucket,
        "--prefix",
        "pg",
        "--database",
        "app",
        "--region",
        "us-east-1",
        "--endpoint-url",
        &endpoint,
        "--force-path-style",
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
        "--keep-monthly",
        "6",
        "--keep-yearly",
        "2",
    ];
    args.extend_from_slice(extra);
    let (ak, sk) = store.keys();
    Run::new(&args)
        .env("AWS_ACCESS_KEY_ID", &ak)
        .env("AWS_SECRET_ACCESS_KEY", &sk)
}

#[tokio::test]
async fn a_mixed_policy_keeps_exactly_the_right_backups_and_nothing_foreign() {
    for store in STORES {
        let bucket = store.bucket("prune").await;
        let keys = seed(store, &bucket).await;
        // Some stores do not list a "folder" placeholder; compare against what they do list.
        let mut before = store.keys_in(&bucket).await;
        before.sort();
        let foreign: Vec<String> = before
            .iter()
            .filter(|k| !keys.contains(k))
            .cloned()
            .collect();
        assert!(foreign.len() >= FOREIGN.len() - 1, "{store:?}: {foreign:?}");

        // A dry run prints the plan as JSON and deletes nothing.
        let out = prune(store, &bucket, &["--dry-run", "--json"]).run();
        let plan = out.ok();
        let decisions = plan["plans"][0]["decisions"].as_array().unwrap();
        assert_eq!(
            decisions.len(),
            keys.len(),
            "{store:?}: foreign objects are no candidates"
        );
        let kept: Vec<&str> = decisions
            .iter()
            .filter(|d| d["keep"] == true)
            .map(|d| d["key"].as_str().unwrap())
            .collect();
        assert_eq!(kept, expected_survivors(), "{store:?}");
        assert_eq!(
            decisions[0]["reasons"],
            serde_json::json!(["daily", "weekly", "monthly", "yearly"])
        );
        let mut after = store.keys_in(&bucket).await;
        after.sort();
        assert_eq!(after, before, "{store:?}: the dry run deleted something");

        // The real run deletes 1,081 backups (two DeleteObjects batches) and nothing else.
        let out = prune(store, &bucket, &[]).run();
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(
            out.stdout.contains("database app: keep 15, delete 1081"),
            "{}",
            out.stdout
        );
        let mut left = store.keys_in(&bucket).await;
        left.sort();
        let mut want: Vec<String> = expected_survivors().into_iter().chain(foreign).collect();
        want.sort();
        assert_eq!(left, want, "{store:?}");

        // Pruning again changes nothing.
        prune(store, &bucket, &[]).run().ok_plain();
        assert_eq!(store.keys_in(&bucket).await.len(), want.len());
    }
}

#[tokio::test]
async fn list_shows_only_this_tools_backups_newest_first() {
    for store in STORES {
        let bucket = store.bucket("list").await;
        let client = store.client();
        for key in [
            "pg/b/b-20260102T000000Z.dump.gz",
            "pg/a/a-20260101T000000Z.sql.gz",
            "pg/a/a-20260103T000000Z-2.sql.gz",
        ]
        .iter()
        .chain(FOREIGN)
        {
            let body = if key.ends_with('/') {
                Vec::new()
            } else {
                b"12345".to_vec()
            };
            client
                .put_object()
                .bucket(&bucket)
                .key(*key)
                .body(body.into())
                .send()
                .await
                .unwrap();
        }
        let endpoint = store.endpoint();
        let (ak, sk) = store.keys();
        let list = |extra: &[&str]| {
            let mut args = vec![
                "list",
                "--bucket",
                &bucket,
                "--prefix",
                "pg/",
                "--endpoint-url",
                &endpoint,
                "--force-path-style",
                "--region",
                "us-east-1",
            ];
            args.extend_from_slice(extra);
            Run::new(&args)
                .env("AWS_ACCESS_KEY_ID", &ak)
                .env("AWS_SECRET_ACCESS_KEY", &sk)
                .run()
        };
        let all = list(&["--json"]).ok();
        let keys: Vec<&str> = all
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["key"].as_str().unwrap())
            .collect();
        // `other` is a database of its own under the prefix, so it is listed too.
        assert_eq!(
            keys,
            [
                "pg/a/a-20260103T000000Z-2.sql.gz",
                "pg/b/b-20260102T000000Z.dump.gz",
                "pg/a/a-20260101T000000Z.sql.gz",
                "pg/other/other-20200101T000000Z.sql.gz"
            ],
            "{store:?}"
        );
        assert_eq!(all[1]["format"], "custom");
        assert_eq!(all[1]["size"], 5);
        let one = list(&["--json", "--database", "a"]).ok();
        assert_eq!(one.as_array().unwrap().len(), 2);
        let table = list(&[]);
        assert_eq!(table.code, 0);
        assert!(table.stdout.starts_with("KEY"), "{}", table.stdout);
        assert!(!table.stdout.contains("notes.txt") && !table.stdout.contains("rootfile"));
    }
}

#[tokio::test]
async fn backup_prunes_after_its_upload_and_keeps_what_it_wrote() {
    let db = unique("keep");
    Pg::create_db(&db);
    for store in STORES {
        let bucket = store.bucket("keep").await;
        // Two older backups of this database and one foreign file.
        let client = store.client();
        let old: Vec<String> = [400, 200]
            .iter()
            .map(|d| {
                BackupId::new(&db, Utc::now() - Duration::days(*d), DumpFormat::Plain).key("pg/")
            })
            .collect();
        for key in old.iter().map(String::as_str).chain(["pg/notes.txt"]) {
            client
                .put_object()
                .bucket(&bucket)
                .key(key)
                .body(b"x".to_vec().into())
                .send()
                .await
                .unwrap();
        }
        let json = Run::backup(store, &bucket, &Pg::url(&db), &["--keep-last", "2"])
            .run()
            .ok();
        let key = json["key"].as_str().unwrap().to_string();
        assert_eq!(json["pruned_count"], 1);
        assert_eq!(json["pruned"], serde_json::json!([old[0]]));
        let mut left = store.keys_in(&bucket).await;
        left.sort();
        let mut want = vec![key, old[1].clone(), "pg/notes.txt".to_string()];
        want.sort();
        assert_eq!(left, want, "{store:?}");
    }
}

/// Backups started in one second are `-2`, `-3`, ... `-10` in the order they ran; their text
/// order is not that order (`-10` sorts before `-2`, and `-2` before none), so retention goes by
/// the number. `prune --keep-last 2` keeps the two that ran last; `list` agrees on the newest.
#[tokio::test]
async fn backups_of_one_second_are_kept_in_the_order_they_ran() {
    for store in STORES {
        let bucket = store.bucket("second").await;
        let client = store.client();
        let time = Utc.with_ymd_and_hms(2026, 11, 20, 3, 0, 0).unwrap();
        let mut id = BackupId::new("app", time, DumpFormat::Plain);
        let mut keys = Vec::new();
        for _ in 0..10 {
            keys.push(id.key("pg/"));
            id = id.next_seq();
        }
        for key in &keys {
            client
                .put_object()
                .bucket(&bucket)
                .key(key)
                .body(b"x".to_vec().into())
                .send()
                .await
                .unwrap();
        }
        let endpoint = store.endpoint();
        let (ak, sk) = store.keys();
        let run = |args: &[&str]| {
            let mut all = vec![
                "--bucket",
                &bucket,
                "--prefix",
                "pg",
                "--region",
                "us-east-1",
                "--endpoint-url",
                &endpoint,
                "--force-path-style",
                "--json",
            ];
            all.splice(0..0, args.iter().copied());
            Run::new(&all)
                .env("AWS_ACCESS_KEY_ID", &ak)
                .env("AWS_SECRET_ACCESS_KEY", &sk)
                .run()
                .ok()
        };
        let listed = run(&["list"]);
        assert_eq!(
            listed[0]["key"].as_str(),
            Some(keys[9].as_str()),
            "{store:?}"
        );
        let pruned = run(&["prune", "--keep-last", "2"]);
        let mut deleted: Vec<String> = pruned["deleted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        deleted.sort();
        let mut want = keys[..8].to_vec();
        want.sort();
        assert_eq!(deleted, want, "{store:?}");
        let mut left = store.keys_in(&bucket).await;
        left.sort();
        let mut kept = keys[8..].to_vec();
        kept.sort();
        assert_eq!(left, kept, "{store:?}");
    }
}

#[tokio::test]
async fn prune_without_a_keep_rule_is_a_usage_error() {
    let out = Run::new(&[
        "prune",
        "--bucket",
        "some-bucket",
        "--endpoint-url",
        "http://127.0.0.1:1",
    ])
    .run();
    out.fails(2, &["no keep rule given", "--keep-last"]);
    let out = Run::new(&["prune", "--bucket", "some-bucket", "--keep-within", "0d"]).run();
    out.fails(2, &["--keep-within `0d` is a zero span"]);
    let out = Run::new(&["prune", "--bucket", "some-bucket", "--keep-last", "0"]).run();
    out.fails(2, &["--keep-last `0`"]);
}

#[tokio::test]
async fn stale_uploads_are_aborted_where_the_store_can_list_them() {
    let store = Store::Moto;
    let bucket = store.bucket("stale").await;
    let client = store.client();
    let ours = BackupId::new("app", Utc::now() - Duration::days(3), DumpFormat::Plain).key("pg/");
    for key in [ours.as_str(), "pg/app/someone-elses-upload.bin"] {
        client
            .create_multipart_upload()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .unwrap();
    }
    let out = prune(store, &bucket, &["--abort-incomplete-after", "0s"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains(&format!("aborted stale multipart upload of {ours}")),
        "{}",
        out.stdout
    );
    let left = client
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = left.uploads().iter().filter_map(|u| u.key()).collect();
    assert_eq!(keys, ["pg/app/someone-elses-upload.bin"]);

    // s3s-fs 0.14 cannot list uploads: prune says so once and still succeeds.
    let bucket = Store::S3sFs.bucket("stale").await;
    let out = prune(Store::S3sFs, &bucket, &[]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stderr
            .matches("does not implement ListMultipartUploads")
            .count(),
        1,
        "{}",
        out.stderr
    );
}

/// A backup that has run longer than `--abort-incomplete-after` (its key and its upload 3 h
/// old) is alive while it rewrites its lock: prune leaves the upload and the lock. An upload
/// as old without a fresh lock is a killed run's and is aborted. Then a real backup, its lock
/// rewritten every second, survives a prune with a 2 s age that runs while it uploads.
#[tokio::test]
async fn a_long_backup_still_running_is_not_taken_for_a_killed_one() {
    let store = Store::Moto;
    let bucket = store.bucket("alive").await;
    let client = store.client();
    let old = Utc::now() - Duration::hours(3);
    let alive = BackupId::new("app", old, DumpFormat::Plain).key("pg/");
    let dead = BackupId::new("app", old - Duration::seconds(1), DumpFormat::Plain).key("pg/");
    for key in [&alive, &dead] {
        client
            .create_multipart_upload()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .unwrap();
    }
    // The running backup's heartbeat, written just now.
    client
        .put_object()
        .bucket(&bucket)
        .key(format!("{alive}.lock"))
        .body(b"{}".to_vec().into())
        .send()
        .await
        .unwrap();
    let out = prune(store, &bucket, &["--abort-incomplete-after", "1h"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains(&format!("aborted stale multipart upload of {dead}")),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(&alive), "{}", out.stdout);
    assert_eq!(store.open_uploads(&bucket).await, 1);
    assert!(store
        .keys_in(&bucket)
        .await
        .contains(&format!("{alive}.lock")));

    let db = unique("alive");
    Pg::create_db(&db);
    let slow = crate::support::fake_pg_dump("head -c 12582912 /dev/urandom; sleep 6");
    let child = Run::backup(
        store,
        &bucket,
        &Pg::url(&db),
        &[
            "--part-size",
            "5MiB",
            "--pg-dump-path",
            slow.to_str().unwrap(),
        ],
    )
    .env("PGS3_DEBUG_HEARTBEAT_SECS", "1")
    .spawn();
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let out = prune(store, &bucket, &["--abort-incomplete-after", "2s"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        !out.stdout.contains(&db),
        "a running backup was cleaned up: {}",
        out.stdout
    );
    let done = crate::support::Done::from(child.wait_with_output().unwrap());
    let json = done.ok();
    assert!(json["key"].as_str().unwrap().contains(&db));
}

/// An IAM user on moto-iam allowed exactly `actions` on the bucket (and its objects).
fn user_with(bucket: &str, actions: &[&str]) -> (String, String) {
    crate::support::iam_user(&serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")]}]
    }))
}

#[tokio::test]
async fn least_privilege_backup_succeeds_and_skips_retention_with_one_warning() {
    let db = unique("lp");
    Pg::create_db(&db);
    let store = Store::MotoIam;
    let bucket = store.bucket("lp").await;
    let endpoint = store.endpoint();
    let url = Pg::url(&db);
    let run = |cmd: &str, keys: &(String, String)| {
        let target = if cmd == "backup" {
            ["--database-url", url.as_str()]
        } else {
            ["--database", db.as_str()]
        };
        let mut args = vec![
            cmd,
            "--bucket",
            &bucket,
            "--prefix",
            "pg",
            "--region",
            "us-east-1",
            "--endpoint-url",
            &endpoint,
            "--force-path-style",
            "--keep-last",
            "1",
        ];
        args.extend(target);
        Run::new(&args)
            .env("AWS_ACCESS_KEY_ID", &keys.0)
            .env("AWS_SECRET_ACCESS_KEY", &keys.1)
            .run()
    };
    // The seed's PutObject-only backup user (plus abort, to clean up its own failures).
    let put_only = user_with(&bucket, &["s3:PutObject", "s3:AbortMultipartUpload"]);
    let out = run("backup", &put_only);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stderr.matches("retention was skipped").count(),
        1,
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("s3:ListBucket is denied"),
        "{}",
        out.stderr
    );
    run("prune", &put_only).fails(1, &["s3:ListBucket is denied"]);

    // May list but not delete: the warning names s3:DeleteObject; nothing is deleted.
    let no_delete = user_with(
        &bucket,
        &[
            "s3:PutObject",
            "s3:AbortMultipartUpload",
            "s3:GetObject",
            "s3:ListBucket",
        ],
    );
    let out = run("backup", &no_delete);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("retention was skipped: s3:DeleteObject is denied"),
        "{}",
        out.stderr
    );
    run("prune", &no_delete).fails(1, &["s3:DeleteObject is denied"]);
    // Both backups stand. Both claimed their key with a lock (HeadObject's 403 means "unknown",
    // not "skip the claim"), and neither user may delete it: two spent locks, which a later
    // prune with delete rights removes.
    let keys = store.keys_in(&bucket).await;
    assert_eq!(
        keys.iter().filter(|k| k.ends_with(".sql.gz")).count(),
        2,
        "{keys:?}"
    );
    assert_eq!(
        keys.iter().filter(|k| k.ends_with(".lock")).count(),
        2,
        "{keys:?}"
    );
}

/// `backup --keep-*` (all the Action does) cleans up after killed runs like `prune`: this tool's
/// uploads and locks older than `--abort-incomplete-after` go; another run's in-flight upload and
/// lock, and uploads outside the layout, stay. A value short enough to abort a backup still
/// running in another job is refused before anything happens.
#[tokio::test]
async fn backup_with_a_keep_rule_cleans_up_after_killed_runs() {
    let db = unique("cleanup");
    Pg::create_db(&db);
    let store = Store::Moto;
    let bucket = store.bucket("cleanup").await;
    let client = store.client();
    let at = |days| BackupId::new(&db, Utc::now() - Duration::days(days), DumpFormat::Plain);
    let (stale, running) = (at(3).key("pg/"), at(0).key("pg/"));
    let foreign = format!("pg/{db}/someone-elses-upload.bin");
    for key in [&stale, &running, &foreign] {
        client
            .create_multipart_upload()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .unwrap();
    }
    let (stale_lock, running_lock) = (
        BackupId::lock_key(&at(2).key("pg/")),
        BackupId::lock_key(&running),
    );
    for key in [&stale_lock, &running_lock] {
        client
            .put_object()
            .bucket(&bucket)
            .key(key)
            .body(b"{}".to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let url = Pg::url(&db);
    let before = store.keys_in(&bucket).await;

    for bad in ["30m", "0s", "soon"] {
        let out = Run::backup(
            store,
            &bucket,
            &url,
            &["--keep-last", "5", "--abort-incomplete-after", bad],
        )
        .run();
        out.fails(2, &[&format!("--abort-incomplete-after `{bad}`")]);
        assert_eq!(store.keys_in(&bucket).await, before, "{bad}");
        assert_eq!(store.open_uploads(&bucket).await, 3, "{bad}");
    }

    // A dry run plans retention but cleans nothing up.
    let out = Run::backup(store, &bucket, &url, &["--keep-last", "5", "--dry-run"]).run();
    let json = out.ok();
    assert_eq!(json["retention"]["aborted_uploads"], serde_json::json!([]));
    assert_eq!(store.open_uploads(&bucket).await, 3);

    let out = Run::backup(store, &bucket, &url, &["--keep-last", "5"]).run();
    let json = out.ok();
    assert_eq!(
        json["retention"]["aborted_uploads"],
        serde_json::json!([stale])
    );
    // The old-looking lock was written seconds ago, as a running backup's heartbeat is: it
    // stays (`faults::prune_removes_stale_lock_objects_only` has locks that age).
    assert_eq!(json["retention"]["removed_locks"], serde_json::json!([]));
    let left = client
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let mut uploads: Vec<&str> = left.uploads().iter().filter_map(|u| u.key()).collect();
    uploads.sort();
    let mut want = vec![running.as_str(), foreign.as_str()];
    want.sort();
    assert_eq!(uploads, want);
    let keys = store.keys_in(&bucket).await;
    assert!(keys.contains(&running_lock), "{keys:?}");
    assert!(keys.contains(&stale_lock), "{keys:?}");

    // Without --json the cleanup is reported too, and a backup without a keep rule does none.
    client
        .create_multipart_upload()
        .bucket(&bucket)
        .key(&stale)
        .send()
        .await
        .unwrap();
    let out = Run::backup(store, &bucket, &url, &[]).run();
    out.ok();
    assert_eq!(store.open_uploads(&bucket).await, 3);

    // An age reaching before the calendar's start cleans up nothing rather than failing.
    let out = Run::backup(
        store,
        &bucket,
        &url,
        &[
            "--keep-last",
            "5",
            "--abort-incomplete-after",
            "400000years",
        ],
    )
    .run();
    assert_eq!(
        out.ok()["retention"]["aborted_uploads"],
        serde_json::json!([])
    );
    assert_eq!(store.open_uploads(&bucket).await, 3);
    let out = Run::backup(store, &bucket, &url, &["--keep-last", "5"]).run();
    assert_eq!(
        out.ok()["retention"]["aborted_uploads"],
        serde_json::json!([stale])
    );
}
