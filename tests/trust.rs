//! The trust boundaries of RELIABILITY.md's threat model, each attacked the way the issue
//! reproduced it: anyone who can write under the prefix (planted keys, crafted dumps), any user
//! of the database (names with newlines and workflow commands), a wrong runner clock, and the
//! Actions log. Real PostgreSQL, real pg_dump and psql, both stores.

use crate::restore::{as_dump, fixture_db, put_backup, run};
use crate::support::gzip;
use crate::support::proxy::{Fault, Op, Proxy};
use crate::support::{s3_command, script, unique, Done, Pg, Run, Store, STORES};
use chrono::{Duration, Utc};
use pg_s3_backup::layout::{BackupId, DumpFormat};
use std::path::{Path, PathBuf};

const TABLES: &str = "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')";
const LARGE_OBJECTS: &str = "SELECT count(*) FROM pg_catalog.pg_largeobject_metadata";

/// What the runner would take for workflow commands in `text` (actions/runner
/// `ActionCommand.cs`): lines split at `\n` and `\r`, a line starting with `::` after leading
/// whitespace, and `##[` anywhere in a line.
fn runner_commands(text: &str) -> Vec<String> {
    text.split(['\n', '\r'])
        .filter(|l| l.trim_start().starts_with("::") || l.contains("##["))
        .map(String::from)
        .collect()
}

/// The commands pg-s3-backup itself issues; anything else is an injection.
fn assert_only_our_commands(what: &str, text: &str) {
    for cmd in runner_commands(text) {
        let ours = [
            "::add-mask::",
            "::group::",
            "::endgroup::",
            "::warning::",
            "::error::",
        ]
        .iter()
        .any(|p| cmd.starts_with(p));
        assert!(ours, "{what}: a foreign workflow command: {cmd:?}\n{text}");
        assert!(
            !cmd.contains("pwned") && !cmd.contains("injected"),
            "{what}: an injected command: {cmd:?}"
        );
    }
}

/// A command against `store` with the store's keys and `extra` flags.
fn cmd(store: Store, command: &str, bucket: &str, extra: &[&str]) -> Run {
    s3_command(store, &store.endpoint(), command, bucket, extra)
}

#[tokio::test]
async fn stdout_carries_only_data_and_secrets_only_masks_in_actions() {
    let db = fixture_db();
    let store = Store::Moto;
    let bucket = store.bucket("stdout").await;
    let url = Pg::url(&db);
    let backup = Run::backup(store, &bucket, &url, &[])
        .env("GITHUB_ACTIONS", "true")
        .run();
    let json = backup.ok();
    let key = json["key"].as_str().unwrap().to_string();
    let password = "pgs3-test-password";
    assert!(
        backup
            .stderr
            .starts_with(&format!("::add-mask::{password}\n")),
        "masks first, on stderr:\n{}",
        backup.stderr
    );
    let cases: Vec<(&str, Run)> = vec![
        ("list --json", cmd(store, "list", &bucket, &["--json"])),
        (
            "check --json",
            cmd(store, "check", &bucket, &["--database", &db, "--json"]),
        ),
        (
            "policy",
            Run::new(&["policy", "--bucket", &bucket, "--prefix", "pg/"]),
        ),
        (
            "restore --output -",
            cmd(store, "restore", &bucket, &["--key", &key, "--output", "-"]),
        ),
    ];
    for (what, run) in cases {
        let out = run
            .env("GITHUB_ACTIONS", "true")
            .env("DATABASE_URL", &url)
            .run();
        assert_eq!(out.code, 0, "{what}: {}", out.stderr);
        assert!(
            runner_commands(&out.stdout).is_empty(),
            "{what}: {}",
            out.stdout
        );
        assert!(!out.stdout.contains(password), "{what}");
        assert!(
            out.stderr.starts_with(&format!("::add-mask::{password}\n")),
            "{what}: {}",
            out.stderr
        );
        if what != "restore --output -" {
            serde_json::from_str::<serde_json::Value>(out.stdout.trim())
                .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e}): {}", out.stdout));
        }
    }
    // `restore --output - | psql` restores, because line 1 is the dump's, not a mask.
    let out = cmd(store, "restore", &bucket, &["--key", &key, "--output", "-"])
        .env("GITHUB_ACTIONS", "true")
        .run();
    let target = unique("piped");
    Pg::create_db(&target);
    Pg::psql_stdin(&Pg::url(&target), out.stdout.as_bytes());
    assert_eq!(Pg::canonical_dump(&target), Pg::canonical_dump(&db));
}

/// Uploads a small complete plain dump under `key`.
async fn put_dump(store: Store, bucket: &str, key: &str, text: &str) {
    let body = gzip(as_dump(text).as_bytes());
    store.put_hashed(bucket, key, body).await;
}

