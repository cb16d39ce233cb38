//! `--all-databases`: every database of a server and its globals (roles and tablespaces), each
//! its own backup, on a cluster of the test's own (the shared server's databases come and go
//! with the other tests). The globals are restored into a second, fresh cluster, with
//! `restore` and with psql, and a database after them; one failing pg_dump fails only its
//! database; a user who cannot read password hashes gets `--no-role-passwords`.

use crate::pings::{check_url, Answer, Sink};
use crate::support::cluster::Cluster;
use crate::support::{gunzip, pipe, s3_command, script, Backup, Pg, Store};
use serde_json::Value;

/// A source server: roles (one with a password, one with an awkward name, one group), a
/// tablespace, and databases: `app` (owned by a role, with a grant to another), `Sales Data`, an
/// excluded one, one that accepts no connections and a template.
fn source() -> Cluster {
    let src = Cluster::start();
    let admin = src.url("postgres");
    Pg::psql(
        &admin,
        "CREATE ROLE app_owner LOGIN PASSWORD 'owner-pw-5f2a'; \
         CREATE ROLE \"Report Reader\" NOLOGIN; \
         CREATE ROLE readers NOLOGIN; \
         GRANT readers TO \"Report Reader\"; \
         ALTER ROLE app_owner SET statement_timeout = '5min'",
    );
    for sql in [
        "CREATE DATABASE app OWNER app_owner",
        "CREATE DATABASE \"Sales Data\"",
        "CREATE DATABASE skipme",
        "CREATE DATABASE closed",
        "ALTER DATABASE closed ALLOW_CONNECTIONS false",
        "CREATE DATABASE tmpl IS_TEMPLATE true",
    ] {
        Pg::psql(&admin, sql);
    }
    Pg::psql(
        &src.url("app"),
        "CREATE TABLE orders AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 500) g; \
         GRANT SELECT ON orders TO readers",
    );
    Pg::psql(
        &src.url("Sales Data"),
        "CREATE TABLE \"Q1\" AS SELECT g FROM generate_series(1, 50) g",
    );
    src
}

/// `restore --globals --latest` into `dst`'s `postgres` database.
fn restore_globals(store: Store, bucket: &str, dst: &Cluster) -> crate::support::Run {
    s3_command(
        store,
        &store.endpoint(),
        "restore",
        bucket,
        &[
            "--globals",
            "--latest",
            "--target-url",
            &dst.url("postgres"),
        ],
    )
}

/// The JSON array a run printed, whatever its exit.
fn run_json(out: &crate::support::Done) -> Value {
    serde_json::from_str(out.stdout.trim()).expect("the run's JSON")
}

/// The entry of `json` whose `field` is `value`.
#[track_caller]
fn entry<'a>(json: &'a Value, field: &str, value: &str) -> &'a Value {
    json.as_array()
        .expect("a JSON array of backups")
        .iter()
        .find(|e| e[field] == value)
        .unwrap_or_else(|| panic!("no entry with {field} {value}: {json}"))
}

/// Each entry's database (none for the globals) and status, in the order of the sorted
/// [`entries`]: the databases by name, then the globals.
fn sorted_statuses(json: &Value) -> Vec<(Option<&str>, &str)> {
    let mut got: Vec<(&str, Option<&str>, &str)> = json
        .as_array()
        .expect("a JSON array of backups")
        .iter()
        .map(|e| {
            let field = |f: &str| e[f].as_str();
            (
                field("kind").unwrap(),
                field("database"),
                field("status").unwrap(),
            )
        })
        .collect();
    got.sort();
    got.into_iter().map(|(_, db, st)| (db, st)).collect()
}

