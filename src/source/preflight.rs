//! The preflight connection: before pg_dump starts and before anything is written to S3, connect
//! with tokio-postgres and read the server's version, the database name and its size. Turns
//! connection failures into one-line errors with a fix.

use crate::source::conninfo::ConnInfo;
use crate::source::pg_dump::PgVersion;
use anyhow::{anyhow, Context, Result};
use tokio_postgres::error::SqlState;

#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub version: PgVersion,
    /// `server_version`, e.g. `15.18 (Debian 15.18-0+deb12u1)`.
    pub version_text: String,
    pub database: String,
    /// `pg_database_size`: on-disk size, an upper hint for the dump's size.
    pub size_bytes: i64,
}

/// A tokio-postgres connection as [`connect`] opens it.
pub type Connection = tokio_postgres::Connection<
    tokio_postgres::Socket,
    <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<
        tokio_postgres::Socket,
    >>::Stream,
>;

/// Connects, waiting at most the connection's `connect_timeout` for the whole of it: TCP, TLS,
/// authentication and the server's first ReadyForQuery. (tokio-postgres's own `connect_timeout`
/// bounds only the TCP connect, so a server that accepts and never answers would hang.)
pub async fn connect(conn: &ConnInfo) -> Result<(tokio_postgres::Client, Connection)> {
    connect_with(conn, conn.preflight_config()?).await
}

/// [`connect`] for a session that runs only the tool's own short queries (preflight, the
/// restore's target checks): the server also gets `statement_timeout`, the connect timeout, so
/// that a query stuck on the server (a lock) is cancelled there, not only abandoned here by
/// [`answer`].
pub async fn connect_short(conn: &ConnInfo) -> Result<(tokio_postgres::Client, Connection)> {
    let mut config = conn.preflight_config()?;
    let limit = format!("-c statement_timeout={}s", conn.connect_timeout().as_secs());
    let options = match config.get_options() {
        Some(given) if !given.trim().is_empty() => format!("{given} {limit}"),
        _ => limit,
    };
    config.options(&options);
    connect_with(conn, config).await
}

async fn connect_with(
    conn: &ConnInfo,
    config: tokio_postgres::Config,
) -> Result<(tokio_postgres::Client, Connection)> {
    let tls = crate::source::tls::connector(conn)?;
    let limit = conn.connect_timeout();
    match tokio::time::timeout(limit, config.connect(tls)).await {
        Ok(connected) => connected.map_err(|e| explain(conn, &e)),
        Err(_) => Err(anyhow!(
            "cannot connect to PostgreSQL at {} (database `{}`): no answer within {} s: check that the host and port in the database URL are a PostgreSQL server and that it is not overloaded, or raise --connect-timeout",
            conn.display_host(),
            conn.dbname(),
            limit.as_secs()
        )),
    }
}

/// One of the tool's own short queries (not the dump, not the restore's statements): it gets
/// the connection's `connect_timeout` too, so a server that stops answering fails the command.
pub async fn answer<F: std::future::Future>(
    conn: &ConnInfo,
    what: &str,
    query: F,
) -> Result<F::Output> {
    let limit = conn.connect_timeout();
    match tokio::time::timeout(limit, query).await {
        Ok(answered) => Ok(answered),
        Err(_) => Err(anyhow!(
            "PostgreSQL at {} (database `{}`) did not answer {what} within {} s: check the server's load and locks, or raise --connect-timeout",
            conn.display_host(),
            conn.dbname(),
            limit.as_secs()
        )),
    }
}

pub async fn check(conn: &ConnInfo) -> Result<ServerInfo> {
    let (client, connection) = connect_short(conn).await?;
    let driver = tokio::spawn(connection);
    let row = answer(
        conn,
        "the preflight query",
        client.query_one(
            "SELECT current_setting('server_version_num')::int, current_setting('server_version'), \
             current_database(), pg_database_size(current_database())",
            &[],
        ),
    )
    .await?
    .map_err(|e| explain(conn, &e))?;
    drop(client);
    let _ = driver.await;
    let num: i32 = row.get(0);
    Ok(ServerInfo {
        version: PgVersion(u32::try_from(num).context("server_version_num")?),
        version_text: row.get(1),
        database: row.get(2),
        size_bytes: row.get(3),
    })
}

