//! Object keys: `{prefix}{db}/{db}-{YYYYMMDD}T{HHMMSS}Z[-{n}].{sql|dump}.{gz|zst}[.age]`,
//! written and parsed here and nowhere else, so that list, prune and restore only ever see keys
//! this tool wrote; and the `.lock` object that claims a key while its backup runs. A server's
//! roles and tablespaces (`pg_dumpall --globals-only`) are a series of their own under
//! `{prefix}@globals/@globals-…sql.{gz|zst}[.age]`: a database's directory never starts with a
//! raw `@` (it is percent-encoded), so no database's keys can be taken for them. The codec
//! (compression, encryption) is part of the key but not of the series: every codec of a
//! database is one list of backups. It does not talk to S3.

use chrono::{DateTime, NaiveDateTime, Utc};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Characters of a database name kept as they are in a key; everything else (`/`, `%`, spaces,
/// unicode) is percent-encoded so the name stays one path segment and decodes back exactly.
const ENCODED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'_').remove(b'-').remove(b'.');

const TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";
/// The directory, and the file names' start, of the globals series. `@` is outside [`ENCODED`]'s
/// kept characters, so it is no database's directory.
const GLOBALS_DIR: &str = "@globals";
const LOCK_SUFFIX: &str = ".lock";
const RECORD_SUFFIX: &str = ".json";

/// How often a running backup rewrites its lock object, so that cleanup (which takes a lock
/// last written before `--abort-incomplete-after` for a killed run's) knows it is alive however
/// long it runs. Well under the shortest age `backup` accepts (1h). Debug builds (the tests)
/// take `PGS3_DEBUG_HEARTBEAT_SECS` instead.
pub fn heartbeat() -> std::time::Duration {
    #[cfg(debug_assertions)]
    if let Some(secs) = std::env::var("PGS3_DEBUG_HEARTBEAT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return std::time::Duration::from_secs(secs);
    }
    std::time::Duration::from_secs(600)
}

/// How the dump inside the gzip stream was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DumpFormat {
    /// SQL text, restored with psql.
    Plain,
    /// pg_dump's custom archive (`-Fc -Z0`), restored with pg_restore.
    Custom,
}

impl DumpFormat {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Plain => ".sql",
            Self::Custom => ".dump",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Custom => "custom",
        }
    }
}

/// How the dump's bytes were compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    Zstd,
}

impl Compression {
    pub const ALL: [Self; 2] = [Self::Gzip, Self::Zstd];

    pub fn extension(self) -> &'static str {
        match self {
            Self::Gzip => ".gz",
            Self::Zstd => ".zst",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }
}

/// What was done to the dump's bytes before they were stored: compressed, then (optionally)
/// encrypted to age recipients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    pub compression: Compression,
    /// age v1, public-key: only a holder of a recipient's identity reads it.
    pub encrypted: bool,
}

impl Default for Codec {
    fn default() -> Self {
        Self {
            compression: Compression::Gzip,
            encrypted: false,
        }
    }
}

const AGE_SUFFIX: &str = ".age";

impl Codec {
    pub fn extension(self) -> String {
        let age = if self.encrypted { AGE_SUFFIX } else { "" };
        format!("{}{age}", self.compression.extension())
    }

    /// The stored object's Content-Type.
    pub fn content_type(self) -> &'static str {
        match (self.encrypted, self.compression) {
            (true, _) => "application/octet-stream",
            (false, Compression::Gzip) => "application/gzip",
            (false, Compression::Zstd) => "application/zstd",
        }
    }

    /// The format and codec a file name ends in (`.sql.zst.age`, ...), wherever the key is;
    /// `None` for any other ending.
    pub fn of_name(name: &str) -> Option<(&str, DumpFormat, Self)> {
        let (rest, encrypted) = match name.strip_suffix(AGE_SUFFIX) {
            Some(rest) => (rest, true),
            None => (name, false),
        };
        let (rest, compression) = Compression::ALL
            .into_iter()
            .find_map(|c| rest.strip_suffix(c.extension()).map(|r| (r, c)))?;
        let (stem, format) = [DumpFormat::Plain, DumpFormat::Custom]
            .into_iter()
            .find_map(|f| rest.strip_suffix(f.extension()).map(|s| (s, f)))?;
        Some((
            stem,
            format,
            Self {
                compression,
                encrypted,
            },
        ))
    }
}

