//! `backup` end to end: real PostgreSQL, real pg_dump and psql, on both S3 servers.

use crate::support::proxy::{Op, Proxy};
use crate::support::{
    gunzip, script, unique, Backup, Pg, Run, Store, DUMP_HEADER, DUMP_TRAILER, STORES,
};
use sha2::{Digest, Sha256};

const AWKWARD: &str = include_str!("fixtures/awkward.sql");

/// Creates a database with the awkward fixture plus `random_mib` MiB of incompressible bytea
/// (to force a multipart upload with 5 MiB parts).
fn awkward_db(random_mib: usize) -> String {
    let db = unique("rt");
    Pg::create_db(&db);
    let url = Pg::url(&db);
    Pg::psql_stdin(&url, AWKWARD.as_bytes());
    if random_mib > 0 {
        Pg::psql(
            &url,
            &format!(
                "CREATE TABLE noise AS SELECT g AS id, \
                 decode(string_agg(md5(random()::text || g::text || s::text), ''), 'hex') AS b \
                 FROM generate_series(1, {random_mib}) g, generate_series(1, 65536) s GROUP BY g"
            ),
        );
    }
    db
}

/// Backs up, downloads, checks the object, restores into a fresh database and compares.
async fn round_trip(
    store: Store,
    random_mib: usize,
    format: &str,
    expect_multipart: bool,
    extra: &[&str],
) {
    let db = awkward_db(random_mib);
    let bucket = store.bucket("rt").await;
    let mut args = vec!["--part-size", "5MiB", "--format", format];
    args.extend_from_slice(extra);
    let out = Run::backup(store, &bucket, &Pg::url(&db), &args).run();
    let json = out.ok();
    let key = json["key"].as_str().unwrap().to_string();
    let ext = if format == "custom" {
        ".dump.gz"
    } else {
        ".sql.gz"
    };
    assert!(
        key.starts_with(&format!("pg/{db}/{db}-")) && key.ends_with(ext),
        "{key}"
    );
    assert_eq!(
        store.keys_in(&bucket).await,
        vec![key.clone()],
        "exactly one object"
    );
    assert_eq!(store.open_uploads(&bucket).await, 0);

    let (body, meta, content_type) = store.get(&bucket, &key).await;
    assert_eq!(content_type.as_deref(), Some("application/gzip"));
    let sha = hex::encode(Sha256::digest(&body));
    assert_eq!(json["sha256"], sha.as_str());
    // The integrity record says what was stored, and what it is.
    let record = store.record(&bucket, &key).await;
    assert_eq!(record["key"], key.as_str());
    assert_eq!(record["sha256"], sha.as_str(), "{record}");
    assert_eq!(record["size"], body.len() as u64);
    assert_eq!(record["format"], format);
    assert_eq!(record["compression"], "gzip");
    assert_eq!(record["kind"], "database");
    assert_eq!(record["database"], db.as_str());
    assert_eq!(record["server_version"], json["server_version"]);
    assert_eq!(record["pg_dump_version"], json["pg_dump_version"]);
    assert_eq!(record["run"].as_str(), meta.get("run").map(String::as_str));
    assert_eq!(json["size"], body.len() as u64);
    assert_eq!(meta.get("format").map(String::as_str), Some(format));
    let raw = gunzip(&body);
    assert_eq!(json["raw_size"], raw.len() as u64);
    assert_eq!(record["raw_size"], raw.len() as u64);
    let parts = json["parts"].as_u64().unwrap();
    assert_eq!(parts > 1, expect_multipart, "parts: {parts}");

    let target = format!("{db}-restored");
    Pg::create_db(&target);
    if format == "custom" {
        restore_custom(&raw, &target);
    } else {
        Pg::psql_stdin(&Pg::url(&target), &raw);
    }
    assert_eq!(
        Pg::canonical_dump(&target),
        Pg::canonical_dump(&db),
        "restored database differs"
    );
    // Spot checks on values that are easy to mangle, beyond the dump comparison.
    let url = Pg::url(&target);
    assert_eq!(
        Pg::psql(&url, "SELECT count(*) FROM public.texts WHERE body IS NULL"),
        "1"
    );
    assert_eq!(
        Pg::psql(&url, "SELECT count(*) FROM public.texts WHERE body = ''"),
        "1"
    );
    assert_eq!(
        Pg::psql(
            &url,
            "SELECT amount FROM billing.invoices ORDER BY id LIMIT 1"
        ),
        "123456789012345678.123456789012"
    );
    assert_eq!(Pg::psql(&url, "SELECT nextval('billing.counter')"), "1014");
    assert_eq!(Pg::psql(&url, "SELECT billing.add_tax(10)"), "12.0");
}

