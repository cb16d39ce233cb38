//! The image itself, run with podman as actions/runner's `ContainerActionHandler` runs a
//! container action (`docker run --workdir /github/workspace --rm -e NAME ...`, the four
//! `/github/*` volumes, `HOME=/github/home`, `GITHUB_OUTPUT` and `GITHUB_STEP_SUMMARY` under
//! `/github/file_commands/`, `INPUT_*` with hyphens kept, the image's entrypoint and action.yml's
//! `runs.args`), and as a Kubernetes CronJob with an IRSA service account runs it. The image is
//! built by `scripts/container build` (scripts/test runs it) from the Dockerfile with the build
//! arguments that work here: a debootstrap base, Debian's PostgreSQL 15 client, the release
//! binary. The host network stands in for the job network (the bridge does not work here).

use crate::action::{action_yml, parse_outputs};
use crate::support::github::FakeGitHub;
use crate::support::{unique, Done, Pg, Store, STORES};
use chrono::Utc;
use pg_s3_backup::layout::{BackupId, DumpFormat};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The image under test; `scripts/container build` makes it.
fn image() -> String {
    let image = "localhost/pg-s3-backup:test";
    let exists = podman()
        .args(["image", "exists", image])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        exists,
        "{image} is not built: run `bash scripts/container build` (scripts/test does)"
    );
    image.to_string()
}

/// podman with runc: crun refuses this machine's hybrid cgroups (../shared/CONTAINERS.md).
fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.args(["--runtime", "runc"]);
    cmd
}