fn entries(json: &Value) -> Vec<(String, Option<String>, String)> {
    json.as_array()
        .expect("a JSON array of backups")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["database"].as_str().map(str::to_string),
                e["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every database that accepts connections and is no template, less the excluded one, and the
/// globals: each its own key. The globals restore into a fresh cluster (ours, and psql's), and
/// then a database with a grant to a restored role restores there too.
#[tokio::test]
async fn a_whole_server_is_backed_up_and_restores_into_a_fresh_cluster() {
    let store = Store::Moto;
    let bucket = store.bucket("server").await;
    let src = source();
    let out = Backup::new(store, &bucket, &src.url("postgres"))
        .args(&[
            "--all-databases",
            "--exclude-database",
            "skipme",
            "--verify",
        ])
        .run()
        .run();
    let json = out.ok();
    let mut got = entries(&json);
    got.sort();
    let complete = |kind: &str, db: Option<&str>| {
        (
            kind.to_string(),
            db.map(str::to_string),
            "complete".to_string(),
        )
    };
    assert_eq!(
        got,
        vec![
            complete("database", Some("Sales Data")),
            complete("database", Some("app")),
            complete("database", Some("postgres")),
            complete("globals", None),
        ],
        "{}",
        out.stderr
    );
    for e in json.as_array().unwrap() {
        assert_eq!(e["verified"], true, "{e}");
    }
    let globals = json.as_array().unwrap()[0].clone();
    let globals_key = globals["key"].as_str().unwrap().to_string();
    assert!(
        globals_key.starts_with("pg/@globals/@globals-") && globals_key.ends_with(".sql.gz"),
        "{globals_key}"
    );
    assert!(globals["pg_dump_version"]
        .as_str()
        .unwrap()
        .starts_with("pg_dumpall"));

    // list marks each kind; --globals lists only those.
    let listed = s3_command(store, &store.endpoint(), "list", &bucket, &["--json"])
        .run()
        .ok();
    let mut kinds: Vec<(String, Option<String>)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["database"].as_str().map(str::to_string),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(kinds.len(), 4, "{listed}");
    assert_eq!(kinds[3], ("globals".to_string(), None));
    let only = s3_command(
        store,
        &store.endpoint(),
        "list",
        &bucket,
        &["--json", "--globals"],
    )
    .run()
    .ok();
    assert_eq!(only.as_array().unwrap().len(), 1, "{only}");
    assert_eq!(only[0]["key"], globals_key.as_str());

    // The stored globals: pg_dumpall's script, with the roles and their password hash.
    let (body, meta, _) = store.get(&bucket, &globals_key).await;
    let script = String::from_utf8(gunzip(&body)).unwrap();
    assert!(
        script.starts_with("--\n-- PostgreSQL database cluster dump\n--\n"),
        "{script}"
    );
    for needle in [
        "CREATE ROLE app_owner;",
        "CREATE ROLE \"Report Reader\";",
        "PASSWORD 'SCRAM-SHA-256$",
        "GRANT readers TO \"Report Reader\"",
    ] {
        assert!(script.contains(needle), "{needle} missing: {script}");
    }
    assert!(!script.contains("\\connect"), "globals only: {script}");
    assert_eq!(meta.get("kind").map(String::as_str), Some("globals"));
    assert!(!meta.contains_key("database"), "{meta:?}");

    // Our restore of the globals into a fresh cluster: roles, attributes, membership, settings
    // and the password hash as they were.
    let dst = Cluster::start();
    let roles = "SELECT rolname, rolcanlogin, rolpassword IS NOT NULL FROM pg_authid \
                 WHERE rolname IN ('app_owner', 'Report Reader', 'readers') ORDER BY 1";
    let members = "SELECT r.rolname || ' in ' || g.rolname FROM pg_auth_members m \
                   JOIN pg_roles r ON r.oid = m.member JOIN pg_roles g ON g.oid = m.roleid \
                   WHERE g.rolname = 'readers'";
    let hash = "SELECT rolpassword FROM pg_authid WHERE rolname = 'app_owner'";
    let settings = "SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting s \
                    JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = 'app_owner'";
    let restored = restore_globals(store, &bucket, &dst).run();
    let line = restored.ok_plain();
    assert!(line.contains("restored the globals"), "{line}");
    assert!(
        line.contains("roles existed") && line.contains("postgres"),
        "{line}"
    );
    for q in [roles, members, hash, settings] {
        assert_eq!(
            Pg::psql(&dst.url("postgres"), q),
            Pg::psql(&src.url("postgres"), q),
            "{q}"
        );
    }
    // Again: the roles exist now, and it still succeeds (their CREATE is skipped).
    s3_command(
        store,
        &store.endpoint(),
        "restore",
        &bucket,
        &["--key", &globals_key, "--target-url", &dst.url("postgres")],
    )
    .run()
    .ok_plain();

    // A database whose dump grants to a restored role restores into that cluster.
    Pg::psql(&dst.url("postgres"), "CREATE DATABASE app OWNER app_owner");
    s3_command(
        store,
        &store.endpoint(),
        "restore",
        &bucket,
        &[
            "--database",
            "app",
            "--latest",
            "--target-url",
            &dst.url("app"),
        ],
    )
    .run()
    .ok_plain();
    assert_eq!(
        Pg::canonical_dump_at(&dst.url("app")),
        Pg::canonical_dump_at(&src.url("app"))
    );
    assert_eq!(
        Pg::psql(
            &dst.url("app"),
            "SELECT has_table_privilege('readers', 'orders', 'SELECT')"
        ),
        "t"
    );

    // psql restores the stored globals as well (its one error: the bootstrap role exists).
    let plain = Cluster::start();
    let psql = Pg::bin("psql");
    let out = pipe(
        "sh",
        &[
            "-c",
            &format!(
                "'{}' -X -q -d '{}' 2>&1 >/dev/null; true",
                psql.display(),
                plain.url("postgres")
            ),
        ],
        script.as_bytes(),
    );
    let errors = String::from_utf8_lossy(&out);
    assert_eq!(
        errors.matches("ERROR").count(),
        1,
        "only `role \"postgres\" already exists`: {errors}"
    );
    assert!(
        errors.contains("role \"postgres\" already exists"),
        "{errors}"
    );
    for q in [roles, members, hash] {
        assert_eq!(
            Pg::psql(&plain.url("postgres"), q),
            Pg::psql(&src.url("postgres"), q),
            "{q}"
        );
    }
}

/// A database whose pg_dump fails is aborted and named; the others complete, the run exits 1,
/// retention runs only where a backup completed, the ping reports the failure, and nothing of
/// the failed backup is left in the bucket.
#[tokio::test]
async fn one_failing_database_fails_alone() {
    let store = Store::S3sFs;
    let bucket = store.bucket("server-fail").await;
    let src = Cluster::start();
    for db in ["alpha", "beta", "gamma"] {
        Pg::psql(&src.url("postgres"), &format!("CREATE DATABASE {db}"));
        Pg::psql(
            &src.url(db),
            "CREATE TABLE t AS SELECT g FROM generate_series(1, 20000) g",
        );
    }
    let first = Backup::new(store, &bucket, &src.url("postgres"))
        .args(&["--all-databases"])
        .run()
        .run()
        .ok();
    assert_eq!(first.as_array().unwrap().len(), 5, "{first}");
    let before = store.keys_in(&bucket).await;
    let beta_old: Vec<&String> = before.iter().filter(|k| k.contains("/beta/")).collect();
    assert_eq!(beta_old.len(), 1, "{before:?}");
    // Second one in another second.
    std::thread::sleep(std::time::Duration::from_millis(1100));

    // pg_dump of beta writes part of a dump, then fails.
    let real = Pg::bin("pg_dump");
    let wrapper = script(
        "pg_dump",
        &format!(
            "case \"$*\" in *beta*) '{0}' \"$@\" | head -c 3000; echo 'pg_dump: error: connection lost' >&2; exit 1;; esac\nexec '{0}' \"$@\"",
            real.display()
        ),
    );
    let sink = Sink::start(Answer::Ok);
    let (url, _) = check_url(&sink);
    let out = Backup::new(store, &bucket, &src.url("postgres"))
        .args(&[
            "--all-databases",
            "--pg-dump-path",
            wrapper.to_str().unwrap(),
            "--keep-last",
            "1",
            "--ping-url",
            &url,
        ])
        .run()
        .run();
    let line = out.fails(1, &["1 of 5 backups failed", "database `beta`"]);
    assert!(
        out.stderr.contains("the backup of database `beta` failed"),
        "{}",
        out.stderr
    );
    let json = run_json(&out);
    assert_eq!(
        sorted_statuses(&json),
        vec![
            (Some("alpha"), "complete"),
            (Some("beta"), "failed"),
            (Some("gamma"), "complete"),
            (Some("postgres"), "complete"),
            (None, "complete"),
        ]
    );
    let beta = entry(&json, "database", "beta");
    assert!(
        beta["error"].as_str().unwrap().contains("connection lost"),
        "{beta}"
    );
    assert!(beta.get("key").is_none(), "{beta}");
    // Retention ran for the complete ones (one backup each left), not for beta.
    let after = store.keys_in(&bucket).await;
    for dir in ["alpha", "gamma", "postgres", "@globals"] {
        let n = after
            .iter()
            .filter(|k| k.starts_with(&format!("pg/{dir}/")))
            .count();
        assert_eq!(n, 1, "{dir}: {after:?}");
        assert!(!before.contains(
            after
                .iter()
                .find(|k| k.starts_with(&format!("pg/{dir}/")))
                .unwrap()
        ));
    }
    let beta_now: Vec<&String> = after.iter().filter(|k| k.contains("/beta/")).collect();
    assert_eq!(
        beta_now, beta_old,
        "beta keeps its backup, and gets no new one"
    );
    assert_eq!(store.open_uploads(&bucket).await, 0, "nothing left behind");
    // The ping: start, then fail with the error line.
    let hits = sink.hits();
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert!(hits[1].1.ends_with("/fail"), "{hits:?}");
    assert_eq!(format!("error: {}", hits[1].2), line);
}

/// A backup user that cannot read pg_authid (as on RDS or Cloud SQL) gets the globals without
/// password hashes, and a warning saying so. (Its databases hold no tables it cannot read.)
/// The managed services' own databases it may not connect to are skipped, not failed.
#[tokio::test]
async fn without_password_hashes_the_globals_say_so() {
    let store = Store::Moto;
    let bucket = store.bucket("server-nopw").await;
    let src = Cluster::start();
    Pg::psql(
        &src.url("postgres"),
        "CREATE ROLE backup LOGIN NOSUPERUSER; \
         CREATE ROLE app LOGIN PASSWORD 'app-pw-77'",
    );
    Pg::psql(&src.url("postgres"), "CREATE DATABASE shop");
    let url = src.url("postgres").replace("postgres@", "backup@");
    let out = Backup::new(store, &bucket, &url)
        .args(&["--all-databases"])
        .run()
        .run();
    let json = out.ok();
    assert!(out.stderr.contains("--no-role-passwords"), "{}", out.stderr);
    let globals = entry(&json, "kind", "globals");
    let (body, _, _) = store.get(&bucket, globals["key"].as_str().unwrap()).await;
    let script = String::from_utf8(gunzip(&body)).unwrap();
    assert!(script.contains("CREATE ROLE app;"), "{script}");
    assert!(!script.contains("PASSWORD"), "{script}");
    assert_eq!(json.as_array().unwrap().len(), 3, "{json}");

    // A managed service's own database the user may not connect to is skipped; any other
    // such database fails the run, naming the grant.
    for db in ["rdsadmin", "private"] {
        Pg::psql(&src.url("postgres"), &format!("CREATE DATABASE {db}"));
        Pg::psql(
            &src.url("postgres"),
            &format!("REVOKE CONNECT ON DATABASE {db} FROM PUBLIC"),
        );
    }
    let run = |extra: &[&str]| {
        let mut args = vec!["--all-databases"];
        args.extend_from_slice(extra);
        Backup::new(store, &bucket, &url).args(&args).run().run()
    };
    let out = run(&[]);
    out.fails(1, &["1 of 5 backups failed", "database `private`"]);
    assert!(
        out.stderr.contains("grant the backup user CONNECT"),
        "{}",
        out.stderr
    );
    let out = run(&["--exclude-database", "private"]);
    let json = out.ok();
    let rds = entry(&json, "database", "rdsadmin");
    assert_eq!(rds["status"], "skipped", "{rds}");
}

/// Bad input exits 2 before anything is written: an exclusion without --all-databases, every
/// database excluded, an empty exclusion.
#[tokio::test]
async fn bad_server_flags_change_nothing() {
    let store = Store::Moto;
    let bucket = store.bucket("server-usage").await;
    let src = Cluster::start();
    let run = |extra: &[&str]| {
        Backup::new(store, &bucket, &src.url("postgres"))
            .args(extra)
            .run()
            .run()
    };
    run(&["--exclude-database", "postgres"]).fails(2, &["without --all-databases"]);
    run(&["--all-databases", "--exclude-database", "postgres"])
        .fails(2, &["every database", "excluded"]);
    run(&["--all-databases", "--exclude-database", ""]).fails(2, &["--exclude-database is empty"]);
    assert!(store.keys_in(&bucket).await.is_empty());
    // A restore check of the globals is refused from the flags, before any object is read.
    let scratch = src.url("postgres");
    for which in [
        &["--globals", "--latest"][..],
        &["--key", "pg/@globals/@globals-20260101T000000Z.sql.gz"],
    ] {
        let mut args = which.to_vec();
        args.extend(["--restore-check", &scratch]);
        let out = s3_command(store, &store.endpoint(), "verify", &bucket, &args).run();
        out.fails(2, &["--restore-check with a globals backup"]);
        assert!(out.stdout.is_empty(), "{}", out.stdout);
    }
    // An exclusion naming nothing only warns; ALL_DATABASES takes 1/yes/true as a Kubernetes
    // manifest may write it.
    let out = Backup::new(store, &bucket, &src.url("postgres"))
        .args(&["--exclude-database", "no_such_db"])
        .run()
        .env("ALL_DATABASES", "1")
        .run();
    assert_eq!(out.ok().as_array().map(Vec::len), Some(2));
    assert!(
        out.stderr.contains("`no_such_db` names no database"),
        "{}",
        out.stderr
    );
}

/// A planted globals object with SQL pg_dumpall never writes is refused by verify and restore,
/// and nothing of it runs.
#[tokio::test]
async fn a_planted_globals_object_is_refused() {
    let store = Store::Moto;
    let bucket = store.bucket("server-planted").await;
    let dst = Cluster::start();
    let script = "--\n-- PostgreSQL database cluster dump\n--\n\nSET standard_conforming_strings = on;\nCREATE ROLE planted;\nALTER SYSTEM SET log_min_messages = 'panic';\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n";
    let key = "pg/@globals/@globals-20260101T000000Z.sql.gz";
    store
        .put_hashed(&bucket, key, crate::support::gzip(script.as_bytes()))
        .await;
    s3_command(store, &store.endpoint(), "verify", &bucket, &["--key", key])
        .run()
        .fails(1, &["alter system", "globals"]);
    restore_globals(store, &bucket, &dst)
        .run()
        .fails(1, &["nothing was restored"]);
    assert_eq!(
        Pg::psql(
            &dst.url("postgres"),
            "SELECT count(*) FROM pg_roles WHERE rolname = 'planted'"
        ),
        "0"
    );
}

/// SIGTERM during the second database's dump: that backup is aborted, the next is not started,
/// the complete ones are reported, and the run exits 143 with nothing left behind.
#[tokio::test(flavor = "multi_thread")]
async fn a_signal_stops_the_run_and_reports_what_completed() {
    let store = Store::Moto;
    let bucket = store.bucket("server-signal").await;
    let src = Cluster::start();
    for db in ["alpha", "bravo_slow", "charlie"] {
        Pg::psql(&src.url("postgres"), &format!("CREATE DATABASE {db}"));
    }
    let marker = std::env::temp_dir().join(crate::support::unique("slow-started"));
    let wrapper = script(
        "pg_dump",
        &format!(
            "case \"$*\" in *bravo_slow*) touch '{}'; sleep 30;; esac\nexec '{}' \"$@\"",
            marker.display(),
            Pg::bin("pg_dump").display()
        ),
    );
    let child = Backup::new(store, &bucket, &src.url("postgres"))
        .args(&[
            "--all-databases",
            "--exclude-database",
            "postgres",
            "--pg-dump-path",
            wrapper.to_str().unwrap(),
        ])
        .run()
        .spawn();
    let (out, took) = crate::faults::signal_when(child, libc::SIGTERM, || marker.exists()).await;
    assert!(took < 5.5, "took {took:.1} s");
    out.fails(143, &["2 of 4 backups of the server are complete"]);
    let json = run_json(&out);
    let statuses: Vec<(Option<String>, String)> = entries(&json)
        .into_iter()
        .map(|(_, db, st)| (db, st))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (None, "complete".to_string()),
            (Some("alpha".into()), "complete".to_string()),
            (Some("bravo_slow".into()), "failed".to_string()),
            (Some("charlie".into()), "not run".to_string()),
        ]
    );
    let keys = store.keys_in(&bucket).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys
        .iter()
        .all(|k| !k.contains("bravo") && !k.contains("charlie")));
    assert_eq!(store.open_uploads(&bucket).await, 0);
}

