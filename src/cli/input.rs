//! The bytes of a file an offline command (`parse`, `validate`, `ack`, `render`, `answer`)
//! reads: standard input and small files are read; a regular file of at least
//! [`MAP_FROM_BYTES`] is mapped into memory, its pages loaded as it is mapped
//! (`MAP_POPULATE`).
//!
//! Why this module allows `unsafe`: mapping a file is `unsafe` in `memmap2` because the bytes
//! behind the slice belong to the file, not to us: another process that writes the file while
//! it is mapped changes bytes we hold as immutable, and one that truncates it makes reading
//! the lost pages raise `SIGBUS`. The offline commands read a file the operator names and
//! finish with it within the command; the daemon never maps what it receives (the file drop
//! reads a partner's file with its size cap, the other transports receive bytes over the
//! network). Why map at all: for `mako-gateway parse`, reading 100 MB (copying it out of the
//! page cache into freshly faulted memory) took about as long as parsing it, and the whole
//! command is measured against reading the file and counting its segments (issue 16,
//! `cargo bench --bench parse`).
#![allow(unsafe_code)]

use std::io::Read as _;
use std::path::Path;

/// Files at least this large are mapped (1 MiB); smaller ones are read, as mapping costs more
/// than it saves there.
pub const MAP_FROM_BYTES: u64 = 1 << 20;

/// The bytes of an input, read or mapped.
#[derive(Debug)]
pub enum Input {
    /// Read into memory (standard input, small files, what cannot be mapped).
    Read(Vec<u8>),
    /// A mapped regular file.
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for Input {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Input::Read(bytes) => bytes,
            Input::Mapped(map) => map,
        }
    }
}

/// Reads a file, or standard input for `-`.
pub fn read_input(path: &Path) -> std::io::Result<Input> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().lock().read_to_end(&mut buf)?;
        return Ok(Input::Read(buf));
    }
    let mut file = std::fs::File::open(path)?;
    let metadata = file.metadata()?;
    if metadata.is_file() && metadata.len() >= MAP_FROM_BYTES {
        // SAFETY: see the module documentation: a read-only private mapping of a regular file
        // an offline command reads and is done with before it ends.
        if let Ok(map) = unsafe { memmap2::MmapOptions::new().populate().map(&file) } {
            return Ok(Input::Mapped(map));
        }
    }
    let mut buf = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.read_to_end(&mut buf)?;
    Ok(Input::Read(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_files_are_read_large_ones_mapped_both_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small.edi");
        let large = dir.path().join("large.edi");
        let small_bytes = b"UNA:+.? 'UNB+UNOC:3+1+2+261207:0800+R'UNZ+0+R'".to_vec();
        let large_bytes: Vec<u8> = (0..MAP_FROM_BYTES as usize + 3)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&small, &small_bytes).unwrap();
        std::fs::write(&large, &large_bytes).unwrap();
        let read = read_input(&small).unwrap();
        assert!(matches!(read, Input::Read(_)));
        assert_eq!(&read[..], &small_bytes[..]);
        let mapped = read_input(&large).unwrap();
        assert!(matches!(mapped, Input::Mapped(_)));
        assert!(mapped[..] == large_bytes[..]);
        assert!(read_input(&dir.path().join("missing.edi")).is_err());
        // A folder is not a file to map (nor to read).
        assert!(read_input(dir.path()).is_err());
    }
}