/// `runs.args` of action.yml (none today: the entrypoint is the whole command).
fn runs_args() -> Vec<String> {
    action_yml()["runs"]["args"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// The runner's directories for one job: `_github_home`, `_github_workflow`,
/// `_runner_file_commands` and the workspace, mounted at `/github/*`.
struct Job {
    home: PathBuf,
    workflow: PathBuf,
    files: PathBuf,
    workspace: PathBuf,
    step: String,
}

impl Job {
    fn new() -> Self {
        let root = std::env::temp_dir().join(unique("runner-temp"));
        let dir = |name: &str| {
            let d = root.join(name);
            std::fs::create_dir_all(&d).unwrap();
            d
        };
        let job = Self {
            home: dir("_github_home"),
            workflow: dir("_github_workflow"),
            files: dir("_runner_file_commands"),
            workspace: dir("workspace"),
            step: unique("step").replace('-', "_"),
        };
        // The runner creates the step's file-command files, empty, before the step starts.
        for file in [job.output_file(), job.summary_file()] {
            std::fs::write(file, "").unwrap();
        }
        job
    }

    fn output_file(&self) -> PathBuf {
        self.files.join(format!("set_output_{}", self.step))
    }

    fn summary_file(&self) -> PathBuf {
        self.files.join(format!("step_summary_{}", self.step))
    }

    /// `docker run` as the runner composes it, for the step `with` inputs and the job's `env`.
    /// Values reach the container only through `-e NAME` and podman's own environment.
    fn command(&self, name: &str, with: &[(&str, &str)], env: &[(&str, String)]) -> Command {
        let mut vars: Vec<(String, String)> = Vec::new();
        for (input, spec) in action_yml()["inputs"].as_object().unwrap() {
            let default = spec.get("default").and_then(|d| d.as_str()).unwrap_or("");
            let value = with
                .iter()
                .find(|(k, _)| k == input)
                .map_or(default, |(_, v)| v);
            vars.push((pg_s3_backup::action::input_var(input), value.to_string()));
        }
        for (k, v) in [
            ("HOME", "/github/home".to_string()),
            ("GITHUB_ACTIONS", "true".to_string()),
            ("CI", "true".to_string()),
            ("GITHUB_WORKSPACE", "/github/workspace".to_string()),
            (
                "GITHUB_OUTPUT",
                format!("/github/file_commands/set_output_{}", self.step),
            ),
            (
                "GITHUB_STEP_SUMMARY",
                format!("/github/file_commands/step_summary_{}", self.step),
            ),
            (
                "GITHUB_ENV",
                format!("/github/file_commands/set_env_{}", self.step),
            ),
            ("RUNNER_TEMP", "/home/runner/work/_temp".to_string()),
        ] {
            vars.push((k.to_string(), v));
        }
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let mut cmd = podman();
        cmd.args([
            "run",
            "--name",
            name,
            "--label",
            "pg-s3-backup-test",
            "--workdir",
            "/github/workspace",
            "--rm",
            "--network",
            "host",
        ]);
        for (k, v) in &vars {
            cmd.arg("-e").arg(k).env(k, v);
        }
        for (host, inside) in [
            (&self.home, "/github/home"),
            (&self.workflow, "/github/workflow"),
            (&self.files, "/github/file_commands"),
            (&self.workspace, "/github/workspace"),
        ] {
            cmd.arg("-v").arg(format!("{}:{inside}", host.display()));
        }
        cmd.arg(image()).args(runs_args());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn run(&self, with: &[(&str, &str)], env: &[(&str, String)]) -> Done {
        let out = self
            .command(&unique("pgs3-step"), with, env)
            .output()
            .expect("podman run");
        out.into()
    }

    fn outputs(&self) -> BTreeMap<String, String> {
        parse_outputs(&std::fs::read_to_string(self.output_file()).unwrap_or_default())
    }

    fn summary(&self) -> String {
        std::fs::read_to_string(self.summary_file()).unwrap_or_default()
    }
}

/// Three older backups of `db` under `prefix`, put directly (bodies are not read by retention).
async fn seed_old(store: Store, bucket: &str, db: &str, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for days in [30, 20, 10] {
        let time = Utc::now() - chrono::Duration::days(days);
        let key = BackupId::new(db, time, DumpFormat::Plain).key(prefix);
        store.put(bucket, &key, b"x").await;
        keys.push(key);
    }
    keys
}

/// The masks come first on stderr, before any other line; stdout holds no workflow command.
pub fn masked_first(out: &Done, secrets: &[&str]) {
    let lines: Vec<&str> = out.stderr.lines().collect();
    let first_other = lines
        .iter()
        .position(|l| !l.starts_with("::add-mask::"))
        .unwrap_or(lines.len());
    for secret in secrets {
        assert!(
            lines[..first_other].contains(&format!("::add-mask::{secret}").as_str()),
            "{secret} not masked first:\n{}",
            out.stderr
        );
    }
    assert!(
        !out.stdout.lines().any(|l| l.trim_start().starts_with("::")),
        "a workflow command on stdout:\n{}",
        out.stdout
    );
}

/// No secret anywhere but in its own mask line.
fn no_secret_outside_masks(job: &Job, out: &Done, secrets: &[String]) {
    let outputs = std::fs::read_to_string(job.output_file()).unwrap_or_default();
    let summary = job.summary();
    for secret in secrets {
        for (what, text) in [
            ("stdout", &out.stdout),
            ("outputs", &outputs),
            ("summary", &summary),
        ] {
            assert!(!text.contains(secret.as_str()), "a secret in {what}");
        }
        for line in out.stderr.lines().filter(|l| l.contains(secret.as_str())) {
            assert_eq!(line, format!("::add-mask::{secret}"));
        }
    }
}

/// Every declared output is written and matches the object; the summary says what happened.
async fn check_outputs(job: &Job, store: Store, bucket: &str, db: &str, prefix: &str) -> String {
    let outputs = job.outputs();
    let mut declared: Vec<String> = action_yml()["outputs"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    declared.sort();
    assert_eq!(outputs.keys().cloned().collect::<Vec<_>>(), declared);
    let key = outputs["key"].clone();
    assert!(key.starts_with(&format!("{prefix}{db}/{db}-")), "{key}");
    assert_eq!(outputs["uri"], format!("s3://{bucket}/{key}"));
    let (body, _, _) = store.get(bucket, &key).await;
    assert_eq!(outputs["size"], body.len().to_string());
    assert_eq!(
        store.record(bucket, &key).await["sha256"],
        outputs["sha256"].as_str()
    );
    let dump = String::from_utf8(crate::support::gunzip(&body)).unwrap();
    assert_eq!(outputs["raw-size"], dump.len().to_string());
    assert!(dump.contains("PostgreSQL database dump complete"));
    assert!(outputs["duration-seconds"].parse::<f64>().unwrap() > 0.0);
    let summary = job.summary();
    for needle in [
        db,
        key.as_str(),
        "compressed from",
        "PostgreSQL 15",
        "pg_dump",
    ] {
        assert!(
            summary.contains(needle),
            "summary lacks `{needle}`:\n{summary}"
        );
    }
    key
}

/// A scheduled backup through `uses: org/pg-s3-backup@v1`, with static keys from secrets: every
/// output, the summary, the masks first, and the keep rule applied (three older backups, keep 2:
/// two deleted, the new one and the newest old one left, a foreign file untouched).
#[tokio::test(flavor = "multi_thread")]
async fn the_image_backs_up_as_the_runner_runs_it_on_both_stores() {
    let db = unique("image");
    Pg::create_db(&db);
    let url = Pg::url(&db);
    Pg::psql(
        &url,
        "CREATE TABLE t AS SELECT g, md5(g::text) AS v FROM generate_series(1, 20000) g",
    );
    for store in STORES {
        let bucket = store.bucket("image").await;
        let prefix = "nightly/";
        let old = seed_old(store, &bucket, &db, prefix).await;
        store.put(&bucket, "nightly/notes.txt", b"keep me").await;
        let (ak, sk) = store.keys();
        let endpoint = store.endpoint();
        let job = Job::new();
        let with = [
            ("database-url", url.as_str()),
            ("bucket", bucket.as_str()),
            ("prefix", prefix),
            ("aws-region", "us-east-1"),
            ("endpoint-url", endpoint.as_str()),
            ("force-path-style", "true"),
            ("keep-last", "2"),
        ];
        let env = [
            ("AWS_ACCESS_KEY_ID", ak.clone()),
            ("AWS_SECRET_ACCESS_KEY", sk.clone()),
        ];
        let out = job.run(&with, &env);
        assert_eq!(
            out.code, 0,
            "{store:?}\nstdout:\n{}\nstderr:\n{}",
            out.stdout, out.stderr
        );
        masked_first(&out, &["pgs3-test-password", &sk]);
        let key = check_outputs(&job, store, &bucket, &db, prefix).await;
        assert_eq!(job.outputs()["pruned-count"], "2", "{store:?}");
        assert!(
            job.summary().contains("Retention | kept 2, deleted 2"),
            "{}",
            job.summary()
        );
        let mut left = store.keys_in(&bucket).await;
        left.sort();
        let mut want = vec![key, old[2].clone(), "nightly/notes.txt".to_string()];
        want.sort();
        assert_eq!(left, want, "{store:?}");
        no_secret_outside_masks(&job, &out, &["pgs3-test-password".into(), sk]);
        // The backup restores to the same rows (on the host, from the object the image wrote).
        let target = unique("image-restored");
        Pg::create_db(&target);
        crate::support::s3_command(
            store,
            &endpoint,
            "restore",
            &bucket,
            &[
                "--key",
                &job.outputs()["key"],
                "--target-url",
                &Pg::url(&target),
            ],
        )
        .run()
        .ok_plain();
        let digest = |u: &str| Pg::psql(u, "SELECT md5(string_agg(g || v, ',' ORDER BY g)) FROM t");
        assert_eq!(digest(&Pg::url(&target)), digest(&url), "{store:?}");
    }
}

/// The image's own zstd and age: a backup made in the container with the `compression` and
/// `age-recipients` inputs is a `.sql.zst.age` object that the host decrypts and restores.
#[tokio::test]
async fn the_image_writes_encrypted_zstd_backups_the_host_restores() {
    let db = unique("image-zstd");
    Pg::create_db(&db);
    let url = Pg::url(&db);
    Pg::psql(
        &url,
        "CREATE TABLE t AS SELECT g, md5(g::text) AS v FROM generate_series(1, 5000) g",
    );
    let store = Store::S3sFs;
    let bucket = store.bucket("image-zstd").await;
    let key = crate::codecs::age_keygen();
    let (ak, sk) = store.keys();
    let endpoint = store.endpoint();
    let job = Job::new();
    let with = [
        ("database-url", url.as_str()),
        ("bucket", bucket.as_str()),
        ("aws-region", "us-east-1"),
        ("endpoint-url", endpoint.as_str()),
        ("force-path-style", "true"),
        ("compression", "zstd"),
        ("age-recipients", key.public.as_str()),
    ];
    let out = job.run(
        &with,
        &[("AWS_ACCESS_KEY_ID", ak), ("AWS_SECRET_ACCESS_KEY", sk)],
    );
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let object = job.outputs()["key"].clone();
    assert!(object.ends_with(".sql.zst.age"), "{object}");
    let target = unique("image-zstd-restored");
    Pg::create_db(&target);
    crate::support::s3_command(
        store,
        &endpoint,
        "restore",
        &bucket,
        &[
            "--key",
            &object,
            "--target-url",
            &Pg::url(&target),
            "--age-identity",
            key.file.to_str().unwrap(),
        ],
    )
    .run()
    .ok_plain();
    let digest = |u: &str| Pg::psql(u, "SELECT md5(string_agg(g || v, ',' ORDER BY g)) FROM t");
    assert_eq!(digest(&Pg::url(&target)), digest(&url));
}

/// GitHub OIDC from inside the container: `ACTIONS_ID_TOKEN_REQUEST_URL`/`_TOKEN` reach it with
/// `-e`, the token is fetched from the (fake) GitHub endpoint and exchanged with moto's STS for
/// the role, which alone may write under `allowed/`.
#[tokio::test(flavor = "multi_thread")]
async fn the_image_assumes_a_role_with_the_jobs_github_oidc_token() {
    let db = unique("image-oidc");
    Pg::create_db(&db);
    let store = Store::MotoIam;
    let bucket = store.bucket("image-oidc").await;
    let role = crate::auth::role_for(&bucket, crate::support::github::SUB);
    let fake = FakeGitHub::start("sts.amazonaws.com", 0);
    let endpoint = store.endpoint();
    let url = Pg::url(&db);
    let job = Job::new();
    let with = [
        ("database-url", url.as_str()),
        ("bucket", bucket.as_str()),
        ("prefix", "allowed/"),
        ("aws-region", "us-east-1"),
        ("role-to-assume", role.as_str()),
        ("endpoint-url", endpoint.as_str()),
        ("force-path-style", "true"),
    ];
    let mut env: Vec<(&str, String)> = fake
        .job_env()
        .into_iter()
        .filter(|(k, _)| *k != "GITHUB_ACTIONS")
        .collect();
    env.push(("AWS_ENDPOINT_URL_STS", endpoint.clone()));
    let out = job.run(&with, &env);
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert!(
        out.stderr.contains(&format!("assumed role {role}")),
        "{}",
        out.stderr
    );
    assert!(fake.requests() >= 1, "the ID token was never fetched");
    masked_first(&out, &["pgs3-test-password", &fake.request_token]);
    check_outputs(&job, store, &bucket, &db, "allowed/").await;
    let mut secrets = fake.issued();
    secrets.extend(["pgs3-test-password".to_string(), fake.request_token.clone()]);
    no_secret_outside_masks(&job, &out, &secrets);
}

/// The Kubernetes CronJob shape (EKS IRSA): no Action, no inputs; the service account's
/// `AWS_ROLE_ARN` and its projected token mounted at `AWS_WEB_IDENTITY_TOKEN_FILE`; the
/// settings as environment variables; the image's entrypoint with `--keep-last` as args.
#[tokio::test(flavor = "multi_thread")]
async fn the_image_runs_as_a_kubernetes_cronjob_with_a_service_account_role() {
    let db = unique("image-irsa");
    Pg::create_db(&db);
    let store = Store::MotoIam;
    let bucket = store.bucket("image-irsa").await;
    let role = crate::auth::role_for(&bucket, crate::support::github::SUB);
    let endpoint = store.endpoint();
    let tokens = std::env::temp_dir().join(unique("serviceaccount"));
    std::fs::create_dir_all(&tokens).unwrap();
    std::fs::write(
        tokens.join("token"),
        crate::support::github::jwt_with("sts.amazonaws.com", crate::support::github::SUB),
    )
    .unwrap();
    let vars = [
        ("DATABASE_URL", Pg::url(&db)),
        ("S3_BUCKET", bucket.clone()),
        ("S3_PREFIX", "allowed/".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ENDPOINT_URL_S3", endpoint.clone()),
        ("S3_FORCE_PATH_STYLE", "true".to_string()),
        ("AWS_ROLE_ARN", role.clone()),
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "/var/run/secrets/eks.amazonaws.com/serviceaccount/token".to_string(),
        ),
        ("AWS_ENDPOINT_URL_STS", endpoint.clone()),
    ];
    let mut cmd = podman();
    cmd.args(["run", "--rm", "--network", "host"]);
    for (k, v) in &vars {
        cmd.arg("-e").arg(k).env(k, v);
    }
    cmd.arg("-v").arg(format!(
        "{}:/var/run/secrets/eks.amazonaws.com/serviceaccount:ro",
        tokens.display()
    ));
    cmd.arg(image()).args(["--keep-last", "3", "--json"]);
    let out: Done = cmd.stdin(Stdio::null()).output().unwrap().into();
    let json = out.ok();
    let key = json["key"].as_str().unwrap();
    assert!(key.starts_with(&format!("allowed/{db}/")), "{key}");
    let (body, _, _) = store.get(&bucket, key).await;
    assert_eq!(store.record(&bucket, key).await["sha256"], json["sha256"]);
    assert_eq!(body.len() as u64, json["size"].as_u64().unwrap());
    assert_eq!(json["kept_count"], 1);
}

/// Waits until the store shows an upload in progress of `bucket`, so that a signal lands mid-backup.
async fn wait_for_upload(store: Store, bucket: &str) {
    let started = Instant::now();
    while store.open_uploads(bucket).await == 0 {
        assert!(started.elapsed().as_secs() < 120, "no upload started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Cancellation as the runner does it: SIGINT to `podman run` (the attached client forwards it
/// to PID 1, the tool), and `podman stop` (SIGTERM to PID 1, SIGKILL after its timeout). Both
/// leave no object, no lock and no incomplete upload, within the 7 s a cancelled job allows.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_step_leaves_no_object_and_no_upload() {
    let db = unique("image-cancel");
    Pg::create_db(&db);
    let url = Pg::url(&db);
    // About 60 MB of incompressible hex: many 5 MiB parts, through a proxy that slows each.
    Pg::psql(
        &url,
        "CREATE TABLE t AS SELECT g, md5(g::text || random()::text) || md5(random()::text) AS v FROM generate_series(1, 800000) g",
    );
    let store = Store::Moto;
    for how in ["SIGINT to podman run", "podman stop"] {
        let bucket = store.bucket("image-cancel").await;
        let proxy = crate::support::proxy::Proxy::start(&store.endpoint());
        proxy.fail(
            crate::support::proxy::Op::UploadPart,
            1,
            crate::support::proxy::Fault::Always(Box::new(crate::support::proxy::Fault::Delay(
                Duration::from_millis(700),
            ))),
        );
        let (ak, sk) = store.keys();
        let endpoint = proxy.url();
        let job = Job::new();
        let name = unique("pgs3-cancel");
        let with = [
            ("database-url", url.as_str()),
            ("bucket", bucket.as_str()),
            ("aws-region", "us-east-1"),
            ("endpoint-url", endpoint.as_str()),
            ("force-path-style", "true"),
            ("keep-last", "1"),
        ];
        let env = [
            ("AWS_ACCESS_KEY_ID", ak),
            ("AWS_SECRET_ACCESS_KEY", sk),
            ("PART_SIZE", "5MiB".to_string()),
        ];
        let child = job.command(&name, &with, &env).spawn().unwrap();
        wait_for_upload(store, &bucket).await;
        let signalled = Instant::now();
        if how == "podman stop" {
            let stop = podman()
                .args(["stop", "--time", "10", &name])
                .output()
                .unwrap();
            assert!(
                stop.status.success(),
                "{}",
                String::from_utf8_lossy(&stop.stderr)
            );
        } else {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        }
        let out: Done = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap()
            .into();
        let took = signalled.elapsed().as_secs_f64();
        assert!(took < 7.0, "{how}: took {took:.1} s\n{}", out.stderr);
        let code = if how == "podman stop" { 143 } else { 130 };
        out.fails(code, &["interrupted by", "nothing was stored"]);
        assert!(
            store.keys_in(&bucket).await.is_empty(),
            "{how}: an object or lock left"
        );
        assert_eq!(
            store.open_uploads(&bucket).await,
            0,
            "{how}: an upload left"
        );
        assert_eq!(
            std::fs::read_to_string(job.output_file()).unwrap(),
            "",
            "{how}: outputs written"
        );
    }
}

/// The image runs as root (GitHub's runner needs it to write the workspace and the file
/// commands), its entrypoint is the binary's `backup`, and every installed pg_dump runs.
#[test]
fn the_image_runs_as_root_and_every_installed_pg_dump_runs() {
    let image = image();
    let sh = |script: &str| -> String {
        let out = podman()
            .args([
                "run",
                "--rm",
                "--network",
                "host",
                "--entrypoint",
                "/bin/sh",
            ])
            .arg(&image)
            .args(["-c", script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(sh("id -u").trim(), "0");
    let majors = sh("ls /usr/lib/postgresql");
    let majors: Vec<&str> = majors.split_whitespace().collect();
    assert!(!majors.is_empty());
    for major in &majors {
        let version = sh(&format!(
            "/usr/lib/postgresql/{major}/bin/pg_dump --version"
        ));
        assert!(
            version.starts_with(&format!("pg_dump (PostgreSQL) {major}.")),
            "{version}"
        );
    }
    // scripts/container builds with PG_CLIENTS=15, the only major Debian 12 has.
    assert_eq!(majors, ["15"]);
    let inspect = podman()
        .args([
            "image",
            "inspect",
            "--format",
            "{{json .Config.Entrypoint}}|{{.Config.User}}",
        ])
        .arg(&image)
        .output()
        .unwrap();
    let inspect = String::from_utf8(inspect.stdout).unwrap();
    assert_eq!(
        inspect.trim(),
        r#"["/usr/local/bin/pg-s3-backup","backup"]|"#,
        "entrypoint and user"
    );
    let help = sh("/usr/local/bin/pg-s3-backup --version");
    assert!(help.starts_with("pg-s3-backup "), "{help}");
}

/// The image's pg_dumpall: `all-databases` in the container backs up a server's databases and
/// its globals, and the globals restore (roles as they were) into a fresh cluster.
#[tokio::test]
async fn the_image_backs_up_a_whole_server() {
    let src = crate::support::cluster::Cluster::start();
    Pg::psql(
        &src.url("postgres"),
        "CREATE ROLE image_role LOGIN PASSWORD 'image-pw-31'",
    );
    Pg::psql(&src.url("postgres"), "CREATE DATABASE shop");
    let store = Store::Moto;
    let bucket = store.bucket("image-all").await;
    let (ak, sk) = store.keys();
    let endpoint = store.endpoint();
    let db_url = src.url("postgres");
    let job = Job::new();
    let with = [
        ("database-url", db_url.as_str()),
        ("bucket", bucket.as_str()),
        ("prefix", "pg/"),
        ("aws-region", "us-east-1"),
        ("endpoint-url", endpoint.as_str()),
        ("force-path-style", "true"),
        ("all-databases", "true"),
    ];
    let out = job.run(
        &with,
        &[("AWS_ACCESS_KEY_ID", ak), ("AWS_SECRET_ACCESS_KEY", sk)],
    );
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let backups: serde_json::Value = serde_json::from_str(&job.outputs()["backups"]).unwrap();
    assert_eq!(backups.as_array().unwrap().len(), 3, "{backups}");
    let dst = crate::support::cluster::Cluster::start();
    crate::support::s3_command(
        store,
        &endpoint,
        "restore",
        &bucket,
        &[
            "--globals",
            "--latest",
            "--target-url",
            &dst.url("postgres"),
        ],
    )
    .run()
    .ok_plain();
    let role = "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = 'image_role'";
    assert_eq!(
        Pg::psql(&dst.url("postgres"), role),
        Pg::psql(&src.url("postgres"), role)
    );
}
