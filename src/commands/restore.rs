//! `restore`: stream a backup (GetObject → sha256 → gzip decode) into psql or pg_restore,
//! chosen by the target server's major version, or to stdout with `--output -`. All or
//! nothing: a plain dump reaches psql only through `sql_filter`, which runs it in one
//! transaction whose COMMIT is sent only after every check passed (no meta-command gets
//! through); a custom archive's last bytes are held back from pg_restore (`--single-transaction`)
//! until then. A damaged or refused object kills the client, and a client that reaches end of
//! input early (this process killed) cannot commit either.

use crate::child::{self, Stderr};
use crate::cli::{RestoreArgs, Selection};
use crate::clock::Now;
use crate::config::S3Config;
use crate::download::{self, Checked, HoldBack, Streamed, Transform};
use crate::error::usage;
use crate::layout::DumpFormat;
use crate::source::conninfo::ConnInfo;
use crate::source::pg_dump::PgVersion;
use crate::source::{pg_dump, preflight};
use crate::sql_filter::{Filter, Mode};
use crate::{output, s3, store};
use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, NaiveDateTime, Utc};
use std::process::Stdio;

pub async fn run(args: &RestoreArgs) -> Result<()> {
    let cfg = S3Config::from_args(&args.s3)?;
    check_selection(&args.which)?;
    let target = match (&args.target_url, args.output.as_deref()) {
        (Some(url), None) => Some(ConnInfo::parse(Some(url))?),
        (None, Some("-")) => None,
        (None, Some(other)) => return Err(usage!("--output `{other}` is not supported: use `--output -` for stdout (nothing is written to disk)")),
        (Some(_), Some(_)) => return Err(usage!("--target-url and --output both given: choose one")),
        (None, None) => return Err(usage!("no destination: pass --target-url URL, or --output - for stdout")),
    };
    let client = s3::client(&cfg).await?;
    let key = select_key(&client, &cfg, &args.which).await?;
    match target {
        None => {
            let opened = download::open(&client, &cfg.bucket, &cfg.prefix, &key).await?;
            // The dump as stored, for your own tools: a plain dump only as far as the restore's
            // filter accepts it, and the end of either format only once everything is checked.
            let mut transform: Box<dyn Transform + Send> = match opened.format {
                DumpFormat::Plain => Box::new(Checked::new()),
                DumpFormat::Custom => Box::new(HoldBack::default()),
            };
            let mut stdout = tokio::io::stdout();
            let streamed = download::stream_into(opened, &mut stdout, transform.as_mut()).await?;
            output::note(format_args!(
                "wrote {} bytes of s3://{}/{key} to stdout (sha256 {})",
                streamed.raw_bytes, cfg.bucket, streamed.sha256
            ));
        }
        Some(conn) => {
            let restored = restore_into(&client, &cfg, &key, &conn, args.force).await?;
            output::data_line(format_args!(
                "restored s3://{}/{key} into `{}`: {} tables, {} bytes of dump, sha256 {}",
                cfg.bucket,
                restored.database,
                restored.tables,
                restored.streamed.raw_bytes,
                restored.streamed.sha256
            ));
        }
    }
    Ok(())
}

pub fn check_selection(which: &Selection) -> Result<()> {
    if which.key.is_none() && which.database.is_none() {
        return Err(usage!(
            "no backup selected: pass --key KEY, or --database NAME with --latest or --at TIME"
        ));
    }
    if let Some(at) = &which.at {
        parse_time(at)?;
    }
    Ok(())
}

fn parse_time(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%SZ").map(|t| t.and_utc()))
        .map_err(|_| usage!("--at `{text}` is not a time: use RFC 3339 (2026-11-23T03:00:00Z) or 20261123T030000Z"))
}

