//! Joining independently compressed deflate streams into one: owns reading a raw deflate stream
//! (RFC 1951) far enough to find where its final block starts and ends, and turning its end
//! into a sync point so that another stream can follow it. Nothing here inflates data.
//!
//! A deflate stream ends with the block whose BFINAL bit is set; decoders stop there. Block
//! boundaries are not recorded anywhere, so the only way to find the last one is to walk every
//! block: decode each Huffman symbol (without producing output) until the end-of-block code.
//! On pg_dump output that costs ~6% of the CPU of compressing it with libdeflate at level 6.

/// Why a stream could not be walked. Only a bug in the compressor that made it would cause one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed deflate stream: {0}")]
pub struct Malformed(&'static str);

type Result<T> = std::result::Result<T, Malformed>;

/// An empty stored block after a byte boundary, as zlib's sync flush writes it: LEN 0, NLEN !0.
const STORED_EMPTY: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Makes `stream`, one complete raw deflate stream, continuable: clears BFINAL on its final
/// block and ends it with an empty stored block on a byte boundary (a sync flush), so that the
/// bytes of another raw deflate stream can follow directly and the two decode as one.
pub fn unfinish(stream: &mut Vec<u8>) -> Result<()> {
    let last = final_block(stream)?;
    // libdeflate pads only to the next byte: a final block that ends anywhere but in the last
    // byte means the walk went wrong, and truncating there would drop data.
    if last.end_bit.div_ceil(8) != stream.len() {
        return Err(Malformed(
            "the final block does not end where the stream does",
        ));
    }
    stream[last.header_bit / 8] &= !(1 << (last.header_bit % 8));
    stream.truncate(last.end_bit.div_ceil(8));
    let used = last.end_bit % 8;
    if used != 0 {
        // Zero the padding after the end-of-block code: the empty block's header goes there.
        *stream.last_mut().expect("end_bit > 0") &= (1 << used) - 1;
    }
    // The empty block's 3 header bits (BFINAL 0, BTYPE 00) are zeros: they fit in the padding
    // of the last byte if it has 3 bits left, else they take a new byte.
    if used == 0 || used > 5 {
        stream.push(0);
    }
    stream.extend_from_slice(&STORED_EMPTY);
    Ok(())
}

/// Where the final block of a raw deflate stream is, in bits from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FinalBlock {
    /// Position of its BFINAL bit, the first bit of its header.
    header_bit: usize,
    /// Position just after its end-of-block code (or its stored data).
    end_bit: usize,
}

fn final_block(data: &[u8]) -> Result<FinalBlock> {
    let mut bits = Bits::new(data);
    let fixed = (
        Huffman::fixed_litlen(),
        Huffman::new(&[5; 32], Extra::Dist)?,
    );
    loop {
        let header_bit = bits.position();
        let is_final = bits.take(1)? == 1;
        match bits.take(2)? {
            0 => bits.skip_stored()?,
            1 => symbols(&mut bits, &fixed.0, &fixed.1)?,
            2 => {
                let (litlen, dist, _) = dynamic_tables(&mut bits)?;
                symbols(&mut bits, &litlen, &dist)?;
            }
            _ => return Err(Malformed("reserved block type 3")),
        }
        if is_final {
            let end_bit = bits.position();
            if end_bit > data.len() * 8 {
                return Err(Malformed("unexpected end of stream"));
            }
            return Ok(FinalBlock {
                header_bit,
                end_bit,
            });
        }
    }
}

