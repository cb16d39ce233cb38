//! The sink: an S3 multipart upload with growing part sizes, bounded concurrency and bounded
//! memory. Its phases stay apart: `stage` buffers and uploads parts, `commit` completes the
//! upload (only after the caller saw pg_dump exit 0), and `abort` removes everything on failure.
//! A stream smaller than one part becomes a single PutObject at commit time.

use crate::progress::Counters;
use crate::s3::{self, describe};
use anyhow::{bail, Context, Result};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ServerSideEncryption, StorageClass,
};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::limits::{MAX_OBJECT_SIZE, MAX_PART_SIZE, MIB};

/// The part plan: one size for every part of the upload, chosen before the first byte from
/// what is known then (the database's size on disk, `--part-size`, `--max-parts`), so that the
/// non-trailing parts are all equal, as Cloudflare R2 and its imitators require, and memory is at
/// most (concurrency + 1) x the part size. The plan spans all but a reserve of the allowed parts;
/// a dump larger than planned goes on into the reserve with parts that double every `interval`
/// parts (the slowest growth that still reaches S3's 5 TiB, else doubling every part), with a
/// warning, so it still completes on stores that take unequal parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSizer {
    size: u64,
    planned: u32,
    max_parts: u32,
    interval: u32,
}

/// A plain dump's compressed size against the database's size on disk: bytea and large
/// objects are written as hex, so incompressible binary data comes out at about 1.1 x.
const EXPECTED_RATIO: (u64, u64) = (5, 4);

impl PartSizer {
    /// The plan for a database of `on_disk` bytes: parts of at least `part_size`, large enough
    /// that 1.25 x `on_disk` fits in the planned parts, rounded up to a MiB, at most 5 GiB.
    pub fn plan(part_size: u64, max_parts: u32, on_disk: u64) -> Self {
        // An eighth of 10,000 parts is what growth from 8 MiB needs to reach 5 TiB.
        let reserve = if max_parts >= 4 {
            (max_parts / 8).max(2)
        } else {
            0
        };
        let planned = max_parts - reserve;
        let expected = on_disk.saturating_mul(EXPECTED_RATIO.0) / EXPECTED_RATIO.1;
        let needed = expected.div_ceil(u64::from(planned)).div_ceil(MIB) * MIB;
        let size = needed.max(part_size).min(MAX_PART_SIZE);
        let with = |interval| Self {
            size,
            planned,
            max_parts,
            interval,
        };
        if reserve == 0 || with(reserve).capacity() >= MAX_OBJECT_SIZE {
            return with(reserve.max(1));
        }
        // Capacity falls as the interval grows: find the largest interval that still fits.
        let (mut lo, mut hi) = (1, reserve);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if with(mid).capacity() >= MAX_OBJECT_SIZE {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        with(lo)
    }

    /// Size of part `number` (1-based).
    pub fn size(&self, number: u32) -> u64 {
        if number <= self.planned {
            return self.size;
        }
        let doublings = (1 + (number - self.planned - 1) / self.interval).min(40);
        self.size.saturating_mul(1 << doublings).min(MAX_PART_SIZE)
    }

    /// The one size of the planned parts.
    pub fn part_size(&self) -> u64 {
        self.size
    }

    /// How many equal parts the plan has before parts grow.
    pub fn planned_parts(&self) -> u32 {
        self.planned
    }

    /// Bytes the planned (equal) parts hold.
    pub fn planned_capacity(&self) -> u64 {
        self.size * u64::from(self.planned)
    }

    /// Bytes that fit in `max_parts` parts.
    pub fn capacity(&self) -> u64 {
        (1..=self.max_parts)
            .map(|n| self.size(n))
            .fold(0u64, u64::saturating_add)
    }

    pub fn max_parts(&self) -> u32 {
        self.max_parts
    }
}

/// What the object will be: where, and the attributes set when it is created.
#[derive(Debug, Clone)]
pub struct ObjectSpec {
    pub bucket: String,
    pub key: String,
    /// The codec's (`application/gzip`, `application/zstd`, ...).
    pub content_type: &'static str,
    pub metadata: HashMap<String, String>,
    pub storage_class: Option<StorageClass>,
    pub sse: Option<ServerSideEncryption>,
    pub sse_kms_key_id: Option<String>,
}

impl ObjectSpec {
    fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// The stream is fully received; nothing is visible in the bucket yet.
#[derive(Debug)]
pub enum Staged {
    /// Smaller than one part: held in memory, written by one PutObject at commit.
    Single(Bytes),
    /// All parts uploaded, in order.
    Multipart(Vec<CompletedPart>),
}

pub struct Uploader {
    client: Client,
    spec: ObjectSpec,
    sizer: PartSizer,
    concurrency: usize,
    counters: Arc<Counters>,
    upload_id: Option<String>,
    completed: bool,
}

impl Uploader {
    pub fn new(
        client: Client,
        mut spec: ObjectSpec,
        sizer: PartSizer,
        concurrency: usize,
        counters: Arc<Counters>,
    ) -> Self {
        spec.metadata
            .entry(RUN_METADATA.to_string())
            .or_insert_with(run_token);
        Self {
            client,
            spec,
            sizer,
            concurrency,
            counters,
            upload_id: None,
            completed: false,
        }
    }

