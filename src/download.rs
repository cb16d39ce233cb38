//! The reverse pipeline for `restore` and `verify`: GetObject body → sha256 of the stored bytes
//! → age decryption when the key ends in `.age` (each 64 KiB chunk authenticated) → gzip or
//! zstd decoding (CRC and length, or the frame checksum, checked by the decoder) → a [`Sink`]:
//! the statements applied to a target database, a checked copy on stdout, or a client's stdin.
//! Never holds the object in memory or on disk. A sink's `finish` (the COMMIT, the held-back end
//! of an archive) runs only after the stream's end, the last encrypted chunk and the sha256
//! were checked, so nothing fed from here can finish a restore of a damaged object, even if this
//! process is killed. A body that stops arriving for `--request-timeout` fails instead of
//! hanging.

use crate::crypt::{self, Identities};
use crate::error::usage;
use crate::layout::{BackupId, Codec, Compression, DumpFormat};
use crate::record::{self, Record};
use crate::s3::{self, describe};
use crate::source::process::Process;
use crate::sql_script::{Event, Script};
use crate::target::Target;
use anyhow::{bail, Context, Result};
use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use aws_sdk_s3::Client;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf,
};

/// Bytes of a custom-format archive held back until everything is checked: pg_restore cannot
/// finish (and commit) without the archive's last bytes.
const HOLD_BACK: usize = 64 * 1024;
/// After a sink refuses the dump, the object is read on for this much more to find out whether
/// it is damaged (a flipped bit decodes to garbage a script refuses): damage is the cause then.
const READ_ON_AFTER_REFUSAL: u64 = 64 << 20;

/// Where the decoded dump goes.
pub trait Sink {
    /// Decoded bytes of the dump, in order.
    fn feed(&mut self, decoded: &[u8]) -> impl Future<Output = Result<()>>;
    /// The stream ended and its gzip CRC, length and sha256 were checked.
    fn finish(&mut self) -> impl Future<Output = Result<()>>;
}

fn refused(r: crate::sql_script::Refused) -> anyhow::Error {
    anyhow::anyhow!("it is not a dump pg-s3-backup restores: {r}")
}

