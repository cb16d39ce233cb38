//! `restore`: stream a backup (GetObject → sha256 → gzip decode) into a database, or to
//! stdout with `--output -`. All or nothing, and no code but the dump's SQL: no psql runs.
//! `sql_script` splits the dump into statements (refusing meta-commands, transaction control
//! and other COPYs), `target` applies each alone over the extended protocol in one
//! transaction, and the COMMIT comes only after every check passed. A custom archive is first
//! turned into that script by `pg_restore --file=-`. A damaged or refused object, or this
//! process being killed, leaves the target as it was.

use crate::cli::{RestoreArgs, Selection};
use crate::clock::Now;
use crate::config::S3Config;
use crate::download::{self, Apply, Checked, Streamed, Writer};
use crate::error::usage;
use crate::layout::DumpFormat;
use crate::source::conninfo::ConnInfo;
use crate::source::pg_dump::PgVersion;
use crate::source::{pg_dump, preflight};
use crate::target::Target;
use crate::{output, s3, store};
use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, NaiveDateTime, Utc};

pub async fn run(args: &RestoreArgs) -> Result<()> {
    let cfg = S3Config::from_args(&args.s3)?;
    check_selection(&args.which)?;
    let target = match (&args.target_url, args.output.as_deref()) {
        (Some(url), None) => Some(
            ConnInfo::parse_with_connect_timeout(Some(url), args.connect_timeout.as_deref())?,
        ),
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
            // script reader accepts it, and the end of either format only once everything is
            // checked.
            if opened.format == DumpFormat::Plain {
                output::note(
                    "note: this is the dump as stored; psql runs any meta-command in a script it reads, so feed an object you did not write to `restore --target-url`, which runs none",
                );
            }
            let stdout = tokio::io::stdout();
            let streamed = match opened.format {
                DumpFormat::Plain => {
                    download::stream_into(opened, &mut Checked::new(stdout)).await?
                }
                DumpFormat::Custom => {
                    download::stream_into(opened, &mut Writer::new(stdout, true)).await?
                }
            };
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
    /// Statements and COPY blocks applied.
    pub statements: u64,
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
    let target = Target::begin(conn).await?;
    if let Some(role) = target.powerful_role().await? {
        output::warn(format_args!(
            "restoring as `{role}`, which can run programs and write files on the database server (a superuser, or pg_execute_server_program or pg_write_server_files): the backup's SQL runs with those rights, and could commit outside the restore's transaction through dblink; restore objects you did not write as a role without them"
        ));
    }
    let nothing = || format!("nothing was restored into `{}`", server.database);
    let mut apply = Apply::new(target);
    let streamed = match opened.format {
        DumpFormat::Plain => download::stream_into(opened, &mut apply).await,
        DumpFormat::Custom => restore_archive(opened, &mut apply, server.version).await,
    };
    // Once the COMMIT was sent, a stop lets the report finish (see `signals::pending`).
    let _committed = apply.committing.take();
    let streamed = streamed.with_context(nothing)?;
    let statements = apply.statements;
    drop(apply);
    Ok(Restored {
        database: server.database,
        tables: count_tables(conn).await?,
        statements,
        streamed,
    })
}

/// A custom archive, turned into the plain script by `pg_restore --file=-` (see
/// `download::stream_archive`) and applied like a plain dump.
async fn restore_archive(
    opened: download::Opened,
    apply: &mut Apply,
    server: PgVersion,
) -> Result<Streamed> {
    let tool = pg_dump::choose_tool("pg_restore", server, None, "PATH").await?;
    download::stream_archive(opened, &tool.path, apply).await
}

async fn count_tables(conn: &ConnInfo) -> Result<i64> {
    let (client, connection) = preflight::connect_short(conn).await?;
    let driver = tokio::spawn(connection);
    let query = client.query_one(
        "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
        &[],
    );
    let row = preflight::answer(conn, "the query counting its tables", query)
        .await?
        .context("counting the target database's tables")?;
    drop(client);
    let _ = driver.await;
    Ok(row.get(0))
}
