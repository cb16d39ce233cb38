//! A child process (pg_dump, pg_restore) on ripgrep's `CommandReader` model: its stdout is a
//! reader whose end is the child's verdict (EOF only after exit status 0, else an error with
//! stderr's tail), and its stderr is always drained on a task of its own, since a full pipe
//! stalls the child. Each stderr line is forwarded through `output`, which makes the text inert
//! (a table name can hold a newline and a workflow command). Dropping the process kills the
//! child. It knows nothing of what the child is for.

use anyhow::{Context, Result};
use std::collections::VecDeque;
use std::io::Read;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout, Command};
use tokio::sync::{oneshot, watch};

/// Lines of stderr kept for the error message.
const TAIL_LINES: usize = 20;
/// How long stderr may stay open and silent after the child exited before its verdict is given
/// anyway.
const STDERR_AFTER_EXIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A child that did not exit 0: who, how it ended, what it said last, and what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} {status}: {tail}; {fix}")]
pub struct Failed {
    /// `pg_dump `/usr/lib/postgresql/15/bin/pg_dump``.
    pub what: String,
    /// `exited with status 3`, `was killed by signal 9`.
    pub status: String,
    /// The last lines of its stderr, joined with ` | `.
    pub tail: String,
    pub fix: String,
}

type Exit = std::result::Result<(), Failed>;

/// A running child. Its verdict comes from [`Process::wait`], or from the end of its stdout.
pub struct Process {
    what: String,
    exit: watch::Receiver<Option<Exit>>,
    /// Dropped or sent: the child is killed.
    kill: Option<oneshot::Sender<()>>,
}

/// The pipes the command asked for.
pub struct Pipes {
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<Stdout>,
}

impl Process {
    /// Starts `cmd` with stderr drained; `what` names it in messages and `fix` says what to do
    /// when it fails. Pipes for stdin and stdout are the caller's to ask for on `cmd`.
    pub fn spawn(cmd: Command, what: String, fix: &str) -> Result<(Self, Pipes)> {
        Self::spawn_with(cmd, what, fix, true)
    }

    /// [`Process::spawn`], with stderr's lines forwarded or only kept for the tail.
    fn spawn_with(
        mut cmd: Command,
        what: String,
        fix: &str,
        forward: bool,
    ) -> Result<(Self, Pipes)> {
        cmd.stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        let stderr = Stderr::drain(child.stderr.take().context("child stderr")?, forward);
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        let (exit_tx, exit) = watch::channel(None);
        let (kill, killed) = oneshot::channel::<()>();
        let (label, fix) = (what.clone(), fix.to_string());
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                // Sent or dropped (the process was dropped): either way the child must go.
                _ = killed => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            // stderr reaches EOF once the child has exited, unless a process it started still
            // holds it (a wrapper's background job): then the tail so far is the tail.
            let tail = stderr.finish(STDERR_AFTER_EXIT).await;
            let exit = match status {
                Ok(status) if status.success() => Ok(()),
                Ok(status) => Err(Failed {
                    what: label,
                    status: describe_status(status),
                    tail,
                    fix,
                }),
                Err(e) => Err(Failed {
                    what: label,
                    status: format!("could not be waited for ({e})"),
                    tail,
                    fix,
                }),
            };
            let _ = exit_tx.send(Some(exit));
        });
        let pipes = Pipes {
            stdin,
            stdout: stdout.map(|out| Stdout {
                out,
                exit: exit.clone(),
                what: what.clone(),
            }),
        };
        Ok((
            Self {
                what,
                exit,
                kill: Some(kill),
            },
            pipes,
        ))
    }

    /// Kills the child (SIGKILL) when the rest of the pipeline has already failed.
    pub fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }

    /// Waits for the child to exit: anything but status 0 is [`Failed`].
    pub async fn wait(&self) -> Exit {
        verdict(&mut self.exit.clone(), &self.what).await
    }
}

async fn verdict(exit: &mut watch::Receiver<Option<Exit>>, what: &str) -> Exit {
    match exit.wait_for(Option::is_some).await {
        Ok(exit) => exit.clone().expect("waited for Some"),
        // The waiting task is gone only when the runtime shuts down.
        Err(_) => Err(Failed {
            what: what.to_string(),
            status: "was stopped".into(),
            tail: "the process is shutting down".into(),
            fix: "run again".into(),
        }),
    }
}

