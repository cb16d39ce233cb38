//! Error kinds that decide the process exit code, and the error-chain helpers. Messages are
//! built where the error is found (what was wrong, the value, the fix). Errors a caller matches
//! on are `thiserror` types in their modules (`store::Denied`, `process::Failed`,
//! `compress::SelfCheckFailed`, `sql_script::Refused`); the rest travel as `anyhow` context.

/// A usage or configuration error: exit code 2, and nothing has been changed anywhere.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Shorthand for returning a [`UsageError`] from a function that returns `anyhow::Result`.
macro_rules! usage {
    ($($arg:tt)*) => {
        ::anyhow::Error::new($crate::error::UsageError(format!($($arg)*)))
    };
}
pub(crate) use usage;

/// The run was stopped by a signal; exit code is 128 + signal number (130 for SIGINT, 143 for SIGTERM).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("interrupted by {}", signal_name(*.0))]
pub struct Interrupted(pub i32);

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// Maps an error chain to the process exit code: 2 usage, 128+n signal, 1 anything else.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if cause.is::<UsageError>() {
            return 2;
        }
        if let Some(Interrupted(sig)) = cause.downcast_ref::<Interrupted>() {
            return 128 + sig;
        }
    }
    1
}

/// Renders the error chain on one line: `context: cause: root cause`, without repeats.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// The innermost message of an error chain (the concrete I/O or protocol failure).
pub fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    cause
}
