//! The integrity record: a small JSON object at `{key}.json` (`layout::BackupId::record_key`)
//! that `backup` writes once its backup is complete, with what `verify` and `restore` check the
//! stored bytes against (sha256 and size), and what the backup is (format, codec, versions).
//! Writing it needs only s3:PutObject, so a backup role that may not read its own backups still
//! leaves one; its presence in a listing is what `list` and `check` call recorded. A record is
//! read as hostile input: anyone who may write under the prefix can write one. It does not talk
//! to S3.

use crate::layout::{Codec, DumpFormat};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// Larger objects are not this tool's records (one is well under 1 KiB).
pub const MAX_BYTES: usize = 64 * 1024;
/// The record's own version: a reader refuses versions it does not know.
const VERSION: u32 = 1;

/// What a record holds. Never a secret: no connection string, no recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub record: u32,
    /// The backup's key: a record copied beside another backup does not vouch for it.
    pub key: String,
    /// `database` or `globals`.
    pub kind: String,
    pub database: Option<String>,
    /// `plain` or `custom`.
    pub format: String,
    /// `gzip` or `zstd`.
    pub compression: String,
    pub compression_level: i64,
    /// `age`, or none.
    pub encryption: Option<String>,
    /// How many age recipients, never which.
    pub age_recipients: Option<usize>,
    /// Of the stored bytes (compressed, and encrypted when `encryption` is set).
    pub sha256: String,
    /// Stored bytes.
    pub size: u64,
    /// Bytes pg_dump wrote.
    pub raw_size: u64,
    pub server_version: String,
    pub pg_dump_version: String,
    pub tool_version: String,
    /// The run that wrote the backup (its `run` metadata).
    pub run: String,
    /// When the backup was complete, by this machine's clock (RFC 3339).
    pub completed: String,
}

/// A record's fields that describe the backup rather than its bytes.
pub struct About<'a> {
    pub kind: &'a str,
    pub database: Option<&'a str>,
    pub format: DumpFormat,
    pub codec: Codec,
    pub compression_level: i64,
    pub age_recipients: Option<usize>,
    pub server_version: &'a str,
    pub pg_dump_version: &'a str,
    pub run: &'a str,
}

impl Record {
    pub fn new(key: &str, about: &About, sha256: &str, size: u64, raw_size: u64) -> Self {
        Self {
            record: VERSION,
            key: key.to_string(),
            kind: about.kind.to_string(),
            database: about.database.map(String::from),
            format: about.format.name().to_string(),
            compression: about.codec.compression.name().to_string(),
            compression_level: about.compression_level,
            encryption: about.codec.encrypted.then(|| "age".to_string()),
            age_recipients: about.age_recipients,
            sha256: sha256.to_string(),
            size,
            raw_size,
            server_version: about.server_version.to_string(),
            pg_dump_version: about.pg_dump_version.to_string(),
            tool_version: format!("pg-s3-backup {}", env!("CARGO_PKG_VERSION")),
            run: about.run.to_string(),
            completed: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut text = serde_json::to_vec_pretty(self).unwrap_or_default();
        text.push(b'\n');
        text
    }

    /// Reads the record stored for the backup at `key` (whose name says `format` and `codec`).
    /// The error says what is wrong with it, without the record's text.
    pub fn parse(bytes: &[u8], key: &str, format: DumpFormat, codec: Codec) -> Result<Self> {
        if bytes.len() > MAX_BYTES {
            bail!("it is {} bytes, larger than any record", bytes.len());
        }
        let record: Self = serde_json::from_slice(bytes)
            .map_err(|e| anyhow::anyhow!("it is not a record this tool writes ({e})"))?;
        if record.record != VERSION {
            bail!(
                "it is record version {}, and this pg-s3-backup reads version {VERSION}: upgrade pg-s3-backup",
                record.record
            );
        }
        if record.key != key {
            bail!("it names another backup");
        }
        if record.sha256.len() != 64
            || !record
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            bail!("its sha256 is not 64 lowercase hex digits");
        }
        let encrypted = match record.encryption.as_deref() {
            None => false,
            Some("age") => true,
            Some(_) => bail!("its encryption is not age"),
        };
        if record.format != format.name()
            || record.compression != codec.compression.name()
            || encrypted != codec.encrypted
        {
            bail!(
                "it says {} {}{}, but the key's name says {} {}{}",
                record.format,
                record.compression,
                if encrypted { " age" } else { "" },
                format.name(),
                codec.compression.name(),
                if codec.encrypted { " age" } else { "" },
            );
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Compression;

    fn about(codec: Codec) -> About<'static> {
        About {
            kind: "database",
            database: Some("app"),
            format: DumpFormat::Plain,
            codec,
            compression_level: 6,
            age_recipients: None,
            server_version: "15.8",
            pg_dump_version: "15.8",
            run: "r1",
        }
    }

    const KEY: &str = "p/app/app-20261202T010203Z.sql.gz";

    #[test]
    fn a_record_reads_back_as_written() {
        let codec = Codec::default();
        let sha = "a".repeat(64);
        let record = Record::new(KEY, &about(codec), &sha, 10, 20);
        let read = Record::parse(&record.to_bytes(), KEY, DumpFormat::Plain, codec).unwrap();
        assert_eq!(read, record);
        assert_eq!(read.size, 10);
        assert_eq!(read.raw_size, 20);
        assert_eq!(read.encryption, None);
    }

    #[test]
    fn a_record_for_anything_else_is_refused() {
        let codec = Codec::default();
        let good = Record::new(KEY, &about(codec), &"b".repeat(64), 10, 20);
        let zstd = Codec {
            compression: Compression::Zstd,
            encrypted: false,
        };
        let with = |f: &dyn Fn(&mut Record)| {
            let mut r = good.clone();
            f(&mut r);
            r.to_bytes()
        };
        let cases: Vec<(Vec<u8>, DumpFormat, Codec, &str)> = vec![
            (
                b"not json".to_vec(),
                DumpFormat::Plain,
                codec,
                "not a record",
            ),
            (
                vec![b' '; MAX_BYTES + 1],
                DumpFormat::Plain,
                codec,
                "larger than any record",
            ),
            (with(&|r| r.record = 2), DumpFormat::Plain, codec, "upgrade"),
            (
                with(&|r| r.key = "p/app/app-20261202T010204Z.sql.gz".into()),
                DumpFormat::Plain,
                codec,
                "another backup",
            ),
            (
                with(&|r| r.sha256 = "B".repeat(64)),
                DumpFormat::Plain,
                codec,
                "lowercase hex",
            ),
            (
                with(&|r| r.sha256 = "b".repeat(63)),
                DumpFormat::Plain,
                codec,
                "lowercase hex",
            ),
            (
                with(&|r| r.encryption = Some("gpg".into())),
                DumpFormat::Plain,
                codec,
                "not age",
            ),
            (
                good.to_bytes(),
                DumpFormat::Custom,
                codec,
                "key's name says",
            ),
            (good.to_bytes(), DumpFormat::Plain, zstd, "key's name says"),
            (
                with(&|r| r.encryption = Some("age".into())),
                DumpFormat::Plain,
                codec,
                "key's name says",
            ),
        ];
        for (bytes, format, codec, needle) in cases {
            let err = Record::parse(&bytes, KEY, format, codec)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
