//! Retention: pure keep/delete decisions with reasons, restic `forget` semantics in UTC; no I/O.
//! It neither lists nor deletes (commands do) and reads no clock: "now" is the newest backup.

use crate::error::usage;
use anyhow::{bail, Result};
use chrono::{DateTime, Datelike, Months, TimeDelta, Timelike, Utc};
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

/// One backup as listed: its key, when it was taken (and its place among the backups of that
/// second, `BackupId::seq`), and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    pub key: String,
    pub time: DateTime<Utc>,
    pub seq: u32,
    pub size: u64,
}

/// A calendar span for `keep_within`, written like restic's durations: `36h`, `30d`, `2w`,
/// `1y6m`. Weeks are parsed as 7 days, so `2w` displays as `14d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

/// Which backups to keep: a backup is kept when any rule that is set keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    pub keep_within: Option<Span>,
}

/// The verdict on one backup, with every reason it is kept (none when it is deleted).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    pub key: String,
    pub time: DateTime<Utc>,
    pub size: u64,
    pub keep: bool,
    pub reasons: Vec<String>,
}

/// A counted rule: keep the newest backup of each of the first `count` buckets, newest first.
struct Rule {
    flag: &'static str,
    reason: &'static str,
    count: fn(&Policy) -> Option<u32>,
    /// The bucket of a backup from its time and its position in the newest-first list.
    bucket: fn(DateTime<Utc>, usize) -> i64,
}

/// The counted rules in restic's order (`buckets` in `ApplyPolicy`), which is also the order of
/// the reasons. ISO weeks start on Monday; their year is the ISO year, so 2025-12-29 falls in
/// week 1 of 2026 and 2021-01-03 in week 53 of 2020.
static RULES: [Rule; 6] = [
    Rule {
        flag: "--keep-last",
        reason: "last",
        count: |p| p.keep_last,
        bucket: |_, nr| nr as i64,
    },
    Rule {
        flag: "--keep-hourly",
        reason: "hourly",
        count: |p| p.keep_hourly,
        bucket: |t, _| ymd(t) * 100 + i64::from(t.hour()),
    },
    Rule {
        flag: "--keep-daily",
        reason: "daily",
        count: |p| p.keep_daily,
        bucket: |t, _| ymd(t),
    },
    Rule {
        flag: "--keep-weekly",
        reason: "weekly",
        count: |p| p.keep_weekly,
        bucket: |t, _| {
            let w = t.iso_week();
            i64::from(w.year()) * 100 + i64::from(w.week())
        },
    },
    Rule {
        flag: "--keep-monthly",
        reason: "monthly",
        count: |p| p.keep_monthly,
        bucket: |t, _| i64::from(t.year()) * 100 + i64::from(t.month()),
    },
    Rule {
        flag: "--keep-yearly",
        reason: "yearly",
        count: |p| p.keep_yearly,
        bucket: |t, _| i64::from(t.year()),
    },
];

fn ymd(t: DateTime<Utc>) -> i64 {
    i64::from(t.year()) * 10_000 + i64::from(t.month()) * 100 + i64::from(t.day())
}

const ALL_FLAGS: &str = "--keep-last, --keep-hourly, --keep-daily, --keep-weekly, \
                         --keep-monthly, --keep-yearly or --keep-within";

impl Policy {
    /// True when no rule is set at all.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Refuses a policy that would decide nothing sensible: no rule at all, a count of 0 (restic
    /// reads `--keep-last 0` as "no rule"; here it is a mistake to report), or a zero span.
    /// [`Policy::apply`] calls it first.
    pub fn validate(&self) -> Result<()> {
        if self.is_empty() {
            return Err(usage!("no keep rule: pass at least one of {ALL_FLAGS}"));
        }
        for rule in &RULES {
            if (rule.count)(self) == Some(0) {
                return Err(usage!(
                    "{} `0` keeps nothing: use a count of 1 or more, or leave the flag out",
                    rule.flag
                ));
            }
        }
        if let Some(span) = self.keep_within.filter(Span::is_zero) {
            return Err(usage!(
                "--keep-within `{span}` is zero: use a span such as 36h, 30d or 1y6m"
            ));
        }
        Ok(())
    }

    /// Decisions for every backup, newest first (equal times: greater key first).
    ///
    /// Follows restic's `ApplyPolicy` (internal/restic/snapshot_policy.go), and on top of it
    /// never deletes the newest backup nor a key in `protect` (the backup this run just wrote):
    /// when no rule keeps them they are kept for the reason "newest" / "protected". Keys in
    /// `protect` that are not listed are ignored. Errors on an invalid policy, on a key listed
    /// twice, and (a bug guard) on a plan that would delete every backup.
    pub fn apply(&self, backups: &[Backup], protect: &[&str]) -> Result<Vec<Decision>> {
        self.validate()?;
        let sorted = newest_first(backups)?;
        let Some(newest) = sorted.first() else {
            return Ok(Vec::new());
        };
        let within = self
            .keep_within
            .map(|span| (span.cutoff(newest.time), format!("within {span}")));
        let mut counters: Vec<Counter> = RULES
            .iter()
            .filter_map(|rule| {
                (rule.count)(self).map(|left| Counter {
                    rule,
                    left,
                    last: None,
                })
            })
            .collect();
        let protect: HashSet<&str> = protect.iter().copied().collect();
        let oldest = sorted.len() - 1;
        let mut decisions = Vec::with_capacity(sorted.len());
        for (nr, b) in sorted.into_iter().enumerate() {
            let mut reasons = Vec::new();
            if let Some((cutoff, reason)) = &within {
                // Strictly after, as restic's `cur.Time.After(t)`.
                if cutoff.is_none_or(|c| b.time > c) {
                    reasons.push(reason.clone());
                }
            }
            reasons.extend(
                counters
                    .iter_mut()
                    .filter_map(|c| c.offer(b.time, nr, nr == oldest)),
            );
            if reasons.is_empty() {
                // Safety beyond restic; recorded only when it is what keeps the backup.
                if nr == 0 {
                    reasons.push("newest".to_string());
                }
                if protect.contains(b.key.as_str()) {
                    reasons.push("protected".to_string());
                }
            }
            decisions.push(Decision {
                key: b.key.clone(),
                time: b.time,
                size: b.size,
                keep: !reasons.is_empty(),
                reasons,
            });
        }
        refuse_total_loss(&decisions)?;
        Ok(decisions)
    }

