//! `restore` and `verify`: round trips through our own restore on both stores, and every kind
//! of damage (truncation, a flipped byte, a wrong sha256, a dump without its trailer) detected
//! by `verify` and refused by `restore` with the target left unchanged.

use crate::support::{gunzip, gzip, unique, Pg, Run, Store, STORES};
use chrono::Utc;
use pg_s3_backup::layout::{BackupId, DumpFormat};
use sha2::{Digest, Sha256};

pub fn run(store: Store, cmd: &str, bucket: &str, extra: &[&str]) -> crate::support::Done {
    crate::support::s3_command(store, &store.endpoint(), cmd, bucket, extra).run()
}

pub fn fixture_db() -> String {
    let db = unique("src");
    Pg::create_db(&db);
    Pg::psql_stdin(
        &Pg::url(&db),
        include_str!("fixtures/awkward.sql").as_bytes(),
    );
    db
}

#[tokio::test]
async fn backup_then_restore_latest_gives_equal_data_on_both_stores() {
    let db = fixture_db();
    for store in STORES {
        for format in ["plain", "custom"] {
            let bucket = store.bucket("restore").await;
            let json = Run::backup(
                store,
                &bucket,
                &Pg::url(&db),
                &["--format", format, "--verify"],
            )
            .run()
            .ok();
            assert_eq!(json["verified"], true);
            let target = unique("restored");
            Pg::create_db(&target);
            let out = run(
                store,
                "restore",
                &bucket,
                &[
                    "--database",
                    &db,
                    "--latest",
                    "--target-url",
                    &Pg::url(&target),
                ],
            );
            assert_eq!(out.code, 0, "{store:?} {format}: {}", out.stderr);
            assert!(
                out.stdout.contains(&format!("into `{target}`")),
                "{}",
                out.stdout
            );
            assert_eq!(
                Pg::canonical_dump(&target),
                Pg::canonical_dump(&db),
                "{store:?} {format}"
            );
            // verify agrees, and --restore-check restores into a scratch database.
            let scratch = unique("scratch");
            Pg::create_db(&scratch);
            let out = run(
                store,
                "verify",
                &bucket,
                &[
                    "--database",
                    &db,
                    "--latest",
                    "--restore-check",
                    &Pg::url(&scratch),
                ],
            );
            assert_eq!(out.code, 0, "{}", out.stderr);
            assert!(
                out.stdout.contains("sha256 matches its record")
                    && out.stdout.contains("dump complete"),
                "{}",
                out.stdout
            );
            assert!(
                out.stdout.contains("restore check: restored into"),
                "{}",
                out.stdout
            );
            // A second restore into the same database is refused without --force.
            let out = run(
                store,
                "restore",
                &bucket,
                &[
                    "--database",
                    &db,
                    "--latest",
                    "--target-url",
                    &Pg::url(&target),
                ],
            );
            out.fails(2, &["already has", "--force"]);
        }
    }
}

/// Uploads `body` as a plain backup of `db` with `sha256` metadata (defaults to the body's).
pub async fn put_backup(
    store: Store,
    bucket: &str,
    db: &str,
    body: &[u8],
    sha: Option<&str>,
) -> String {
    let key = BackupId::new(db, Utc::now(), DumpFormat::Plain).key("pg/");
    let sha = sha
        .map(String::from)
        .unwrap_or_else(|| hex::encode(Sha256::digest(body)));
    store.put_with(bucket, &key, body, &[("sha256", sha)]).await;
    key
}

/// `body` between pg_dump's plain-format header and trailer.
pub fn as_dump(body: &str) -> String {
    format!("--\n-- PostgreSQL database dump\n--\n\n{body}\n--\n-- PostgreSQL database dump complete\n--\n\n")
}