/// Extra bits after length symbols 257..=285 and distance symbols 0..=29 (RFC 1951, 3.2.5).
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// Skips a block's compressed data up to and including its end-of-block code. The tables skip
/// each symbol's extra bits along with its code.
///
/// This loop is most of the cost of chaining, and literals and matches alternate with no
/// pattern a branch predictor could learn. So the common case has no branch on "literal or
/// match": every step looks a distance code up too, and skips its bits only for a match.
fn symbols(bits: &mut Bits, litlen: &Huffman, dist: &Huffman) -> Result<()> {
    // The bit reader's state lives in locals here, so that it stays in registers; it goes
    // back to `bits` around the rare paths. (A copied `Bits` used through its methods, with a
    // cold out-of-line refill, measured ~50% slower: LLVM kept it in memory.)
    let data = bits.data;
    let (mut buf, mut count, mut next) = (bits.buf, bits.count, bits.next);
    let mask = (1u64 << FAST_BITS) - 1;
    loop {
        if count < 56 {
            match data.get(next..next + 8) {
                Some(word) => {
                    buf |= u64::from_le_bytes(word.try_into().expect("8 bytes")) << count;
                    next += ((63 - count) / 8) as usize;
                    count |= 56;
                }
                None => {
                    (bits.buf, bits.count, bits.next) = (buf, count, next);
                    bits.refill()?;
                    (buf, count, next) = (bits.buf, bits.count, bits.next);
                }
            }
        }
        let entry = litlen.walk[(buf & mask) as usize];
        if entry == 0 || entry & SPECIAL != 0 {
            // A long code, the end of the block, or an invalid symbol.
            (bits.buf, bits.count, bits.next) = (buf, count, next);
            match litlen.decode(bits)? {
                0..=255 => {}
                256 => return Ok(()),
                257..=285 => {
                    bits.refill()?;
                    distance(bits, dist)?;
                }
                _ => return Err(Malformed("length symbol out of range")),
            }
            (buf, count, next) = (bits.buf, bits.count, bits.next);
            continue;
        }
        buf >>= entry & SKIP;
        count -= entry & SKIP;
        let is_match = (entry & MATCH) >> MATCH.trailing_zeros();
        let d = dist.fast[(buf & mask) as usize];
        if (is_match != 0) & ((d == 0) | (d & SPECIAL != 0)) {
            (bits.buf, bits.count, bits.next) = (buf, count, next);
            distance(bits, dist)?;
            (buf, count, next) = (bits.buf, bits.count, bits.next);
            continue;
        }
        let skip = (d & SKIP) * is_match;
        buf >>= skip;
        count -= skip;
    }
}

fn distance(bits: &mut Bits, dist: &Huffman) -> Result<()> {
    if dist.decode(bits)? > 29 {
        return Err(Malformed("distance symbol out of range"));
    }
    Ok(())
}

/// Order in which code length code lengths are stored (RFC 1951, 3.2.7).
const CL_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// A dynamic block's literal/length and distance tables, and its longest code length.
fn dynamic_tables(bits: &mut Bits) -> Result<(Huffman, Huffman, u8)> {
    let hlit = bits.take(5)? as usize + 257;
    let hdist = bits.take(5)? as usize + 1;
    let hclen = bits.take(4)? as usize + 4;
    let mut cl_lens = [0u8; 19];
    for &i in &CL_ORDER[..hclen] {
        cl_lens[i] = bits.take(3)? as u8;
    }
    let cl = Huffman::new(&cl_lens, Extra::None)?;
    let mut lens = [0u8; 288 + 32];
    let n = hlit + hdist;
    let mut i = 0;
    while i < n {
        bits.refill()?;
        let (value, repeat) = match cl.decode(bits)? {
            len @ 0..=15 => (len as u8, 1),
            16 => {
                let prev = *lens[..i]
                    .last()
                    .ok_or(Malformed("repeat with no previous length"))?;
                (prev, 3 + bits.take(2)? as usize)
            }
            17 => (0, 3 + bits.take(3)? as usize),
            _ => (0, 11 + bits.take(7)? as usize),
        };
        let end = i + repeat;
        if end > n {
            return Err(Malformed("code lengths overrun"));
        }
        lens[i..end].fill(value);
        i = end;
    }
    if lens[256] == 0 {
        return Err(Malformed("no end-of-block code"));
    }
    Ok((
        Huffman::new(&lens[..hlit], Extra::Length)?,
        Huffman::new(&lens[hlit..n], Extra::Dist)?,
        lens[..n].iter().copied().max().unwrap_or(0),
    ))
}

/// What a stream is made of, for tests that must force each kind: blocks by type (stored,
/// fixed, dynamic) and the longest Huffman code in any dynamic block.
#[cfg(test)]
pub(super) fn shape(data: &[u8]) -> Result<([usize; 3], u8)> {
    let mut bits = Bits::new(data);
    let fixed = (
        Huffman::fixed_litlen(),
        Huffman::new(&[5; 32], Extra::Dist)?,
    );
    let (mut kinds, mut longest) = ([0usize; 3], 0u8);
    loop {
        let is_final = bits.take(1)? == 1;
        let kind = bits.take(2)? as usize;
        match kind {
            0 => bits.skip_stored()?,
            1 => symbols(&mut bits, &fixed.0, &fixed.1)?,
            2 => {
                let (litlen, dist, max) = dynamic_tables(&mut bits)?;
                longest = longest.max(max);
                symbols(&mut bits, &litlen, &dist)?;
            }
            _ => return Err(Malformed("reserved block type 3")),
        }
        kinds[kind] += 1;
        if is_final {
            return Ok((kinds, longest));
        }
    }
}