/// A database dropped after the run listed it (before its backup, or during its dump) is
/// skipped with a warning, not a failure; the
/// keep rules then apply to each series on its own, the globals' included, and `check` and
/// `prune` take `--globals`.
#[tokio::test]
async fn a_dropped_database_is_skipped_and_each_series_is_kept_apart() {
    let store = Store::Moto;
    let bucket = store.bucket("server-dropped").await;
    let src = Cluster::start();
    for db in ["alpha", "bravo", "charlie"] {
        Pg::psql(&src.url("postgres"), &format!("CREATE DATABASE {db}"));
    }
    // pg_dump of alpha drops bravo first; charlie is dropped while its pg_dump runs, which
    // then fails.
    let psql = |db: &str| {
        format!(
            "'{}' -X -q -d '{}' -c 'DROP DATABASE {db}' || exit 9",
            Pg::bin("psql").display(),
            src.url("postgres")
        )
    };
    let wrapper = script(
        "pg_dump",
        &format!(
            "case \"$*\" in *alpha*) {};; *charlie*) {}; echo 'pg_dump: error: database gone' >&2; exit 1;; esac\nexec '{}' \"$@\"",
            psql("bravo"),
            psql("charlie"),
            Pg::bin("pg_dump").display()
        ),
    );
    let out = Backup::new(store, &bucket, &src.url("postgres"))
        .args(&[
            "--all-databases",
            "--pg-dump-path",
            wrapper.to_str().unwrap(),
        ])
        .run()
        .run();
    let json = out.ok();
    assert!(
        out.stderr.contains("database `bravo` was dropped"),
        "{}",
        out.stderr
    );
    for gone in ["bravo", "charlie"] {
        let found = entry(&json, "database", gone);
        assert_eq!(found["status"], "skipped", "{found}");
    }
    assert!(
        out.stderr.contains("database `charlie` was dropped"),
        "{}",
        out.stderr
    );

    // A second run, then the keep rules per series: one of each is left, and no series's
    // backups count for another's.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    Backup::new(store, &bucket, &src.url("postgres"))
        .args(&["--all-databases"])
        .run()
        .run()
        .ok();
    let plan = s3_command(
        store,
        &store.endpoint(),
        "prune",
        &bucket,
        &["--keep-last", "1", "--dry-run", "--json"],
    )
    .run()
    .ok();
    let mut per_series: Vec<(String, Option<String>, usize, usize)> = plan["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let d = p["decisions"].as_array().unwrap();
            (
                p["kind"].as_str().unwrap().to_string(),
                p["database"].as_str().map(str::to_string),
                d.iter().filter(|x| x["keep"] == true).count(),
                d.iter().filter(|x| x["keep"] == false).count(),
            )
        })
        .collect();
    per_series.sort();
    assert_eq!(
        per_series,
        vec![
            ("database".into(), Some("alpha".into()), 1, 1),
            ("database".into(), Some("postgres".into()), 1, 1),
            ("globals".into(), None, 1, 1),
        ]
    );
    let only = s3_command(
        store,
        &store.endpoint(),
        "prune",
        &bucket,
        &["--globals", "--keep-last", "1"],
    )
    .run();
    assert!(
        only.ok_plain().contains("globals: keep 1, delete 1"),
        "{}",
        only.stdout
    );
    let left = store.keys_in(&bucket).await;
    assert_eq!(
        left.iter()
            .filter(|k| k.starts_with("pg/@globals/"))
            .count(),
        1
    );
    assert_eq!(
        left.iter().filter(|k| k.starts_with("pg/alpha/")).count(),
        2,
        "prune --globals touches only the globals"
    );
    let fresh = s3_command(
        store,
        &store.endpoint(),
        "check",
        &bucket,
        &["--globals", "--max-age", "1h", "--json"],
    )
    .run()
    .ok();
    assert!(fresh["key"].as_str().unwrap().starts_with("pg/@globals/"));
    s3_command(
        store,
        &store.endpoint(),
        "check",
        &bucket,
        &["--database", "bravo"],
    )
    .run()
    .fails(1, &["no backup of `bravo`"]);
}