#[tokio::test]
async fn keys_from_the_future_are_never_the_newest() {
    let db = "planted";
    for store in STORES {
        let bucket = store.bucket("future").await;
        let now = Utc::now();
        let mut real = Vec::new();
        for days in [3, 2, 1] {
            let key = BackupId::new(db, now - Duration::days(days), DumpFormat::Plain).key("pg/");
            put_dump(store, &bucket, &key, &format!("-- real, {days} days old")).await;
            real.push(key);
        }
        // Centuries, days and hours ahead: each planted by anyone with s3:PutObject, or
        // written by a runner whose clock ran ahead.
        let planted: Vec<String> = [
            "pg/planted/planted-29991231T235959Z.sql.gz".to_string(),
            BackupId::new(db, now + Duration::days(3), DumpFormat::Plain).key("pg/"),
            BackupId::new(db, now + Duration::hours(2), DumpFormat::Plain).key("pg/"),
        ]
        .into();
        for key in &planted {
            put_dump(store, &bucket, key, "-- planted").await;
        }

        let list = cmd(store, "list", &bucket, &["--json"]).run().ok();
        for row in list.as_array().unwrap() {
            let key = row["key"].as_str().unwrap();
            assert_eq!(row["future"], planted.iter().any(|p| p == key), "{key}");
        }
        let out = cmd(
            store,
            "check",
            &bucket,
            &["--database", db, "--max-age", "26h"],
        )
        .run();
        out.fails(1, &["in the future"]);
        assert!(
            planted.iter().any(|p| out.stderr.contains(p.as_str())),
            "check names a planted key: {}",
            out.stderr
        );
        let restored = cmd(
            store,
            "restore",
            &bucket,
            &["--database", db, "--latest", "--output", "-"],
        )
        .run();
        assert_eq!(restored.code, 0, "{}", restored.stderr);
        assert_eq!(restored.stdout, as_dump("-- real, 1 days old"));

        // keep-within counts from the newest real backup: nothing is deleted.
        let report = cmd(
            store,
            "prune",
            &bucket,
            &["--database", db, "--keep-within", "30d", "--json"],
        )
        .run()
        .ok();
        assert_eq!(report["deleted"].as_array().unwrap().len(), 0, "{report}");
        let mut future: Vec<&str> = report["future"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        future.sort();
        let mut want: Vec<&str> = planted.iter().map(String::as_str).collect();
        want.sort();
        assert_eq!(future, want);
        // keep-last 1 keeps the newest real backup; the planted keys are left alone.
        cmd(
            store,
            "prune",
            &bucket,
            &["--database", db, "--keep-last", "1"],
        )
        .run()
        .ok_plain();
        let mut left = store.keys_in(&bucket).await;
        left.sort();
        let mut expected: Vec<String> = planted.clone();
        expected.push(real[2].clone());
        expected.sort();
        assert_eq!(left, expected, "{store:?}");
    }
}

/// libfaketime, which moves this process's wall clock (and only its): `scripts/setup`
/// installs Debian's faketime.
fn libfaketime() -> PathBuf {
    for dir in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ] {
        let lib = Path::new(dir).join("faketime/libfaketime.so.1");
        if lib.exists() {
            return lib;
        }
    }
    panic!("libfaketime is not installed: run scripts/setup (Debian package faketime)");
}

fn with_clock(run: Run, offset: &str) -> Run {
    run.env("LD_PRELOAD", libfaketime().to_str().unwrap())
        .env("FAKETIME", offset)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
}

#[tokio::test]
async fn a_runner_clock_that_disagrees_with_the_store_writes_and_deletes_nothing() {
    let db = unique("clock");
    Pg::create_db(&db);
    for store in STORES {
        let bucket = store.bucket("clock").await;
        let mut seeded = Vec::new();
        for days in [3, 2] {
            let key =
                BackupId::new(&db, Utc::now() - Duration::days(days), DumpFormat::Plain).key("pg/");
            put_dump(store, &bucket, &key, "-- old").await;
            seeded.push(key);
        }
        seeded.sort();
        for offset in ["+3h", "-3h", "+1d"] {
            let out = with_clock(
                Run::backup(store, &bucket, &Pg::url(&db), &["--keep-last", "1"]),
                offset,
            )
            .run();
            out.fails(1, &["clock", "NTP", "nothing was written"]);
            let out = with_clock(cmd(store, "prune", &bucket, &["--keep-last", "1"]), offset).run();
            out.fails(1, &["clock", "nothing was pruned"]);
            with_clock(
                cmd(
                    store,
                    "check",
                    &bucket,
                    &["--database", &db, "--max-age", "30d"],
                ),
                offset,
            )
            .run()
            .fails(1, &["clock"]);
            let mut left = store.keys_in(&bucket).await;
            left.sort();
            assert_eq!(left, seeded, "{store:?} {offset}: the bucket changed");
        }
        // A clock within the tolerance is fine.
        with_clock(Run::backup(store, &bucket, &Pg::url(&db), &[]), "+1m")
            .run()
            .ok();
    }
}

/// A real pg_dump with extra arguments appended (the last --format wins).
fn pg_dump_with(extra: &str) -> PathBuf {
    script(
        "pg_dump",
        &format!("exec '{}' \"$@\" {extra}", Pg::bin("pg_dump").display()),
    )
}

