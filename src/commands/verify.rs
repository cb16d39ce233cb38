//! `verify`: stream a backup and check it is whole without restoring it: the sha256 matches the
//! metadata, the gzip stream decodes fully (CRC and length), and the dump is complete (plain:
//! the restore's own script reader accepts it, pg_dump's header and trailer included; custom:
//! `pg_restore --list` reads it). Exit 0 good, 1 damaged or refused.

use crate::child::Stderr;
use crate::cli::VerifyArgs;
use crate::commands::restore::{check_selection, restore_into, select_key};
use crate::config::S3Config;
use crate::download::{self, Check, Writer};
use crate::layout::DumpFormat;
use crate::s3;
use crate::source::conninfo::ConnInfo;
use crate::source::pg_dump::{self, PgVersion};
use anyhow::{bail, Context, Result};
use std::process::Stdio;

pub async fn run(args: &VerifyArgs) -> Result<()> {
    let cfg = S3Config::from_args(&args.s3)?;
    check_selection(&args.which)?;
    let scratch = args
        .restore_check
        .as_deref()
        .map(|u| ConnInfo::parse(Some(u)))
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
            let tool = pg_dump::choose_tool("pg_restore", version, None, "PATH")?;
            let mut child = tokio::process::Command::new(&tool.path)
                .arg("--list")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .context("cannot start pg_restore")?;
            let stdin = child.stdin.take().context("pg_restore stdin")?;
            // Drained while streaming: a full stderr pipe would stall pg_restore.
            let stderr = Stderr::drain(child.stderr.take().context("pg_restore stderr")?, false);
            // `pg_restore --list` stops reading after the table of contents; the rest of the
            // object must still be read to check its gzip CRC and sha256.
            let mut writer = Writer::new(UntilClosed { inner: Some(stdin) }, false);
            let streamed = download::stream_into(opened, &mut writer).await;
            drop(writer);
            let status = child.wait().await?;
            let detail = stderr.finish().await;
            let streamed = streamed?;
            if !status.success() {
                bail!("{key} decodes, but pg_restore --list rejects the archive: {detail}");
            }
            streamed
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

/// Writes to the child until it closes its end, then discards the rest.
struct UntilClosed<W> {
    inner: Option<W>,
}

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for UntilClosed<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Ok(buf.len()));
        };
        match std::pin::Pin::new(inner).poll_write(cx, buf) {
            Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.inner = None;
                Poll::Ready(Ok(buf.len()))
            }
            other => other,
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => std::pin::Pin::new(inner).poll_flush(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => std::pin::Pin::new(inner).poll_shutdown(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }
}
