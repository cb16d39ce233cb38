//! The binary as GitHub's runner starts a container action: only `INPUT_*` variables (action.yml's
//! defaults plus the step's `with:`), `GITHUB_ACTIONS=true`, the output and summary files, the
//! workspace as working directory, and the Dockerfile's entrypoint arguments. Also checks that
//! action.yml and the binary agree on every input and output.

use crate::support::github::FakeGitHub;
use crate::support::{unique, Pg, Store};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

fn repo_file(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// action.yml as JSON, read with the venv's PyYAML (a real YAML parser).
pub fn action_yml() -> serde_json::Value {
    yaml_file(&repo_file("action.yml"))
}

/// A YAML file as JSON, read with the venv's PyYAML (a real YAML parser).
fn yaml_file(path: &Path) -> serde_json::Value {
    let python = repo_file(".venv/bin/python");
    let out = Command::new(python)
        .args([
            "-c",
            "import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(path)
        .output()
        .expect("run the venv's python (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The arguments after the program in the Dockerfile's exec-form ENTRYPOINT.
fn entrypoint_args() -> Vec<String> {
    let dockerfile = std::fs::read_to_string(repo_file("Dockerfile")).unwrap();
    let line = dockerfile
        .lines()
        .find(|l| l.starts_with("ENTRYPOINT"))
        .expect("ENTRYPOINT");
    let words: Vec<String> =
        serde_json::from_str(line.trim_start_matches("ENTRYPOINT").trim()).expect("exec form");
    assert_eq!(words[0], "/usr/local/bin/pg-s3-backup");
    words[1..].to_vec()
}

/// Parses `$GITHUB_OUTPUT` by GitHub's rules: `name=value` lines or `name<<DELIM` ... `DELIM`.
pub fn parse_outputs(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delim)) = line.split_once("<<") {
            let mut value = Vec::new();
            loop {
                let l = lines
                    .next()
                    .unwrap_or_else(|| panic!("unterminated value for {name}"));
                if l == delim {
                    break;
                }
                value.push(l);
            }
            assert!(
                out.insert(name.to_string(), value.join("\n")).is_none(),
                "{name} twice"
            );
        } else {
            let (name, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("bad output line `{line}`"));
            assert!(
                out.insert(name.to_string(), value.to_string()).is_none(),
                "{name} twice"
            );
        }
    }
    out
}

struct Runner {
    workspace: std::path::PathBuf,
    output: std::path::PathBuf,
    summary: std::path::PathBuf,
}

impl Runner {
    fn new() -> Self {
        let workspace = std::env::temp_dir().join(unique("workspace"));
        std::fs::create_dir_all(&workspace).unwrap();
        let files = std::env::temp_dir().join(unique("runner-files"));
        std::fs::create_dir_all(&files).unwrap();
        Self {
            workspace,
            output: files.join("output"),
            summary: files.join("summary"),
        }
    }

    /// Runs the entrypoint backing up `db_url` into `bucket` on `store` (path-style, with the
    /// store's keys), with the inputs `extra` on top.
    fn run_on(
        &self,
        store: Store,
        db_url: &str,
        bucket: &str,
        extra: &[(&str, &str)],
    ) -> crate::support::Done {
        let endpoint = store.endpoint();
        let mut with = vec![
            ("database-url", db_url),
            ("bucket", bucket),
            ("aws-region", "us-east-1"),
            ("endpoint-url", endpoint.as_str()),
            ("force-path-style", "true"),
        ];
        with.extend_from_slice(extra);
        let (ak, sk) = store.keys();
        self.run(
            &with,
            &[("AWS_ACCESS_KEY_ID", ak), ("AWS_SECRET_ACCESS_KEY", sk)],
        )
    }

    /// Runs the entrypoint with the runner's environment: defaults from action.yml, then `with`.
    fn run(&self, with: &[(&str, &str)], extra_env: &[(&str, String)]) -> crate::support::Done {
        let action = action_yml();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pg-s3-backup"));
        cmd.args(entrypoint_args())
            .env_clear()
            .current_dir(&self.workspace)
            .stdin(Stdio::null());
        cmd.env("PATH", std::env::var("PATH").unwrap());
        for (name, spec) in action["inputs"].as_object().unwrap() {
            let default = spec.get("default").and_then(|d| d.as_str()).unwrap_or("");
            cmd.env(pg_s3_backup::action::input_var(name), default);
        }
        for (name, value) in with {
            cmd.env(pg_s3_backup::action::input_var(name), value);
        }
        cmd.env("GITHUB_ACTIONS", "true")
            .env("GITHUB_OUTPUT", &self.output)
            .env("GITHUB_STEP_SUMMARY", &self.summary)
            .env("GITHUB_WORKSPACE", &self.workspace)
            .env("AWS_EC2_METADATA_DISABLED", "true");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.output().expect("run entrypoint").into()
    }
}

#[tokio::test]
async fn runs_as_the_runner_runs_the_container_action() {
    let db = unique("action");
    Pg::create_db(&db);
    let store = Store::MotoIam;
    let bucket = store.bucket("action").await;
    let role = crate::auth::role_for(&bucket, crate::support::github::SUB);
    let fake = FakeGitHub::start("sts.amazonaws.com", 0);
    let endpoint = store.endpoint();
    let url = Pg::url(&db);
    let runner = Runner::new();
    let with = [
        ("database-url", url.as_str()),
        ("bucket", bucket.as_str()),
        ("prefix", "allowed/nightly"),
        ("aws-region", "us-east-1"),
        ("role-to-assume", role.as_str()),
        ("endpoint-url", endpoint.as_str()),
        ("force-path-style", "true"),
        ("keep-last", "3"),
        ("pg-dump-args", "--no-owner\n--no-privileges\n"),
    ];
    let mut env: Vec<(&str, String)> = fake
        .job_env()
        .into_iter()
        .filter(|(k, _)| *k != "GITHUB_ACTIONS")
        .collect();
    env.push(("AWS_ENDPOINT_URL_STS", endpoint.clone()));
    let out = runner.run(&with, &env);
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );

    // Masks first, on stderr: nothing precedes them. stdout holds no workflow command at all.
    crate::container::masked_first(&out, &["pgs3-test-password", &fake.request_token]);
    assert!(out.stderr.contains("::group::Preflight"), "{}", out.stderr);

    // Every declared output is written, and parses under GitHub's rules.
    let outputs = parse_outputs(&std::fs::read_to_string(&runner.output).unwrap());
    let declared: Vec<String> = action_yml()["outputs"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(outputs.keys().cloned().collect::<Vec<_>>(), {
        let mut d = declared.clone();
        d.sort();
        d
    });
    let key = &outputs["key"];
    assert!(
        key.starts_with(&format!("allowed/nightly/{db}/{db}-")),
        "{key}"
    );
    assert_eq!(outputs["uri"], format!("s3://{bucket}/{key}"));
    assert_eq!(outputs["pruned-count"], "0");
    let (body, meta, _) = store.get(&bucket, key).await;
    assert_eq!(outputs["size"], body.len().to_string());
    let record = store.record(&bucket, key).await;
    assert_eq!(record["sha256"], outputs["sha256"].as_str());
    let record = record.to_string();
    assert!(outputs["raw-size"].parse::<u64>().unwrap() > 0);
    assert!(outputs["duration-seconds"].parse::<f64>().unwrap() > 0.0);
    let dump = String::from_utf8(crate::support::gunzip(&body)).unwrap();
    assert!(
        !dump.contains("OWNER TO"),
        "--no-owner from pg-dump-args was not applied"
    );

    // The summary says what happened.
    let summary = std::fs::read_to_string(&runner.summary).unwrap();
    for needle in [
        db.as_str(),
        key.as_str(),
        "compressed from",
        "ratio",
        "MB/s",
        "PostgreSQL 15",
        "pg_dump",
        "Retention | kept 1, deleted 0",
    ] {
        assert!(
            summary.contains(needle),
            "summary lacks `{needle}`:\n{summary}"
        );
    }

    // No secret anywhere but in its mask line.
    let mut secrets = fake.issued();
    secrets.extend(["pgs3-test-password".to_string(), fake.request_token.clone()]);
    let output_file = std::fs::read_to_string(&runner.output).unwrap();
    for secret in &secrets {
        for (what, text) in [
            ("stdout", &out.stdout),
            ("outputs", &output_file),
            ("summary", &summary),
        ] {
            assert!(!text.contains(secret.as_str()), "secret in {what}");
        }
        for line in out.stderr.lines().filter(|l| l.contains(secret.as_str())) {
            assert_eq!(line, format!("::add-mask::{secret}"));
        }
        assert!(
            !meta.values().any(|v| v.contains(secret.as_str())),
            "secret in object metadata"
        );
        assert!(
            !record.contains(secret.as_str()),
            "secret in the integrity record"
        );
    }
}

/// The `compression` and `age-recipients` inputs: a zstd backup encrypted to every line's key,
/// which the standard tools read with either identity; the summary names the codec. A restore
/// in Actions masks AGE_IDENTITY before it prints anything.
#[tokio::test]
async fn the_codec_inputs_make_an_encrypted_zstd_backup_and_the_identity_is_masked() {
    let db = unique("action-age");
    Pg::create_db(&db);
    let store = Store::Moto;
    let bucket = store.bucket("action-age").await;
    let (a, b) = (crate::codecs::age_keygen(), crate::codecs::age_keygen());
    let recipients = format!(
        "# ops\n{}\n\n  {}  \n# break-glass, in the safe\n",
        a.public, b.public
    );
    let endpoint = store.endpoint();
    let runner = Runner::new();
    runner
        .run_on(
            store,
            &Pg::url(&db),
            &bucket,
            &[
                ("compression", "zstd"),
                ("age-recipients", recipients.as_str()),
            ],
        )
        .ok_plain();
    let outputs = parse_outputs(&std::fs::read_to_string(&runner.output).unwrap());
    let key = &outputs["key"];
    assert!(key.ends_with(".sql.zst.age"), "{key}");
    let summary = std::fs::read_to_string(&runner.summary).unwrap();
    assert!(summary.contains("zstd, encrypted with age"), "{summary}");
    let (body, meta, _) = store.get(&bucket, key).await;
    assert_eq!(meta["age-recipients"], "2");
    for k in [&a, &b] {
        let plain = crate::support::pipe("age", &["-d", "-i", k.file.to_str().unwrap()], &body);
        let dump = zstd::decode_all(&plain[..]).unwrap();
        assert!(String::from_utf8_lossy(&dump).contains("PostgreSQL database dump complete"));
    }
    let identity = std::fs::read_to_string(&a.file).unwrap();
    let restore = crate::support::s3_command(
        store,
        &endpoint,
        "restore",
        &bucket,
        &["--key", key, "--output", "-"],
    )
    .env("GITHUB_ACTIONS", "true")
    .env("AGE_IDENTITY", &identity)
    .run();
    assert!(restore
        .ok_plain()
        .contains("PostgreSQL database dump complete"));
    crate::container::masked_first(&restore, &[&a.secret]);
}

#[tokio::test]
async fn a_bad_input_fails_with_an_error_annotation_and_changes_nothing() {
    let runner = Runner::new();
    let with = [
        ("database-url", "postgres://u:hunter2secret@127.0.0.1:1/db"),
        ("bucket", "My_Bucket"),
        ("aws-region", "us-east-1"),
    ];
    let out = runner.run(&with, &[]);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    let annotation = out
        .stderr
        .lines()
        .find(|l| l.starts_with("::error::"))
        .expect("an ::error:: line");
    assert!(
        annotation.contains("bucket name `My_Bucket` is invalid"),
        "{annotation}"
    );
    assert!(
        out.stderr.starts_with("::add-mask::hunter2secret\n"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert_eq!(out.stderr.matches("hunter2secret").count(), 1);
    let summary = std::fs::read_to_string(&runner.summary).unwrap_or_default();
    assert!(
        summary.contains("failed") && summary.contains("My_Bucket"),
        "{summary}"
    );
    assert!(!runner.output.exists(), "no outputs on failure");

    let out = runner.run(
        &[
            ("database-url", "postgres://127.0.0.1:1/db"),
            ("bucket", "ok-bucket"),
            ("aws-region", "us-east-1"),
            ("force-path-style", "yes"),
        ],
        &[],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("::error::input `force-path-style` is `yes`: use true or false"),
        "{}",
        out.stderr
    );
}

#[test]
fn action_yml_and_the_binary_agree_on_inputs_and_outputs() {
    let action = action_yml();
    let mut declared: Vec<&str> = action["inputs"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut read: Vec<&str> = pg_s3_backup::action::INPUTS
        .iter()
        .map(|(name, _, _)| *name)
        .collect();
    declared.sort();
    read.sort();
    assert_eq!(
        declared, read,
        "inputs declared in action.yml vs read by the binary"
    );
    let mut outputs: Vec<&str> = action["outputs"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut written = pg_s3_backup::action::OUTPUTS.to_vec();
    outputs.sort();
    written.sort();
    assert_eq!(outputs, written);
    // The binary reads INPUT_ variables only through that table.
    for file in crate::support::source_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        let direct = code.matches("\"INPUT_").count();
        assert!(
            direct <= usize::from(file.ends_with("src/action.rs")),
            "{} reads INPUT_ variables directly",
            file.display()
        );
    }
    // Every flag the table names exists on `backup`.
    let help = Command::new(env!("CARGO_BIN_EXE_pg-s3-backup"))
        .args(["backup", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for (_, flag, _) in pg_s3_backup::action::INPUTS {
        assert!(help.contains(flag), "backup has no {flag}");
    }
    // Required inputs without defaults are the ones the binary cannot do without.
    for required in ["database-url", "bucket", "aws-region"] {
        assert_eq!(action["inputs"][required]["required"], true, "{required}");
    }
}

/// `scripts/pin-image` (the release workflow's rewrite) changes only `runs.image`, to the image
/// by digest; anything but a lowercase `REGISTRY/PATH@sha256:<64 hex>`, or an action.yml already
/// pinned, is exit 2 with the file unchanged.
#[test]
fn the_release_rewrite_pins_the_image_by_digest_and_changes_nothing_else() {
    let dir = std::env::temp_dir().join(unique("pin-image"));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("action.yml");
    let original = std::fs::read(repo_file("action.yml")).unwrap();
    std::fs::write(&copy, &original).unwrap();
    let pin = |reference: &str| {
        Command::new("python3")
            .arg(repo_file("scripts/pin-image"))
            .arg(reference)
            .arg(&copy)
            .output()
            .unwrap()
    };
    let digest = "sha256:".to_string() + &"0123456789abcdef".repeat(4);
    for bad in [
        "ghcr.io/org/pg-s3-backup:v1".to_string(),
        "ghcr.io/org/pg-s3-backup".to_string(),
        format!("ghcr.io/Org/pg-s3-backup@{digest}"),
        "ghcr.io/org/pg-s3-backup@sha256:abc".to_string(),
        format!("ghcr.io/org/pg-s3-backup@{digest}\n  args: [x]"),
        format!("ghcr.io/org/pg-s3-backup@{digest}\n"),
        format!("docker://ghcr.io/org/pg-s3-backup@{digest}"),
        String::new(),
    ] {
        let out = pin(&bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not an image pinned by digest"),
            "{bad:?}"
        );
        assert_eq!(
            std::fs::read(&copy).unwrap(),
            original,
            "{bad:?} changed the file"
        );
    }
    let reference = format!("ghcr.io/octo-org/pg-s3-backup@{digest}");
    let out = pin(&reference);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want = action_yml();
    assert_eq!(want["runs"]["image"], "Dockerfile");
    want["runs"]["image"] = format!("docker://{reference}").into();
    assert_eq!(yaml_file(&copy), want);
    let pinned = std::fs::read_to_string(&copy).unwrap();
    let original = String::from_utf8(original).unwrap();
    let changed: Vec<(&str, &str)> = original
        .lines()
        .zip(pinned.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(
        changed,
        [(
            "  image: Dockerfile",
            format!("  image: docker://{reference}").as_str()
        )]
    );
    assert_eq!(original.lines().count(), pinned.lines().count());
    // Pinning twice is refused: the release commit is made from main's form only.
    let again = pin(&reference);
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), pinned);
    // A CRLF file stays CRLF, and names with `--` and `__` (valid on registries) are accepted.
    std::fs::write(&copy, original.replace('\n', "\r\n")).unwrap();
    let reference = format!("ghcr.io/octo--org/pg__s3-backup@{digest}");
    assert!(pin(&reference).status.success());
    let pinned = std::fs::read_to_string(&copy).unwrap();
    assert_eq!(
        pinned,
        original
            .replace(
                "  image: Dockerfile",
                &format!("  image: docker://{reference}")
            )
            .replace('\n', "\r\n")
    );
}

/// An `age-recipients` input that holds only comments (a key commented out in a rotation) must
/// not turn into an unencrypted backup.
#[tokio::test]
async fn a_comment_only_age_recipients_input_is_refused() {
    let db = unique("rev-action");
    Pg::create_db(&db);
    let store = Store::Moto;
    let bucket = store.bucket("rev-action").await;
    let out = Runner::new().run_on(
        store,
        &Pg::url(&db),
        &bucket,
        &[(
            "age-recipients",
            "# age1old... rotated out, the new key is pending\n",
        )],
    );
    assert_eq!(
        out.code, 2,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert!(out.stderr.contains("age-recipients"), "{}", out.stderr);
    assert!(
        store.keys_in(&bucket).await.is_empty(),
        "an object was written"
    );
}

/// The `ping-url` input: masked before anything is printed (it holds the check's token), and
/// the monitor gets the start and the outcome.
#[tokio::test]
async fn the_ping_url_input_is_masked_first_and_pinged() {
    let db = unique("action-ping");
    Pg::create_db(&db);
    let store = Store::Moto;
    let bucket = store.bucket("action-ping").await;
    let sink = crate::pings::Sink::start(crate::pings::Answer::Ok);
    let (url, token) = crate::pings::check_url(&sink);
    let out = Runner::new().run_on(store, &Pg::url(&db), &bucket, &[("ping-url", url.as_str())]);
    out.ok_plain();
    crate::container::masked_first(&out, &[&url]);
    let paths: Vec<String> = sink.hits().into_iter().map(|h| h.1).collect();
    assert_eq!(
        paths,
        [format!("/ping/{token}/start"), format!("/ping/{token}")]
    );
}

/// The `all-databases` and `exclude-databases` inputs: every database but the excluded ones and
/// the globals, in the `backups` output (JSON) and the job summary, one row each.
#[tokio::test]
async fn the_all_databases_inputs_back_up_a_server_and_list_every_backup() {
    let src = crate::support::cluster::Cluster::start();
    for db in ["shop", "Odd `name`", "scratch"] {
        Pg::psql(
            &src.url("postgres"),
            &format!("CREATE DATABASE \"{}\"", db.replace('"', "\"\"")),
        );
    }
    let store = Store::Moto;
    let bucket = store.bucket("action-all").await;
    let runner = Runner::new();
    runner
        .run_on(
            store,
            &src.url("postgres"),
            &bucket,
            &[
                ("all-databases", "true"),
                ("exclude-databases", "scratch\n# a comment\npostgres\n"),
            ],
        )
        .ok_plain();
    let outputs = parse_outputs(&std::fs::read_to_string(&runner.output).unwrap());
    assert_eq!(outputs["failed-count"], "0");
    let backups: serde_json::Value = serde_json::from_str(&outputs["backups"]).unwrap();
    let mut names: Vec<(String, String)> = backups
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            assert_eq!(b["status"], "complete", "{b}");
            (
                b["kind"].as_str().unwrap().to_string(),
                b["database"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("database".to_string(), "Odd `name`".to_string()),
            ("database".to_string(), "shop".to_string()),
            ("globals".to_string(), String::new()),
        ]
    );
    let keys = store.keys_in(&bucket).await;
    for b in backups.as_array().unwrap() {
        assert!(
            keys.contains(&b["key"].as_str().unwrap().to_string()),
            "{b}"
        );
    }
    let summary = std::fs::read_to_string(&runner.summary).unwrap();
    assert!(summary.contains("3 of 3 complete"), "{summary}");
    assert_eq!(summary.matches("| complete |").count(), 3, "{summary}");
    // The odd name is code in the table, its backticks unable to end the span.
    assert!(!summary.contains("| Odd `name` |"), "{summary}");
}
