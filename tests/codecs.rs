//! zstd and age: backups in every codec restore with our restore and with the standard tools
//! (`age -d`, `zstd -dc`, psql), on both stores; encrypted backups need an identity, and a wrong
//! one restores nothing; damage inside the encryption or the zstd frame is caught; and list,
//! prune, check and `restore --latest` take every codec of a database as one series.

use crate::restore::{fixture_db, run};
use crate::support::{pipe, secret, unique, Pg, Run, Store, STORES};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A key pair from the real `age-keygen`: the identity file and its public key.
pub struct AgeKey {
    pub file: PathBuf,
    pub public: String,
    pub secret: String,
}

pub fn age_keygen() -> AgeKey {
    let dir = std::env::temp_dir().join(unique("pgs3-age"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("key.txt");
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&file)
        .output()
        .expect("age-keygen (Debian package age)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let secret_line = text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .expect("an identity line")
        .to_string();
    secret(&secret_line);
    let public = Command::new("age-keygen")
        .arg("-y")
        .arg(&file)
        .output()
        .unwrap();
    AgeKey {
        file,
        public: String::from_utf8(public.stdout).unwrap().trim().to_string(),
        secret: secret_line,
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every codec, both formats, both stores: the key's ending, Content-Type and metadata; the
/// sha256 is of the stored bytes; the standard tools read the object (`age -d -i key.txt |
/// zstd -dc | psql`, or `gzip -dc`); and our restore and verify give back the same data.
#[tokio::test]
async fn every_codec_restores_with_our_restore_and_with_the_standard_tools_on_both_stores() {
    let db = fixture_db();
    let want = Pg::canonical_dump(&db);
    let key = age_keygen();
    for store in STORES {
        for (format, compression, encrypted) in [
            ("plain", "zstd", false),
            ("plain", "gzip", true),
            ("plain", "zstd", true),
            ("custom", "zstd", true),
        ] {
            let what = format!("{store:?} {format} {compression} encrypted={encrypted}");
            let bucket = store.bucket("codec").await;
            let mut args = vec!["--format", format, "--compression", compression, "--verify"];
            if encrypted {
                args.extend(["--age-recipient", &key.public]);
            }
            let json = Run::backup(store, &bucket, &Pg::url(&db), &args).run().ok();
            let object = json["key"].as_str().unwrap().to_string();
            let ending = format!(
                ".{}.{}{}",
                if format == "plain" { "sql" } else { "dump" },
                if compression == "zstd" { "zst" } else { "gz" },
                if encrypted { ".age" } else { "" }
            );
            assert!(object.ends_with(&ending), "{what}: {object}");
            assert_eq!(json["verified"], true, "{what}");
            let (body, meta, content_type) = store.get(&bucket, &object).await;
            let expected_type = match (encrypted, compression) {
                (true, _) => "application/octet-stream",
                (false, "zstd") => "application/zstd",
                _ => "application/gzip",
            };
            assert_eq!(content_type.as_deref(), Some(expected_type), "{what}");
            let record = store.record(&bucket, &object).await;
            assert_eq!(
                record["sha256"],
                hex::encode(Sha256::digest(&body)),
                "{what}"
            );
            assert_eq!(record["compression"], compression, "{what}");
            assert_eq!(
                record["encryption"],
                if encrypted {
                    serde_json::json!("age")
                } else {
                    serde_json::Value::Null
                },
                "{what}"
            );
            if compression == "zstd" {
                assert_eq!(meta["compression"], "zstd", "{what}");
                assert_eq!(meta["compression-level"], "3", "{what}");
            }
            assert_eq!(
                meta.get("encryption").map(String::as_str),
                encrypted.then_some("age"),
                "{what}"
            );
            // The standard tools, by hand.
            let compressed = if encrypted {
                assert!(body.starts_with(b"age-encryption.org/v1\n"), "{what}");
                pipe("age", &["-d", "-i", path(&key.file)], &body)
            } else {
                body.clone()
            };
            let dump = match compression {
                "zstd" => pipe("zstd", &["-dc"], &compressed),
                _ => pipe("gzip", &["-dc"], &compressed),
            };
            assert_eq!(record["raw_size"], dump.len() as u64, "{what}");
            let by_hand = unique("byhand");
            Pg::create_db(&by_hand);
            if format == "plain" {
                Pg::psql_stdin(&Pg::url(&by_hand), &dump);
            } else {
                let script = pipe(
                    path(&Pg::bin("pg_restore")),
                    &["--no-owner", "--file=-"],
                    &dump,
                );
                Pg::psql_stdin(&Pg::url(&by_hand), &script);
            }
            assert_eq!(Pg::canonical_dump(&by_hand), want, "{what}: by hand");
            // Our restore, choosing the newest backup of the database.
            let target = unique("restored");
            Pg::create_db(&target);
            let mut restore = vec!["--database", &db, "--latest", "--target-url"];
            let target_url = Pg::url(&target);
            restore.push(&target_url);
            if encrypted {
                restore.extend(["--age-identity", path(&key.file)]);
            }
            run(store, "restore", &bucket, &restore).ok_plain();
            assert_eq!(Pg::canonical_dump(&target), want, "{what}: restore");
            // verify, the identity given as a CI secret would give it.
            let verify = crate::support::s3_command(
                store,
                &store.endpoint(),
                "verify",
                &bucket,
                &["--key", &object],
            )
            .env("AGE_IDENTITY", &std::fs::read_to_string(&key.file).unwrap())
            .run();
            let line = verify.ok_plain().to_string();
            assert!(
                line.contains("dump complete") && line.contains("sha256 matches"),
                "{what}: {line}"
            );
            assert_eq!(
                line.contains("age decryption authenticated"),
                encrypted,
                "{what}: {line}"
            );
            assert_eq!(
                line.contains("zstd frame and checksum good"),
                compression == "zstd",
                "{what}: {line}"
            );
        }
    }
}

/// An encrypted backup without an identity is a usage error naming the flag; with the wrong
/// one it fails before anything is restored; `--output -` decrypts too; and `backup --verify`
/// on the host that holds no identity checks what it can and says so.
#[tokio::test]
async fn an_encrypted_backup_needs_its_identity_and_a_wrong_one_restores_nothing() {
    let db = fixture_db();
    let key = age_keygen();
    let other = age_keygen();
    for store in STORES {
        let bucket = store.bucket("age").await;
        let json = Run::backup(
            store,
            &bucket,
            &Pg::url(&db),
            &["--age-recipient", &key.public, "--compression", "zstd"],
        )
        .run()
        .ok();
        let object = json["key"].as_str().unwrap().to_string();
        let target = unique("agetarget");
        Pg::create_db(&target);
        let target_url = Pg::url(&target);
        let base = [
            "--key",
            object.as_str(),
            "--target-url",
            target_url.as_str(),
        ];
        run(store, "restore", &bucket, &base)
            .fails(2, &["encrypted", "--age-identity", "AGE_IDENTITY"]);
        run(store, "verify", &bucket, &["--key", &object]).fails(2, &["--age-identity"]);
        let mut wrong = base.to_vec();
        wrong.extend(["--age-identity", path(&other.file)]);
        run(store, "restore", &bucket, &wrong)
            .fails(1, &["other age keys", "nothing was restored"]);
        assert_eq!(
            Pg::psql(
                &target_url,
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            )
            .trim(),
            "0",
            "{store:?}: a wrong identity restored something"
        );
        // Several identities in one file: the one that matches is used.
        let both = std::env::temp_dir().join(unique("pgs3-age-both"));
        std::fs::write(
            &both,
            format!(
                "{}\n{}",
                std::fs::read_to_string(&other.file).unwrap(),
                std::fs::read_to_string(&key.file).unwrap()
            ),
        )
        .unwrap();
        let out = run(
            store,
            "restore",
            &bucket,
            &[
                "--key",
                &object,
                "--output",
                "-",
                "--age-identity",
                path(&both),
            ],
        );
        assert!(
            out.ok_plain().contains("PostgreSQL database dump complete"),
            "{store:?}"
        );
        // Both ways of giving an identity at once: which one was meant?
        let out = crate::support::s3_command(store, &store.endpoint(), "restore", &bucket, &wrong)
            .env("AGE_IDENTITY", &key.secret)
            .run();
        out.fails(2, &["AGE_IDENTITY", "keep one"]);
        // The backup host's own --verify: no identity, so the stored bytes only.
        let out = Run::backup(
            store,
            &bucket,
            &Pg::url(&db),
            &["--age-recipient", &key.public, "--verify"],
        )
        .run();
        assert_eq!(out.ok()["verified"], true, "{store:?}");
        assert!(
            out.stderr.contains("contents were not checked"),
            "{store:?}: {}",
            out.stderr
        );
    }
}

/// A recipient that is not a public key stops the backup before anything runs, without
/// printing a private key given by mistake; recipients come from flags, a file and
/// AGE_RECIPIENTS, and each of them can decrypt.
#[tokio::test]
async fn recipients_are_checked_before_anything_runs_and_any_one_decrypts() {
    let db = fixture_db();
    let store = Store::Moto;
    let bucket = store.bucket("recip").await;
    let a = age_keygen();
    let b = age_keygen();
    for (args, needles) in [
        (
            vec!["--age-recipient", "age1notakey"],
            vec![
                "--age-recipient",
                "age1notakey",
                "not a valid age public key",
            ],
        ),
        (
            vec!["--age-recipient", a.secret.as_str()],
            vec!["private key", "age-keygen -y"],
        ),
        (
            vec!["--age-recipients-file", "/nonexistent/keys.txt"],
            vec!["--age-recipients-file", "cannot be read"],
        ),
        (
            vec!["--compression", "brotli"],
            vec!["--compression", "brotli", "gzip or zstd"],
        ),
        (
            vec!["--compression", "zstd", "--compression-level", "20"],
            vec!["--compression-level", "from 1 to 19"],
        ),
        (
            vec!["--compression-level", "10"],
            vec!["--compression-level", "from 1 to 9"],
        ),
    ] {
        Run::backup(store, &bucket, &Pg::url(&db), &args)
            .run()
            .fails(2, &needles);
    }
    let file = std::env::temp_dir().join(unique("pgs3-recipients"));
    std::fs::write(&file, format!("# ops team\n{}\n\nnot-a-key\n", a.public)).unwrap();
    Run::backup(
        store,
        &bucket,
        &Pg::url(&db),
        &["--age-recipients-file", path(&file)],
    )
    .run()
    .fails(2, &[":4", "not an age recipient"]);
    assert!(
        store.keys_in(&bucket).await.is_empty(),
        "a refused backup wrote something"
    );
    assert_eq!(store.open_uploads(&bucket).await, 0);

    std::fs::write(&file, format!("# ops team\n{}\n", a.public)).unwrap();
    let from_file = Run::backup(
        store,
        &bucket,
        &Pg::url(&db),
        &["--age-recipients-file", path(&file)],
    )
    .key();
    let from_env = Run::backup(store, &bucket, &Pg::url(&db), &[])
        .env("AGE_RECIPIENTS", &format!("{}, {}\n", a.public, b.public))
        .key();
    for (object, keys) in [(&from_file, vec![&a]), (&from_env, vec![&a, &b])] {
        assert!(object.ends_with(".sql.gz.age"), "{object}");
        for k in keys {
            let out = run(
                store,
                "restore",
                &bucket,
                &[
                    "--key",
                    object,
                    "--output",
                    "-",
                    "--age-identity",
                    path(&k.file),
                ],
            );
            assert!(
                out.ok_plain().contains("PostgreSQL database dump complete"),
                "{object}"
            );
        }
    }
    let out = run(
        store,
        "restore",
        &bucket,
        &[
            "--key",
            &from_file,
            "--output",
            "-",
            "--age-identity",
            path(&b.file),
        ],
    );
    out.fails(1, &["other age keys"]);
}

/// Damage the sha256 cannot see (the metadata rewritten to match): a changed, cut or extended
/// encrypted object and a changed or extended zstd frame are refused by verify and restore.
#[tokio::test]
async fn damage_inside_the_encryption_or_the_zstd_frame_is_caught() {
    let db = fixture_db();
    let key = age_keygen();
    let store = Store::S3sFs;
    let bucket = store.bucket("damage").await;
    let age = Run::backup(
        store,
        &bucket,
        &Pg::url(&db),
        &["--age-recipient", &key.public],
    )
    .key();
    let zst = Run::backup(store, &bucket, &Pg::url(&db), &["--compression", "zstd"]).key();
    let (age_body, _, _) = store.get(&bucket, &age).await;
    let (zst_body, _, _) = store.get(&bucket, &zst).await;
    let flip = |body: &[u8], at: usize| {
        let mut b = body.to_vec();
        b[at] ^= 0x10;
        b
    };
    let extend = |body: &[u8]| {
        let mut b = body.to_vec();
        b.extend_from_slice(&body[body.len() - 40..]);
        b
    };
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "age flipped",
            &age,
            flip(&age_body, age_body.len() / 2),
            "does not authenticate",
        ),
        (
            "age cut",
            &age,
            age_body[..age_body.len() - 100].to_vec(),
            "does not authenticate",
        ),
        (
            "age extended",
            &age,
            extend(&age_body),
            "does not authenticate",
        ),
        ("age header", &age, flip(&age_body, 3), "not an age file"),
        (
            "zstd flipped",
            &zst,
            flip(&zst_body, zst_body.len() / 2),
            "zstd stream",
        ),
        (
            "zstd cut",
            &zst,
            zst_body[..zst_body.len() - 7].to_vec(),
            "zstd stream",
        ),
        (
            "zstd extended",
            &zst,
            extend(&zst_body),
            "data after the end of its zstd stream",
        ),
    ];
    for (what, object, body, needle) in cases {
        let damaged = object.replace("Z.", &format!("Z-{}.", 2 + what.len()));
        store.put_hashed(&bucket, &damaged, body).await;
        let identity = ["--age-identity", path(&key.file)];
        let mut verify = vec!["--key", damaged.as_str()];
        verify.extend(identity);
        run(store, "verify", &bucket, &verify).fails(1, &[needle]);
        let target = unique("dmg");
        Pg::create_db(&target);
        let target_url = Pg::url(&target);
        let mut restore = verify.clone();
        restore.extend(["--target-url", target_url.as_str()]);
        run(store, "restore", &bucket, &restore).fails(1, &[needle, "nothing was restored"]);
        assert_eq!(
            Pg::psql(
                &target_url,
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            )
            .trim(),
            "0",
            "{what}: restored something"
        );
    }
}

/// list, prune, check and `restore --latest` see one series per database, whatever each
/// backup's codec: the newest is the newest of all, and keep rules count them all.
#[tokio::test]
async fn every_codec_of_a_database_is_one_series() {
    let db = fixture_db();
    let key = age_keygen();
    let store = Store::Moto;
    let bucket = store.bucket("series").await;
    let mut made = Vec::new();
    for args in [
        vec!["--compression", "gzip"],
        vec!["--compression", "zstd"],
        vec![
            "--compression",
            "zstd",
            "--age-recipient",
            key.public.as_str(),
        ],
        vec!["--format", "custom", "--age-recipient", key.public.as_str()],
    ] {
        made.push(Run::backup(store, &bucket, &Pg::url(&db), &args).key());
        // One second apart, so that the order is the backups' own.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let list = run(store, "list", &bucket, &["--database", &db, "--json"]).ok();
    let listed: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = made.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first);
    assert_eq!(list[0]["compression"], "gzip");
    assert_eq!(list[0]["encrypted"], true);
    assert_eq!(list[1]["compression"], "zstd");
    let check = run(
        store,
        "check",
        &bucket,
        &["--database", &db, "--max-age", "1h", "--json"],
    )
    .ok();
    assert_eq!(check["key"], made[3]);
    // The newest is encrypted: --latest needs the identity, and restores it.
    run(
        store,
        "restore",
        &bucket,
        &["--database", &db, "--latest", "--output", "-"],
    )
    .fails(2, &[&made[3], "--age-identity"]);
    let out = run(
        store,
        "restore",
        &bucket,
        &[
            "--database",
            &db,
            "--latest",
            "--output",
            "-",
            "--age-identity",
            path(&key.file),
        ],
    );
    assert!(out.stderr.contains(&made[3]), "{}", out.stderr);
    let pruned = run(
        store,
        "prune",
        &bucket,
        &["--database", &db, "--keep-last", "2", "--json"],
    )
    .ok();
    let mut left = store.keys_in(&bucket).await;
    left.sort();
    let mut kept = made[2..].to_vec();
    kept.sort();
    assert_eq!(left, kept, "{pruned}");
}

/// What the review found: a low-order recipient (the age CLI refuses it) would panic an x25519
/// backup after it started, or encrypt to an ssh-ed25519 key under a key anyone can compute; an
/// AGE_RECIPIENTS naming nothing would store the backup unencrypted, and one given with the
/// flags would be dropped; and a planted `.age` object with an oversized header would take a
/// restore's memory or hours of CPU. Each is refused at once.
#[tokio::test]
async fn low_order_recipients_dropped_recipient_lists_and_oversized_headers_are_refused() {
    let db = fixture_db();
    let store = Store::Moto;
    let bucket = store.bucket("hostile").await;
    let key = age_keygen();
    let cases: [(Vec<&str>, Option<&str>, Vec<&str>); 4] = [
        (
            vec![
                "--age-recipient",
                "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq5cu47z",
            ],
            None,
            vec!["low-order"],
        ),
        (
            vec![
                "--age-recipient",
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ],
            None,
            vec!["low-order"],
        ),
        (
            vec![],
            Some(" , "),
            vec!["AGE_RECIPIENTS", "names no recipient"],
        ),
        (
            vec!["--age-recipient", key.public.as_str()],
            Some(key.public.as_str()),
            vec!["AGE_RECIPIENTS", "keep one"],
        ),
    ];
    for (args, env, needles) in cases {
        let mut backup = Run::backup(store, &bucket, &Pg::url(&db), &args);
        if let Some(list) = env {
            backup = backup.env("AGE_RECIPIENTS", list);
        }
        backup.run().fails(2, &needles);
    }
    assert!(
        store.keys_in(&bucket).await.is_empty(),
        "a refused backup wrote something"
    );
    assert_eq!(store.open_uploads(&bucket).await, 0);

    let stanza = format!("-> X25519 {a}\n{a}\n", a = "A".repeat(43));
    let many = format!(
        "age-encryption.org/v1\n{}--- {}\n",
        stanza.repeat(20_000),
        "A".repeat(43)
    );
    let object = "elsewhere/big-header.sql.gz.age";
    store.put(&bucket, object, many.into_bytes()).await;
    run(
        store,
        "verify",
        &bucket,
        &["--key", object, "--age-identity", path(&key.file)],
    )
    .fails(1, &["header is longer than 64 KiB"]);
}

/// SSH public keys as recipients, as age takes them: a backup encrypted to an ssh-ed25519 and an
/// ssh-rsa key from the real ssh-keygen decrypts with either private key, by `age -d -i` and by
/// our restore; a passphrase-protected key is refused as an identity without being quoted.
#[tokio::test]
async fn ssh_keys_encrypt_and_decrypt_like_age_keys() {
    let db = fixture_db();
    let want = Pg::canonical_dump(&db);
    let store = Store::Moto;
    let bucket = store.bucket("ssh").await;
    let dir = std::env::temp_dir().join(unique("pgs3-ssh"));
    std::fs::create_dir_all(&dir).unwrap();
    let keygen = |name: &str, args: &[&str], passphrase: &str| {
        let file = dir.join(name);
        let out = Command::new("ssh-keygen")
            .args(args)
            .args(["-q", "-N", passphrase, "-C", "ops@example", "-f"])
            .arg(&file)
            .output()
            .expect("ssh-keygen (Debian package openssh-client)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let private = std::fs::read_to_string(&file).unwrap();
        for line in private.lines().filter(|l| !l.starts_with("-----")) {
            secret(line);
        }
        let public = std::fs::read_to_string(file.with_extension("pub")).unwrap();
        (file, public.trim().to_string())
    };
    let (ed, ed_pub) = keygen("ed", &["-t", "ed25519"], "");
    let (rsa, rsa_pub) = keygen("rsa", &["-t", "rsa", "-b", "2048"], "");
    let (locked, _) = keygen("locked", &["-t", "ed25519"], "correct horse");
    let object = Run::backup(
        store,
        &bucket,
        &Pg::url(&db),
        &[
            "--compression",
            "zstd",
            "--age-recipient",
            &ed_pub,
            "--age-recipient",
            &rsa_pub,
        ],
    )
    .key();
    assert!(object.ends_with(".sql.zst.age"), "{object}");
    let (body, _, _) = store.get(&bucket, &object).await;
    for key in [&ed, &rsa] {
        let dump = pipe(
            "zstd",
            &["-dc"],
            &pipe("age", &["-d", "-i", path(key)], &body),
        );
        let by_hand = unique("ssh-byhand");
        Pg::create_db(&by_hand);
        Pg::psql_stdin(&Pg::url(&by_hand), &dump);
        assert_eq!(Pg::canonical_dump(&by_hand), want, "{key:?} by hand");
        let target = unique("ssh-restored");
        Pg::create_db(&target);
        run(
            store,
            "restore",
            &bucket,
            &[
                "--key",
                &object,
                "--target-url",
                &Pg::url(&target),
                "--age-identity",
                path(key),
            ],
        )
        .ok_plain();
        assert_eq!(Pg::canonical_dump(&target), want, "{key:?}");
    }
    run(
        store,
        "verify",
        &bucket,
        &["--key", &object, "--age-identity", path(&locked)],
    )
    .fails(2, &["passphrase-protected"]);
}