    /// Receives the compressed stream and uploads each part as it fills. At most
    /// `concurrency + 1` parts are held at once: one permit per part, taken before the part is
    /// filled and released when its upload ends, so a slow store slows the dump instead of
    /// growing memory.
    pub async fn stage(&mut self, mut rx: mpsc::Receiver<Bytes>) -> Result<Staged> {
        let permits = Arc::new(Semaphore::new(self.concurrency + 1));
        let mut tasks: JoinSet<Result<CompletedPart>> = JoinSet::new();
        let mut done = Vec::new();
        let mut carry = Bytes::new();
        let mut number = 1u32;
        loop {
            let permit = acquire(&permits, &mut tasks, &mut done).await?;
            let size = self.sizer.size(number) as usize;
            let (part, eof) = fill(&mut rx, &mut carry, size).await;
            if number == 1 && eof {
                return Ok(Staged::Single(part));
            }
            if part.is_empty() {
                break;
            }
            if number == self.sizer.planned_parts() + 1 {
                crate::output::warn(format_args!(
                    "the dump is larger than its part plan ({} parts of {}MiB, planned from the database's size on disk): parts now grow, which stores that require equal parts (Cloudflare R2) refuse at the end; pass --part-size {}MiB or more for this database",
                    self.sizer.planned_parts(),
                    self.sizer.part_size() / MIB,
                    (self.sizer.part_size() * 2 / MIB).min(MAX_PART_SIZE / MIB),
                ));
            }
            if number > self.sizer.max_parts() {
                bail!(
                    "the dump is larger than {} parts can hold ({} bytes): raise --part-size or --max-parts",
                    self.sizer.max_parts(),
                    self.sizer.capacity()
                );
            }
            let upload_id = self.create().await?;
            tasks.spawn(upload_part(
                self.client.clone(),
                self.spec.clone(),
                upload_id,
                number,
                part,
                permit,
                self.counters.clone(),
            ));
            number += 1;
            if eof {
                break;
            }
        }
        while let Some(joined) = tasks.join_next().await {
            done.push(joined.context("part upload task")??);
        }
        done.sort_by_key(|p| p.part_number());
        Ok(Staged::Multipart(done))
    }