/// Which extra bits follow a table's symbols.
#[derive(Clone, Copy)]
enum Extra {
    None,
    Length,
    Dist,
}

impl Extra {
    /// [`MATCH`] and [`SPECIAL`], for a fast table entry.
    fn flags(self, sym: usize) -> u32 {
        match self {
            Extra::None => 0,
            Extra::Length if (257..=285).contains(&sym) => MATCH,
            Extra::Length if sym >= 256 => SPECIAL,
            Extra::Dist if sym >= 30 => SPECIAL,
            Extra::Length | Extra::Dist => 0,
        }
    }

    fn bits(self, sym: usize) -> u32 {
        let extra = match self {
            Extra::None => None,
            Extra::Length => sym.checked_sub(257).and_then(|i| LENGTH_EXTRA.get(i)),
            Extra::Dist => DIST_EXTRA.get(sym),
        };
        extra.map_or(0, |&e| u32::from(e))
    }
}

/// Parts of a [`Huffman::fast`] entry: bits to skip (the code and the symbol's extra bits), a
/// length symbol (a distance follows), a symbol that needs a closer look (end of block, or
/// out of range), and the symbol itself from bit 16.
const SKIP: u32 = 0xff;
const MATCH: u32 = 1 << 8;
const SPECIAL: u32 = 1 << 9;

/// Longest code that [`Huffman::decode`] resolves in one lookup; longer (rare) codes take the
/// canonical bit-by-bit path. Keeps the table small enough to rebuild for every block.
const FAST_BITS: u32 = 11;

/// A canonical Huffman code, for skipping symbols.
struct Huffman {
    /// Indexed by the next `FAST_BITS` input bits: the entry (see [`SKIP`]) for codes of at
    /// most `FAST_BITS` bits; 0 where a longer code (or no code) starts.
    fast: Vec<u32>,
    /// For literal/length codes only (else empty): like `fast`, but an entry that starts with
    /// literals covers every literal whose code lies whole within the `FAST_BITS` bits, and a
    /// length symbol after them if its code does too. The walk does not need the literals'
    /// values, only their lengths, and text-like data is mostly short literal codes.
    walk: Vec<u32>,
    /// Codes per length, and symbols ordered by (length, symbol): enough to decode any code.
    count: [u16; 16],
    sorted: Vec<u16>,
    extra: Extra,
}

impl Huffman {
    fn fixed_litlen() -> Huffman {
        let mut lens = [8u8; 288];
        lens[144..256].fill(9);
        lens[256..280].fill(7);
        Huffman::new(&lens, Extra::Length).expect("the fixed code is valid")
    }

    fn new(lens: &[u8], extra: Extra) -> Result<Huffman> {
        let mut count = [0u16; 16];
        for &l in lens {
            count[usize::from(l)] += 1;
        }
        count[0] = 0;
        // An over-subscribed code cannot be decoded; an incomplete one can (deflate allows one
        // distance code of one bit), and a lookup that hits a hole fails.
        let mut left: i32 = 1;
        for &c in &count[1..] {
            left = (left << 1) - i32::from(c);
            if left < 0 {
                return Err(Malformed("over-subscribed Huffman code"));
            }
        }
        // The first code of each length (RFC 1951, 3.2.2), and where each length's symbols
        // start in `sorted`.
        let mut next = [0u32; 16];
        let mut offsets = [0u16; 16];
        let mut code = 0u32;
        for len in 1..16 {
            next[len] = code;
            code = (code + u32::from(count[len])) << 1;
            if len < 15 {
                offsets[len + 1] = offsets[len] + count[len];
            }
        }
        let mut fast = vec![0u32; 1 << FAST_BITS];
        let mut sorted = vec![0u16; usize::from(offsets[15] + count[15])];
        for (sym, &l) in lens.iter().enumerate() {
            if l == 0 {
                continue;
            }
            let len = usize::from(l);
            sorted[usize::from(offsets[len])] = sym as u16;
            offsets[len] += 1;
            let c = next[len];
            next[len] += 1;
            if len as u32 <= FAST_BITS {
                // Deflate sends codes most significant bit first into an LSB-first stream.
                let reversed = (c.reverse_bits() >> (32 - len)) as usize;
                let entry = (sym as u32) << 16 | extra.flags(sym) | (len as u32 + extra.bits(sym));
                for i in (reversed..fast.len()).step_by(1 << len) {
                    fast[i] = entry;
                }
            }
        }
        let walk = match extra {
            Extra::Length => walk_table(&fast),
            Extra::None | Extra::Dist => Vec::new(),
        };
        Ok(Huffman {
            fast,
            walk,
            count,
            sorted,
            extra,
        })
    }

