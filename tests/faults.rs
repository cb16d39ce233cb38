//! `backup` under S3 faults injected by `support::proxy`, on both S3 servers: retried errors,
//! connection resets, expired credentials, responses slower than the request timeout, a
//! completion that never succeeds, an unreachable endpoint, two backups racing for one key, and
//! a prune running while a backup is in flight.

use crate::support::github::FakeGitHub;
use crate::support::proxy::{Fault, Op, Proxy};
use crate::support::{
    gunzip, script, unique, Backup, Done, Pg, Run, Store, DUMP_HEADER, DUMP_TRAILER, STORES,
};
use pg_s3_backup::layout::BackupId;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const SIZE: usize = 12 * 1024 * 1024;

/// 12 MiB of random bytes between pg_dump's header and trailer, written once per test process,
/// so every run dumps the same input.
fn input() -> &'static PathBuf {
    static INPUT: OnceLock<PathBuf> = OnceLock::new();
    INPUT.get_or_init(|| {
        use rand::RngCore;
        let mut data = vec![0u8; SIZE];
        rand::rng().fill_bytes(&mut data);
        data[..DUMP_HEADER.len()].copy_from_slice(DUMP_HEADER.as_bytes());
        data[SIZE - DUMP_TRAILER.len()..].copy_from_slice(DUMP_TRAILER.as_bytes());
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

/// A backup of the fixed input (12 MiB from the stand-in pg_dump, in 5 MiB parts) to `bucket`
/// on `store` through `endpoint` (a proxy, or anything else).
fn fixed_input(store: Store, bucket: &str, endpoint: &str) -> Backup {
    let fake = fake_pg_dump();
    Backup::new(store, bucket, &Pg::url(database()))
        .via(endpoint)
        .args(&[
            "--part-size",
            "5MiB",
            "--pg-dump-path",
            fake.to_str().unwrap(),
        ])
}

/// A backup of the fixed input under `pg/` with `store`'s credentials.
fn backup(store: Store, bucket: &str, endpoint: &str) -> Run {
    backup_with(store, bucket, endpoint, &[])
}

/// With a session token too (both stores ignore it), so that every fault scenario runs with
/// a known token that the secret sweep then looks for in all output.
fn backup_with(store: Store, bucket: &str, endpoint: &str, extra: &[&str]) -> Run {
    fixed_input(store, bucket, endpoint).args(extra).run().env(
        "AWS_SESSION_TOKEN",
        "faults-session-token-FwoGZXIvYXdzEXAMPLE",
    )
}

/// Runs `scenario` on moto and on s3s-fs at the same time.
async fn on_both_stores<F: std::future::Future<Output = ()>>(scenario: impl Fn(Store) -> F) {
    let [a, b] = STORES;
    tokio::join!(scenario(a), scenario(b));
}

async fn run(r: Run) -> Done {
    tokio::task::spawn_blocking(move || r.run()).await.unwrap()
}

/// Checks the bucket holds exactly the object of `json` (no lock object either), no open
/// upload, intact content.
async fn check_object(store: Store, bucket: &str, json: &serde_json::Value) -> (String, String) {
    let key = json["key"].as_str().unwrap().to_string();
    assert_eq!(store.keys_in(bucket).await, vec![key.clone()], "{store:?}");
    assert_eq!(store.open_uploads(bucket).await, 0, "{store:?}");
    check_content(store, bucket, json).await
}

/// Checks the object of `json` holds the input, and its integrity record its sha256.
async fn check_content(store: Store, bucket: &str, json: &serde_json::Value) -> (String, String) {
    let key = json["key"].as_str().unwrap().to_string();
    let (body, meta, _) = store.get(bucket, &key).await;
    let sha = hex::encode(Sha256::digest(&body));
    assert_eq!(json["sha256"], sha.as_str(), "{store:?}");
    let record = store.record(bucket, &key).await;
    assert_eq!(record["sha256"], sha.as_str(), "{store:?}: {record}");
    assert_eq!(record["size"], body.len() as u64, "{store:?}");
    assert_eq!(record["run"].as_str(), meta.get("run").map(String::as_str));
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
    on_both_stores(retried_errors_give_the_same_object).await;
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
    on_both_stores(reset_mid_part).await;
}

async fn complete_always_fails(store: Store) {
    let bucket = store.bucket("faults-complete").await;
    let mut older = seed_backups(store, &bucket, database(), 3).await;
    older.sort();
    let proxy = Proxy::start(&store.endpoint());
    proxy.fail(
        Op::CompleteMultipartUpload,
        1,
        Fault::Always(Box::new(Fault::Status(500))),
    );
    let started = Instant::now();
    let out = run(backup_with(
        store,
        &bucket,
        &proxy.url(),
        &["--keep-last", "1"],
    ))
    .await;
    let took = started.elapsed();
    let err = out.fails(1, &["CompleteMultipartUpload"]).to_string();
    assert!(out.stdout.is_empty(), "{store:?}: {}", out.stdout);
    let mut keys = store.keys_in(&bucket).await;
    keys.sort();
    assert_eq!(
        keys, older,
        "{store:?}: old backups intact, no new object, no lock"
    );
    assert_eq!(proxy.count(Op::DeleteObjects), 0, "{store:?}: pruned");
    assert_eq!(store.open_uploads(&bucket).await, 0, "{store:?}");
    assert_eq!(proxy.count(Op::AbortMultipartUpload), 1, "{store:?}");
    assert_eq!(proxy.count(Op::CompleteMultipartUpload), 8, "{store:?}");
    eprintln!("{store:?}: CompleteMultipartUpload always 500 took {took:?}: {err}");
}

/// CompleteMultipartUpload never succeeds: exit 1 naming it, the upload aborted, no object,
/// the older backups intact and nothing pruned although `--keep-last 1` was given.
#[tokio::test(flavor = "multi_thread")]
async fn complete_always_failing_aborts_on_both_stores() {
    on_both_stores(complete_always_fails).await;
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
    out.fails(1, &["HeadObject", "check --endpoint-url and the network"]);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

/// Nothing listens at the database's port: one error line, exit 1, and not one S3 request
/// (the database is checked before the S3 client exists).
#[test]
fn unreachable_postgres_fails_before_any_s3_request() {
    let proxy = Proxy::start(&Store::Moto.endpoint());
    let (ak, sk) = Store::Moto.keys();
    let out = Run::new(&[
        "backup",
        "--database-url",
        "postgres://pgs3:pw@127.0.0.1:1/db",
        "--bucket",
        "some-bucket",
        "--region",
        "us-east-1",
        "--endpoint-url",
        &proxy.url(),
        "--force-path-style",
    ])
    .env("AWS_ACCESS_KEY_ID", &ak)
    .env("AWS_SECRET_ACCESS_KEY", &sk)
    .run();
    out.fails(1, &["cannot connect to PostgreSQL at 127.0.0.1:1"]);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(proxy.log().is_empty(), "{:?}", proxy.log());
}

async fn expired_token_on_a_part(store: Store) {
    let bucket = store.bucket("faults-expired").await;
    let proxy = Proxy::start(&store.endpoint());
    proxy.fail(Op::UploadPart, 2, Fault::ExpiredToken(400));
    let out = run(backup(store, &bucket, &proxy.url())).await;
    check_object(store, &bucket, &out.ok()).await;
    assert!(
        proxy.count(Op::UploadPart) >= 4,
        "{store:?}: {:?}",
        proxy.log()
    );
    assert_eq!(proxy.count(Op::AbortMultipartUpload), 0, "{store:?}");
}

/// ExpiredToken on a part: the cached credentials are dropped and the part is retried; the
/// object is complete. (With static keys the "new" credentials are the same keys; the test
/// below shows a role's credentials really being fetched again.)
#[tokio::test(flavor = "multi_thread")]
async fn expired_token_on_a_part_is_retried_on_both_stores() {
    on_both_stores(expired_token_on_a_part).await;
}

/// A GitHub OIDC role session that S3 calls expired in the middle of the upload: a new ID
/// token is fetched, exchanged for new role credentials, and the part retried with them. STS
/// is reached through the proxy too, so the session credentials it hands out are known
/// secrets that no output may show.
#[tokio::test(flavor = "multi_thread")]
async fn expired_role_credentials_are_refreshed_and_the_part_retried() {
    let store = Store::MotoIam;
    let bucket = store.bucket("faults-oidc").await;
    let role = crate::auth::role_for(&bucket, "repo:octo-org/octo-repo:*");
    let fake = FakeGitHub::start("sts.amazonaws.com", 0);
    let proxy = Proxy::start(&store.endpoint());
    proxy.fail(Op::UploadPart, 2, Fault::ExpiredToken(403));
    let mut r = fixed_input(store, &bucket, &proxy.url())
        .prefix("allowed/")
        .without_keys()
        .args(&["--role-to-assume", &role])
        .run()
        .env("AWS_ENDPOINT_URL_STS", &proxy.url());
    for (k, v) in fake.job_env() {
        r = r.env(k, &v);
    }
    let out = run(r).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let line = out.stdout.lines().find(|l| l.starts_with('{')).unwrap();
    check_object(store, &bucket, &serde_json::from_str(line).unwrap()).await;
    assert_eq!(
        fake.requests(),
        2,
        "one token at start, one after ExpiredToken"
    );
    assert_eq!(
        out.stderr.matches("assumed role").count(),
        2,
        "{}",
        out.stderr
    );
    let sts_calls = proxy
        .log()
        .iter()
        .filter(|(op, line)| *op == Op::Other && line.starts_with("POST / "))
        .count();
    assert_eq!(sts_calls, 2, "{:?}", proxy.log());
}

async fn response_slower_than_the_timeout(store: Store) {
    let bucket = store.bucket("faults-delay").await;
    let proxy = Proxy::start(&store.endpoint());
    let delay = Duration::from_secs(40);
    proxy.fail(Op::UploadPart, 2, Fault::Delay(delay));
    let started = Instant::now();
    // 2 s plus 1 s per MiB: a 5 MiB part is given 7 s.
    let out = run(backup_with(
        store,
        &bucket,
        &proxy.url(),
        &["--request-timeout", "2"],
    ))
    .await;
    let took = started.elapsed();
    check_object(store, &bucket, &out.ok()).await;
    assert!(
        took < delay,
        "{store:?}: waited for the delayed answer ({took:?})"
    );
    assert!(
        proxy.count(Op::UploadPart) >= 4,
        "{store:?}: {:?}",
        proxy.log()
    );
}

/// An UploadPart answered only after 40 s: the attempt is abandoned after
/// `--request-timeout` (plus the part's allowance) and retried; the object is complete.
#[tokio::test(flavor = "multi_thread")]
async fn a_response_slower_than_the_request_timeout_is_retried_on_both_stores() {
    on_both_stores(response_slower_than_the_timeout).await;
}

async fn stalled_download(store: Store) {
    let bucket = store.bucket("faults-stall").await;
    let json = run(backup(store, &bucket, &store.endpoint())).await.ok();
    let key = json["key"].as_str().unwrap();
    let proxy = Proxy::start(&store.endpoint());
    let stall = Duration::from_secs(40);
    proxy.fail(Op::GetObject, 1, Fault::StallBody(stall));
    let (ak, sk) = store.keys();
    let started = Instant::now();
    let out = run(Run::new(&[
        "verify",
        "--bucket",
        &bucket,
        "--prefix",
        "pg/",
        "--key",
        key,
        "--region",
        "us-east-1",
        "--endpoint-url",
        &proxy.url(),
        "--force-path-style",
        "--request-timeout",
        "2",
    ])
    .env("AWS_ACCESS_KEY_ID", &ak)
    .env("AWS_SECRET_ACCESS_KEY", &sk))
    .await;
    let took = started.elapsed();
    out.fails(
        1,
        &[
            "S3 stopped sending",
            key,
            "no data for 2 s",
            "--request-timeout",
        ],
    );
    assert!(
        took < stall,
        "{store:?}: waited for the stalled body ({took:?})"
    );
    assert_eq!(
        proxy.count(Op::GetObject),
        1,
        "{store:?}: {:?}",
        proxy.log()
    );
}

/// GetObject's body stops half-way for 40 s: `verify` (and so `restore` and `backup --verify`)
/// gives up after `--request-timeout` of silence with one line, instead of hanging.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_download_fails_instead_of_hanging_on_both_stores() {
    on_both_stores(stalled_download).await;
}

async fn lock_not_implemented(store: Store) {
    let bucket = store.bucket("faults-nolock").await;
    let proxy = Proxy::start(&store.endpoint());
    // The first PutObject of a multipart backup is its lock.
    proxy.fail(Op::PutObject, 1, Fault::Status(501));
    let out = run(backup(store, &bucket, &proxy.url())).await;
    check_object(store, &bucket, &out.ok()).await;
    assert!(
        out.stderr.contains("PutObject (lock)") && out.stderr.contains("without a lock"),
        "{store:?}: {}",
        out.stderr
    );
    assert_eq!(
        proxy.count(Op::DeleteObject),
        0,
        "{store:?}: deleted a lock it never wrote"
    );
}

/// A store that refuses the conditional lock write (501): the backup goes on without a lock,
/// with one warning, and completes.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_without_conditional_writes_backs_up_without_a_lock() {
    on_both_stores(lock_not_implemented).await;
}

/// A store with no conditional writes at all (501 to any request with `If-None-Match`): the
/// lock is skipped with a warning, the final write is sent again without the condition once
/// the key is found free, and the backup completes, multipart or single.
async fn no_conditional_writes(store: Store) {
    for (multipart, op) in [(true, "CompleteMultipartUpload"), (false, "PutObject")] {
        let bucket = store.bucket("faults-nocond").await;
        let proxy = Proxy::without_conditional_writes(&store.endpoint());
        let db_url = Pg::url(database());
        // The fixed 12 MiB input in 5 MiB parts, or the (small) real database in one PutObject.
        let command = if multipart {
            backup_with(store, &bucket, &proxy.url(), &[])
        } else {
            crate::support::s3_command(
                store,
                &proxy.url(),
                "backup",
                &bucket,
                &["--database-url", &db_url, "--json"],
            )
        };
        let out = run(command).await;
        let json = out.ok();
        if multipart {
            check_object(store, &bucket, &json).await;
        } else {
            let keys = store.keys_in(&bucket).await;
            assert_eq!(
                keys,
                vec![json["key"].as_str().unwrap().to_string()],
                "{store:?}"
            );
        }
        for needle in [
            "without a lock",
            &format!("the store refused If-None-Match on {op}"),
        ] {
            assert!(
                out.stderr.contains(needle),
                "{store:?}: `{needle}` missing:\n{}",
                out.stderr
            );
        }
        assert_eq!(json["parts"], if multipart { 3 } else { 1 }, "{store:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_without_any_conditional_write_still_takes_backups() {
    on_both_stores(no_conditional_writes).await;
}

/// The same store, with a role that may not read (every HeadObject denied, as for the
/// write-only backup role): it cannot know the key is free, so the final write is never sent
/// without its condition; the backup fails, leaving no object and no open upload.
#[tokio::test(flavor = "multi_thread")]
async fn without_conditional_writes_a_role_that_cannot_read_never_writes_blind() {
    let store = Store::Moto;
    let bucket = store.bucket("faults-nocond-blind").await;
    let proxy = Proxy::without_conditional_writes(&store.endpoint());
    proxy.fail(
        Op::HeadObject,
        1,
        Fault::Always(Box::new(Fault::Status(403))),
    );
    let out = run(backup(store, &bucket, &proxy.url())).await;
    out.fails(
        1,
        &[
            "refused If-None-Match on CompleteMultipartUpload",
            "may not read the key",
            "nothing was written",
        ],
    );
    let objects: Vec<String> = store
        .all_keys_in(&bucket)
        .await
        .into_iter()
        .filter(|k| !k.ends_with(".lock"))
        .collect();
    assert_eq!(objects, Vec::<String>::new());
    assert_eq!(store.open_uploads(&bucket).await, 0);
    assert_eq!(
        proxy.count(Op::CompleteMultipartUpload),
        1,
        "never sent without the condition"
    );
}

/// A proxy whose first CompleteMultipartUpload answer stalls for 30 s, past the timeout.
fn answer_of_complete_lost(store: Store) -> Proxy {
    let proxy = Proxy::start(&store.endpoint());
    proxy.fail(
        Op::CompleteMultipartUpload,
        1,
        Fault::StallBody(Duration::from_secs(30)),
    );
    proxy
}

/// The fixed input through `proxy`, with a 1 s request timeout.
fn backup_quick_timeout(store: Store, bucket: &str, proxy: &Proxy) -> Run {
    backup_with(store, bucket, &proxy.url(), &["--request-timeout", "1"])
}

/// The answer to CompleteMultipartUpload is lost (its body stalls past the request timeout),
/// so the SDK sends it again and the store answers that the upload is gone or the key taken.
/// The object at the key carries this run's `run` metadata: the backup is reported complete,
/// with a warning, not as failed or as someone else's object.
async fn lost_complete_answer(store: Store) {
    let bucket = store.bucket("faults-lostdone").await;
    let proxy = answer_of_complete_lost(store);
    let out = run(backup_quick_timeout(store, &bucket, &proxy)).await;
    let json = out.ok();
    check_object(store, &bucket, &json).await;
    assert!(
        proxy.count(Op::CompleteMultipartUpload) >= 2,
        "{store:?}: never retried"
    );
    assert_eq!(store.open_uploads(&bucket).await, 0, "{store:?}");
    let keys = store.keys_in(&bucket).await;
    assert_eq!(
        keys,
        vec![json["key"].as_str().unwrap().to_string()],
        "{store:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_answer_to_the_final_write_is_recognised_as_this_runs_object() {
    on_both_stores(lost_complete_answer).await;
}

async fn same_second_pair(store: Store) {
    for _ in 0..5 {
        let bucket = store.bucket("faults-race").await;
        let endpoint = store.endpoint();
        let (a, b) = tokio::join!(
            run(backup(store, &bucket, &endpoint)),
            run(backup(store, &bucket, &endpoint))
        );
        let (a, b) = (a.ok(), b.ok());
        let (ka, kb) = (a["key"].as_str().unwrap(), b["key"].as_str().unwrap());
        assert_ne!(ka, kb, "{store:?}: both backups wrote one key");
        let (ia, ib) = (
            BackupId::parse("pg/", ka).unwrap(),
            BackupId::parse("pg/", kb).unwrap(),
        );
        if ia.time != ib.time {
            eprintln!("{store:?}: {ka} and {kb} started in different seconds; again");
            continue;
        }
        let mut seqs = [ia.seq, ib.seq];
        seqs.sort();
        assert_eq!(seqs, [0, 2], "{store:?}: {ka} {kb}");
        let mut want = vec![ka.to_string(), kb.to_string()];
        want.sort();
        let mut keys = store.keys_in(&bucket).await;
        keys.sort();
        assert_eq!(keys, want, "{store:?}: only the two backups, no lock left");
        assert_eq!(store.open_uploads(&bucket).await, 0, "{store:?}");
        check_content(store, &bucket, &a).await;
        check_content(store, &bucket, &b).await;
        return;
    }
    panic!("{store:?}: five pairs never started in the same second");
}

/// Two backups of one database started together: when they land in the same second, the lock
/// object lets one take the key and sends the other to `-2`; both complete, nothing is
/// overwritten. (Without the lock both would write the same key, and one backup would be lost.)
#[tokio::test(flavor = "multi_thread")]
async fn two_backups_in_the_same_second_get_distinct_keys_on_both_stores() {
    on_both_stores(same_second_pair).await;
}

/// Backups of `db` for the last `n` days, put directly.
async fn seed_backups(store: Store, bucket: &str, db: &str, n: i64) -> Vec<String> {
    let mut keys = Vec::new();
    for d in 0..n {
        let time = chrono::Utc::now() - chrono::Duration::days(d + 1);
        let key =
            pg_s3_backup::layout::BackupId::new(db, time, pg_s3_backup::layout::DumpFormat::Plain)
                .key("pg/");
        store.put(bucket, &key, b"x").await;
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

/// A killed run's lock object goes once its backup's time is older than
/// `--abort-incomplete-after` (24h by default); a running backup's lock and other files stay.
#[tokio::test(flavor = "multi_thread")]
async fn prune_removes_stale_lock_objects_only() {
    use pg_s3_backup::layout::DumpFormat;
    for store in STORES {
        let bucket = store.bucket("locks").await;
        let seeded = seed_backups(store, &bucket, "app", 3).await;
        let lock_at = |days| {
            let time = chrono::Utc::now() - chrono::Duration::days(days);
            BackupId::lock_key(&BackupId::new("app", time, DumpFormat::Plain).key("pg/"))
        };
        let (stale, fresh, foreign) = (lock_at(2), lock_at(2), "pg/app/notes.lock".to_string());
        let fresh = fresh.replace(".sql.gz.lock", "-2.sql.gz.lock");
        let put = |key: String| {
            let bucket = bucket.clone();
            async move {
                store.put(&bucket, &key, b"{}").await;
            }
        };
        for key in [&stale, &fresh, &foreign] {
            put(key.clone()).await;
        }
        // Both backups started two days ago; one of them is still running and has just
        // rewritten its lock (its heartbeat). Only the other is a killed run's.
        tokio::time::sleep(Duration::from_secs(3)).await;
        put(fresh.clone()).await;
        let out =
            run(prune_via(store, &bucket, &store.endpoint(), "app")
                .env("ABORT_INCOMPLETE_AFTER", "2s"))
            .await;
        let text = out.ok_plain();
        assert!(
            text.contains(&format!("removed stale lock {stale}")),
            "{store:?}: {text}"
        );
        let mut want = vec![seeded[0].clone(), seeded[1].clone(), fresh, foreign];
        want.sort();
        let mut keys = store.keys_in(&bucket).await;
        keys.sort();
        assert_eq!(keys, want, "{store:?}");
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

async fn prune_while_backing_up(store: Store) {
    let bucket = store.bucket("faults-inflight").await;
    let seeded = seed_backups(store, &bucket, database(), 5).await;
    // The first part is held for 5 s, so the backup is still in flight when prune runs.
    let proxy = Proxy::start(&store.endpoint());
    proxy.fail(Op::UploadPart, 1, Fault::Delay(Duration::from_secs(5)));
    let backing_up = tokio::spawn(run(backup(store, &bucket, &proxy.url())));
    let started = Instant::now();
    while proxy.count(Op::UploadPart) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no part started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = run(prune_via(store, &bucket, &store.endpoint(), database())).await;
    assert_eq!(out.code, 0, "{store:?}: {}", out.stderr);
    assert!(
        !backing_up.is_finished(),
        "{store:?}: the backup ended before prune"
    );
    let json = backing_up.await.unwrap().ok();
    let new_key = json["key"].as_str().unwrap().to_string();
    assert!(!seeded.contains(&new_key));
    // keep-last 2 kept the two newest that existed when prune listed; the new one is whole.
    let mut want = vec![seeded[0].clone(), seeded[1].clone(), new_key];
    want.sort();
    let mut keys = store.keys_in(&bucket).await;
    keys.sort();
    assert_eq!(keys, want, "{store:?}");
    assert_eq!(store.open_uploads(&bucket).await, 0, "{store:?}");
    check_content(store, &bucket, &json).await;
}

/// prune (keep-last 2) while a backup of the same database is uploading: the in-flight upload,
/// its lock and the kept backups survive; only what the policy deletes is gone.
#[tokio::test(flavor = "multi_thread")]
async fn prune_during_an_in_flight_backup_on_both_stores() {
    on_both_stores(prune_while_backing_up).await;
}

/// A backup whose key is taken while it runs (a lock write retried past another run's
/// release could do it) after the upload started: its final CompleteMultipartUpload carries
/// If-None-Match, so it fails
/// cleanly, its upload aborted, and the other object stays as it was (moto and s3s-fs honour
/// the condition, as AWS has since 2024).
#[tokio::test]
async fn a_key_taken_during_the_upload_is_never_overwritten() {
    let db = database();
    let slow = crate::support::fake_pg_dump("head -c 12582912 /dev/urandom; sleep 3");
    for store in STORES {
        let bucket = store.bucket("taken").await;
        let child = Run::backup(
            store,
            &bucket,
            &Pg::url(db),
            &[
                "--part-size",
                "5MiB",
                "--pg-dump-path",
                slow.to_str().unwrap(),
            ],
        )
        .spawn();
        // The lock names the key; write another object there, as a rival run would.
        let mut key = None;
        for _ in 0..100 {
            key = store
                .keys_in(&bucket)
                .await
                .into_iter()
                .find_map(|k| k.strip_suffix(".lock").map(String::from));
            if key.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let key = key.expect("the backup's lock");
        // Once the upload is under way (the claim has looked at the key for the last time).
        for _ in 0..100 {
            if store.open_uploads(&bucket).await > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            store.open_uploads(&bucket).await,
            1,
            "{store:?}: the upload started"
        );
        store.put(&bucket, &key, b"the rival's backup").await;
        let out = Done::from(child.wait_with_output().unwrap());
        let (body, _, _) = store.get(&bucket, &key).await;
        out.fails(
            1,
            &["another object was written", "nothing was overwritten"],
        );
        assert_eq!(body, b"the rival's backup", "{store:?}: overwritten");
        assert_eq!(store.open_uploads(&bucket).await, 0, "{store:?}");
    }
}

/// AWS answers HeadObject of a missing key with 403 to a caller without s3:ListBucket, which
/// the backup policy does not grant. That is "unknown", not "denied": the backup claims its key
/// with the lock as usual, warns of nothing, moves on to `-2` when the key exists, and restore
/// and prune work through the same answers.
#[tokio::test]
async fn on_aws_without_list_bucket_a_missing_key_is_unknown_not_denied() {
    let db = database();
    for store in STORES {
        let bucket = store.bucket("aws403").await;
        let proxy = Proxy::like_aws_without_list_bucket(&store.endpoint());
        let url = proxy.url();
        let backup = |extra: &[&str]| backup_with(store, &bucket, &url, extra);
        let first = backup(&[]).run();
        let json = first.ok();
        assert!(!first.stderr.contains("warning"), "{}", first.stderr);
        assert!(
            proxy.count(Op::HeadObject) >= 1,
            "HeadObject went through the proxy"
        );
        // A backup already at this second's key: the next one moves on to `-2`.
        let key = json["key"].as_str().unwrap().to_string();
        let time = BackupId::parse("pg/", &key).unwrap().time;
        occupy_seconds_after(store, &bucket, db, time).await;
        let second = backup(&[]).run().ok();
        let second_key = second["key"].as_str().unwrap();
        assert!(second_key.contains("Z-"), "{second_key}");
        // Listing, checking and pruning through the same answers.
        for (command, extra) in [
            ("list", &["--json"][..]),
            ("check", &["--database", db.as_str(), "--max-age", "1h"]),
            ("prune", &["--keep-last", "1", "--dry-run"]),
        ] {
            crate::support::s3_command(store, &url, command, &bucket, extra)
                .run()
                .ok_plain();
        }
    }
}

/// Objects at `db`'s keys for the minute after `time`, so any backup in it finds its key taken.
async fn occupy_seconds_after(
    store: Store,
    bucket: &str,
    db: &str,
    time: chrono::DateTime<chrono::Utc>,
) {
    for s in 0..60 {
        let key = BackupId::new(
            db,
            time + chrono::Duration::seconds(s),
            pg_s3_backup::layout::DumpFormat::Plain,
        )
        .key("pg/");
        if store.keys_in(bucket).await.contains(&key) {
            continue;
        }
        store.put(bucket, &key, b"occupied").await;
    }
}

/// `n` backups of `db`, an hour apart, written 32 at a time.
async fn seed_many(store: Store, bucket: &str, db: &str, n: i64) -> Vec<String> {
    let keys: Vec<String> = (0..n)
        .map(|h| {
            let time = chrono::Utc::now() - chrono::Duration::hours(h + 1);
            BackupId::new(db, time, pg_s3_backup::layout::DumpFormat::Plain).key("pg/")
        })
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in keys.chunks(keys.len().div_ceil(32)) {
        let (client, bucket, chunk) = (store.client(), bucket.to_string(), chunk.to_vec());
        tasks.spawn(async move {
            for key in chunk {
                client
                    .put_object()
                    .bucket(&bucket)
                    .key(&key)
                    .body(b"x".to_vec().into())
                    .send()
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    keys
}

/// A signal stops `prune` between delete requests: the request in flight is answered, nothing
/// more is sent, the deleted keys are listed and the exit is 130/143 within 5 s. Both paths: a
/// DeleteObjects batch of 1,000 on moto (SIGINT), one DeleteObject per key on s3s-fs (SIGTERM).
#[tokio::test(flavor = "multi_thread")]
async fn a_signal_stops_prune_between_deletions_and_says_what_was_deleted() {
    struct Case {
        store: Store,
        backups: i64,
        op: Op,
        signal: i32,
        code: i32,
        deleted: usize,
        /// Deletion requests sent when the signal goes (the last one still in flight).
        sent: usize,
    }
    let cases = [
        Case {
            store: Store::Moto,
            backups: 1102,
            op: Op::DeleteObjects,
            signal: libc::SIGINT,
            code: 130,
            deleted: 1000,
            sent: 1,
        },
        Case {
            store: Store::S3sFs,
            backups: 6,
            op: Op::DeleteObject,
            signal: libc::SIGTERM,
            code: 143,
            deleted: 2,
            sent: 2,
        },
    ];
    for c in cases {
        let bucket = c.store.bucket("prunesig").await;
        let seeded = seed_many(c.store, &bucket, "app", c.backups).await;
        let proxy = Proxy::start(&c.store.endpoint());
        if c.op == Op::DeleteObject {
            proxy.fail(
                Op::DeleteObjects,
                1,
                Fault::Always(Box::new(Fault::Status(501))),
            );
        }
        // Each deletion request waits 1.5 s at the proxy: the signal lands while it is in flight.
        proxy.fail(
            c.op,
            1,
            Fault::Always(Box::new(Fault::Delay(Duration::from_millis(1500)))),
        );
        let child = prune_via(c.store, &bucket, &proxy.url(), "app").spawn();
        let (out, took) = signal_when(child, c.signal, || proxy.count(c.op) >= c.sent).await;
        assert!(took < 5.0, "took {took:.1} s");
        let planned = c.backups as usize - 2;
        out.fails(
            c.code,
            &[
                "interrupted by",
                &format!(
                    "prune stopped after deleting {} of {planned} backups",
                    c.deleted
                ),
                "the rest were not sent",
            ],
        );
        assert!(
            out.stdout.contains(&format!(
                "stopped by a signal: deleted only these {}",
                c.deleted
            )),
            "{}",
            out.stdout
        );
        assert_eq!(
            out.stdout.matches("\n  deleted ").count(),
            c.deleted,
            "{}",
            out.stdout
        );
        assert_eq!(
            proxy.count(c.op),
            c.sent,
            "{:?}: requests after the signal",
            c.store
        );
        let left = c.store.keys_in(&bucket).await;
        assert_eq!(left.len(), c.backups as usize - c.deleted, "{:?}", c.store);
        // The two newest are kept whatever happened; what is gone was listed as deleted.
        for key in &seeded[..2] {
            assert!(left.contains(key), "{key}");
        }
        for key in seeded.iter().filter(|k| !left.contains(k)) {
            assert!(out.stdout.contains(&format!("  deleted {key}\n")), "{key}");
        }
    }
}

/// Once the backup is sent for commit it is not dropped: a signal while CompleteMultipartUpload
/// is in flight, or while retention deletes, leaves a complete backup, reported on stdout, and
/// the exit is 130/143 naming what was left undone. Nothing is left open or locked. (Retention
/// stopping between batches is `a_signal_stops_prune_between_deletions_and_says_what_was_deleted`.)
#[tokio::test(flavor = "multi_thread")]
async fn a_signal_after_the_last_part_leaves_a_complete_reported_backup() {
    for (store, op, signal, code, undone) in [
        (
            Store::Moto,
            Op::CompleteMultipartUpload,
            libc::SIGINT,
            130,
            "retention was not run: run prune",
        ),
        (
            Store::S3sFs,
            Op::DeleteObjects,
            libc::SIGTERM,
            143,
            "the signal came as retention finished",
        ),
    ] {
        let bucket = store.bucket("commitsig").await;
        let seeded = seed_many(store, &bucket, database(), 4).await;
        let proxy = Proxy::start(&store.endpoint());
        proxy.fail(op, 1, Fault::Delay(Duration::from_millis(1500)));
        let child = backup_with(store, &bucket, &proxy.url(), &["--keep-last", "2"]).spawn();
        let (out, took) = signal_when(child, signal, || proxy.count(op) >= 1).await;
        assert!(took < 5.0, "took {took:.1} s");
        let err = out.fails(code, &["interrupted by", "is complete", undone]);
        assert!(!err.contains("nothing was stored"), "{err}");
        let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("the outcome");
        let key = json["key"].as_str().unwrap().to_string();
        check_content(store, &bucket, &json).await;
        assert_eq!(store.open_uploads(&bucket).await, 0, "{store:?}");
        let mut want = seeded.clone();
        if op == Op::DeleteObjects {
            // The delete request in flight was answered: the three oldest are gone.
            want.truncate(1);
            assert_eq!(proxy.count(op), 1);
        }
        want.push(key);
        want.sort();
        let mut left = store.keys_in(&bucket).await;
        left.sort();
        assert_eq!(
            left, want,
            "{store:?}: no lock, the backup, and what retention left"
        );
    }
}

/// `verify`, `list` and `check` stop on SIGINT/SIGTERM within 5 s with 130/143, whatever
/// request they are waiting on (a download stalled mid-body, a listing that does not answer).
#[tokio::test(flavor = "multi_thread")]
async fn a_signal_stops_verify_list_and_check_at_once() {
    let store = Store::Moto;
    let bucket = store.bucket("readsig").await;
    let json = run(backup(store, &bucket, &store.endpoint())).await.ok();
    let key = json["key"].as_str().unwrap().to_string();
    let db = database().as_str();
    for (command, extra, op, fault, signal, code) in [
        (
            "verify",
            vec!["--key", key.as_str()],
            Op::GetObject,
            Fault::StallBody(Duration::from_secs(60)),
            libc::SIGINT,
            130,
        ),
        (
            "list",
            vec![],
            Op::Other,
            Fault::Delay(Duration::from_secs(60)),
            libc::SIGTERM,
            143,
        ),
        (
            "check",
            vec!["--database", db, "--max-age", "1d"],
            Op::Other,
            Fault::Delay(Duration::from_secs(60)),
            libc::SIGINT,
            130,
        ),
    ] {
        let proxy = Proxy::start(&store.endpoint());
        proxy.fail(op, 1, fault);
        let child =
            crate::support::s3_command(store, &proxy.url(), command, &bucket, &extra).spawn();
        let started = Instant::now();
        while proxy.count(op) < 1 {
            assert!(
                started.elapsed().as_secs() < 60,
                "{command}: {op:?} never sent"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let signalled = Instant::now();
        unsafe { libc::kill(child.id() as i32, signal) };
        let out: Done = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap()
            .into();
        assert!(
            signalled.elapsed().as_secs_f64() < 5.0,
            "{command} took {:?}",
            signalled.elapsed()
        );
        out.fails(code, &["interrupted by", "stopped"]);
    }
}

/// A TCP server on 127.0.0.1 that accepts and then never answers. With `startup`, it does
/// answer the startup like PostgreSQL (no TLS, AuthenticationOk, ReadyForQuery) and then no
/// query. No real server here stalls on demand, so this is a hand-written stand-in.
fn silent_server(startup: bool) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let read_message = |stream: &mut std::net::TcpStream| -> Option<Vec<u8>> {
                    let mut len = [0u8; 4];
                    stream.read_exact(&mut len).ok()?;
                    let mut body = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
                    stream.read_exact(&mut body).ok()?;
                    Some(body)
                };
                if startup {
                    let Some(mut first) = read_message(&mut stream) else {
                        return;
                    };
                    if first == [0x04, 0xd2, 0x16, 0x2f] {
                        // SSLRequest: no TLS here; the startup message follows.
                        stream.write_all(b"N").unwrap();
                        let Some(next) = read_message(&mut stream) else {
                            return;
                        };
                        first = next;
                    }
                    let _ = first;
                    let mut answer = vec![b'R', 0, 0, 0, 8, 0, 0, 0, 0];
                    answer.extend_from_slice(&[b'Z', 0, 0, 0, 5, b'I']);
                    stream.write_all(&answer).unwrap();
                }
                // Read whatever comes (queries, Terminate) and never answer.
                let mut sink = [0u8; 4096];
                while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
    port
}

/// Bounded waits: a server that accepts and never answers, or answers the startup and then no
/// query, fails backup, restore and verify --restore-check within the limit plus a little, with
/// one line naming host and port, before any S3 request and with nothing written.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_database_server_fails_within_the_connect_timeout() {
    let proxy = Proxy::start(&Store::Moto.endpoint());
    let bucket = Store::Moto.bucket("silent").await;
    // A real dump: restore reads the object's start before it connects.
    let backup_json = run(Run::backup(Store::Moto, &bucket, &Pg::url(database()), &[]))
        .await
        .ok();
    let key = backup_json["key"].as_str().unwrap().to_string();
    for (startup, what) in [
        (false, "no answer within 2 s"),
        (true, "did not answer the preflight query within 2 s"),
    ] {
        let port = silent_server(startup);
        let url = format!("postgres://pgs3:secret-pw-4711@127.0.0.1:{port}/db?sslmode=prefer");
        let at = format!("PostgreSQL at 127.0.0.1:{port}");
        let s3 = crate::support::s3_args(&proxy.url(), &bucket);
        let s3: Vec<&str> = s3.iter().map(String::as_str).collect();
        let (ak, sk) = Store::Moto.keys();
        let commands: [Vec<&str>; 3] = [
            [
                &["backup", "--database-url", &url, "--connect-timeout", "2"][..],
                &s3[..],
            ]
            .concat(),
            [
                &[
                    "restore",
                    "--key",
                    &key,
                    "--target-url",
                    &url,
                    "--connect-timeout",
                    "2",
                ][..],
                &s3[..],
            ]
            .concat(),
            [
                &[
                    "verify",
                    "--key",
                    &key,
                    "--restore-check",
                    &url,
                    "--connect-timeout",
                    "2",
                ][..],
                &s3[..],
            ]
            .concat(),
        ];
        for args in commands {
            let before = proxy.log().len();
            let started = Instant::now();
            let out = run(Run::new(&args)
                .env("AWS_ACCESS_KEY_ID", &ak)
                .env("AWS_SECRET_ACCESS_KEY", &sk))
            .await;
            let took = started.elapsed().as_secs_f64();
            assert!(took < 10.0, "{}: took {took:.1} s", args[0]);
            let err = out.fails(1, &[&at, what, "--connect-timeout"]);
            assert_eq!(err.trim().lines().count(), 1, "{err}");
            assert!(!err.contains("secret-pw-4711"), "{err}");
            if args[0] == "backup" {
                // Nothing reached S3: preflight comes first.
                assert_eq!(proxy.log().len(), before, "{:?}", proxy.log());
            }
        }
    }
    assert_eq!(Store::Moto.keys_in(&bucket).await, vec![key]);
}

/// At the defaults, a server that accepts and never answers fails the backup within 60 s (30 s
/// is the default limit).
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_database_server_fails_within_a_minute_by_default() {
    let port = silent_server(false);
    let started = Instant::now();
    let out = run(Run::new(&[
        "backup",
        "--database-url",
        &format!("postgres://pgs3:pw@127.0.0.1:{port}/db"),
        "--bucket",
        "some-bucket",
        "--endpoint-url",
        "http://127.0.0.1:1",
        "--region",
        "us-east-1",
    ]))
    .await;
    let took = started.elapsed().as_secs_f64();
    out.fails(
        1,
        &[
            &format!("PostgreSQL at 127.0.0.1:{port}"),
            "no answer within 30 s",
        ],
    );
    assert!((25.0..60.0).contains(&took), "took {took:.1} s");
}

/// Runs `child` to its end after sending `signal` once `ready` holds; returns the output and
/// the seconds from the signal to the exit.
pub async fn signal_when(
    child: std::process::Child,
    signal: i32,
    ready: impl Fn() -> bool,
) -> (Done, f64) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed().as_secs() < 60, "never ready to signal");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let signalled = Instant::now();
    unsafe { libc::kill(child.id() as i32, signal) };
    let out: Done = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
        .into();
    (out, signalled.elapsed().as_secs_f64())
}

/// A request that cannot be taken back and outlives the grace (the store answers it only after
/// 10 s) is not dropped as if it never happened: the exit is still 130/143 within 5 s, and the
/// message and stdout say what was in flight. Prune lists the keys deleted and the ones whose
/// request was not answered; a backup whose CompleteMultipartUpload was sent says it may be
/// complete, and it is once the store answers.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_outliving_the_grace_is_reported_as_in_flight() {
    let store = Store::S3sFs;
    // Prune: one DeleteObject per key, the third answered after 10 s.
    let bucket = store.bucket("graceprune").await;
    let seeded = seed_many(store, &bucket, "app", 6).await;
    let proxy = Proxy::start(&store.endpoint());
    proxy.fail(
        Op::DeleteObjects,
        1,
        Fault::Always(Box::new(Fault::Status(501))),
    );
    proxy.fail(Op::DeleteObject, 3, Fault::Delay(Duration::from_secs(10)));
    let child = prune_via(store, &bucket, &proxy.url(), "app").spawn();
    let (out, took) = signal_when(child, libc::SIGINT, || proxy.count(Op::DeleteObject) >= 3).await;
    assert!(took < 5.5, "took {took:.1} s");
    out.fails(
        130,
        &["stopped while deleting: 2 of 4 backups deleted, and a request to delete 1 more was sent and not answered"],
    );
    // Oldest first is not promised; the two answered are listed as deleted, the third as maybe.
    let deleted: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("  deleted "))
        .collect();
    let maybe: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("  maybe deleted "))
        .collect();
    assert_eq!((deleted.len(), maybe.len()), (2, 1), "{}", out.stdout);
    let left = store.keys_in(&bucket).await;
    for key in &deleted {
        assert!(!left.contains(&key.to_string()), "{key} listed as deleted");
    }
    for key in &seeded[..2] {
        assert!(left.contains(key), "{key}: one of the two newest");
    }

    // Backup: the commit answered after 10 s.
    let bucket = store.bucket("gracecommit").await;
    let proxy = Proxy::start(&store.endpoint());
    proxy.fail(
        Op::CompleteMultipartUpload,
        1,
        Fault::Delay(Duration::from_secs(10)),
    );
    let child = backup_with(store, &bucket, &proxy.url(), &[]).spawn();
    let (out, took) = signal_when(child, libc::SIGTERM, || {
        proxy.count(Op::CompleteMultipartUpload) >= 1
    })
    .await;
    assert!(took < 5.5, "took {took:.1} s");
    let err = out.fails(
        143,
        &[
            "the backup's final request for s3://",
            "was sent and not answered: the backup may be complete",
        ],
    );
    assert!(!err.contains("nothing was stored"), "{err}");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let keys = store.keys_in(&bucket).await;
    assert!(
        keys.iter().any(|k| k.ends_with(".sql.gz")),
        "the store completed it: {keys:?}"
    );
}

/// A signal while `pg_dump --version` runs (a wrapper that takes 20 s to answer) stops the
/// backup at once: the probe is a child the runtime waits on, not a blocking call.
#[tokio::test(flavor = "multi_thread")]
async fn a_signal_during_the_pg_dump_probe_stops_at_once() {
    let store = Store::Moto;
    let bucket = store.bucket("probesig").await;
    let slow = script(
        "pg_dump",
        "if [ \"$1\" = --version ]; then sleep 20; echo 'pg_dump (PostgreSQL) 99.1'; exit 0; fi\nexit 1",
    );
    let marker = slow.with_extension("started");
    let wrapper = script(
        "pg_dump",
        &format!(
            "touch '{}'\nexec '{}' \"$@\"",
            marker.display(),
            slow.display()
        ),
    );
    let db_url = Pg::url(database());
    let endpoint = store.endpoint();
    let (ak, sk) = store.keys();
    let child = Run::new(&[
        "backup",
        "--database-url",
        &db_url,
        "--bucket",
        &bucket,
        "--region",
        "us-east-1",
        "--endpoint-url",
        &endpoint,
        "--force-path-style",
        "--pg-dump-path",
        wrapper.to_str().unwrap(),
    ])
    .env("AWS_ACCESS_KEY_ID", &ak)
    .env("AWS_SECRET_ACCESS_KEY", &sk)
    .spawn();
    let (out, took) = signal_when(child, libc::SIGINT, || marker.exists()).await;
    assert!(took < 2.0, "took {took:.1} s");
    out.fails(
        130,
        &["interrupted by", "stopped before anything was written"],
    );
    assert!(store.keys_in(&bucket).await.is_empty());
}

/// A block that fails the compressor's self-check (a debug-build hook flips one bit in each
/// full 512 KiB block) aborts the backup with the self-check's own message, not pg_dump's
/// SIGPIPE that follows it; nothing is stored and no upload is left open.
#[tokio::test(flavor = "multi_thread")]
async fn a_block_failing_the_self_check_aborts_the_backup_and_says_so() {
    for store in STORES {
        let bucket = store.bucket("selfcheck").await;
        let out = backup_with(store, &bucket, &store.endpoint(), &[])
            .env("PGS3_DEBUG_DAMAGE_BLOCK_LEN", "524288")
            .run();
        let err = out.fails(
            1,
            &[
                "the compressor's self-check failed: a 524288-byte block's output is wrong",
                "nothing was stored",
            ],
        );
        assert!(!err.contains("signal 13"), "{err}");
        assert!(store.keys_in(&bucket).await.is_empty(), "{store:?}");
        assert_eq!(store.open_uploads(&bucket).await, 0, "{store:?}");
    }
}

/// `restore --output -` into a pipe nobody reads (its writes block) still stops on SIGTERM
/// within 5 s, saying the output is incomplete, instead of waiting for the reader forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_signal_stops_a_restore_to_a_pipe_nobody_reads() {
    let store = Store::Moto;
    let bucket = store.bucket("pipesig").await;
    let db = unique("pipesig");
    Pg::create_db(&db);
    let url = Pg::url(&db);
    Pg::psql(
        &url,
        "CREATE TABLE t AS SELECT g, md5(g::text) AS v FROM generate_series(1, 100000) g",
    );
    let key = Run::backup(store, &bucket, &url, &[]).key();
    let endpoint = store.endpoint();
    let (ak, sk) = store.keys();
    let mut child = Run::new(&[
        "restore",
        "--bucket",
        &bucket,
        "--prefix",
        "pg/",
        "--region",
        "us-east-1",
        "--endpoint-url",
        &endpoint,
        "--force-path-style",
        "--key",
        &key,
        "--output",
        "-",
    ])
    .env("AWS_ACCESS_KEY_ID", &ak)
    .env("AWS_SECRET_ACCESS_KEY", &sk)
    .spawn();
    // The pipe (64 KiB) fills at once; the restore is then blocked writing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(child.try_wait().unwrap().is_none(), "it ended on its own");
    let signalled = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        drop(stdout);
        status
    })
    .await
    .unwrap();
    let took = signalled.elapsed().as_secs_f64();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
    assert!(took < 5.0, "took {took:.1} s");
    assert_eq!(status.code(), Some(143), "{err}");
    assert!(
        err.contains("the restore to stdout was stopped: what was written is incomplete"),
        "{err}"
    );
    assert!(!err.contains("rolled back"), "{err}");
}

/// A part the store refuses, then an abort it refuses too: the parts stay stored, and the
/// warning names the command that removes them with the bucket, key and UploadId it needs.
/// Running exactly that (here through the SDK) removes the upload.
async fn failed_abort_names_the_upload_id(store: Store) {
    let bucket = store.bucket("faults-abort").await;
    let proxy = Proxy::start(&store.endpoint());
    let denied = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";
    proxy.fail(Op::UploadPart, 2, Fault::Reply(403, denied.into()));
    proxy.fail(
        Op::AbortMultipartUpload,
        1,
        Fault::Always(Box::new(Fault::Reply(403, denied.into()))),
    );
    let out = run(backup(store, &bucket, &proxy.url())).await;
    // The second UploadPart to arrive is part 2 or, when parts 2 and 3 race, part 3.
    let line = out.fails(
        1,
        &[
            "S3 UploadPart ",
            "the upload could not be aborted: its parts stay stored",
        ],
    );
    assert!(
        line.contains("UploadPart 2") || line.contains("UploadPart 3"),
        "{line}"
    );
    assert!(!out.stderr.contains("nothing was stored"), "{}", out.stderr);
    let hint = out
        .stderr
        .lines()
        .find(|l| l.contains("abort-multipart-upload"))
        .unwrap_or_else(|| panic!("{store:?}: no abort hint: {}", out.stderr));
    let value = |flag: &str| {
        hint.split(&format!(
            "{flag}{}",
            if flag == "--bucket" { " " } else { "=" }
        ))
        .nth(1)
        .and_then(|rest| rest.split([' ', '`']).next())
        .unwrap_or_else(|| panic!("{store:?}: no {flag} in {hint}"))
        .to_string()
    };
    let (b, key, id) = (value("--bucket"), value("--key"), value("--upload-id"));
    assert_eq!(b, bucket, "{hint}");
    assert!(key.starts_with("pg/") && key.ends_with(".sql.gz"), "{hint}");
    assert_eq!(
        store.open_uploads(&bucket).await,
        1,
        "{store:?}: the parts stay"
    );
    store
        .client()
        .abort_multipart_upload()
        .bucket(&b)
        .key(&key)
        .upload_id(&id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{store:?}: the printed command does not work: {e:?}"));
    assert_eq!(store.open_uploads(&bucket).await, 0, "{store:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_abort_names_the_upload_id_that_removes_the_parts() {
    on_both_stores(failed_abort_names_the_upload_id).await;
}

/// The claim's second look at the key (after its lock is written) fails: the backup stops
/// before any upload, and its lock does not stay behind to reserve the key.
async fn failed_recheck_leaves_no_lock(store: Store) {
    let bucket = store.bucket("faults-recheck").await;
    let proxy = Proxy::start(&store.endpoint());
    proxy.fail(
        Op::HeadObject,
        2,
        Fault::Always(Box::new(Fault::Status(400))),
    );
    let out = run(backup(store, &bucket, &proxy.url())).await;
    out.fails(1, &["the backup did not start", "HeadObject"]);
    assert_eq!(proxy.count(Op::PutObject), 1, "{store:?}: the lock only");
    assert_eq!(proxy.count(Op::CreateMultipartUpload), 0, "{store:?}");
    assert_eq!(
        store.keys_in(&bucket).await,
        Vec::<String>::new(),
        "{store:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_second_look_at_the_key_leaves_no_lock() {
    on_both_stores(failed_recheck_leaves_no_lock).await;
}

/// The answer to CompleteMultipartUpload is lost and the backup may not read the object back
/// (no s3:GetObject, as under `policy --minimal`): whatever the run concludes, it never says
/// that nothing was stored, nor prints an abort for parts that are gone; the object is there.
async fn lost_answer_without_read(store: Store) {
    let bucket = store.bucket("faults-lostnoread").await;
    let proxy = answer_of_complete_lost(store);
    // The claim's two looks at the key pass; every HeadObject after them is denied.
    proxy.fail(
        Op::HeadObject,
        3,
        Fault::Always(Box::new(Fault::Status(403))),
    );
    let out = run(backup_quick_timeout(store, &bucket, &proxy)).await;
    assert!(
        !out.stderr.contains("nothing was stored"),
        "{store:?}: {}",
        out.stderr
    );
    // moto answers the abort of a completed upload NoSuchUpload: no parts are left to remove.
    // (s3s-fs answers AccessDenied, which the tool cannot tell from a missing permission.)
    if store != Store::S3sFs {
        assert!(
            !out.stderr.contains("abort-multipart-upload"),
            "{store:?}: {}",
            out.stderr
        );
    }
    let keys: Vec<String> = store
        .keys_in(&bucket)
        .await
        .into_iter()
        .filter(|k| !k.ends_with(".lock"))
        .collect();
    assert_eq!(keys.len(), 1, "{store:?}: the object is stored: {keys:?}");
    assert_eq!(store.open_uploads(&bucket).await, 0, "{store:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_answer_without_read_access_never_claims_nothing_was_stored() {
    on_both_stores(lost_answer_without_read).await;
}

/// The integrity record cannot be written (the store fails its PutObject, the second after
/// the lock's): the backup is stored but exits 1 saying so, its outcome keeps the key,
/// `--verify` and retention do not run, and from then on verify and restore take it for
/// unverified: refused, or accepted with `--unverified` (its stream still checked whole).
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_whose_record_was_not_written_is_stored_but_unverified() {
    let store = Store::Moto;
    let bucket = store.bucket("no-record").await;
    let age = crate::codecs::age_keygen();
    let url = Pg::url(database());
    // A first, recorded backup: the one retention would have deleted.
    let first = Backup::new(store, &bucket, &url).run().run().ok();
    let first = first["key"].as_str().unwrap().to_string();
    // The empty database's dump is one PutObject, after the lock's: the third is the record.
    let proxy = Proxy::start(&store.endpoint());
    proxy.fail(
        Op::PutObject,
        3,
        Fault::Always(Box::new(Fault::Status(500))),
    );
    let backup = Backup::new(store, &bucket, &url).via(&proxy.url()).args(&[
        "--verify",
        "--keep-last",
        "1",
        "--age-recipient",
        age.public.as_str(),
    ]);
    let out = tokio::task::spawn_blocking(move || backup.run().run())
        .await
        .unwrap();
    out.fails(
        1,
        &[
            "is complete, but its integrity record was not written",
            "--unverified",
        ],
    );
    let keys = store.all_keys_in(&bucket).await;
    let key = keys
        .iter()
        .find(|k| k.ends_with(".sql.gz.age"))
        .expect("the backup is stored")
        .clone();
    assert!(keys.contains(&first), "retention ran: {keys:?}");
    assert!(!keys.contains(&format!("{key}.json")), "{keys:?}");
    assert_eq!(store.open_uploads(&bucket).await, 0);

    let verify = |extra: &[&str]| {
        let mut args = vec!["--key", key.as_str()];
        args.extend_from_slice(extra);
        crate::restore::run(store, "verify", &bucket, &args)
    };
    // The stream is checked whole, and still refused unless accepted.
    let id = age.file.to_str().unwrap().to_string();
    verify(&["--age-identity", &id]).fails(1, &["no integrity record", "--unverified"]);
    let done = verify(&["--age-identity", &id, "--unverified"]);
    let ok = done.ok_plain();
    assert!(ok.contains("unverified: no integrity record"), "{ok}");
    // list says so too.
    let listed = crate::restore::run(store, "list", &bucket, &["--json"]);
    let rows = listed.ok();
    let row = |k: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == k)
            .cloned()
    };
    assert_eq!(row(&key).unwrap()["recorded"], false, "{rows}");
    assert_eq!(row(&first).unwrap()["recorded"], true, "{rows}");
    assert!(
        listed
            .stderr
            .contains("1 of 2 backups have no integrity record"),
        "{}",
        listed.stderr
    );
}
