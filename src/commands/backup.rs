//! `backup`: validate, preflight the database, choose pg_dump, then stream
//! pg_dump → parallel gzip → S3 multipart upload, and complete the upload only after pg_dump
//! exited 0 and every part succeeded. Any failure or signal aborts the upload.

use crate::action;
use crate::cli::BackupArgs;
use crate::commands::prune;
use crate::compress::{self, GzipOptions};
use crate::config::{BackupConfig, ObjectOptions, S3Config};
use crate::error::Interrupted;
use crate::layout::BackupId;
use crate::output;
use crate::progress::{Counters, Reporter};
use crate::source::complete::Watch;
use crate::source::pg_dump::{self, PgDump};
use crate::source::preflight::{self, ServerInfo};
use crate::upload::{ObjectSpec, PartSizer, Uploader};
use crate::{clock, s3, store};
use anyhow::{Context, Result};
use bytes::Bytes;
use chrono::Utc;
use indicatif::HumanBytes;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Compressed chunks buffered between the compressor and the uploader. Each is one gzip block
/// (up to ~512 KiB for incompressible data), so a few keep both sides busy without adding memory.
const CHANNEL_CHUNKS: usize = 4;
/// Keys tried when earlier backups took the same second.
const MAX_SAME_SECOND: u32 = 100;

/// What a completed backup reports (`--json` prints it as is).
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub key: String,
    pub uri: String,
    pub bucket: String,
    pub database: String,
    pub format: &'static str,
    /// Bytes stored (compressed).
    pub size: u64,
    /// Bytes pg_dump wrote.
    pub raw_size: u64,
    pub sha256: String,
    pub duration_seconds: f64,
    pub parts: u64,
    /// The plan's part size: every part but the last is this size unless the dump outgrew
    /// the plan (then a warning said so).
    pub part_size: u64,
    pub server_version: String,
    pub pg_dump_version: String,
    /// False when sha256/raw-size could not be attached as object metadata (see warnings).
    pub metadata_complete: bool,
    /// True when `--verify` read the object back and found it whole.
    pub verified: bool,
    /// Backups deleted by the keep policy after this one was verified.
    pub pruned_count: usize,
    /// Backups the policy kept (none when no policy was given or retention was skipped).
    pub kept_count: Option<usize>,
    pub pruned: Vec<String>,
    /// The retention plan and what it did, when a keep policy was given and could run.
    pub retention: Option<prune::Report>,
}

/// Prunes under the keep policy, only after checking the new object is stored whole
/// (HeadObject size equals what was sent, and the listing agrees). Missing permissions
/// (a PutObject-only backup user) skip retention with one warning; the backup still succeeds.
async fn retain(
    client: &aws_sdk_s3::Client,
    cfg: &BackupConfig,
    database: &str,
    key: &str,
    size: u64,
) -> Result<Option<prune::Report>> {
    if cfg.retention.is_empty() {
        return Ok(None);
    }
    let uri = format!("s3://{}/{key}", cfg.s3.bucket);
    match client.head_object().bucket(&cfg.s3.bucket).key(key).send().await {
        Ok(head) if head.content_length() == Some(size as i64) => {}
        Ok(head) => anyhow::bail!(
            "{uri} is stored with {:?} bytes but {size} were sent: retention skipped; check the object",
            head.content_length()
        ),
        // Without s3:GetObject, the listing's size check in `prune` is the verification.
        Err(e) if s3::is_denied(&e) => {}
        Err(e) => return Err(s3::describe("HeadObject", &uri, &e)),
    }
    let expect = prune::Expect { key, size };
    match prune::prune(
        client,
        &cfg.s3,
        Some(database),
        &cfg.retention,
        Some(expect),
        cfg.dry_run,
    )
    .await
    {
        Ok(mut report) => {
            if !cfg.dry_run {
                clean_up(client, cfg, &mut report).await;
            }
            if let Some((key, why)) = report.failed.first() {
                output::warn(format_args!(
                    "the backup is complete, but {} of {} deletions failed; first: {key}: {why}",
                    report.failed.len(),
                    report.failed.len() + report.deleted.len() + report.removed_locks.len()
                ));
            }
            Ok(Some(report))
        }
        Err(e) => match e.chain().find_map(|c| c.downcast_ref::<store::Denied>()) {
            Some(denied) => {
                let why = format!("retention was skipped: {denied}");
                output::warn(format_args!("the backup is complete, but {why}"));
                Ok(Some(prune::Report {
                    skipped: Some(why),
                    ..prune::Report::default()
                }))
            }
            None => Err(e.context(format!("the backup {uri} is complete, but pruning failed"))),
        },
    }
}