#[tokio::test]
async fn only_a_complete_dump_becomes_a_backup_and_nothing_is_pruned_otherwise() {
    let db = unique("complete");
    Pg::create_db(&db);
    Pg::psql(
        &Pg::url(&db),
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g",
    );
    let empty = script(
        "pg_dump",
        r#"if [ "$1" = "--version" ]; then echo "pg_dump (PostgreSQL) 99.1"; exit 0; fi
exit 0"#,
    );
    let cut = script(
        "pg_dump",
        &format!(
            "if [ \"$1\" = \"--version\" ]; then echo \"pg_dump (PostgreSQL) 99.1\"; exit 0; fi\n\
             '{}' \"$@\" | head -c 3000",
            Pg::bin("pg_dump").display()
        ),
    );
    let cases: Vec<(&str, PathBuf, &str, &str)> = vec![
        ("empty output", empty, "plain", "wrote nothing"),
        ("cut short", cut, "plain", "cut short"),
        (
            "tar output",
            pg_dump_with("--format=tar"),
            "plain",
            "header",
        ),
        (
            "custom output",
            pg_dump_with("--format=custom"),
            "plain",
            "header",
        ),
        (
            "plain output",
            pg_dump_with("--format=plain"),
            "custom",
            "PGDMP",
        ),
    ];
    for store in STORES {
        let bucket = store.bucket("complete").await;
        let older: Vec<String> = {
            let mut keys = Vec::new();
            for days in [2, 3] {
                let key = BackupId::new(&db, Utc::now() - Duration::days(days), DumpFormat::Plain)
                    .key("pg/");
                put_dump(store, &bucket, &key, "-- older").await;
                keys.push(key);
            }
            keys.sort();
            keys
        };
        for (what, pg_dump, format, why) in &cases {
            let out = Run::backup(
                store,
                &bucket,
                &Pg::url(&db),
                &[
                    "--format",
                    format,
                    "--keep-last",
                    "1",
                    "--pg-dump-path",
                    pg_dump.to_str().unwrap(),
                ],
            )
            .run();
            out.fails(1, &["not a complete", why, "nothing was pruned"]);
            let mut left = store.keys_in(&bucket).await;
            left.sort();
            assert_eq!(left, older, "{store:?} {what}: the bucket changed");
            assert_eq!(store.open_uploads(&bucket).await, 0, "{what}");
        }
    }
}

/// A small database whose dump has COPY data, a SQL-standard function body and large objects
/// (which pg_dump's plain output wraps in its own BEGIN/COMMIT).
fn database_with_large_objects() -> String {
    let db = fixture_db();
    Pg::psql(
        &Pg::url(&db),
        "CREATE FUNCTION public.atomic_add(a int, b int) RETURNS int LANGUAGE sql \
         BEGIN ATOMIC SELECT a + b; SELECT CASE WHEN a > b THEN a ELSE b END; END",
    );
    Pg::psql(
        &Pg::url(&db),
        "SELECT lo_from_bytea(0, decode(repeat('c0ffee', 50000), 'hex')), lo_from_bytea(0, 'small')",
    );
    db
}

fn count(db: &str, sql: &str) -> String {
    Pg::psql(&Pg::url(db), sql)
}

/// A damaged object: what, its bytes, its sha256 metadata, whether its end comes late, and
/// what the error must name.
type Damage<'a> = (&'a str, Vec<u8>, Option<&'a str>, bool, &'a str);

#[tokio::test]
async fn a_restore_is_all_or_nothing_with_large_objects_when_damage_shows_only_at_the_end() {
    let db = database_with_large_objects();
    for store in STORES {
        for format in ["plain", "custom"] {
            let bucket = store.bucket("lo").await;
            let json = Run::backup(store, &bucket, &Pg::url(&db), &["--format", format])
                .run()
                .ok();
            let key = json["key"].as_str().unwrap().to_string();
            let (body, _, _) = store.get(&bucket, &key).await;
            // The intact backup restores, large objects included.
            let target = unique("lo-ok");
            Pg::create_db(&target);
            run(
                store,
                "restore",
                &bucket,
                &["--key", &key, "--target-url", &Pg::url(&target)],
            )
            .ok_plain();
            assert_eq!(Pg::canonical_dump(&target), Pg::canonical_dump(&db));
            assert_eq!(count(&target, LARGE_OBJECTS), "2");

            // Two kinds of damage that show only after the whole dump was decoded: a wrong
            // CRC in the gzip trailer (no sha256 to give it away earlier), and a wrong sha256
            // whose object arrives whole but for its last 8 bytes, which the store holds back
            // for 3 s: time for the client to run every statement it was given (pg_dump's
            // own COMMIT after the large objects included) and, for an archive, to finish.
            let mut bad_crc = body.clone();
            let crc = bad_crc.len() - 8;
            bad_crc[crc] ^= 0xff;
            let zeros = "0".repeat(64);
            let cases: [Damage; 2] = [
                ("bad CRC", bad_crc, None, false, "gzip"),
                (
                    "bad sha256, slow end",
                    body.clone(),
                    Some(&zeros),
                    true,
                    "sha256",
                ),
            ];
            for (what, bytes, sha, slow, needle) in cases {
                let damaged_key =
                    BackupId::new(&db, Utc::now() + Duration::seconds(1), DumpFormat::Plain)
                        .key("pg/")
                        .replace(
                            ".sql.gz",
                            if format == "plain" {
                                ".sql.gz"
                            } else {
                                ".dump.gz"
                            },
                        );
                let mut put = store
                    .client()
                    .put_object()
                    .bucket(&bucket)
                    .key(&damaged_key);
                if let Some(sha) = sha {
                    put = put.metadata("sha256", sha);
                }
                put.body(bytes.into()).send().await.unwrap();
                let proxy = Proxy::start(&store.endpoint());
                if slow {
                    proxy.fail(
                        Op::GetObject,
                        1,
                        Fault::StallBodyEnd(8, std::time::Duration::from_secs(3)),
                    );
                }
                let target = unique("lo-damaged");
                Pg::create_db(&target);
                let target_url = Pg::url(&target);
                let extra = ["--key", &damaged_key, "--target-url", &target_url];
                s3_command(store, &proxy.url(), "restore", &bucket, &extra)
                    .run()
                    .fails(1, &[needle, "nothing was restored"]);
                let label = format!("{store:?} {format} {what}");
                assert_eq!(count(&target, TABLES), "0", "{label}: tables left");
                assert_eq!(
                    count(&target, LARGE_OBJECTS),
                    "0",
                    "{label}: large objects left"
                );
            }
        }
    }
}

