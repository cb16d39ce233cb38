//! Parallel gzip (pigz-style): owns turning one byte stream into one single-member gzip stream on worker threads; not I/O policy (buffering, retries, progress, async), which stays with the caller's `Read`/`Write`.
//! [`encode`] also offers zstd, libzstd's own multithreaded compressor (see [`ZstdOptions`]).
//!
//! Layout of the work: the calling thread reads `block_size` blocks from the
//! input and hands them to a pool of workers. Each worker raw-deflates its
//! block on its own with libdeflate, then ([`chain::unfinish`]) clears the
//! final-block bit and ends it with a sync flush, so the pieces concatenate on
//! byte boundaries into ONE deflate stream. A writer thread writes the pieces
//! in order between one gzip header and one trailer. One member matters: some
//! decoders (flate2's `GzDecoder`, for one) stop after the first member and
//! would silently drop everything after it.
//!
//! Why libdeflate and not zlib-rs through flate2, and why blocks carry no
//! dictionary. Measured on the benchmark's 700 MB pg_dump at level 6, one
//! thread, file to /dev/null, 5 interleaved runs each (this VM's speed drifts
//! 10-20% between runs, so only side-by-side runs compare):
//!
//! | compressor                                          | CPU s avg (min) | vs gzip -6 size |
//! |-----------------------------------------------------|-----------------|-----------------|
//! | zlib-rs, 512 KiB blocks primed with 32 KiB (before) | 5.56 (5.51)     | 0.976           |
//! | libdeflate, independent 512 KiB blocks, chained     | 4.96 (4.78)     | 0.943           |
//!
//! `bench/run --engines` repeats the comparison with gzip, libdeflate's own
//! whole-file gzip and ISA-L (BENCHMARKS.md). Walking each block to chain it
//! is ~6% of the chained compressor's CPU (perf). libdeflate has no streaming
//! API and no preset dictionary, so every block starts with an empty window;
//! that costs 0.6% in size against one call over the whole dump, far less
//! than libdeflate's better matching gains.
//!
//! `compress` blocks the calling thread until the input is done; from async
//! code run it on a blocking thread.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;

use libdeflater::{CompressionLvl, Compressor};

mod chain;
mod proof;

/// Default block size. Measured with `examples/pgzip 6 2 BLOCK_SIZE` on the
/// benchmark's 700 MB plain pg_dump (bench/run), 2-core VM, file to
/// /dev/null, two rounds (the VM's speed drifts by 10-20% between runs):
///
/// | block     | wall s      | compressed bytes | vs gzip -6 |
/// |-----------|-------------|------------------|------------|
/// | 128 KiB   | 3.48, 3.49  | 73,620,343       | 0.961      |
/// | 256 KiB   | 3.29, 3.14  | 72,669,533       | 0.949      |
/// | 512 KiB   | 3.13, 3.09  | 72,242,478       | 0.943      |
/// | 1 MiB     | 3.12, 2.86  | 72,029,921       | 0.941      |
/// | 2 MiB     | 3.10, 2.75  | 71,906,935       | 0.939      |
///
/// Every block starts with an empty window, so bigger blocks compress a
/// little better; past 512 KiB the gain is under 0.5%, while the memory in
/// flight (`max_blocks_in_flight` blocks: 5 with 2 threads, 129 with 64)
/// doubles with each step. 512 KiB keeps it at ~3 MB on 2 cores.
pub const DEFAULT_BLOCK_SIZE: usize = 512 * 1024;

/// gzip header: magic, CM=deflate, no flags, MTIME=0 (reproducible output),
/// XFL patched per level, OS=3 (Unix).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];

/// Options for [`compress`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GzipOptions {
    /// Deflate level, 1 (fastest) ..= 9 (smallest).
    pub level: u32,
    /// Number of compression worker threads, at least 1 (a reader and a
    /// writer thread run besides them, mostly waiting on I/O).
    pub threads: usize,
    /// Bytes of input per block, the unit of parallel work; must be > 0.
    pub block_size: usize,
    /// Decode every compressed block, as it will be written, and compare it with its input
    /// before writing it ([`proof`]). On by default: bench/ measures its cost.
    pub self_check: bool,
}

impl Default for GzipOptions {
    fn default() -> Self {
        GzipOptions {
            level: 6,
            threads: thread::available_parallelism().map_or(1, |n| n.get()),
            block_size: DEFAULT_BLOCK_SIZE,
            self_check: true,
        }
    }
}

/// zstd as libzstd's multithreaded streaming compressor writes it: one standard frame, its
/// content checksum (XXH64) included, that `zstd -d` reads. libzstd compresses on `threads`
/// workers of its own, in jobs of [`ZSTD_JOB_SIZE`], while the caller's thread reads and
/// writes. Memory grows with the threads and the level's window (2 MiB at level 3, 8 MiB at
/// 19): about 10 MB a thread at level 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZstdOptions {
    /// 1 (fastest) ..= 19 (smallest).
    pub level: i32,
    pub threads: usize,
}

/// The default zstd level: as fast as gzip -1 and smaller than gzip -6 on pg_dump output.
pub const ZSTD_DEFAULT_LEVEL: i32 = 3;

