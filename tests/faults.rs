//! `backup` under S3 faults injected by `support::proxy`, on both S3 servers: retried errors,
//! connection resets, a completion that never succeeds, and an unreachable endpoint.

use crate::support::proxy::{Fault, Op, Proxy};
use crate::support::{gunzip, script, unique, Done, Pg, Run, Store, STORES};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const SIZE: usize = 12 * 1024 * 1024;

/// 12 MiB of random bytes, written once per test process, so every run dumps the same input.
fn input() -> &'static PathBuf {
    static INPUT: OnceLock<PathBuf> = OnceLock::new();
    INPUT.get_or_init(|| {
        use rand::RngCore;
        let mut data = vec![0u8; SIZE];
        rand::rng().fill_bytes(&mut data);
        let path = std::env::temp_dir().join(unique("pgs3-faults-input"));
        std::fs::write(&path, data).unwrap();
        path
    })
}

/// A pg_dump stand-in that writes the fixed input (three 5 MiB parts).
fn fake_pg_dump() -> PathBuf {
    script(
        "pg_dump",
        &format!(
            r#"if [ "$1" = "--version" ]; then echo "pg_dump (PostgreSQL) 99.1"; exit 0; fi
head -c {SIZE} '{}'"#,
            input().display()
        ),
    )
}

fn database() -> &'static String {
    static DB: OnceLock<String> = OnceLock::new();
    DB.get_or_init(|| {
        let db = unique("faults");
        Pg::create_db(&db);
        db
    })
}

/// A backup of the fixed input to `bucket` through `endpoint` (a proxy, or anything else),
/// with `store`'s credentials.
fn backup(store: Store, bucket: &str, endpoint: &str) -> Run {
    let fake = fake_pg_dump();
    let db_url = Pg::url(database());
    let (ak, sk) = store.keys();
    Run::new(&[
        "backup",
        "--database-url",
        &db_url,
        "--bucket",
        bucket,
        "--prefix",
        "pg/",
        "--region",
        "us-east-1",
        "--endpoint-url",
        endpoint,
        "--force-path-style",
        "--json",
        "--part-size",
        "5MiB",
        "--pg-dump-path",
        fake.to_str().unwrap(),
    ])
    .env("AWS_ACCESS_KEY_ID", &ak)
    .env("AWS_SECRET_ACCESS_KEY", &sk)
}

async fn run(r: Run) -> Done {
    tokio::task::spawn_blocking(move || r.run()).await.unwrap()
}

/// Checks the bucket holds exactly the object of `json`, no open upload, intact content.
async fn check_object(store: Store, bucket: &str, json: &serde_json::Value) -> (String, String) {
    let key = json["key"].as_str().unwrap().to_string();
    assert_eq!(store.keys_in(bucket).await, vec![key.clone()], "{store:?}");
    assert_eq!(store.open_uploads(bucket).await, 0, "{store:?}");
    let (body, meta, _) = store.get(bucket, &key).await;
    let sha = hex::encode(Sha256::digest(&body));
    assert_eq!(json["sha256"], sha.as_str(), "{store:?}");
    assert_eq!(meta.get("sha256"), Some(&sha), "{store:?}: {meta:?}");
    assert_eq!(json["parts"], 3, "{store:?}");
    assert!(
        gunzip(&body) == std::fs::read(input()).unwrap(),
        "{store:?}: content differs from the input"
    );
    (key, sha)
}

async fn retried_errors_give_the_same_object(store: Store) {
    let clean_bucket = store.bucket("faults-clean").await;
    let clean = Proxy::start(&store.endpoint());
    let out = run(backup(store, &clean_bucket, &clean.url())).await;
    let (_, clean_sha) = check_object(store, &clean_bucket, &out.ok()).await;
    assert_eq!(clean.count(Op::UploadPart), 3, "{store:?}");

    let bucket = store.bucket("faults-retry").await;
    let proxy = Proxy::start(&store.endpoint());
    proxy
        .fail(Op::UploadPart, 1, Fault::Status(500))
        .fail(Op::UploadPart, 2, Fault::SlowDown);
    let out = run(backup(store, &bucket, &proxy.url())).await;
    let (_, sha) = check_object(store, &bucket, &out.ok()).await;
    assert_eq!(
        sha, clean_sha,
        "{store:?}: faulted run stored different bytes"
    );
    assert!(
        proxy.count(Op::UploadPart) >= 5,
        "{store:?}: {:?}",
        proxy.log()
    );
}

