//! The sink: an S3 multipart upload with growing part sizes, bounded concurrency and bounded
//! memory. Its phases stay apart: `stage` buffers and uploads parts, `commit` completes the
//! upload (only after the caller saw pg_dump exit 0), and `abort` removes everything on failure.
//! A stream smaller than one part becomes a single PutObject at commit time.

use crate::progress::Counters;
use crate::s3::{self, describe};
use anyhow::{bail, Context, Result};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, MetadataDirective, ServerSideEncryption, StorageClass,
};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

const MIB: u64 = 1 << 20;
/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
/// S3's largest object.
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * MIB;
/// S3's part-count limit.
pub const S3_MAX_PARTS: u32 = 10_000;
/// Largest object CopyObject accepts; used to attach the final metadata.
const MAX_COPY_SIZE: u64 = MAX_PART_SIZE;

/// Part sizes for a stream of unknown length: the first parts are `initial`; the size doubles
/// every `interval` parts (capped at 5 GiB), with the slowest growth that still lets a stream
/// of S3's maximum object size fit in `max_parts`. Small dumps keep small parts (low memory);
/// huge ones never die at the 10,000-part limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSizer {
    initial: u64,
    max_parts: u32,
    interval: u32,
}

impl PartSizer {
    pub fn new(initial: u64, max_parts: u32) -> Self {
        let with = |interval| Self {
            initial,
            max_parts,
            interval,
        };
        if with(max_parts).capacity() >= MAX_OBJECT_SIZE {
            return with(max_parts);
        }
        // Capacity falls as the interval grows: find the largest interval that still fits.
        let (mut lo, mut hi) = (1, max_parts);
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
        let doublings = (number.saturating_sub(1) / self.interval).min(40);
        self.initial
            .saturating_mul(1 << doublings)
            .min(MAX_PART_SIZE)
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
        spec: ObjectSpec,
        sizer: PartSizer,
        concurrency: usize,
        counters: Arc<Counters>,
    ) -> Self {
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
            .content_type("application/gzip")
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

    /// Makes the object visible, with `extra` metadata (sha256, raw size) added. Returns false
    /// when the object is complete but the extra metadata could not be attached (a warning).
    pub async fn commit(&mut self, staged: Staged, extra: HashMap<String, String>) -> Result<bool> {
        let s = self.spec.clone();
        let mut metadata = s.metadata.clone();
        metadata.extend(extra);
        match staged {
            Staged::Single(body) => {
                let len = body.len() as u64;
                self.client
                    .put_object()
                    .bucket(&s.bucket)
                    .key(&s.key)
                    // Never over another object (AWS honours this since 2024, as do moto and
                    // MinIO): a key taken meanwhile fails the write instead.
                    .if_none_match("*")
                    .content_type("application/gzip")
                    .content_length(len as i64)
                    .set_metadata(Some(metadata))
                    .set_storage_class(s.storage_class.clone())
                    .set_server_side_encryption(s.sse.clone())
                    .set_ssekms_key_id(s.sse_kms_key_id.clone())
                    .body(ByteStream::from(body))
                    .customize()
                    .config_override(s3::sending(&self.client, len))
                    .send()
                    .await
                    .map_err(|e| lost(&s, "PutObject", &e))?;
                self.counters.add_part();
                self.completed = true;
                Ok(true)
            }
            Staged::Multipart(parts) => {
                let id = self
                    .upload_id
                    .clone()
                    .context("multipart upload was never created")?;
                self.client
                    .complete_multipart_upload()
                    .bucket(&s.bucket)
                    .key(&s.key)
                    .upload_id(id)
                    .if_none_match("*")
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .customize()
                    .config_override(s3::slow(&self.client))
                    .send()
                    .await
                    .map_err(|e| lost(&s, "CompleteMultipartUpload", &e))?;
                self.completed = true;
                Ok(self.replace_metadata(metadata).await)
            }
        }
    }

    /// A multipart upload's metadata is fixed when it starts, before the sha256 is known, so it
    /// is attached afterwards by copying the object onto itself. That needs s3:GetObject; without
    /// it (a PutObject-only backup user) the backup stays complete and only this warns.
    async fn replace_metadata(&self, metadata: HashMap<String, String>) -> bool {
        let s = &self.spec;
        if self.counters.compressed() > MAX_COPY_SIZE {
            crate::output::warn(format_args!("{} is larger than 5 GiB, so its sha256 and raw-size metadata were not attached (CopyObject limit)", s.uri()));
            return false;
        }
        let source = format!(
            "{}/{}",
            s.bucket,
            percent_encoding::utf8_percent_encode(&s.key, COPY_SOURCE)
        );
        let result = self
            .client
            .copy_object()
            .bucket(&s.bucket)
            .key(&s.key)
            .copy_source(source)
            .metadata_directive(MetadataDirective::Replace)
            .content_type("application/gzip")
            .set_metadata(Some(metadata))
            .set_storage_class(s.storage_class.clone())
            .set_server_side_encryption(s.sse.clone())
            .set_ssekms_key_id(s.sse_kms_key_id.clone())
            .customize()
            .config_override(s3::slow(&self.client))
            .send()
            .await;
        match result {
            Ok(_) => true,
            Err(e) => {
                let err = describe("CopyObject (to attach sha256 metadata)", &s.uri(), &e);
                crate::output::warn(format_args!("the backup is complete, but {err}; grant s3:GetObject on the prefix to record it"));
                false
            }
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
        self.client
            .abort_multipart_upload()
            .bucket(&s.bucket)
            .key(&s.key)
            .upload_id(id)
            .send()
            .await
            .map_err(|e| describe("AbortMultipartUpload", &s.uri(), &e))?;
        Ok(())
    }

    pub fn uri(&self) -> String {
        self.spec.uri()
    }
}

/// A failed final write: a lost condition means another object took the key meanwhile.
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

/// Key characters that must be percent-encoded in `x-amz-copy-source`.
const COPY_SOURCE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

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

    #[test]
    fn the_maximum_object_fits_in_the_part_cap() {
        for (initial, max_parts) in [
            (8 * MIB, 10_000),
            (5 * MIB, 10_000),
            (64 * MIB, 10_000),
            (8 * MIB, 2_000),
            (5 * MIB, 1_100),
        ] {
            let sizer = PartSizer::new(initial, max_parts);
            assert!(
                sizer.capacity() >= MAX_OBJECT_SIZE,
                "{initial} x {max_parts}: {}",
                sizer.capacity()
            );
            assert_eq!(sizer.size(1), initial);
            for n in 1..=max_parts {
                let s = sizer.size(n);
                assert!(
                    (MIN_PART_SIZE..=MAX_PART_SIZE).contains(&s),
                    "part {n}: {s}"
                );
                assert!(n == 1 || s >= sizer.size(n - 1), "sizes never shrink");
            }
        }
    }

    #[test]
    fn growth_is_as_slow_as_the_cap_allows() {
        let sizer = PartSizer::new(8 * MIB, 10_000);
        // A 10 GiB compressed dump (1,280 parts of 8 MiB) would still use 8 MiB parts.
        assert_eq!(sizer.size(1_000), 8 * MIB);
        // One interval more would no longer fit 5 TiB.
        let slower = PartSizer {
            interval: sizer.interval + 1,
            ..sizer
        };
        assert!(slower.capacity() < MAX_OBJECT_SIZE);
    }

    #[test]
    fn fewer_parts_than_5tib_needs_still_grows_to_the_largest_parts() {
        let sizer = PartSizer::new(8 * MIB, 100);
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
