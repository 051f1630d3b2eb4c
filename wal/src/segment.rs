//! Segment files: naming, crash-safe creation, listing, and reading bytes back.
//!
//! Owns the mapping between a segment's start LSN and its file, and the rule that every
//! file is published crash-safely: a new segment is written under a temporary name with
//! its header and full length, fsynced, renamed into place, and the directory fsynced, so
//! a segment file that exists under its final name always has a complete header.
//! Temporary files left by a crash are debris and are removed on open.
//!
//! The full length is written as zeros, not left as a hole (`set_len`): a write into a
//! hole allocates blocks, and the fsync that follows must then commit file system
//! metadata too, which made every commit's fsync several times slower (Postgres zero-fills
//! its WAL segments for the same reason). A segment made for a log written in large
//! batches per fsync is allocated instead ([`SegmentFill::Allocate`]): its blocks are
//! reserved without being written, so the disk is not written twice over (zeros, then
//! records) when it is the bottleneck, and the one metadata write an fsync then adds is
//! small beside the megabytes it makes durable. Either way the segment reads as zeros
//! past its header and has its full length before it takes its name.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use crate::error::{Result, WalError};
use crate::format::SegmentHeader;
use crate::fs::{Access, AlignedBuffer, DIRECT_IO_ALIGNMENT, FileSystem, FsFile};
use crate::lsn::Lsn;

const SEGMENT_SUFFIX: &str = ".wal";
const TEMP_SUFFIX: &str = ".wal.tmp";

/// The file name of the segment starting at `start`: 16 upper-case hex digits and `.wal`.
pub(crate) fn segment_file_name(start: Lsn) -> String {
    format!("{:016X}{SEGMENT_SUFFIX}", start.0)
}

/// The start LSN a segment file name stands for, or `None` if it is not a segment name.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<Lsn> {
    let hex = name.strip_suffix(SEGMENT_SUFFIX)?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(Lsn)
}

/// fsyncs a directory so that creations, renames and removals in it are durable.
pub(crate) fn sync_dir(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    fs.sync_dir(dir)
        .map_err(WalError::io("fsync directory", dir))
}

/// Segment files in `dir`, sorted by start LSN, and the temporary debris of segment
/// creations a crash interrupted (for recovery to remove). Reads only.
pub(crate) fn list_segments(fs: &dyn FileSystem, dir: &Path) -> Result<SegmentListing> {
    let mut listing = SegmentListing::default();
    let names = fs
        .list_dir(dir)
        .map_err(WalError::io("read directory", dir))?;
    for name in names {
        let Some(name) = name.to_str() else { continue };
        let path = dir.join(name);
        if name.ends_with(TEMP_SUFFIX) {
            listing.debris.push(path);
        } else if let Some(start) = parse_segment_file_name(name) {
            listing.segments.push((start, path));
        }
    }
    listing.segments.sort();
    Ok(listing)
}

/// What `list_segments` found.
#[derive(Debug, Default)]
pub(crate) struct SegmentListing {
    /// Segment files by start LSN.
    pub(crate) segments: Vec<(Lsn, PathBuf)>,
    /// Temporary files of segment creations that never finished.
    pub(crate) debris: Vec<PathBuf>,
}

/// The temporary name of the segment starting at `start` while it is made ahead of need
/// (see `PreparedSegment`); like every temporary segment file, debris to recovery.
pub(crate) fn prepared_file_name(start: Lsn) -> String {
    format!("{:016X}.next{TEMP_SUFFIX}", start.0)
}

/// Bytes of zeros written at a time when a segment is created.
const ZERO_FILL_CHUNK: usize = 1 << 20;

/// How a new segment's length past its header is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentFill {
    /// Zeros written and fsynced: the next fsyncs need no metadata (small commits).
    Zeros,
    /// Blocks allocated without writing them (zeros where the file system cannot): the
    /// disk writes each byte once (large batches per fsync).
    Allocate,
}

/// An open segment file. Writes go through the log's flush leader; reads may come from
/// any thread. Once the segment is sealed (every byte written, the writer has moved on)
/// readers see it through one shared read-only memory map.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) start: Lsn,
    pub(crate) path: PathBuf,
    pub(crate) file: Box<dyn FsFile>,
    size: u64,
    sealed_map: OnceLock<Bytes>,
    /// Every byte of it is written and was fsynced after the log moved past it: a later
    /// fsync of the log has nothing to do here.
    complete_and_durable: AtomicBool,
}

