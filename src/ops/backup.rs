//! The backup once its key is claimed: plan the parts, run the stream (`ops::pipeline`) with the
//! lock's heartbeat and the progress line going, then complete the upload only if the stream
//! ended whole and no signal came, and write its integrity record (`record`); on anything else
//! abort it. The lock is released either way (where the role may delete it). It does not
//! verify, prune or print the outcome.

use crate::config::BackupConfig;
use crate::error::Interrupted;
use crate::layout::{BackupId, Compression, Series};
use crate::ops::claim::{self, Claim};
use crate::ops::job::Job;
use crate::ops::pipeline::{self, Ready};
use crate::output;
use crate::progress::{Counters, Reporter};
use crate::record::{About, Record};
use crate::s3;
use crate::signals;
use crate::upload::{AbortFailed, ObjectSpec, PartSizer, Uploader, RUN_METADATA};
use anyhow::Result;
use indicatif::HumanBytes;
use std::collections::HashMap;
use std::sync::Arc;

/// A complete backup object.
pub struct Stored {
    pub uri: String,
    pub sha256: String,
    /// Why the integrity record could not be written, when it could not: the backup is
    /// complete but unverified.
    pub unrecorded: Option<anyhow::Error>,
    pub counters: Arc<Counters>,
    /// The plan's part size.
    pub part_size: u64,
}

/// Streams the dump into `claim.key` and completes it, or aborts the upload and says so.
pub async fn store(
    client: &aws_sdk_s3::Client,
    cfg: &BackupConfig,
    job: &Job,
    claim: &Claim,
) -> Result<Stored> {
    let (server, dump) = (&job.server, &job.tool);
    let counters = Arc::new(Counters::default());
    let about = about(cfg, job, &claim.run);
    let spec = ObjectSpec {
        bucket: cfg.s3.bucket.clone(),
        key: claim.key.clone(),
        content_type: cfg.codec().content_type(),
        metadata: base_metadata(&about),
        storage_class: cfg.object.storage_class.clone(),
        sse: cfg.object.sse.clone(),
        sse_kms_key_id: cfg.object.sse_kms_key_id.clone(),
    };
    let on_disk = server.size_bytes.max(0) as u64;
    let sizer = PartSizer::plan(cfg.upload.part_size, cfg.upload.max_parts, on_disk);
    let mut uploader = Uploader::new(
        client.clone(),
        spec,
        sizer,
        cfg.upload.concurrency,
        counters.clone(),
    );
    output::note(format_args!(
        "backing up {} ({}PostgreSQL {}) with {} to {}, in parts of {}MiB (equal up to {} parts, {})",
        job.series.label(),
        match job.series {
            Series::Database(_) => format!("{} on disk, ", HumanBytes(on_disk)),
            Series::Globals => String::new(),
        },
        server.version_text,
        dump.version_text,
        uploader.uri(),
        sizer.part_size() >> 20,
        sizer.planned_parts(),
        HumanBytes(sizer.planned_capacity()),
    ));
    output::group("Dump, compress, upload");
    let heartbeat = claim::heartbeat(client, &cfg.s3.bucket, &cfg.object, claim);
    let reporter = Reporter::start(counters.clone());
    let ready = tokio::select! {
        r = pipeline::run(cfg, job, &mut uploader, counters.clone()) => r,
        sig = signals::stopped() => Err(anyhow::Error::new(Interrupted(sig))),
    };
    let ready = ready.and_then(|r| match signals::stop_requested() {
        Some(sig) => Err(anyhow::Error::new(Interrupted(sig))),
        None => Ok(r),
    });
    let mut recording = None;
    let result = match ready {
        Ok(ready) => match commit(&mut uploader, ready).await {
            Ok(sha256) => {
                // If the grace runs out while the record (or the lock's release) is in flight,
                // the backup is complete and `main` must say so, not "stopped before it
                // finished".
                recording = Some(signals::context(format!(
                    "the backup {} is complete, and its integrity record was being written: `pg-s3-backup list` shows whether it is recorded (unrecorded, it is unverified: run the backup again)",
                    uploader.uri()
                )));
                let size = counters.compressed();
                let unrecorded = record(
                    client,
                    cfg,
                    &claim.key,
                    &about,
                    &sha256,
                    size,
                    counters.raw(),
                )
                .await
                .err();
                Ok((sha256, unrecorded))
            }
            Err(e) => Err(e),
        },
        // The commit was never sent: nothing is visible, and the error says what the abort
        // did with the parts.
        Err(e) => Err(match uploader.abort().await {
            Ok(()) => e.context("the upload was aborted and nothing was stored"),
            Err(abort_err) => {
                output::warn(format_args!("{abort_err:#}"));
                let cause = abort_err
                    .downcast_ref::<AbortFailed>()
                    .map_or_else(|| format!("{abort_err:#}"), |a| a.cause.clone());
                e.context(format!("the upload could not be aborted: its parts stay stored until removed (see the warning above; {cause})"))
            }
        }),
    };
    drop(reporter);
    if let Some(h) = heartbeat {
        h.abort();
        let _ = h.await;
    }
    claim::release(client, &cfg.s3.bucket, claim).await;
    drop(recording);
    let (sha256, unrecorded) = result?;
    Ok(Stored {
        uri: uploader.uri(),
        sha256,
        unrecorded,
        counters,
        part_size: sizer.part_size(),
    })
}

