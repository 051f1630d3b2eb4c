//! Segments made ahead of need: after a write, once the active segment is half full, the
//! write-stage leader makes the segment after it (header, zeros to its full length, fsync) under a
//! temporary name, outside the append lock, so a roll-over is a rename and a directory
//! fsync instead of 16 MiB of zeros written and fsynced while every appender waits
//! (`roll_segment`, which falls back to making the segment itself).
//!
//! Invariants it keeps: at most one segment is made at a time (`preparing`) and at most
//! one is kept (`prepared`), always for the active segment's end; it is fully written and
//! fsynced before it is kept; until the roll-over renames it into place its file is a
//! temporary one, which recovery removes as debris, so a crash at any point leaves a log
//! exactly as one without it; a clean close removes it, so a closed log's directory is
//! what it was without it (a command that changes nothing leaves the store as it was). Deterministic for a single-threaded caller (the simulated
//! file system's seeded runs): it runs in the caller's thread.

use std::sync::atomic::Ordering;

use super::Inner;
use crate::error::Result;
use crate::format::SegmentHeader;
use crate::segment::{PreparedSegment, prepared_file_name};

impl Inner {
    /// Makes the segment after the active one ahead of need once the active one is half
    /// full, unless it is made already. Called by the write-stage leader after a write
    /// that wrote something (a command that appends nothing leaves the directory as it
    /// was), outside the append lock, so appends go on meanwhile. Half full, so a log
    /// that is written little (a command-line command on a small store) does not pay for
    /// 16 MiB of zeros it may never use. An I/O error poisons the log as any other does (the temporary file
    /// is debris, but the disk refused a write: nothing later is acknowledged).
    pub(super) fn prepare_next_segment(&self) -> Result<()> {
        let (next_start, half_full) = {
            let state = self.append.lock();
            let half = state.active.start.0 + self.segment_size / 2;
            (state.active.end(), state.next.0 >= half)
        };
        if !half_full {
            return Ok(());
        }
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

impl Drop for Inner {
    /// Removes the segment made ahead, before the directory lock (a field) is released, so
    /// the file is this log's own. Only on the operating system's file system: a simulated
    /// crash lets a new log open the directory while this object lives on, and its file of
    /// the same name must not be removed; a simulated log leaves it as debris instead.
    fn drop(&mut self) {
        if let Some(prepared) = self.prepared.get_mut().take()
            && self.fs.is_operating_system()
        {
            prepared.discard(self.fs.as_ref());
        }
    }
}
