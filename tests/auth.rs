//! Credentials through GitHub OIDC web identity against moto with IAM enforced: the assumed
//! role authorizes the S3 requests, credentials refresh during a long dump, and each failure
//! (no id-token permission, wrong audience, trust policy mismatch) says what to fix. No secret
//! value may appear in any output except in the `::add-mask::` lines that hide it.

use crate::support::github::{jwt, FakeGitHub, SUB};
use crate::support::{aws, unique, Done, Pg, Run, Store};

const ACCOUNT: &str = "123456789012";

/// A bucket and a role whose trust policy allows `trusted_sub` from GitHub's issuer, and whose
/// only permissions are the object actions a backup needs under `bucket/allowed/`.
pub fn role_for(bucket: &str, trusted_sub: &str) -> String {
    let name = unique("backup-role");
    let trust = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/admin")},
            "Action": "sts:AssumeRole"
        }, {
            "Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com")},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"},
                "StringLike": {"token.actions.githubusercontent.com:sub": trusted_sub}
            }
        }]
    });
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:DeleteObject"],
            "Resource": format!("arn:aws:s3:::{bucket}/allowed/*")
        }, {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": format!("arn:aws:s3:::{bucket}")
        }]
    });
    aws(
        Store::MotoIam,
        &[
            "iam",
            "create-role",
            "--role-name",
            &name,
            "--assume-role-policy-document",
            &trust.to_string(),
        ],
    );
    aws(
        Store::MotoIam,
        &[
            "iam",
            "put-role-policy",
            "--role-name",
            &name,
            "--policy-name",
            "backup",
            "--policy-document",
            &policy.to_string(),
        ],
    );
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

/// A backup through OIDC: no static keys in the environment at all.
fn oidc_backup(fake: &FakeGitHub, bucket: &str, role: &str, db: &str, extra: &[&str]) -> Run {
    let endpoint = Store::MotoIam.endpoint();
    let url = Pg::url(db);
    let mut args = vec![
        "backup",
        "--database-url",
        &url,
        "--bucket",
        bucket,
        "--region",
        "us-east-1",
        "--endpoint-url",
        &endpoint,
        "--force-path-style",
        "--role-to-assume",
        role,
        "--json",
    ];
    args.extend_from_slice(extra);
    let mut run = Run::new(&args).env("AWS_ENDPOINT_URL_STS", &endpoint);
    for (k, v) in fake.job_env() {
        run = run.env(k, &v);
    }
    run
}

/// Secrets may appear only inside `::add-mask::` lines, and those come before anything else.
#[track_caller]
fn assert_no_secrets(out: &Done, fake: &FakeGitHub) {
    let mut secrets = fake.issued();
    secrets.push(fake.request_token.clone());
    for secret in &secrets {
        assert!(
            !out.stdout.contains(secret.as_str()),
            "secret in stdout: {}",
            out.stdout
        );
        for line in out.stderr.lines().filter(|l| l.contains(secret.as_str())) {
            assert_eq!(
                line,
                format!("::add-mask::{secret}"),
                "secret outside a mask line"
            );
        }
    }
    // Secrets known at start are masked before any other output; ID tokens fetched later are
    // masked the moment they arrive, and appear nowhere else (checked above).
    let lines: Vec<&str> = out.stderr.lines().collect();
    let first_other = lines
        .iter()
        .position(|l| !l.starts_with("::add-mask::"))
        .unwrap_or(lines.len());
    for known in [fake.request_token.as_str(), "pgs3-test-password"] {
        let mask = format!("::add-mask::{known}");
        assert!(
            lines[..first_other].contains(&mask.as_str()),
            "{known} not masked first:\n{}",
            out.stderr
        );
    }
}

fn json_line(out: &Done) -> serde_json::Value {
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("a JSON line");
    serde_json::from_str(line).unwrap()
}

