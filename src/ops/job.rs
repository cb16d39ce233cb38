//! One backup of a run: a database (pg_dump) or the server's globals (pg_dumpall
//! `--globals-only`), with its connection, the server's facts and the tool that dumps it; how
//! that tool starts, and what a complete dump of it looks like.

use crate::config::BackupConfig;
use crate::layout::{DumpFormat, Series};
use crate::source::complete::Watch;
use crate::source::conninfo::ConnInfo;
use crate::source::pg_dump::PgDump;
use crate::source::preflight::ServerInfo;
use crate::source::process::{BlockingStdout, Process};
use anyhow::Result;

/// One backup of a run.
pub struct Job {
    pub series: Series,
    /// The database's connection; for the globals, the server's first database.
    pub conn: ConnInfo,
    pub server: ServerInfo,
    /// pg_dump for a database, pg_dumpall for the globals.
    pub tool: PgDump,
    /// The globals without the roles' password hashes (the server hides them).
    pub no_role_passwords: bool,
}

impl Job {
    /// The dump's format: the globals are always a plain script.
    pub fn format(&self, cfg: &BackupConfig) -> DumpFormat {
        match self.series {
            Series::Globals => DumpFormat::Plain,
            Series::Database(_) => cfg.format,
        }
    }

    /// `pg_dump` or `pg_dumpall`, for messages.
    pub fn tool_name(&self) -> &'static str {
        match self.series {
            Series::Globals => "pg_dumpall",
            Series::Database(_) => "pg_dump",
        }
    }

    pub fn spawn(&self, cfg: &BackupConfig) -> Result<(Process, BlockingStdout)> {
        match self.series {
            Series::Globals => self.tool.spawn_globals(&self.conn, self.no_role_passwords),
            Series::Database(_) => self.tool.spawn(&self.conn, cfg.format, &cfg.pg_dump_args),
        }
    }

    /// `Ok` when the stream `watch` saw is a complete dump of this job.
    pub fn verdict(&self, cfg: &BackupConfig, watch: &Watch) -> Result<(), String> {
        match self.series {
            Series::Globals => watch.verdict_globals(),
            Series::Database(_) => watch.verdict(cfg.format),
        }
    }
}
