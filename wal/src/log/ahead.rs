//! Segments made ahead of need: the write-stage leader (or a write-behind that finds a
//! leader writing) makes the segment after the active one (header, its full length of
//! zeros or allocated blocks, fsync) under a temporary name, outside the append lock, so a
//! roll-over is a rename (its directory fsynced by the next write) instead of 16 MiB of
//! zeros written and fsynced while every appender waits (`roll_segment`, which falls back
//! to making the segment itself when none is made or being made).
//!
//! When: once the active segment is half full, so a log that is written little (a
//! command-line command on a small store) does not pay for 16 MiB of zeros it may never
//! use; and, once the log has rolled over, as soon as a segment starts: a log written at
//! hundreds of megabytes a second fills the second half of a segment faster than its
//! successor's zeros reach the disk, and a roll-over that came first used to write the
//! same segment a second time under the append lock.
//!
//! How: zero-filled while the log is fsynced often (small commits, whose fsyncs then
//! need no metadata), allocated without writing zeros once it appends a megabyte or more
//! per fsync (a bulk load through a mount, where the zeros doubled the disk's writes).
//!
//! Invariants it keeps: at most one segment is made at a time and at most one is kept,
//! always for the active segment's end: the decision to make one is taken under the append
//! lock, and a roll-over to that segment waits for it rather than making it again, so no
//! segment is zero-filled twice; it is fully written and fsynced before it is kept; until
//! the roll-over renames it into place its file is a temporary one, which recovery
//! removes as debris, so a crash at any point leaves a log exactly as one without it; a
//! clean close removes it, so a closed log's directory is what it was without it (a
//! command that changes nothing leaves the store as it was). Deterministic for a
//! single-threaded caller (the simulated file system's seeded runs): it runs in the
//! caller's thread, which never rolls over while it makes a segment.

use std::sync::atomic::Ordering;

use super::Inner;
use crate::error::Result;
use crate::format::SegmentHeader;
use crate::lsn::Lsn;
use crate::segment::{PreparedSegment, SegmentFill, prepared_file_name};

/// Bytes appended per fsync from which a segment is allocated rather than zero-filled
/// (see `SegmentFill`): a megabyte per fsync makes the extra metadata write of an fsync
/// after an allocation negligible, while the zeros would double the disk's writes.
const ALLOCATE_BYTES_PER_FSYNC: u64 = 1 << 20;

/// The segment made ahead, and the one being made.
#[derive(Debug, Default)]
pub(super) struct Ahead {
    /// Made, fsynced, waiting for its roll-over.
    ready: Option<PreparedSegment>,
    /// The start of the segment a write-stage leader is making now.
    making: Option<Lsn>,
    /// Payload bytes appended and fsyncs done when the last segment was made: the log's
    /// bytes per fsync since then choose how the next one is filled.
    counted_at: (u64, u64),
}

impl Inner {
    /// Makes the segment after the active one ahead of need when it is due (see the module
    /// docs), unless it is made or being made. Called by the write-stage leader after a
    /// write that wrote something, and by a write-behind that found a write under way with
    /// records pending (a command that appends nothing leaves the directory as it was),
    /// outside the append lock, so appends go on meanwhile. An I/O error poisons
    /// the log as any other does (the temporary file is debris, but the disk refused a
    /// write: nothing later is acknowledged).
    pub(super) fn prepare_next_segment(&self) -> Result<()> {
        let (next_start, fill) = {
            let state = self.append.lock();
            let half = state.active.start.0 + self.segment_size / 2;
            // A log that has rolled over since it opened is written fast enough that
            // each next segment is made as soon as the one before starts.
            let rolled_over = self.counters.segments_started.load(Ordering::Relaxed) > 0;
            let due = state.next.0 >= half || rolled_over;
            let next_start = state.active.end();
            // Under the append lock (the order `roll_segment` takes them in), so no
            // roll-over to `next_start` can start between this decision and `making`.
            let mut ahead = self.ahead.lock();
            let made = ahead
                .ready
                .as_ref()
                .is_some_and(|ready| ready.start == next_start);
            if !due || made || ahead.making.is_some() {
                return Ok(());
            }
            ahead.making = Some(next_start);
            let counted = (
                self.counters.payload_bytes.load(Ordering::Relaxed),
                self.counters.fsyncs.load(Ordering::Relaxed),
            );
            let (bytes, fsyncs) = (
                counted.0 - ahead.counted_at.0,
                counted.1 - ahead.counted_at.1,
            );
            ahead.counted_at = counted;
            let fill = match bytes >= ALLOCATE_BYTES_PER_FSYNC.saturating_mul(fsyncs.max(1)) {
                true => SegmentFill::Allocate,
                false => SegmentFill::Zeros,
            };
            (next_start, fill)
        };
        if fill == SegmentFill::Allocate {
            self.counters
                .segments_allocated
                .fetch_add(1, Ordering::Relaxed);
        }
        let header = SegmentHeader {
            segment_size: self.segment_size,
            start: next_start,
            salt: self.salt,
        };
        self.counters
            .segments_zero_filled
            .fetch_add(1, Ordering::Relaxed);
        let made = PreparedSegment::prepare(
            self.fs.as_ref(),
            &self.dir,
            header,
            (&prepared_file_name(next_start), fill),
        );
        let mut ahead = self.ahead.lock();
        ahead.making = None;
        let result = made.map(|prepared| {
            // A roll-over to `next_start` waits for it, so it is still the next one.
            if let Some(stale) = ahead.ready.replace(prepared) {
                stale.discard(self.fs.as_ref());
            }
        });
        drop(ahead);
        self.ahead_done.notify_all();
        result.inspect_err(|error| self.poison(error))
    }

    /// For the roll-over to the segment starting at `start` (under the append lock): the
    /// segment made ahead, after waiting for it if it is being made; `None` or another
    /// segment (stale, to be discarded) if it must be made now.
    pub(super) fn take_made_ahead(&self, start: Lsn) -> Option<PreparedSegment> {
        let mut ahead = self.ahead.lock();
        while ahead.making == Some(start) {
            self.ahead_done.wait(&mut ahead);
        }
        ahead.ready.take()
    }
}

impl Drop for Inner {
    /// Removes the segment made ahead, before the directory lock (a field) is released, so
    /// the file is this log's own. Only on the operating system's file system: a simulated
    /// crash lets a new log open the directory while this object lives on, and its file of
    /// the same name must not be removed; a simulated log leaves it as debris instead.
    fn drop(&mut self) {
        if let Some(prepared) = self.ahead.get_mut().ready.take()
            && self.fs.is_operating_system()
        {
            prepared.discard(self.fs.as_ref());
        }
    }
}
