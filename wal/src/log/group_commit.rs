//! Group commit: how appended frames become written and durable, as a two-stage pipeline.
//!
//! An append encodes its frame into a shared pending buffer under the append lock (short:
//! a copy), then waits for its end LSN to pass two stages, each with at most one leader:
//!
//! 1. **write**: the leader takes the whole pending buffer and writes it with positioned
//!    writes, then publishes `written`.
//! 2. **fsync**: the leader (in `Group` mode after lingering `max_delay` so more writes can
//!    join) reads `written`, fsyncs the touched segments once (but those the write stage
//!    fsynced whole when it crossed out of them), and publishes `durable`.
//!
//! Because the stages have separate leaders, the next batch is written while the previous
//! one is being fsynced. Everyone else waits on one condition variable that is notified
//! whenever a stage finishes, and returns as soon as a leader has covered its record: one
//! fsync acknowledges every record written before it started.
//!
//! Invariants it keeps: bytes reach the files in LSN order (one write leader at a time);
//! `written` and `durable` only move forward; `durable` only moves to a `written` value
//! read before the fsync started; a failed write or fsync poisons the log and every waiter
//! whose record it covered gets an error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Inner;
use crate::config::SyncMode;
use crate::error::{Result, WalError};
use crate::lsn::Lsn;
use crate::segment::Segment;

/// Pending bytes from which [`crate::Wal::write_behind`] writes them, at most: a few large
/// writes per segment, and a bound on the memory records wait in. A sixteenth of the
/// segment size below that (small segments in tests write behind often).
pub const WRITE_BEHIND_BYTES: usize = 1 << 20;

/// The largest emptied batch buffer kept for the next batch: as much as Postgres' WAL
/// buffers, at most a default segment.
const SPARE_BUFFER_BYTES: usize = 16 << 20;

/// Leaders at work in the group-commit pipeline.
#[derive(Debug, Default)]
pub(super) struct Stages {
    writing: bool,
    syncing: bool,
}

/// A pipeline stage: which `Stages` flag it owns and which LSN it advances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Write,
    Sync,
}

impl Inner {
    pub(super) fn flush_to(&self, end: Lsn) -> Result<()> {
        let sync = !matches!(self.sync_mode, SyncMode::Never);
        self.flush_to_with(end, sync)
    }

    /// Returns once every frame ending at or below `end` is written (and fsynced if
    /// `sync`), leading a pipeline stage whenever no leader is at work on it.
    pub(super) fn flush_to_with(&self, end: Lsn, sync: bool) -> Result<()> {
        self.pass_stage(Stage::Write, end)?;
        if sync {
            self.pass_stage(Stage::Sync, end)?;
        }
        Ok(())
    }

    fn stage_lsn(&self, stage: Stage) -> &AtomicU64 {
        match stage {
            Stage::Write => &self.written,
            Stage::Sync => &self.durable,
        }
    }

    /// Waits until `stage` has covered `end`, leading it when it has no leader.
    fn pass_stage(&self, stage: Stage, end: Lsn) -> Result<()> {
        let covered = || self.stage_lsn(stage).load(Ordering::Acquire) >= end.0;
        if covered() {
            return Ok(());
        }
        let mut stages = self.stages.lock();
        loop {
            // A leader may have failed with our record in its batch.
            self.check_poisoned()?;
            if covered() {
                return Ok(());
            }
            let busy = match stage {
                Stage::Write => &mut stages.writing,
                Stage::Sync => &mut stages.syncing,
            };
            if !*busy {
                *busy = true;
                break;
            }
            self.stage_done.wait(&mut stages);
        }
        drop(stages);
        self.lead(stage)?;
        debug_assert!(covered(), "a stage leader covers its own record");
        Ok(())
    }

    /// Pending bytes from which a write-behind writes them (see [`WRITE_BEHIND_BYTES`]).
    pub(super) fn write_behind_bytes(&self) -> usize {
        usize::try_from(self.segment_size / 16)
            .unwrap_or(usize::MAX)
            .min(WRITE_BEHIND_BYTES)
    }

    /// Leads a write stage unless one is under way (its leader, or the next, writes what
    /// is pending): the non-blocking half of a write-behind. A caller that finds a write
    /// under way makes the next segment ahead instead, when it is due and nobody makes it:
    /// otherwise a log written faster than one leader writes could fill a segment while
    /// that leader writes, and roll over with nothing made ahead (zeros written under the
    /// append lock while every appender waits).
    pub(super) fn write_behind(&self) -> Result<()> {
        {
            let mut stages = self.stages.lock();
            self.check_poisoned()?;
            if !stages.writing {
                stages.writing = true;
                drop(stages);
                return self.lead(Stage::Write);
            }
        }
        self.prepare_next_segment()
    }