/// Which compressor, with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Options {
    Gzip(GzipOptions),
    Zstd(ZstdOptions),
}

impl Options {
    pub fn level(&self) -> i64 {
        match self {
            Self::Gzip(g) => g.level.into(),
            Self::Zstd(z) => z.level.into(),
        }
    }
}

/// Reads `input` to EOF and writes it compressed to `output` (one gzip member, or one zstd
/// frame); returns the bytes read. On error no end is written, so a partial output never
/// decodes as whole.
pub fn encode<R: Read + Send, W: Write + Send>(
    input: R,
    output: W,
    opts: &Options,
) -> io::Result<u64> {
    match opts {
        Options::Gzip(gzip) => compress(input, output, gzip).map(|stats| stats.raw_bytes),
        Options::Zstd(zstd) => encode_zstd(input, output, zstd),
    }
}

/// Input bytes per zstd job, the unit a worker compresses. libzstd's default at level 3 is
/// 8 MiB (four windows); measured with the benchmark's 700 MB dump, level 3, 2 threads,
/// interleaved runs of the release backup to s3s-fs:
///
/// | job size          | wall s           | peak RSS MiB | bytes stored |
/// |-------------------|------------------|--------------|--------------|
/// | default (8 MiB)   | 5.18, 4.12, 3.85 | 74-76        | 69,915,533   |
/// | 4 MiB             | 3.90, 3.90, 3.63 | 53-54        | 69,805,936   |
/// | 2 MiB             | 4.60, 3.69, 3.73 | 43-45        | 69,692,863   |
/// | 1 MiB             | 4.11, 4.31, 4.01 | 36-38        | 69,771,705   |
///
/// Jobs overlap by part of the window, so smaller ones lose nothing in size here; 2 MiB halves
/// the memory for the same speed.
const ZSTD_JOB_SIZE: u32 = 2 << 20;

/// Input read per call: libzstd hands a job to a worker once it holds a job's worth.
const ZSTD_READ: usize = 1 << 20;

fn encode_zstd<R: Read, W: Write>(mut input: R, output: W, opts: &ZstdOptions) -> io::Result<u64> {
    if !(1..=19).contains(&opts.level) || opts.threads == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "zstd level {} (1..=19) or threads {} (>= 1) out of range",
                opts.level, opts.threads
            ),
        ));
    }
    let mut encoder = zstd::stream::write::Encoder::new(output, opts.level)?;
    encoder.include_checksum(true)?;
    encoder.multithread(u32::try_from(opts.threads).unwrap_or(u32::MAX))?;
    encoder.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB_SIZE))?;
    let mut buf = vec![0u8; ZSTD_READ];
    let mut raw = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        encoder.write_all(&buf[..n])?;
        raw += n as u64;
    }
    encoder.finish()?;
    Ok(raw)
}

/// The error inside the `io::Error` of a block that failed its self-check: the compressor's own
/// fault, never an echo of its input's (see [`is_self_check_failure`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SelfCheckFailed(pub String);

/// Whether `err` (from [`compress`]) is a block that failed its self-check.
pub fn is_self_check_failure(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<SelfCheckFailed>())
}

/// What [`compress`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GzipStats {
    /// Bytes read from the input.
    pub raw_bytes: u64,
    /// Bytes written to the output, gzip header and trailer included.
    pub compressed_bytes: u64,
    /// CRC-32 of the input (the value stored in the gzip trailer).
    pub crc32: u32,
}

/// Most blocks that are read but not yet written at any moment: the ordered
/// queue holds `2 * threads - 1`, the writer holds one and the reader one.
/// Memory is about this many times (`block_size` in + its compressed size out).
pub fn max_blocks_in_flight(threads: usize) -> usize {
    threads.max(1).saturating_mul(2).saturating_add(1)
}

/// Capacity of the writer's queue of pending results, see [`max_blocks_in_flight`].
fn ordered_queue_len(threads: usize) -> usize {
    max_blocks_in_flight(threads) - 2
}

/// Reads `input` to EOF, writes one gzip member to `output` in order, returns stats.
/// Runs worker threads internally (std::thread::scope); returns the first I/O error from input or output.
///
/// On error nothing more is written and no trailer is written, so a partial
/// output never passes as a valid gzip file. A reader that blocks forever in
/// `read` cannot be interrupted, so an output error is only returned once the
/// pending `read` returns.
pub fn compress<R: Read + Send, W: Write + Send>(
    input: R,
    output: W,
    opts: &GzipOptions,
) -> io::Result<GzipStats> {
    validate(opts)?;
    let shared = Shared::default();
    let (job_tx, job_rx) = sync_channel::<Job>(opts.threads);
    let (order_tx, order_rx) = sync_channel::<ResultRx>(ordered_queue_len(opts.threads));
    // Owned by the workers alone, so that if they all die the reader's
    // `send` fails instead of blocking forever on a full queue.
    let job_rx = Arc::new(Mutex::new(job_rx));
    thread::scope(|s| {
        for _ in 0..opts.threads {
            let jobs = Arc::clone(&job_rx);
            let shared = &shared;
            s.spawn(move || worker(&jobs, shared, opts.level, opts.self_check));
        }
        drop(job_rx);
        let writer = s.spawn(|| write_member(output, order_rx, &shared, opts.level));
        let read_result = read_blocks(input, job_tx, order_tx, &shared, opts.block_size);
        let write_result = writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("gzip writer thread panicked")));
        // The reader's error comes first: after it the writer only stops.
        read_result?;
        write_result?.ok_or_else(|| io::Error::other("gzip compression stopped before the end"))
    })
}

