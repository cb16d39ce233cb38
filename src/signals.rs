//! SIGINT and SIGTERM as a stop request. `main` waits for the first signal and records it here;
//! every command then stops where it is safe to: `backup` aborts its upload, `prune` ends after
//! the delete batch in flight, and the read-only commands and `restore` (whose transaction rolls
//! back) are dropped at once. `main` gives a command [`GRACE`] to do so, then drops it.

use anyhow::{Context, Result};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Mutex;
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

/// A request a stop cannot take back, sent and not yet answered (a CompleteMultipartUpload, a
/// restore's COMMIT, a batch of deletions): what `main` says, and prints on stdout, if the grace
/// runs out while it is in flight. Commands nest them (backup's retention deletes old backups
/// after the backup is complete): the outermost comes first.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    pub message: String,
    pub stdout: Vec<String>,
}

/// (guard id, irrevocable, what it reports).
static PENDING: Mutex<Vec<(u64, bool, Pending)>> = Mutex::new(Vec::new());
static NEXT_PENDING: AtomicU64 = AtomicU64::new(1);

/// Clears its [`Pending`] when dropped.
#[must_use = "the request is pending only while the guard lives"]
pub struct PendingGuard(u64);

impl PendingGuard {
    /// Replaces what this guard reports (prune, after each batch).
    pub fn update(&self, pending: Pending) {
        let mut all = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = all.iter_mut().find(|(id, _, _)| *id == self.0) {
            slot.2 = pending;
        }
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut all = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|(id, _, _)| *id != self.0);
    }
}

/// Marks an irrevocable request as in flight until the guard is dropped. While any is, a stop
/// does not drop the work in [`or_stop`]: it is left to finish, within `main`'s grace.
pub fn pending(message: impl Into<String>, stdout: Vec<String>) -> PendingGuard {
    push(true, message.into(), stdout)
}

/// What is already done (a backup that is complete), said before whatever is in flight if the
/// grace runs out; unlike [`pending`], it lets [`or_stop`] drop the work.
pub fn context(message: impl Into<String>) -> PendingGuard {
    push(false, message.into(), Vec::new())
}

fn push(irrevocable: bool, message: String, stdout: Vec<String>) -> PendingGuard {
    let id = NEXT_PENDING.fetch_add(1, Ordering::SeqCst);
    PENDING.lock().unwrap_or_else(|e| e.into_inner()).push((
        id,
        irrevocable,
        Pending { message, stdout },
    ));
    PendingGuard(id)
}

fn irrevocable_in_flight() -> bool {
    PENDING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|(_, irrevocable, _)| *irrevocable)
}

/// Everything in flight, outermost first, as one report; `None` when nothing is.
pub fn in_flight() -> Option<Pending> {
    let all = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    if all.is_empty() {
        return None;
    }
    Some(Pending {
        message: all
            .iter()
            .map(|(_, _, p)| p.message.as_str())
            .filter(|m| !m.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
        stdout: all.iter().flat_map(|(_, _, p)| p.stdout.clone()).collect(),
    })
}

/// Runs `work` unless a stop is requested first; then the work is dropped (for a restore, its
/// connection closes and the server rolls the transaction back) and the error says `what`. A
/// stop that comes while an irrevocable request is in flight ([`pending`]) does not drop it:
/// the work goes on, and `main` reports what was in flight if its grace runs out.
pub async fn or_stop<T>(
    work: impl std::future::Future<Output = Result<T>>,
    what: &'static str,
) -> Result<T> {
    tokio::pin!(work);
    let sig = tokio::select! {
        r = &mut work => return r,
        sig = stopped() => sig,
    };
    if irrevocable_in_flight() {
        return work.await;
    }
    Err(anyhow::Error::new(crate::error::Interrupted(sig)).context(what))
}