/// Writes to `out`, holding back the last 64 KiB until `finish` when `hold` is set.
pub struct Writer<W> {
    out: W,
    hold: Option<Vec<u8>>,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    pub fn new(out: W, hold: bool) -> Self {
        Self {
            out,
            hold: hold.then(Vec::new),
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: AsyncWrite + Unpin> Sink for Writer<W> {
    async fn feed(&mut self, decoded: &[u8]) -> Result<()> {
        let write = match &mut self.hold {
            None => decoded.to_vec(),
            Some(held) => {
                held.extend_from_slice(decoded);
                if held.len() <= 2 * HOLD_BACK {
                    return Ok(());
                }
                held.drain(..held.len() - HOLD_BACK).collect()
            }
        };
        self.out
            .write_all(&write)
            .await
            .context("writing the restored dump")
    }

    async fn finish(&mut self) -> Result<()> {
        if let Some(held) = self.hold.take() {
            self.out
                .write_all(&held)
                .await
                .context("writing the restored dump")?;
        }
        self.out.flush().await.context("writing the restored dump")
    }
}

/// Reads a plain dump as `sql_script` does, and only checks it (`verify`).
#[derive(Default)]
pub struct Check {
    script: Script,
    events: Vec<Event>,
}

impl Check {
    /// The check for what `opened` holds: a database's dump, or the globals.
    pub fn of(opened: &Opened) -> Self {
        Self {
            script: script_for(opened.globals),
            events: Vec::new(),
        }
    }
}

fn script_for(globals: bool) -> Script {
    match globals {
        true => Script::globals(),
        false => Script::new(),
    }
}

impl Sink for Check {
    async fn feed(&mut self, decoded: &[u8]) -> Result<()> {
        self.script
            .push(decoded, &mut self.events)
            .map_err(refused)?;
        self.events.clear();
        Ok(())
    }

    async fn finish(&mut self) -> Result<()> {
        self.script.finish(&mut self.events).map_err(refused)
    }
}

/// The dump as stored, each piece written only once the restore's script reader accepted it
/// (so nothing it refuses is written), and the end only once everything is checked: `restore
/// --output -` of a plain dump.
pub struct Checked<W> {
    check: Check,
    writer: Writer<W>,
}

impl<W: AsyncWrite + Unpin> Checked<W> {
    pub fn new(out: W, opened: &Opened) -> Self {
        Self {
            check: Check::of(opened),
            writer: Writer::new(out, true),
        }
    }
}

impl<W: AsyncWrite + Unpin> Sink for Checked<W> {
    async fn feed(&mut self, decoded: &[u8]) -> Result<()> {
        self.check.feed(decoded).await?;
        self.writer.feed(decoded).await
    }

    async fn finish(&mut self) -> Result<()> {
        self.check.finish().await?;
        self.writer.finish().await
    }
}

/// A plain dump applied to a target database, statement by statement, in one transaction that
/// commits in `finish`.
pub struct Apply {
    script: Script,
    events: Vec<Event>,
    target: Option<Target>,
    pub statements: u64,
    /// Set once the COMMIT is sent: keep it while the restore reports.
    pub committing: Option<crate::signals::PendingGuard>,
}

impl Apply {
    pub fn new(target: Target) -> Self {
        Self {
            script: Script::new(),
            events: Vec::new(),
            target: Some(target),
            statements: 0,
            committing: None,
        }
    }

    async fn drain(&mut self) -> Result<()> {
        let target = self.target.as_mut().context("the restore already ended")?;
        for event in self.events.drain(..) {
            target.apply(event).await?;
        }
        Ok(())
    }
}

impl Sink for Apply {
    async fn feed(&mut self, decoded: &[u8]) -> Result<()> {
        self.script
            .push(decoded, &mut self.events)
            .map_err(refused)?;
        self.drain().await
    }

    async fn finish(&mut self) -> Result<()> {
        self.script.finish(&mut self.events).map_err(refused)?;
        self.drain().await?;
        let target = self.target.take().context("the restore already ended")?;
        // From here a stop no longer rolls back: the COMMIT may take effect whatever happens to
        // this connection. The guard stays until the restore is dropped.
        self.committing = Some(crate::signals::pending(
            "the restore's COMMIT was sent and not answered: the target database may hold the restored data; check it before restoring again",
            Vec::new(),
        ));
        self.statements = target.commit().await?;
        Ok(())
    }
}

/// A custom archive: `pg_restore --file=-` turns it into the plain script pg_dump would have
/// written (no connection of its own; a TOC entry's SQL is text like any other), and `sink`
/// reads that script as it reads a plain dump. `sink.finish` (the COMMIT of a restore) runs only
/// after the object's checks, pg_restore's exit status 0 and the script's end.
pub async fn stream_archive<S: Sink>(
    opened: Opened,
    pg_restore: &std::path::Path,
    sink: &mut S,
) -> Result<Streamed> {
    let mut cmd = tokio::process::Command::new(pg_restore);
    // It needs no secret of ours.
    cmd.args(["--no-owner", "--file=-"])
        .env_remove("AGE_IDENTITY")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    // Its messages can quote the archive: `process` forwards them inert.
    let (process, pipes) = Process::spawn(
        cmd,
        format!("pg_restore `{}` reading the archive {}", pg_restore.display(), opened.key),
        "the archive is damaged or not pg_dump's, or pg_restore is older than the pg_dump that wrote it: verify the backup and install a newer postgresql-client",
    )?;
    let stdin = pipes.stdin.context("pg_restore stdin")?;
    let mut stdout = pipes.stdout.context("pg_restore stdout")?;
    let key = opened.key.clone();
    let download = async {
        let mut writer = Writer::new(stdin, false);
        let streamed = stream_into(opened, &mut writer).await;
        // End of input for pg_restore, so that it finishes.
        drop(writer.into_inner());
        streamed
    };
    // The script's end is pg_restore's exit status 0 (see `process`).
    let convert = async {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = stdout.read(&mut buf).await?;
            if n == 0 {
                return anyhow::Ok(());
            }
            sink.feed(&buf[..n]).await.context(key.clone())?;
        }
    };
    let (streamed, ()) = tokio::try_join!(download, convert)?;
    drop(process);
    sink.finish().await.context(key)?;
    Ok(streamed)
}

/// An opened backup object: its GetObject answered and, if it is encrypted, its age header
/// opened with a matching identity.
pub struct Opened {
    pub key: String,
    pub format: DumpFormat,
    /// The key is this tool's globals backup (`pg_dumpall --globals-only`).
    pub globals: bool,
    pub codec: Codec,
    /// What the stored bytes are checked against once they were all read.
    against: Against,
    /// Without a record or sha256 metadata the backup is unverified: refused at the stream's
    /// end, unless this is set (`--unverified`).
    pub accept_unverified: bool,
    pub metadata: std::collections::HashMap<String, String>,
    /// The compressed stream: the body, or what decrypting it gives.
    stored: Pin<Box<dyn AsyncRead + Send>>,
    hashed: Arc<Mutex<Hashed>>,
}

/// The sha256 a backup's stored bytes must have.
#[derive(Debug, Clone)]
pub struct Expected {
    pub sha256: String,
    /// `its record` or `its metadata`, for messages.
    pub source: &'static str,
}

/// Where the sha256 of a backup's stored bytes is read once they all were: its integrity record
/// (`{key}.json`), read only then so that a download that fails never reads it; or else the
/// `sha256` metadata older versions attached.
struct Against {
    client: Client,
    bucket: String,
    format: DumpFormat,
    codec: Codec,
    metadata_sha256: Option<String>,
}

impl Against {
    /// The sha256 `stored_bytes` bytes of `key` must have; refused when the record is not this
    /// backup's, says another size, or disagrees with the metadata.
    async fn expected(&self, key: &str, stored_bytes: u64) -> Result<Option<Expected>> {
        let record = get_record(&self.client, &self.bucket, key, (self.format, self.codec)).await?;
        let Some(record) = record else {
            return Ok(self.metadata_sha256.clone().map(|sha256| Expected {
                sha256,
                source: "its metadata",
            }));
        };
        if stored_bytes != record.size {
            bail!(
                "{key} is stored with {stored_bytes} bytes but its integrity record says {}: the object was changed or cut; restore an older backup (see `pg-s3-backup list`)",
                record.size
            );
        }
        if let Some(meta) = self
            .metadata_sha256
            .as_ref()
            .filter(|m| **m != record.sha256)
        {
            bail!(
                "{key} has sha256 {meta} in its metadata but {} in its integrity record: one of them was changed; restore an older backup (see `pg-s3-backup list`)",
                record.sha256
            );
        }
        Ok(Some(Expected {
            sha256: record.sha256,
            source: "its record",
        }))
    }
}

/// What streaming found; returned only when the compressed stream, the encryption (if any), the
/// sha256 and the transform were all good.
#[derive(Debug)]
pub struct Streamed {
    pub stored_bytes: u64,
    pub raw_bytes: u64,
    pub sha256: String,
    /// What the sha256 matched (`its record`, `its metadata`); `None` for a backup accepted
    /// unverified.
    pub matched: Option<&'static str>,
}

/// The format and codec of `key`: as its name says when it is this tool's key under `prefix`,
/// else by its ending; an ending this tool does not write is read as a gzip plain dump.
pub fn kind_of(prefix: &str, key: &str) -> (DumpFormat, Codec) {
    match BackupId::parse(prefix, key) {
        Some(id) => (id.format, id.codec),
        None => Codec::of_name(key)
            .map(|(_, format, codec)| (format, codec))
            .unwrap_or((DumpFormat::Plain, Codec::default())),
    }
}

/// Refuses (a usage error, before anything is read) an encrypted key when no identity was
/// given.
pub fn check_decryptable(prefix: &str, key: &str, identities: Option<&Identities>) -> Result<()> {
    if kind_of(prefix, key).1.encrypted && identities.is_none() {
        return Err(usage!(
            "{key} is encrypted with age and no identity was given: pass --age-identity KEY_FILE (env AGE_IDENTITY_FILE), or put the identity itself in AGE_IDENTITY"
        ));
    }
    Ok(())
}

/// Opens `key` to read its stored bytes as they are, encrypted or not ([`stream_stored`]).
pub async fn open_stored(client: &Client, bucket: &str, prefix: &str, key: &str) -> Result<Opened> {
    get(client, bucket, key, kind_of(prefix, key), None).await
}

pub async fn open(
    client: &Client,
    bucket: &str,
    prefix: &str,
    key: &str,
    identities: Option<&Identities>,
) -> Result<Opened> {
    check_decryptable(prefix, key, identities)?;
    let mut opened = get(client, bucket, key, kind_of(prefix, key), identities).await?;
    opened.globals = BackupId::is_globals(prefix, key);
    Ok(opened)
}

/// The integrity record of `key`, if one is stored. A record that is there but is not this
/// tool's, or not this backup's, is an error.
pub async fn get_record(
    client: &Client,
    bucket: &str,
    key: &str,
    (format, codec): (DumpFormat, Codec),
) -> Result<Option<Record>> {
    let record_key = BackupId::record_key(key);
    let uri = format!("s3://{bucket}/{record_key}");
    let out = match client
        .get_object()
        .bucket(bucket)
        .key(&record_key)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
        // AWS answers 403 for a missing key to a role whose s3:ListBucket does not cover the
        // request (the reader's is limited by s3:prefix). Taken for no record, which only ever
        // makes the backup count as unverified, never as verified.
        Err(e) if s3::is_denied(&e) => return Ok(None),
        Err(e) => return Err(describe("GetObject (integrity record)", &uri, &e)),
    };
    let refused = |why: anyhow::Error| {
        anyhow::anyhow!("the integrity record {uri} of {key} is refused: {why:#}; restore another backup (see `pg-s3-backup list`), or delete the record and pass --unverified")
    };
    if out.content_length().unwrap_or(0) > record::MAX_BYTES as i64 {
        return Err(refused(anyhow::anyhow!(
            "it is {} bytes, larger than any record",
            out.content_length().unwrap_or(0)
        )));
    }
    let body = out
        .body
        .collect()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "S3 stopped sending {uri}: {e}: check the network, or raise --request-timeout"
            )
        })?
        .into_bytes();
    Record::parse(&body, key, format, codec)
        .map(Some)
        .map_err(refused)
}