/// A database named in bytes that are not UTF-8 (made in a SQL_ASCII database: anyone with
/// CREATEDB can) fails alone and named, rather than stopping the whole run; an invalid database
/// (an interrupted DROP DATABASE leaves one, and nobody can connect to it) is left out, as
/// pg_dumpall leaves it out.
#[tokio::test]
async fn odd_databases_do_not_stop_the_others() {
    let store = Store::Moto;
    let bucket = store.bucket("server-odd").await;
    let src = Cluster::start();
    let admin = src.url("postgres");
    Pg::psql(
        &admin,
        "CREATE DATABASE ascii ENCODING 'SQL_ASCII' TEMPLATE template0 LOCALE 'C'",
    );
    Pg::psql(&admin, "CREATE DATABASE half");
    Pg::psql(
        &admin,
        "UPDATE pg_database SET datconnlimit = -2 WHERE datname = 'half'",
    );
    let psql = Pg::bin("psql");
    pipe(
        "sh",
        &[
            "-c",
            &format!(
                "PGCLIENTENCODING=SQL_ASCII '{}' -X -q -v ON_ERROR_STOP=1 -d '{}'",
                psql.display(),
                src.url("ascii")
            ),
        ],
        b"CREATE DATABASE \"bad\xffname\";\n",
    );
    let out = Backup::new(store, &bucket, &admin)
        .args(&["--all-databases"])
        .run()
        .run();
    out.fails(1, &["1 of 4 backups failed", "database `bad\\xffname`"]);
    let json = run_json(&out);
    assert_eq!(
        sorted_statuses(&json),
        vec![
            (Some("ascii"), "complete"),
            (Some("bad\\xffname"), "failed"),
            (Some("postgres"), "complete"),
            (None, "complete"),
        ],
        "{}",
        out.stderr
    );
}