/// What a series of backups holds: one database, or the server's roles and tablespaces.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Series {
    Database(String),
    /// `pg_dumpall --globals-only`: a plain SQL script, restored with psql or `restore`.
    Globals,
}

impl Series {
    /// `database` or `globals`, as `list --json` and the outcome name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Database(_) => "database",
            Self::Globals => "globals",
        }
    }

    /// The database's name; `None` for the globals.
    pub fn database(&self) -> Option<&str> {
        match self {
            Self::Database(name) => Some(name),
            Self::Globals => None,
        }
    }

    /// For messages: ``database `app` `` or `the globals`.
    pub fn label(&self) -> String {
        match self {
            Self::Database(name) => format!("database `{name}`"),
            Self::Globals => "the globals".to_string(),
        }
    }

    /// For messages that name a database as ``of `app` ``: `` `app` `` or `the globals`.
    pub fn shown(&self) -> String {
        match self {
            Self::Database(name) => format!("`{name}`"),
            Self::Globals => "the globals".to_string(),
        }
    }

    /// Its directory under the prefix (no `/`).
    fn dir(&self) -> String {
        match self {
            Self::Database(name) => encode_db(name),
            Self::Globals => GLOBALS_DIR.to_string(),
        }
    }

    /// The listing prefix holding every backup of the series under `prefix`.
    pub fn prefix(&self, prefix: &str) -> String {
        format!("{prefix}{}/", self.dir())
    }
}

/// As `"kind": "database", "database": NAME` or `"kind": "globals", "database": null`; flattened
/// into the JSON that lists backups.
impl serde::Serialize for Series {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("kind", self.kind())?;
        map.serialize_entry("database", &self.database())?;
        map.end()
    }
}

/// The objects this tool writes beside a backup, under its key plus a suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Companion {
    /// `{key}.lock`: claims the key while its backup runs.
    Lock,
    /// `{key}.json`: the integrity record, written once the backup is complete.
    Record,
}

/// One backup's identity, as encoded in its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupId {
    pub series: Series,
    /// UTC, whole seconds.
    pub time: DateTime<Utc>,
    /// 0 for the first backup in a second; 2, 3, ... for later ones in the same second.
    pub seq: u32,
    pub format: DumpFormat,
    /// Not part of the series: list, prune and restore take every codec's backups as one.
    pub codec: Codec,
}

impl BackupId {
    /// A gzip, unencrypted backup; see [`BackupId::with_codec`].
    pub fn new(database: &str, time: DateTime<Utc>, format: DumpFormat) -> Self {
        Self::of(Series::Database(database.to_string()), time, format)
    }

    /// A backup of `series`; the globals are always a plain script.
    pub fn of(series: Series, time: DateTime<Utc>, format: DumpFormat) -> Self {
        let time = DateTime::from_timestamp(time.timestamp(), 0).unwrap_or(time);
        let format = match series {
            Series::Globals => DumpFormat::Plain,
            Series::Database(_) => format,
        };
        Self {
            series,
            time,
            seq: 0,
            format,
            codec: Codec::default(),
        }
    }

    pub fn with_codec(self, codec: Codec) -> Self {
        Self { codec, ..self }
    }

    /// The next key to try when this one is taken.
    pub fn next_seq(&self) -> Self {
        Self {
            seq: if self.seq == 0 { 2 } else { self.seq + 1 },
            ..self.clone()
        }
    }

    /// The full object key under `prefix` (already normalized: empty or ending in `/`).
    pub fn key(&self, prefix: &str) -> String {
        let db = self.series.dir();
        let seq = if self.seq == 0 {
            String::new()
        } else {
            format!("-{}", self.seq)
        };
        format!(
            "{prefix}{db}/{db}-{}{seq}{}{}",
            self.time.format(TIME_FORMAT),
            self.format.extension(),
            self.codec.extension()
        )
    }

    /// The object that claims `key` while its backup runs (`{key}.lock`). It never parses as
    /// a backup, so list, prune and restore do not see it.
    pub fn lock_key(key: &str) -> String {
        format!("{key}{LOCK_SUFFIX}")
    }

