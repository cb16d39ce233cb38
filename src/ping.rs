//! Health-check pings, the healthchecks.io protocol: POST `URL/start` when a backup begins, `URL`
//! with the JSON outcome when it succeeded, `URL/fail` with the error line when it failed. Each
//! ping gets 10 s and one retry; one that still fails is a warning and never changes the
//! backup's outcome. The URL is a secret (whoever has it can report for the job): no message
//! shows more of it than its host.

use crate::config::PingUrl;
use crate::{output, signals};
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
    /// `None` when no client could be built (no TLS roots, say): every ping then only warns.
    http: Option<reqwest::Client>,
}

impl Pinger {
    pub fn new(url: &PingUrl) -> Self {
        // No redirect is followed: the protocol has none, and following one would send the
        // body (and, as `Referer`, the URL with its token) to wherever the answer points.
        let http = reqwest::Client::builder()
            .user_agent(concat!("pg-s3-backup/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .build()
            .ok();
        Self {
            url: url.clone(),
            http,
        }
    }

    /// Given up at a stop: the backup then stops at once and sends `/fail`.
    pub async fn start(&self) {
        self.send("start", "", "text/plain", timeout(), 2).await;
    }

    /// `outcome` is the backup's JSON outcome. Given up at a stop.
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

    /// Up to `attempts` tries of `limit` each. Unless a stop was already requested when it
    /// began, a stop ends it: `main` gives the command only `signals::GRACE` to end, so a
    /// `/fail` then gets one short attempt, and the other pings are given up.
    async fn send(
        &self,
        suffix: &str,
        body: &str,
        content_type: &str,
        limit: Duration,
        attempts: u32,
    ) {
        let what = if suffix.is_empty() { "success" } else { suffix };
        let Some(http) = &self.http else {
            return self.warn(what, "no HTTP client could be set up (TLS)");
        };
        let stoppable = signals::stop_requested().is_none();
        let attempt = |limit: Duration| {
            http.post(self.url.with(suffix))
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .timeout(limit)
                .body(body.to_string())
                .send()
        };
        let mut last = String::new();
        for _ in 0..attempts {
            let answer = if stoppable {
                tokio::select! {
                    r = attempt(limit) => r,
                    _ = signals::stopped() => {
                        if suffix != "fail" {
                            return self.warn(what, "not sent: the run was stopped");
                        }
                        match attempt(STOPPED_TIMEOUT).await {
                            Ok(a) if a.status().is_success() => return,
                            r => return self.warn(what, &why(r, STOPPED_TIMEOUT)),
                        }
                    }
                }
            } else {
                attempt(limit).await
            };
            match answer {
                Ok(a) if a.status().is_success() => return,
                r => last = why(r, limit),
            }
        }
        self.warn(what, &last);
    }

    fn warn(&self, what: &str, last: &str) {
        output::warn(format_args!(
            "the health-check ping ({what}) to {} failed: {last}; the backup's outcome is unchanged: check --ping-url and that the monitor is reachable",
            self.url.shown()
        ));
    }
}

/// Why an attempt failed, without reqwest's error text (it names the URL).
fn why(r: reqwest::Result<reqwest::Response>, limit: Duration) -> String {
    match r {
        Ok(a) if a.status().is_redirection() => format!(
            "it answered HTTP {} (a redirect, not followed: give the URL it points to)",
            a.status().as_u16()
        ),
        Ok(a) => format!("it answered HTTP {}", a.status().as_u16()),
        Err(e) if e.is_timeout() => format!("no answer within {} s", limit.as_secs()),
        Err(e) if e.is_connect() => "cannot connect".into(),
        Err(_) => "the request failed".into(),
    }
}