/// A child's stdout whose end is the child's exit status.
pub struct Stdout {
    out: ChildStdout,
    exit: watch::Receiver<Option<Exit>>,
    what: String,
}

impl Stdout {
    /// Reads like `AsyncRead::read`; 0 only once the child exited 0.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        let n = self
            .out
            .read(buf)
            .await
            .with_context(|| format!("reading the output of {}", self.what))?;
        if n == 0 && !buf.is_empty() {
            verdict(&mut self.exit, &self.what).await?;
        }
        Ok(n)
    }

    /// The same stream as a blocking reader, for a thread off the runtime (the compressor).
    /// `grow` sets the pipe's buffer size first.
    pub fn blocking(self, grow: Option<i32>) -> Result<BlockingStdout> {
        let fd = self.out.into_owned_fd()?;
        if let Some(size) = grow {
            use std::os::fd::AsRawFd;
            // SAFETY: F_SETPIPE_SZ on a pipe fd we own; failure only leaves the default size.
            unsafe {
                libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size);
            }
        }
        Ok(BlockingStdout {
            file: fd.into(),
            exit: self.exit,
            what: self.what,
            runtime: tokio::runtime::Handle::current(),
        })
    }
}

/// [`Stdout`] for a blocking thread: `read` returns 0 only once the child exited 0, and the
/// child's failure as an `io::Error` holding [`Failed`] (see [`failure`]).
pub struct BlockingStdout {
    file: std::fs::File,
    exit: watch::Receiver<Option<Exit>>,
    what: String,
    runtime: tokio::runtime::Handle,
}

impl Read for BlockingStdout {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        if n == 0 && !buf.is_empty() {
            // Not a runtime thread: blocking on the verdict is allowed here.
            let exit = self.runtime.block_on(verdict(&mut self.exit, &self.what));
            exit.map_err(std::io::Error::other)?;
        }
        Ok(n)
    }
}

/// The child's failure inside an `io::Error` from [`BlockingStdout`], if that is what it is.
pub fn failure(err: &std::io::Error) -> Option<&Failed> {
    err.get_ref().and_then(|e| e.downcast_ref::<Failed>())
}

/// The drained stderr of one child: wait for [`Stderr::finish`] after the child exited.
struct Stderr {
    tail: Arc<Mutex<VecDeque<String>>>,
    /// Lines drained so far: the drain is alive while this moves.
    lines: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Stderr {
    /// Starts draining `stderr`; `forward` prints each line as it arrives.
    fn drain<R: AsyncRead + Unpin + Send + 'static>(stderr: R, forward: bool) -> Self {
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let kept = tail.clone();
        let lines = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = lines.clone();
        let task = tokio::spawn(async move {
            let mut reader = BufReader::new(stderr);
            let mut buf = Vec::new();
            // Bytes, not lines of UTF-8: a child's message in another encoding must not end the
            // drain (and stall the child).
            while let Ok(n) = reader.read_until(b'\n', &mut buf).await {
                if n == 0 {
                    break;
                }
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']);
                if forward {
                    crate::output::forward(line);
                }
                let mut tail = kept.lock().unwrap_or_else(|e| e.into_inner());
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line.to_string());
                drop(tail);
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                buf.clear();
            }
        });
        Self { tail, lines, task }
    }

    /// Waits for EOF (the child has exited and closed stderr) and returns the last lines joined
    /// with ` | `, or `no output on stderr`. Stops waiting once no line came for `idle`: a
    /// process the child started may hold stderr open for ever, while a drain that is merely
    /// behind (a slow log reader) keeps moving and is waited for, so the last line (pg_dump's
    /// fatal one) is not lost.
    async fn finish(mut self, idle: std::time::Duration) -> String {
        loop {
            let before = self.lines.load(std::sync::atomic::Ordering::Relaxed);
            if tokio::time::timeout(idle, &mut self.task).await.is_ok() {
                break;
            }
            if self.lines.load(std::sync::atomic::Ordering::Relaxed) == before {
                break;
            }
        }
        self.tail_text()
    }

    /// The last lines so far, without waiting.
    fn tail_text(&self) -> String {
        let tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        if tail.is_empty() {
            "no output on stderr".into()
        } else {
            tail.iter().cloned().collect::<Vec<_>>().join(" | ")
        }
    }
}