    async fn create(&mut self) -> Result<String> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let s = &self.spec;
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&s.bucket)
            .key(&s.key)
            .content_type(s.content_type)
            .set_metadata(Some(s.metadata.clone()))
            .set_storage_class(s.storage_class.clone())
            .set_server_side_encryption(s.sse.clone())
            .set_ssekms_key_id(s.sse_kms_key_id.clone())
            .send()
            .await
            .map_err(|e| describe("CreateMultipartUpload", &s.uri(), &e))?;
        let id = out
            .upload_id
            .context("CreateMultipartUpload returned no upload id")?;
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    /// Makes the object visible, with the metadata known when it started; what is known only
    /// at the end (sha256, sizes) is the backup's integrity record (`record`), written next.
    ///
    /// The write carries `If-None-Match: *`, so it never lands over another object (AWS honours
    /// it since 2024, as do moto, MinIO and s3s-fs). A store that refuses the header (501) gets
    /// the write without it, once HeadObject found the key free. When the write fails after its
    /// retries (an answer lost on the way back, then a retry that finds the key taken or the
    /// upload gone), the object at the key is checked for this run's `run` metadata: if it is
    /// this run's, the backup is complete.
    pub async fn commit(&mut self, staged: Staged) -> Result<()> {
        let metadata = self.spec.metadata.clone();
        let mut conditional = true;
        loop {
            match self.send_commit(&staged, &metadata, conditional).await {
                Ok(()) => break,
                Err(failed) if conditional && failed.not_implemented => {
                    match self.key_state().await {
                        KeyState::Free => {}
                        KeyState::Taken(_) => return Err(failed.error),
                        // A role that may not read (the write-only backup role) cannot tell
                        // a free key from a taken one: without the condition it could
                        // overwrite a backup.
                        KeyState::Unknown => bail!(
                            "the store refused If-None-Match on {} ({}), and this role may not read the key to check that it is free: nothing was written, so that no backup is overwritten; grant s3:GetObject on the prefix, or use a store that honours If-None-Match",
                            failed.op,
                            self.spec.uri()
                        ),
                    }
                    crate::output::warn(format_args!(
                        "the store refused If-None-Match on {} ({}): writing it without the condition, since the key is free; a backup started in this same second could still overwrite it",
                        failed.op,
                        self.spec.uri()
                    ));
                    conditional = false;
                }
                Err(failed) => match self.key_state().await {
                    KeyState::Taken(Some(run))
                        if self.spec.metadata.get(RUN_METADATA) == Some(&run) =>
                    {
                        crate::output::warn(format_args!(
                            "{} failed ({:#}), but {} holds this run's object: the store had completed it",
                            failed.op,
                            failed.error,
                            self.spec.uri()
                        ));
                        break;
                    }
                    // A role that may not read (the write-only backup role) cannot tell a key
                    // taken by another object from its own completion whose answer was lost
                    // before a retry found the key taken (or the upload gone).
                    KeyState::Unknown => bail!(
                        "{} of {} failed ({:#}), and this role may not read the key to tell whether an earlier attempt took effect: if `pg-s3-backup list` shows it without an integrity record, it may be this run's complete but unverified backup, or another writer's; nothing was overwritten, and no record was written; run the backup again",
                        failed.op,
                        self.spec.uri(),
                        failed.error
                    ),
                    _ => return Err(failed.error),
                },
            }
        }
        self.completed = true;
        if let Staged::Single(_) = staged {
            self.counters.add_part();
        }
        Ok(())
    }

