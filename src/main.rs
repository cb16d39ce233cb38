//! Entry point: parse flags, run the command, print the error once, map it to the exit code
//! (0 ok, 1 operation failed, 2 usage or configuration, 130/143 interrupted).

use clap::Parser;
use pg_s3_backup::{action, cli, commands, error, output, signals};

fn main() {
    fix_malloc();
    let code = match run() {
        Ok(()) => 0,
        Err(err) => {
            let line = error::one_line(&err);
            action::error(&line);
            error::exit_code(&err)
        }
    };
    std::process::exit(code);
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    action::mask_known_secrets(&args);
    let args = action::with_inputs(args)?;
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version; a closed pipe (`--help | head`) is not an error.
            use std::io::Write;
            let _ = write!(std::io::stdout(), "{}", e.render());
            return Ok(());
        }
        Err(e) => return Err(error::UsageError(clap_one_line(&e)).into()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let mut signals = signals::Signals::install()?;
        let (mut command, cooperates) = match &cli.command {
            cli::Command::Backup(args) => (boxed(commands::backup::run(args)), true),
            cli::Command::Prune(args) => (boxed(commands::prune::run(args)), true),
            cli::Command::List(args) => (
                boxed(signals::or_stop(
                    commands::list::run(args),
                    "listing stopped",
                )),
                false,
            ),
            cli::Command::Restore(args) => (
                boxed(signals::or_stop(
                    commands::restore::run(args),
                    if args.target_url.is_some() {
                        "the restore's transaction was rolled back: nothing was restored"
                    } else {
                        "the restore to stdout was stopped: what was written is incomplete"
                    },
                )),
                false,
            ),
            cli::Command::Verify(args) => (
                boxed(signals::or_stop(
                    commands::verify::run(args),
                    "verify stopped",
                )),
                false,
            ),
            cli::Command::Check(args) => (
                boxed(signals::or_stop(
                    commands::check::run(args),
                    "check stopped",
                )),
                false,
            ),
            cli::Command::Policy(args) => return commands::policy::run(args),
        };
        let sig = tokio::select! {
            result = &mut command => return result,
            sig = signals.recv() => sig,
        };
        // `backup` aborts its upload and `prune` finishes the delete batch in flight; both then
        // return their own Interrupted error, naming what was done. A request that cannot be
        // taken back (a commit, a deletion) is left to finish. Past the grace, or at a second
        // signal, what was in flight is reported as such; if the command finished anyway, the
        // answer is still "interrupted".
        signals::request_stop(sig);
        let interrupted = || anyhow::Error::new(error::Interrupted(sig));
        // `command` stays alive until what it has in flight is read: its guards say what.
        let finished = tokio::select! {
            r = tokio::time::timeout(signals::GRACE, &mut command) => r.ok(),
            _ = signals.recv() => None,
        };
        match finished {
            Some(Err(e)) => Err(e),
            Some(Ok(())) => {
                Err(interrupted().context("stopped as it finished: what it printed is complete"))
            }
            None => match signals::in_flight() {
                Some(pending) => {
                    for line in &pending.stdout {
                        output::data_line(line);
                    }
                    Err(interrupted().context(pending.message))
                }
                None if cooperates => Err(interrupted().context(
                    "stopped before it finished cleaning up: run it again, or prune, to finish",
                )),
                None => Err(interrupted()),
            },
        }
    });
    // Blocking-pool threads still stuck (a write to a pipe nobody reads, a DNS lookup) must not
    // hold the exit: the process ends right after.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    result
}

fn boxed<'a>(
    f: impl std::future::Future<Output = anyhow::Result<()>> + 'a,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + 'a>> {
    Box::pin(f)
}

/// clap's message without the usage block, on one line.
fn clap_one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:"))
        .filter(|l| !l.is_empty())
        .collect();
    format!(
        "{}: see --help",
        lines.join(" ").trim_start_matches("error: ")
    )
}

/// glibc's malloc tuning, fixed at start.
/// - mmap threshold 1 MiB: glibc raises the threshold after the first large buffer is freed, so
///   later part buffers (5 MiB and more) would come from per-thread arenas that keep the memory
///   (measured 62-70 MiB peak instead of 50 MiB on a 160 MiB stream). Fixed, they stay mmapped
///   and go back to the OS on free. Below 1 MiB (block buffers, each worker's compressor state)
///   the heap reuses memory instead of mapping and faulting it in again.
/// - trim threshold 16 MiB: freed heap memory is kept for the next block instead of being
///   returned and faulted back in.
///
/// Measured on the 700 MB benchmark dump from a file (3 runs each): 131k minor faults and
/// 0.87-1.08 s system time with a 256 KiB threshold and the default trim; 22k faults and
/// 0.63-0.76 s with these, for 6-8 MiB more peak RSS (36-38 MiB).
fn fix_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 * 1024 * 1024);
    }
}
