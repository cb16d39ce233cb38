//! Progress on stderr while a backup runs: a progress bar on a terminal (registered with
//! `output`, so messages print above it instead of through it), otherwise one line every 10
//! seconds (CI logs). Counts are shared atomics updated by the pipeline's stages.

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Interval between plain progress lines when stderr is not a terminal.
const LINE_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct Counters {
    raw: AtomicU64,
    compressed: AtomicU64,
    parts: AtomicU64,
}

impl Counters {
    pub fn add_raw(&self, n: u64) {
        self.raw.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_compressed(&self, n: u64) {
        self.compressed.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_part(&self) {
        self.parts.fetch_add(1, Ordering::Relaxed);
    }
    pub fn raw(&self) -> u64 {
        self.raw.load(Ordering::Relaxed)
    }
    pub fn compressed(&self) -> u64 {
        self.compressed.load(Ordering::Relaxed)
    }
    pub fn parts(&self) -> u64 {
        self.parts.load(Ordering::Relaxed)
    }

    fn line(&self, elapsed: Duration) -> String {
        let (raw, compressed) = (self.raw(), self.compressed());
        let ratio = if compressed == 0 {
            0.0
        } else {
            raw as f64 / compressed as f64
        };
        let rate = raw as f64 / elapsed.as_secs_f64().max(0.001) / 1e6;
        format!(
            "dumped {}, compressed {} (ratio {ratio:.1}), {rate:.1} MB/s, {} parts uploaded",
            HumanBytes(raw),
            HumanBytes(compressed),
            self.parts()
        )
    }
}

/// Reports until dropped.
pub struct Reporter {
    task: tokio::task::JoinHandle<()>,
    bar: bool,
}

impl Reporter {
    pub fn start(counters: Arc<Counters>) -> Self {
        let started = Instant::now();
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                    .expect("valid template"),
            );
            let b = bar.clone();
            crate::output::set_bar(bar);
            let task = tokio::spawn(async move {
                loop {
                    b.set_message(counters.line(started.elapsed()));
                    b.tick();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
            Self { task, bar: true }
        } else {
            let task = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LINE_INTERVAL).await;
                    crate::output::note(format_args!(
                        "progress: {}",
                        counters.line(started.elapsed())
                    ));
                }
            });
            Self { task, bar: false }
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.task.abort();
        if self.bar {
            crate::output::clear_bar();
        }
    }
}
