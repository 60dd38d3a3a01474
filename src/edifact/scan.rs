//! The segment scanner: finds segment terminators, checks release characters and the character
//! repertoire, sixteen bytes at a time.
//!
//! Each 16-byte block is compared with SIMD lanes (through the safe `wide` crate, SSE2 on
//! x86-64) into one bitmask of events: segment terminators, release characters, and bytes that
//! may lie outside the repertoire (controls for the ISO 8859 and UTF-8 repertoires). Only the
//! marked bytes are looked at one by one, so a clean block costs a handful of instructions.
//! Line breaks directly after a terminator are the tolerated inter-segment layout; anywhere
//! else they are invalid characters.

use wide::u8x16;

use super::charset::Charset;
use super::delimiters::Delimiters;

/// Bytes per block.
const BLOCK: usize = 16;

/// Lanes of `v` that may be outside the repertoire (a superset: each hit is checked exactly).
#[inline(always)]
fn suspicious_lanes(v: u8x16, charset: Charset) -> u8x16 {
    let space = u8x16::splat(0x20);
    match charset {
        // C0, DEL and C1 (0x80-0x9F) are control functions in ISO 8859-n.
        Charset::Unoc | Charset::Unod | Charset::Unoe => {
            v.simd_lt(space)
                | (v ^ u8x16::splat(0x80)).simd_lt(space)
                | v.simd_eq(u8x16::splat(0x7F))
        }
        // In UTF-8, 0x80-0x9F are continuation bytes; well-formedness is checked separately.
        Charset::Unow | Charset::Unoy => v.simd_lt(space) | v.simd_eq(u8x16::splat(0x7F)),
        Charset::Unoa | Charset::Unob => {
            let mut lanes = [0u8; BLOCK];
            for (lane, b) in lanes.iter_mut().zip(v.to_array()) {
                if !charset.allows(b) {
                    *lane = 0xFF;
                }
            }
            u8x16::new(lanes)
        }
    }
}

/// A problem found while scanning a segment, by byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanProblem {
    /// A byte outside the repertoire.
    InvalidCharacter(usize),
    /// A release character not followed by a service character (`None`: at the end).
    InvalidRelease(usize, Option<u8>),
}

/// Where one segment is: `start..end`, `end` being its terminator's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FoundSegment {
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// Walks the segments of an interchange from a given offset.
#[derive(Debug)]
pub(crate) struct SegmentCursor<'a> {
    input: &'a [u8],
    delimiters: Delimiters,
    charset: Charset,
    /// Next byte to load into a block.
    next_block: usize,
    /// Pending event bits of the current block, and the block's offset.
    pending: u64,
    block_at: usize,
    /// Bytes before this offset are released (or already handled).
    skip_until: usize,
    /// Start of the segment being scanned (after its leading line breaks).
    segment_start: usize,
    /// While line breaks follow a terminator: the offset the gap is expected to continue at.
    gap_at: Option<usize>,
    /// Problems found in the segment being scanned.
    pub(crate) problems: Vec<ScanProblem>,
    /// `is_service[b]`: `b` is a separator, terminator or release character.
    is_service: [bool; 256],
}