/// A segment made ahead of need: its header written, its full length made (see
/// [`SegmentFill`]) and fsynced under a temporary name, so that starting it takes only a
/// rename (the directory is fsynced by the next write, see `rename_into_place`). One never
/// published (the log closed first) is debris that the next open removes, like the
/// temporary file of a creation a crash interrupted.
#[derive(Debug)]
pub(crate) struct PreparedSegment {
    pub(crate) start: Lsn,
    size: u64,
    temp_path: PathBuf,
    final_path: PathBuf,
    file: Box<dyn FsFile>,
}

impl PreparedSegment {
    /// Writes the segment starting at `header.start` under `temp_name` in `dir`: header,
    /// its full length filled as `fill` says, fsync.
    pub(crate) fn prepare(
        fs: &dyn FileSystem,
        dir: &Path,
        header: SegmentHeader,
        (temp_name, fill): (&str, SegmentFill),
    ) -> Result<PreparedSegment> {
        debug_assert!(
            temp_name.ends_with(TEMP_SUFFIX),
            "removed as debris on open"
        );
        let final_path = dir.join(segment_file_name(header.start));
        let temp_path = dir.join(temp_name);
        // Open for direct I/O: the log's writes go to the disk without taking pages of the
        // page cache (see `log::aligned`), and so do the header's block and the zeros,
        // written from aligned buffers.
        let file = fs
            .create_direct(&temp_path)
            .map_err(WalError::io("create segment", &temp_path))?;
        let aligned = |len: usize| {
            AlignedBuffer::new(len).map_err(WalError::io("allocate a buffer for", &temp_path))
        };
        let mut first_block = aligned(DIRECT_IO_ALIGNMENT)?;
        let encoded = header.encode();
        first_block
            .get_mut(..encoded.len())
            .expect("a segment header fits in a block")
            .copy_from_slice(&encoded);
        file.write_all_at(&first_block, 0)
            .map_err(WalError::io("write segment header", &temp_path))?;
        let allocated = match fill {
            SegmentFill::Zeros => false,
            SegmentFill::Allocate => match file.allocate(header.segment_size) {
                Ok(()) => true,
                Err(error) if error.kind() == std::io::ErrorKind::Unsupported => false,
                Err(error) => return Err(WalError::io("allocate segment", &temp_path)(error)),
            },
        };
        if !allocated {
            // A fresh anonymous map: zeros, aligned, and never written by us.
            let zeros = aligned(ZERO_FILL_CHUNK)?;
            let mut at = first_block.len() as u64;
            while at < header.segment_size {
                let len = (header.segment_size - at).min(ZERO_FILL_CHUNK as u64) as usize;
                file.write_all_at(zeros.get(..len).unwrap_or_default(), at)
                    .map_err(WalError::io("zero-fill segment", &temp_path))?;
                at += len as u64;
            }
        }
        file.sync_data()
            .map_err(WalError::io("fsync segment", &temp_path))?;
        Ok(PreparedSegment {
            start: header.start,
            size: header.segment_size,
            temp_path,
            final_path,
            file,
        })
    }

    /// Removes the temporary file of a segment that will not be used (best effort: a file
    /// left behind is debris to the next open).
    pub(crate) fn discard(self, fs: &dyn FileSystem) {
        let _ = fs.remove_file(&self.temp_path);
    }

    /// Renames the segment into place and fsyncs `dir`: from here on it is part of the
    /// log.
    pub(crate) fn publish(self, fs: &dyn FileSystem, dir: &Path) -> Result<Segment> {
        let segment = self.rename_into_place(fs)?;
        sync_dir(fs, dir)?;
        Ok(segment)
    }

    /// Renames the segment into place without fsyncing its directory: the caller fsyncs
    /// it before a byte that relies on the segment's name (the previous segment's end
    /// frame, a record in this one) is written.
    pub(crate) fn rename_into_place(self, fs: &dyn FileSystem) -> Result<Segment> {
        fs.rename(&self.temp_path, &self.final_path)
            .map_err(WalError::io("rename segment into place", &self.final_path))?;
        Ok(Segment::from_file(
            self.start,
            self.final_path,
            self.file,
            self.size,
        ))
    }
}