/// 500 on the first UploadPart and SlowDown on the second: retried, exit 0, and the stored
/// bytes equal a clean run's.
#[tokio::test(flavor = "multi_thread")]
async fn retried_part_errors_store_the_same_bytes_on_both_stores() {
    let [a, b] = STORES;
    tokio::join!(
        retried_errors_give_the_same_object(a),
        retried_errors_give_the_same_object(b)
    );
}

async fn reset_mid_part(store: Store) {
    let bucket = store.bucket("faults-reset").await;
    let proxy = Proxy::start(&store.endpoint());
    proxy.fail(Op::UploadPart, 2, Fault::ResetMidBody);
    let out = run(backup(store, &bucket, &proxy.url())).await;
    check_object(store, &bucket, &out.ok()).await;
    assert!(
        proxy.count(Op::UploadPart) >= 4,
        "{store:?}: {:?}",
        proxy.log()
    );
}

/// The connection drops in the middle of the 2nd part's body: the part is resent.
#[tokio::test(flavor = "multi_thread")]
async fn connection_reset_mid_part_is_retried_on_both_stores() {
    let [a, b] = STORES;
    tokio::join!(reset_mid_part(a), reset_mid_part(b));
}

async fn complete_always_fails(store: Store) {
    let bucket = store.bucket("faults-complete").await;
    let proxy = Proxy::start(&store.endpoint());
    proxy.fail(
        Op::CompleteMultipartUpload,
        1,
        Fault::Always(Box::new(Fault::Status(500))),
    );
    let started = Instant::now();
    let out = run(backup(store, &bucket, &proxy.url())).await;
    let took = started.elapsed();
    let err = out.fails(1, &["CompleteMultipartUpload"]).to_string();
    assert!(out.stdout.is_empty(), "{store:?}: {}", out.stdout);
    assert_eq!(
        store.keys_in(&bucket).await,
        Vec::<String>::new(),
        "{store:?}"
    );
    assert_eq!(store.open_uploads(&bucket).await, 0, "{store:?}");
    assert_eq!(proxy.count(Op::AbortMultipartUpload), 1, "{store:?}");
    assert_eq!(proxy.count(Op::CompleteMultipartUpload), 8, "{store:?}");
    eprintln!("{store:?}: CompleteMultipartUpload always 500 took {took:?}: {err}");
}

/// CompleteMultipartUpload never succeeds: exit 1 naming it, the upload aborted, no object.
#[tokio::test(flavor = "multi_thread")]
async fn complete_always_failing_aborts_on_both_stores() {
    let [a, b] = STORES;
    tokio::join!(complete_always_fails(a), complete_always_fails(b));
}

/// Nothing listens on the endpoint: one error line, exit 1, within a minute (the SDK makes 8 attempts with jittered backoff, worst case ~32 s).
#[tokio::test(flavor = "multi_thread")]
async fn unreachable_endpoint_fails_quickly() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let out = run(backup(Store::Moto, "unreachable-bucket", &endpoint)).await;
    let took = started.elapsed();
    eprintln!("unreachable endpoint took {took:?}\nstderr: {}", out.stderr);
    out.fails(1, &[]);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