    /// The backup a lock object claims, if `key` is one of this tool's lock objects.
    pub fn parse_lock(prefix: &str, key: &str) -> Option<Self> {
        Self::parse(prefix, key.strip_suffix(LOCK_SUFFIX)?)
    }

    /// The integrity record of the backup at `key` (`{key}.json`, see `record`): written after
    /// the backup is complete. Like a lock, it never parses as a backup.
    pub fn record_key(key: &str) -> String {
        format!("{key}{RECORD_SUFFIX}")
    }

    /// The backup key a record or lock object of this tool belongs to, and which of the two it
    /// is; `None` for any other key (a backup's own key included).
    pub fn companion_of<'k>(prefix: &str, key: &'k str) -> Option<(&'k str, Companion)> {
        let (backup, companion) = match key.strip_suffix(RECORD_SUFFIX) {
            Some(backup) => (backup, Companion::Record),
            None => (key.strip_suffix(LOCK_SUFFIX)?, Companion::Lock),
        };
        Self::parse(prefix, backup).map(|_| (backup, companion))
    }

    /// The listing prefix holding every backup of `database` under `prefix`.
    pub fn database_prefix(prefix: &str, database: &str) -> String {
        Series::Database(database.to_string()).prefix(prefix)
    }

    /// Whether `key` is this tool's globals backup under `prefix`.
    pub fn is_globals(prefix: &str, key: &str) -> bool {
        Self::parse(prefix, key).is_some_and(|id| id.series == Series::Globals)
    }

    /// Parses a key written by [`BackupId::key`] under `prefix`; anything else is `None`.
    pub fn parse(prefix: &str, key: &str) -> Option<Self> {
        let rest = key.strip_prefix(prefix)?;
        let (dir, file) = rest.split_once('/')?;
        let file = file.strip_prefix(dir)?.strip_prefix('-')?;
        let series = if dir == GLOBALS_DIR {
            Series::Globals
        } else {
            let database = percent_decode_str(dir).decode_utf8().ok()?.into_owned();
            if database.is_empty() || encode_db(&database) != dir {
                return None;
            }
            Series::Database(database)
        };
        let (stem, format, codec) = Codec::of_name(file)?;
        // This tool writes the globals only as a plain script.
        if series == Series::Globals && format != DumpFormat::Plain {
            return None;
        }
        let (stamp, seq) = match stem.split_once("Z-") {
            Some((stamp, seq)) => (format!("{stamp}Z"), parse_seq(seq)?),
            None => (stem.to_string(), 0),
        };
        if stamp.len() != 16 {
            return None;
        }
        let time = NaiveDateTime::parse_from_str(&stamp, TIME_FORMAT)
            .ok()?
            .and_utc();
        Some(Self {
            series,
            time,
            seq,
            format,
            codec,
        })
    }
}

fn parse_seq(s: &str) -> Option<u32> {
    if s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|n| *n >= 2)
}

