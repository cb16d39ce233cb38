//! `restore`: a backup into a database (`ops::restore`, all or nothing), or the dump as stored
//! to stdout with `--output -`, its end written only once every check passed.

use crate::cli::RestoreArgs;
use crate::config::{Destination, RestoreConfig};
use crate::download::{self, Checked, Writer};
use crate::layout::{BackupId, DumpFormat};
use crate::ops::{restore, select};
use crate::{output, s3};
use anyhow::Result;

pub async fn run(args: &RestoreArgs) -> Result<()> {
    let cfg = RestoreConfig::from_args(args)?;
    let client = s3::client(&cfg.s3).await?;
    let key = select::key(&client, &cfg.s3, &cfg.which).await?;
    // `download::open` and `restore::into` refuse an encrypted key without an identity
    // before any download or database connection.
    let identities = cfg.identities.as_ref();
    let bucket = &cfg.s3.bucket;
    match &cfg.destination {
        Destination::Stdout => {
            let mut opened =
                download::open(&client, bucket, &cfg.s3.prefix, &key, identities).await?;
            opened.accept_unverified = cfg.unverified;
            if opened.format == DumpFormat::Plain {
                output::note(
                    "note: this is the dump as stored; psql runs any meta-command in a script it reads, so feed an object you did not write to `restore --target-url`, which runs none",
                );
            }
            // A plain dump only as far as the restore's script reader accepts it; either
            // format's end only once everything is checked.
            let stdout = tokio::io::stdout();
            let streamed = match opened.format {
                DumpFormat::Plain => {
                    let mut checked = Checked::new(stdout, &opened);
                    download::stream_into(opened, &mut checked).await?
                }
                DumpFormat::Custom => {
                    download::stream_into(opened, &mut Writer::new(stdout, true)).await?
                }
            };
            output::note(format_args!(
                "wrote {} bytes of s3://{bucket}/{key} to stdout (sha256 {})",
                streamed.raw_bytes, streamed.sha256
            ));
        }
        Destination::Database(conn) if BackupId::is_globals(&cfg.s3.prefix, &key) => {
            let restored =
                restore::globals_into(&client, &cfg.s3, &key, conn, identities, cfg.unverified)
                    .await?;
            let existing = match restored.existing.len() {
                0 => String::new(),
                n => format!(
                    "; {n} roles existed and were updated, not created: {}",
                    restored.existing.join(", ")
                ),
            };
            output::data_line(format_args!(
                "restored the globals s3://{bucket}/{key} to {}: {} statements, {} bytes of script, sha256 {}{existing}",
                restored.server,
                restored.statements,
                restored.streamed.raw_bytes,
                restored.streamed.sha256
            ));
        }
        Destination::Database(conn) => {
            let restored = restore::into(
                &client,
                &cfg.s3,
                &key,
                conn,
                cfg.force,
                identities,
                cfg.unverified,
            )
            .await?;
            output::data_line(format_args!(
                "restored s3://{bucket}/{key} into `{}`: {} tables, {} bytes of dump, sha256 {}",
                restored.database,
                restored.tables,
                restored.streamed.raw_bytes,
                restored.streamed.sha256
            ));
        }
    }
    Ok(())
}
