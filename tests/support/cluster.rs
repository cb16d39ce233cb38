//! A PostgreSQL cluster of a test's own: a fresh `initdb`, started on a free port on 127.0.0.1,
//! for tests that must not share (or might break) the server `scripts/services` starts. Like
//! that script it runs initdb and pg_ctl as the `postgres` OS user (tests run as root, and
//! initdb refuses root), with the binaries `Pg::bin` finds.

use super::{unique, Pg};
use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Start attempts, each on a new free port, before losing the race for a port is a failure.
const ATTEMPTS: u32 = 5;

/// A running throwaway cluster; dropping it stops the server and deletes everything it wrote.
pub struct Cluster {
    /// `/tmp/pgs3-cluster-PID-N`, private to `postgres` (mode 0700): `data/`, `postgres.log`
    /// and the unix socket.
    dir: PathBuf,
    port: u16,
    /// Resolved at the start, so that dropping never depends on the environment.
    pg_ctl: PathBuf,
}

impl Cluster {
    /// Creates a cluster (superuser `postgres`, UTF8, locale C.UTF-8, `initdb --no-sync`) that
    /// trusts every connection, over its unix socket or TCP: it listens on 127.0.0.1 only, and
    /// [`Cluster::url`] has no password. Then starts it, tuned for speed (fsync off, 16 MB of
    /// shared buffers, 20 connections), on a free port, on a new one if another process takes
    /// the port first. Panics with the tail of initdb's output or of the server log on failure,
    /// after stopping and deleting whatever it started.
    pub fn start() -> Cluster {
        let initdb = Pg::bin("initdb");
        let pg_ctl = Pg::bin("pg_ctl");
        // Not the directory of a killed earlier run whose process had this id.
        let dir = loop {
            let dir = Path::new("/tmp").join(unique("pgs3-cluster"));
            if !dir.exists() {
                break dir;
            }
        };
        // Created by `postgres`, so owned by it; the socket it holds is private.
        run("mkdir", as_postgres("mkdir").args(["-m", "0700"]).arg(&dir));
        // From here on a panic drops `cluster`, which cleans up.
        let mut cluster = Cluster {
            dir,
            port: 0,
            pg_ctl,
        };
        let data = cluster.dir.join("data");
        run(
            "initdb",
            as_postgres(&initdb).arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
                "--no-instructions",
            ]),
        );
        let dir = cluster.dir.to_str().expect("an ASCII path");
        let name = cluster.dir.file_name().unwrap().to_str().unwrap();
        let log = cluster.dir.join("postgres.log");
        let mut attempt = 1;
        loop {
            cluster.port = free_port();
            // pg_ctl hands these to a shell; cluster_name tags the processes in `ps`.
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={} \
                 -c cluster_name={} -c fsync=off -c shared_buffers=16MB -c max_connections=20",
                cluster.port,
                sh_quote(dir),
                sh_quote(name)
            );
            // pg_ctl appends: this attempt's log on its own.
            let _ = std::fs::remove_file(&log);
            let out = as_postgres(&cluster.pg_ctl)
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-o", &options, "start"])
                .output()
                .expect("run pg_ctl");
            if out.status.success() {
                return cluster;
            }
            let server_log = std::fs::read_to_string(&log).unwrap_or_default();
            if attempt == ATTEMPTS || !server_log.contains("Address already in use") {
                panic!(
                    "pg_ctl start on port {} failed ({}, attempt {attempt}): {}\nlast lines of \
                     {}:\n{}",
                    cluster.port,
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim(),
                    log.display(),
                    tail(&server_log)
                );
            }
            attempt += 1;
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`, `db` percent-encoded: no password needed, as
    /// the cluster trusts TCP connections (from 127.0.0.1, the one address it listens on).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}",
            self.port,
            percent_encoding::utf8_percent_encode(db, percent_encoding::NON_ALPHANUMERIC)
        )
    }

    /// The TCP port the server listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new empty directory of `postgres`'s, deleted with the cluster: for a tablespace.
    pub fn directory(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        run("mkdir", as_postgres("mkdir").arg(&path));
        path
    }
}

impl Drop for Cluster {
    /// Stops the server without a checkpoint (`-m immediate`, waiting until it has exited) and
    /// deletes its directory. Errors are ignored: nothing may have been started yet, and a
    /// server that somehow outlives its deleted lock file shuts itself down within a minute.
    fn drop(&mut self) {
        let _ = as_postgres(&self.pg_ctl)
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `program` run as the `postgres` OS user, from /tmp (it may not be able to read the test's
/// working directory).
fn as_postgres(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--"])
        .arg(program)
        .current_dir("/tmp");
    cmd
}

/// Runs `cmd`; panics with the tail of its output if it fails.
#[track_caller]
fn run(what: &str, cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}); last lines of its output:\n{}",
        out.status,
        tail(&format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    );
}

/// A port free on 127.0.0.1 right now; another process may still take it before the server.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// `s` as one word for the shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The last 30 lines of `text`.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