    /// [`Policy::apply`], where a backup outside `recorded` (one without its integrity record:
    /// unverified, see `record`) never takes a recorded backup's place. A backup is kept when
    /// the policy over all backups keeps it, or, if it is recorded, when the policy over the
    /// recorded backups alone keeps it (its reasons then say `of recorded`). So unrecorded
    /// backups (runs whose record write failed, or keys planted without one) are deleted as
    /// before once the policy lets them go, but a run of them cannot push out the verified
    /// backups a restore would need.
    pub fn apply_recorded(
        &self,
        backups: &[Backup],
        recorded: &HashSet<&str>,
        protect: &[&str],
    ) -> Result<Vec<Decision>> {
        let mut decisions = self.apply(backups, protect)?;
        let only: Vec<Backup> = backups
            .iter()
            .filter(|b| recorded.contains(b.key.as_str()))
            .cloned()
            .collect();
        if only.is_empty() || only.len() == backups.len() {
            return Ok(decisions);
        }
        let kept: std::collections::HashMap<String, Vec<String>> = self
            .apply(&only, protect)?
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| (d.key, d.reasons))
            .collect();
        for d in decisions.iter_mut().filter(|d| !d.keep) {
            if let Some(reasons) = kept.get(&d.key) {
                d.keep = true;
                d.reasons = reasons.iter().map(|r| format!("{r} of recorded")).collect();
            }
        }
        Ok(decisions)
    }

    /// The rules that are set, e.g. `keep-last 3, keep-daily 7, keep-within 30d`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = RULES
            .iter()
            .filter_map(|rule| {
                let n = (rule.count)(self)?;
                Some(format!("{} {n}", rule.flag.trim_start_matches('-')))
            })
            .collect();
        if let Some(span) = self.keep_within {
            parts.push(format!("keep-within {span}"));
        }
        if parts.is_empty() {
            return "no keep rule".to_string();
        }
        parts.join(", ")
    }
}

/// One counted rule's state while walking the backups newest first.
struct Counter {
    rule: &'static Rule,
    left: u32,
    last: Option<i64>,
}

impl Counter {
    /// restic's bucket step: keep a backup that opens a new bucket, and also the oldest backup
    /// while the rule has counts left ("this maximizes the history length kept while some counts
    /// are left", snapshot_policy.go). Either way it uses up one count.
    fn offer(&mut self, time: DateTime<Utc>, nr: usize, oldest: bool) -> Option<String> {
        if self.left == 0 {
            return None;
        }
        let val = (self.rule.bucket)(time, nr);
        let new_bucket = self.last != Some(val);
        if !new_bucket && !oldest {
            return None;
        }
        self.last = Some(val);
        self.left -= 1;
        Some(if new_bucket {
            self.rule.reason.to_string()
        } else {
            // Same bucket as a newer kept backup: only restic's oldest rule keeps it; say so.
            format!("{} (oldest)", self.rule.reason)
        })
    }
}

/// The backups sorted newest first, as `store::list_backups` sorts them: equal times by `seq`
/// (the run that came later in that second has the greater one: `-2` after none, `-10` after
/// `-9`, which the keys' text order gets wrong), then by key, so the plan does not depend on
/// listing order. A key listed twice is refused: `protect` and deletes go by key.
fn newest_first(backups: &[Backup]) -> Result<Vec<&Backup>> {
    let mut seen = HashSet::with_capacity(backups.len());
    if let Some(dup) = backups.iter().find(|b| !seen.insert(b.key.as_str())) {
        bail!(
            "backup key `{}` is listed twice: refusing to plan a prune from this listing",
            dup.key
        );
    }
    let mut sorted: Vec<&Backup> = backups.iter().collect();
    sorted.sort_by(|a, b| (b.time, b.seq, &b.key).cmp(&(a.time, a.seq, &a.key)));
    Ok(sorted)
}

/// Cannot happen while the newest is always kept; checked anyway because the cost of being
/// wrong is every backup.
fn refuse_total_loss(decisions: &[Decision]) -> Result<()> {
    if !decisions.is_empty() && decisions.iter().all(|d| !d.keep) {
        bail!(
            "the retention plan would delete all {} backups: refusing, this is a bug: nothing was deleted; please report it",
            decisions.len()
        );
    }
    Ok(())
}

impl Span {
    pub fn is_zero(&self) -> bool {
        self.years == 0 && self.months == 0 && self.days == 0 && self.hours == 0
    }

    /// The time this span before `newest`: years and months by calendar (a missing day clamps to
    /// the month's last, so 1m before 2024-03-31 is 2024-02-29), then days, then hours. `None`
    /// when that is before any time chrono represents, i.e. every backup is within.
    ///
    /// restic uses Go's `AddDate`, which instead rolls a missing day over (1m before 2024-03-31
    /// is 2024-03-02). Clamping gives an earlier or equal cutoff, so it keeps at least as much.
    pub fn cutoff(&self, newest: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let months = u32::try_from(u64::from(self.years) * 12 + u64::from(self.months)).ok()?;
        newest
            .checked_sub_months(Months::new(months))?
            .checked_sub_signed(TimeDelta::try_days(self.days.into())?)?
            .checked_sub_signed(TimeDelta::try_hours(self.hours.into())?)
    }
}

/// Units in the order they must appear; weeks fold into days.
const UNITS: [char; 5] = ['y', 'm', 'w', 'd', 'h'];

impl FromStr for Span {
    type Err = anyhow::Error;

    /// Parses `Ny`, `Nm`, `Nw`, `Nd`, `Nh` parts in that order, each at most once (`1y2m3d4h`).
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            usage!(
                "`{s}` is not a span: use whole numbers with units y, m, w, d, h in that order, \
                 such as 36h, 30d, 2w or 1y6m"
            )
        };
        let mut parts = [0u32; 5];
        let mut next_unit = 0;
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let n: u32 = rest[..digits].parse().map_err(|_| bad())?;
            let unit = rest[digits..].chars().next().ok_or_else(bad)?;
            let at = UNITS[next_unit..]
                .iter()
                .position(|u| *u == unit)
                .ok_or_else(bad)?;
            parts[next_unit + at] = n;
            next_unit += at + 1;
            rest = &rest[digits + unit.len_utf8()..];
        }
        let [years, months, weeks, days, hours] = parts;
        let days = weeks
            .checked_mul(7)
            .and_then(|w| w.checked_add(days))
            .ok_or_else(bad)?;
        let span = Span {
            years,
            months,
            days,
            hours,
        };
        if span.is_zero() {
            return Err(usage!(
                "`{s}` is a zero span: use a span such as 36h, 30d or 1y6m"
            ));
        }
        Ok(span)
    }
}

