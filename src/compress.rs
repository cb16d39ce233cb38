//! Temporary single-threaded stand-in until the parallel compressor lands.
use std::io::{Read, Write};

#[derive(Debug, Clone)]
pub struct GzipOptions {
    pub level: u32,
    pub threads: usize,
    pub block_size: usize,
}

impl Default for GzipOptions {
    fn default() -> Self {
        Self {
            level: 6,
            threads: 1,
            block_size: 1 << 17,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct GzipStats {
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
    pub crc32: u32,
}

pub fn compress<R: Read + Send, W: Write + Send>(
    mut input: R,
    output: W,
    opts: &GzipOptions,
) -> std::io::Result<GzipStats> {
    let mut enc = flate2::write::GzEncoder::new(output, flate2::Compression::new(opts.level));
    let raw = std::io::copy(&mut input, &mut enc)?;
    enc.finish()?;
    Ok(GzipStats {
        raw_bytes: raw,
        compressed_bytes: 0,
        crc32: 0,
    })
}