    /// One attempt (with the SDK's retries) at the write that makes the object visible.
    async fn send_commit(
        &self,
        staged: &Staged,
        metadata: &HashMap<String, String>,
        conditional: bool,
    ) -> std::result::Result<(), CommitFailed> {
        let s = &self.spec;
        let condition = conditional.then(|| "*".to_string());
        match staged {
            Staged::Single(body) => {
                let len = body.len() as u64;
                self.client
                    .put_object()
                    .bucket(&s.bucket)
                    .key(&s.key)
                    .set_if_none_match(condition)
                    .content_type(s.content_type)
                    .content_length(len as i64)
                    .set_metadata(Some(metadata.clone()))
                    .set_storage_class(s.storage_class.clone())
                    .set_server_side_encryption(s.sse.clone())
                    .set_ssekms_key_id(s.sse_kms_key_id.clone())
                    .body(ByteStream::from(body.clone()))
                    .customize()
                    .config_override(s3::sending(&self.client, len))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| CommitFailed::new(s, "PutObject", &e))
            }
            Staged::Multipart(parts) => {
                let id = self.upload_id.clone().ok_or_else(|| CommitFailed {
                    op: "CompleteMultipartUpload",
                    not_implemented: false,
                    error: anyhow::anyhow!("multipart upload was never created"),
                })?;
                self.client
                    .complete_multipart_upload()
                    .bucket(&s.bucket)
                    .key(&s.key)
                    .upload_id(id)
                    .set_if_none_match(condition)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts.clone()))
                            .build(),
                    )
                    .customize()
                    .config_override(s3::slow(&self.client))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| CommitFailed::new(s, "CompleteMultipartUpload", &e))
            }
        }
    }

    /// Whether an object is at the key, and its `run` metadata.
    async fn key_state(&self) -> KeyState {
        let s = &self.spec;
        match self
            .client
            .head_object()
            .bucket(&s.bucket)
            .key(&s.key)
            .send()
            .await
        {
            Ok(head) => KeyState::Taken(head.metadata().and_then(|m| m.get(RUN_METADATA)).cloned()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => KeyState::Free,
            // Denied (no s3:GetObject), or no answer.
            Err(_) => KeyState::Unknown,
        }
    }

    /// Aborts the multipart upload if one was started and not completed; S3 then discards
    /// every uploaded part. Safe to call more than once.
    pub async fn abort(&mut self) -> Result<()> {
        if self.completed {
            return Ok(());
        }
        let Some(id) = self.upload_id.take() else {
            return Ok(());
        };
        let s = &self.spec;
        let aborted = self
            .client
            .abort_multipart_upload()
            .bucket(&s.bucket)
            .key(&s.key)
            .upload_id(&id)
            .send()
            .await;
        // Gone already: completed (a commit whose answer was lost) or aborted. No parts left.
        if let Err(e) = &aborted {
            if aws_sdk_s3::error::ProvideErrorMetadata::code(e) == Some("NoSuchUpload") {
                return Ok(());
            }
        }
        aborted.map_err(|e| {
            // The store keeps (and bills) the parts until the upload is aborted.
            anyhow::Error::new(AbortFailed {
                cause: format!("{:#}", describe("AbortMultipartUpload", &s.uri(), &e)),
                remedy: format!(
                    "run `aws s3api abort-multipart-upload --bucket {} --key={} --upload-id={}`, or add a lifecycle rule that aborts incomplete multipart uploads",
                    s.bucket,
                    shell_word(&s.key),
                    shell_word(&id)
                ),
            })
        })?;
        Ok(())
    }

    pub fn uri(&self) -> String {
        self.spec.uri()
    }
}

/// What a HeadObject of the backup's key found.
enum KeyState {
    Free,
    /// An object is there, with this `run` metadata if it has one.
    Taken(Option<String>),
    /// The role may not read the key, or the store did not answer.
    Unknown,
}

/// An abort the store refused: the parts stay stored.
#[derive(Debug, thiserror::Error)]
#[error("{cause}; its parts stay stored until removed: {remedy}")]
pub struct AbortFailed {
    /// The refused request, and what to grant or check.
    pub cause: String,
    /// The command that removes the parts.
    pub remedy: String,
}

/// `text` as one shell word, for a command the user may paste: single-quoted unless it is
/// plain. A key holds the user's prefix and the database's name, an upload id is the store's.
fn shell_word(text: &str) -> String {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=+:".contains(&b))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// A failed final write: a lost condition means another object took the key meanwhile.
/// Object metadata naming the run that wrote it, so that a run can tell its own completed object
/// from another's when the store's answer to the final write was lost.
pub const RUN_METADATA: &str = "run";

/// 16 hex digits, different for every call (the process's random hash seed, its id and the
/// time); an identity, not a secret.
pub fn run_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", h.finish())
}

/// A failed write of the object: what failed, and whether the store refused the condition.
struct CommitFailed {
    op: &'static str,
    not_implemented: bool,
    error: anyhow::Error,
}

impl CommitFailed {
    fn new<E>(s: &ObjectSpec, op: &'static str, e: &s3::S3Error<E>) -> Self
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        Self {
            op,
            not_implemented: s3::is_not_implemented(e),
            error: lost(s, op, e),
        }
    }
}