/// Completes the upload of a whole stream. A signal that came while the last part was answered
/// still stopped the backup (the caller checked). Once the commit is sent it is not dropped: a
/// dropped CompleteMultipartUpload may have taken effect, and "nothing was stored" would then be
/// a lie. A failed commit says itself what became of the key (`Uploader::commit`), so its error
/// gets no claim about the parts; the upload is still aborted, if it is there.
async fn commit(uploader: &mut Uploader, ready: Ready) -> Result<String> {
    let Ready { staged, sha256 } = ready;
    let pending = signals::pending(
        format!(
            "the backup's final request for {} was sent and not answered: the backup may be complete; check with `pg-s3-backup list` and `verify` before relying on it or deleting it",
            uploader.uri()
        ),
        Vec::new(),
    );
    let committed = uploader.commit(staged).await;
    drop(pending);
    match committed {
        Ok(()) => Ok(sha256),
        Err(e) => {
            if let Err(abort_err) = uploader.abort().await {
                output::warn(format_args!("{abort_err:#}"));
            }
            Err(e)
        }
    }
}

/// Writes the integrity record of the complete backup at `claim.key`: PutObject only, never
/// reading anything back, so a role that may only write leaves one. It is written over
/// whatever is at its key: the backup's conditional write proved the key this run's, so a
/// record already there was planted.
async fn record(
    client: &aws_sdk_s3::Client,
    cfg: &BackupConfig,
    backup: &str,
    about: &About<'_>,
    sha256: &str,
    size: u64,
    raw_size: u64,
) -> Result<()> {
    let body = Record::new(backup, about, sha256, size, raw_size).to_bytes();
    let key = BackupId::record_key(backup);
    let uri = format!("s3://{}/{key}", cfg.s3.bucket);
    client
        .put_object()
        .bucket(&cfg.s3.bucket)
        .key(&key)
        .content_type("application/json")
        // Bucket policies that require encryption apply to the record too.
        .set_server_side_encryption(cfg.object.sse.clone())
        .set_ssekms_key_id(cfg.object.sse_kms_key_id.clone())
        .body(body.into())
        .send()
        .await
        .map_err(|e| {
            s3::describe("PutObject (integrity record)", &uri, &e).context(format!(
                "the backup s3://{}/{backup} is complete, but its integrity record was not written, so verify and restore take it for unverified (pass --unverified to read it) and nothing was pruned; run the backup again",
                cfg.s3.bucket
            ))
        })?;
    Ok(())
}

/// What this backup is, known before it starts: its object's metadata and, once it is
/// complete, its integrity record say it.
fn about<'a>(cfg: &BackupConfig, job: &'a Job, run: &'a str) -> About<'a> {
    About {
        kind: job.series.kind(),
        database: job.series.database(),
        format: job.format(cfg),
        codec: cfg.codec(),
        compression_level: cfg.compress.level(),
        age_recipients: cfg.recipients.as_ref().map(|r| r.len()),
        server_version: &job.server.version_text,
        pg_dump_version: &job.tool.version_text,
        run,
    }
}

/// Metadata known before the upload starts. S3 metadata is ASCII only, so values are
/// percent-encoded where needed.
fn base_metadata(about: &About) -> HashMap<String, String> {
    let ascii = |s: &str| percent_encoding::utf8_percent_encode(s, &ASCII_META).to_string();
    let mut meta = HashMap::from([
        ("format".into(), about.format.name().into()),
        ("kind".into(), about.kind.into()),
        ("server-version".into(), ascii(about.server_version)),
        ("pg-dump-version".into(), ascii(about.pg_dump_version)),
        (
            "tool-version".into(),
            format!("pg-s3-backup {}", env!("CARGO_PKG_VERSION")),
        ),
        (RUN_METADATA.into(), about.run.into()),
    ]);
    if let Some(database) = about.database {
        meta.insert("database".into(), ascii(database));
    }
    // gzip keeps the `gzip-LEVEL` older versions wrote; zstd is `zstd`, its level on its own.
    let compression = match about.codec.compression {
        Compression::Gzip => format!("gzip-{}", about.compression_level),
        Compression::Zstd => Compression::Zstd.name().to_string(),
    };
    meta.insert("compression".into(), compression);
    meta.insert(
        "compression-level".into(),
        about.compression_level.to_string(),
    );
    if let Some(recipients) = about.age_recipients {
        // How many, never which: the header names none either (age recipients are anonymous).
        meta.insert("encryption".into(), "age".into());
        meta.insert("age-recipients".into(), recipients.to_string());
    }
    meta
}

/// Bytes outside printable ASCII (and `%`) are percent-encoded in metadata values.
const ASCII_META: percent_encoding::AsciiSet = percent_encoding::CONTROLS.add(b'%');