async fn get(
    client: &Client,
    bucket: &str,
    key: &str,
    (format, codec): (DumpFormat, Codec),
    identities: Option<&Identities>,
) -> Result<Opened> {
    let uri = format!("s3://{bucket}/{key}");
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| describe("GetObject", &uri, &e))?;
    let metadata = out.metadata().cloned().unwrap_or_default();
    let against = Against {
        client: client.clone(),
        bucket: bucket.to_string(),
        format,
        codec,
        metadata_sha256: metadata.get("sha256").cloned(),
    };
    let idle = s3::request_timeout(client);
    let hashed = Arc::new(Mutex::new(Hashed::default()));
    let body = Hashing {
        inner: out.body.into_async_read(),
        hashed: hashed.clone(),
        idle,
        deadline: Box::pin(tokio::time::sleep(idle)),
        waiting: false,
    };
    let stored: Pin<Box<dyn AsyncRead + Send>> = match identities {
        Some(ids) if codec.encrypted => Box::pin(ids.decrypt(body, key).await?),
        _ => Box::pin(body),
    };
    Ok(Opened {
        key: key.to_string(),
        format,
        globals: false,
        codec,
        against,
        accept_unverified: false,
        metadata,
        stored,
        hashed,
    })
}

/// The error for a backup with nothing to check its bytes against.
fn unverified(key: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{key} has no integrity record ({}) that this role can read, and no sha256 metadata, so its bytes cannot be checked against what its backup wrote: it is unverified (its backup stopped before the record was written, or it is not this tool's); restore another backup (see `pg-s3-backup list`), or pass --unverified to accept it",
        BackupId::record_key(key)
    )
}