impl Drop for Stderr {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a child ended, for messages: `exited with status 3`, `was killed by signal 9`.
fn describe_status(status: std::process::ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => {
            use std::os::unix::process::ExitStatusExt;
            format!("was killed by signal {}", status.signal().unwrap_or(0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        cmd
    }

    /// Reads everything on a blocking thread, as the compressor does.
    async fn read_blocking(stdout: Stdout) -> (Vec<u8>, std::io::Result<()>) {
        let mut reader = stdout.blocking(None).unwrap();
        tokio::task::spawn_blocking(move || {
            let mut data = Vec::new();
            let result = reader.read_to_end(&mut data).map(drop);
            (data, result)
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_end_of_stdout_is_the_exit_status() {
        let (p, pipes) =
            Process::spawn_with(sh("printf data; echo ok >&2"), "sh".into(), "fix", false).unwrap();
        let (data, end) = read_blocking(pipes.stdout.unwrap()).await;
        assert_eq!(data, b"data");
        end.unwrap();
        p.wait().await.unwrap();

        let script = "printf part; echo 'first line' >&2; echo 'no space left' >&2; exit 3";
        let (p, pipes) =
            Process::spawn_with(sh(script), "sh `x`".into(), "free some space", false).unwrap();
        let (data, end) = read_blocking(pipes.stdout.unwrap()).await;
        assert_eq!(data, b"part", "the data before the failure is delivered");
        let err = end.unwrap_err();
        let failed = failure(&err).expect("the child's failure, not another I/O error");
        assert_eq!(failed.status, "exited with status 3");
        assert_eq!(
            err.to_string(),
            "sh `x` exited with status 3: first line | no space left; free some space"
        );
        assert_eq!(
            p.wait().await.unwrap_err().tail,
            "first line | no space left"
        );
    }

    #[tokio::test]
    async fn the_async_reader_fails_at_the_end_of_a_failed_child() {
        let (_p, pipes) =
            Process::spawn_with(sh("printf abc; exit 1"), "sh".into(), "fix", false).unwrap();
        let mut stdout = pipes.stdout.unwrap();
        let mut buf = [0u8; 16];
        let mut data = Vec::new();
        let err = loop {
            match stdout.read(&mut buf).await {
                Ok(0) => panic!("a clean end from a child that exited 1"),
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
        };
        assert_eq!(data, b"abc");
        assert!(
            err.to_string()
                .contains("exited with status 1: no output on stderr; fix"),
            "{err}"
        );
    }

    /// A child that exits while a process it started keeps stderr open still gets its verdict.
    #[tokio::test]
    async fn a_grandchild_holding_stderr_does_not_delay_the_verdict_for_long() {
        let script = "echo 'before the end' >&2; sleep 30 & exit 4";
        let (p, _pipes) = Process::spawn_with(sh(script), "sh".into(), "fix", false).unwrap();
        let err = tokio::time::timeout(std::time::Duration::from_secs(10), p.wait())
            .await
            .expect("the verdict comes though stderr stays open")
            .unwrap_err();
        assert_eq!(err.status, "exited with status 4");
        assert_eq!(err.tail, "before the end");
    }

    #[tokio::test]
    async fn kill_and_drop_stop_the_child_and_stderr_never_stalls_it() {
        // 1 MiB of stderr, more than a pipe holds: it exits only if stderr is drained.
        let noisy = "head -c 1048576 /dev/zero | tr '\\0' 'x' >&2; exit 0";
        let (p, _pipes) = Process::spawn_with(sh(noisy), "sh".into(), "fix", false).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(20), p.wait())
            .await
            .expect("a child writing much to stderr finishes")
            .unwrap();
        let (mut p, _pipes) =
            Process::spawn_with(sh("sleep 30"), "sh".into(), "fix", false).unwrap();
        p.kill();
        let err = p.wait().await.unwrap_err();
        assert_eq!(err.status, "was killed by signal 9");
        // Dropped: the child is killed, not left running.
        let (p, pipes) =
            Process::spawn_with(sh("echo $$; sleep 30"), "sh".into(), "fix", false).unwrap();
        let mut stdout = pipes.stdout.unwrap();
        let mut buf = [0u8; 32];
        let n = stdout.read(&mut buf).await.unwrap();
        let pid: i32 = std::str::from_utf8(&buf[..n])
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        drop(p);
        drop(stdout);
        let gone = async {
            // SAFETY: signal 0 only asks whether the process exists.
            while unsafe { libc::kill(pid, 0) } == 0 {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                if stat.split_whitespace().nth(2) == Some("Z") {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), gone)
            .await
            .expect("a dropped process's child is killed");
    }
}
