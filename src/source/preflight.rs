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

pub async fn check(conn: &ConnInfo) -> Result<ServerInfo> {
    let config = conn.preflight_config()?;
    let tls = crate::source::tls::connector(conn)?;
    let (client, connection) = config.connect(tls).await.map_err(|e| explain(conn, &e))?;
    let driver = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, current_setting('server_version'), \
             current_database(), pg_database_size(current_database())",
            &[],
        )
        .await
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