#[tokio::test]
async fn oidc_backup_is_authorized_by_the_assumed_role_only() {
    let db = unique("oidc");
    Pg::create_db(&db);
    let store = Store::MotoIam;
    let bucket = store.bucket("oidc").await;
    let role = role_for(&bucket, "repo:octo-org/octo-repo:*");
    let fake = FakeGitHub::start("sts.amazonaws.com", 0);

    let out = oidc_backup(&fake, &bucket, &role, &db, &["--prefix", "allowed"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let key = json_line(&out)["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("allowed/"));
    assert_eq!(store.keys_in(&bucket).await, vec![key]);
    assert!(
        out.stderr.contains(&format!(
            "assumed role {role} (session pg-s3-backup-octo-org-octo-repo-4242)"
        )),
        "{}",
        out.stderr
    );
    assert!(!fake.issued().is_empty());
    assert_no_secrets(&out, &fake);

    // The same role may not write outside its prefix: the request really used the role.
    let out = oidc_backup(&fake, &bucket, &role, &db, &["--prefix", "denied"]).run();
    out.fails(1, &["AccessDenied", &format!("s3://{bucket}/denied/")]);
    assert_no_secrets(&out, &fake);
    assert_eq!(store.keys_in(&bucket).await.len(), 1);
}

#[tokio::test]
async fn credentials_are_refreshed_during_a_dump_longer_than_the_session() {
    let db = unique("refresh");
    Pg::create_db(&db);
    let store = Store::MotoIam;
    let bucket = store.bucket("refresh").await;
    let role = role_for(&bucket, SUB);
    let fake = FakeGitHub::start("sts.amazonaws.com", 0);
    // 30 MiB over ~10 s: six 5 MiB parts spread across several 8-second sessions.
    let slow = crate::support::fake_pg_dump(
        "for i in 1 2 3 4 5; do head -c 6291456 /dev/urandom; sleep 2; done",
    );
    let out = oidc_backup(
        &fake,
        &bucket,
        &role,
        &db,
        &[
            "--prefix",
            "allowed",
            "--role-duration-seconds",
            "8",
            "--part-size",
            "5MiB",
            "--compression-level",
            "1",
            "--pg-dump-path",
            slow.to_str().unwrap(),
        ],
    )
    .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let assumed = out.stderr.matches("assumed role").count();
    assert!(
        assumed >= 2,
        "expected a refresh, saw {assumed} AssumeRoleWithWebIdentity calls:\n{}",
        out.stderr
    );
    assert!(
        fake.issued().len() >= 2,
        "each refresh fetches a fresh ID token"
    );
    let json = json_line(&out);
    let framing = crate::support::DUMP_HEADER.len() + crate::support::DUMP_TRAILER.len();
    assert_eq!(json["raw_size"], 5 * 6_291_456u64 + framing as u64);
    assert_eq!(store.open_uploads(&bucket).await, 0);
    assert_no_secrets(&out, &fake);
}

#[tokio::test]
async fn token_endpoint_failures_are_retried() {
    let db = unique("retry");
    Pg::create_db(&db);
    let bucket = Store::MotoIam.bucket("retry").await;
    let role = role_for(&bucket, SUB);
    let fake = FakeGitHub::start("sts.amazonaws.com", 2);
    let out = oidc_backup(&fake, &bucket, &role, &db, &["--prefix", "allowed"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(fake.requests(), 3, "two 500s, then success");
    assert_no_secrets(&out, &fake);
}

#[tokio::test]
async fn missing_permission_wrong_audience_and_untrusted_sub_say_what_to_fix() {
    let db = unique("authfail");
    Pg::create_db(&db);
    let bucket = Store::MotoIam.bucket("authfail").await;
    let role = role_for(&bucket, "repo:other-org/other-repo:*");

    // In Actions without `permissions: id-token: write` the runner sets no token variables.
    let out = Run::new(&[
        "backup",
        "--database-url",
        &Pg::url(&db),
        "--bucket",
        &bucket,
        "--role-to-assume",
        &role,
    ])
    .env("GITHUB_ACTIONS", "true")
    .run();
    out.fails(2, &["permissions: id-token: write"]);

    // The token service refuses an audience it does not serve.
    let fake = FakeGitHub::start("sts.amazonaws.com", 0);
    let out = oidc_backup(
        &fake,
        &bucket,
        &role,
        &db,
        &["--prefix", "allowed", "--audience", "api://wrong"],
    )
    .run();
    out.fails(
        1,
        &[
            "cannot get a GitHub ID token (audience `api://wrong`)",
            "HTTP 400",
            "--audience",
        ],
    );
    assert_no_secrets(&out, &fake);

    // The role trusts another repository: STS says AccessDenied; show what the token carried.
    let out = oidc_backup(&fake, &bucket, &role, &db, &["--prefix", "allowed"]).run();
    out.fails(
        1,
        &[
            &role,
            "AccessDenied",
            &format!("sub `{SUB}`"),
            "aud `sts.amazonaws.com`",
            "trust policy",
        ],
    );
    assert_no_secrets(&out, &fake);
    assert!(Store::MotoIam.keys_in(&bucket).await.is_empty());
}

#[test]
fn malformed_role_arn_and_empty_audience_are_usage_errors() {
    for (args, needle) in [
        (
            vec!["--role-to-assume", "my-role"],
            "role ARN `my-role` is malformed",
        ),
        (
            vec![
                "--role-to-assume",
                "arn:aws:iam::123456789012:role/r",
                "--audience",
                "",
            ],
            "--audience is empty",
        ),
        (
            vec!["--role-duration-seconds", "0"],
            "--role-duration-seconds `0`",
        ),
        (
            vec!["--role-session-name", "no spaces allowed"],
            "--role-session-name `no spaces allowed`",
        ),
    ] {
        let mut all = vec![
            "backup",
            "--bucket",
            "good-bucket",
            "--database-url",
            "postgres://u@127.0.0.1:1/db",
        ];
        all.extend(args);
        let out = Run::new(&all).run();
        out.fails(2, &[needle]);
    }
}

#[tokio::test]
async fn role_chaining_from_static_keys_and_a_web_identity_token_file() {
    let db = unique("chain");
    Pg::create_db(&db);
    let store = Store::MotoIam;
    let bucket = store.bucket("chain").await;
    let role = role_for(&bucket, SUB);
    let (ak, sk) = store.keys();
    let endpoint = store.endpoint();
    let url = Pg::url(&db);
    let base = |prefix: &str| {
        Run::new(&[
            "backup",
            "--database-url",
            &url,
            "--bucket",
            &bucket,
            "--prefix",
            prefix,
            "--region",
            "us-east-1",
            "--endpoint-url",
            &endpoint,
            "--force-path-style",
            "--role-to-assume",
            &role,
            "--json",
        ])
        .env("AWS_ENDPOINT_URL_STS", &endpoint)
    };
    // Static admin keys + a role: sts:AssumeRole, and the role's limits apply, not the admin's.
    let chained = |prefix: &str| {
        base(prefix)
            .env("AWS_ACCESS_KEY_ID", &ak)
            .env("AWS_SECRET_ACCESS_KEY", &sk)
    };
    let out = chained("allowed").run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    chained("denied").run().fails(1, &["AccessDenied"]);
    assert!(!out.stderr.contains(&sk) && !out.stdout.contains(&sk));

    // AWS_WEB_IDENTITY_TOKEN_FILE (EKS, other CI): the file is read at every refresh.
    let token_file = std::env::temp_dir().join(unique("web-identity-token"));
    std::fs::write(&token_file, jwt("sts.amazonaws.com")).unwrap();
    let out = base("allowed")
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap())
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("assumed role {role}")),
        "{}",
        out.stderr
    );
    let other = "repo:someone-else/x:ref:refs/heads/main";
    std::fs::write(
        &token_file,
        crate::support::github::jwt_with("sts.amazonaws.com", other),
    )
    .unwrap();
    base("allowed")
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap())
        .run()
        .fails(1, &["AccessDenied", &format!("sub `{other}`")]);
    assert_eq!(store.keys_in(&bucket).await.len(), 2);
}
