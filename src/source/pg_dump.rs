//! Chooses and runs pg_dump: the binary matching the server's major version, a strict exit
//! status, and a concurrently drained stderr whose tail explains a failure. It does not
//! compress or upload; the caller reads stdout.

use crate::layout::DumpFormat;
use crate::source::conninfo::ConnInfo;
use crate::source::process::{BlockingStdout, Process};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Where Debian and the PostgreSQL apt repository install one directory per major version.
const PG_LIB_DIR: &str = "/usr/lib/postgresql";

/// A PostgreSQL version as `server_version_num` writes it: 150018 for 15.18, 90624 for 9.6.24.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PgVersion(pub u32);

impl PgVersion {
    /// The major release: 15 for 15.x; 906 for 9.6 (majors before 10 had two parts).
    pub fn major(self) -> u32 {
        if self.0 >= 100_000 {
            self.0 / 10_000
        } else {
            self.0 / 100
        }
    }

    pub fn major_text(self) -> String {
        match self.major() {
            m if m >= 10 && self.0 >= 100_000 => m.to_string(),
            m => format!("{}.{}", m / 100, m % 100),
        }
    }

    /// Parses `15.18`, `16beta2`, `9.6.24`, or pg_dump's `pg_dump (PostgreSQL) 15.18 (Debian ...)`.
    pub fn parse(text: &str) -> Option<Self> {
        let word = text
            .split_whitespace()
            .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
        let nums: Vec<u32> = word
            .split('.')
            .map(|p| {
                p.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .map_while(|p| p.parse().ok())
            .collect();
        match nums.as_slice() {
            [major, rest @ ..] if *major >= 10 => {
                Some(Self(major * 10_000 + rest.first().copied().unwrap_or(0)))
            }
            [major, minor, rest @ ..] => Some(Self(
                major * 10_000 + minor * 100 + rest.first().copied().unwrap_or(0),
            )),
            _ => None,
        }
    }
}

/// The pg_dump binary to run and its version.
#[derive(Debug, Clone)]
pub struct PgDump {
    pub path: PathBuf,
    pub version: PgVersion,
    /// What `pg_dump --version` printed, e.g. `pg_dump (PostgreSQL) 15.18`.
    pub version_text: String,
}

/// Picks pg_dump for a server: `--pg-dump-path` if given; else the installed major matching the
/// server; else the newest installed one at or above it; else `pg_dump` on PATH. Fails, before
/// anything is uploaded, when the choice is older than the server (pg_dump would abort with
/// "server version mismatch" after the upload had started).
pub async fn choose(server: PgVersion, override_path: Option<&Path>) -> Result<PgDump> {
    choose_tool("pg_dump", server, override_path, "--pg-dump-path").await
}

/// The same choice for any client tool (`pg_dump`, `psql`, `pg_restore`) and `server`'s major.
pub async fn choose_tool(
    tool: &str,
    server: PgVersion,
    override_path: Option<&Path>,
    flag: &str,
) -> Result<PgDump> {
    let path = match override_path {
        Some(p) => p.to_path_buf(),
        None => pick_installed(server.major(), &installed_majors(tool))
            .unwrap_or_else(|| PathBuf::from(tool)),
    };
    let dump = probe(&path, tool, flag).await?;
    if dump.version.major() < server.major() {
        bail!(
            "{} is version {} but the server is {}: {tool} must be at least the server's major version; install postgresql-client-{} or pass {flag}",
            dump.path.display(),
            dump.version.major_text(),
            server.major_text(),
            server.major_text()
        );
    }
    Ok(dump)
}

fn installed_majors(tool: &str) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(PG_LIB_DIR) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin").join(tool);
            bin.is_file().then_some((major, bin))
        })
        .collect()
}

/// Pure choice among installed `(major, path)` pairs (majors >= 10 only, as Debian lays them out).
fn pick_installed(server_major: u32, installed: &[(u32, PathBuf)]) -> Option<PathBuf> {
    installed
        .iter()
        .find(|(m, _)| *m == server_major)
        .or_else(|| {
            installed
                .iter()
                .filter(|(m, _)| *m >= server_major)
                .max_by_key(|(m, _)| *m)
        })
        .map(|(_, p)| p.clone())
}

/// Runs `TOOL --version` as a child the runtime waits on, so a signal is seen while it runs
/// (and the child is killed when a stop drops the wait).
async fn probe(path: &Path, tool: &str, flag: &str) -> Result<PgDump> {
    let out = tokio::process::Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| {
            format!(
                "cannot run {tool} `{}`: install postgresql-client or pass {flag}",
                path.display()
            )
        })?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let version = PgVersion::parse(
        text.trim_start_matches(tool)
            .trim_start()
            .trim_start_matches("(PostgreSQL)"),
    )
    .filter(|_| out.status.success())
    .ok_or_else(|| {
        anyhow!(
            "`{} --version` printed `{text}`, not a {tool} version: pass {flag} with a real {tool}",
            path.display()
        )
    })?;
    Ok(PgDump {
        path: path.to_path_buf(),
        version,
        version_text: text,
    })
}