    /// Consumes one symbol and its extra bits; needs [`Bits::refill`] first.
    #[inline]
    fn decode(&self, bits: &mut Bits) -> Result<u16> {
        let entry = self.fast[bits.peek(FAST_BITS) as usize];
        if entry != 0 {
            bits.consume(entry & SKIP);
            return Ok((entry >> 16) as u16);
        }
        self.decode_slow(bits)
    }

    /// Canonical decoding one bit at a time, as zlib's puff.c does.
    #[cold]
    fn decode_slow(&self, bits: &mut Bits) -> Result<u16> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= (bits.peek(len) >> (len - 1)) as i32;
            let count = i32::from(self.count[len as usize]);
            if code - count < first {
                let sym = self.sorted[(index + code - first) as usize];
                bits.consume(len + self.extra.bits(usize::from(sym)));
                return Ok(sym);
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err(Malformed("invalid Huffman code"))
    }
}

/// Builds [`Huffman::walk`] from a literal/length `fast` table.
fn walk_table(fast: &[u32]) -> Vec<u32> {
    let code_len = |entry: u32, extra_bits: u32| (entry & SKIP) - extra_bits;
    (0..fast.len())
        .map(|i| {
            let first = fast[i];
            if first == 0 || first & (MATCH | SPECIAL) != 0 {
                return first;
            }
            // `first` is a literal (no extra bits): add what follows while it fits.
            let mut used = first & SKIP;
            loop {
                let next = fast[i >> used];
                // Only the low FAST_BITS - used bits of that index are real input.
                if next == 0 || next & SPECIAL != 0 {
                    return used;
                }
                let extra = Extra::Length.bits((next >> 16) as usize);
                if code_len(next, extra) > FAST_BITS - used {
                    return used;
                }
                if next & MATCH != 0 {
                    return (used + (next & SKIP)) | MATCH;
                }
                used += next & SKIP;
                if used == FAST_BITS {
                    return used;
                }
            }
        })
        .collect()
}