fn lost<E>(s: &ObjectSpec, op: &str, e: &s3::S3Error<E>) -> anyhow::Error
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    if s3::lost_condition(e) {
        return anyhow::anyhow!(
            "another object was written at {} while this backup ran ({op} with If-None-Match lost): nothing was overwritten; run the backup again",
            s.uri()
        );
    }
    describe(op, &s.uri(), e)
}

/// Waits for a part slot, collecting finished parts meanwhile so that a failed part stops the
/// stream at once instead of after the whole dump.
async fn acquire(
    permits: &Arc<Semaphore>,
    tasks: &mut JoinSet<Result<CompletedPart>>,
    done: &mut Vec<CompletedPart>,
) -> Result<OwnedSemaphorePermit> {
    loop {
        while let Some(joined) = tasks.try_join_next() {
            done.push(joined.context("part upload task")??);
        }
        tokio::select! {
            permit = permits.clone().acquire_owned() => return Ok(permit.expect("semaphore never closed")),
            Some(joined) = tasks.join_next() => done.push(joined.context("part upload task")??),
        }
    }
}

/// Fills one part of `size` bytes from the stream; `true` when the stream ended.
async fn fill(rx: &mut mpsc::Receiver<Bytes>, carry: &mut Bytes, size: usize) -> (Bytes, bool) {
    let mut part = BytesMut::with_capacity(size);
    loop {
        if !carry.is_empty() {
            let take = carry.len().min(size - part.len());
            part.extend_from_slice(&carry.split_to(take));
        }
        if part.len() == size {
            return (part.freeze(), false);
        }
        match rx.recv().await {
            Some(chunk) => *carry = chunk,
            None => return (part.freeze(), true),
        }
    }
}