/// After retention, what killed runs left behind (stale uploads and locks) is cleaned up under
/// the same age rule as `prune --abort-incomplete-after`. The backup is complete by now, so a
/// failure here is a warning, and the keys that could not be deleted are in the report.
async fn clean_up(client: &aws_sdk_s3::Client, cfg: &BackupConfig, report: &mut prune::Report) {
    if let Err(e) = prune::clean_up(client, &cfg.s3, cfg.abort_after, report).await {
        output::warn(format_args!(
            "the backup is complete, but cleaning up killed runs' uploads and locks failed: {e:#}"
        ));
    }
}

pub async fn run(args: &BackupArgs) -> Result<()> {
    let cfg = BackupConfig::from_args(args)?;
    let started = Instant::now();
    output::group("Preflight: PostgreSQL, pg_dump, S3");
    // Nothing is written before the key is claimed: a signal here just stops.
    let (server, dump) = crate::signals::or_stop(
        async {
            let server = preflight::check(&cfg.conn).await?;
            let dump = pg_dump::choose(server.version, cfg.pg_dump_path.as_deref()).await?;
            Ok((server, dump))
        },
        "stopped before anything was written",
    )
    .await?;
    let client = s3::client(&cfg.s3).await?;
    let id = BackupId::new(&server.database, Utc::now(), cfg.format);
    let claim = claim_key(&client, &cfg.s3, &cfg.object, id).await?;
    let key = claim.key.clone();
    let counters = Arc::new(Counters::default());
    let spec = ObjectSpec {
        bucket: cfg.s3.bucket.clone(),
        key: key.clone(),
        metadata: base_metadata(&cfg, &server, &dump),
        storage_class: cfg.object.storage_class.clone(),
        sse: cfg.object.sse.clone(),
        sse_kms_key_id: cfg.object.sse_kms_key_id.clone(),
    };
    let sizer = PartSizer::plan(
        cfg.upload.part_size,
        cfg.upload.max_parts,
        server.size_bytes.max(0) as u64,
    );
    let mut uploader = Uploader::new(
        client.clone(),
        spec,
        sizer,
        cfg.upload.concurrency,
        counters.clone(),
    );
    output::note(format_args!(
        "backing up database `{}` ({} on disk, PostgreSQL {}) with {} to {}, in parts of {}MiB (equal up to {} parts, {})",
        server.database,
        HumanBytes(server.size_bytes.max(0) as u64),
        server.version_text,
        dump.version_text,
        uploader.uri(),
        sizer.part_size() >> 20,
        sizer.planned_parts(),
        HumanBytes(sizer.planned_capacity()),
    ));
    output::group("Dump, compress, upload");
    let heartbeat = heartbeat(&client, &cfg, &claim);
    let reporter = Reporter::start(counters.clone());
    let ready = tokio::select! {
        r = pipeline(&cfg, &dump, &mut uploader, counters.clone()) => r,
        sig = crate::signals::stopped() => Err(anyhow::Error::new(Interrupted(sig))),
    };
    // A signal that came while the last part was answered still stops the backup. Once the
    // commit is sent it is not dropped: a dropped CompleteMultipartUpload may have taken effect,
    // and "nothing was stored" would then be a lie.
    let ready = ready.and_then(|r| match crate::signals::stop_requested() {
        Some(sig) => Err(anyhow::Error::new(Interrupted(sig))),
        None => Ok(r),
    });
    let result = match ready {
        Ok(Ready {
            staged,
            extra,
            sha256,
        }) => {
            let _pending = crate::signals::pending(
                format!(
                    "the backup's final request for {} was sent and not answered: the backup may be complete; check with `pg-s3-backup list` and `verify` before relying on it or deleting it",
                    uploader.uri()
                ),
                Vec::new(),
            );
            uploader
                .commit(staged, extra)
                .await
                .map(|attached| (sha256, attached))
        }
        Err(e) if e.downcast_ref::<Interrupted>().is_some() => {
            Err(e.context("the upload was aborted and nothing was stored"))
        }
        Err(e) => Err(e),
    };
    drop(reporter);
    if let Some(h) = heartbeat {
        h.abort();
        let _ = h.await;
    }
    if result.is_err() {
        if let Err(abort_err) = uploader.abort().await {
            output::warn(format_args!("{abort_err:#}; remove the incomplete upload with a lifecycle rule or `aws s3api abort-multipart-upload`"));
        }
    }
    release(&client, &cfg.s3.bucket, &claim).await;
    let (sha256, metadata_complete) = result?;
    let _complete = crate::signals::context(format!("the backup {} is complete", uploader.uri()));
    let size = counters.compressed();
    // From here on the backup exists. A signal stops what is left (verification, retention)
    // and the outcome is still reported, with exit 130/143.
    let verified = if cfg.verify {
        output::group("Verify");
        let verify = crate::commands::verify::verify_key(&client, &cfg.s3, &key);
        match crate::signals::or_stop(verify, "verify stopped").await {
            Ok(line) => {
                output::note(&line);
                true
            }
            Err(e) if e.downcast_ref::<Interrupted>().is_some() => false,
            Err(e) => return Err(e),
        }
    } else {
        false
    };
    let retention = match crate::signals::stop_requested() {
        None => {
            if !cfg.retention.is_empty() {
                output::group("Retention");
            }
            retain(&client, &cfg, &server.database, &key, size).await?
        }
        Some(_) => None,
    };
    output::end_group();
    let stopped = crate::signals::stop_requested().map(|sig| {
        let undone = match &retention {
            Some(r) if r.interrupted => format!(
                "retention stopped after deleting {} backups: run prune to finish",
                r.deleted.len()
            ),
            Some(_) => "the signal came as retention finished".to_string(),
            None if cfg.verify && !verified => {
                "it was neither verified nor pruned: run verify, then prune".to_string()
            }
            None if !cfg.retention.is_empty() => "retention was not run: run prune".to_string(),
            None => "the signal came as it finished: nothing was left undone".to_string(),
        };
        anyhow::Error::new(Interrupted(sig)).context(format!(
            "the backup s3://{}/{key} is complete; {undone}",
            cfg.s3.bucket
        ))
    });
    let outcome = Outcome {
        uri: uploader.uri(),
        key,
        bucket: cfg.s3.bucket.clone(),
        database: server.database.clone(),
        format: cfg.format.name(),
        size,
        raw_size: counters.raw(),
        sha256,
        duration_seconds: started.elapsed().as_secs_f64(),
        parts: counters.parts(),
        part_size: sizer.part_size(),
        server_version: server.version_text.clone(),
        pg_dump_version: dump.version_text.clone(),
        metadata_complete,
        verified,
        pruned_count: retention.as_ref().map_or(0, |r| r.deleted.len()),
        kept_count: retention
            .as_ref()
            .filter(|r| r.skipped.is_none())
            .map(|r| r.kept()),
        pruned: retention
            .as_ref()
            .map(|r| r.deleted.clone())
            .unwrap_or_default(),
        retention,
    };
    if action::in_actions() {
        report_to_actions(&outcome)?;
    }
    print_outcome(&outcome, cfg.json)?;
    stopped.map_or(Ok(()), Err)
}

