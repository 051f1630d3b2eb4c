//! Whole-block writes of the log, for segment files open for direct I/O.
//!
//! Written through the page cache, every byte of the log took a fresh page of memory that
//! nothing reads back (a sequential write through a mount spent a third of its request
//! threads' time copying into those pages and in the fsyncs that wrote them out). With
//! direct I/O the bytes go from one reused buffer to the disk, but a direct write must
//! start and end on a block boundary ([`DIRECT_IO_ALIGNMENT`]) from an aligned buffer,
//! while a batch of the log starts and ends anywhere. [`AlignedWriter`] writes each batch
//! as whole blocks: the bytes of its first block that were written before it (kept from
//! the previous write, or read back from the file), the batch, and zeros to the end of its
//! last block. A batch under 64 KiB is written the same way through the page cache: a
//! direct write waits for the disk, which a small write that is fsynced later (a change
//! of names through a mount) should not, and whole blocks need no read of the page first.
//!
//! Invariants kept:
//! - A byte below the batch's start is written back with the value it already has, so a
//!   block written again changes only past the log's written end: on a disk that keeps
//!   unchanged bytes through a power cut (as every disk the log relies on), nothing written
//!   before is lost. The page cache wrote the same partial pages again on every fsync.
//! - A byte past the batch's end is a zero written where the file holds a zero: a segment
//!   is made of zeros past its header, and recovery zeroes a torn tail before anything is
//!   appended.
//! - Only the write-stage leader writes (one at a time), so the block kept from the last
//!   write is the file's content.

use std::io;

use crate::fs::{AlignedBuffer, DIRECT_IO_ALIGNMENT};
use crate::lsn::Lsn;
use crate::segment::Segment;

const BLOCK: usize = DIRECT_IO_ALIGNMENT;

/// The most bytes one direct write takes: a batch larger than this is written in pieces.
const STAGING_BYTES: usize = 4 << 20;

/// Pieces smaller than this go through the page cache, whole blocks all the same: a direct
/// write waits for the disk (100-200 µs on the benchmark machine), so a change of names
/// through a mount, written to the log at once but fsynced later, ran at half the rate.
/// From about this size a direct write costs less than the cache's fresh pages.
const DIRECT_MIN_BYTES: usize = 64 << 10;

/// Writes batches of the log to direct segment files as whole blocks (see module docs).
#[derive(Debug, Default)]
pub(super) struct AlignedWriter {
    /// The aligned buffer each write is composed in, made at the first write.
    staging: Option<AlignedBuffer>,
    /// The last block written: its segment's start, its offset in the file, its bytes.
    last_block: Option<(Lsn, u64, Box<[u8; BLOCK]>)>,
}

impl AlignedWriter {
    /// Writes `bytes` at `offset` of `segment` (a direct file whose size is a multiple of
    /// the block size) as whole blocks.
    pub(super) fn write(&mut self, segment: &Segment, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut at = offset;
        let mut rest = bytes;
        while !rest.is_empty() {
            let block_start = at - at % BLOCK as u64;
            let head = (at - block_start) as usize;
            let take = rest.len().min(STAGING_BYTES - head);
            let (now, later) = rest.split_at(take);
            self.write_piece(segment, block_start, head, now)?;
            at += take as u64;
            rest = later;
        }
        Ok(())
    }

    /// One direct write: the `head` bytes already in the block at `block_start`, then
    /// `bytes`, then zeros to a block boundary.
    fn write_piece(
        &mut self,
        segment: &Segment,
        block_start: u64,
        head: usize,
        bytes: &[u8],
    ) -> io::Result<()> {
        let len = (head + bytes.len()).div_ceil(BLOCK) * BLOCK;
        let staging = match &mut self.staging {
            Some(staging) => staging,
            empty => empty.insert(AlignedBuffer::new(STAGING_BYTES)?),
        };
        let piece = staging
            .get_mut(..len)
            .expect("a piece is at most the staging buffer");
        let (before, after) = piece.split_at_mut(head);
        if head > 0 {
            match &self.last_block {
                Some((start, at, block)) if *start == segment.start && *at == block_start => {
                    before.copy_from_slice(block.get(..head).expect("head is within a block"));
                }
                _ => segment.file.read_exact_at(before, block_start)?,
            }
        }
        let (written, zeros) = after.split_at_mut(bytes.len());
        written.copy_from_slice(bytes);
        zeros.fill(0);
        match len >= DIRECT_MIN_BYTES {
            true => segment.file.write_all_at(piece, block_start)?,
            false => segment.file.write_all_at_cached(piece, block_start)?,
        }
        let last = piece
            .get(len - BLOCK..)
            .and_then(|last| <[u8; BLOCK]>::try_from(last).ok())
            .expect("a piece is whole blocks");
        self.last_block = Some((
            segment.start,
            block_start + (len - BLOCK) as u64,
            Box::new(last),
        ));
        Ok(())
    }
}