impl Segment {
    /// Creates the segment starting at `header.start` in `dir`, crash-safely (see module docs).
    pub(crate) fn create(
        fs: &dyn FileSystem,
        dir: &Path,
        header: SegmentHeader,
    ) -> Result<Segment> {
        let temp_name = format!("{}.tmp", segment_file_name(header.start));
        PreparedSegment::prepare(fs, dir, header, (&temp_name, SegmentFill::Zeros))?
            .publish(fs, dir)
    }

    /// Opens an existing segment file for reading and writing.
    pub(crate) fn open(start: Lsn, path: PathBuf, file: Box<dyn FsFile>, size: u64) -> Segment {
        Segment::from_file(start, path, file, size)
    }

    fn from_file(start: Lsn, path: PathBuf, file: Box<dyn FsFile>, size: u64) -> Segment {
        Segment {
            start,
            path,
            file,
            size,
            sealed_map: OnceLock::new(),
            complete_and_durable: AtomicBool::new(false),
        }
    }

    /// Records that every byte of the segment is written and durable: the caller fsynced
    /// it after writing its last byte (the log wrote past its end first).
    pub(crate) fn mark_complete_and_durable(&self) {
        self.complete_and_durable.store(true, Ordering::Release);
    }

    /// Whether every byte of the segment is written and durable (see
    /// `mark_complete_and_durable`).
    pub(crate) fn is_complete_and_durable(&self) -> bool {
        self.complete_and_durable.load(Ordering::Acquire)
    }

    /// The LSN just past this segment: the start of the next one.
    pub(crate) fn end(&self) -> Lsn {
        Lsn(self.start.0 + self.size)
    }

    /// Byte offset of `lsn` in this file.
    pub(crate) fn offset_of(&self, lsn: Lsn) -> u64 {
        debug_assert!(self.start <= lsn && lsn <= self.end());
        lsn.0 - self.start.0
    }

    /// Reads `len` bytes at `lsn` with positioned reads. For segments still being written.
    pub(crate) fn read_at(&self, lsn: Lsn, len: u64) -> Result<Bytes> {
        let mut buf = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut buf, self.offset_of(lsn))
            .map_err(WalError::io("read segment", &self.path))?;
        Ok(Bytes::from(buf))
    }

    /// Bytes `[lsn, lsn + len)` of a sealed segment, as a zero-copy slice of its memory map.
    /// The caller must only call this once the segment is sealed (see `map_read_only`).
    pub(crate) fn read_sealed(&self, lsn: Lsn, len: u64) -> Result<Bytes> {
        let map = match self.sealed_map.get() {
            Some(map) => map,
            None => {
                // SAFETY: a sealed segment no longer changes and is never truncated: every
                // byte is written, the writer only writes past it, recovery (the one other
                // writer) runs before any map exists, and segments are unlinked, never
                // truncated (see `fs`).
                #[allow(unsafe_code)]
                let mapped = unsafe { self.file.map_read_only(Access::Sequential) };
                let map = mapped
                    .map_err(WalError::io("mmap segment", &self.path))?
                    .bytes();
                self.sealed_map.get_or_init(|| map)
            }
        };
        let offset = self.offset_of(lsn) as usize;
        let end = offset + len as usize;
        if end > map.len() {
            return Err(WalError::BadSegment {
                path: self.path.clone(),
                offset: offset as u64,
                problem: format!("file is {} bytes, shorter than expected", map.len()),
            });
        }
        Ok(map.slice(offset..end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_sort_by_lsn() {
        let name = segment_file_name(Lsn(0x1_0100_0000));
        assert_eq!(name, "0000000101000000.wal");
        assert_eq!(parse_segment_file_name(&name), Some(Lsn(0x1_0100_0000)));
        assert!(segment_file_name(Lsn(0x100_0000)) < segment_file_name(Lsn(0x1_0000_0000)));
    }

    #[test]
    fn other_names_are_not_segments() {
        for name in [
            "LOCK",
            "0000000000000000.wal.tmp",
            "00.wal",
            "000000000000000G.wal",
        ] {
            assert_eq!(parse_segment_file_name(name), None, "{name}");
        }
    }
}
