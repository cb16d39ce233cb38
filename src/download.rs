//! The reverse pipeline for `restore` and `verify`: GetObject body → sha256 of the stored bytes
//! → gzip decoding (CRC and length checked by the decoder) → any async writer. Never holds the
//! object in memory or on disk. The sha256 is compared before `stream_into` returns, so a caller
//! feeding psql can still kill it (rolling back) before it sees end of input. A body that stops
//! arriving for `--request-timeout` fails instead of hanging.

use crate::layout::{BackupId, DumpFormat};
use crate::s3::{self, describe};
use anyhow::{bail, Context, Result};
use async_compression::tokio::bufread::GzipDecoder;
use aws_sdk_s3::Client;
use sha2::{Digest, Sha256};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};

/// Bytes of the decompressed end kept to check pg_dump's completion trailer.
const TAIL: usize = 4096;

/// An opened backup object.
pub struct Opened {
    pub key: String,
    pub format: DumpFormat,
    /// The `sha256` metadata written by `backup`, if any.
    pub expected_sha256: Option<String>,
    pub metadata: std::collections::HashMap<String, String>,
    body: aws_sdk_s3::primitives::ByteStream,
    /// How long the body may send nothing (the client's `--request-timeout`).
    idle: Duration,
}

/// What streaming found; returned only when the gzip stream and the sha256 were both good.
#[derive(Debug)]
pub struct Streamed {
    pub stored_bytes: u64,
    pub raw_bytes: u64,
    pub sha256: String,
    /// The last bytes of the decompressed dump.
    pub tail: Vec<u8>,
}

pub async fn open(client: &Client, bucket: &str, prefix: &str, key: &str) -> Result<Opened> {
    let uri = format!("s3://{bucket}/{key}");
    let format =
        BackupId::parse(prefix, key)
            .map(|id| id.format)
            .unwrap_or(if key.ends_with(".dump.gz") {
                DumpFormat::Custom
            } else {
                DumpFormat::Plain
            });
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| describe("GetObject", &uri, &e))?;
    let metadata = out.metadata().cloned().unwrap_or_default();
    Ok(Opened {
        key: key.to_string(),
        format,
        expected_sha256: metadata.get("sha256").cloned(),
        metadata,
        body: out.body,
        idle: s3::request_timeout(client),
    })
}

/// Streams the decompressed dump into `out`. Fails, naming the problem, on a damaged gzip stream
/// (bad CRC or length, truncation) or a sha256 that differs from the metadata.
pub async fn stream_into<W: AsyncWrite + Unpin>(opened: Opened, out: &mut W) -> Result<Streamed> {
    let mut hashing = Hashing {
        inner: opened.body.into_async_read(),
        hasher: Sha256::new(),
        bytes: 0,
        idle: opened.idle,
        deadline: Box::pin(tokio::time::sleep(opened.idle)),
        waiting: false,
    };
    let mut tail = Vec::with_capacity(TAIL * 2);
    let mut raw_bytes = 0u64;
    {
        let mut decoder = GzipDecoder::new(BufReader::new(&mut hashing));
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = decoder.read(&mut buf).await.map_err(|e| {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    anyhow::anyhow!(
                        "S3 stopped sending {}: {e}: check the network, or raise --request-timeout",
                        opened.key
                    )
                } else {
                    anyhow::anyhow!("the gzip stream of {} is damaged: {e}", opened.key)
                }
            })?;
            if n == 0 {
                break;
            }
            raw_bytes += n as u64;
            out.write_all(&buf[..n])
                .await
                .context("writing the restored dump")?;
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > TAIL * 2 {
                tail.drain(..tail.len() - TAIL);
            }
        }
    }
    // Bytes after the gzip member would be ignored by the decoder; a backup has none.
    let mut rest = [0u8; 1];
    if hashing.read(&mut rest).await? != 0 {
        bail!("{} has data after the end of its gzip stream", opened.key);
    }
    let sha256 = hex::encode(hashing.hasher.finalize());
    match &opened.expected_sha256 {
        Some(expected) if *expected != sha256 => {
            bail!(
                "sha256 of {} is {sha256} but its metadata says {expected}: the object is damaged",
                opened.key
            )
        }
        _ => {}
    }
    let keep = tail.len().saturating_sub(TAIL);
    tail.drain(..keep);
    Ok(Streamed {
        stored_bytes: hashing.bytes,
        raw_bytes,
        sha256,
        tail,
    })
}

/// Hashes and counts the stored bytes as the decoder reads them, and fails the read when the
/// body sends nothing for `idle` (the SDK's attempt timeout ends when the headers arrive).
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// The last read was Pending: `deadline` runs.
    waiting: bool,
}

impl<R: AsyncRead + Unpin> AsyncRead for Hashing<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        match &poll {
            Poll::Ready(result) => {
                if result.is_ok() {
                    let fresh = &buf.filled()[before..];
                    this.bytes += fresh.len() as u64;
                    this.hasher.update(fresh);
                }
                this.waiting = false;
            }
            Poll::Pending => {
                // The clock runs only while the decoder is waiting for data, not while a slow
                // writer (psql building an index) keeps it from asking.
                if !this.waiting {
                    this.waiting = true;
                    let until = tokio::time::Instant::now() + this.idle;
                    this.deadline.as_mut().reset(until);
                }
                if std::future::Future::poll(this.deadline.as_mut(), cx).is_ready() {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no data for {} s", this.idle.as_secs()),
                    )));
                }
            }
        }
        poll
    }
}

/// pg_dump's plain-format trailer (followed, since 15.14/16.10/17.6, by a `\unrestrict` line).
pub fn has_plain_trailer(tail: &[u8]) -> bool {
    String::from_utf8_lossy(tail).contains("-- PostgreSQL database dump complete")
}