/// A backup that was stored but whose retention failed is named as failed with its key, and the
/// run's error does not say that nothing was left behind.
#[tokio::test]
async fn a_stored_backup_whose_retention_fails_keeps_its_key() {
    use crate::support::proxy::{Fault, Op, Proxy};
    let store = Store::Moto;
    let bucket = store.bucket("server-prune-fails").await;
    let src = Cluster::start();
    Backup::new(store, &bucket, &src.url("postgres"))
        .args(&["--all-databases"])
        .run()
        .run()
        .ok();
    // Second ones in another second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let proxy = Proxy::start(&store.endpoint());
    proxy.fail(
        Op::DeleteObjects,
        1,
        Fault::Always(Box::new(Fault::Status(403))),
    );
    let out = Backup::new(store, &bucket, &src.url("postgres"))
        .via(&proxy.url())
        .args(&["--all-databases", "--keep-last", "1"])
        .run()
        .run();
    let line = out.fails(1, &["2 of 2 backups failed", "were stored"]);
    assert!(!line.contains("nothing of them"), "{line}");
    let json = run_json(&out);
    let keys = store.keys_in(&bucket).await;
    for e in json.as_array().unwrap() {
        assert_eq!(e["status"], "failed", "{e}");
        assert!(
            e["error"].as_str().unwrap().contains("pruning failed"),
            "{e}"
        );
        let key = e["key"].as_str().expect("the stored backup's key");
        assert!(keys.contains(&key.to_string()), "{key}: {keys:?}");
    }
}

