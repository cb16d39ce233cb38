//! backmon's `backup_definitions.yaml` for one database's backups under the prefix: the file
//! and directory patterns that match the keys `layout` writes, the schedule, and the keep
//! policy's expressible part. Pure: it builds text and never touches the network.

use crate::layout::{Codec, DumpFormat, Series};
use crate::retention::{Policy, Span};

/// What the backmon definition describes.
pub struct Backmon<'a> {
    pub bucket: &'a str,
    pub prefix: &'a str,
    pub series: &'a Series,
    pub format: DumpFormat,
    /// backmon matches one file pattern: the codec the backups are written with.
    pub codec: Codec,
    pub schedule: &'a str,
    pub max_age: &'a str,
    pub retention: &'a Policy,
}

/// backmon's `backup_definitions.yaml` for one database, as its parser reads it
/// (github.com/dreitier/backmon, `backup/raw.go` and `backup/definitions.go`):
///
/// ```yaml
/// directories:
///   <directory pattern, relative to the disk (bucket) root>:
///     alias: <name in metrics>
///     defaults: {schedule, sort, purge, retention-count, retention-age}
///     files:
///       <file name pattern>: {alias, schedule, sort, purge, retention-count, retention-age}
/// ```
///
/// File and directory patterns take `%Y` (4 digits), `%M` `%D` `%h` `%m` `%s` (2 digits each:
/// month, day, hour, minute, second) and `%%` for a literal `%`; percent-encoded database names
/// are escaped accordingly. Durations are backmon's: `1Y2M3w4d5h` (uppercase Y and M).
pub fn definition(b: &Backmon) -> String {
    let dir_name = b.series.prefix("");
    let encoded = dir_name.trim_end_matches('/');
    let directory = format!("{}{encoded}", b.prefix).replace('%', "%%");
    let extension = format!("{}{}", b.format.extension(), b.codec.extension());
    let file = format!("{}-%Y%M%DT%h%m%sZ{extension}", encoded.replace('%', "%%"),);
    let (count, age, unexpressed) = backmon_retention(b.retention);
    let mut out = String::new();
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    line(&format!(
        "# backmon backup definition for pg-s3-backup backups of {} in s3://{}/{}",
        b.series.label().escape_debug(),
        b.bucket,
        b.prefix
    ));
    line(&format!(
        "# Save it as s3://{}/backup_definitions.yaml: backmon treats each bucket as a disk",
        b.bucket
    ));
    line("# and reads this file at its root. Schema: backmon's backup/raw.go (dreitier/backmon).");
    line(&format!(
        "# Keys: {}{encoded}/{encoded}-YYYYMMDDTHHMMSSZ{extension} (UTC). A second backup in the same",
        b.prefix,
    ));
    line("# second gets a -2 suffix and is not matched; the first one of that second is.");
    line("# Max age: backmon has no max-age key; it alerts when no file appeared since the");
    line(&format!(
        "# last `schedule` tick. `pg-s3-backup check --max-age {}` checks that from a workflow.",
        b.max_age.trim()
    ));
    line("# purge is false: pg-s3-backup prunes with its own keep rules, and a second deleter");
    line("# with other rules would delete backups those rules keep.");
    if !unexpressed.is_empty() {
        line(&format!(
            "# Keep rules backmon cannot express (not encoded below): {}",
            unexpressed.join(" ")
        ));
    }
    line("directories:");
    line(&format!("  {}:", yaml_str(&directory)));
    line(&format!("    alias: {}", yaml_str(encoded)));
    line("    defaults:");
    line(&format!("      schedule: {}", yaml_str(b.schedule)));
    line("      sort: interpolation");
    line("      purge: false");
    line("    files:");
    line(&format!("      {}:", yaml_str(&file)));
    line(&format!(
        "        alias: {}",
        yaml_str(&format!("{encoded}-{}", b.format.name()))
    ));
    line(&format!("        schedule: {}", yaml_str(b.schedule)));
    line("        sort: interpolation");
    line("        purge: false");
    if let Some(count) = count {
        line(&format!("        retention-count: {count}"));
    }
    if let Some(age) = age {
        line(&format!("        retention-age: {}", yaml_str(&age)));
    }
    out
}

/// `--keep-last` is backmon's retention-count and `--keep-within` its retention-age; the
/// calendar rules (hourly ... yearly) have no backmon equivalent and are listed instead.
fn backmon_retention(p: &Policy) -> (Option<u32>, Option<String>, Vec<String>) {
    let age = p.keep_within.map(backmon_duration);
    let unexpressed = [
        ("--keep-hourly", p.keep_hourly),
        ("--keep-daily", p.keep_daily),
        ("--keep-weekly", p.keep_weekly),
        ("--keep-monthly", p.keep_monthly),
        ("--keep-yearly", p.keep_yearly),
    ]
    .into_iter()
    .filter_map(|(flag, n)| n.map(|n| format!("{flag} {n}")))
    .collect();
    (p.keep_last, age, unexpressed)
}

