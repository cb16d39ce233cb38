//! SIGINT and SIGTERM as a stop request. `main` waits for the first signal and records it here;
//! every command then stops where it is safe to: `backup` aborts its upload, `prune` ends after
//! the delete batch in flight, and the read-only commands and `restore` (whose transaction rolls
//! back) are dropped at once. `main` gives a command [`GRACE`] to do so, then drops it.

use anyhow::{Context, Result};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::Notify;

/// How long a command has, after a signal, to stop on its own before it is dropped. A cancelled
/// GitHub job gets SIGINT, then SIGTERM 7.5 s later, then SIGKILL: a backup must have aborted its
/// upload by then, so its abort request gets this long.
pub const GRACE: Duration = Duration::from_secs(4);

static STOP: AtomicI32 = AtomicI32::new(0);
static STOPPED: Notify = Notify::const_new();

pub struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    pub fn install() -> Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    /// Waits for the next signal and returns its number.
    pub async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => libc::SIGINT,
            _ = self.term.recv() => libc::SIGTERM,
        }
    }
}

/// Records a stop request (the first signal wins) and wakes everything waiting in [`stopped`].
pub fn request_stop(sig: i32) {
    let _ = STOP.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    STOPPED.notify_waiters();
}

/// The signal that asked the tool to stop, if one has.
pub fn stop_requested() -> Option<i32> {
    match STOP.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// Resolves with the signal once a stop is requested (at once if it already was).
pub async fn stopped() -> i32 {
    loop {
        let notified = STOPPED.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(sig) = stop_requested() {
            return sig;
        }
        notified.await;
    }
}

/// Runs `work` unless a stop is requested first; then the work is dropped (for a restore, its
/// connection closes and the server rolls the transaction back) and the error says `what`.
pub async fn or_stop<T>(
    work: impl std::future::Future<Output = Result<T>>,
    what: &'static str,
) -> Result<T> {
    tokio::select! {
        r = work => r,
        sig = stopped() => Err(anyhow::Error::new(crate::error::Interrupted(sig)).context(what)),
    }
}