    /// Runs `stage` as its leader (the caller set its flag), then hands the stage back and
    /// wakes every waiter; after a write that wrote something, makes the next segment
    /// ahead of need.
    fn lead(&self, stage: Stage) -> Result<()> {
        let result = match stage {
            Stage::Write => self.write_pending(),
            Stage::Sync => self.sync_written().map(|()| false),
        };
        if let Err(error) = &result {
            self.poison(error);
        }
        let mut stages = self.stages.lock();
        match stage {
            Stage::Write => stages.writing = false,
            Stage::Sync => stages.syncing = false,
        }
        self.stage_done.notify_all();
        drop(stages);
        if result? {
            // After the stage is released, so the next batch is not held up.
            self.prepare_next_segment()?;
        }
        Ok(())
    }

    /// Write stage: writes every pending frame, in LSN order, and publishes `written`.
    /// Returns whether there was anything to write.
    fn write_pending(&self) -> Result<bool> {
        let (batch, batch_end) = {
            let mut state = self.append.lock();
            (std::mem::take(&mut state.pending), state.next)
        };
        // A roll-over before the batch was taken renamed its new segment into place:
        // that name is made durable before any byte written after the roll-over (the old
        // segment's end frame, the new one's records), so a power cut never keeps a
        // segment-end frame, or a record, whose segment lost its name.
        if self.segment_name_unsynced.swap(false, Ordering::AcqRel) {
            crate::segment::sync_dir(self.fs.as_ref(), &self.dir)?;
        }
        // The segment the previous batch ended in: a batch may start in a new one.
        let mut last_written = self.last_written_segment.lock();
        let mut previous: Option<&Arc<Segment>> = last_written.as_ref();
        let mut aligned = self.aligned_writer.lock();
        for write in &batch {
            // A batch that crosses into a new segment makes the old segment's tail (its
            // last records and the segment-end frame) durable before it writes a byte of
            // the new one: otherwise a power cut could keep the new segment's records and
            // lose the old one's tail, a log damaged in the middle that a strict open
            // refuses.
            if let Some(earlier) = previous.filter(|earlier| !Arc::ptr_eq(earlier, &write.segment))
                && self.sync_mode != SyncMode::Never
            {
                earlier
                    .file
                    .sync_data()
                    .map_err(WalError::io("fsync WAL segment", &earlier.path))?;
                earlier.mark_complete_and_durable();
                self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
            }
            let offset = write.segment.offset_of(write.start);
            let written = match write.segment.file.is_direct() {
                true => aligned.write(&write.segment, offset, &write.bytes),
                false => write.segment.file.write_all_at(&write.bytes, offset),
            };
            written.map_err(WalError::io("write WAL", &write.segment.path))?;
            previous = Some(&write.segment);
        }
        if let Some(last) = batch.last() {
            *last_written = Some(Arc::clone(&last.segment));
        }
        drop(aligned);
        drop(last_written);
        let wrote = !batch.is_empty();
        // The largest buffer, emptied, serves the next batch (up to a bound, so one huge
        // batch does not keep its memory for good): a log written faster than one leader
        // writes gathers several megabytes per batch, and a fresh buffer each time cost a
        // page fault per 4 KiB under the append lock (a third of a mount's write path).
        if let Some(mut spare) = batch
            .into_iter()
            .map(|write| write.bytes)
            .filter(|bytes| bytes.capacity() <= SPARE_BUFFER_BYTES)
            .max_by_key(Vec::capacity)
        {
            spare.clear();
            let mut state = self.append.lock();
            if state.spare.capacity() < spare.capacity() {
                state.spare = spare;
            }
        }
        self.counters.write_batches.fetch_add(1, Ordering::Relaxed);
        let previous = self.written.fetch_max(batch_end.0, Ordering::AcqRel);
        assert!(previous <= batch_end.0, "written LSN must not go back");
        Ok(wrote)
    }

    /// Sync stage: fsyncs every segment written since the last fsync (but those the write
    /// stage already fsynced whole when it crossed into the next) and publishes `durable`
    /// up to what was written before the fsync started. An fsync flushes the disk's cache
    /// even when nothing is left to write: after a long write each crossed segment took
    /// one more (a mount's three 256 MiB writes, each then fsynced, made 253-260 fsyncs,
    /// 200-207 since).
    fn sync_written(&self) -> Result<()> {
        if let SyncMode::Group { max_delay } = self.sync_mode
            && !max_delay.is_zero()
        {
            std::thread::sleep(max_delay);
        }
        let target = self.written.load(Ordering::Acquire);
        let durable = self.durable.load(Ordering::Acquire);
        let segments: Vec<Arc<Segment>> = self
            .segments
            .read()
            .values()
            .filter(|segment| {
                segment.end().0 > durable
                    && segment.start.0 < target
                    && !segment.is_complete_and_durable()
            })
            .cloned()
            .collect();
        for segment in segments {
            #[cfg(test)]
            if self.fail_next_fsync.swap(false, Ordering::AcqRel) {
                return Err(WalError::Io {
                    operation: "fsync WAL segment",
                    path: segment.path.clone(),
                    source: std::io::Error::other("injected fsync failure"),
                });
            }
            segment
                .file
                .sync_data()
                .map_err(WalError::io("fsync WAL segment", &segment.path))?;
            self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        let previous = self.durable.fetch_max(target, Ordering::AcqRel);
        assert!(previous <= target, "durable LSN must not go back");
        Ok(())
    }
}