/// backmon's duration syntax: `(N)Y (N)M (N)w (N)d (N)h`, months and years uppercase.
fn backmon_duration(s: Span) -> String {
    let mut out = String::new();
    for (n, unit) in [
        (s.years, 'Y'),
        (s.months, 'M'),
        (s.days, 'd'),
        (s.hours, 'h'),
    ] {
        if n != 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

/// A single-quoted YAML scalar (the only escape is `''`).
fn yaml_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::BackupId;
    use chrono::TimeZone;
    use chrono::Utc;

    /// backmon's file-pattern matching, reduced to what our patterns use: `%Y` four digits,
    /// `%M %D %h %m %s` two, `%%` a literal `%`, anything else literal.
    fn backmon_matches(pattern: &str, name: &str) -> bool {
        let (mut p, mut n) = (pattern.chars().peekable(), name.chars().peekable());
        while let Some(c) = p.next() {
            if c == '%' {
                let width = match p.next() {
                    Some('%') => {
                        if n.next() != Some('%') {
                            return false;
                        }
                        continue;
                    }
                    Some('Y') => 4,
                    Some('M' | 'D' | 'h' | 'm' | 's') => 2,
                    other => panic!("unexpected substitution {other:?}"),
                };
                for _ in 0..width {
                    if !n.next().is_some_and(|d| d.is_ascii_digit()) {
                        return false;
                    }
                }
            } else if n.next() != Some(c) {
                return false;
            }
        }
        n.next().is_none()
    }

    fn yaml_value<'a>(def: &'a str, key: &str) -> &'a str {
        def.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("{key} missing from:\n{def}"))
    }

    #[test]
    fn definition_patterns_match_the_keys_this_tool_writes() {
        let policy = Policy::default();
        let zstd_age = Codec {
            compression: crate::layout::Compression::Zstd,
            encrypted: true,
        };
        for (db, format, codec) in [
            ("app", DumpFormat::Plain, Codec::default()),
            ("my db/100%", DumpFormat::Custom, Codec::default()),
            ("it's", DumpFormat::Plain, zstd_age),
        ] {
            let def = definition(&Backmon {
                bucket: "b-1",
                prefix: "prod/x/",
                series: &Series::Database(db.to_string()),
                format,
                codec,
                schedule: "0 3 * * *",
                max_age: "26h",
                retention: &policy,
            });
            let key = BackupId::new(
                db,
                Utc.with_ymd_and_hms(2026, 11, 23, 3, 4, 5).unwrap(),
                format,
            )
            .with_codec(codec)
            .key("prod/x/");
            let (dir, file) = key.rsplit_once('/').unwrap();
            let lines: Vec<&str> = def.lines().filter(|l| !l.starts_with('#')).collect();
            let unquote = |l: &str| {
                let l = l.trim().trim_end_matches(':');
                l[1..l.len() - 1].replace("''", "'")
            };
            assert_eq!(lines[0], "directories:");
            assert!(backmon_matches(&unquote(lines[1]), dir), "{dir}\n{def}");
            assert!(backmon_matches(&unquote(lines[8]), file), "{file}\n{def}");
            let other = if format == DumpFormat::Plain {
                ".dump"
            } else {
                ".sql"
            };
            let wrong = file.replace(format.extension(), other);
            assert!(!backmon_matches(&unquote(lines[8]), &wrong), "{wrong}");
            let other_codec = file.replace(&codec.extension(), ".zst");
            assert!(
                !backmon_matches(&unquote(lines[8]), &other_codec),
                "{other_codec}"
            );
            assert!(!backmon_matches(
                &unquote(lines[8]),
                &file.replace("2026", "26")
            ));
        }
    }

    #[test]
    fn definition_carries_schedule_and_expressible_retention() {
        let policy = Policy {
            keep_last: Some(7),
            keep_daily: Some(14),
            keep_within: Some("1y6m2d".parse().unwrap()),
            ..Policy::default()
        };
        let def = definition(&Backmon {
            bucket: "b-1",
            prefix: "",
            series: &Series::Database("app".into()),
            format: DumpFormat::Plain,
            codec: Codec::default(),
            schedule: "30 1 * * 1",
            max_age: "8d",
            retention: &policy,
        });
        assert_eq!(yaml_value(&def, "schedule"), "'30 1 * * 1'");
        assert_eq!(yaml_value(&def, "retention-count"), "7");
        assert_eq!(yaml_value(&def, "retention-age"), "'1Y6M2d'");
        assert!(def.contains("--max-age 8d"), "{def}");
        assert!(def.contains("cannot express (not encoded below): --keep-daily 14"));
        assert_eq!(yaml_value(&def, "purge"), "false");
        let bare = definition(&Backmon {
            retention: &Policy::default(),
            bucket: "b-1",
            prefix: "",
            series: &Series::Database("app".into()),
            format: DumpFormat::Plain,
            codec: Codec::default(),
            schedule: "0 3 * * *",
            max_age: "26h",
        });
        assert!(!bare.contains("retention-"), "{bare}");
    }
}
