//! Health-check pings, the healthchecks.io protocol that other monitors (Uptime Kuma's push
//! monitors, Cronitor, Better Stack) accept too: POST `URL/start` when a backup begins, `URL`
//! with the JSON outcome when it succeeded, `URL/fail` with the error line when it failed. Each
//! ping gets 10 s and one retry; one that still fails is a warning and never changes the
//! backup's outcome. The URL is a secret (whoever has it can report for the job): no message
//! shows more of it than its host.

use crate::config::PingUrl;
use crate::output;
use std::time::Duration;

/// Time for one attempt. Debug builds (the tests) take `PGS3_DEBUG_PING_TIMEOUT_SECS`.
fn timeout() -> Duration {
    #[cfg(debug_assertions)]
    if let Some(secs) = std::env::var("PGS3_DEBUG_PING_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return Duration::from_secs(secs);
    }
    Duration::from_secs(10)
}

/// After a signal the command has a few seconds before it is dropped: one short attempt.
const STOPPED_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends the pings of one run.
pub struct Pinger {
    url: PingUrl,
    http: reqwest::Client,
}

impl Pinger {
    pub fn new(url: &PingUrl) -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("pg-s3-backup/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .unwrap_or_default();
        Self {
            url: url.clone(),
            http,
        }
    }

    pub async fn start(&self) {
        self.send("start", "", "text/plain", timeout(), 2).await;
    }

    /// `outcome` is the backup's JSON outcome.
    pub async fn success(&self, outcome: &str) {
        self.send("", outcome, "application/json", timeout(), 2)
            .await;
    }

    /// `line` is the error line the run printed; `stopped` (a signal) gets one short attempt.
    pub async fn fail(&self, line: &str, stopped: bool) {
        let (limit, attempts) = if stopped {
            (STOPPED_TIMEOUT, 1)
        } else {
            (timeout(), 2)
        };
        self.send("fail", line, "text/plain; charset=utf-8", limit, attempts)
            .await;
    }

    async fn send(
        &self,
        suffix: &str,
        body: &str,
        content_type: &str,
        limit: Duration,
        attempts: u32,
    ) {
        let what = if suffix.is_empty() { "success" } else { suffix };
        let mut last = String::new();
        for _ in 0..attempts {
            let request = self
                .http
                .post(self.url.with(suffix))
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .timeout(limit)
                .body(body.to_string());
            match request.send().await {
                Ok(answer) if answer.status().is_success() => return,
                Ok(answer) => last = format!("it answered HTTP {}", answer.status().as_u16()),
                // reqwest's error text names the URL: only its kind is shown.
                Err(e) if e.is_timeout() => {
                    last = format!("no answer within {} s", limit.as_secs())
                }
                Err(e) if e.is_connect() => last = "cannot connect".into(),
                Err(_) => last = "the request failed".into(),
            }
        }
        output::warn(format_args!(
            "the health-check ping ({what}) to {} failed: {last}; the backup's outcome is unchanged: check --ping-url and that the monitor is reachable",
            self.url.shown()
        ));
    }
}