/// A proxy in front of `store` whose first GetObject body stops half-way for a minute: the
/// restore has received, and applied, about half of the dump.
fn stalled_download(store: Store) -> Proxy {
    let proxy = Proxy::start(&store.endpoint());
    proxy.fail(
        Op::GetObject,
        1,
        Fault::StallBody(std::time::Duration::from_secs(60)),
    );
    proxy
}

/// Waits until `check` holds, for up to `secs` seconds; false if it never did.
fn wait_until(secs: u64, check: impl Fn() -> bool) -> bool {
    let start = std::time::Instant::now();
    while !check() {
        if start.elapsed().as_secs() >= secs {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    true
}

/// Relations locked by sessions on `db`: tables a restore created and has not committed.
fn locked_relations(db: &str) -> i64 {
    Pg::psql(
        &Pg::admin_url(),
        &format!(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = '{db}' AND l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock'"
        ),
    )
    .parse()
    .unwrap()
}

fn sessions_on(db: &str) -> i64 {
    Pg::psql(
        &Pg::admin_url(),
        &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"),
    )
    .parse()
    .unwrap()
}

#[tokio::test]
async fn sigkill_of_pg_s3_backup_mid_restore_leaves_the_target_unchanged() {
    let db = database_with_large_objects();
    // Enough data that half the object carries whole tables, and more than the 64 KiB a
    // custom archive's end is held back.
    Pg::psql(
        &Pg::url(&db),
        "CREATE TABLE public.bulk AS SELECT g, md5(g::text) || md5((g * 7)::text) AS h FROM generate_series(1, 30000) g",
    );
    for store in STORES {
        for format in ["plain", "custom"] {
            let bucket = store.bucket("kill").await;
            let key = Run::backup(store, &bucket, &Pg::url(&db), &["--format", format]).key();
            // The body stops half-way: the client has received and run half the dump.
            let proxy = stalled_download(store);
            let target = unique("killed");
            Pg::create_db(&target);
            let target_url = Pg::url(&target);
            let extra = [
                "--key",
                &key,
                "--target-url",
                &target_url,
                "--request-timeout",
                "120",
            ];
            let mut child = s3_command(store, &proxy.url(), "restore", &bucket, &extra).spawn();
            // The client has created tables in its open transaction: it holds their locks.
            let connected = wait_until(30, || locked_relations(&target) > 0);
            std::thread::sleep(std::time::Duration::from_secs(1));
            if !connected || child.try_wait().unwrap().is_some() {
                let _ = child.kill();
                let out = Done::from(child.wait_with_output().unwrap());
                panic!(
                    "{store:?} {format}: the restore did not stall in the client: {}",
                    out.stderr
                );
            }
            // SAFETY: signalling our own child process.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGKILL);
            }
            let _ = child.wait();
            // The client reads end of input and exits; its open transaction rolls back.
            assert!(
                wait_until(30, || sessions_on(&target) == 0),
                "{store:?} {format}: the client stayed connected"
            );
            assert_eq!(
                count(&target, TABLES),
                "0",
                "{store:?} {format}: tables left"
            );
            assert_eq!(count(&target, LARGE_OBJECTS), "0", "{store:?} {format}");
        }
    }
}

/// A real plain dump of a small database with `payload` spliced in after its first statement.
fn dump_with(payload: &str) -> Vec<u8> {
    let db = unique("meta-src");
    Pg::create_db(&db);
    Pg::psql(
        &Pg::url(&db),
        "CREATE TABLE t (a int, b text); INSERT INTO t VALUES (1, 'x')",
    );
    let out = std::process::Command::new(Pg::bin("pg_dump"))
        .args(["--no-owner", "-d", &Pg::url(&db)])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let at = text.find("CREATE TABLE").expect("a CREATE TABLE");
    let end = at + text[at..].find(";\n").unwrap() + 2;
    format!("{}{payload}\n{}", &text[..end], &text[end..]).into_bytes()
}

#[tokio::test]
async fn a_restore_runs_no_meta_command_and_restores_nothing_from_a_dump_that_has_one() {
    let dir = std::env::temp_dir().join(unique("meta-markers"));
    std::fs::create_dir_all(&dir).unwrap();
    let marker = |name: &str| dir.join(name).display().to_string();
    let include = dir.join("include.sql");
    std::fs::write(&include, format!("\\! touch {}\n", marker("i"))).unwrap();
    let cases: Vec<(String, String)> = vec![
        ("bang".into(), format!("\\! touch {}", marker("bang"))),
        (
            "o-pipe".into(),
            format!("\\o |touch {}\nSELECT 1;", marker("o-pipe")),
        ),
        (
            "copy-program".into(),
            format!(
                "\\copy (SELECT 1) TO PROGRAM 'touch {}'",
                marker("copy-program")
            ),
        ),
        (
            "setenv".into(),
            format!(
                "\\setenv PAGER 'touch {}'\n\\pset pager always\nSELECT 1;",
                marker("setenv")
            ),
        ),
        ("include".into(), format!("\\i {}", include.display())),
        ("write".into(), format!("SELECT 1\n\\w {}", marker("write"))),
        (
            "g-pipe mid-statement".into(),
            format!("SELECT 1 \\g |touch {}", marker("g-pipe")),
        ),
        (
            "in COPY data".into(),
            format!(
                "COPY public.t (a, b) FROM stdin;\n\\! touch {}\n\\.",
                marker("copy-data")
            ),
        ),
        (
            "set ON_ERROR_STOP off".into(),
            "\\set ON_ERROR_STOP off\nSELECT 1/0;".into(),
        ),
        (
            "connect elsewhere".into(),
            "\\connect -reuse-previous=on \"dbname='postgres' host=127.0.0.1\"".into(),
        ),
    ];
    for (i, (what, payload)) in cases.iter().enumerate() {
        let store = STORES[i % 2];
        let bucket = store.bucket("meta").await;
        let bytes = gzip(&dump_with(payload));
        let key = put_backup(store, &bucket, "meta", &bytes, None).await;
        let target = unique("meta-target");
        Pg::create_db(&target);
        let out = run(
            store,
            "restore",
            &bucket,
            &["--key", &key, "--target-url", &Pg::url(&target)],
        );
        out.fails(1, &["nothing was restored"]);
        let line = out
            .stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap();
        assert!(
            ["meta-command", "--create", "in COPY data"]
                .iter()
                .any(|n| line.contains(n)),
            "{what}: {line}"
        );
        assert_eq!(count(&target, TABLES), "0", "{what}: the target changed");
        run(store, "verify", &bucket, &["--key", &key])
            .fails(1, &["not a dump pg-s3-backup restores"]);
        let piped = run(store, "restore", &bucket, &["--key", &key, "--output", "-"]);
        assert_eq!(piped.code, 1, "{what}: {}", piped.stderr);
        assert!(
            !piped.stdout.contains(payload.lines().next().unwrap()),
            "{what}"
        );
    }
    // A standard_conforming_strings flip to make a reader end a string where the server does
    // not: no psql reads it, and the server gets the text as one statement it cannot parse.
    let store = Store::S3sFs;
    let bucket = store.bucket("meta").await;
    let trick = format!(
        "SET standard_conforming_strings = off;\nSELECT 'a\\' , '\\! touch {} ' ;",
        marker("std-strings")
    );
    let key = put_backup(store, &bucket, "meta", &gzip(&dump_with(&trick)), None).await;
    let target = unique("meta-target");
    Pg::create_db(&target);
    let out = run(
        store,
        "restore",
        &bucket,
        &["--key", &key, "--target-url", &Pg::url(&target)],
    );
    out.fails(1, &["nothing was restored", "syntax error"]);
    assert_eq!(count(&target, TABLES), "0");
    let made: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| n != "include.sql")
        .collect();
    assert!(
        made.is_empty(),
        "a meta-command ran on the restoring host: {made:?}"
    );
}

