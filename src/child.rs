//! A child process's stderr (pg_dump, psql, pg_restore): drained concurrently, since a full
//! pipe stalls the child; forwarded line by line through `output`, which makes the text inert
//! (a table name can hold a newline and a workflow command); and its last lines kept for the
//! error message when the child fails.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Lines of stderr kept for the error message.
const TAIL_LINES: usize = 20;

/// The drained stderr of one child: wait for [`Stderr::finish`] after the child exited.
pub struct Stderr {
    tail: Arc<Mutex<VecDeque<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Stderr {
    /// Starts draining `stderr`; `forward` prints each line as it arrives.
    pub fn drain<R: AsyncRead + Unpin + Send + 'static>(stderr: R, forward: bool) -> Self {
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let kept = tail.clone();
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
                buf.clear();
            }
        });
        Self { tail, task }
    }

    /// Waits for EOF (the child has exited and closed stderr) and returns the last lines joined
    /// with ` | `, or `no output on stderr`.
    pub async fn finish(mut self) -> String {
        let _ = (&mut self.task).await;
        self.tail_text()
    }

    /// The last lines so far, without waiting.
    pub fn tail_text(&self) -> String {
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
pub fn describe_status(status: std::process::ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => {
            use std::os::unix::process::ExitStatusExt;
            format!("was killed by signal {}", status.signal().unwrap_or(0))
        }
    }
}
