//! The reverse pipeline for `restore` and `verify`: GetObject body → sha256 of the stored bytes
//! → gzip decoding (CRC and length checked by the decoder) → a [`Transform`] (the psql filter,
//! or a hold-back of the last bytes) → any async writer. Never holds the object in memory or on
//! disk. The transform's last output (the final COMMIT, the held-back end of an archive) is
//! written only after the gzip trailer and the sha256 were checked, so a client fed from here
//! cannot finish a restore of a damaged object, even if this process is killed. A body that
//! stops arriving for `--request-timeout` fails instead of hanging.

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

/// Bytes of a custom-format archive held back until everything is checked: pg_restore cannot
/// finish (and commit) without the archive's last bytes.
const HOLD_BACK: usize = 64 * 1024;

/// What stands between the decoded dump and the writer.
pub trait Transform {
    /// Turns decoded bytes into bytes to write.
    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()>;
    /// The stream ended and its gzip CRC, length and sha256 were checked: the last bytes.
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<()>;
}

/// The plain-dump filter (see `sql_filter`).
impl Transform for crate::sql_filter::Filter {
    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        crate::sql_filter::Filter::push(self, input, out).map_err(refused)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        crate::sql_filter::Filter::finish(self, out).map_err(refused)
    }
}

fn refused(r: crate::sql_filter::Refused) -> anyhow::Error {
    anyhow::anyhow!("it is not a dump pg-s3-backup restores: {r}")
}

/// Writes the dump as stored, each chunk only once the filter accepted it (so nothing it
/// refuses is ever written), holding back the end until everything is checked: for `restore
/// --output -` of a plain dump.
pub struct Checked {
    filter: crate::sql_filter::Filter,
    hold: HoldBack,
    scratch: Vec<u8>,
}

impl Checked {
    pub fn new() -> Self {
        Self {
            filter: crate::sql_filter::Filter::new(crate::sql_filter::Mode::Check),
            hold: HoldBack::default(),
            scratch: Vec::new(),
        }
    }
}

impl Default for Checked {
    fn default() -> Self {
        Self::new()
    }
}

impl Transform for Checked {
    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        Transform::push(&mut self.filter, input, &mut self.scratch)?;
        self.scratch.clear();
        self.hold.push(input, out)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        Transform::finish(&mut self.filter, &mut self.scratch)?;
        self.hold.finish(out)
    }
}

/// Passes everything but the last [`HOLD_BACK`] bytes, which `finish` releases.
#[derive(Default)]
pub struct HoldBack {
    held: Vec<u8>,
}

impl Transform for HoldBack {
    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.held.extend_from_slice(input);
        if self.held.len() > 2 * HOLD_BACK {
            let release = self.held.len() - HOLD_BACK;
            out.extend(self.held.drain(..release));
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        out.append(&mut self.held);
        Ok(())
    }
}

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

/// What streaming found; returned only when the gzip stream, the sha256 and the transform
/// were all good.
#[derive(Debug)]
pub struct Streamed {
    pub stored_bytes: u64,
    pub raw_bytes: u64,
    pub sha256: String,
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

/// Streams the decompressed dump through `transform` into `out`. Fails, naming the problem, on a
/// damaged gzip stream (bad CRC or length, truncation), a sha256 that differs from the
/// metadata, or a refusal of the transform; the transform's final bytes are written only when
/// all of them passed.
pub async fn stream_into<W: AsyncWrite + Unpin>(
    opened: Opened,
    out: &mut W,
    transform: &mut dyn Transform,
) -> Result<Streamed> {
    let mut hashing = Hashing {
        inner: opened.body.into_async_read(),
        hasher: Sha256::new(),
        bytes: 0,
        idle: opened.idle,
        deadline: Box::pin(tokio::time::sleep(opened.idle)),
        waiting: false,
    };
    let mut raw_bytes = 0u64;
    let mut output = Vec::new();
    // A refusal stops the writing at once, but the object is still read to its end: if it is
    // damaged, that is the cause to report (a flipped bit decodes to garbage the filter refuses).
    let mut refused: Option<anyhow::Error> = None;
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
            if refused.is_some() {
                continue;
            }
            if let Err(e) = transform.push(&buf[..n], &mut output) {
                refused = Some(e.context(format!("{} was refused", opened.key)));
                continue;
            }
            out.write_all(&output)
                .await
                .context("writing the restored dump")?;
            output.clear();
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
    if let Some(e) = refused {
        return Err(e);
    }
    transform
        .finish(&mut output)
        .with_context(|| format!("{} was refused", opened.key))?;
    out.write_all(&output)
        .await
        .context("writing the restored dump")?;
    out.flush().await.context("writing the restored dump")?;
    Ok(Streamed {
        stored_bytes: hashing.bytes,
        raw_bytes,
        sha256,
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