/// Streams the decompressed dump into `sink`. Fails, naming the problem, on a damaged
/// compressed stream (bad CRC, length or checksum, truncation), an encrypted chunk that does not
/// authenticate, a sha256 that differs from the metadata, or a refusal of the sink; the sink's
/// `finish` runs only when all of them passed.
pub async fn stream_into<S: Sink>(opened: Opened, sink: &mut S) -> Result<Streamed> {
    let Opened {
        key,
        codec,
        against,
        accept_unverified,
        stored,
        hashed,
        ..
    } = opened;
    let name = codec.compression.name();
    let failed = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::TimedOut {
            anyhow::anyhow!(
                "S3 stopped sending {key}: {e}: check the network, or raise --request-timeout"
            )
        } else if crypt::is_damage(&e) {
            anyhow::anyhow!(
                "{key} is damaged: {e}: restore an older backup (see `pg-s3-backup list`)"
            )
        } else {
            anyhow::anyhow!("the {name} stream of {key} is damaged: {e}: restore an older backup (see `pg-s3-backup list`)")
        }
    };
    let mut input = BufReader::new(stored);
    let mut raw_bytes = 0u64;
    // A refusal stops the feeding at once, but the object is read on a little: if it is
    // damaged, that is the cause to report (a flipped bit decodes to garbage a script refuses).
    let mut refused: Option<(anyhow::Error, u64)> = None;
    {
        // Each decoder takes exactly one gzip member or zstd frame from `input`.
        let mut decoder: Pin<Box<dyn AsyncRead + Send + '_>> = match codec.compression {
            Compression::Gzip => Box::pin(GzipDecoder::new(&mut input)),
            Compression::Zstd => Box::pin(ZstdDecoder::new(&mut input)),
        };
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = decoder.read(&mut buf).await.map_err(failed)?;
            if n == 0 {
                break;
            }
            raw_bytes += n as u64;
            if let Some((e, at)) = refused.take() {
                if raw_bytes - at > READ_ON_AFTER_REFUSAL {
                    return Err(e);
                }
                refused = Some((e, at));
                continue;
            }
            if let Err(e) = sink.feed(&buf[..n]).await {
                refused = Some((e.context(key.clone()), raw_bytes));
            }
        }
    }
    // Bytes after the stream's end would be ignored by the decoder; a backup has none. Some may
    // already sit in the read buffer. For an encrypted object this read is also where the last
    // chunk authenticates as the last.
    let after = input.fill_buf().await.map_err(failed)?;
    if !after.is_empty() {
        bail!("{key} has data after the end of its {name} stream: it is not a backup as this tool writes it; restore another (see `pg-s3-backup list`)");
    }
    let (stored_bytes, sha256) = Hashed::totals(&hashed);
    let expected = against.expected(&key, stored_bytes).await?;
    check_sha256(&key, &sha256, expected.as_ref())?;
    if let Some((e, _)) = refused {
        return Err(e);
    }
    if expected.is_none() && !accept_unverified {
        return Err(unverified(&key));
    }
    sink.finish().await.context(key.clone())?;
    Ok(Streamed {
        stored_bytes,
        raw_bytes,
        sha256,
        matched: expected.map(|e| e.source),
    })
}

