//! The database a plain dump is restored into: one connection, one transaction, each statement
//! sent alone over the extended query protocol (Parse, Bind, Execute on the unnamed statement) (Parse refuses a string holding more than one
//! statement, so nothing can ride along with a statement `sql_script` classified), COPY data
//! through CopyIn. The transaction commits only in [`Target::commit`]; dropping a `Target`
//! (an error, a refusal, this process killed) closes the connection and the server rolls it
//! all back.

use crate::source::conninfo::ConnInfo;
use crate::source::preflight;
use crate::sql_script::Event;
use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::pin::Pin;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{AsyncMessage, Client, CopyInSink};

pub struct Target {
    client: Client,
    /// For the short queries' time limit and messages.
    conn: ConnInfo,
    copy: Option<(Pin<Box<CopyInSink<Bytes>>>, u64)>,
    statements: u64,
    _driver: tokio::task::JoinHandle<()>,
}

impl Target {
    /// Connects to `conn` and opens the restore's transaction.
    pub async fn begin(conn: &ConnInfo) -> Result<Self> {
        let target = Self::connect(conn).await?;
        preflight::answer(conn, "BEGIN", target.client.execute("BEGIN", &[]))
            .await?
            .map_err(|e| describe(&e, "BEGIN", 0))?;
        Ok(target)
    }

    /// Connects to `conn` with no transaction: each statement commits on its own (the
    /// globals, whose `CREATE TABLESPACE` cannot run in a transaction).
    pub async fn connect(conn: &ConnInfo) -> Result<Self> {
        let (client, mut connection) = preflight::connect(conn).await?;
        // The server's notices can quote the dump: forwarded inert.
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notice(n)) => {
                        crate::output::forward(&format!("{}: {}", n.severity(), n.message()))
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        Ok(Self {
            client,
            conn: conn.clone(),
            copy: None,
            statements: 0,
            _driver: driver,
        })
    }

    /// The restoring role, if it can run programs or write files on the database server
    /// (a superuser, or a member of pg_execute_server_program or pg_write_server_files): a
    /// dump's SQL runs with those rights, and through dblink can even commit outside the
    /// restore's transaction.
    pub async fn powerful_role(&self) -> Result<Option<String>> {
        let query = self.client.query_one(
            "SELECT current_user::text, \
             pg_catalog.pg_has_role(current_user, 'pg_execute_server_program', 'MEMBER') \
             OR pg_catalog.pg_has_role(current_user, 'pg_write_server_files', 'MEMBER')",
            &[],
        );
        let row = preflight::answer(
            &self.conn,
            "the query for the restoring role's rights",
            query,
        )
        .await?
        .map_err(|e| describe(&e, "reading the restoring role's rights", 0))?;
        Ok(row.get::<_, bool>(1).then(|| row.get(0)))
    }

    /// Runs one event of the dump.
    pub async fn apply(&mut self, event: Event) -> Result<()> {
        match event {
            Event::Statement { sql, line } => {
                let sql = utf8(&sql, line)?;
                // Parse, Bind, Execute and Sync in one round trip, on the unnamed statement
                // (one round trip instead of three: an --inserts dump is mostly statements).
                let no_params: [(&(dyn ToSql + Sync), Type); 0] = [];
                let rows = self
                    .client
                    .query_typed_raw(sql, no_params)
                    .await
                    .map_err(|e| describe(&e, sql, line))?;
                // Rows are read and dropped, never held.
                let mut rows = std::pin::pin!(rows);
                while let Some(row) = rows.next().await {
                    row.map_err(|e| describe(&e, sql, line))?;
                }
                self.statements += 1;
            }
            Event::CopyStart { sql, line } => {
                let sql = utf8(&sql, line)?;
                let sink = self
                    .client
                    .copy_in(sql)
                    .await
                    .map_err(|e| describe(&e, sql, line))?;
                self.copy = Some((Box::pin(sink), line));
            }
            Event::CopyData(data) => {
                let (sink, line) = self.copy.as_mut().context("COPY data outside COPY")?;
                let line = *line;
                sink.send(Bytes::from(data))
                    .await
                    .map_err(|e| describe(&e, "COPY", line))?;
            }
            Event::CopyEnd => {
                let (mut sink, line) = self.copy.take().context("\\. outside COPY")?;
                sink.as_mut()
                    .finish()
                    .await
                    .map_err(|e| describe(&e, "COPY", line))?;
                self.statements += 1;
            }
        }
        Ok(())
    }

