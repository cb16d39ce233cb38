//! The part plan against stores stricter than S3, through the proxy's store modes: Cloudflare
//! R2's equal parts and Scaleway's 1,000-part cap (here a cap of 5, so that a test dump reaches
//! it). Backup, retention and restore all run through the strict proxy, on both S3 servers.

use crate::support::proxy::Proxy;
use crate::support::{
    s3_command, script, unique, Backup, Pg, Store, DUMP_HEADER, DUMP_TRAILER, STORES,
};

const MIB: usize = 1 << 20;

fn digest(url: &str) -> String {
    Pg::psql(
        url,
        "SELECT md5(string_agg(g::text || v, ',' ORDER BY g)) FROM t",
    )
}

/// The database on disk (about 40 MB of random hex) decides the plan: at `--max-parts 40`,
/// parts used to double almost every part, which R2 refuses at the end; now every part but the
/// last is 5 MiB, and the backup restores to the same rows through the same proxy.
#[tokio::test(flavor = "multi_thread")]
async fn equal_parts_pass_r2s_rule_for_backup_retention_and_restore() {
    let db = unique("r2");
    Pg::create_db(&db);
    let url = Pg::url(&db);
    Pg::psql(
        &url,
        "CREATE TABLE t AS SELECT g, md5(g::text || random()::text) || md5(random()::text) AS v FROM generate_series(1, 400000) g",
    );
    let want = digest(&url);
    for store in STORES {
        let bucket = store.bucket("r2").await;
        let proxy = Proxy::like_r2(&store.endpoint());
        let backup = |extra: &[&str]| {
            Backup::new(store, &bucket, &url)
                .via(&proxy.url())
                .args(&["--part-size", "5MiB", "--max-parts", "40"])
                .args(extra)
                .run()
                .run()
        };
        let first = backup(&[]).ok();
        let out = backup(&["--keep-last", "1"]);
        let json = out.ok();
        assert!(!out.stderr.contains("warning"), "{store:?}: {}", out.stderr);
        assert_eq!(json["part_size"], 5 * MIB, "{store:?}");
        assert_eq!(
            json["pruned"],
            serde_json::json!([first["key"]]),
            "{store:?}"
        );
        let parts = proxy.part_sizes();
        assert_eq!(parts.len(), 2, "{store:?}: two multipart uploads");
        for sizes in &parts {
            assert!(sizes.len() >= 3, "{store:?}: {sizes:?}");
            assert!(
                sizes[..sizes.len() - 1].iter().all(|&s| s == 5 * MIB),
                "{sizes:?}"
            );
        }
        let key = json["key"].as_str().unwrap();
        assert_eq!(store.keys_in(&bucket).await, vec![key.to_string()]);

        let target = unique("r2-restored");
        Pg::create_db(&target);
        let restored = Pg::url(&target);
        s3_command(
            store,
            &proxy.url(),
            "restore",
            &bucket,
            &["--key", key, "--target-url", &restored],
        )
        .run()
        .ok_plain();
        assert_eq!(digest(&restored), want, "{store:?}");
    }
}

/// A stand-in pg_dump writing `mib` MiB of random bytes inside a plain dump's header and trailer.
fn random_dump(mib: usize) -> std::path::PathBuf {
    use rand::RngCore;
    let mut data = vec![0u8; mib * MIB];
    rand::rng().fill_bytes(&mut data);
    data[..DUMP_HEADER.len()].copy_from_slice(DUMP_HEADER.as_bytes());
    let end = data.len() - DUMP_TRAILER.len();
    data[end..].copy_from_slice(DUMP_TRAILER.as_bytes());
    let path = std::env::temp_dir().join(unique("pgs3-random-dump"));
    std::fs::write(&path, data).unwrap();
    script(
        "pg_dump",
        &format!(
            r#"if [ "$1" = "--version" ]; then echo "pg_dump (PostgreSQL) 99.1"; exit 0; fi
cat '{}'"#,
            path.display()
        ),
    )
}

/// A dump larger than its database's size predicts (30 MiB from a small database, with
/// `--max-parts 5`: 3 planned parts of 5 MiB) grows past the plan with one warning. A store that
/// takes unequal parts (the Scaleway-like cap of 5 parts allows 5, 5, 5, 10, 5) completes it;
/// R2 refuses it, and the upload is aborted with R2's reason and nothing stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_dump_larger_than_planned_grows_with_a_warning() {
    let db = unique("outgrow");
    Pg::create_db(&db);
    let url = Pg::url(&db);
    let fake = random_dump(30);
    for store in STORES {
        let bucket = store.bucket("outgrow").await;
        let run = |proxy: &Proxy| {
            Backup::new(store, &bucket, &url)
                .via(&proxy.url())
                .args(&[
                    "--part-size",
                    "5MiB",
                    "--max-parts",
                    "5",
                    "--compression-level",
                    "1",
                ])
                .args(&["--pg-dump-path", fake.to_str().unwrap()])
                .run()
                .run()
        };
        let scaleway = Proxy::with_max_parts(&store.endpoint(), 5);
        let out = run(&scaleway);
        let json = out.ok();
        assert_eq!(
            out.stderr
                .matches("the dump is larger than its part plan (3 parts of 5MiB")
                .count(),
            1,
            "{store:?}: {}",
            out.stderr
        );
        assert!(out.stderr.contains("--part-size 10MiB"), "{}", out.stderr);
        let sizes = &scaleway.part_sizes()[0];
        assert_eq!(
            &sizes[..4],
            &[5 * MIB, 5 * MIB, 5 * MIB, 10 * MIB],
            "{store:?}"
        );
        assert_eq!(sizes.len(), 5, "{store:?}: {sizes:?}");
        assert_eq!(
            store.keys_in(&bucket).await,
            vec![json["key"].as_str().unwrap().to_string()]
        );

        let r2 = Proxy::like_r2(&store.endpoint());
        let before = store.keys_in(&bucket).await;
        let out = run(&r2);
        out.fails(
            1,
            &[
                "CompleteMultipartUpload",
                "All non-trailing parts must have the same length",
            ],
        );
        assert!(
            out.stderr.contains("larger than its part plan"),
            "{}",
            out.stderr
        );
        assert_eq!(
            store.keys_in(&bucket).await,
            before,
            "{store:?}: nothing stored"
        );
        assert_eq!(store.open_uploads(&bucket).await, 0, "{store:?}");
    }
}

/// Past the planned and the reserved parts, the dump fails before the store's cap does, saying
/// how to fix it; nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_dump_past_every_allowed_part_fails_naming_the_fix() {
    let db = unique("toolarge");
    Pg::create_db(&db);
    let fake = random_dump(60);
    let store = Store::Moto;
    let bucket = store.bucket("toolarge").await;
    let cap = Proxy::with_max_parts(&store.endpoint(), 5);
    let out = Backup::new(store, &bucket, &Pg::url(&db))
        .via(&cap.url())
        .args(&[
            "--part-size",
            "5MiB",
            "--max-parts",
            "5",
            "--compression-level",
            "1",
        ])
        .args(&["--pg-dump-path", fake.to_str().unwrap()])
        .run()
        .run();
    out.fails(
        1,
        &[
            "larger than 5 parts can hold",
            "raise --part-size or --max-parts",
        ],
    );
    assert!(store.keys_in(&bucket).await.is_empty());
    assert_eq!(store.open_uploads(&bucket).await, 0);
}