async fn upload_part(
    client: Client,
    spec: ObjectSpec,
    upload_id: String,
    number: u32,
    body: Bytes,
    _permit: OwnedSemaphorePermit,
    counters: Arc<Counters>,
) -> Result<CompletedPart> {
    let len = body.len() as u64;
    let out = client
        .upload_part()
        .bucket(&spec.bucket)
        .key(&spec.key)
        .upload_id(upload_id)
        .part_number(number as i32)
        .content_length(body.len() as i64)
        .body(ByteStream::from(body))
        .customize()
        .config_override(s3::sending(&client, len))
        .send()
        .await
        .map_err(|e| describe(&format!("UploadPart {number}"), &spec.uri(), &e))?;
    counters.add_part();
    Ok(CompletedPart::builder()
        .part_number(number as i32)
        .set_e_tag(out.e_tag)
        .set_checksum_crc32(out.checksum_crc32)
        .set_checksum_crc32_c(out.checksum_crc32_c)
        .set_checksum_crc64_nvme(out.checksum_crc64_nvme)
        .set_checksum_sha1(out.checksum_sha1)
        .set_checksum_sha256(out.checksum_sha256)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MIN_PART_SIZE;

    /// What the shell reads back from the hint's words is the value: nothing runs, nothing
    /// splits, a leading `-` stays a value (the hint writes `--key=...`).
    #[test]
    fn shell_words_read_back_as_themselves() {
        for text in [
            "pg/app/app-20261201T030000Z.sql.gz",
            "x;touch /tmp/pg-s3-backup-pwned;$(id)",
            "it's `here` \\ \"there\"",
            "-x/key with spaces\nand a newline",
            "",
            "#hash",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s --key={}", shell_word(text)))
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8(out.stdout).unwrap(),
                format!("--key={text}")
            );
        }
        assert!(!std::path::Path::new("/tmp/pg-s3-backup-pwned").exists());
    }

    /// Every part within S3's bounds, sizes never shrinking, all planned parts equal.
    fn assert_well_formed(sizer: &PartSizer) {
        for n in 1..=sizer.max_parts() {
            let s = sizer.size(n);
            assert!(
                (MIN_PART_SIZE..=MAX_PART_SIZE).contains(&s),
                "part {n}: {s}"
            );
            assert!(n == 1 || s >= sizer.size(n - 1), "sizes never shrink");
            if n <= sizer.planned_parts() {
                assert_eq!(s, sizer.part_size(), "planned part {n}");
            }
        }
        assert_eq!(sizer.part_size() % MIB, 0);
    }

    #[test]
    fn at_the_defaults_the_plan_is_equal_parts_and_the_maximum_object_still_fits() {
        for part_size in [5 * MIB, 8 * MIB, 64 * MIB] {
            let sizer = PartSizer::plan(part_size, 10_000, 0);
            assert_well_formed(&sizer);
            assert_eq!(sizer.part_size(), part_size);
            assert_eq!(sizer.planned_parts(), 8_750);
            assert!(sizer.capacity() >= MAX_OBJECT_SIZE, "{part_size}");
        }
    }

    #[test]
    fn the_part_size_follows_the_database_size() {
        for (part_size, max_parts, on_disk) in [
            (8 * MIB, 10_000, 100 << 30),
            (8 * MIB, 10_000, 7 << 20),
            (5 * MIB, 1_000, 50 << 30),
            (5 * MIB, 12, 100 * MIB),
            (5 * MIB, 40, 40 * MIB),
            (5 * MIB, 3, 1 << 30),
            (8 * MIB, 10_000, 1 << 50),
        ] {
            let sizer = PartSizer::plan(part_size, max_parts, on_disk);
            assert_well_formed(&sizer);
            assert!(sizer.part_size() >= part_size);
            let expected = on_disk / 4 * 5;
            if sizer.part_size() < MAX_PART_SIZE {
                // 1.25 x the size on disk fits in the equal parts, with at most a MiB per part
                // to spare over what is needed.
                assert!(sizer.planned_capacity() >= expected, "{on_disk}");
                assert!(
                    sizer.part_size() == part_size
                        || sizer.planned_capacity() - expected
                            < MIB * u64::from(sizer.planned_parts()),
                    "{on_disk}: {} parts of {}",
                    sizer.planned_parts(),
                    sizer.part_size()
                );
            }
        }
        // Scaleway's 1,000 parts, 50 GiB on disk: 875 parts of 74 MiB.
        let sizer = PartSizer::plan(5 * MIB, 1_000, 50 << 30);
        assert_eq!((sizer.planned_parts(), sizer.part_size()), (875, 74 * MIB));
        // Fewer than 4 parts: no reserve, every part planned.
        let sizer = PartSizer::plan(5 * MIB, 3, 0);
        assert_eq!(sizer.planned_parts(), 3);
    }

    #[test]
    fn growth_past_the_plan_is_as_slow_as_the_cap_allows() {
        let sizer = PartSizer::plan(8 * MIB, 10_000, 0);
        assert_eq!(sizer.size(8_750), 8 * MIB);
        assert_eq!(sizer.size(8_751), 16 * MIB);
        // One interval more would no longer fit 5 TiB.
        let slower = PartSizer {
            interval: sizer.interval + 1,
            ..sizer
        };
        assert!(slower.capacity() < MAX_OBJECT_SIZE);
        // Where 5 TiB cannot fit, parts double every part past the plan.
        let sizer = PartSizer::plan(8 * MIB, 100, 0);
        assert_eq!(sizer.interval, 1);
        assert_eq!(sizer.size(100), MAX_PART_SIZE);
    }

    #[tokio::test]
    async fn fill_splits_chunks_at_part_boundaries_without_losing_bytes() {
        let (tx, mut rx) = mpsc::channel(4);
        let data: Vec<u8> = (0..25u32).map(|i| i as u8).collect();
        tokio::spawn(async move {
            for chunk in data.chunks(7) {
                tx.send(Bytes::copy_from_slice(chunk)).await.unwrap();
            }
        });
        let mut carry = Bytes::new();
        let mut parts = Vec::new();
        loop {
            let (part, eof) = fill(&mut rx, &mut carry, 10).await;
            parts.push(part);
            if eof {
                break;
            }
        }
        let lens: Vec<usize> = parts.iter().map(Bytes::len).collect();
        assert_eq!(lens, vec![10, 10, 5]);
        let joined: Vec<u8> = parts.concat();
        assert_eq!(joined, (0..25u32).map(|i| i as u8).collect::<Vec<_>>());
    }
}
