//! How `backup` reaches PostgreSQL: TLS modes, URL and key=value forms, PG* and other
//! environment fallbacks, awkward names and passwords, and that the password never shows.

use crate::support::{env, unique, Pg, Run, Store};

/// URL for the TLS-only role `pgs3tls` (pg_hba rejects it without TLS) to database `db`.
fn tls_url(db: &str, query: &str) -> String {
    Pg::url(db).replacen("pgs3:", "pgs3tls:", 1) + query
}

#[tokio::test]
async fn tls_modes_reach_a_tls_only_role() {
    let db = unique("tls");
    Pg::create_db(&db);
    let store = Store::S3sFs;
    let bucket = store.bucket("tls").await;
    let ca = env("PGS3_TEST_PG_CA");
    // The rule is real: without TLS the role is refused.
    Run::backup(store, &bucket, &tls_url(&db, "?sslmode=disable"), &[])
        .run()
        .fails(
            1,
            &["refused", "pg_hba.conf rejects connection", "no encryption"],
        );
    for query in [
        "?sslmode=require",
        &format!("?sslmode=verify-full&sslrootcert={ca}"),
        &format!("?sslmode=verify-ca&sslrootcert={ca}"),
    ] {
        let json = Run::backup(store, &bucket, &tls_url(&db, query), &[])
            .run()
            .ok();
        assert!(json["key"].as_str().unwrap().contains(&db), "{query}");
    }
    // verify-full without a root certificate cannot trust the test CA.
    Run::backup(store, &bucket, &tls_url(&db, "?sslmode=verify-full"), &[])
        .run()
        .fails(1, &["cannot connect to PostgreSQL", "UnknownIssuer"]);
    assert_eq!(store.keys_in(&bucket).await.len(), 3);
}

#[tokio::test]
async fn awkward_database_name_and_password_in_url_and_keyword_forms() {
    let db = format!("{} we:ird @db/%#? ü", unique("name"));
    Pg::create_db(&db);
    let role = unique("role").replace('-', "_");
    let password = "p@ss:w/rd%#? x";
    Pg::psql(
        &Pg::admin_url(),
        &format!("CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'"),
    );
    let port = Pg::admin_url()
        .rsplit_once(':')
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let url = format!(
        "postgresql://{role}:{}@127.0.0.1:{port}/{}",
        enc(password),
        enc(&db)
    );
    let keyword = format!(
        "host=127.0.0.1 port={port} user={role} password='{}' dbname='{}'",
        password.replace('\'', "\\'"),
        db.replace('\'', "\\'")
    );
    let store = Store::Moto;
    let bucket = store.bucket("names").await;
    for conn in [url, keyword] {
        let out = Run::backup(store, &bucket, &conn, &[]).run();
        let json = out.ok();
        let key = json["key"].as_str().unwrap();
        let id = pg_s3_backup::layout::BackupId::parse("pg/", key).expect("key parses back");
        assert_eq!(id.series.database(), Some(db.as_str()));
        assert_eq!(json["database"], db.as_str());
        assert!(
            !out.stderr.contains(password) && !out.stdout.contains(password),
            "password leaked"
        );
        assert!(
            !out.stderr.contains(&enc(password)),
            "encoded password leaked"
        );
    }
    assert_eq!(store.keys_in(&bucket).await.len(), 2);
}

#[tokio::test]
async fn environment_variables_alone_configure_a_backup() {
    let db = unique("envonly");
    Pg::create_db(&db);
    let store = Store::S3sFs;
    let bucket = store.bucket("env").await;
    let (ak, sk) = store.keys();
    let admin = Pg::admin_url();
    let port = admin
        .rsplit_once(':')
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap()
        .to_string();
    // PG* variables instead of a URL, and S3 settings from the environment.
    let out = Run::new(&["backup", "--force-path-style", "--json"])
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", &port)
        .env("PGUSER", "pgs3")
        .env("PGPASSWORD", "pgs3-test-password")
        .env("PGDATABASE", &db)
        .env("S3_BUCKET", &bucket)
        .env("S3_PREFIX", "from-env")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", &store.endpoint())
        .env("AWS_ACCESS_KEY_ID", &ak)
        .env("AWS_SECRET_ACCESS_KEY", &sk)
        .run();
    let json = out.ok();
    assert!(json["key"]
        .as_str()
        .unwrap()
        .starts_with(&format!("from-env/{db}/{db}-")));
    assert!(!out.stderr.contains("pgs3-test-password"));
    // DATABASE_URL works the same way.
    let out = Run::new(&["backup", "--force-path-style", "--json"])
        .env("DATABASE_URL", &Pg::url(&db))
        .env("S3_BUCKET", &bucket)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_S3", &store.endpoint())
        .env("AWS_ACCESS_KEY_ID", &ak)
        .env("AWS_SECRET_ACCESS_KEY", &sk)
        .run();
    assert!(out.ok()["key"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{db}/{db}-")));
    assert_eq!(store.keys_in(&bucket).await.len(), 2);
}

#[tokio::test]
async fn no_aws_credentials_is_one_line_with_the_fix() {
    let db = unique("nocreds");
    Pg::create_db(&db);
    let store = Store::S3sFs;
    let bucket = store.bucket("nocreds").await;
    let endpoint = store.endpoint();
    let out = Run::new(&[
        "backup",
        "--database-url",
        &Pg::url(&db),
        "--bucket",
        &bucket,
        "--endpoint-url",
        &endpoint,
        "--force-path-style",
    ])
    .env("HOME", "/nonexistent")
    .run();
    out.fails(
        1,
        &[
            "no AWS credentials found",
            "AWS_ACCESS_KEY_ID",
            "--role-to-assume",
        ],
    );
    assert!(store.keys_in(&bucket).await.is_empty());
}

/// The tool's own short-query sessions (preflight, the restore's target checks) carry the
/// connect timeout as the server's `statement_timeout`, so a query stuck on the server is
/// cancelled there (SQLSTATE 57014), not only abandoned by the client; the restore's own session
/// (`preflight::connect`) carries none, since its statements may run for hours.
#[tokio::test]
async fn short_query_sessions_get_a_server_side_statement_timeout() {
    use pg_s3_backup::source::{conninfo::ConnInfo, preflight};
    let db = unique("stmt-timeout");
    Pg::create_db(&db);
    let conn = ConnInfo::parse_with_connect_timeout(Some(&Pg::url(&db)), Some("2")).unwrap();
    let (client, connection) = preflight::connect_short(&conn).await.unwrap();
    let driver = tokio::spawn(connection);
    let shown: String = client
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(shown, "2s");
    let started = std::time::Instant::now();
    let err = client
        .execute("SELECT pg_sleep(10)", &[])
        .await
        .unwrap_err();
    assert_eq!(
        err.as_db_error().map(|e| e.code().code()),
        Some("57014"),
        "{err}"
    );
    assert!(started.elapsed().as_secs_f64() < 5.0);
    drop(client);
    let _ = driver.await;

    let (client, connection) = preflight::connect(&conn).await.unwrap();
    let driver = tokio::spawn(connection);
    let shown: String = client
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        shown, "0",
        "the restore's session must have no statement timeout"
    );
    drop(client);
    let _ = driver.await;
}