impl fmt::Display for Span {
    /// Canonical form: the non-zero parts as `1y6m2d3h` (`0h` for a zero span).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0h");
        }
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDateTime;

    #[test]
    fn unrecorded_backups_never_push_out_recorded_ones() {
        // Three newer backups whose record was never written, then three recorded ones.
        let all = backups(&[
            "2026-12-06 03:00:00",
            "2026-12-05 03:00:00",
            "2026-12-04 03:00:00",
            "2026-12-03 03:00:00",
            "2026-12-02 03:00:00",
            "2026-12-01 03:00:00",
        ]);
        let recorded: HashSet<&str> = all[3..].iter().map(|b| b.key.as_str()).collect();
        let p = policy("keep-last 2");
        let plain = p.apply(&all, &[]).unwrap();
        assert_eq!(plain.iter().filter(|d| d.keep).count(), 2);
        assert!(
            plain[3..].iter().all(|d| !d.keep),
            "apply alone deletes every recorded one"
        );
        let d = p.apply_recorded(&all, &recorded, &[]).unwrap();
        let kept: Vec<&str> = d
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.key.as_str())
            .collect();
        assert_eq!(
            kept,
            [
                "2026-12-06 03:00:00",
                "2026-12-05 03:00:00",
                "2026-12-03 03:00:00",
                "2026-12-02 03:00:00"
            ]
        );
        assert_eq!(d[3].reasons, ["last of recorded"]);
        // All recorded, or none: the same plan as apply.
        let every: HashSet<&str> = all.iter().map(|b| b.key.as_str()).collect();
        assert_eq!(p.apply_recorded(&all, &every, &[]).unwrap(), plain);
        assert_eq!(p.apply_recorded(&all, &HashSet::new(), &[]).unwrap(), plain);
    }

    /// `"2024-02-29 12:00:00"` as UTC.
    fn at(s: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .unwrap_or_else(|e| panic!("bad test time {s}: {e}"))
            .and_utc()
    }

    /// A backup whose key is the spec itself and whose time is its first 19 characters, so
    /// `"2024-05-01 12:00:00 b"` is a second backup in that second.
    fn backup(spec: &str) -> Backup {
        Backup {
            key: spec.to_string(),
            time: at(&spec[..19]),
            seq: 0,
            size: spec.len() as u64,
        }
    }

    fn backups(specs: &[&str]) -> Vec<Backup> {
        specs.iter().map(|s| backup(s)).collect()
    }

    /// A policy written as [`Policy::describe`] prints it: `keep-daily 5, keep-within 30d`.
    fn policy(text: &str) -> Policy {
        let mut p = Policy::default();
        for part in text.split(", ") {
            let (flag, value) = part.split_once(' ').expect("`keep-x value`");
            if flag == "keep-within" {
                p.keep_within = Some(value.parse().unwrap());
                continue;
            }
            let n = Some(value.parse().unwrap());
            match flag {
                "keep-last" => p.keep_last = n,
                "keep-hourly" => p.keep_hourly = n,
                "keep-daily" => p.keep_daily = n,
                "keep-weekly" => p.keep_weekly = n,
                "keep-monthly" => p.keep_monthly = n,
                "keep-yearly" => p.keep_yearly = n,
                _ => panic!("unknown rule {flag}"),
            }
        }
        assert_eq!(p.describe(), text, "test policies are written canonically");
        p
    }

    fn kept_keys(decisions: &[Decision]) -> Vec<&str> {
        decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.key.as_str())
            .collect()
    }

    struct Case {
        /// What the case shows, and why the kept set is what it is.
        why: &'static str,
        policy: &'static str,
        backups: &'static [&'static str],
        protect: &'static [&'static str],
        /// Newest first.
        kept: &'static [&'static str],
    }

    const CASES: &[Case] = &[
        Case {
            why: "keep-last 3 keeps the three newest, whatever the calendar",
            policy: "keep-last 3",
            backups: &[
                "2024-01-01 00:00:00",
                "2024-01-01 00:00:01",
                "2024-03-01 00:00:00",
                "2024-03-01 00:00:02",
                "2025-01-01 00:00:00",
            ],
            protect: &[],
            kept: &[
                "2025-01-01 00:00:00",
                "2024-03-01 00:00:02",
                "2024-03-01 00:00:00",
            ],
        },
        Case {
            why: "keep-last larger than the list keeps everything",
            policy: "keep-last 10",
            backups: &["2024-01-01 00:00:00", "2024-01-02 00:00:00"],
            protect: &[],
            kept: &["2024-01-02 00:00:00", "2024-01-01 00:00:00"],
        },
        Case {
            why: "keep-hourly 2: the newest of hours 12 and 11; counts run out before the oldest",
            policy: "keep-hourly 2",
            backups: &[
                "2024-04-01 10:05:00",
                "2024-04-01 10:40:00",
                "2024-04-01 11:10:00",
                "2024-04-01 11:50:00",
                "2024-04-01 12:30:00",
            ],
            protect: &[],
            kept: &["2024-04-01 12:30:00", "2024-04-01 11:50:00"],
        },
        Case {
            why: "keep-hourly 5 over 3 hours: the newest of each hour, plus the oldest (10:05) \
                  because counts remain (restic's oldest rule); 11:10 goes",
            policy: "keep-hourly 5",
            backups: &[
                "2024-04-01 10:05:00",
                "2024-04-01 10:40:00",
                "2024-04-01 11:10:00",
                "2024-04-01 11:50:00",
                "2024-04-01 12:30:00",
            ],
            protect: &[],
            kept: &[
                "2024-04-01 12:30:00",
                "2024-04-01 11:50:00",
                "2024-04-01 10:40:00",
                "2024-04-01 10:05:00",
            ],
        },
        Case {
            why: "keep-daily 5 with 3 backups on 3 days keeps all three",
            policy: "keep-daily 5",
            backups: &[
                "2024-04-01 12:00:00",
                "2024-04-02 12:00:00",
                "2024-04-03 12:00:00",
            ],
            protect: &[],
            kept: &[
                "2024-04-03 12:00:00",
                "2024-04-02 12:00:00",
                "2024-04-01 12:00:00",
            ],
        },
        Case {
            why: "keep-daily 5 with 5 backups on 2 days: the newest of each day, plus the oldest \
                  overall (counts remain); 04-02 09:00 and 04-01 12:00 go",
            policy: "keep-daily 5",
            backups: &[
                "2024-04-01 08:00:00",
                "2024-04-01 12:00:00",
                "2024-04-01 18:00:00",
                "2024-04-02 09:00:00",
                "2024-04-02 21:00:00",
            ],
            protect: &[],
            kept: &[
                "2024-04-02 21:00:00",
                "2024-04-01 18:00:00",
                "2024-04-01 08:00:00",
            ],
        },
        Case {
            why: "keep-daily 2 over 3 days: the counts are spent on the two newest days, so the \
                  oldest is not kept",
            policy: "keep-daily 2",
            backups: &[
                "2024-04-01 08:00:00",
                "2024-04-02 09:00:00",
                "2024-04-03 10:00:00",
            ],
            protect: &[],
            kept: &["2024-04-03 10:00:00", "2024-04-02 09:00:00"],
        },
        Case {
            why: "ISO week 1 of 2026 starts Mon 2025-12-29, so 12-29 shares 01-02's week and the \
                  third week is 2025-W52 (12-28, its newest); a calendar-year week keeps 12-29",
            policy: "keep-weekly 3",
            backups: &[
                "2025-12-27 12:00:00",
                "2025-12-28 12:00:00",
                "2025-12-29 12:00:00",
                "2026-01-02 12:00:00",
                "2026-01-05 12:00:00",
            ],
            protect: &[],
            kept: &[
                "2026-01-05 12:00:00",
                "2026-01-02 12:00:00",
                "2025-12-28 12:00:00",
            ],
        },
        Case {
            why: "2020-12-31 and 2021-01-03 are both in ISO week 53 of 2020: only 01-03 is kept \
                  for it; 12-27 is 2020-W52, 01-04 is 2021-W1",
            policy: "keep-weekly 3",
            backups: &[
                "2020-12-27 12:00:00",
                "2020-12-31 12:00:00",
                "2021-01-03 12:00:00",
                "2021-01-04 12:00:00",
            ],
            protect: &[],
            kept: &[
                "2021-01-04 12:00:00",
                "2021-01-03 12:00:00",
                "2020-12-27 12:00:00",
            ],
        },
        Case {
            why: "keep-monthly 2: the newest of 2024-02 and 2024-01; the second before midnight \
                  on New Year's Eve is December",
            policy: "keep-monthly 2",
            backups: &[
                "2023-06-15 12:00:00",
                "2023-12-31 23:59:59",
                "2024-01-01 00:00:00",
                "2024-01-31 12:00:00",
                "2024-02-01 12:00:00",
                "2024-02-15 12:00:00",
            ],
            protect: &[],
            kept: &["2024-02-15 12:00:00", "2024-01-31 12:00:00"],
        },
        Case {
            why: "keep-yearly 2: the newest of 2024 and of 2023 (its last second)",
            policy: "keep-yearly 2",
            backups: &[
                "2023-06-15 12:00:00",
                "2023-12-31 23:59:59",
                "2024-01-01 00:00:00",
                "2024-01-31 12:00:00",
                "2024-02-01 12:00:00",
                "2024-02-15 12:00:00",
            ],
            protect: &[],
            kept: &["2024-02-15 12:00:00", "2023-12-31 23:59:59"],
        },
        Case {
            why: "leap day: 02-29 is a day of its own between 02-28 and 03-01; its later backup \
                  is kept, 10:00 goes",
            policy: "keep-daily 3",
            backups: &[
                "2024-02-28 23:00:00",
                "2024-02-29 10:00:00",
                "2024-02-29 20:00:00",
                "2024-03-01 01:00:00",
            ],
            protect: &[],
            kept: &[
                "2024-03-01 01:00:00",
                "2024-02-29 20:00:00",
                "2024-02-28 23:00:00",
            ],
        },
        Case {
            why: "leap day: 02-29 belongs to February, so keep-monthly 2 keeps 03-01, 02-29 20:00",
            policy: "keep-monthly 2",
            backups: &[
                "2024-02-28 23:00:00",
                "2024-02-29 10:00:00",
                "2024-02-29 20:00:00",
                "2024-03-01 01:00:00",
            ],
            protect: &[],
            kept: &["2024-03-01 01:00:00", "2024-02-29 20:00:00"],
        },
        Case {
            why: "keep-within 1m from 2024-03-29 12:00 reaches back to 2024-02-29 12:00, \
                  exclusive (restic's After)",
            policy: "keep-within 1m",
            backups: &[
                "2024-02-29 11:59:59",
                "2024-02-29 12:00:00",
                "2024-02-29 12:00:01",
                "2024-03-29 12:00:00",
            ],
            protect: &[],
            kept: &["2024-03-29 12:00:00", "2024-02-29 12:00:01"],
        },
        Case {
            why: "keep-within 1m from 2024-03-31: Feb 31 does not exist and clamps to 02-29 \
                  (Go's AddDate would roll to 03-02 and drop 02-29 12:00:01; we keep more)",
            policy: "keep-within 1m",
            backups: &[
                "2024-02-29 11:00:00",
                "2024-02-29 12:00:01",
                "2024-03-02 11:00:00",
                "2024-03-31 12:00:00",
            ],
            protect: &[],
            kept: &[
                "2024-03-31 12:00:00",
                "2024-03-02 11:00:00",
                "2024-02-29 12:00:01",
            ],
        },
        Case {
            why: "keep-within 1y from a leap day: 2023-02-29 clamps to 2023-02-28 12:00",
            policy: "keep-within 1y",
            backups: &[
                "2023-02-28 12:00:00",
                "2023-02-28 12:00:01",
                "2024-02-29 12:00:00",
            ],
            protect: &[],
            kept: &["2024-02-29 12:00:00", "2023-02-28 12:00:01"],
        },
        Case {
            why: "keep-within 36h from 06-10 12:00 reaches back to 06-09 00:00, exclusive",
            policy: "keep-within 36h",
            backups: &[
                "2024-06-08 23:00:00",
                "2024-06-09 00:00:00",
                "2024-06-09 00:00:01",
                "2024-06-10 06:00:00",
                "2024-06-10 12:00:00",
            ],
            protect: &[],
            kept: &[
                "2024-06-10 12:00:00",
                "2024-06-10 06:00:00",
                "2024-06-09 00:00:01",
            ],
        },
        Case {
            why: "keep-within 30d from 2024-03-15 crosses a 29-day February: back to 02-14 00:00",
            policy: "keep-within 30d",
            backups: &[
                "2024-02-13 23:59:59",
                "2024-02-14 00:00:00",
                "2024-02-14 00:00:01",
                "2024-03-15 00:00:00",
            ],
            protect: &[],
            kept: &["2024-03-15 00:00:00", "2024-02-14 00:00:01"],
        },
        Case {
            why: "keep-within 2w (14d) from 2024-01-10 reaches back across the year to 2023-12-27",
            policy: "keep-within 14d",
            backups: &[
                "2023-12-26 23:00:00",
                "2023-12-27 00:00:00",
                "2023-12-27 00:00:01",
                "2024-01-10 00:00:00",
            ],
            protect: &[],
            kept: &["2024-01-10 00:00:00", "2023-12-27 00:00:01"],
        },
        Case {
            why: "keep-within 1y6m from 2025-08-31 12:00: 18 months back is Feb 31, clamped to \
                  2024-02-29 12:00",
            policy: "keep-within 1y6m",
            backups: &[
                "2024-02-29 11:00:00",
                "2024-02-29 12:00:01",
                "2024-03-01 00:00:00",
                "2025-08-31 12:00:00",
            ],
            protect: &[],
            kept: &[
                "2025-08-31 12:00:00",
                "2024-03-01 00:00:00",
                "2024-02-29 12:00:01",
            ],
        },
        Case {
            why: "keep-within 1y2m3d4h from 2025-05-10 10:00: 14 months to 2024-03-10, 3 days to \
                  03-07, 4 hours to 06:00",
            policy: "keep-within 1y2m3d4h",
            backups: &[
                "2024-03-07 06:00:00",
                "2024-03-07 06:00:01",
                "2025-05-10 10:00:00",
            ],
            protect: &[],
            kept: &["2025-05-10 10:00:00", "2024-03-07 06:00:01"],
        },
        Case {
            why: "two backups in the same second: keep-last 1 keeps exactly one, the greater key",
            policy: "keep-last 1",
            backups: &["2024-05-01 12:00:00 a", "2024-05-01 12:00:00 b"],
            protect: &[],
            kept: &["2024-05-01 12:00:00 b"],
        },
        Case {
            why:
                "same second, keep-daily 1: one bucket, one count, so only the first (greater key)",
            policy: "keep-daily 1",
            backups: &[
                "2024-05-01 12:00:00 b",
                "2024-05-01 12:00:00 a",
                "2024-04-30 12:00:00",
            ],
            protect: &[],
            kept: &["2024-05-01 12:00:00 b"],
        },
        Case {
            why: "protect keeps the backup just written even when no rule does; unknown keys in \
                  the protect list are ignored",
            policy: "keep-last 1",
            backups: &[
                "2024-05-01 00:00:00",
                "2024-05-02 00:00:00",
                "2024-05-03 00:00:00",
            ],
            protect: &["2024-05-01 00:00:00", "not-listed"],
            kept: &["2024-05-03 00:00:00", "2024-05-01 00:00:00"],
        },
        Case {
            why: "restic doc (060_forget.rst): a backup each Sunday for 12 weeks, `forget \
                  --keep-daily 4` keeps the last four Sundays and removes the other 8",
            policy: "keep-daily 4",
            backups: &[
                "2019-09-01 11:00:00",
                "2019-09-08 11:00:00",
                "2019-09-15 11:00:00",
                "2019-09-22 11:00:00",
                "2019-09-29 11:00:00",
                "2019-10-06 11:00:00",
                "2019-10-13 11:00:00",
                "2019-10-20 11:00:00",
                "2019-10-27 11:00:00",
                "2019-11-03 11:00:00",
                "2019-11-10 11:00:00",
                "2019-11-17 11:00:00",
            ],
            protect: &[],
            kept: &[
                "2019-11-17 11:00:00",
                "2019-11-10 11:00:00",
                "2019-11-03 11:00:00",
                "2019-10-27 11:00:00",
            ],
        },
    ];

    #[test]
    fn table_of_policies_keeps_what_restic_keeps() {
        for case in CASES {
            let list = backups(case.backups);
            let decisions = policy(case.policy)
                .apply(&list, case.protect)
                .unwrap_or_else(|e| panic!("{}: {e}", case.why));
            assert_eq!(kept_keys(&decisions), case.kept, "{}", case.why);
            // The listing order must not matter.
            let mut reversed = list.clone();
            reversed.reverse();
            let again = policy(case.policy).apply(&reversed, case.protect).unwrap();
            assert_eq!(again, decisions, "order-dependent: {}", case.why);
        }
    }

    fn reasons_by_key(decisions: &[Decision]) -> Vec<(&str, Vec<&str>)> {
        decisions
            .iter()
            .map(|d| {
                let r = d.reasons.iter().map(String::as_str).collect();
                (d.key.as_str(), r)
            })
            .collect()
    }

    #[test]
    fn mixed_rules_are_ored_and_each_keep_says_why() {
        // Cutoff for 2d is 07-08 18:00: A, B, C are within. keep-last 2 takes A and B.
        // keep-daily 3 takes the newest of 07-10 (A), 07-09 (C) and 07-08 (D) and is spent,
        // so E and the oldest, F, go.
        let list = backups(&[
            "2024-07-10 18:00:00 A",
            "2024-07-10 09:00:00 B",
            "2024-07-09 20:00:00 C",
            "2024-07-08 07:00:00 D",
            "2024-07-05 12:00:00 E",
            "2024-07-01 12:00:00 F",
        ]);
        let decisions = policy("keep-last 2, keep-daily 3, keep-within 2d")
            .apply(&list, &[])
            .unwrap();
        assert_eq!(
            reasons_by_key(&decisions),
            vec![
                ("2024-07-10 18:00:00 A", vec!["within 2d", "last", "daily"]),
                ("2024-07-10 09:00:00 B", vec!["within 2d", "last"]),
                ("2024-07-09 20:00:00 C", vec!["within 2d", "daily"]),
                ("2024-07-08 07:00:00 D", vec!["daily"]),
                ("2024-07-05 12:00:00 E", vec![]),
                ("2024-07-01 12:00:00 F", vec![]),
            ]
        );
        assert_eq!(
            decisions.iter().map(|d| d.keep).collect::<Vec<_>>(),
            [true, true, true, true, false, false]
        );
    }

    #[test]
    fn the_oldest_kept_while_counts_remain_is_labelled() {
        // 04-01 18:00 opens the 04-01 bucket; 04-01 08:00 is in the same bucket and is kept
        // only by restic's oldest rule.
        let list = backups(&[
            "2024-04-01 08:00:00",
            "2024-04-01 18:00:00",
            "2024-04-02 21:00:00",
        ]);
        let decisions = policy("keep-daily 5").apply(&list, &[]).unwrap();
        assert_eq!(
            reasons_by_key(&decisions),
            vec![
                ("2024-04-02 21:00:00", vec!["daily"]),
                ("2024-04-01 18:00:00", vec!["daily"]),
                ("2024-04-01 08:00:00", vec!["daily (oldest)"]),
            ]
        );
    }

    #[test]
    fn restic_doc_single_backup_counts_as_daily_weekly_and_monthly() {
        // 060_forget.rst: "A single snapshot on 2017-09-30 (Sat) will count as a daily, weekly
        // and monthly."
        let list = backups(&["2017-09-30 12:00:00"]);
        let decisions = policy("keep-daily 1, keep-weekly 1, keep-monthly 1")
            .apply(&list, &[])
            .unwrap();
        assert_eq!(
            decisions[0].reasons,
            ["daily", "weekly", "monthly"],
            "{decisions:?}"
        );
    }

    #[test]
    fn restic_doc_hundred_years_of_daily_backups() {
        // 060_forget.rst: daily backups for 100 years and `--keep-daily 7 --keep-weekly 5
        // --keep-monthly 12 --keep-yearly 75` keep the 7 newest dailies, then 4 more weekly
        // (the dailies already hold one week), 11 more month ends, and year ends up to 75 years.
        // Here the newest is Sunday 2025-11-30, so the dailies are exactly Mon..Sun of one week.
        let first = at("1925-12-01 12:00:00");
        let newest = at("2025-11-30 12:00:00");
        let days = (newest - first).num_days();
        let list: Vec<Backup> = (0..=days)
            .map(|d| {
                let t = first + TimeDelta::days(d);
                backup(&t.format("%Y-%m-%d %H:%M:%S").to_string())
            })
            .collect();
        let decisions = policy("keep-daily 7, keep-weekly 5, keep-monthly 12, keep-yearly 75")
            .apply(&list, &[])
            .unwrap();

        let mut expected: Vec<String> = [
            // daily: Mon 11-24 .. Sun 11-30
            "2025-11-30",
            "2025-11-29",
            "2025-11-28",
            "2025-11-27",
            "2025-11-26",
            "2025-11-25",
            "2025-11-24",
            // weekly: the previous 4 Sundays (11-30 is already kept)
            "2025-11-23",
            "2025-11-16",
            "2025-11-09",
            "2025-11-02",
            // monthly: the ends of the 11 months before November 2025
            "2025-10-31",
            "2025-09-30",
            "2025-08-31",
            "2025-07-31",
            "2025-06-30",
            "2025-05-31",
            "2025-04-30",
            "2025-03-31",
            "2025-02-28",
            "2025-01-31",
            "2024-12-31",
        ]
        .iter()
        .map(|d| format!("{d} 12:00:00"))
        .collect();
        // yearly: 2025 and 2024 are kept above; 73 more year ends, 2023 back to 1951. The
        // counts are then spent, so 1925-12-01, the oldest, is not kept.
        expected.extend((1951..=2023).rev().map(|y| format!("{y}-12-31 12:00:00")));
        assert_eq!(expected.len(), 95);
        assert_eq!(kept_keys(&decisions), expected);

        let count = |reason: &str| {
            decisions
                .iter()
                .filter(|d| d.reasons.iter().any(|r| r == reason))
                .count()
        };
        assert_eq!(
            [
                count("daily"),
                count("weekly"),
                count("monthly"),
                count("yearly")
            ],
            [7, 5, 12, 75]
        );
    }

    #[test]
    fn protected_and_newest_reasons_appear_only_when_they_keep_the_backup() {
        let list = backups(&[
            "2024-05-01 00:00:00",
            "2024-05-02 00:00:00",
            "2024-05-03 00:00:00",
        ]);
        let decisions = policy("keep-last 1")
            .apply(&list, &["2024-05-01 00:00:00", "2024-05-03 00:00:00"])
            .unwrap();
        assert_eq!(
            reasons_by_key(&decisions),
            vec![
                ("2024-05-03 00:00:00", vec!["last"]),
                ("2024-05-02 00:00:00", vec![]),
                ("2024-05-01 00:00:00", vec!["protected"]),
            ]
        );
    }

    fn usage_message(err: anyhow::Error) -> String {
        assert!(
            err.is::<crate::error::UsageError>(),
            "not a usage error: {err}"
        );
        err.to_string()
    }

    #[test]
    fn an_empty_policy_is_refused() {
        let list = backups(&["2024-05-01 00:00:00"]);
        let err = Policy::default().apply(&list, &[]).unwrap_err();
        assert_eq!(
            usage_message(err),
            "no keep rule: pass at least one of --keep-last, --keep-hourly, --keep-daily, \
             --keep-weekly, --keep-monthly, --keep-yearly or --keep-within"
        );
        assert!(Policy::default().is_empty());
        assert!(!policy("keep-last 1").is_empty());
        assert_eq!(Policy::default().describe(), "no keep rule");
    }

    #[test]
    fn zero_counts_and_zero_spans_are_refused() {
        let p = Policy {
            keep_weekly: Some(0),
            ..policy("keep-daily 7")
        };
        assert_eq!(
            usage_message(p.validate().unwrap_err()),
            "--keep-weekly `0` keeps nothing: use a count of 1 or more, or leave the flag out"
        );
        assert!(p.apply(&[], &[]).is_err());
        let p = Policy {
            keep_within: Some(Span {
                years: 0,
                months: 0,
                days: 0,
                hours: 0,
            }),
            ..Policy::default()
        };
        assert_eq!(
            usage_message(p.apply(&[], &[]).unwrap_err()),
            "--keep-within `0h` is zero: use a span such as 36h, 30d or 1y6m"
        );
    }

    /// The text order of same-second keys is not their run order: `-10` < `-2` < none.
    #[test]
    fn backups_of_one_second_go_by_their_run_order_not_their_text() {
        let time = at("2024-05-01 12:00:00");
        let mut id = crate::layout::BackupId::new("db", time, crate::layout::DumpFormat::Plain);
        let mut list = Vec::new();
        for _ in 0..10 {
            list.push(Backup {
                key: id.key("p/"),
                time,
                seq: id.seq,
                size: 1,
            });
            id = id.next_seq();
        }
        let keep_two = policy("keep-last 2").apply(&list, &[]).unwrap();
        assert_eq!(
            kept_keys(&keep_two),
            [
                "p/db/db-20240501T120000Z-10.sql.gz",
                "p/db/db-20240501T120000Z-9.sql.gz"
            ]
        );
        // The backup that just ran (the last) is protected and also the newest: nothing else kept.
        let protect = [list[9].key.as_str()];
        let keep_one = policy("keep-last 1").apply(&list, &protect).unwrap();
        assert_eq!(kept_keys(&keep_one), [protect[0]]);
    }

    #[test]
    fn a_key_listed_twice_is_refused() {
        let list = backups(&["2024-05-01 00:00:00", "2024-05-01 00:00:00"]);
        let err = policy("keep-last 1").apply(&list, &[]).unwrap_err();
        assert!(err.to_string().contains("listed twice"), "{err}");
    }

    #[test]
    fn no_backups_no_decisions() {
        assert_eq!(policy("keep-last 1").apply(&[], &["x"]).unwrap(), vec![]);
    }

    #[test]
    fn a_plan_deleting_everything_is_refused() {
        let d = |keep| Decision {
            key: "k".into(),
            time: at("2024-01-01 00:00:00"),
            size: 0,
            keep,
            reasons: vec![],
        };
        assert!(refuse_total_loss(&[d(false), d(false)]).is_err());
        assert!(refuse_total_loss(&[d(false), d(true)]).is_ok());
        assert!(refuse_total_loss(&[]).is_ok());
    }

    #[test]
    fn describe_lists_the_rules_in_order() {
        let p = Policy {
            keep_within: Some("30d".parse().unwrap()),
            keep_daily: Some(7),
            keep_last: Some(3),
            keep_yearly: Some(2),
            ..Policy::default()
        };
        assert_eq!(
            p.describe(),
            "keep-last 3, keep-daily 7, keep-yearly 2, keep-within 30d"
        );
    }

    #[test]
    fn decisions_serialize_with_rfc3339_times() {
        let list = backups(&["2024-05-01 12:00:00"]);
        let decisions = policy("keep-last 1").apply(&list, &[]).unwrap();
        assert_eq!(
            serde_json::to_string(&decisions[0]).unwrap(),
            r#"{"key":"2024-05-01 12:00:00","time":"2024-05-01T12:00:00Z","size":19,"keep":true,"reasons":["last"]}"#
        );
    }

    fn span(years: u32, months: u32, days: u32, hours: u32) -> Span {
        Span {
            years,
            months,
            days,
            hours,
        }
    }

    #[test]
    fn spans_parse_restic_style() {
        for (text, want, shown) in [
            ("36h", span(0, 0, 0, 36), "36h"),
            ("30d", span(0, 0, 30, 0), "30d"),
            ("2w", span(0, 0, 14, 0), "14d"),
            ("1w1d", span(0, 0, 8, 0), "8d"),
            ("1y6m", span(1, 6, 0, 0), "1y6m"),
            ("1y2m3d4h", span(1, 2, 3, 4), "1y2m3d4h"),
            ("2y5m7d3h", span(2, 5, 7, 3), "2y5m7d3h"),
            ("1y2m1w3d4h", span(1, 2, 10, 4), "1y2m10d4h"),
            ("0y30d", span(0, 0, 30, 0), "30d"),
            ("48h", span(0, 0, 0, 48), "48h"),
            (" 7d\n", span(0, 0, 7, 0), "7d"),
            ("007d", span(0, 0, 7, 0), "7d"),
        ] {
            let got: Span = text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(got, want, "{text:?}");
            assert_eq!(got.to_string(), shown, "{text:?}");
            assert_eq!(shown.parse::<Span>().unwrap(), got, "{shown} round trip");
        }
    }

    #[test]
    fn bad_spans_are_refused_with_the_accepted_forms() {
        for text in [
            "",
            " ",
            "30",
            "d",
            "30x",
            "30D",
            "1m1y",
            "1d1d",
            "1d2w",
            "1h1d",
            "-1d",
            "+1d",
            "1.5d",
            "1 d",
            "1y 6m",
            "4294967296h",
            "613566757w",
            "1d!",
            "1dd",
            "30d ago",
            "１d",
        ] {
            let err = text.parse::<Span>().unwrap_err();
            assert_eq!(
                usage_message(err),
                format!(
                    "`{text}` is not a span: use whole numbers with units y, m, w, d, h in \
                     that order, such as 36h, 30d, 2w or 1y6m"
                ),
                "{text:?}"
            );
        }
        for text in ["0d", "0y0m", "0w", "0y0m0w0d0h"] {
            let err = text.parse::<Span>().unwrap_err();
            assert_eq!(
                usage_message(err),
                format!("`{text}` is a zero span: use a span such as 36h, 30d or 1y6m")
            );
        }
    }

    #[test]
    fn a_span_reaching_past_chrono_keeps_everything() {
        let huge = span(u32::MAX, u32::MAX, u32::MAX, u32::MAX);
        assert_eq!(huge.cutoff(at("2024-01-01 00:00:00")), None);
        let list = backups(&["0001-01-01 00:00:00", "2024-01-01 00:00:00"]);
        let p = Policy {
            keep_within: Some(huge),
            ..Policy::default()
        };
        let kept = p.apply(&list, &[]).unwrap();
        assert!(kept.iter().all(|d| d.keep), "{kept:?}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use proptest::sample::Index;

        const THREE_YEARS: i64 = 3 * 366 * 86_400;

        /// 0-200 backups over about three years; some times are rounded to the hour or day so
        /// that equal timestamps and shared buckets are common.
        fn backup_sets() -> impl Strategy<Value = Vec<Backup>> {
            let one = (
                0..THREE_YEARS,
                prop_oneof![Just(1i64), Just(3600), Just(86_400)],
            );
            prop::collection::vec(one, 0..=200).prop_map(|times| {
                let base = at("2022-01-01 00:00:00");
                times
                    .into_iter()
                    .enumerate()
                    .map(|(i, (offset, grain))| Backup {
                        key: format!("db/db-{i:03}"),
                        time: base + TimeDelta::seconds(offset - offset % grain),
                        seq: (i % 3) as u32,
                        size: i as u64,
                    })
                    .collect()
            })
        }

        fn spans() -> impl Strategy<Value = Span> {
            (0u32..3, 0u32..14, 0u32..60, 0u32..72)
                .prop_map(|(y, m, d, h)| span(y, m, d, h))
                .prop_filter("a zero span is invalid", |s| !s.is_zero())
        }

        /// Any combination of rules with small counts, including none at all.
        fn policies() -> impl Strategy<Value = Policy> {
            let count = || prop::option::of(1u32..=6);
            (
                count(),
                count(),
                count(),
                count(),
                count(),
                count(),
                prop::option::of(spans()),
            )
                .prop_map(|(l, h, d, w, m, y, within)| Policy {
                    keep_last: l,
                    keep_hourly: h,
                    keep_daily: d,
                    keep_weekly: w,
                    keep_monthly: m,
                    keep_yearly: y,
                    keep_within: within,
                })
        }

        fn newest_first_keys(list: &[Backup]) -> Vec<String> {
            let mut sorted = list.to_vec();
            sorted.sort_by(|a, b| (b.time, b.seq, &b.key).cmp(&(a.time, a.seq, &a.key)));
            sorted.into_iter().map(|b| b.key).collect()
        }

        proptest! {
            #[test]
            fn the_plan_is_a_newest_first_partition_that_keeps_the_newest(
                list in backup_sets(),
                policy in policies(),
            ) {
                prop_assume!(!policy.is_empty());
                let decisions = policy.apply(&list, &[]).unwrap();
                let keys: Vec<String> = decisions.iter().map(|d| d.key.clone()).collect();
                prop_assert_eq!(&keys, &newest_first_keys(&list));
                for d in &decisions {
                    prop_assert_eq!(d.keep, !d.reasons.is_empty(), "{:?}", d);
                    let b = list.iter().find(|b| b.key == d.key).unwrap();
                    prop_assert_eq!((d.time, d.size), (b.time, b.size));
                }
                if let Some(first) = decisions.first() {
                    prop_assert!(first.keep);
                    // With a valid policy some rule keeps the newest; the safety net is silent.
                    prop_assert!(!first.reasons.iter().any(|r| r == "newest"), "{:?}", first);
                }
            }

            #[test]
            fn keep_last_alone_keeps_exactly_the_n_newest(
                list in backup_sets(),
                n in 1u32..=250,
            ) {
                let policy = Policy { keep_last: Some(n), ..Policy::default() };
                let decisions = policy.apply(&list, &[]).unwrap();
                let kept: Vec<String> =
                    decisions.iter().filter(|d| d.keep).map(|d| d.key.clone()).collect();
                let mut want = newest_first_keys(&list);
                want.truncate(n as usize);
                prop_assert_eq!(kept, want);
            }

            #[test]
            fn a_protected_key_is_always_kept(
                list in backup_sets(),
                policy in policies(),
                pick in any::<Index>(),
            ) {
                prop_assume!(!policy.is_empty() && !list.is_empty());
                let key = list[pick.index(list.len())].key.as_str();
                let decisions = policy.apply(&list, &[key]).unwrap();
                let d = decisions.iter().find(|d| d.key == key).unwrap();
                prop_assert!(d.keep, "{:?}", d);
            }

            #[test]
            fn the_empty_policy_is_always_refused(list in backup_sets()) {
                prop_assert!(Policy::default().apply(&list, &[]).is_err());
            }

            // Idempotence holds even with restic's oldest rule. Every bucket function is
            // monotone in time, so a bucket is a run of the newest-first list, and a rule's
            // picks (the newest of each of its first N buckets) are still the newest of those
            // buckets among the survivors: anything else kept by another rule either sits
            // behind a pick in the same bucket or in an older bucket, so it cannot use up the
            // rule's counts ahead of a pick. A backup kept as the oldest is still the oldest
            // among the survivors, and the rule has met no more buckets before it than the
            // first time, so counts remain again. keep-within, "newest" and "protected" depend
            // only on the newest backup and the protect list, which the survivors share.
            #[test]
            fn survivors_of_a_prune_survive_it_again(
                list in backup_sets(),
                policy in policies(),
                pick in any::<Index>(),
            ) {
                prop_assume!(!policy.is_empty());
                let picked = list.get(pick.index(list.len().max(1)));
                let protect: Vec<&str> = picked.map(|b| b.key.as_str()).into_iter().collect();
                let first = policy.apply(&list, &protect).unwrap();
                let survivors: Vec<Backup> = first
                    .iter()
                    .filter(|d| d.keep)
                    .map(|d| Backup {
                        key: d.key.clone(),
                        time: d.time,
                        seq: list.iter().find(|b| b.key == d.key).map_or(0, |b| b.seq),
                        size: d.size,
                    })
                    .collect();
                let second = policy.apply(&survivors, &protect).unwrap();
                let dropped: Vec<&Decision> = second.iter().filter(|d| !d.keep).collect();
                prop_assert!(dropped.is_empty(), "dropped on the second run: {:?}", dropped);
            }

            #[test]
            fn apply_recorded_keeps_what_the_recorded_alone_keep_and_is_idempotent(
                list in backup_sets(),
                policy in policies(),
                mask in prop::collection::vec(any::<bool>(), 200),
                pick in any::<Index>(),
            ) {
                prop_assume!(!policy.is_empty());
                let recorded: HashSet<&str> = list
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask[*i])
                    .map(|(_, b)| b.key.as_str())
                    .collect();
                let picked = list.get(pick.index(list.len().max(1)));
                let protect: Vec<&str> = picked.map(|b| b.key.as_str()).into_iter().collect();
                let first = policy.apply_recorded(&list, &recorded, &protect).unwrap();
                let only: Vec<Backup> =
                    list.iter().filter(|b| recorded.contains(b.key.as_str())).cloned().collect();
                for d in policy.apply(&only, &protect).unwrap().iter().filter(|d| d.keep) {
                    let got = first.iter().find(|x| x.key == d.key).unwrap();
                    prop_assert!(got.keep, "{:?}", got);
                }
                let survivors: Vec<Backup> = first
                    .iter()
                    .filter(|d| d.keep)
                    .map(|d| list.iter().find(|b| b.key == d.key).unwrap().clone())
                    .collect();
                let second = policy.apply_recorded(&survivors, &recorded, &protect).unwrap();
                let dropped: Vec<&Decision> = second.iter().filter(|d| !d.keep).collect();
                prop_assert!(dropped.is_empty(), "dropped on the second run: {:?}", dropped);
            }

            #[test]
            fn spans_round_trip_through_display(s in spans()) {
                prop_assert_eq!(s.to_string().parse::<Span>().unwrap(), s);
            }
        }
    }
}