/// Reads a byte slice as deflate's LSB-first bit stream, through a 64-bit buffer.
struct Bits<'a> {
    data: &'a [u8],
    /// Next byte to load into `buf`.
    next: usize,
    buf: u64,
    /// Valid bits in `buf`.
    count: u32,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits {
            data,
            next: 0,
            buf: 0,
            count: 0,
        }
    }

    /// Bits consumed so far.
    fn position(&self) -> usize {
        self.next * 8 - self.count as usize
    }

    /// Makes at least 56 bits available (a symbol with its extra bits takes at most 28). Past
    /// the end it supplies zeros, until a read has gone past the end: then a truncated stream
    /// fails instead of spinning on zeros.
    #[inline]
    fn refill(&mut self) -> Result<()> {
        if self.count >= 56 {
            return Ok(());
        }
        if let Some(word) = self.data.get(self.next..self.next + 8) {
            // Loads 8 bytes but keeps only the whole bytes that fit; the rest are loaded
            // again next time.
            self.buf |= u64::from_le_bytes(word.try_into().expect("8 bytes")) << self.count;
            self.next += ((63 - self.count) / 8) as usize;
            self.count |= 56;
            return Ok(());
        }
        if self.position() > self.data.len() * 8 {
            return Err(Malformed("unexpected end of stream"));
        }
        while self.count <= 56 {
            let byte = self.data.get(self.next).copied().unwrap_or(0);
            self.buf |= u64::from(byte) << self.count;
            self.next += 1;
            self.count += 8;
        }
        Ok(())
    }

    #[inline]
    fn peek(&self, n: u32) -> u32 {
        (self.buf & ((1 << n) - 1)) as u32
    }

    #[inline]
    fn consume(&mut self, n: u32) {
        self.buf >>= n;
        self.count -= n;
    }

    /// Up to 32 bits.
    fn take(&mut self, n: u32) -> Result<u32> {
        self.refill()?;
        let v = self.peek(n);
        self.consume(n);
        Ok(v)
    }

    fn skip_stored(&mut self) -> Result<()> {
        self.take(self.count % 8)?;
        let len = self.take(16)?;
        let nlen = self.take(16)?;
        if len != !nlen & 0xffff {
            return Err(Malformed("stored block length check failed"));
        }
        // Whatever is still buffered belongs to the stored data; skip the rest in place.
        let len = len as usize * 8;
        let buffered = (self.count as usize).min(len);
        self.consume(buffered as u32);
        // `buf` may hold bits past `count` from bytes that are now skipped: drop them.
        self.buf &= 1u64.checked_shl(self.count).map_or(u64::MAX, |b| b - 1);
        let rest = (len - buffered) / 8;
        self.next += rest;
        if self.position() > self.data.len() * 8 {
            return Err(Malformed("unexpected end of stream"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress, Status};
    use libdeflater::{CompressionLvl, Compressor};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn deflate(level: i32, data: &[u8]) -> Vec<u8> {
        let mut c = Compressor::new(CompressionLvl::new(level).unwrap());
        let mut out = vec![0; c.deflate_compress_bound(data.len())];
        let n = c.deflate_compress(data, &mut out).unwrap();
        out.truncate(n);
        out
    }

    /// Inflates a raw deflate stream that must end exactly at the end of `stream`.
    fn inflate(stream: &[u8], expected_len: usize) -> Vec<u8> {
        let mut d = Decompress::new(false);
        let mut out = Vec::with_capacity(expected_len + 1);
        let status = d
            .decompress_vec(stream, &mut out, FlushDecompress::Finish)
            .unwrap();
        assert_eq!(status, Status::StreamEnd);
        assert_eq!(d.total_in(), stream.len() as u64, "trailing bytes");
        out
    }

    /// `stream` inflated, and the bytes inflate read, if it is a valid raw deflate stream.
    fn inflate_ok(stream: &[u8]) -> Option<(usize, Vec<u8>)> {
        let mut d = Decompress::new(false);
        let mut out = Vec::with_capacity(8 << 20);
        match d.decompress_vec(stream, &mut out, FlushDecompress::Finish) {
            Ok(Status::StreamEnd) => Some((d.total_in() as usize, out)),
            _ => None,
        }
    }

    /// Inputs that make libdeflate choose each block type: stored (random bytes), fixed
    /// Huffman (a few bytes) and dynamic Huffman (text), at many lengths.
    fn inputs(rng: &mut StdRng) -> Vec<Vec<u8>> {
        let mut v = vec![Vec::new(), b"a".to_vec(), b"hello, hello, hello".to_vec()];
        for len in [1usize, 7, 100, 1000, 70_000, 300_000] {
            v.push((0..len).map(|_| rng.random()).collect());
        }
        let lens: Vec<usize> = (0..200).map(|_| rng.random_range(1..5000)).collect();
        for len in lens.into_iter().chain([100_000, 700_000]) {
            let words = [
                "select", "from", "\t", "\n", "NULL", "{\"id\":", "42", "é", " ",
            ];
            let mut text = Vec::with_capacity(len);
            while text.len() < len {
                text.extend_from_slice(words[rng.random_range(0..words.len())].as_bytes());
                text.extend_from_slice(rng.random_range(0..100_000u32).to_string().as_bytes());
            }
            text.truncate(len);
            v.push(text);
        }
        v
    }

    #[test]
    fn finds_the_final_block_where_inflate_stops() {
        let mut rng = StdRng::seed_from_u64(7);
        for data in inputs(&mut rng) {
            for level in [1, 6, 12] {
                let stream = deflate(level, &data);
                let last = final_block(&stream).unwrap();
                assert_eq!(
                    last.end_bit.div_ceil(8),
                    stream.len(),
                    "level {level}, {} bytes",
                    data.len()
                );
                assert_eq!(
                    stream[last.header_bit / 8] >> (last.header_bit % 8) & 1,
                    1,
                    "BFINAL"
                );
            }
        }
    }

    /// Every padding case of the sync flush (the final block ending at each of the 8 bit
    /// positions of a byte) is exercised, and each chain decodes to the concatenated inputs.
    #[test]
    fn unfinished_streams_concatenate_into_one() {
        let mut rng = StdRng::seed_from_u64(11);
        let inputs = inputs(&mut rng);
        let mut ends_seen = [false; 8];
        for (i, level) in [1, 6, 9, 12].into_iter().enumerate() {
            let mut chained = Vec::new();
            let mut expected = Vec::new();
            for data in inputs.iter().skip(i) {
                let mut stream = deflate(level, data);
                ends_seen[final_block(&stream).unwrap().end_bit % 8] = true;
                unfinish(&mut stream).unwrap();
                assert_eq!(&stream[stream.len() - 4..], &STORED_EMPTY);
                chained.extend_from_slice(&stream);
                expected.extend_from_slice(data);
            }
            let tail = b"the end";
            chained.extend_from_slice(&deflate(level, tail));
            expected.extend_from_slice(tail);
            assert!(
                inflate(&chained, expected.len()) == expected,
                "level {level}"
            );
        }
        assert_eq!(ends_seen, [true; 8]);
    }

    #[test]
    fn rejects_streams_it_cannot_walk() {
        let stream = deflate(6, &[b'x'; 10_000]);
        assert!(
            final_block(&stream[..stream.len() - 1]).is_err(),
            "truncated"
        );
        assert!(final_block(&[]).is_err(), "empty");
        assert_eq!(
            final_block(&[0b111]),
            Err(Malformed("reserved block type 3"))
        );
        // A stored block whose NLEN is not the complement of LEN.
        assert_eq!(
            final_block(&[0b001, 5, 0, 0, 0]),
            Err(Malformed("stored block length check failed"))
        );
        let mut not_final = deflate(6, b"abc");
        unfinish(&mut not_final).unwrap();
        assert!(final_block(&not_final).is_err(), "no final block");
        // Bytes after the final block: the walk and the stream disagree, so nothing is cut.
        let mut trailing = deflate(6, &[b'x'; 10_000]);
        trailing.push(0);
        let before = trailing.clone();
        assert_eq!(
            unfinish(&mut trailing),
            Err(Malformed(
                "the final block does not end where the stream does"
            ))
        );
        assert_eq!(trailing, before);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the bytes, walking them ends in a result, never a panic or a hang: a
            /// worker that died would fail the backup less clearly.
            #[test]
            fn any_bytes_give_a_result(data in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..2000),
                // Real streams of every block type, so that zlib accepts half the inputs.
                (proptest::collection::vec(0u8..8, 0..3000), 0i32..=12)
                    .prop_map(|(d, level)| deflate(level, &d)),
                (proptest::collection::vec(any::<u8>(), 0..3000), 0i32..=12)
                    .prop_map(|(d, level)| deflate(level, &d)),
            ]) {
                match final_block(&data) {
                    // Where zlib's inflate accepts the bytes, the final block found ends where
                    // inflate ends the stream, and `unfinish` (which clears the BFINAL bit found)
                    // lets another stream follow: the two decode as the first alone.
                    Ok(b) => {
                        prop_assert!(b.header_bit < b.end_bit && b.end_bit <= data.len() * 8, "{b:?}");
                        if let Some((n, out)) = inflate_ok(&data) {
                            prop_assert_eq!(n, b.end_bit.div_ceil(8), "{:?}", b);
                            let mut first = data[..n].to_vec();
                            unfinish(&mut first).unwrap();
                            let tail = b"and a stream after it, which a BFINAL left set would hide";
                            first.extend_from_slice(&deflate(6, tail));
                            let both = [out, tail.to_vec()].concat();
                            prop_assert_eq!(inflate_ok(&first), Some((first.len(), both)), "{:?}", b);
                        }
                    }
                    Err(Malformed(why)) => prop_assert!(!why.is_empty()),
                }
            }

            /// Any data, at any level, chained after any other: decodes to both, in order.
            #[test]
            fn any_two_streams_chain(
                a in proptest::collection::vec(any::<u8>(), 0..3000),
                b in proptest::collection::vec(0u8..4, 0..3000),
                level in 0i32..=12,
            ) {
                let mut first = deflate(level, &a);
                unfinish(&mut first).unwrap();
                first.extend_from_slice(&deflate(level, &b));
                let expected = [a, b].concat();
                prop_assert!(inflate(&first, expected.len()) == expected);
            }
        }
    }
}