impl PgDump {
    /// Starts pg_dump with stdout piped; its stderr is forwarded line by line and its tail kept.
    /// The stream's end is pg_dump's verdict (see `process`). Dropping the process kills it.
    pub fn spawn(
        &self,
        conn: &ConnInfo,
        format: DumpFormat,
        extra: &[String],
    ) -> Result<(Process, BlockingStdout)> {
        let mut cmd = self.command();
        match format {
            DumpFormat::Plain => cmd.arg("--format=plain"),
            // Our gzip compresses in parallel; pg_dump's own compression would be wasted work.
            DumpFormat::Custom => cmd.args(["--format=custom", "--compress=0"]),
        };
        cmd.args(extra)
            .arg(format!("--dbname={}", conn.dump_conninfo()));
        self.start(cmd, conn, "pg_dump")
    }

    /// Starts `pg_dumpall --globals-only` (this is pg_dumpall) on the server `conn` names,
    /// connecting to its database first; without the roles' password hashes when
    /// `no_role_passwords`.
    pub fn spawn_globals(
        &self,
        conn: &ConnInfo,
        no_role_passwords: bool,
    ) -> Result<(Process, BlockingStdout)> {
        let mut cmd = self.command();
        cmd.arg("--globals-only");
        if no_role_passwords {
            cmd.arg("--no-role-passwords");
        }
        // pg_dumpall ignores the connection string's database: `--database` names it.
        cmd.arg(format!("--dbname={}", conn.dump_conninfo()))
            .arg(format!("--database={}", conn.dbname()));
        self.start(cmd, conn, "pg_dumpall")
    }

    fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.path);
        // Always UTF-8, whatever the database's encoding, PGCLIENTENCODING or the connection
        // string say: a restore reads and sends UTF-8 (see `target`).
        cmd.args(["--no-password", "--encoding=UTF8"]);
        cmd
    }

    fn start(
        &self,
        mut cmd: tokio::process::Command,
        conn: &ConnInfo,
        tool: &str,
    ) -> Result<(Process, BlockingStdout)> {
        // The password goes through the environment, never the command line (visible in ps).
        match conn.password() {
            Some(p) => cmd.env("PGPASSWORD", p),
            None => cmd.env_remove("PGPASSWORD"),
        };
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        let (process, pipes) = Process::spawn(
            cmd,
            format!("{tool} `{}`", self.path.display()),
            &format!("fix what {tool} reported and run the backup again"),
        )?;
        let stdout = pipes.stdout.context("the dump's stdout")?;
        // pg_dump writes in small chunks; with Linux's default 64 KiB pipe, a profile showed
        // ~10% of a backup's CPU in pipe wake-ups. 1 MiB (the default pipe-max-size) lets both
        // sides batch.
        Ok((process, stdout.blocking(Some(1 << 20))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_server_and_pg_dump_text() {
        assert_eq!(
            PgVersion::parse("15.18 (Debian 15.18-0+deb12u1)"),
            Some(PgVersion(150018))
        );
        assert_eq!(PgVersion::parse("17.2"), Some(PgVersion(170002)));
        assert_eq!(PgVersion::parse("16beta2"), Some(PgVersion(160000)));
        assert_eq!(PgVersion::parse("9.6.24"), Some(PgVersion(90624)));
        assert_eq!(
            PgVersion::parse("pg_dump (PostgreSQL) 13.4"),
            Some(PgVersion(130004))
        );
        assert_eq!(PgVersion::parse("garbage"), None);
        assert_eq!(PgVersion(90624).major(), 906);
        assert_eq!(PgVersion(90624).major_text(), "9.6");
        assert_eq!(PgVersion(170002).major_text(), "17");
    }

    #[test]
    fn installed_choice_prefers_match_then_newest_newer() {
        let installed = vec![
            (14, PathBuf::from("/p/14")),
            (17, PathBuf::from("/p/17")),
            (16, PathBuf::from("/p/16")),
        ];
        assert_eq!(pick_installed(16, &installed), Some(PathBuf::from("/p/16")));
        assert_eq!(pick_installed(15, &installed), Some(PathBuf::from("/p/17")));
        assert_eq!(pick_installed(13, &installed), Some(PathBuf::from("/p/17")));
        assert_eq!(pick_installed(18, &installed), None);
    }
}