async fn expired_token_on_a_part(store: Store) {
    let bucket = store.bucket("faults-expired").await;
    let proxy = Proxy::start(&store.endpoint());
    proxy.fail(Op::UploadPart, 2, Fault::ExpiredToken);
    let out = run(backup(store, &bucket, &proxy.url())).await;
    let err = out.fails(1, &["UploadPart", "ExpiredToken"]).to_string();
    eprintln!("{store:?}: {err}");
    assert!(out.stdout.is_empty(), "{store:?}: {}", out.stdout);
    assert_eq!(
        store.keys_in(&bucket).await,
        Vec::<String>::new(),
        "{store:?}"
    );
    assert_eq!(store.open_uploads(&bucket).await, 0, "{store:?}");
    assert_eq!(proxy.count(Op::AbortMultipartUpload), 1, "{store:?}");
    assert_eq!(proxy.count(Op::CompleteMultipartUpload), 0, "{store:?}");
}

/// Expired credentials are not retried: exit 1 naming the part and the code, upload aborted.
#[tokio::test(flavor = "multi_thread")]
async fn expired_token_on_a_part_aborts_on_both_stores() {
    let [a, b] = STORES;
    tokio::join!(expired_token_on_a_part(a), expired_token_on_a_part(b));
}

/// Backups of `db` for the last `n` days, put directly.
async fn seed_backups(store: Store, bucket: &str, db: &str, n: i64) -> Vec<String> {
    let mut keys = Vec::new();
    for d in 0..n {
        let time = chrono::Utc::now() - chrono::Duration::days(d + 1);
        let key =
            pg_s3_backup::layout::BackupId::new(db, time, pg_s3_backup::layout::DumpFormat::Plain)
                .key("pg/");
        store
            .client()
            .put_object()
            .bucket(bucket)
            .key(&key)
            .body(b"x".to_vec().into())
            .send()
            .await
            .unwrap();
        keys.push(key);
    }
    keys
}

fn prune_via(store: Store, bucket: &str, endpoint: &str, db: &str) -> Run {
    let (ak, sk) = store.keys();
    Run::new(&[
        "prune",
        "--bucket",
        bucket,
        "--prefix",
        "pg/",
        "--database",
        db,
        "--region",
        "us-east-1",
        "--endpoint-url",
        endpoint,
        "--force-path-style",
        "--keep-last",
        "2",
    ])
    .env("AWS_ACCESS_KEY_ID", &ak)
    .env("AWS_SECRET_ACCESS_KEY", &sk)
}

/// A store without DeleteObjects (501): prune falls back to one DeleteObject per key.
#[tokio::test(flavor = "multi_thread")]
async fn prune_falls_back_to_delete_object_without_delete_objects() {
    for store in STORES {
        let bucket = store.bucket("nodelobjs").await;
        let keys = seed_backups(store, &bucket, "app", 5).await;
        let proxy = Proxy::start(&store.endpoint());
        proxy.fail(
            Op::DeleteObjects,
            1,
            Fault::Always(Box::new(Fault::Status(501))),
        );
        let out = run(prune_via(store, &bucket, &proxy.url(), "app")).await;
        assert_eq!(out.code, 0, "{store:?}: {}", out.stderr);
        assert_eq!(proxy.count(Op::DeleteObject), 3, "{store:?}");
        let mut left = store.keys_in(&bucket).await;
        left.sort();
        let mut want = keys[..2].to_vec();
        want.sort();
        assert_eq!(left, want, "{store:?}");
    }
}

/// A 200 DeleteObjects response can carry per-key errors: prune reports them and exits 1.
#[tokio::test(flavor = "multi_thread")]
async fn per_key_delete_errors_in_a_200_response_are_reported() {
    let store = Store::Moto;
    let bucket = store.bucket("perkey").await;
    let keys = seed_backups(store, &bucket, "app", 4).await;
    let proxy = Proxy::start(&store.endpoint());
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DeleteResult><Deleted><Key>{}</Key></Deleted><Error><Key>{}</Key><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error></DeleteResult>",
        keys[2], keys[3]
    );
    proxy.fail(Op::DeleteObjects, 1, Fault::Reply(200, body));
    let out = run(prune_via(store, &bucket, &proxy.url(), "app")).await;
    out.fails(1, &["1 of 2 deletions failed", &keys[3], "InternalError"]);
}