fn validate(opts: &GzipOptions) -> io::Result<()> {
    let bad = |what: String| Err(io::Error::new(io::ErrorKind::InvalidInput, what));
    if !(1..=9).contains(&opts.level) {
        return bad(format!("gzip level {} is not in 1..=9", opts.level));
    }
    if opts.threads == 0 {
        return bad("gzip threads must be at least 1".into());
    }
    if opts.block_size == 0 {
        return bad("gzip block_size must be greater than 0".into());
    }
    Ok(())
}

/// State every thread sees.
#[derive(Default)]
struct Shared {
    /// Set by whoever fails first; everyone else stops at the next check.
    abort: AtomicBool,
    /// Input buffers handed back by workers for the reader to refill.
    input_bufs: Pool,
    /// Output buffers handed back by the writer for workers to refill.
    output_bufs: Pool,
}

impl Shared {
    fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    fn abort(&self) {
        self.abort.store(true, Ordering::Relaxed);
    }
}

/// Recycled buffers: never holds more than were in flight at once, so it is
/// bounded by [`max_blocks_in_flight`] too. Saves a page-faulting allocation
/// per block.
#[derive(Default)]
struct Pool(Mutex<Vec<Vec<u8>>>);

impl Pool {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }

    fn give(&self, buf: Vec<u8>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(buf);
    }
}

/// One block of input for a worker.
struct Job {
    /// `data[..len]` is the input; the rest is reusable, already initialised space.
    data: Vec<u8>,
    len: usize,
    last: bool,
    result: SyncSender<io::Result<Done>>,
}

/// One compressed block for the writer.
struct Done {
    deflated: Vec<u8>,
    raw_len: usize,
    crc: crc32fast::Hasher,
    last: bool,
}

type ResultRx = Receiver<io::Result<Done>>;

/// The reader: runs on the calling thread. Returns only input errors; a
/// closed channel means a later stage failed, and that stage reports why.
fn read_blocks<R: Read>(
    mut input: R,
    jobs: SyncSender<Job>,
    ordered: SyncSender<ResultRx>,
    shared: &Shared,
    block_size: usize,
) -> io::Result<()> {
    while !shared.aborted() {
        let mut data = shared.input_bufs.take();
        // Only grows a fresh buffer; a recycled one keeps its length, so no
        // re-zeroing per block.
        data.resize(block_size, 0);
        let len = match fill(&mut input, &mut data) {
            Ok(len) => len,
            Err(e) => {
                shared.abort();
                return Err(io::Error::new(e.kind(), format!("reading gzip input: {e}")));
            }
        };
        let last = len < block_size;
        let (result, result_rx) = sync_channel(1);
        let job = Job {
            data,
            len,
            last,
            result,
        };
        if jobs.send(job).is_err() || ordered.send(result_rx).is_err() || last {
            break;
        }
    }
    Ok(())
}