fn restore_custom(archive: &[u8], target: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(Pg::bin("pg_restore"))
        .args(["--no-owner", "--exit-on-error", "-d", &Pg::url(target)])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(archive).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "pg_restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn plain_round_trip_multipart_on_both_stores() {
    for store in STORES {
        round_trip(store, 12, "plain", true, &[]).await;
    }
}

#[tokio::test]
async fn small_dump_is_one_put_object_on_both_stores() {
    for store in STORES {
        round_trip(store, 0, "plain", false, &[]).await;
    }
}

#[tokio::test]
async fn custom_format_round_trip_on_both_stores() {
    for store in STORES {
        round_trip(store, 6, "custom", true, &[]).await;
    }
}

/// The SDK's default on AWS: CRC32 checksums on every part and on completion.
#[tokio::test]
async fn sdk_checksums_work_on_both_stores() {
    // A request carries a flexible checksum as a header, or as a trailer it announces.
    let checksummed = |headers: &[(String, String)]| {
        headers.iter().any(|(name, value)| {
            let name = name.to_ascii_lowercase();
            name.starts_with("x-amz-checksum-")
                || name == "x-amz-sdk-checksum-algorithm"
                || (name == "x-amz-trailer" && value.contains("x-amz-checksum-"))
        })
    };
    for store in STORES {
        let extra = ["--compression-level", "1", "--threads", "1"];
        round_trip(
            store,
            6,
            "plain",
            true,
            &[&["--checksum", "when-supported"], &extra[..]].concat(),
        )
        .await;
        // The same upload seen on the wire: checksums with `when-supported`, none with the
        // default on a custom endpoint (`auto`, which some stores need).
        let db = awkward_db(6);
        for (choice, want) in [("when-supported", true), ("auto", false)] {
            let bucket = store.bucket("cksum").await;
            let proxy = Proxy::start(&store.endpoint());
            Backup::new(store, &bucket, &Pg::url(&db))
                .via(&proxy.url())
                .args(&["--part-size", "5MiB", "--checksum", choice])
                .args(&extra)
                .run()
                .run()
                .ok();
            let parts = proxy.request_headers(Op::UploadPart);
            assert!(
                parts.len() >= 2,
                "{store:?} {choice}: {} parts",
                parts.len()
            );
            for headers in &parts {
                assert_eq!(
                    checksummed(headers),
                    want,
                    "{store:?} --checksum {choice}: UploadPart headers {headers:?}"
                );
            }
        }
    }
}

/// A pg_dump that writes 12 MiB (two parts uploaded) and then fails.
fn failing_pg_dump() -> std::path::PathBuf {
    script(
        "pg_dump",
        r#"if [ "$1" = "--version" ]; then echo "pg_dump (PostgreSQL) 99.1"; exit 0; fi
head -c 12582912 /dev/urandom
echo "pg_dump: error: simulated failure after data" >&2
exit 3"#,
    )
}