/// A database renamed after the run listed it is not gone: its data lives on under the new
/// name, which the run does not back up, so its backup fails, naming the new name, instead of
/// being skipped in a green run. A managed service's database name is skipped only when the
/// connection to it is refused, not when its dump fails.
#[tokio::test]
async fn a_renamed_database_or_a_failing_managed_name_fails_the_run() {
    let store = Store::Moto;
    let bucket = store.bucket("server-renamed").await;
    let src = Cluster::start();
    for db in ["alpha", "bravo", "rdsadmin"] {
        Pg::psql(&src.url("postgres"), &format!("CREATE DATABASE {db}"));
    }
    // pg_dump of alpha renames bravo; that of rdsadmin (a user's database of that name on a
    // server that is no managed one) fails.
    let wrapper = script(
        "pg_dump",
        &format!(
            "case \"$*\" in *alpha*) '{}' -X -q -d '{}' -c 'ALTER DATABASE bravo RENAME TO bravo_v2' || exit 9;; *rdsadmin*) echo 'pg_dump: error: query failed' >&2; exit 1;; esac\nexec '{}' \"$@\"",
            Pg::bin("psql").display(),
            src.url("postgres"),
            Pg::bin("pg_dump").display()
        ),
    );
    let out = Backup::new(store, &bucket, &src.url("postgres"))
        .args(&[
            "--all-databases",
            "--pg-dump-path",
            wrapper.to_str().unwrap(),
        ])
        .run()
        .run();
    out.fails(
        1,
        &[
            "2 of 5 backups failed",
            "database `bravo`",
            "database `rdsadmin`",
        ],
    );
    assert!(
        out.stderr.contains("renamed to `bravo_v2`"),
        "{}",
        out.stderr
    );
    let json = run_json(&out);
    for db in ["bravo", "rdsadmin"] {
        let found = entry(&json, "database", db);
        assert_eq!(found["status"], "failed", "{found}");
    }
}