impl<'a> SegmentCursor<'a> {
    /// A cursor at `start` (the first byte of a segment, or line breaks before it).
    pub(crate) fn new(
        input: &'a [u8],
        start: usize,
        delimiters: Delimiters,
        charset: Charset,
    ) -> SegmentCursor<'a> {
        SegmentCursor {
            input,
            delimiters,
            charset,
            next_block: start,
            pending: 0,
            block_at: start,
            skip_until: start,
            segment_start: start,
            gap_at: Some(start),
            problems: Vec::new(),
            is_service: std::array::from_fn(|b| delimiters.is_service(b as u8)),
        }
    }

    #[inline(always)]
    fn events(&self, v: u8x16, suspicious: impl Fn(u8x16) -> u8x16) -> u64 {
        let d = &self.delimiters;
        let mut lanes = v.simd_eq(u8x16::splat(d.terminator)) | suspicious(v);
        if let Some(rel) = d.release {
            lanes |= v.simd_eq(u8x16::splat(rel));
        }
        lanes.to_bitmask() as u64
    }

    /// Loads blocks until one has an event; false at the end of the input. The repertoire test
    /// is chosen once per call, outside the block loop.
    fn load_block(&mut self) -> bool {
        match self.charset {
            Charset::Unoc | Charset::Unod | Charset::Unoe => {
                self.load_block_with(|v| suspicious_lanes(v, Charset::Unoc))
            }
            Charset::Unow | Charset::Unoy => {
                self.load_block_with(|v| suspicious_lanes(v, Charset::Unow))
            }
            other => self.load_block_with(|v| suspicious_lanes(v, other)),
        }
    }

    #[inline(always)]
    fn load_block_with(&mut self, suspicious: impl Fn(u8x16) -> u8x16 + Copy) -> bool {
        let input = self.input;
        let mut at = self.next_block;
        // Hot path: whole blocks, most of them without any event.
        while let Some(bytes) = input.get(at..at + BLOCK) {
            let v = u8x16::new(bytes.try_into().expect("16 bytes"));
            let events = self.events(v, suspicious);
            if events != 0 {
                self.pending = events;
                self.block_at = at;
                self.next_block = at + BLOCK;
                return true;
            }
            at += BLOCK;
        }
        self.next_block = at;
        self.load_tail()
    }

    #[cold]
    fn load_tail(&mut self) -> bool {
        let at = self.next_block;
        if at >= self.input.len() {
            return false;
        }
        let rest = &self.input[at..];
        // Pad with a letter, which raises no event in any repertoire.
        let mut buf = [b'A'; BLOCK];
        buf[..rest.len()].copy_from_slice(rest);
        let charset = self.charset;
        let events = self.events(u8x16::new(buf), |v| suspicious_lanes(v, charset));
        self.pending = events & ((1u64 << rest.len()) - 1);
        self.block_at = at;
        self.next_block = self.input.len();
        true
    }

    /// The next segment, or `None` at the end of the input. Problems inside the segment are
    /// left in [`SegmentCursor::problems`] (cleared at each call).
    pub(crate) fn next_segment(&mut self) -> Option<Result<FoundSegment, usize>> {
        if !self.problems.is_empty() {
            self.problems.clear();
        }
        // The hot loop works on locals; they are written back before every return.
        let input = self.input;
        let terminator = self.delimiters.terminator;
        let release = self.delimiters.release;
        let mut pending = self.pending;
        let mut block_at = self.block_at;
        let mut skip_until = self.skip_until;
        let mut gap_at = self.gap_at;
        let mut segment_start = self.segment_start;
        let result = 'scan: loop {
            while pending == 0 {
                if !self.load_block() {
                    // End of input: was a segment started but not terminated?
                    let start = gap_at.unwrap_or(segment_start);
                    if start < input.len() {
                        gap_at = None;
                        segment_start = start;
                        break 'scan Some(Err(start));
                    }
                    break 'scan None;
                }
                pending = self.pending;
                block_at = self.block_at;
            }
            let p = block_at + pending.trailing_zeros() as usize;
            pending &= pending - 1;
            if p < skip_until {
                continue;
            }
            let byte = input[p];
            // Line breaks continuing the gap after a terminator.
            if let Some(g) = gap_at {
                if p == g && (byte == b'\n' || byte == b'\r') {
                    gap_at = Some(p + 1);
                    continue;
                }
                // The gap ended before `p`: the segment starts where the gap stopped.
                segment_start = g;
                gap_at = None;
            }
            if byte == terminator {
                gap_at = Some(p + 1);
                break Some(Ok(FoundSegment {
                    start: segment_start,
                    end: p,
                }));
            }
            if Some(byte) == release {
                match input.get(p + 1) {
                    Some(&next) if self.is_service[next as usize] => skip_until = p + 2,
                    next => self
                        .problems
                        .push(ScanProblem::InvalidRelease(p, next.copied())),
                }
                continue;
            }
            if !self.is_service[byte as usize] && !self.charset.allows(byte) {
                self.problems.push(ScanProblem::InvalidCharacter(p));
            }
        };
        self.pending = pending;
        self.block_at = block_at;
        self.skip_until = skip_until;
        self.gap_at = gap_at;
        self.segment_start = segment_start;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn suspicious_lanes_cover_every_byte_outside_the_repertoire() {
        for charset in [
            Charset::Unoa,
            Charset::Unob,
            Charset::Unoc,
            Charset::Unod,
            Charset::Unow,
        ] {
            for b in 0u8..=255 {
                let mut lanes = [b'A'; 16];
                lanes[5] = b;
                let mask = suspicious_lanes(u8x16::new(lanes), charset).to_bitmask();
                if !charset.allows(b) {
                    assert_eq!(mask, 1 << 5, "{charset} {b:#x}");
                }
            }
        }
    }

    /// Segments as `Ok((start, end))`, or `Err(start)` for an unterminated one.
    type Segments = Vec<Result<(usize, usize), usize>>;

    /// A byte-by-byte reference: segments as (start, end) and problems.
    fn reference(input: &[u8], d: Delimiters, cs: Charset) -> (Segments, Vec<ScanProblem>) {
        let mut out = Vec::new();
        let mut problems = Vec::new();
        let mut i = 0;
        loop {
            while i < input.len() && (input[i] == b'\n' || input[i] == b'\r') {
                i += 1;
            }
            if i >= input.len() {
                break;
            }
            let start = i;
            let mut end = None;
            while i < input.len() {
                let b = input[i];
                if Some(b) == d.release {
                    match input.get(i + 1) {
                        Some(&n) if d.is_service(n) => i += 2,
                        n => {
                            problems.push(ScanProblem::InvalidRelease(i, n.copied()));
                            i += if n == Some(&d.terminator) { 2 } else { 1 };
                        }
                    }
                    continue;
                }
                if b == d.terminator {
                    end = Some(i);
                    i += 1;
                    break;
                }
                if !cs.allows(b) && !d.is_service(b) {
                    problems.push(ScanProblem::InvalidCharacter(i));
                }
                i += 1;
            }
            match end {
                Some(e) => out.push(Ok((start, e))),
                None => {
                    out.push(Err(start));
                    break;
                }
            }
        }
        (out, problems)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn cursor_matches_the_byte_by_byte_reference(
            bytes in prop::collection::vec(prop::sample::select(b"AB'?+:\n\r\x01\x85\xfc".to_vec()), 0..80)
        ) {
            let d = Delimiters::LEVEL_A_V3;
            let (expected, expected_problems) = reference(&bytes, d, Charset::Unoc);
            let mut cursor = SegmentCursor::new(&bytes, 0, d, Charset::Unoc);
            let mut got = Vec::new();
            let mut problems = Vec::new();
            while let Some(s) = cursor.next_segment() {
                problems.extend(cursor.problems.iter().copied());
                match s {
                    Ok(f) => got.push(Ok((f.start, f.end))),
                    Err(at) => { got.push(Err(at)); break; }
                }
            }
            prop_assert_eq!(got, expected);
            prop_assert_eq!(problems, expected_problems);
        }
    }
}