/// Reads the stored bytes to their end and checks their sha256 against the metadata and
/// against `sent` (the sha256 `backup` computed of the bytes it uploaded), without decrypting:
/// what a host without the identity can check of an encrypted backup. It fails only when
/// neither is known.
pub async fn stream_stored(opened: Opened, sent: Option<&str>) -> Result<Streamed> {
    let Opened {
        key,
        against,
        mut stored,
        hashed,
        ..
    } = opened;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match stored.read(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => bail!(
                "S3 stopped sending {key}: {e}: check the network, or raise --request-timeout"
            ),
        }
    }
    let (stored_bytes, sha256) = Hashed::totals(&hashed);
    let expected = against.expected(&key, stored_bytes).await?;
    check_sha256(&key, &sha256, expected.as_ref())?;
    if let Some(sent) = sent {
        if sent != sha256 {
            bail!(
                "sha256 of {key} is {sha256} but this backup uploaded bytes with sha256 {sent}: the store changed them; restore an older backup (see `pg-s3-backup list`)"
            )
        }
    }
    if expected.is_none() && sent.is_none() {
        bail!("{key} has no integrity record ({}) and no sha256 metadata, and without an identity nothing else of it can be checked: it is unverified; verify it with --age-identity", BackupId::record_key(&key));
    }
    Ok(Streamed {
        stored_bytes,
        raw_bytes: 0,
        sha256,
        matched: expected.map(|e| e.source),
    })
}

/// The stored bytes read so far: their count and running sha256.
#[derive(Default)]
struct Hashed {
    hasher: Sha256,
    bytes: u64,
}

impl Hashed {
    /// The count and sha256 of every stored byte read.
    fn totals(hashed: &Mutex<Self>) -> (u64, String) {
        let hashed = hashed.lock().unwrap_or_else(|p| p.into_inner());
        (hashed.bytes, hex::encode(hashed.hasher.clone().finalize()))
    }
}

/// Fails when the stored bytes' sha256 is not the expected one.
fn check_sha256(key: &str, sha256: &str, expected: Option<&Expected>) -> Result<()> {
    match expected {
        Some(e) if e.sha256 != sha256 => bail!(
            "sha256 of {key} is {sha256} but {} says {}: the object is damaged; restore an older backup (see `pg-s3-backup list`)",
            e.source,
            e.sha256
        ),
        _ => Ok(()),
    }
}

/// Hashes and counts the stored bytes as the decoder reads them, and fails the read when the
/// body sends nothing for `idle` (the SDK's attempt timeout ends when the headers arrive).
struct Hashing<R> {
    inner: R,
    hashed: Arc<Mutex<Hashed>>,
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
                    let mut hashed = this.hashed.lock().unwrap_or_else(|p| p.into_inner());
                    hashed.bytes += fresh.len() as u64;
                    hashed.hasher.update(fresh);
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
