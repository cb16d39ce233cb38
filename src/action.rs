//! GitHub Actions workflow commands this tool emits. For now: masking secrets, which must
//! happen before anything else can print them.

/// Environment variables whose values are secrets wherever they are set.
const SECRET_ENV: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "PGPASSWORD",
];

/// Masks every secret known at start: the database password and the secret environment
/// variables. Secrets obtained later (ID tokens, STS credentials) are masked when they arrive.
pub fn mask_known_secrets(db_password: Option<&str>) {
    if let Some(p) = db_password {
        mask(p);
    }
    for var in SECRET_ENV {
        if let Ok(v) = std::env::var(var) {
            mask(&v);
        }
    }
}

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