/// `$GITHUB_OUTPUT` and the job summary.
fn report_to_actions(o: &Outcome) -> Result<()> {
    action::write_outputs(&[
        ("key", o.key.clone()),
        ("uri", o.uri.clone()),
        ("size", o.size.to_string()),
        ("raw-size", o.raw_size.to_string()),
        ("sha256", o.sha256.clone()),
        ("duration-seconds", format!("{:.1}", o.duration_seconds)),
        ("pruned-count", o.pruned_count.to_string()),
    ])?;
    action::write_summary(&summary_markdown(o))
}

/// The job summary. Every value from outside (names, keys, versions) goes through
/// `output::markdown_code`, so a database or key name cannot add Markdown or HTML.
fn summary_markdown(o: &Outcome) -> String {
    let md = |s: &str| output::markdown_code(s, true);
    let ratio = if o.size == 0 {
        0.0
    } else {
        o.raw_size as f64 / o.size as f64
    };
    let rate = o.raw_size as f64 / o.duration_seconds.max(0.001) / 1e6;
    let mut text = format!(
        "### PostgreSQL backup of {} complete\n\n| | |\n|---|---|\n\
         | Object | {} |\n\
         | Size | {} compressed from {} (ratio {ratio:.1}) |\n\
         | Duration | {:.1} s ({rate:.1} MB/s) |\n\
         | pg_dump | {} |\n\
         | Server | {} |\n\
         | sha256 | {} |\n",
        output::markdown_code(&o.database, false),
        md(&o.uri),
        HumanBytes(o.size),
        HumanBytes(o.raw_size),
        o.duration_seconds,
        md(&o.pg_dump_version),
        md(&format!("PostgreSQL {}", o.server_version)),
        md(&o.sha256)
    );
    match &o.retention {
        None => text.push_str("| Retention | not run |\n"),
        Some(prune::Report {
            skipped: Some(why), ..
        }) => text.push_str(&format!("| Retention | {} |\n", md(why))),
        Some(r) => {
            let verb = if r.dry_run { "would delete" } else { "deleted" };
            let doomed: Vec<&str> = r
                .plans
                .iter()
                .flat_map(|p| &p.decisions)
                .filter(|d| !d.keep)
                .map(|d| d.key.as_str())
                .collect();
            text.push_str(&format!(
                "| Retention | kept {}, {verb} {} |\n",
                r.kept(),
                doomed.len()
            ));
            for key in doomed {
                text.push_str(&format!("| | {verb} {} |\n", md(key)));
            }
        }
    }
    text
}