/// A globals script that takes SUPERUSER from the role restoring it (pg_dumpall writes
/// `NOSUPERUSER` for a source's `postgres` that had none, as on RDS) is rolled back there and
/// stops the restore: the server keeps its superuser. What came before it (a tablespace, which
/// is created in no transaction) stays applied.
#[tokio::test]
async fn a_globals_restore_never_demotes_the_restoring_role() {
    let store = Store::Moto;
    let bucket = store.bucket("server-demote").await;
    let dst = Cluster::start();
    let fast = dst.directory("fast");
    let script = format!(
        "--\n-- PostgreSQL database cluster dump\n--\n\nSET standard_conforming_strings = on;\nCREATE ROLE before_it;\nCREATE TABLESPACE fast OWNER before_it LOCATION '{}';\nALTER ROLE postgres WITH NOSUPERUSER INHERIT CREATEROLE CREATEDB LOGIN NOREPLICATION NOBYPASSRLS;\nCREATE ROLE after_it;\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n",
        fast.display()
    );
    let key = "pg/@globals/@globals-20260101T000000Z.sql.gz";
    store
        .put_hashed(&bucket, key, crate::support::gzip(script.as_bytes()))
        .await;
    restore_globals(store, &bucket, &dst).run().fails(
        1,
        &["would take SUPERUSER from `postgres`", "3 of 5 statements"],
    );
    assert_eq!(
        Pg::psql(
            &dst.url("postgres"),
            "SELECT string_agg(rolname || ':' || rolsuper, ',' ORDER BY rolname) FROM pg_roles \
             WHERE rolname IN ('postgres', 'before_it', 'after_it')"
        ),
        "before_it:false,postgres:true"
    );
    assert_eq!(
        Pg::psql(
            &dst.url("postgres"),
            "SELECT pg_catalog.pg_get_userbyid(spcowner) FROM pg_tablespace WHERE spcname = 'fast'"
        ),
        "before_it"
    );
}
