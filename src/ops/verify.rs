//! Verification: stream a backup and check it is whole without restoring it: the sha256 matches
//! the metadata, the gzip stream decodes fully (CRC and length), and the dump is complete (plain:
//! the restore's own script reader accepts it, pg_dump's header and trailer included; custom:
//! `pg_restore --file=-` turns it into a script that reader accepts).

use crate::config::S3Config;
use crate::download::{self, Check};
use crate::layout::DumpFormat;
use crate::source::pg_dump::{self, PgVersion};
use anyhow::Result;

/// Verifies one object; the line says what was checked, the error what is wrong.
pub async fn key(client: &aws_sdk_s3::Client, cfg: &S3Config, key: &str) -> Result<String> {
    let opened = download::open(client, &cfg.bucket, &cfg.prefix, key).await?;
    let has_sha = opened.expected_sha256.is_some();
    let streamed = match opened.format {
        // The same reading a restore does: a dump it would refuse is not whole.
        DumpFormat::Plain => download::stream_into(opened, &mut Check::default()).await?,
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
    let sha_note = if has_sha {
        "sha256 matches its metadata"
    } else {
        "no sha256 metadata to compare"
    };
    Ok(format!(
        "ok: s3://{}/{key}: {} bytes stored, {} bytes of dump, gzip CRC and length good, dump complete and restorable, {sha_note}",
        cfg.bucket, streamed.stored_bytes, streamed.raw_bytes
    ))
}