/// Runs the stream up to the commit: pg_dump exited 0, the dump is complete and every part is
/// uploaded. The caller commits, or aborts the upload on any error or signal.
async fn pipeline(
    cfg: &BackupConfig,
    dump: &PgDump,
    uploader: &mut Uploader,
    counters: Arc<Counters>,
) -> Result<Ready> {
    let mut child = dump.spawn(&cfg.conn, cfg.format, &cfg.pg_dump_args)?;
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let compressed = spawn_compressor(child.take_stdout(), tx, cfg.gzip.clone(), counters.clone())?;
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
            return Err(e.context("the upload was aborted and nothing was stored"))
        }
        other => other,
    };
    let staged = staged?;
    dumped?;
    let (stats, sha256, watch) = compressed.context("compressing the dump failed")?;
    // pg_dump exiting 0 is not enough: an option or a wrapper can send the dump elsewhere.
    watch.verdict(cfg.format).map_err(|why| {
        anyhow::anyhow!(
            "pg_dump exited 0, but its output ({} bytes) is not a complete {} dump: {why}; the upload was aborted and nothing was pruned",
            watch.total(),
            cfg.format.name()
        )
    })?;
    debug_assert_eq!(stats.raw_bytes, counters.raw());
    let extra = HashMap::from([
        ("sha256".to_string(), sha256.clone()),
        ("raw-size".to_string(), stats.raw_bytes.to_string()),
    ]);
    Ok(Ready {
        staged,
        extra,
        sha256,
    })
}

/// A complete dump, every part uploaded: what `Uploader::commit` needs to make it the object.
struct Ready {
    staged: crate::upload::Staged,
    extra: HashMap<String, String>,
    sha256: String,
}

type CompressResult = Result<(compress::GzipStats, String, Watch)>;

/// Runs the (blocking, multi-threaded) compressor on its own thread, reading pg_dump's stdout and
/// sending gzip chunks to the uploader. Hashing and counting happen here, off the async runtime.
fn spawn_compressor(
    stdout: std::fs::File,
    tx: mpsc::Sender<Bytes>,
    gzip: GzipOptions,
    counters: Arc<Counters>,
) -> Result<oneshot::Receiver<CompressResult>> {
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("gzip".into())
        .spawn(move || {
            let mut reader = CountingReader {
                inner: stdout,
                counters: counters.clone(),
                watch: Watch::default(),
            };
            let mut sink = ChannelSink {
                tx,
                hasher: Sha256::new(),
                counters,
            };
            let result = compress::compress(&mut reader, &mut sink, &gzip)
                .map(|stats| {
                    let sha256 = hex::encode(sink.hasher.finalize_reset());
                    (stats, sha256, std::mem::take(&mut reader.watch))
                })
                .map_err(anyhow::Error::from);
            let _ = done_tx.send(result);
        })
        .context("cannot start the compressor thread")?;
    Ok(done_rx)
}

