//! Restoring into a database: all or nothing, and no code but the dump's SQL (no psql runs).
//! `sql_script` splits the dump into statements (refusing meta-commands, transaction control
//! and other COPYs), `target` applies each alone over the extended protocol in one transaction,
//! and the COMMIT comes only after every check passed. A custom archive is first turned into that
//! script by `pg_restore --file=-`. A damaged or refused object, or this process being killed,
//! leaves the target as it was.

use crate::config::S3Config;
use crate::crypt::Identities;
use crate::download::{self, Apply, Streamed};
use crate::error::usage;
use crate::layout::DumpFormat;
use crate::output;
use crate::source::conninfo::ConnInfo;
use crate::source::pg_dump::{self, PgVersion};
use crate::source::preflight;
use crate::target::Target;
use anyhow::{Context, Result};

pub struct Restored {
    pub database: String,
    pub tables: i64,
    /// Statements and COPY blocks applied.
    pub statements: u64,
    pub streamed: Streamed,
}

/// Restores `key` into the database `conn` names, refusing a database that has tables unless
/// `force`, and an encrypted backup without `identities`. On any damage the client is killed before end of input: nothing is committed.
pub async fn into(
    client: &aws_sdk_s3::Client,
    cfg: &S3Config,
    key: &str,
    conn: &ConnInfo,
    force: bool,
    identities: Option<&Identities>,
) -> Result<Restored> {
    download::check_decryptable(&cfg.prefix, key, identities)?;
    let server = preflight::check(conn).await?;
    let before = count_tables(conn).await?;
    if before > 0 && !force {
        return Err(usage!(
            "database `{}` already has {before} tables: restore into an empty database, or pass --force",
            server.database
        ));
    }
    let nothing = || format!("nothing was restored into `{}`", server.database);
    // A wrong identity or a damaged age header fails here, before the target is touched.
    let opened = download::open(client, &cfg.bucket, &cfg.prefix, key, identities)
        .await
        .with_context(nothing)?;
    let target = Target::begin(conn).await?;
    if let Some(role) = target.powerful_role().await? {
        output::warn(format_args!(
            "restoring as `{role}`, which can run programs and write files on the database server (a superuser, or pg_execute_server_program or pg_write_server_files): the backup's SQL runs with those rights, and could commit outside the restore's transaction through dblink; restore objects you did not write as a role without them"
        ));
    }
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