#[tokio::test]
async fn failing_pg_dump_leaves_no_object_and_no_upload() {
    let db = unique("fail");
    Pg::create_db(&db);
    let fake = failing_pg_dump();
    for store in STORES {
        let bucket = store.bucket("fail").await;
        let out = Run::backup(
            store,
            &bucket,
            &Pg::url(&db),
            &[
                "--part-size",
                "5MiB",
                "--pg-dump-path",
                fake.to_str().unwrap(),
            ],
        )
        .run();
        out.fails(1, &["exited with status 3", "simulated failure after data"]);
        assert!(out.stdout.is_empty(), "nothing on stdout: {}", out.stdout);
        assert_eq!(
            store.keys_in(&bucket).await,
            Vec::<String>::new(),
            "{store:?}"
        );
        assert_eq!(
            store.open_uploads(&bucket).await,
            0,
            "{store:?}: upload not aborted"
        );
    }
}

#[tokio::test]
async fn older_pg_dump_fails_before_any_upload() {
    let db = unique("old");
    Pg::create_db(&db);
    let old = script("pg_dump", r#"echo "pg_dump (PostgreSQL) 12.19"; exit 0"#);
    for store in STORES {
        let bucket = store.bucket("old").await;
        let out = Run::backup(
            store,
            &bucket,
            &Pg::url(&db),
            &["--pg-dump-path", old.to_str().unwrap()],
        )
        .run();
        out.fails(
            1,
            &[
                "version 12 but the server is 15",
                "--pg-dump-path",
                "postgresql-client-15",
            ],
        );
        assert!(store.keys_in(&bucket).await.is_empty());
        assert_eq!(store.open_uploads(&bucket).await, 0);
    }
}

#[tokio::test]
async fn unreachable_database_wrong_password_and_missing_database() {
    let store = Store::S3sFs;
    let bucket = store.bucket("conn").await;
    let admin = Pg::admin_url();
    let wrong_pw = admin.replacen("pgs3-test-password", "not-the-password-x9", 1);
    let missing = Pg::url(&unique("missing"));
    let cases = [
        (
            "postgres://pgs3:pw@127.0.0.1:1/db".to_string(),
            "cannot connect to PostgreSQL at 127.0.0.1:1",
        ),
        (wrong_pw, "password authentication failed"),
        (missing, "does not exist"),
    ];
    for (url, needle) in cases {
        let out = Run::backup(store, &bucket, &url, &[]).run();
        let line = out.fails(1, &[needle, "check"]).to_string();
        assert!(
            !out.stderr.contains("not-the-password-x9"),
            "password leaked: {}",
            out.stderr
        );
        assert!(!line.contains("pgs3-test-password"));
    }
    assert!(store.keys_in(&bucket).await.is_empty());
}

#[tokio::test]
async fn sigterm_and_sigint_abort_the_upload() {
    let db = unique("sig");
    Pg::create_db(&db);
    // Writes 12 MiB so at least one part is uploaded, then stalls like a dump waiting on a lock.
    let slow = script(
        "pg_dump",
        r#"if [ "$1" = "--version" ]; then echo "pg_dump (PostgreSQL) 99.1"; exit 0; fi
head -c 12582912 /dev/urandom
sleep 60"#,
    );
    for (store, signal, code) in [
        (Store::Moto, libc::SIGTERM, 143),
        (Store::S3sFs, libc::SIGINT, 130),
    ] {
        let bucket = store.bucket("sig").await;
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
        .spawn();
        let started = std::time::Instant::now();
        while store.open_uploads(&bucket).await == 0 {
            assert!(
                started.elapsed().as_secs() < 60,
                "no multipart upload started"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let signalled = std::time::Instant::now();
        unsafe { libc::kill(child.id() as i32, signal) };
        let out: crate::support::Done =
            tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
                .await
                .unwrap()
                .into();
        assert!(
            signalled.elapsed().as_secs_f64() < 5.0,
            "took {:?}",
            signalled.elapsed()
        );
        out.fails(code, &["interrupted by", "aborted"]);
        assert_eq!(
            store.open_uploads(&bucket).await,
            0,
            "{store:?}: upload left behind"
        );
        assert!(store.keys_in(&bucket).await.is_empty());
    }
}

#[tokio::test]
async fn an_existing_backup_in_the_same_second_is_never_overwritten() {
    let db = unique("same");
    Pg::create_db(&db);
    for store in STORES {
        let bucket = store.bucket("same").await;
        // Occupy the keys of the next few seconds, so the backup must start inside one of them.
        let now = chrono::Utc::now();
        let mut taken = Vec::new();
        for s in 0..4 {
            let id = pg_s3_backup::layout::BackupId::new(
                &db,
                now + chrono::Duration::seconds(s),
                pg_s3_backup::layout::DumpFormat::Plain,
            );
            let key = id.key("pg/");
            store.put(&bucket, &key, b"earlier backup").await;
            taken.push(key);
        }
        let json = Run::backup(store, &bucket, &Pg::url(&db), &[]).run().ok();
        let key = json["key"].as_str().unwrap();
        assert!(key.ends_with("Z-2.sql.gz"), "{key}");
        assert!(
            taken.contains(&key.replace("Z-2.sql.gz", "Z.sql.gz")),
            "{key}"
        );
        for k in &taken {
            assert_eq!(
                store.get(&bucket, k).await.0,
                b"earlier backup",
                "{k} was overwritten"
            );
        }
    }
}

/// Peak resident memory (VmHWM) of a running process, sampled until it exits.
fn watch_peak_rss(child: std::process::Child) -> (crate::support::Done, u64) {
    let pid = child.id();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0u64;
        while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kb) = status.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
                peak = peak.max(
                    kb.trim()
                        .trim_end_matches(" kB")
                        .trim()
                        .parse()
                        .unwrap_or(0),
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        peak * 1024
    });
    let out = child.wait_with_output().unwrap().into();
    (out, sampler.join().unwrap())
}

#[tokio::test]
async fn memory_stays_bounded_whatever_the_dump_size() {
    let db = unique("mem");
    Pg::create_db(&db);
    let store = Store::S3sFs;
    let bucket = store.bucket("mem").await;
    // Incompressible streams of 100 MiB and 250 MiB: a tool that buffered the dump would hold
    // all of it, one with a leak would grow with it. Both reach the steady state of
    // (2 + 1) parts of 5 MiB in memory (a 40 MiB stream ends before it does).
    let mut peaks = Vec::new();
    for mib in [100, 250] {
        let dump = random_pg_dump(mib);
        let child = Run::backup(
            store,
            &bucket,
            &Pg::url(&db),
            &[
                "--part-size",
                "5MiB",
                "--upload-concurrency",
                "2",
                "--compression-level",
                "1",
                "--pg-dump-path",
                dump.to_str().unwrap(),
            ],
        )
        .spawn();
        let (out, peak) = watch_peak_rss(child);
        let json = out.ok();
        assert_eq!(json["raw_size"], (mib as u64) << 20);
        eprintln!("{mib} MiB stream: peak RSS {} MiB", peak >> 20);
        peaks.push(peak);
    }
    let (small, big) = (peaks[0], peaks[1]);
    assert!(
        big < small + (8 << 20),
        "peak grew with the dump: {} -> {} MiB",
        small >> 20,
        big >> 20
    );
    assert!(big < 96 << 20, "peak RSS {} MiB", big >> 20);
    assert_eq!(store.open_uploads(&bucket).await, 0);
}

/// A pg_dump that writes `mib` MiB of incompressible data between pg_dump's plain-format
/// header and trailer (a backup must look like a complete dump to be completed).
fn random_pg_dump(mib: usize) -> std::path::PathBuf {
    let random = (mib << 20) - DUMP_HEADER.len() - DUMP_TRAILER.len();
    crate::support::fake_pg_dump(&format!("head -c {random} /dev/urandom"))
}

#[tokio::test]
async fn max_parts_refuses_streams_beyond_its_capacity() {
    let db = unique("parts");
    Pg::create_db(&db);
    let fits = random_pg_dump(9);
    let too_big = random_pg_dump(12);
    for store in STORES {
        let bucket = store.bucket("parts").await;
        // With 2 parts allowed there is no reserve to grow into: both are planned, 5 MiB each
        // for this small database, so 9 MiB fits in two.
        let args = [
            "--part-size",
            "5MiB",
            "--max-parts",
            "2",
            "--compression-level",
            "1",
        ];
        let mut with_fits = args.to_vec();
        with_fits.extend(["--pg-dump-path", fits.to_str().unwrap()]);
        let json = Run::backup(store, &bucket, &Pg::url(&db), &with_fits)
            .run()
            .ok();
        assert_eq!(json["parts"], 2);
        let key = json["key"].as_str().unwrap();
        // 12 MiB does not fit in 5 + 5 MiB: the upload is aborted with the fix in the message.
        let mut with_big = args.to_vec();
        with_big.extend(["--pg-dump-path", too_big.to_str().unwrap()]);
        Run::backup(store, &bucket, &Pg::url(&db), &with_big)
            .run()
            .fails(
                1,
                &["larger than 2 parts can hold", "--part-size or --max-parts"],
            );
        assert_eq!(store.keys_in(&bucket).await, vec![key.to_string()]);
        assert_eq!(store.open_uploads(&bucket).await, 0, "{store:?}");
    }
}

#[tokio::test]
async fn pg_dump_killed_mid_stream_leaves_nothing() {
    let db = unique("killed");
    Pg::create_db(&db);
    // Writes 12 MiB (two parts uploaded), then dies by SIGKILL as an OOM kill would.
    let killed = script(
        "pg_dump",
        r#"if [ "$1" = "--version" ]; then echo "pg_dump (PostgreSQL) 99.1"; exit 0; fi
head -c 12582912 /dev/urandom
kill -9 $$"#,
    );
    for store in STORES {
        let bucket = store.bucket("killed").await;
        // Two older backups that `--keep-last 1` would prune after a successful backup.
        let mut older = Vec::new();
        for days in [2, 3] {
            let time = chrono::Utc::now() - chrono::Duration::days(days);
            let key = pg_s3_backup::layout::BackupId::new(
                &db,
                time,
                pg_s3_backup::layout::DumpFormat::Plain,
            )
            .key("pg/");
            store.put(&bucket, &key, b"old").await;
            older.push(key);
        }
        older.sort();
        let out = Run::backup(
            store,
            &bucket,
            &Pg::url(&db),
            &[
                "--part-size",
                "5MiB",
                "--keep-last",
                "1",
                "--pg-dump-path",
                killed.to_str().unwrap(),
            ],
        )
        .run();
        out.fails(1, &["was killed by signal 9"]);
        let mut keys = store.keys_in(&bucket).await;
        keys.sort();
        assert_eq!(
            keys, older,
            "{store:?}: no new object, no lock, nothing pruned"
        );
        assert_eq!(store.open_uploads(&bucket).await, 0, "{store:?}");
    }
}

#[tokio::test]
async fn a_backup_writes_no_temporary_files() {
    let db = unique("notmp");
    Pg::create_db(&db);
    Pg::psql(
        &Pg::url(&db),
        "CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 200000) g",
    );
    let tmp = std::env::temp_dir().join(unique("watched-tmp"));
    let cwd = std::env::temp_dir().join(unique("watched-cwd"));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::create_dir_all(&cwd).unwrap();
    let store = Store::S3sFs;
    let bucket = store.bucket("notmp").await;
    let json = Run::backup(
        store,
        &bucket,
        &Pg::url(&db),
        &["--part-size", "5MiB", "--verify"],
    )
    .env("TMPDIR", tmp.to_str().unwrap())
    .current_dir(&cwd)
    .run()
    .ok();
    assert!(json["raw_size"].as_u64().unwrap() > 5 << 20);
    for dir in [&tmp, &cwd] {
        let left: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
        assert!(left.is_empty(), "{} has {left:?}", dir.display());
    }
}
