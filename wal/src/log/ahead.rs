//! Segments made ahead of need: after each write, the write-stage leader makes the
//! segment after the active one (header, zeros to its full length, fsync) under a
//! temporary name, outside the append lock, so a roll-over is a rename and a directory
//! fsync instead of 16 MiB of zeros written and fsynced while every appender waits
//! (`roll_segment`, which falls back to making the segment itself).
//!
//! Invariants it keeps: at most one segment is made at a time (`preparing`) and at most
//! one is kept (`prepared`), always for the active segment's end; it is fully written and
//! fsynced before it is kept; until the roll-over renames it into place its file is a
//! temporary one, which recovery removes as debris, so a crash at any point leaves a log
//! exactly as one without it. Deterministic for a single-threaded caller (the simulated
//! file system's seeded runs): it runs in the caller's thread.

use std::sync::atomic::Ordering;

use super::Inner;
use crate::error::Result;
use crate::format::SegmentHeader;
use crate::segment::{PreparedSegment, prepared_file_name};

impl Inner {
    /// Makes the segment after the active one ahead of need, unless it is made already.
    /// Called by the write-stage leader after a write, outside the append lock, so appends
    /// go on meanwhile. An I/O error poisons the log as any other does (the temporary file
    /// is debris, but the disk refused a write: nothing later is acknowledged).
    pub(super) fn prepare_next_segment(&self) -> Result<()> {
        let next_start = self.append.lock().active.end();
        let made = || {
            self.prepared
                .lock()
                .as_ref()
                .is_some_and(|prepared| prepared.start == next_start)
        };
        if made() || self.preparing.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let header = SegmentHeader {
            segment_size: self.segment_size,
            start: next_start,
            salt: self.salt,
        };
        let made_now = match made() {
            true => Ok(None),
            false => {
                let temp_name = prepared_file_name(next_start);
                PreparedSegment::prepare(self.fs.as_ref(), &self.dir, header, &temp_name).map(Some)
            }
        };
        if let Ok(Some(prepared)) = made_now {
            // Kept only if the roll-over has not passed it meanwhile. Lock order as in
            // `roll_segment`. Stored before `preparing` is cleared, so no other leader
            // makes the same file meanwhile.
            let state = self.append.lock();
            if state.active.end() == next_start {
                *self.prepared.lock() = Some(prepared);
            } else {
                prepared.discard(self.fs.as_ref());
            }
            drop(state);
            self.preparing.store(false, Ordering::Release);
            return Ok(());
        }
        self.preparing.store(false, Ordering::Release);
        made_now.map(|_| ()).inspect_err(|error| self.poison(error))
    }
}