/// Reads until `buf` is full or EOF; returns the byte count.
fn fill<R: Read>(input: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = 0;
    while len < buf.len() {
        match input.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(len)
}

/// A compression worker: takes blocks until the reader closes the queue.
fn worker(jobs: &Mutex<Receiver<Job>>, shared: &Shared, level: u32, self_check: bool) {
    let mut deflater = match Deflater::new(level, self_check) {
        Ok(d) => d,
        // Unreachable after `validate`; dropping out leaves the queue to the
        // other workers, or, if none is left, the reader and writer notice.
        Err(_) => return,
    };
    loop {
        // The lock is held while waiting so that exactly one idle worker
        // waits on the channel; the others wait on the lock.
        let job = match jobs.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        // Dropping the job (and its result sender) after an abort is enough:
        // nobody waits for it any more.
        if shared.aborted() {
            continue;
        }
        let done = compress_job(&mut deflater, &job, shared);
        // A failed send means the writer has stopped; nothing to do.
        let _ = job.result.send(done);
        shared.input_bufs.give(job.data);
    }
}

fn compress_job(deflater: &mut Deflater, job: &Job, shared: &Shared) -> io::Result<Done> {
    let block = &job.data[..job.len];
    let mut crc = crc32fast::Hasher::new();
    crc.update(block);
    let mut deflated = shared.output_bufs.take();
    deflater.deflate_block(block, job.last, &mut deflated)?;
    #[cfg(debug_assertions)]
    damage_for_tests(block.len(), &mut deflated);
    deflater.prove(&mut deflated, job.last, block.len(), crc.clone().finalize())?;
    Ok(Done {
        deflated,
        raw_len: job.len,
        crc,
        last: job.last,
    })
}

/// Debug builds only (the tests run them): flips one bit in the output of every block of a given
/// length, as a walker or engine bug would, so that tests can watch the self-check catch it. The
/// length is the unit tests' `DAMAGED_BLOCK_LEN`, or `PGS3_DEBUG_DAMAGE_BLOCK_LEN` for the
/// binary; release builds have no such code.
#[cfg(debug_assertions)]
fn damage_for_tests(len: usize, deflated: &mut [u8]) {
    #[cfg(test)]
    let target = tests::DAMAGED_BLOCK_LEN;
    #[cfg(not(test))]
    let target = {
        static TARGET: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        *TARGET.get_or_init(|| {
            std::env::var("PGS3_DEBUG_DAMAGE_BLOCK_LEN")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        })
    };
    if len == target && deflated.len() > 8 {
        let mid = deflated.len() / 2;
        deflated[mid] ^= 0x10;
    }
}

/// One worker's libdeflate compressor and its scratch output buffer.
struct Deflater {
    compressor: Compressor,
    /// Kept at the largest bound seen, so it is zeroed once, not per block.
    scratch: Vec<u8>,
    /// With the self-check: the decoder, and its output buffer (kept like `scratch`).
    proof: Option<(proof::Inflater, Vec<u8>)>,
}

impl Deflater {
    /// Fails the block unless its output, as the writer will send it, decodes to its input.
    fn prove(&mut self, out: &mut Vec<u8>, last: bool, len: usize, crc: u32) -> io::Result<()> {
        let Some((inflater, decoded)) = &mut self.proof else {
            return Ok(());
        };
        inflater.check(out, last, len, crc, decoded).map_err(|why| {
            io::Error::other(SelfCheckFailed(format!(
                "the compressor's self-check failed: a {len}-byte block's output is wrong ({why}); this is a bug in pg-s3-backup, please report it"
            )))
        })
    }

    fn new(level: u32, self_check: bool) -> io::Result<Deflater> {
        let level = i32::try_from(level)
            .ok()
            .and_then(|l| CompressionLvl::new(l).ok())
            .ok_or_else(|| io::Error::other(format!("gzip level {level} is not supported")))?;
        Ok(Deflater {
            compressor: Compressor::new(level),
            scratch: Vec::new(),
            proof: self_check.then(|| (proof::Inflater::new(), Vec::new())),
        })
    }

    /// Raw-deflates `block` into `out` (replacing its contents). A non-final
    /// block is made continuable ([`chain::unfinish`]): it ends on a byte
    /// boundary with BFINAL unset, so the next block's deflate data can simply
    /// follow. The final block keeps BFINAL. libdeflate keeps no state between
    /// calls, so the output depends on the block alone, not on which worker
    /// compressed what before: backups are byte-for-byte reproducible for any
    /// thread count.
    fn deflate_block(&mut self, block: &[u8], last: bool, out: &mut Vec<u8>) -> io::Result<()> {
        let bound = self.compressor.deflate_compress_bound(block.len());
        if self.scratch.len() < bound {
            self.scratch.resize(bound, 0);
        }
        let n = self
            .compressor
            .deflate_compress(block, &mut self.scratch)
            .map_err(|e| io::Error::other(format!("deflating gzip block: {e}")))?;
        out.clear();
        // Room for the sync flush too.
        out.reserve(n + 5);
        out.extend_from_slice(&self.scratch[..n]);
        if !last {
            chain::unfinish(out)
                .map_err(|e| io::Error::other(format!("chaining gzip blocks: {e}")))?;
        }
        Ok(())
    }
}

/// The writer: header, the blocks in input order, trailer. Returns `None` if
/// it stopped because another stage failed (that stage reports the error).
fn write_member<W: Write>(
    mut output: W,
    ordered: Receiver<ResultRx>,
    shared: &Shared,
    level: u32,
) -> io::Result<Option<GzipStats>> {
    let fail = |e: io::Error| {
        shared.abort();
        io::Error::new(e.kind(), format!("writing gzip output: {e}"))
    };
    let mut stats = GzipStats {
        raw_bytes: 0,
        compressed_bytes: 0,
        crc32: 0,
    };
    let mut crc = crc32fast::Hasher::new();
    output.write_all(&header(level)).map_err(fail)?;
    stats.compressed_bytes += GZIP_HEADER.len() as u64;
    let mut finished = false;
    for result_rx in ordered {
        let Ok(done) = result_rx.recv() else {
            return lost_block(shared);
        };
        let done = done.inspect_err(|_| shared.abort())?;
        if shared.aborted() {
            return Ok(None);
        }
        output.write_all(&done.deflated).map_err(fail)?;
        stats.compressed_bytes += done.deflated.len() as u64;
        crc.combine(&done.crc);
        stats.raw_bytes += done.raw_len as u64;
        finished = done.last;
        shared.output_bufs.give(done.deflated);
    }
    if !finished || shared.aborted() {
        return Ok(None);
    }
    stats.crc32 = crc.finalize();
    output.write_all(&trailer(&stats)).map_err(fail)?;
    output.flush().map_err(fail)?;
    stats.compressed_bytes += 8;
    Ok(Some(stats))
}

/// A block's result sender vanished: either a worker dropped it on purpose
/// after an abort, or the worker died (panicked).
fn lost_block(shared: &Shared) -> io::Result<Option<GzipStats>> {
    if shared.aborted() {
        return Ok(None);
    }
    shared.abort();
    Err(io::Error::other(
        "gzip compression worker exited unexpectedly",
    ))
}

fn header(level: u32) -> [u8; 10] {
    let mut header = GZIP_HEADER;
    // XFL, as gzip sets it: 2 = maximum compression, 4 = fastest.
    header[8] = match level {
        9 => 2,
        1 => 4,
        _ => 0,
    };
    header
}

/// CRC-32 and ISIZE (length mod 2^32), both little endian.
fn trailer(stats: &GzipStats) -> [u8; 8] {
    let mut trailer = [0; 8];
    trailer[..4].copy_from_slice(&stats.crc32.to_le_bytes());
    trailer[4..].copy_from_slice(&(stats.raw_bytes as u32).to_le_bytes());
    trailer
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{read::GzDecoder, Decompress, FlushDecompress, Status};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::process::{Command, Stdio};
    use std::sync::atomic::AtomicU64;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Small blocks so that block boundaries are cheap to cross in tests.
    const BS: usize = 64 * 1024;

    /// zstd on several workers writes one frame, checksum included, that libzstd's decoder
    /// (the `zstd` CLI's) reads back exactly; a frame whose input failed has no end.
    #[test]
    fn zstd_is_one_checked_frame_and_a_failed_input_leaves_no_end() {
        let data = text_bytes(12 << 20);
        let zstd = Options::Zstd(ZstdOptions {
            level: ZSTD_DEFAULT_LEVEL,
            threads: 3,
        });
        let mut out = Vec::new();
        assert_eq!(
            encode(&data[..], &mut out, &zstd).unwrap(),
            data.len() as u64
        );
        assert!(
            out.len() < data.len() / 2,
            "{} of {}",
            out.len(),
            data.len()
        );
        assert_eq!(zstd::decode_all(&out[..]).unwrap(), data);
        // One frame: its end is the object's end.
        let frame = zstd::zstd_safe::find_frame_compressed_size(&out).unwrap();
        assert_eq!(frame, out.len());
        // Frame header descriptor: the content-checksum flag (bit 2) is set.
        assert_eq!(&out[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
        assert_ne!(out[4] & 0x04, 0, "no content checksum");

        struct FailsAfter(usize);
        impl Read for FailsAfter {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("pg_dump failed"));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(b'x');
                self.0 -= n;
                Ok(n)
            }
        }
        let mut partial = Vec::new();
        let err = encode(FailsAfter(5 << 20), &mut partial, &zstd).unwrap_err();
        assert_eq!(err.to_string(), "pg_dump failed");
        assert!(
            zstd::decode_all(&partial[..]).is_err(),
            "a failed input decoded"
        );
        for bad in [0, 20] {
            let opts = Options::Zstd(ZstdOptions {
                level: bad,
                threads: 1,
            });
            assert!(encode(&b""[..], Vec::new(), &opts).is_err(), "level {bad}");
        }
    }

    fn opts(threads: usize) -> GzipOptions {
        GzipOptions {
            level: 6,
            threads,
            block_size: BS,
            self_check: true,
        }
    }

    fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut data = vec![0; len];
        StdRng::seed_from_u64(seed).fill(&mut data[..]);
        data
    }

    /// Text with long repeats, like pg_dump COPY rows.
    fn text_bytes(len: usize) -> Vec<u8> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut out = Vec::with_capacity(len + 100);
        while out.len() < len {
            let row = format!(
                "{}\t2024-01-{:02} 10:00:00+00\tactive\t{{\"k\": {}}}\n",
                rng.random_range(0..100_000),
                rng.random_range(1..29),
                rng.random_range(0..10)
            );
            out.extend_from_slice(row.as_bytes());
        }
        out.truncate(len);
        out
    }

    fn gzip(data: &[u8], opts: &GzipOptions) -> (Vec<u8>, GzipStats) {
        let mut out = Vec::new();
        let stats = compress(data, &mut out, opts).expect("compress");
        (out, stats)
    }

    fn flate2_decode(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        GzDecoder::new(gz)
            .read_to_end(&mut out)
            .expect("flate2 GzDecoder");
        out
    }

    /// Runs `cmd` with `input` on stdin (fed from a thread so that a full
    /// stdout pipe cannot deadlock us); returns stdout, panics on failure.
    fn pipe_through(cmd: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
        let mut child = Command::new(cmd)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
        let mut stdin = child.stdin.take().unwrap();
        let out = thread::scope(|s| {
            s.spawn(move || stdin.write_all(input));
            child.wait_with_output().unwrap()
        });
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{cmd} {args:?} failed: {stderr}");
        out.stdout
    }

    fn gzip_dc(gz: &[u8]) -> Vec<u8> {
        pipe_through("gzip", &["-dc"], gz)
    }

    fn gzip_t(gz: &[u8]) {
        pipe_through("gzip", &["-t"], gz);
    }

    fn python_decode(gz: &[u8]) -> Vec<u8> {
        let script =
            "import gzip,sys; sys.stdout.buffer.write(gzip.decompress(sys.stdin.buffer.read()))";
        pipe_through("python3", &["-c", script], gz)
    }

    /// Asserts `data` survives compression with every decoder, byte for byte.
    fn check_round_trip(data: &[u8], opts: &GzipOptions, external: bool) {
        let what = format!(
            "len {} threads {} level {}",
            data.len(),
            opts.threads,
            opts.level
        );
        let (gz, stats) = gzip(data, opts);
        assert_eq!(stats.raw_bytes, data.len() as u64, "{what}");
        assert_eq!(stats.compressed_bytes, gz.len() as u64, "{what}");
        assert_eq!(stats.crc32, crc32fast::hash(data), "{what}");
        assert!(flate2_decode(&gz) == data, "flate2 mismatch: {what}");
        if external {
            gzip_t(&gz);
            assert!(gzip_dc(&gz) == data, "gzip -dc mismatch: {what}");
            assert!(python_decode(&gz) == data, "python gzip mismatch: {what}");
        }
    }

    fn interesting_sizes() -> Vec<usize> {
        vec![0, 1, BS - 1, BS, BS + 1, 3 * BS + 17, 3 * 1024 * 1024 + 123]
    }

    #[test]
    fn round_trips_random_data_at_block_boundaries() {
        for len in interesting_sizes() {
            let data = random_bytes(len, len as u64);
            for threads in [1, 3] {
                check_round_trip(&data, &opts(threads), true);
            }
        }
    }

    #[test]
    fn round_trips_repetitive_data_at_block_boundaries() {
        for len in interesting_sizes() {
            let data = text_bytes(len);
            for threads in [1, 3] {
                check_round_trip(&data, &opts(threads), true);
            }
        }
    }

    #[test]
    fn round_trips_every_level() {
        let data = text_bytes(150_000);
        for level in 1..=9 {
            let opts = GzipOptions {
                level,
                threads: 2,
                block_size: 40_000,
                self_check: true,
            };
            check_round_trip(&data, &opts, level % 4 == 1);
        }
    }

    /// Tiny blocks (libdeflate picks fixed Huffman codes for some), blocks
    /// just over deflate's 32 KiB window, and one block larger than the input
    /// (the no-parallelism case).
    #[test]
    fn round_trips_odd_block_sizes() {
        let data = text_bytes(150_000);
        for (level, block_size) in [(6, 1000), (6, 32 * 1024 + 1), (1, 1 << 20), (9, 1 << 20)] {
            let opts = GzipOptions {
                level,
                threads: 2,
                block_size,
                self_check: true,
            };
            check_round_trip(&data, &opts, true);
        }
    }

    #[test]
    fn empty_input_is_a_valid_gzip_file() {
        let (gz, stats) = gzip(b"", &opts(2));
        assert_eq!(
            stats,
            GzipStats {
                raw_bytes: 0,
                compressed_bytes: gz.len() as u64,
                crc32: 0
            }
        );
        gzip_t(&gz);
        assert!(gzip_dc(&gz).is_empty());
        assert!(python_decode(&gz).is_empty());
    }

    /// One header, one deflate stream that ends exactly before one trailer:
    /// decoders that stop after the first member still see everything.
    #[test]
    fn output_is_a_single_member() {
        let data = text_bytes(10 * BS + 5);
        let (gz, stats) = gzip(&data, &opts(3));
        assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
        let body = &gz[10..gz.len() - 8];
        let mut inflate = Decompress::new(false);
        let mut out = Vec::with_capacity(data.len() + 1);
        let status = inflate
            .decompress_vec(body, &mut out, FlushDecompress::Finish)
            .unwrap();
        assert_eq!(status, Status::StreamEnd);
        assert_eq!(
            inflate.total_in(),
            body.len() as u64,
            "deflate stream must end at the trailer"
        );
        assert!(out == data);
        let trailer = &gz[gz.len() - 8..];
        assert_eq!(trailer[..4], stats.crc32.to_le_bytes());
        assert_eq!(trailer[4..], (data.len() as u32).to_le_bytes());
        // The single-member decoder must leave no unread bytes behind.
        let mut decoder = flate2::bufread::GzDecoder::new(&gz[..]);
        let mut decoded = Vec::new();
        decoder.read_to_end(&mut decoded).unwrap();
        assert!(decoder.into_inner().is_empty());
        assert!(decoded == data);
    }

    #[test]
    fn isize_is_length_mod_2_pow_32() {
        let stats = GzipStats {
            raw_bytes: (1 << 32) + 5,
            compressed_bytes: 0,
            crc32: 0x0102_0304,
        };
        assert_eq!(trailer(&stats), [4, 3, 2, 1, 5, 0, 0, 0]);
    }

    #[test]
    fn header_flags_level_like_gzip() {
        assert_eq!(header(1)[8], 4);
        assert_eq!(header(6)[8], 0);
        assert_eq!(header(9)[8], 2);
    }

    /// Same bytes whatever the thread count or timing: reproducible backups.
    #[test]
    fn output_does_not_depend_on_thread_count() {
        // Short random "words": many near-miss matches, which is where state
        // carried over from a worker's previous block would show through.
        let mut data = vec![0; 20 * BS + 99];
        Endless(5, Arc::default()).read_exact(&mut data).unwrap();
        let (one, _) = gzip(&data, &opts(1));
        for threads in [2, 5] {
            for _ in 0..2 {
                assert!(gzip(&data, &opts(threads)).0 == one, "threads {threads}");
            }
        }
    }

    /// One write per compressed block (plus header and trailer): large
    /// writes, no byte-by-byte work.
    #[test]
    fn writes_once_per_block() {
        struct CountingWriter(Vec<u8>, usize);
        impl Write for CountingWriter {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.1 += 1;
                self.0.write(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let data = text_bytes(10 * BS + 1);
        let mut out = CountingWriter(Vec::new(), 0);
        compress(&data[..], &mut out, &opts(2)).unwrap();
        assert_eq!(out.1, 11 + 2);
        assert!(flate2_decode(&out.0) == data);
    }

    /// Tiny reads and EINTR must not change the output.
    #[test]
    fn handles_short_and_interrupted_reads() {
        struct Choppy<'a>(&'a [u8], usize);
        impl Read for Choppy<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.1 += 1;
                if self.1.is_multiple_of(5) {
                    return Err(io::ErrorKind::Interrupted.into());
                }
                let n = ((self.1 % 7 + 1) * 911).min(buf.len()).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let data = text_bytes(3 * BS + 10);
        let mut out = Vec::new();
        compress(Choppy(&data, 0), &mut out, &opts(2)).unwrap();
        assert!(out == gzip(&data, &opts(2)).0);
    }

    #[test]
    fn rejects_bad_options() {
        for bad in [
            GzipOptions {
                level: 0,
                ..opts(1)
            },
            GzipOptions {
                level: 10,
                ..opts(1)
            },
            GzipOptions {
                threads: 0,
                ..opts(1)
            },
            GzipOptions {
                block_size: 0,
                ..opts(1)
            },
        ] {
            let err = compress(&b"x"[..], Vec::new(), &bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn default_options_are_gzips_level_one_thread_per_cpu_and_work() {
        let d = GzipOptions::default();
        assert_eq!((d.level, d.block_size), (6, 512 * 1024));
        assert!(
            d.self_check,
            "the self-check is on unless a benchmark turns it off"
        );
        let cpus = thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(d.threads, cpus);
        // And they make a valid stream of several blocks.
        let data = text_bytes(3 * d.block_size + 17);
        let (gz, stats) = gzip(&data, &d);
        assert_eq!(stats.raw_bytes, data.len() as u64);
        assert_eq!(flate2_decode(&gz), data);
    }

    /// Runs `f` on a thread and fails the test if it takes over a minute:
    /// turns a deadlock into a failure instead of a hung test run.
    fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || tx.send(f()));
        rx.recv_timeout(Duration::from_secs(60))
            .expect("compress hung")
    }

    /// Endless input: `compress` only returns if the error stops the reader.
    struct Endless(u64, Arc<AtomicU64>);
    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            for b in buf.iter_mut() {
                self.0 = self
                    .0
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                *b = b"abcdefgh\t\n"[(self.0 >> 60) as usize % 10];
            }
            self.1.fetch_add(buf.len() as u64, Ordering::SeqCst);
            Ok(buf.len())
        }
    }

    struct FailingWriter {
        written: Vec<u8>,
        budget: usize,
    }
    impl Write for FailingWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.written.len() + buf.len() > self.budget {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "disk on fire"));
            }
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn output_error_stops_everything() {
        for threads in [1, 2, 4] {
            for budget in [0, 10, 100_000] {
                let err = within_a_minute(move || {
                    let input = Endless(1, Arc::default());
                    let output = FailingWriter {
                        written: Vec::new(),
                        budget,
                    };
                    compress(input, output, &opts(threads)).unwrap_err()
                });
                assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{threads} {budget}");
                assert!(
                    err.to_string()
                        .contains("writing gzip output: disk on fire"),
                    "{err}"
                );
            }
        }
    }

    struct FailingReader {
        data: Vec<u8>,
        pos: usize,
    }
    impl Read for FailingReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.data.len() {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "pg_dump died",
                ));
            }
            let n = buf.len().min(self.data.len() - self.pos).min(10_000);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    /// Blocks of exactly this many bytes get one bit flipped after deflating (see
    /// `damage_for_tests`). No other test uses this block size.
    pub(super) const DAMAGED_BLOCK_LEN: usize = 99_991;

    /// A wrong block is caught before it is written: the stream fails with the self-check's
    /// message, and the output is not a complete gzip file. Without the check the same damage
    /// is written out, which is what the check is for.
    #[test]
    fn a_damaged_block_fails_the_stream_before_it_is_written() {
        let data = text_bytes(3 * DAMAGED_BLOCK_LEN + 10);
        for threads in [1, 3] {
            let checked = GzipOptions {
                threads,
                block_size: DAMAGED_BLOCK_LEN,
                ..GzipOptions::default()
            };
            let mut out = Vec::new();
            let err = compress(&data[..], &mut out, &checked).unwrap_err();
            assert!(
                err.to_string().contains(
                    "the compressor's self-check failed: a 99991-byte block's output is wrong"
                ),
                "{err}"
            );
            let mut sink = Vec::new();
            let decoded = GzDecoder::new(&out[..]).read_to_end(&mut sink);
            assert!(
                decoded.is_err() || sink != data,
                "{threads}: a complete file was written"
            );

            let unchecked = GzipOptions {
                self_check: false,
                ..checked
            };
            let mut out = Vec::new();
            compress(&data[..], &mut out, &unchecked).unwrap();
            let mut sink = Vec::new();
            let decoded = GzDecoder::new(&out[..]).read_to_end(&mut sink);
            assert!(
                decoded.is_err() || sink != data,
                "{threads}: the damage did not happen"
            );
        }
    }

    #[test]
    fn input_error_is_returned_and_no_trailer_written() {
        for threads in [1, 2, 4] {
            for len in [0, 10, BS, 5 * BS + 3] {
                let (err, out) = within_a_minute(move || {
                    let input = FailingReader {
                        data: text_bytes(len),
                        pos: 0,
                    };
                    let mut out = Vec::new();
                    let err = compress(input, &mut out, &opts(threads)).unwrap_err();
                    (err, out)
                });
                assert_eq!(
                    err.kind(),
                    io::ErrorKind::ConnectionReset,
                    "{threads} {len}"
                );
                assert!(
                    err.to_string().contains("reading gzip input: pg_dump died"),
                    "{err}"
                );
                // A partial output must never pass for a complete file: no
                // trailer, and a deflate stream without its final block.
                let data = text_bytes(len);
                let stats = GzipStats {
                    raw_bytes: len as u64,
                    compressed_bytes: 0,
                    crc32: crc32fast::hash(&data),
                };
                assert!(!out.ends_with(&trailer(&stats)), "{threads} {len}");
                let mut sink = Vec::new();
                assert!(GzDecoder::new(&out[..]).read_to_end(&mut sink).is_err());
            }
        }
    }

    /// After an input error the writer stops at the next block instead of
    /// writing out the blocks that are already compressed.
    #[test]
    fn input_error_stops_the_writer() {
        struct LateFailure {
            left: usize,
            failed: Arc<AtomicBool>,
        }
        impl Read for LateFailure {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.left == 0 {
                    // Let the workers finish the blocks read so far first.
                    thread::sleep(Duration::from_millis(300));
                    self.failed.store(true, Ordering::SeqCst);
                    return Err(io::Error::other("gone"));
                }
                let n = buf.len().min(self.left);
                buf[..n].fill(b'x');
                self.left -= n;
                Ok(n)
            }
        }
        struct WaitingWriter {
            calls: Arc<AtomicU64>,
            failed: Arc<AtomicBool>,
        }
        impl Write for WaitingWriter {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                // Hold the first block until the input has failed.
                if self.calls.fetch_add(1, Ordering::SeqCst) == 1 {
                    while !self.failed.load(Ordering::SeqCst) {
                        thread::sleep(Duration::from_millis(1));
                    }
                    // Time for the reader to raise the abort flag.
                    thread::sleep(Duration::from_millis(500));
                }
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let failed = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        // Fewer blocks than may be in flight, so all are read before the error.
        let input = LateFailure {
            left: 3 * BS,
            failed: failed.clone(),
        };
        let output = WaitingWriter {
            calls: calls.clone(),
            failed,
        };
        let err = within_a_minute(move || compress(input, output, &opts(2)).unwrap_err());
        assert!(err.to_string().contains("gone"), "{err}");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "header and first block only"
        );
    }

    /// The reader must not run ahead of a stalled writer by more than
    /// `max_blocks_in_flight` blocks, however large the input.
    #[test]
    fn memory_is_bounded_when_output_stalls() {
        struct StallingWriter {
            calls: usize,
            read_so_far: Arc<AtomicU64>,
            seen: Arc<AtomicU64>,
        }
        impl Write for StallingWriter {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.calls += 1;
                if self.calls == 2 {
                    thread::sleep(Duration::from_millis(500));
                    self.seen
                        .store(self.read_so_far.load(Ordering::SeqCst), Ordering::SeqCst);
                    return Err(io::Error::other("stop here"));
                }
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        for threads in [1, 2, 3] {
            let read_so_far = Arc::new(AtomicU64::new(0));
            let seen = Arc::new(AtomicU64::new(0));
            let input = Endless(3, read_so_far.clone());
            let output = StallingWriter {
                calls: 0,
                read_so_far,
                seen: seen.clone(),
            };
            within_a_minute(move || compress(input, output, &opts(threads)).unwrap_err());
            let limit = (max_blocks_in_flight(threads) * BS) as u64;
            let seen = seen.load(Ordering::SeqCst);
            assert!(
                seen > 0 && seen <= limit,
                "threads {threads}: read {seen} > {limit}"
            );
        }
    }
}
