//! The backup's stream: pg_dump's stdout -> counting and the completeness watch -> parallel gzip
//! or multithreaded zstd (its own thread) -> age encryption, when asked -> sha256 of the stored
//! bytes -> the uploader's parts. It stops at the commit: the caller completes the upload, or
//! aborts it on any error or signal.

use crate::compress;
use crate::config::BackupConfig;
use crate::crypt::Recipients;
use crate::ops::job::Job;
use crate::progress::Counters;
use crate::source::complete::Watch;
use crate::source::process::BlockingStdout;
use crate::upload::{Staged, Uploader};
use anyhow::{Context, Result};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Compressed chunks buffered between the compressor and the uploader. Each is one gzip block
/// (up to ~512 KiB for incompressible data), one zstd output buffer (128 KiB) or one age chunk
/// (64 KiB), so a few keep both sides busy without adding memory.
const CHANNEL_CHUNKS: usize = 4;

/// Runs the stream up to the commit: pg_dump exited 0, the dump is complete and every part is
/// uploaded. The caller commits, or aborts the upload on any error or signal.
pub async fn run(
    cfg: &BackupConfig,
    job: &Job,
    uploader: &mut Uploader,
    counters: Arc<Counters>,
) -> Result<Ready> {
    let (mut child, stdout) = job.spawn(cfg)?;
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let compressed = spawn_compressor(
        stdout,
        tx,
        cfg.compress.clone(),
        cfg.recipients.clone(),
        counters.clone(),
    )?;
    let staged = uploader.stage(rx).await;
    if staged.is_err() {
        // Stop pg_dump now: it may be blocked on a lock and never notice the closed pipe.
        child.kill();
    }
    let compressed = compressed.await.context("the compressor thread died")?;
    let dumped = child.wait().await;
    // A block that failed the compressor's self-check is the cause, whatever followed (pg_dump
    // then dies of SIGPIPE on the closed pipe). Otherwise the first failure in stream order is
    // the cause; the later ones are its echoes.
    let compressed = match compressed {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(compress::is_self_check_failure) =>
        {
            return Err(e)
        }
        other => other,
    };
    let staged = staged?;
    dumped?;
    let (raw_bytes, sha256, watch) = compressed.context("compressing the dump failed")?;
    // pg_dump exiting 0 is not enough: an option or a wrapper can send the dump elsewhere.
    job.verdict(cfg, &watch).map_err(|why| {
        let tool = job.tool_name();
        anyhow::anyhow!(
            "{tool} exited 0, but its output ({} bytes) is not a complete {} dump: {why}; nothing was pruned: check --pg-dump-path and the pg_dump arguments",
            watch.total(),
            job.format(cfg).name()
        )
    })?;
    debug_assert_eq!(raw_bytes, counters.raw());
    Ok(Ready { staged, sha256 })
}

/// A complete dump, every part uploaded: what `Uploader::commit` needs to make it the object.
pub struct Ready {
    pub staged: Staged,
    pub sha256: String,
}

type CompressResult = Result<(u64, String, Watch)>;

/// Runs the (blocking, multi-threaded) compressor on its own thread, reading pg_dump's stdout and
/// sending compressed, maybe encrypted, chunks to the uploader. Hashing and counting happen
/// here, off the async runtime.
fn spawn_compressor(
    stdout: BlockingStdout,
    tx: mpsc::Sender<Bytes>,
    opts: compress::Options,
    recipients: Option<Recipients>,
    counters: Arc<Counters>,
) -> Result<oneshot::Receiver<CompressResult>> {
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("compress".into())
        .spawn(move || {
            let mut reader = CountingReader {
                inner: stdout,
                counters: counters.clone(),
                watch: Watch::default(),
            };
            let sink = ChannelSink {
                tx,
                hasher: Sha256::new(),
                counters,
            };
            let result = encode(&mut reader, sink, &opts, recipients.as_ref())
                .map(|(mut sink, raw)| {
                    let sha256 = hex::encode(sink.hasher.finalize_reset());
                    (raw, sha256, std::mem::take(&mut reader.watch))
                })
                .map_err(anyhow::Error::from);
            let _ = done_tx.send(result);
        })
        .context("cannot start the compressor thread")?;
    Ok(done_rx)
}

/// Compresses `reader` into `sink`, encrypted to `recipients` if given; returns the sink and
/// the bytes read. The stream's end (the gzip trailer, the zstd frame's end, age's last chunk)
/// is written only after the input ended well, so nothing partial is ever a whole stream.
fn encode(
    reader: &mut CountingReader,
    mut sink: ChannelSink,
    opts: &compress::Options,
    recipients: Option<&Recipients>,
) -> std::io::Result<(ChannelSink, u64)> {
    match recipients {
        None => {
            let raw = compress::encode(reader, &mut sink, opts)?;
            Ok((sink, raw))
        }
        Some(recipients) => {
            let mut encrypted = recipients.encrypt(sink)?;
            let raw = compress::encode(reader, &mut encrypted, opts)?;
            Ok((encrypted.finish()?, raw))
        }
    }
}

/// pg_dump's stdout, counted, and watched for a complete dump's first and last bytes.
struct CountingReader {
    inner: BlockingStdout,
    counters: Arc<Counters>,
    watch: Watch,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counters.add_raw(n as u64);
        self.watch.see(&buf[..n]);
        Ok(n)
    }
}

/// Hands compressed bytes to the uploader, hashing them on the way (sha256 of the stored bytes).
struct ChannelSink {
    tx: mpsc::Sender<Bytes>,
    hasher: Sha256,
    counters: Arc<Counters>,
}

impl Write for ChannelSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        self.counters.add_compressed(buf.len() as u64);
        self.tx
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped")
            })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