#[tokio::test]
async fn names_and_pg_dump_output_issue_no_workflow_command() {
    let db = format!("{}\n::error title=injected::pwned db", unique("names"));
    Pg::create_db(&db);
    let url = Pg::url(&db);
    for table in [
        "x\n::error title=injected::pwned",
        "y\r::warning::pwned",
        "z ##[error]pwned",
        "w\u{2028}::error::pwned",
    ] {
        Pg::psql(
            &url,
            &format!(
                "CREATE TABLE \"{}\" (a int); INSERT INTO \"{}\" VALUES (1)",
                table, table
            ),
        );
    }
    let store = Store::Moto;
    let bucket = store.bucket("names").await;
    let summary = std::env::temp_dir().join(unique("summary"));
    let out = Run::backup(store, &bucket, &url, &["--pg-dump-arg=--verbose"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", summary.to_str().unwrap())
        .run();
    out.ok();
    // pg_dump's verbose lines name the tables: they were forwarded, made inert.
    assert!(out.stderr.contains("pwned"), "{}", out.stderr);
    assert_only_our_commands("backup stderr", &out.stderr);
    assert_only_our_commands("backup stdout", &out.stdout);
    for (what, run) in [
        ("list", cmd(store, "list", &bucket, &[])),
        ("list --json", cmd(store, "list", &bucket, &["--json"])),
        (
            "prune",
            cmd(store, "prune", &bucket, &["--keep-last", "1", "--dry-run"]),
        ),
    ] {
        let out = run.env("GITHUB_ACTIONS", "true").run();
        assert_eq!(out.code, 0, "{what}: {}", out.stderr);
        assert!(
            out.stdout.contains("pwned"),
            "{what}: the name is shown: {}",
            out.stdout
        );
        assert_only_our_commands(what, &out.stdout);
        assert_only_our_commands(what, &out.stderr);
    }
    // The summary keeps every name inside a code span, and every table row two cells wide.
    let text = std::fs::read_to_string(&summary).unwrap();
    for line in text.lines().filter(|l| l.starts_with('|')) {
        let cells = line.replace("\\|", "").matches('|').count();
        assert_eq!(cells, 3, "a name split a table row: {line}");
    }
    assert!(!text.contains("\n::"), "{text}");
}

#[tokio::test]
async fn a_job_summary_shows_markdown_and_html_in_names_as_text() {
    let db = format!("{} `|<img src=x onerror=alert(1)>*b*", unique("md"));
    Pg::create_db(&db);
    let store = Store::Moto;
    let bucket = store.bucket("md").await;
    let summary = std::env::temp_dir().join(unique("summary"));
    Run::backup(store, &bucket, &Pg::url(&db), &[])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", summary.to_str().unwrap())
        .run()
        .ok();
    let text = std::fs::read_to_string(&summary).unwrap();
    let heading = text.lines().next().unwrap();
    // The name sits in a code span fenced by more backticks than it holds.
    assert!(heading.contains(&format!("`` {db} ``")), "{heading}");
    for line in text.lines().filter(|l| l.starts_with('|')) {
        assert_eq!(line.replace("\\|", "").matches('|').count(), 3, "{line}");
    }
}

#[test]
fn a_password_that_breaks_the_url_is_masked_and_never_printed() {
    for url in [
        "postgres://u:Zq9w/X7kq?rT@127.0.0.1:1/db",
        "postgres://u:Zq9w?X7kq/rT@127.0.0.1:1/db",
        "postgres://u:Zq9w/X7kq#rT@[::1/db",
    ] {
        let out = Run::new(&[
            "backup",
            "--database-url",
            url,
            "--bucket",
            "some-bucket",
            "--region",
            "us-east-1",
        ])
        .env("GITHUB_ACTIONS", "true")
        .run();
        assert_eq!(out.code, 2, "{url}: {}", out.stderr);
        let password = url
            .trim_start_matches("postgres://u:")
            .rsplit_once('@')
            .unwrap()
            .0;
        let masks: Vec<&str> = out
            .stderr
            .lines()
            .take_while(|l| l.starts_with("::add-mask::"))
            .collect();
        assert!(
            masks.contains(&format!("::add-mask::{password}").as_str()),
            "{url}: {}",
            out.stderr
        );
        for line in out
            .stderr
            .lines()
            .skip(masks.len())
            .chain(out.stdout.lines())
        {
            for piece in ["Zq9w", "X7kq", password] {
                assert!(!line.contains(piece), "{url}: {line}");
            }
        }
    }
}

/// Differential, against the real server: whatever the script reader lets through, applied
/// statement by statement to a database and then abandoned (no COMMIT, as when a check fails
/// or this process is killed), leaves nothing behind. The inputs are pg_dump's header and
/// trailer around random sequences of pieces that move a lexer (quotes of every kind,
/// comments, dollar quotes, continuations, COPY, BEGIN ATOMIC, a function named `begin`, NUL,
/// vertical tab, `standard_conforming_strings` flips) and of ways to end a transaction.
#[test]
fn nothing_the_script_reader_lets_through_can_commit_early() {
    use pg_s3_backup::source::conninfo::ConnInfo;
    use pg_s3_backup::sql_script::Script;
    use pg_s3_backup::target::Target;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let db = unique("differential");
    Pg::create_db(&db);
    Pg::psql(&Pg::url(&db), "CREATE TABLE t (a text)");
    let conn = ConnInfo::parse(Some(&Pg::url(&db))).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pieces: Vec<String> = [
        "'",
        "E'",
        "U&'",
        "B'",
        "\\",
        "$$",
        "$a$",
        "--",
        "/*",
        "*/",
        "\"",
        ";",
        "\n",
        "\r",
        " ",
        "\u{b}",
        "\0",
        "x",
        "1",
        "e",
        "(",
        ")",
        "''",
        "'a\\' , '",
        "COPY t (a) FROM stdin;\n",
        "\\.\n",
        "BEGIN",
        "BEGIN;\n",
        "COMMIT;\n",
        "END",
        "END;\n",
        "CASE",
        "ROLLBACK;\n",
        "COMMIT AND CHAIN;\n",
        "SAVEPOINT s;\n",
        "RELEASE s;\n",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC ",
        "CREATE FUNCTION begin() RETURNS int LANGUAGE sql AS $$SELECT 1$$; ",
        "SELECT 1 AS end;\n",
        "SET standard_conforming_strings = off;\n",
        "SET standard_conforming_strings = on;\n",
        "INSERT INTO t VALUES ('x');\n",
        "\\restrict k\n",
        "\u{e9}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let strategy =
        proptest::collection::vec(prop::sample::select(pieces), 1..16).prop_map(|v| v.concat());
    let header = "--\n-- PostgreSQL database dump\n--\n\n";
    let trailer = "\n--\n-- PostgreSQL database dump complete\n--\n\n";
    let applied = std::cell::Cell::new(0u32);
    let check = |body: &str| -> Option<String> {
        let input = format!("{header}{body}\n;\n{trailer}");
        let mut script = Script::new();
        let mut events = Vec::new();
        if script.push(input.as_bytes(), &mut events).is_err()
            || script.finish(&mut events).is_err()
        {
            return None;
        }
        runtime.block_on(async {
            let mut target = Target::begin(&conn).await.unwrap();
            for event in events {
                if target.apply(event).await.is_err() {
                    break;
                }
            }
            applied.set(applied.get() + 1);
            // Abandoned: dropped without COMMIT.
        });
        let left = Pg::psql(&Pg::url(&db), "SELECT count(*) FROM t");
        (left != "0").then(|| {
            Pg::psql(&Pg::url(&db), "TRUNCATE t");
            format!("{left} rows were committed by an abandoned restore of:\n{input:?}")
        })
    };
    // Known ways to smuggle a COMMIT past a reader.
    for body in [
        "INSERT INTO t VALUES ('x');\nCREATE FUNCTION begin() RETURNS int LANGUAGE sql AS $$SELECT 1$$; COMMIT; SELECT 1 AS end;\n",
        "INSERT INTO t VALUES ('x');\nSELECT 1 \0 E'\n; COMMIT;\n';",
        "INSERT INTO t VALUES ('x');\n\u{b}COMMIT;",
        "SET standard_conforming_strings = off;\nINSERT INTO t VALUES ('x');\nSELECT 'a\\' , '; COMMIT; ' ;",
        "INSERT INTO t VALUES ('x');\nSELECT 'x'\n'; COMMIT; ';",
        "INSERT INTO t VALUES ('x');\n/* /* */ ; COMMIT; */ SELECT 1;",
    ] {
        if let Some(failure) = check(body) {
            panic!("{failure}");
        }
    }
    let mut runner = TestRunner::new(Config {
        cases: 1500,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |body| match check(&body) {
        Some(failure) => Err(proptest::test_runner::TestCaseError::fail(failure)),
        None => Ok(()),
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!("{} inputs were applied", applied.get());
    assert!(
        applied.get() > 50,
        "only {} inputs were applied",
        applied.get()
    );
}

#[tokio::test]
async fn what_pg_dump_writes_restores_in_every_dump_style() {
    let db = unique("zoo");
    Pg::create_db(&db);
    Pg::psql_stdin(&Pg::url(&db), include_str!("fixtures/zoo.sql").as_bytes());
    let store = Store::S3sFs;
    let bucket = store.bucket("zoo").await;
    for style in [
        &[][..],
        &["--pg-dump-arg=--inserts"],
        &[
            "--pg-dump-arg=--column-inserts",
            "--pg-dump-arg=--rows-per-insert=2",
        ],
        &["--pg-dump-arg=--disable-dollar-quoting"],
        &["--pg-dump-arg=--quote-all-identifiers"],
        &["--pg-dump-arg=--clean", "--pg-dump-arg=--if-exists"],
        &["--format", "custom"],
    ] {
        let json = Run::backup(store, &bucket, &Pg::url(&db), style).run().ok();
        let key = json["key"].as_str().unwrap();
        run(store, "verify", &bucket, &["--key", key]).ok_plain();
        let target = unique("zoo-restored");
        Pg::create_db(&target);
        run(
            store,
            "restore",
            &bucket,
            &["--key", key, "--target-url", &Pg::url(&target)],
        )
        .ok_plain();
        assert_eq!(
            Pg::canonical_dump(&target),
            Pg::canonical_dump(&db),
            "{style:?}: the restore differs"
        );
    }
}

#[tokio::test]
async fn sigint_and_sigterm_stop_a_restore_and_roll_it_back() {
    let db = database_with_large_objects();
    let store = Store::Moto;
    let bucket = store.bucket("sig").await;
    let key = Run::backup(store, &bucket, &Pg::url(&db), &[]).key();
    for (signal, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let proxy = stalled_download(store);
        let target = unique("signalled");
        Pg::create_db(&target);
        let target_url = Pg::url(&target);
        let extra = ["--key", &key, "--target-url", &target_url];
        let child = s3_command(store, &proxy.url(), "restore", &bucket, &extra).spawn();
        assert!(
            wait_until(30, || locked_relations(&target) > 0),
            "the restore did not start"
        );
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
        let started = std::time::Instant::now();
        let out = Done::from(child.wait_with_output().unwrap());
        assert!(
            started.elapsed().as_secs_f64() < 5.0,
            "the signal was not acted on within 5 s: {:?}",
            started.elapsed()
        );
        out.fails(code, &["interrupted by", "rolled back"]);
        assert!(wait_until(30, || sessions_on(&target) == 0));
        assert_eq!(count(&target, TABLES), "0", "signal {signal}: tables left");
    }
}

#[tokio::test]
async fn verify_reads_a_custom_archive_as_a_restore_would() {
    let db = fixture_db();
    let store = Store::S3sFs;
    let bucket = store.bucket("verify").await;
    let key = Run::backup(store, &bucket, &Pg::url(&db), &["--format", "custom"]).key();
    run(store, "verify", &bucket, &["--key", &key]).ok_plain();
    let (body, _, _) = store.get(&bucket, &key).await;
    let archive = crate::support::gunzip(&body);
    let put = |bytes: Vec<u8>| {
        let bucket = bucket.clone();
        async move {
            let key = BackupId::new("cut", Utc::now(), DumpFormat::Custom).key("pg/");
            let body = gzip(&bytes);
            store.put_hashed(&bucket, &key, body).await;
            key
        }
    };
    // An archive cut in half: its table of contents reads, its data does not.
    let cut = put(archive[..archive.len() / 2].to_vec()).await;
    run(store, "verify", &bucket, &["--key", &cut]).fails(1, &["pg_restore"]);
    // A gzip object with bytes after its member.
    let mut trailing = body.clone();
    trailing.extend_from_slice(b"twelve bytes");
    let key2 = BackupId::new("tail", Utc::now(), DumpFormat::Custom).key("pg/");
    store.put(&bucket, &key2, trailing).await;
    run(store, "verify", &bucket, &["--key", &key2]).fails(1, &["data after the end"]);
}

#[tokio::test]
async fn a_role_without_superuser_rights_restores_a_backup_whose_objects_other_roles_owned() {
    let db = fixture_db();
    let store = Store::Moto;
    let bucket = store.bucket("owner").await;
    let role = unique("restorer").replace('-', "_");
    Pg::psql(
        &Pg::admin_url(),
        &format!("CREATE ROLE {role} LOGIN PASSWORD 'restorer-password-1'"),
    );
    for format in ["plain", "custom"] {
        let key = Run::backup(store, &bucket, &Pg::url(&db), &["--format", format]).key();
        let target = unique("owned");
        Pg::psql(
            &Pg::admin_url(),
            &format!("CREATE DATABASE \"{target}\" OWNER {role}"),
        );
        let admin = Pg::admin_url();
        let (base, _) = admin.rsplit_once('/').unwrap();
        let host = base.rsplit_once('@').unwrap().1;
        let url = format!("postgres://{role}:restorer-password-1@{host}/{target}");
        let out = run(
            store,
            "restore",
            &bucket,
            &["--key", &key, "--target-url", &url],
        );
        assert_eq!(out.code, 0, "{format}: {}", out.stderr);
        assert!(!out.stderr.contains("warning"), "{format}: {}", out.stderr);
        assert_eq!(
            Pg::canonical_dump(&target),
            Pg::canonical_dump(&db),
            "{format}"
        );
        // The superuser who owns the source is warned about, where it restores.
        let target = unique("owned");
        Pg::create_db(&target);
        let out = run(
            store,
            "restore",
            &bucket,
            &["--key", &key, "--target-url", &Pg::url(&target)],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(out.stderr.contains("can run programs"), "{}", out.stderr);
    }
}

/// A signal that comes once the restore's COMMIT is sent (a deferred trigger makes it take 8 s)
/// cannot roll anything back: the restore does not say it did. It exits 143 within 5 s saying
/// the COMMIT was sent and not answered, and the data then does appear in the target.
#[tokio::test]
async fn a_signal_during_the_restores_commit_is_not_reported_as_a_rollback() {
    let store = Store::S3sFs;
    let bucket = store.bucket("commitsig").await;
    let source = unique("slowcommit");
    Pg::create_db(&source);
    let dump = crate::support::fake_pg_dump(
        "cat <<'EOF'\n\
         CREATE TABLE public.t (x integer);\n\
         CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN PERFORM pg_sleep(8); RETURN NULL; END$$;\n\
         CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON public.t DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.slow();\n\
         INSERT INTO public.t VALUES (1);\n\
         EOF",
    );
    let key = Run::backup(
        store,
        &bucket,
        &Pg::url(&source),
        &["--pg-dump-path", dump.to_str().unwrap()],
    )
    .key();
    let target = unique("commitsig-target");
    Pg::create_db(&target);
    let target_url = Pg::url(&target);
    let child = s3_command(
        store,
        &store.endpoint(),
        "restore",
        &bucket,
        &["--key", &key, "--target-url", &target_url],
    )
    .spawn();
    let committing = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{target}' AND query = 'COMMIT' AND state = 'active'"
    );
    assert!(
        wait_until(30, || Pg::psql(&Pg::admin_url(), &committing) == "1"),
        "the COMMIT was never sent"
    );
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let started = std::time::Instant::now();
    let out = Done::from(child.wait_with_output().unwrap());
    assert!(
        started.elapsed().as_secs_f64() < 5.5,
        "took {:?}",
        started.elapsed()
    );
    let err = out.fails(
        143,
        &[
            "interrupted by",
            "the restore's COMMIT was sent and not answered",
        ],
    );
    assert!(!err.contains("rolled back"), "{err}");
    assert!(!err.contains("nothing was restored"), "{err}");
    assert!(
        wait_until(30, || count(
            &target,
            "SELECT count(*) FROM pg_class WHERE relname = 't'"
        ) == "1"
            && count(&target, "SELECT count(*) FROM public.t") == "1"),
        "the COMMIT did not take effect"
    );
}
