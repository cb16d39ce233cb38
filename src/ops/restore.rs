//! Restoring into a database: all or nothing, and no code but the dump's SQL (no psql runs).
//! `sql_script` splits the dump into statements (refusing meta-commands, transaction control
//! and other COPYs), `target` applies each alone over the extended protocol in one transaction,
//! and the COMMIT comes only after every check passed. A custom archive is first turned into that
//! script by `pg_restore --file=-`. A damaged or refused object, or this process being killed,
//! leaves the target as it was.
//!
//! The globals (roles and tablespaces) are server-wide and `CREATE TABLESPACE` runs in no
//! transaction, so [`globals_into`] reads and checks the whole script first (it is small, and
//! held in memory up to a bound), and only then applies it statement by statement, skipping the
//! `CREATE ROLE` of roles that already exist (pg_dumpall's `ALTER ROLE` after it still sets
//! their attributes).

use crate::config::S3Config;
use crate::crypt::Identities;
use crate::download::{self, Apply, Sink, Streamed};
use crate::error::usage;
use crate::error::Interrupted;
use crate::layout::{BackupId, DumpFormat};
use crate::output;
use crate::source::conninfo::ConnInfo;
use crate::source::pg_dump::{self, PgVersion};
use crate::source::preflight;
use crate::sql_script::{Event, Script};
use crate::target::Target;
use anyhow::{bail, Context, Result};

/// The largest globals script read into memory (a role takes ~200 bytes: a million roles).
const MAX_GLOBALS: usize = 256 << 20;

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
    accept_unverified: bool,
) -> Result<Restored> {
    download::check_decryptable(&cfg.prefix, key, identities)?;
    if BackupId::is_globals(&cfg.prefix, key) {
        return Err(usage!(
            "{key} is a globals backup (roles and tablespaces, which are server-wide), not a database's: restoring it would change the whole server's roles; verify it without --restore-check, and restore it with `restore --target-url`"
        ));
    }
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
    let mut opened = download::open(client, &cfg.bucket, &cfg.prefix, key, identities)
        .await
        .with_context(nothing)?;
    opened.accept_unverified = accept_unverified;
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

/// What a globals restore did.
pub struct RestoredGlobals {
    /// `host:port` of the server.
    pub server: String,
    pub statements: u64,
    /// Roles that existed on the server: their `CREATE ROLE` was skipped.
    pub existing: Vec<String>,
    pub streamed: Streamed,
}

/// Restores the globals backup `key` to the server `conn` connects to: the whole script is read
/// and checked (sha256, the compressed stream, age, pg_dumpall's trailer, only roles, tablespaces
/// and grants) before the first statement is sent.
pub async fn globals_into(
    client: &aws_sdk_s3::Client,
    cfg: &S3Config,
    key: &str,
    conn: &ConnInfo,
    identities: Option<&Identities>,
    accept_unverified: bool,
) -> Result<RestoredGlobals> {
    download::check_decryptable(&cfg.prefix, key, identities)?;
    preflight::check(conn).await?;
    let nothing = || format!("nothing was restored to {}", conn.display_host());
    let mut opened = download::open(client, &cfg.bucket, &cfg.prefix, key, identities)
        .await
        .with_context(nothing)?;
    opened.accept_unverified = accept_unverified;
    let mut collect = Collect {
        script: Script::globals(),
        events: Vec::new(),
        bytes: 0,
    };
    let streamed = download::stream_into(opened, &mut collect)
        .await
        .with_context(nothing)?;
    let mut target = Target::connect(conn).await?;
    let roles = target.roles().await?;
    let me = target.standing().await?;
    let mut existing = Vec::new();
    let total = collect.events.len();
    for (done, event) in collect.events.into_iter().enumerate() {
        if let Some(sig) = crate::signals::stop_requested() {
            return Err(anyhow::Error::new(Interrupted(sig)).context(format!(
                "the globals restore stopped after {done} of {total} statements: run it again to finish (existing roles are kept)"
            )));
        }
        if let Event::Statement { sql, .. } = &event {
            if let Some(role) = created_role(sql).filter(|r| roles.contains(r)) {
                existing.push(role);
                continue;
            }
        }
        // `CREATE TABLESPACE` cannot run in a transaction; every other statement runs in one
        // that is rolled back if it took from the restoring role what it needs (written any
        // other way than pg_dumpall writes it, a `CREATE TABLESPACE` then fails there).
        let applied = match &event {
            Event::Statement { sql, .. } if sql.starts_with(b"CREATE TABLESPACE ") => {
                target.apply(event).await
            }
            _ => target.apply_keeping(event, &me).await,
        };
        applied.with_context(|| {
            format!(
                "{done} of {total} statements of the globals were applied before it, each on its own: fix the cause and run the restore again (existing roles are kept)"
            )
        })?;
    }
    Ok(RestoredGlobals {
        server: conn.display_host(),
        statements: target.statements(),
        existing,
        streamed,
    })
}

/// The role a statement is exactly pg_dumpall's `CREATE ROLE name;` of, if it is one.
fn created_role(sql: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(sql).ok()?;
    let name = text.strip_prefix("CREATE ROLE ")?.strip_suffix(';')?;
    if let Some(quoted) = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        return (!quoted.replace("\"\"", "").contains('"')).then(|| quoted.replace("\"\"", "\""));
    }
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'$');
    bare.then(|| name.to_string())
}

/// Reads and checks a whole globals script, keeping its statements.
struct Collect {
    script: Script,
    events: Vec<Event>,
    bytes: usize,
}

impl Sink for Collect {
    async fn feed(&mut self, decoded: &[u8]) -> Result<()> {
        self.bytes += decoded.len();
        if self.bytes > MAX_GLOBALS {
            bail!("the globals script is over {} MiB, more than a server's roles and tablespaces take: it is not pg_dumpall's", MAX_GLOBALS >> 20);
        }
        self.script
            .push(decoded, &mut self.events)
            .map_err(not_globals)
    }

    async fn finish(&mut self) -> Result<()> {
        self.script.finish(&mut self.events).map_err(not_globals)
    }
}

fn not_globals(r: crate::sql_script::Refused) -> anyhow::Error {
    anyhow::anyhow!("it is not a globals script pg-s3-backup restores: {r}")
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

#[cfg(test)]
mod tests {
    use super::created_role;

    #[test]
    fn only_pg_dumpalls_create_role_names_a_role() {
        assert_eq!(created_role(b"CREATE ROLE app;"), Some("app".into()));
        assert_eq!(
            created_role(b"CREATE ROLE \"My \"\"x\"\"\";"),
            Some("My \"x\"".into())
        );
        for other in [
            &b"CREATE ROLE App;"[..],
            b"CREATE ROLE app WITH LOGIN;",
            b"CREATE ROLE \"a\"b\";",
            b"ALTER ROLE app;",
            b"CREATE ROLE ;",
        ] {
            assert_eq!(
                created_role(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