#[tokio::test]
async fn damage_is_named_by_verify_and_refused_by_restore() {
    let db = fixture_db();
    let store = Store::S3sFs;
    let bucket = store.bucket("damage").await;
    let good = Run::backup(store, &bucket, &Pg::url(&db), &[]).run().ok();
    let (body, _, _) = store.get(&bucket, good["key"].as_str().unwrap()).await;
    let raw = gunzip(&body);
    let text = String::from_utf8(raw.clone()).unwrap();
    let cut = text
        .find("-- PostgreSQL database dump complete")
        .expect("trailer");

    let mut flipped = body.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    let zeros = "0".repeat(64);
    let cases: Vec<(&str, Vec<u8>, Option<&str>, &str)> = vec![
        (
            "truncated",
            body[..body.len() * 2 / 3].to_vec(),
            None,
            "gzip stream",
        ),
        ("flipped", flipped, None, "gzip stream"),
        ("wrong sha256", body.clone(), Some(&zeros), "metadata says"),
        ("no trailer", gzip(&raw[..cut]), None, "completion trailer"),
    ];
    for (what, bytes, sha, needle) in cases {
        let bucket = store.bucket("damage").await;
        let key = put_backup(store, &bucket, &db, &bytes, sha).await;
        run(store, "verify", &bucket, &["--key", &key]).fails(1, &[needle]);
        let target = unique("untouched");
        Pg::create_db(&target);
        let out = run(
            store,
            "restore",
            &bucket,
            &[
                "--database",
                &db,
                "--latest",
                "--target-url",
                &Pg::url(&target),
            ],
        );
        out.fails(1, &[needle, "nothing was restored"]);
        assert_eq!(
            Pg::psql(&Pg::url(&target), "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog','information_schema')"),
            "0",
            "{what}: the target changed"
        );
    }
}

#[tokio::test]
async fn output_dash_streams_the_dump_to_stdout() {
    let db = fixture_db();
    let store = Store::Moto;
    let bucket = store.bucket("stdout").await;
    let json = Run::backup(store, &bucket, &Pg::url(&db), &[]).run().ok();
    let out = run(
        store,
        "restore",
        &bucket,
        &["--key", json["key"].as_str().unwrap(), "--output", "-"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (body, _, _) = store.get(&bucket, json["key"].as_str().unwrap()).await;
    assert_eq!(out.stdout.as_bytes(), gunzip(&body).as_slice());
    run(
        store,
        "restore",
        &bucket,
        &["--key", "x", "--output", "/tmp/file"],
    )
    .fails(2, &["--output `/tmp/file`"]);
    run(
        store,
        "restore",
        &bucket,
        &["--target-url", "postgres://x@127.0.0.1:1/db"],
    )
    .fails(2, &["no backup selected"]);
}

#[tokio::test]
async fn at_selects_the_newest_backup_at_or_before_a_time() {
    let store = Store::S3sFs;
    let bucket = store.bucket("at").await;
    let db = "timeline";
    for (day, text) in [
        ("2026-01-01", "-- january\n"),
        ("2026-02-01", "-- february\n"),
        ("2026-03-01", "-- march\n"),
    ] {
        let time = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
            .unwrap()
            .and_hms_opt(3, 0, 0)
            .unwrap()
            .and_utc();
        let key = BackupId::new(db, time, DumpFormat::Plain).key("pg/");
        let body = gzip(as_dump(text).as_bytes());
        store.put_hashed(&bucket, &key, body).await;
    }
    for (at, expected) in [
        ("2026-02-15T00:00:00Z", "-- february\n"),
        ("20260201T030000Z", "-- february\n"),
        ("2026-02-01T02:59:59Z", "-- january\n"),
        ("2027-01-01T00:00:00Z", "-- march\n"),
    ] {
        let out = run(
            store,
            "restore",
            &bucket,
            &["--database", db, "--at", at, "--output", "-"],
        );
        assert_eq!(out.code, 0, "{at}: {}", out.stderr);
        assert_eq!(out.stdout, as_dump(expected), "--at {at}");
    }
    run(
        store,
        "restore",
        &bucket,
        &[
            "--database",
            db,
            "--at",
            "2025-12-31T00:00:00Z",
            "--output",
            "-",
        ],
    )
    .fails(1, &["no backup of `timeline` at or before"]);
    run(
        store,
        "restore",
        &bucket,
        &["--database", db, "--at", "yesterday", "--output", "-"],
    )
    .fails(2, &["--at `yesterday` is not a time"]);
}
