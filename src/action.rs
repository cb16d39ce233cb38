//! GitHub Actions workflow commands this tool emits. For now: masking secrets, which must
//! happen before anything else can print them.

/// True when running inside a GitHub Actions job.
pub fn in_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// Asks the runner to mask `secret` in every log line from now on (`::add-mask::`). A no-op
/// outside Actions and for empty values.
pub fn mask(secret: &str) {
    if in_actions() && !secret.trim().is_empty() {
        // The runner masks each line of a multi-line value separately.
        for line in secret.lines().filter(|l| !l.trim().is_empty()) {
            println!("::add-mask::{line}");
        }
    }
}