/// The key named by `--key`, or the newest backup of `--database` (at or before `--at`).
pub async fn select_key(
    client: &aws_sdk_s3::Client,
    cfg: &S3Config,
    which: &Selection,
) -> Result<String> {
    if let Some(key) = &which.key {
        return Ok(key.clone());
    }
    let database = which.database.as_deref().context("--database")?;
    let at = which.at.as_deref().map(parse_time).transpose()?;
    let backups = store::list_backups(client, &cfg.bucket, &cfg.prefix, Some(database)).await?;
    let now = Now::read();
    if let Err(skew) = now.check_skew() {
        output::warn(format_args!("{skew}; choosing by the store's clock"));
    }
    // A key from the future is never the newest backup (see `clock`).
    let (backups, future) = store::split_future(backups, &now);
    for f in &future {
        output::warn(format_args!(
            "skipping {}: it is dated {}, in the future",
            f.key,
            f.id.time.format("%Y-%m-%dT%H:%M:%SZ")
        ));
    }
    backups
        .into_iter()
        .find(|b| at.is_none_or(|t| b.id.time <= t))
        .map(|b| b.key)
        .ok_or_else(|| match at {
            Some(t) => anyhow!(
                "no backup of `{database}` at or before {t} under s3://{}/{}",
                cfg.bucket,
                cfg.prefix
            ),
            None => anyhow!(
                "no backup of `{database}` under s3://{}/{}",
                cfg.bucket,
                cfg.prefix
            ),
        })
}

pub struct Restored {
    pub database: String,
    pub tables: i64,
    pub streamed: Streamed,
}

/// Restores `key` into the database `conn` names, refusing a database that has tables unless
/// `force`. On any damage the client is killed before end of input: nothing is committed.
pub async fn restore_into(
    client: &aws_sdk_s3::Client,
    cfg: &S3Config,
    key: &str,
    conn: &ConnInfo,
    force: bool,
) -> Result<Restored> {
    let server = preflight::check(conn).await?;
    let before = count_tables(conn).await?;
    if before > 0 && !force {
        return Err(usage!(
            "database `{}` already has {before} tables: restore into an empty database, or pass --force",
            server.database
        ));
    }
    let opened = download::open(client, &cfg.bucket, &cfg.prefix, key).await?;
    let tool = match opened.format {
        DumpFormat::Plain => "psql",
        DumpFormat::Custom => "pg_restore",
    };
    let client_tool = pg_dump::choose_tool(tool, server.version, None, "PATH")?;
    let (args, mut transform): (Vec<&str>, Box<dyn Transform + Send>) = match opened.format {
        // No --single-transaction: psql would COMMIT at end of input, however it got there.
        // The filter's own BEGIN and final COMMIT make the transaction.
        DumpFormat::Plain => (
            vec!["-X", "-q", "-v", "ON_ERROR_STOP=1"],
            Box::new(Filter::new(Mode::Psql {
                restrict: has_restrict(client_tool.version),
            })),
        ),
        DumpFormat::Custom => (
            vec!["--single-transaction", "--exit-on-error", "--no-owner"],
            Box::new(HoldBack::default()),
        ),
    };
    let mut child = tokio::process::Command::new(&client_tool.path)
        .args(&args)
        .arg(format!("--dbname={}", conn.dump_conninfo()))
        .envs(conn.password().map(|p| ("PGPASSWORD", p.to_string())))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", client_tool.path.display()))?;
    let mut stdin = child.stdin.take().context("client stdin")?;
    // The client's messages can quote the dump (a table name, a NOTICE): forwarded inert.
    let stderr = Stderr::drain(child.stderr.take().context("client stderr")?, true);
    let streamed = match download::stream_into(opened, &mut stdin, transform.as_mut()).await {
        Ok(s) => s,
        Err(e) => {
            // Killed before it saw a COMMIT (or the archive's end): nothing is committed.
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(e.context(format!("nothing was restored into `{}`", server.database)));
        }
    };
    drop(stdin);
    let status = child.wait().await?;
    let detail = stderr.finish().await;
    if !status.success() {
        bail!(
            "{tool} failed restoring {key} into `{}` ({}): {detail}; its transaction was rolled back",
            server.database,
            child::describe_status(status)
        );
    }
    Ok(Restored {
        database: server.database,
        tables: count_tables(conn).await?,
        streamed,
    })
}

/// psql refuses every meta-command after `\restrict KEY` from these releases on (the
/// August 2025 minor releases, and 18).
pub fn has_restrict(psql: PgVersion) -> bool {
    let minor = psql.0 % 100;
    match psql.major() {
        13 => minor >= 22,
        14 => minor >= 19,
        15 => minor >= 14,
        16 => minor >= 10,
        17 => minor >= 6,
        m => m >= 18,
    }
}

async fn count_tables(conn: &ConnInfo) -> Result<i64> {
    let config = conn.preflight_config()?;
    let (client, connection) = config
        .connect(crate::source::tls::connector(conn)?)
        .await
        .context("connecting to the target database")?;
    let driver = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )
        .await?;
    drop(client);
    let _ = driver.await;
    Ok(row.get(0))
}