/// pg_dump's stdout, counted, and watched for a complete dump's first and last bytes.
struct CountingReader {
    inner: std::fs::File,
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

/// The key this run writes, and the lock object that claims it while the backup runs.
struct Claim {
    key: String,
    lock: Option<String>,
}

/// Picks the key for this backup: the timestamped key, or `-2`, `-3`... when it is taken, so an
/// existing backup is never overwritten. A key is taken when its object exists (HeadObject) or
/// another run holds its lock: the lock object `{key}.lock` is written only if absent
/// (`If-None-Match: *`), so of two backups started in the same second exactly one gets each
/// key, as Terraform's S3 lock files do. Without permission to read (a PutObject-only user)
/// neither check runs.
async fn claim_key(
    client: &aws_sdk_s3::Client,
    s3cfg: &S3Config,
    object: &ObjectOptions,
    mut id: BackupId,
) -> Result<Claim> {
    let (bucket, prefix) = (&s3cfg.bucket, &s3cfg.prefix);
    for attempt in 0..MAX_SAME_SECOND {
        let key = id.key(prefix);
        let head = client.head_object().bucket(bucket).key(&key).send().await;
        if attempt == 0 {
            // The first answer carries the store's clock: a key named by a clock the store
            // disagrees with would be from the future (or the past), so nothing is written.
            clock::Now::read()
                .check_skew()
                .map_err(|skew| anyhow::anyhow!("{skew}; nothing was written"))?;
        }
        match head {
            Ok(_) => {
                id = id.next_seq();
                continue;
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {}
            // AWS answers 403, not 404, for a missing key to a caller without s3:ListBucket
            // (the backup policy grants none): the key's state is unknown, not denied. The lock
            // and the conditional final write still keep a backup from overwriting another.
            Err(e) if s3::is_denied(&e) => {}
            Err(e) => {
                return Err(s3::describe(
                    "HeadObject",
                    &format!("s3://{bucket}/{key}"),
                    &e,
                ))
            }
        }
        let lock = BackupId::lock_key(&key);
        match put_lock(client, bucket, &lock, &key, object, "started", true).await {
            Ok(_) => {
                return Ok(Claim {
                    key,
                    lock: Some(lock),
                })
            }
            Err(e) if s3::lost_condition(&e) => id = id.next_seq(),
            Err(e) => {
                let err = s3::describe("PutObject (lock)", &format!("s3://{bucket}/{lock}"), &e);
                // The lock is a safeguard, not the backup: without it only a backup started in
                // this same second could collide, and HeadObject already checked the key.
                if s3::is_denied(&e) || s3::is_not_implemented(&e) {
                    output::warn(format_args!("{err}; backing up without a lock, so a backup started in this same second could take the same key"));
                    return Ok(Claim { key, lock: None });
                }
                return Err(err);
            }
        }
    }
    anyhow::bail!(
        "more than {MAX_SAME_SECOND} backups of `{}` in one second: wait a second and retry",
        id.database
    )
}

/// Writes the lock object of `key`: which key, `stamp` (`started`, or `alive` for a heartbeat)
/// with the time, and the tool. The claim writes it only if absent; the heartbeat over its own.
async fn put_lock(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    lock: &str,
    key: &str,
    object: &ObjectOptions,
    stamp: &str,
    only_if_absent: bool,
) -> std::result::Result<
    aws_sdk_s3::operation::put_object::PutObjectOutput,
    aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::put_object::PutObjectError>,
> {
    let body = serde_json::json!({
        "key": key,
        stamp: Utc::now().to_rfc3339(),
        "tool": format!("pg-s3-backup {}", env!("CARGO_PKG_VERSION")),
    });
    client
        .put_object()
        .bucket(bucket)
        .key(lock)
        .set_if_none_match(only_if_absent.then(|| "*".to_string()))
        .content_type("application/json")
        // Bucket policies that require encryption apply to the lock too.
        .set_server_side_encryption(object.sse.clone())
        .set_ssekms_key_id(object.sse_kms_key_id.clone())
        .body(body.to_string().into_bytes().into())
        .send()
        .await
}

/// Rewrites the lock every `layout::heartbeat()` while the backup runs (unconditionally: the
/// key is this run's), so that cleanup by another run never takes it for a killed one. A
/// failed rewrite only warns once: the backup goes on.
fn heartbeat(
    client: &aws_sdk_s3::Client,
    cfg: &BackupConfig,
    claim: &Claim,
) -> Option<tokio::task::JoinHandle<()>> {
    let lock = claim.lock.clone()?;
    let (client, bucket, object) = (client.clone(), cfg.s3.bucket.clone(), cfg.object.clone());
    let key = claim.key.clone();
    Some(tokio::spawn(async move {
        let mut warned = false;
        loop {
            tokio::time::sleep(crate::layout::heartbeat()).await;
            let put = put_lock(&client, &bucket, &lock, &key, &object, "alive", false).await;
            if let Err(e) = put {
                if !warned {
                    let err = s3::describe(
                        "PutObject (lock heartbeat)",
                        &format!("s3://{bucket}/{lock}"),
                        &e,
                    );
                    output::warn(format_args!("{err}; a cleanup by another run may take this backup for a killed one after --abort-incomplete-after"));
                    warned = true;
                }
            }
        }
    }))
}

/// Deletes the lock once the object is complete or the upload aborted. A lock left behind (no
/// s3:DeleteObject) only reserves a key from the past; it warns and the backup stands.
async fn release(client: &aws_sdk_s3::Client, bucket: &str, claim: &Claim) {
    let Some(lock) = &claim.lock else { return };
    if let Err(e) = client.delete_object().bucket(bucket).key(lock).send().await {
        let err = s3::describe("DeleteObject (lock)", &format!("s3://{bucket}/{lock}"), &e);
        output::warn(format_args!(
            "{err}; the lock only reserved this backup's key and may be deleted by hand"
        ));
    }
}

/// Metadata known before the upload starts. S3 metadata is ASCII only, so values are
/// percent-encoded where needed.
fn base_metadata(
    cfg: &BackupConfig,
    server: &ServerInfo,
    dump: &PgDump,
) -> HashMap<String, String> {
    let ascii = |s: &str| percent_encoding::utf8_percent_encode(s, &ASCII_META).to_string();
    HashMap::from([
        ("format".into(), cfg.format.name().into()),
        ("database".into(), ascii(&server.database)),
        ("server-version".into(), ascii(&server.version_text)),
        ("pg-dump-version".into(), ascii(&dump.version_text)),
        (
            "tool-version".into(),
            format!("pg-s3-backup {}", env!("CARGO_PKG_VERSION")),
        ),
        ("compression".into(), format!("gzip-{}", cfg.gzip.level)),
    ])
}

/// Bytes outside printable ASCII (and `%`) are percent-encoded in metadata values.
const ASCII_META: percent_encoding::AsciiSet = percent_encoding::CONTROLS.add(b'%');

fn print_outcome(o: &Outcome, json: bool) -> Result<()> {
    if json {
        return output::json(o);
    }
    let ratio = if o.size == 0 {
        0.0
    } else {
        o.raw_size as f64 / o.size as f64
    };
    let rate = o.raw_size as f64 / o.duration_seconds.max(0.001) / 1e6;
    output::data_line(format_args!("backup complete: {}", o.uri));
    output::data_line(format_args!(
        "  database  {} (PostgreSQL {}), {}",
        o.database, o.server_version, o.pg_dump_version
    ));
    output::data_line(format_args!(
        "  size      {} compressed from {} (ratio {ratio:.1}), {} parts",
        HumanBytes(o.size),
        HumanBytes(o.raw_size),
        o.parts
    ));
    output::data_line(format_args!(
        "  duration  {:.1} s ({rate:.1} MB/s)",
        o.duration_seconds
    ));
    output::data_line(format_args!("  sha256    {}", o.sha256));
    if let Some(kept) = o.kept_count {
        output::data_line(format_args!(
            "  retention kept {kept}, deleted {}",
            o.pruned_count
        ));
        for key in &o.pruned {
            output::data_line(format_args!("            deleted {key}"));
        }
    }
    if let Some(r) = &o.retention {
        for key in &r.aborted_uploads {
            output::data_line(format_args!(
                "  cleanup   aborted stale multipart upload of {key}"
            ));
        }
        for key in &r.removed_locks {
            output::data_line(format_args!("  cleanup   removed stale lock {key}"));
        }
    }
    Ok(())
}