fn encode_db(name: &str) -> String {
    // `.` and `..` would read as path segments in many tools.
    if name.chars().all(|c| c == '.') {
        return name.replace('.', "%2E");
    }
    utf8_percent_encode(name, ENCODED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn key_shape_matches_the_documented_layout() {
        let id = BackupId::new("app", at(2026, 11, 23, 3, 4, 5), DumpFormat::Plain);
        assert_eq!(
            id.key("backups/"),
            "backups/app/app-20261123T030405Z.sql.gz"
        );
        let custom = BackupId {
            format: DumpFormat::Custom,
            ..id.clone()
        };
        assert_eq!(custom.key(""), "app/app-20261123T030405Z.dump.gz");
        assert_eq!(
            id.next_seq().key("p/"),
            "p/app/app-20261123T030405Z-2.sql.gz"
        );
        assert_eq!(id.next_seq().next_seq().seq, 3);
    }

    #[test]
    fn every_codec_has_its_own_ending_and_parses_back() {
        let id = BackupId::new("app", at(2026, 11, 23, 3, 4, 5), DumpFormat::Plain);
        let mut endings = Vec::new();
        for format in [DumpFormat::Plain, DumpFormat::Custom] {
            for compression in Compression::ALL {
                for encrypted in [false, true] {
                    let codec = Codec {
                        compression,
                        encrypted,
                    };
                    let id = BackupId {
                        format,
                        ..id.clone().with_codec(codec)
                    };
                    let key = id.key("p/");
                    assert_eq!(BackupId::parse("p/", &key), Some(id.clone()), "{key}");
                    endings.push(
                        key.trim_start_matches("p/app/app-20261123T030405Z")
                            .to_string(),
                    );
                }
            }
        }
        assert_eq!(
            endings,
            [
                ".sql.gz",
                ".sql.gz.age",
                ".sql.zst",
                ".sql.zst.age",
                ".dump.gz",
                ".dump.gz.age",
                ".dump.zst",
                ".dump.zst.age"
            ]
        );
        let zstd = Codec {
            compression: Compression::Zstd,
            encrypted: false,
        };
        assert_eq!(zstd.content_type(), "application/zstd");
        assert_eq!(Codec::default().content_type(), "application/gzip");
        let age = Codec {
            encrypted: true,
            ..zstd
        };
        assert_eq!(age.content_type(), "application/octet-stream");
    }

    #[test]
    fn awkward_database_names_round_trip() {
        for name in [
            "my db",
            "a/b",
            "100%",
            "ünïcødé-数据库",
            "q?x#y@z:w",
            "..",
            "a-b-20260101T000000Z",
        ] {
            let id = BackupId::new(name, at(2024, 2, 29, 23, 59, 59), DumpFormat::Custom);
            let key = id.key("x/");
            assert_eq!(key.matches('/').count(), 2, "{key}");
            assert_eq!(BackupId::parse("x/", &key), Some(id), "{key}");
        }
    }

    #[test]
    fn foreign_keys_are_not_backups() {
        for key in [
            "x/app/",
            "x/app.sql.gz",
            "x/app/other-20261123T030405Z.sql.gz",
            "x/app/app-20261123T030405Z.sql",
            "x/app/app-20261123T030405Z.tar.gz",
            "x/app/app-20261323T030405Z.sql.gz",
            "x/app/app-2026112T030405Z.sql.gz",
            "x/app/app-20261123T030405Z-1.sql.gz",
            "x/app/app-20261123T030405Z-02.sql.gz",
            "x/app/sub/app-20261123T030405Z.sql.gz",
            "y/app/app-20261123T030405Z.sql.gz",
            "x/a%2fb/a%2fb-20261123T030405Z.sql.gz",
            "x/app/app-20261123T030405Z.sql.gz.lock",
            "x/app/app-20261123T030405Z.sql.age",
            "x/app/app-20261123T030405Z.sql.age.gz",
            "x/app/app-20261123T030405Z.sql.zst.age.age",
            "x/app/app-20261123T030405Z.sql.zstd",
            "x/app/app-20261123T030405Z.zst",
            "x/app/app-20261123T030405Z.sql.gz.zst",
        ] {
            assert_eq!(BackupId::parse("x/", key), None, "{key}");
        }
    }

    #[test]
    fn the_globals_have_their_own_series_no_database_name_reaches() {
        let time = at(2026, 11, 23, 3, 4, 5);
        let globals = BackupId::of(Series::Globals, time, DumpFormat::Custom);
        assert_eq!(
            globals.format,
            DumpFormat::Plain,
            "the globals are a script"
        );
        let key = globals.key("p/");
        assert_eq!(key, "p/@globals/@globals-20261123T030405Z.sql.gz");
        assert_eq!(BackupId::parse("p/", &key), Some(globals.clone()));
        assert_eq!(Series::Globals.prefix("p/"), "p/@globals/");
        // Databases named like the globals keep their own keys, and parse back as databases.
        for name in ["@globals", "globals", "%40globals", "_globals", "@"] {
            let db = BackupId::new(name, time, DumpFormat::Plain);
            let db_key = db.key("p/");
            assert_ne!(db_key, key, "{name}");
            assert!(!db_key.starts_with("p/@globals/"), "{db_key}");
            assert_eq!(BackupId::parse("p/", &db_key), Some(db), "{name}");
        }
        // Only the plain script this tool writes is a globals backup.
        for foreign in [
            "p/@globals/@globals-20261123T030405Z.dump.gz",
            "p/@globals/globals-20261123T030405Z.sql.gz",
            "p/%40globals/@globals-20261123T030405Z.sql.gz",
            "p/@Globals/@Globals-20261123T030405Z.sql.gz",
        ] {
            assert_eq!(BackupId::parse("p/", foreign), None, "{foreign}");
        }
        assert_eq!(Series::Globals.kind(), "globals");
        assert_eq!(Series::Globals.database(), None);
        assert_eq!(Series::Database("a".into()).database(), Some("a"));
    }

    #[test]
    fn lock_keys_name_the_key_they_claim() {
        let key = BackupId::new("app", at(2026, 11, 23, 3, 4, 5), DumpFormat::Plain).key("x/");
        let lock = BackupId::lock_key(&key);
        assert_eq!(lock, "x/app/app-20261123T030405Z.sql.gz.lock");
        assert_eq!(BackupId::parse("x/", &lock), None);
        assert_eq!(
            BackupId::parse_lock("x/", &lock).map(|id| id.key("x/")),
            Some(key.clone())
        );
        assert_eq!(BackupId::parse_lock("x/", &key), None);
        assert_eq!(BackupId::parse_lock("x/", "x/app/notes.lock"), None);
    }

    #[test]
    fn records_and_locks_belong_to_the_backup_they_name() {
        let key = BackupId::new("app", at(2026, 11, 23, 3, 4, 5), DumpFormat::Plain).key("x/");
        let record = BackupId::record_key(&key);
        assert_eq!(record, "x/app/app-20261123T030405Z.sql.gz.json");
        assert_eq!(BackupId::parse("x/", &record), None);
        assert_eq!(
            BackupId::companion_of("x/", &record),
            Some((key.as_str(), Companion::Record))
        );
        let lock = BackupId::lock_key(&key);
        assert_eq!(
            BackupId::companion_of("x/", &lock),
            Some((key.as_str(), Companion::Lock))
        );
        for other in [
            key.as_str(),
            "x/app/notes.json",
            "x/app/app-20261123T030405Z.sql.json",
            "y/app/app-20261123T030405Z.sql.gz.json",
            "x/app/app-20261123T030405Z.sql.gz.json.json",
            "x/app/app-20261123T030405Z.sql.gz.lock.json",
        ] {
            assert_eq!(BackupId::companion_of("x/", other), None, "{other}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Only keys this module writes are ever candidates: keys shaped like ours, with
            /// random near-misses (another database's name in the file, bad timestamps, `-1` or
            /// `-02` suffixes, foreign extensions, odd percent-encoding), parse only if writing the
            /// parsed id gives back exactly that key.
            #[test]
            fn only_canonical_keys_parse(
                db in "[a-z0-9%.-]{1,6}",
                same: bool,
                other in "[a-z0-9%.-]{1,6}",
                ts in "20[0-9]{2}[01][0-9][0-3][0-9]T[0-2][0-9][0-5][0-9][0-6][0-9]Z?",
                seq in "(-[0-9]{1,2})?",
                ext in prop::sample::select(vec![".sql.gz", ".dump.gz", ".gz", ".sql", ".sql.gz.tmp", ".sql.zst", ".dump.zst.age", ".sql.age", ".age", ".zst.age", ".sql.gz.age.age"]),
            ) {
                let file_db = if same { db.clone() } else { other };
                let key = format!("x/{db}/{file_db}-{ts}{seq}{ext}");
                if let Some(id) = BackupId::parse("x/", &key) {
                    prop_assert_eq!(id.key("x/"), key);
                }
            }

            /// Every id round-trips through its key, whatever the database name.
            #[test]
            fn written_keys_parse_back(name in "\\PC{1,20}", secs in 0i64..4_000_000_000, seq in prop_oneof![Just(0u32), 2u32..50], custom: bool, zstd: bool, encrypted: bool) {
                let format = if custom { DumpFormat::Custom } else { DumpFormat::Plain };
                let compression = if zstd { Compression::Zstd } else { Compression::Gzip };
                let codec = Codec { compression, encrypted };
                let id = BackupId { seq, ..BackupId::new(&name, DateTime::from_timestamp(secs, 0).unwrap(), format).with_codec(codec) };
                prop_assert_eq!(BackupId::parse("p/q/", &id.key("p/q/")), Some(id));
            }
        }
    }
}
