//! "Now", judged by two clocks. The runner's clock is not trusted alone: a runner whose clock
//! runs far ahead would write keys from the future, and one such key (planted by anyone with
//! s3:PutObject on the prefix) would otherwise be "the newest backup" for every keep rule,
//! `check` and `restore --latest`. The store's clock, read from the `Date` header of its
//! responses, is the second opinion: a key later than now plus [`TOLERANCE`] is from the
//! future, and a runner that disagrees with the store by more than that writes and deletes
//! nothing. It does not decide what to do with such keys; the commands do.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Mutex;
use std::time::Instant;

/// How far the two clocks may disagree, and how far in the future a key may lie, before it
/// counts. S3 itself refuses requests signed more than 15 minutes off (RequestTimeTooSkewed);
/// NTP keeps honest clocks within a second.
pub const TOLERANCE: TimeDelta = TimeDelta::minutes(5);

/// The store's `Date` from its latest response, and when it arrived (monotonic, so the runner's
/// wall clock cannot move it).
static STORE: Mutex<Option<(DateTime<Utc>, Instant)>> = Mutex::new(None);

/// The two clocks at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub runner: DateTime<Utc>,
    /// `None` until the store has answered (or when it sends no `Date`).
    pub store: Option<DateTime<Utc>>,
}

impl Now {
    /// Reads both clocks now.
    pub fn read() -> Self {
        let store = STORE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|(date, seen)| {
                date + TimeDelta::from_std(seen.elapsed()).unwrap_or(TimeDelta::zero())
            });
        Self {
            runner: Utc::now(),
            store,
        }
    }

    /// The time to judge by: the store's where known (it is the clock the objects were stored
    /// by), else the runner's.
    pub fn reference(&self) -> DateTime<Utc> {
        self.store.unwrap_or(self.runner)
    }

    /// True when `time` lies beyond now (the [`reference`](Self::reference)) plus the
    /// tolerance: a runner whose clock runs ahead cannot make its own future current.
    pub fn is_future(&self, time: DateTime<Utc>) -> bool {
        time > self.reference() + TOLERANCE
    }

    /// `Err` with a one-line explanation when the runner's clock is more than the tolerance off
    /// the store's.
    pub fn check_skew(&self) -> Result<(), String> {
        let Some(store) = self.store else {
            return Ok(());
        };
        let skew = self.runner - store;
        if skew.abs() <= TOLERANCE {
            return Ok(());
        }
        let direction = if skew > TimeDelta::zero() {
            "ahead of"
        } else {
            "behind"
        };
        Err(format!(
            "this machine's clock ({}) is {} {direction} the S3 store's ({}), more than the {} minutes allowed: fix the clock (NTP) and run again",
            self.runner.format("%Y-%m-%dT%H:%M:%SZ"),
            human(skew.abs()),
            store.format("%Y-%m-%dT%H:%M:%SZ"),
            TOLERANCE.num_minutes()
        ))
    }
}

/// `3h 2m`, `45m`, `12d 3h`, `2400y`.
pub fn human(d: TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    let (days, hours, mins) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match () {
        _ if days >= 3650 => format!("{}y", days / 365),
        _ if days > 0 => format!("{days}d {hours}h"),
        _ if hours > 0 => format!("{hours}h {mins}m"),
        _ if mins > 0 => format!("{mins}m"),
        _ => format!("{secs}s"),
    }
}

/// Records the `Date` of every S3 response (errors included: a 404 or 403 has one too).
#[derive(Debug)]
pub struct StoreDate;

impl Intercept for StoreDate {
    fn name(&self) -> &'static str {
        "StoreDate"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(date) = context
            .response()
            .headers()
            .get("date")
            .and_then(parse_http_date)
        {
            *STORE.lock().unwrap_or_else(|e| e.into_inner()) = Some((date, Instant::now()));
        }
        Ok(())
    }
}

/// An HTTP `Date` (IMF-fixdate, `Tue, 01 Dec 2026 09:35:18 GMT`).
fn parse_http_date(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(value.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0).unwrap()
    }

    #[test]
    fn future_means_beyond_either_clock_plus_the_tolerance() {
        let agree = Now {
            runner: at(3, 0),
            store: Some(at(3, 0)),
        };
        assert!(!agree.is_future(at(3, 5)));
        assert!(agree.is_future(at(3, 6)));
        assert!(agree.check_skew().is_ok());
        // A runner hours ahead: its own "now" does not make a key from its future current.
        let fast = Now {
            runner: at(9, 0),
            store: Some(at(3, 0)),
        };
        assert!(fast.is_future(at(8, 0)));
        let err = fast.check_skew().unwrap_err();
        assert!(err.contains("6h 0m ahead of"), "{err}");
        let slow = Now {
            runner: at(1, 0),
            store: Some(at(3, 0)),
        };
        assert!(slow.check_skew().unwrap_err().contains("2h 0m behind"));
        assert_eq!(slow.reference(), at(3, 0));
        let alone = Now {
            runner: at(3, 0),
            store: None,
        };
        assert!(alone.check_skew().is_ok());
        assert!(alone.is_future(at(3, 6)) && !alone.is_future(at(3, 4)));
        let far = Utc.with_ymd_and_hms(2999, 12, 31, 23, 59, 59).unwrap();
        assert!(agree.is_future(far));
        assert_eq!(human(far - at(3, 0)), "973y");
    }

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date("Tue, 01 Dec 2026 03:00:00 GMT"),
            Some(at(3, 0))
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }
}
