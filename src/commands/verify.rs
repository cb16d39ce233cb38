//! `verify`: stream a backup and check it is whole without restoring it: the sha256 matches the
//! metadata, the gzip stream decodes fully (CRC and length), and the dump is complete (plain:
//! the restore's own script reader accepts it, pg_dump's header and trailer included; custom:
//! `pg_restore --list` reads it). Exit 0 good, 1 damaged or refused.

use crate::cli::VerifyArgs;
use crate::commands::restore::{check_selection, restore_into, select_key};
use crate::config::S3Config;
use crate::download::{self, Check};
use crate::layout::DumpFormat;
use crate::s3;
use crate::source::conninfo::ConnInfo;
use crate::source::pg_dump::{self, PgVersion};
use anyhow::Result;

pub async fn run(args: &VerifyArgs) -> Result<()> {
    let cfg = S3Config::from_args(&args.s3)?;
    check_selection(&args.which)?;
    let scratch = args
        .restore_check
        .as_deref()
        .map(|u| ConnInfo::parse_with_connect_timeout(Some(u), args.connect_timeout.as_deref()))
        .transpose()?;
    let client = s3::client(&cfg).await?;
    let key = select_key(&client, &cfg, &args.which).await?;
    let line = verify_key(&client, &cfg, &key).await?;
    crate::output::data_line(&line);
    if let Some(conn) = scratch {
        let restored = restore_into(&client, &cfg, &key, &conn, false).await?;
        crate::output::data_line(format_args!(
            "restore check: restored into `{}`, {} tables",
            restored.database, restored.tables
        ));
    }
    Ok(())
}

/// Verifies one object; the error names what is wrong.
pub async fn verify_key(client: &aws_sdk_s3::Client, cfg: &S3Config, key: &str) -> Result<String> {
    let opened = download::open(client, &cfg.bucket, &cfg.prefix, key).await?;
    let has_sha = opened.expected_sha256.is_some();
    let streamed = match opened.format {
        DumpFormat::Plain => {
            // The same reading a restore does: a dump it would refuse is not whole.
            download::stream_into(opened, &mut Check::default()).await?
        }
        DumpFormat::Custom => {
            let version = opened
                .metadata
                .get("pg-dump-version")
                .and_then(|v| PgVersion::parse(v))
                .unwrap_or(PgVersion(0));
            let tool = pg_dump::choose_tool("pg_restore", version, None, "PATH").await?;
            // The archive as the script a restore would apply, read the same way.
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