    /// The roles that exist on the server.
    pub async fn roles(&self) -> Result<std::collections::HashSet<String>> {
        // As bytes: a role named in a SQL_ASCII database need not be UTF-8 (and then no line
        // of a UTF-8 script names it).
        let query = self.client.query(
            "SELECT pg_catalog.textsend(rolname::text) FROM pg_catalog.pg_roles",
            &[],
        );
        let rows = preflight::answer(&self.conn, "the query listing its roles", query)
            .await?
            .map_err(|e| describe(&e, "listing the server's roles", 0))?;
        Ok(rows
            .iter()
            .filter_map(|r| String::from_utf8(r.get(0)).ok())
            .collect())
    }

    /// What the role this restore connects as can do now, of what a globals script may take
    /// from it.
    pub async fn standing(&self) -> Result<Standing> {
        let query = self.client.query_one(
            "SELECT rolname::text, rolsuper, rolcreaterole, rolcanlogin, \
             rolvaliduntil IS NULL OR rolvaliduntil > pg_catalog.now() \
             FROM pg_catalog.pg_roles WHERE rolname = session_user",
            &[],
        );
        let row = preflight::answer(&self.conn, "the query for the restoring role", query)
            .await?
            .map_err(|e| describe(&e, "reading the restoring role's attributes", 0))?;
        Ok(Standing {
            name: row.get(0),
            kept: [row.get(1), row.get(2), row.get(3), row.get(4)],
        })
    }

    /// Runs a statement of the globals in a transaction of its own, and commits it only if the
    /// restoring role keeps what `before` says it could do: a globals script (a source whose
    /// role of that name had less, or a planted one) can otherwise take SUPERUSER from the
    /// role restoring it, and so leave the server without a superuser.
    pub async fn apply_keeping(&mut self, event: Event, before: &Standing) -> Result<()> {
        let line = match &event {
            Event::Statement { line, .. } | Event::CopyStart { line, .. } => *line,
            _ => 0,
        };
        self.client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| describe(&e, "BEGIN", 0))?;
        self.apply(event).await?;
        let after = self.standing().await?;
        if let Some(lost) = before.lost(&after) {
            self.client
                .batch_execute("ROLLBACK")
                .await
                .map_err(|e| describe(&e, "ROLLBACK", 0))?;
            return Err(anyhow!(
                "the statement at line {line} of the dump would take {lost} from `{}`, the role this restore connects as, and was rolled back: restore as another role that has {lost} (the source's role `{}` then gets the source's attributes)",
                before.name,
                before.name
            ));
        }
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| describe(&e, "COMMIT", 0))
    }

    /// Statements and COPY blocks applied so far.
    pub fn statements(&self) -> u64 {
        self.statements
    }

    /// Commits the restore: only after every check passed.
    pub async fn commit(self) -> Result<u64> {
        self.client
            .execute("COMMIT", &[])
            .await
            .map_err(|e| describe(&e, "COMMIT", 0))?;
        Ok(self.statements)
    }
}

/// The restoring role: its name, and whether it has what a globals script may take from it.
pub struct Standing {
    name: String,
    /// In the order of [`KEPT`].
    kept: [bool; 4],
}

/// What a globals restore keeps for the role restoring it.
const KEPT: [&str; 4] = [
    "SUPERUSER",
    "CREATEROLE",
    "LOGIN",
    "a password that is still valid (VALID UNTIL)",
];

impl Standing {
    /// The first of [`KEPT`] that it had and `after` has not.
    fn lost(&self, after: &Standing) -> Option<&'static str> {
        (0..KEPT.len())
            .find(|&k| self.kept[k] && !after.kept[k])
            .map(|k| KEPT[k])
    }
}

fn utf8(sql: &[u8], line: u64) -> Result<&str> {
    std::str::from_utf8(sql).map_err(|_| {
        anyhow!("line {line} of the dump is not UTF-8: pg-s3-backup restores UTF-8 dumps, as its backups are")
    })
}

/// One line: where in the dump, and what the server said.
fn describe(err: &tokio_postgres::Error, sql: &str, line: u64) -> anyhow::Error {
    // A role's password hash is never shown.
    let shown = match sql.to_ascii_uppercase().find(" PASSWORD ") {
        Some(at) => &sql[..at],
        None => sql,
    };
    let what: String = shown.chars().take(60).collect();
    let at = if line > 0 {
        format!("the statement at line {line} of the dump (`{what}`)")
    } else {
        format!("`{what}`")
    };
    match err.as_db_error() {
        Some(db) => {
            let mut text = format!(
                "{at} failed: {} {}: {}",
                db.severity(),
                db.code().code(),
                db.message()
            );
            for extra in [db.detail(), db.hint()].into_iter().flatten() {
                text.push_str(&format!(" ({})", extra.trim_end_matches('.')));
            }
            anyhow!(text)
        }
        None => anyhow!("{at} failed: {}", crate::error::root_cause(err)),
    }
}
