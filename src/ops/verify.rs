//! Verification: stream a backup and check it is whole without restoring it: the size and
//! sha256 match its integrity record (or, for older backups, the sha256 metadata), the encryption authenticates (an encrypted backup), the compressed stream
//! decodes fully (gzip CRC and length, or the zstd frame's checksum), and the dump is complete
//! (plain: the restore's own script reader accepts it, pg_dump's header and trailer included;
//! custom: `pg_restore --file=-` turns it into a script that reader accepts). Without an
//! identity an encrypted backup's stored bytes are checked against their sha256, and the line
//! says that this is all.

use crate::config::S3Config;
use crate::crypt::Identities;
use crate::download::{self, Check};
use crate::layout::{Compression, DumpFormat};
use crate::source::pg_dump::{self, PgVersion};
use anyhow::Result;

/// Verifies one object; the line says what was checked, the error what is wrong.
pub async fn key(
    client: &aws_sdk_s3::Client,
    cfg: &S3Config,
    key: &str,
    identities: Option<&Identities>,
    sent_sha256: Option<&str>,
    accept_unverified: bool,
) -> Result<String> {
    let (_, codec) = download::kind_of(&cfg.prefix, key);
    if codec.encrypted && identities.is_none() {
        let opened = download::open_stored(client, &cfg.bucket, &cfg.prefix, key).await?;
        let streamed = download::stream_stored(opened, sent_sha256).await?;
        let matches = streamed.matched.unwrap_or("the bytes this backup sent");
        return Ok(format!(
            "ok: s3://{}/{key}: {} bytes stored, sha256 matches {matches}; it is encrypted and this host holds no identity, so its contents were not checked: run `pg-s3-backup verify --age-identity KEY_FILE` where the identity is kept",
            cfg.bucket, streamed.stored_bytes
        ));
    }
    let mut opened = download::open(client, &cfg.bucket, &cfg.prefix, key, identities).await?;
    opened.accept_unverified = accept_unverified;
    let what = match opened.globals {
        true => "globals script",
        false => "dump",
    };
    let streamed = match opened.format {
        // The same reading a restore does: a dump it would refuse is not whole.
        DumpFormat::Plain => {
            let mut check = Check::of(&opened);
            download::stream_into(opened, &mut check).await?
        }
        DumpFormat::Custom => {
            let version = opened
                .metadata
                .get("pg-dump-version")
                .and_then(|v| PgVersion::parse(v))
                .unwrap_or(PgVersion(0));
            let tool = pg_dump::choose_tool("pg_restore", version, None, "PATH").await?;
            download::stream_archive(opened, &tool.path, &mut Check::default()).await?
        }
    };
    let sha_note = match streamed.matched {
        Some(source) => format!("sha256 matches {source}"),
        None => "unverified: no integrity record to compare (accepted with --unverified)".into(),
    };
    let stream_note = match codec.compression {
        Compression::Gzip => "gzip CRC and length good",
        Compression::Zstd => "zstd frame and checksum good",
    };
    let age_note = if codec.encrypted {
        "age decryption authenticated, "
    } else {
        ""
    };
    Ok(format!(
        "ok: s3://{}/{key}: {} bytes stored, {} bytes of {what}, {age_note}{stream_note}, {what} complete and restorable, {sha_note}",
        cfg.bucket, streamed.stored_bytes, streamed.raw_bytes
    ))
}
