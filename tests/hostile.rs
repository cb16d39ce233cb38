//! Hostile input: every malformed value gives exit 2 and one line naming the value and the
//! fix, before any side effect. The S3 endpoint is a recording proxy in front of moto, and
//! the database URL points at a port where nothing listens, so the test sees that not one S3
//! request was sent and no database was contacted.

use crate::support::proxy::Proxy;
use crate::support::{Run, Store};

/// The base of every case: a valid backup whose only fault is the case's (which may replace
/// the base's database URL or bucket).
fn backup(endpoint: &str, extra: &[&str]) -> Run {
    let mut args = vec!["backup"];
    for (flag, value) in [("--database-url", DB), ("--bucket", "good-bucket")] {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend([
        "--region",
        "us-east-1",
        "--endpoint-url",
        endpoint,
        "--force-path-style",
    ]);
    args.extend_from_slice(extra);
    Run::new(&args)
        .env("AWS_ACCESS_KEY_ID", "AKIAHOSTILE")
        .env("AWS_SECRET_ACCESS_KEY", "hostile-secret-key-value")
}

const DB: &str = "postgres://u:pw@127.0.0.1:1/db";

#[test]
fn hostile_input_is_one_line_exit_2_and_sends_nothing() {
    let proxy = Proxy::start(&Store::Moto.endpoint());
    let long_bucket = "b".repeat(64);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        // Malformed database URLs and options; the password never shows.
        (
            vec!["--database-url", "postgres://u:hunter2secret@[::1/db"],
            "database URL",
        ),
        (
            vec!["--database-url", "postgres://u@127.0.0.1:99999/db"],
            "database URL",
        ),
        (
            vec!["--database-url", "host=h port='unterminated"],
            "connection string is malformed",
        ),
        (
            vec!["--database-url", "postgres://u@h/db?sslmode=sometimes"],
            "sslmode `sometimes`",
        ),
        // Bucket names against S3's rules.
        (vec!["--bucket", "my_backups"], "bucket name `my_backups`"),
        (vec!["--bucket", "MyBackups"], "bucket name `MyBackups`"),
        (vec!["--bucket", "ab"], "bucket name `ab`"),
        (vec!["--bucket", &long_bucket], "is invalid"),
        (vec!["--bucket", "192.168.0.1"], "bucket name `192.168.0.1`"),
        (vec!["--bucket", "-abc"], "bucket name `-abc`"),
        (vec!["--bucket", "abc-"], "bucket name `abc-`"),
        (vec!["--bucket", ".abc"], "bucket name `.abc`"),
        (vec!["--bucket", "abc."], "bucket name `abc.`"),
        (vec!["--bucket", "a..b"], "bucket name `a..b`"),
        // Prefixes.
        (vec!["--prefix", "a/../b"], "prefix `a/../b`"),
        (vec!["--prefix", "/abs"], "prefix `/abs`"),
        (vec!["--prefix", "a\u{1}b"], "prefix"),
        (vec!["--prefix", "a\nb"], "prefix"),
        // Retention spans.
        (vec!["--keep-within", "forever"], "--keep-within `forever`"),
        (vec!["--keep-within", "0d"], "--keep-within `0d`"),
        // Negative, zero and absurd numbers.
        (
            vec!["--upload-concurrency", "-1"],
            "--upload-concurrency `-1`",
        ),
        (
            vec!["--upload-concurrency", "0"],
            "--upload-concurrency `0`",
        ),
        (vec!["--threads", "100000"], "--threads `100000`"),
        (vec!["--max-parts", "0"], "--max-parts `0`"),
        (vec!["--max-parts", "20000"], "--max-parts `20000`"),
        (vec!["--keep-last", "-3"], "--keep-last `-3`"),
        (vec!["--request-timeout", "0"], "--request-timeout `0`"),
        (
            vec!["--role-duration-seconds", "99999999999"],
            "--role-duration-seconds `99999999999`",
        ),
        // Compression and part sizes.
        (vec!["--compression-level", "0"], "--compression-level `0`"),
        (
            vec!["--compression-level", "10"],
            "--compression-level `10`",
        ),
        (vec!["--part-size", "4MiB"], "--part-size `4MiB`"),
        (vec!["--part-size", "6GiB"], "--part-size `6GiB`"),
        (vec!["--part-size", "lots"], "--part-size `lots`"),
        // Formats and pg_dump flags that would break the stream.
        (vec!["--format", "tar"], "--format `tar`"),
        (
            vec!["--pg-dump-arg=--file=/tmp/x"],
            "--pg-dump-arg `--file=/tmp/x`",
        ),
        // ... in every spelling getopt_long takes: bundled short options, attached values,
        // abbreviations, a detached value, positional arguments.
        (vec!["--pg-dump-arg=-vf/tmp/x"], "(--file)"),
        (vec!["--pg-dump-arg=-f", "--pg-dump-arg=/tmp/x"], "(--file)"),
        (vec!["--pg-dump-arg=--fo=t"], "(--format)"),
        (vec!["--pg-dump-arg=-Ft"], "(--format)"),
        (vec!["--pg-dump-arg=--compr=9"], "(--compress)"),
        (vec!["--pg-dump-arg=-Z0"], "(--compress)"),
        (vec!["--pg-dump-arg=--fi=/tmp/x"], "ambiguous"),
        (vec!["--pg-dump-arg=-hevil.example.com"], "(--host)"),
        (vec!["--pg-dump-arg=--dbn=other"], "(--dbname)"),
        (vec!["--pg-dump-arg=otherdb"], "database to dump"),
        (vec!["--pg-dump-arg=--"], "`--`"),
        (vec!["--pg-dump-arg=--exclude-table"], "needs a value"),
        (vec!["--pg-dump-arg=--bogus"], "no option --bogus"),
        // Roles and audiences.
        (
            vec!["--role-to-assume", "arn:aws:iam::123:role/x"],
            "role ARN `arn:aws:iam::123:role/x`",
        ),
        (
            vec![
                "--role-to-assume",
                "arn:aws:iam::123456789012:role/x",
                "--audience",
                " ",
            ],
            "--audience is empty",
        ),
    ];
    for (extra, needle) in &cases {
        let out = backup(&proxy.url(), extra).run();
        let line = out.fails(2, &[needle]).to_string();
        assert_eq!(
            out.stderr.lines().count(),
            1,
            "{extra:?}: one line only: {}",
            out.stderr
        );
        assert!(
            line.contains(": "),
            "{extra:?}: no fix after the value: {line}"
        );
        assert!(out.stdout.is_empty(), "{extra:?}: {}", out.stdout);
        assert!(
            proxy.log().is_empty(),
            "{extra:?} sent S3 requests: {:?}",
            proxy.log()
        );
    }
}