/// What `--all-databases` backs up on a server.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Every database that accepts connections and is not a template, in byte order.
    pub databases: Vec<String>,
    /// Those among them whose names are not UTF-8 (made in a `SQL_ASCII` database), shown with
    /// `\xNN` escapes: no key or connection string can name them.
    pub unnamed: Vec<String>,
    /// Each of them by its oid, which a rename keeps: a database the run listed and can no
    /// longer connect to may have been renamed, not dropped.
    pub oids: Vec<(u32, String)>,
    /// `pg_authid` (the roles' password hashes) is readable: managed servers (RDS, Cloud SQL)
    /// hide it, and pg_dumpall then needs `--no-role-passwords`.
    pub passwords_readable: bool,
}

pub async fn cluster(conn: &ConnInfo) -> Result<Cluster> {
    let (client, connection) = connect_short(conn).await?;
    let driver = tokio::spawn(connection);
    let rows = answer(
        conn,
        "the query listing its databases",
        // As bytes: a name made in a SQL_ASCII database need not be UTF-8. `datconnlimit = -2`
        // marks a database an interrupted DROP DATABASE left invalid (pg_dumpall skips it too):
        // nobody can connect to it.
        client.query(
            "SELECT pg_catalog.textsend(datname::text), oid FROM pg_catalog.pg_database \
             WHERE datallowconn AND NOT datistemplate AND datconnlimit <> -2",
            &[],
        ),
    )
    .await?
    .map_err(|e| explain(conn, &e))?;
    let readable = answer(
        conn,
        "the query for its password hashes",
        client.query_one(
            "SELECT pg_catalog.has_table_privilege('pg_catalog.pg_authid', 'SELECT')",
            &[],
        ),
    )
    .await?
    .map_err(|e| explain(conn, &e))?;
    drop(client);
    let _ = driver.await;
    let (mut databases, mut unnamed, mut oids) = (Vec::new(), Vec::new(), Vec::new());
    for row in &rows {
        let name = match String::from_utf8(row.get(0)) {
            Ok(name) => {
                databases.push(name.clone());
                name
            }
            Err(e) => {
                let shown = e.as_bytes().escape_ascii().to_string();
                unnamed.push(shown.clone());
                shown
            }
        };
        oids.push((row.get(1), name));
    }
    databases.sort();
    unnamed.sort();
    Ok(Cluster {
        databases,
        unnamed,
        oids,
        passwords_readable: readable.get(0),
    })
}

/// One line naming what failed and how to fix it; never includes the password.
fn explain(conn: &ConnInfo, err: &tokio_postgres::Error) -> anyhow::Error {
    let at = conn.display_host();
    let db = conn.dbname();
    if let Some(db_err) = err.as_db_error() {
        let hint = match *db_err.code() {
            SqlState::INVALID_PASSWORD => "check the user name and password in the database URL",
            SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                "check the user name, and that pg_hba.conf allows this client"
            }
            SqlState::INVALID_CATALOG_NAME => "check the database name in the database URL",
            SqlState::INSUFFICIENT_PRIVILEGE => "grant the backup user CONNECT on the database",
            _ => "check the database URL and the server's log",
        };
        return anyhow!(
            "PostgreSQL at {at} refused the connection to database `{db}`: {}: {hint}",
            db_err.message()
        );
    }
    // Walk to the root cause: "Connection refused", a DNS failure, a timeout, a TLS error.
    let mut cause = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    anyhow!(
        "cannot connect to PostgreSQL at {at} (database `{db}`): {cause}: check the host and port in the database URL and that the server is running and reachable"
    )
}
