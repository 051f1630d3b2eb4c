//! `Wal`: appending records, group commit, durability, truncation.
//!
//! Invariants it keeps:
//! - LSNs strictly increase: positions are reserved under one lock, in order, and a record's
//!   end LSN is always greater than its start.
//! - Bytes reach the files in LSN order: one write leader at a time takes every encoded but
//!   unwritten frame and writes it; `written` only moves forward, to the end of a complete
//!   batch.
//! - No append is acknowledged before its bytes are written to the operating system, and,
//!   unless the sync mode is `Never`, before they are fsynced (`durable` covers its end).
//!   `durable` only moves to a `written` value read before the fsync started.
//! - After a failed write or fsync the log is poisoned: every later append fails. It never
//!   retries, because the kernel may already have dropped the dirty pages.
//! - Sealed segments (every byte written, the writer in a later segment) are never written
//!   again, which is what makes reading them through a memory map sound.
//!
//! Group commit (how appends become written and durable) lives in `group_commit`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::config::{SyncMode, WalConfig};
use crate::error::{Result, WalError};
use crate::format::{
    FRAME_HEADER_LEN, RecordToEncode, SEGMENT_HEADER_LEN, SegmentHeader, body_crc, encode_record,
    encode_record_in_place, encode_segment_end, frame_len, max_payload_len,
};
use crate::fs::{FileSystem, FsLock, StdFileSystem, create_dir_all_durably};
use crate::lsn::Lsn;
use crate::reader::WalReader;
use crate::recovery::{RecoveryReport, Repair, recover};
use crate::segment::{Segment, list_segments, sync_dir};

mod ahead;
mod aligned;
mod closer;
mod group_commit;

use ahead::Ahead;
use aligned::AlignedWriter;
use group_commit::Stages;
pub use group_commit::WRITE_BEHIND_BYTES;

const LOCK_FILE_NAME: &str = "LOCK";

/// One segment file of a log (see [`Wal::segment_files_from`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentFile {
    /// The LSN its header starts at (its name says the same).
    pub start: Lsn,
    /// Where it is.
    pub path: PathBuf,
}

/// A segmented, CRC-framed write-ahead log. Cheap to clone; clones share one log.
/// `Send + Sync`: any number of threads may append and read at once.
#[derive(Clone, Debug)]
pub struct Wal {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    dir: PathBuf,
    pub(crate) segment_size: u64,
    pub(crate) salt: u64,
    sync_mode: SyncMode,
    /// The file system the log's files live on.
    pub(crate) fs: Arc<dyn FileSystem>,
    /// Held for the log's lifetime: the exclusive lock on the directory.
    _lock: Box<dyn FsLock>,
    append: Mutex<AppendState>,
    /// Which pipeline stages have a leader at work; see the module docs.
    stages: Mutex<Stages>,
    /// Notified whenever a stage leader finishes.
    stage_done: Condvar,
    /// Every byte below this LSN has been written to the operating system.
    pub(crate) written: AtomicU64,
    /// Every byte below this LSN has been fsynced.
    durable: AtomicU64,
    /// Set once, by the first failed write or fsync.
    poisoned: Mutex<Option<String>>,
    /// What recovery will change on disk; appends are refused while it is pending (see
    /// `Wal::open_for_recovery_on`).
    pending_repair: Mutex<Option<Repair>>,
    /// The segment the last write stage wrote to last (see `write_pending`).
    pub(crate) last_written_segment: Mutex<Option<Arc<Segment>>>,
    /// Writes batches to segments open for direct I/O as whole blocks (the write stage's).
    aligned_writer: Mutex<AlignedWriter>,
    /// Live segments by start LSN, for readers and truncation.
    pub(crate) segments: RwLock<BTreeMap<Lsn, Arc<Segment>>>,
    /// The segment after the active one, made ahead by a write-stage leader (see
    /// `prepare_next_segment`), so that rolling over takes a rename under the append lock
    /// instead of writing and fsyncing a whole segment of zeros while every appender
    /// waits.
    ahead: Mutex<Ahead>,
    /// Notified when a segment being made ahead is made (or its making failed).
    ahead_done: Condvar,
    /// Set when a roll-over renamed a segment made ahead into place and its directory is
    /// not fsynced yet: the next write stage fsyncs it before it writes a byte (see
    /// `write_pending`), outside the append lock, instead of the roll-over under it.
    segment_name_unsynced: AtomicBool,
    /// Counters behind [`Wal::stats`].
    counters: Counters,
    /// Test hook: the next fsync of a segment fails as if the disk had refused it.
    #[cfg(test)]
    fail_next_fsync: std::sync::atomic::AtomicBool,
}

/// Activity counters of an open log, since it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WalStats {
    /// Records appended.
    pub records: u64,
    /// Payload bytes appended.
    pub payload_bytes: u64,
    /// Batches a flush leader wrote (each one or more records).
    pub write_batches: u64,
    /// Segment fsyncs. With group commit, `records / fsyncs` is the mean group size.
    pub fsyncs: u64,
    /// Segments the log rolled over to.
    pub segments_started: u64,
    /// Of those, segments made ahead of need (a rename at the roll-over, not a segment of
    /// zeros written and fsynced while appenders wait).
    pub segments_made_ahead: u64,
    /// Segment files made whole (header, then zeros written or blocks allocated, then
    /// fsynced), made ahead or at a roll-over, including one made ahead and not used:
    /// about `segments_started` (plus the one made ahead) when no segment is made twice.
    pub segments_zero_filled: u64,
    /// Of those, segments made ahead to be allocated rather than zero-filled (the log was
    /// written in large batches per fsync; see `SegmentFill`).
    pub segments_allocated: u64,
}

#[derive(Debug, Default)]
struct Counters {
    records: AtomicU64,
    payload_bytes: AtomicU64,
    write_batches: AtomicU64,
    fsyncs: AtomicU64,
    segments_started: AtomicU64,
    segments_made_ahead: AtomicU64,
    segments_zero_filled: AtomicU64,
    segments_allocated: AtomicU64,
}

#[derive(Debug)]
struct AppendState {
    /// Where the next frame starts.
    next: Lsn,
    /// The segment `next` lies in.
    active: Arc<Segment>,
    /// Encoded frames not yet written, in LSN order; contiguous within each entry.
    pending: Vec<PendingWrite>,
    /// An emptied buffer of an earlier write, reused for the next pending write so the
    /// buffer's memory is not allocated (and touched for the first time) again per batch.
    spare: Vec<u8>,
}

#[derive(Debug)]
struct PendingWrite {
    segment: Arc<Segment>,
    start: Lsn,
    bytes: Vec<u8>,
}

impl AppendState {
    /// The buffer the frame at `next` must be encoded into: the pending write for the
    /// active segment, started at `next` if there is none yet.
    fn pending_bytes(&mut self) -> &mut Vec<u8> {
        let continues_last = self
            .pending
            .last()
            .is_some_and(|last| Arc::ptr_eq(&last.segment, &self.active));
        if !continues_last {
            self.pending.push(PendingWrite {
                segment: Arc::clone(&self.active),
                start: self.next,
                bytes: std::mem::take(&mut self.spare),
            });
        }
        let last = self
            .pending
            .last_mut()
            .expect("a pending write for the active segment");
        assert_eq!(
            last.start.0 + last.bytes.len() as u64,
            self.next.0,
            "pending bytes must be contiguous"
        );
        &mut last.bytes
    }

    /// Bytes encoded and not yet written.
    fn pending_len(&self) -> usize {
        self.pending.iter().map(|write| write.bytes.len()).sum()
    }
}

fn lock_directory(fs: &dyn FileSystem, dir: &Path) -> Result<Box<dyn FsLock>> {
    let path = dir.join(LOCK_FILE_NAME);
    fs.try_lock(&path)
        .map_err(WalError::io("lock", &path))?
        .ok_or_else(|| WalError::Locked {
            dir: dir.to_owned(),
        })
}

/// A fresh random salt: `RandomState` is seeded from the operating system's randomness.
fn random_salt() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

impl Wal {
    /// Creates a new, empty log in `dir` (created if missing). Fails if a log exists there.
    pub fn create(dir: impl AsRef<Path>, config: WalConfig) -> Result<Wal> {
        Wal::create_on(Arc::new(StdFileSystem), dir, config)
    }

    /// `create`, on the file system `fs` (for example a [`crate::sim::SimFileSystem`]).
    pub fn create_on(
        fs: Arc<dyn FileSystem>,
        dir: impl AsRef<Path>,
        config: WalConfig,
    ) -> Result<Wal> {
        let dir = dir.as_ref();
        WalConfig::validate_segment_size(config.segment_size)?;
        create_dir_all_durably(fs.as_ref(), dir).map_err(WalError::io("create directory", dir))?;
        let lock_file = lock_directory(fs.as_ref(), dir)?;
        if !list_segments(fs.as_ref(), dir)?.segments.is_empty() {
            return Err(WalError::AlreadyExists {
                dir: dir.to_owned(),
            });
        }
        let header = SegmentHeader {
            segment_size: config.segment_size,
            start: Lsn(0),
            salt: fs.seeded_random().unwrap_or_else(random_salt),
        };
        let first = Segment::create(fs.as_ref(), dir, header)?;
        let start = Lsn(SEGMENT_HEADER_LEN);
        Ok(Wal::from_parts(
            fs,
            dir,
            config,
            header.salt,
            lock_file,
            vec![first],
            start,
        ))
    }

    /// Opens the log in `dir`, recovering it (see [`RecoveryReport`]). The segment size is
    /// the one recorded in the log; `config.segment_size` is ignored.
    pub fn open(dir: impl AsRef<Path>, config: WalConfig) -> Result<(Wal, RecoveryReport)> {
        Wal::open_on(Arc::new(StdFileSystem), dir, config)
    }

    /// `open`, on the file system `fs`.
    pub fn open_on(
        fs: Arc<dyn FileSystem>,
        dir: impl AsRef<Path>,
        config: WalConfig,
    ) -> Result<(Wal, RecoveryReport)> {
        let (wal, report) = Wal::open_for_recovery_on(fs, dir, config)?;
        wal.complete_recovery()?;
        Ok((wal, report))
    }

    /// Opens the log in `dir` without changing anything on disk: recovery reads every
    /// segment and decides what it would drop (the report says what), the log can be read
    /// up to its recovered end, and appends are refused until [`Wal::complete_recovery`]
    /// makes those changes. For a caller that must accept more than the log before
    /// anything changes: dropping the log unfinished leaves every file as it was.
    pub fn open_for_recovery_on(
        fs: Arc<dyn FileSystem>,
        dir: impl AsRef<Path>,
        config: WalConfig,
    ) -> Result<(Wal, RecoveryReport)> {
        let dir = dir.as_ref();
        if !fs.is_dir(dir).map_err(WalError::io("stat", dir))? {
            return Err(WalError::NotFound {
                dir: dir.to_owned(),
            });
        }
        let lock_file = lock_directory(fs.as_ref(), dir)?;
        let recovered = recover(fs.as_ref(), dir, config.recovery_mode)?;
        let config = WalConfig {
            segment_size: recovered.segment_size,
            ..config
        };
        let wal = Wal::from_parts(
            fs,
            dir,
            config,
            recovered.salt,
            lock_file,
            recovered.segments,
            recovered.next_frame,
        );
        *wal.inner.pending_repair.lock() = Some(recovered.repair);
        Ok((wal, recovered.report))
    }

    /// Makes the changes recovery decided on (zeroes a dropped tail, removes the segments
    /// after it, fsyncs the kept ones, starts a new segment if every one ended cleanly),
    /// after which the log accepts appends. Does nothing the second time.
    pub fn complete_recovery(&self) -> Result<()> {
        let inner = &self.inner;
        let mut pending = inner.pending_repair.lock();
        let Some(repair) = pending.take() else {
            return Ok(());
        };
        {
            let segments = inner.segments.read();
            let kept: Vec<&Segment> = segments.values().map(AsRef::as_ref).collect();
            repair.apply(inner.fs.as_ref(), &inner.dir, &kept)?;
        }
        let mut state = inner.append.lock();
        if state.next == state.active.end() {
            // Every segment ended cleanly: the log continues in a new segment.
            let header = SegmentHeader {
                segment_size: inner.segment_size,
                start: state.next,
                salt: inner.salt,
            };
            let segment = Arc::new(Segment::create(inner.fs.as_ref(), &inner.dir, header)?);
            inner
                .segments
                .write()
                .insert(segment.start, Arc::clone(&segment));
            let next = Lsn(segment.start.0 + SEGMENT_HEADER_LEN);
            state.active = segment;
            state.next = next;
            inner.written.store(next.0, Ordering::Release);
            inner.durable.store(next.0, Ordering::Release);
        }
        Ok(())
    }

    fn from_parts(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        config: WalConfig,
        salt: u64,
        lock: Box<dyn FsLock>,
        segments: Vec<Segment>,
        next: Lsn,
    ) -> Wal {
        let segments: BTreeMap<Lsn, Arc<Segment>> = segments
            .into_iter()
            .map(|segment| (segment.start, Arc::new(segment)))
            .collect();
        let active = segments
            .values()
            .next_back()
            .cloned()
            .expect("a log always has a segment");
        assert!(
            active.start < next && next <= active.end(),
            "next frame {next} must lie in the active segment"
        );
        let inner = Inner {
            dir: dir.to_owned(),
            segment_size: config.segment_size,
            salt,
            sync_mode: config.sync_mode,
            fs,
            _lock: lock,
            append: Mutex::new(AppendState {
                next,
                active,
                pending: Vec::new(),
                spare: Vec::new(),
            }),
            stages: Mutex::new(Stages::default()),
            stage_done: Condvar::new(),
            written: AtomicU64::new(next.0),
            durable: AtomicU64::new(next.0),
            poisoned: Mutex::new(None),
            pending_repair: Mutex::new(None),
            last_written_segment: Mutex::new(None),
            aligned_writer: Mutex::new(AlignedWriter::default()),
            segments: RwLock::new(segments),
            ahead: Mutex::new(Ahead::default()),
            ahead_done: Condvar::new(),
            segment_name_unsynced: AtomicBool::new(false),
            counters: Counters::default(),
            #[cfg(test)]
            fail_next_fsync: std::sync::atomic::AtomicBool::new(false),
        };
        Wal {
            inner: Arc::new(inner),
        }
    }

    /// The largest payload this log accepts: segment size minus 64 bytes of headers.
    pub fn max_payload_len(&self) -> u64 {
        max_payload_len(self.inner.segment_size)
    }

    /// Segment size in bytes.
    pub fn segment_size(&self) -> u64 {
        self.inner.segment_size
    }

    /// The directory holding the log.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The end of the last record appended: every record given a position, written to the
    /// operating system or still queued ([`Wal::append_deferred`]).
    pub fn appended_lsn(&self) -> Lsn {
        self.inner.append.lock().next
    }

    /// Every record ending at or below this LSN has been written to the operating system
    /// and can be read.
    pub fn written_lsn(&self) -> Lsn {
        Lsn(self.inner.written.load(Ordering::Acquire))
    }

    /// Every record ending at or below this LSN is fsynced.
    pub fn durable_lsn(&self) -> Lsn {
        Lsn(self.inner.durable.load(Ordering::Acquire))
    }

    /// The oldest LSN a reader can start from (the first record of the oldest segment).
    pub fn oldest_lsn(&self) -> Lsn {
        self.inner.oldest_lsn()
    }

    /// The log's identity: the random salt written in every segment header when the log
    /// was created. Two logs never share it; a copy of a log (a store attached from remote
    /// storage) keeps it.
    pub fn log_id(&self) -> u64 {
        self.inner.salt
    }

    /// The segment files a copy of the log needs to be read, and appended to, from `from`
    /// (a record's end) on, oldest first: the segment `from` lies in, including one that
    /// ends exactly at `from` (a record can fill a segment to its last byte, and the next
    /// segment is created only by the next append: the log then continues from that full
    /// segment), and every later one. Segments are never rewritten once a record in them
    /// is durable, only removed ([`Wal::truncate_before`]) or appended to.
    pub fn segment_files_from(&self, from: Lsn) -> Vec<SegmentFile> {
        self.inner
            .segments
            .read()
            .values()
            .filter(|segment| segment.end() >= from)
            .map(|segment| SegmentFile {
                start: segment.start,
                path: segment.path.clone(),
            })
            .collect()
    }

    /// What this log has done since it was opened.
    pub fn stats(&self) -> WalStats {
        let counters = &self.inner.counters;
        WalStats {
            records: counters.records.load(Ordering::Relaxed),
            payload_bytes: counters.payload_bytes.load(Ordering::Relaxed),
            write_batches: counters.write_batches.load(Ordering::Relaxed),
            fsyncs: counters.fsyncs.load(Ordering::Relaxed),
            segments_started: counters.segments_started.load(Ordering::Relaxed),
            segments_made_ahead: counters.segments_made_ahead.load(Ordering::Relaxed),
            segments_zero_filled: counters.segments_zero_filled.load(Ordering::Relaxed),
            segments_allocated: counters.segments_allocated.load(Ordering::Relaxed),
        }
    }

    /// Appends one record of `kind` (defined by the caller) and returns its `(start, end)`
    /// LSNs; the end is the record's LSN. Returns once the record is durable as the sync
    /// mode promises. Refuses payloads over [`Wal::max_payload_len`].
    pub fn append(&self, kind: u8, payload: &[u8]) -> Result<(Lsn, Lsn)> {
        let (start, end) = self.append_deferred(kind, payload)?;
        // `end` was just handed out, so the public `flush_to`'s bound check cannot fail here.
        self.inner.flush_to(end)?;
        Ok((start, end))
    }

    /// Writes the records appended and not yet written, without fsyncing them, once
    /// enough of them are pending ([`WRITE_BEHIND_BYTES`], or a sixteenth of a segment if
    /// less); returns at once when fewer are, or when another write is under way (which
    /// writes them). Deferred records reach the file in steady batches, and the next
    /// segment is made ahead, instead of piling up until someone waits for them. Call it
    /// after [`Wal::append_deferred`], outside any lock of your own: it does I/O.
    pub fn write_behind(&self) -> Result<()> {
        if self.inner.append.lock().pending_len() < self.inner.write_behind_bytes() {
            return Ok(());
        }
        self.inner.write_behind()
    }

    /// The first half of [`Wal::append`]: gives the record its position in the log and
    /// queues it for writing, without waiting. The record is *not* acknowledged until
    /// [`Wal::flush_to`] with its end LSN returns. Callers use the split to order records
    /// under a lock of their own (the position is fixed when this returns) without holding
    /// that lock through the fsync.
    pub fn append_deferred(&self, kind: u8, payload: &[u8]) -> Result<(Lsn, Lsn)> {
        let len = payload.len() as u64;
        self.check_appendable(len)?;
        // Before the append lock: appenders checksum their payloads at once.
        let crc = body_crc(payload);
        self.append_frame(len, |pending, start, synced_through| {
            let record = RecordToEncode {
                kind,
                payload,
                payload_body_crc: crc,
            };
            encode_record(pending, self.inner.salt, start, synced_through, record);
            Ok(())
        })
    }

    /// [`Wal::append_deferred`] for a payload of `len` bytes that `write_payload` appends
    /// straight into the log's buffer, under the append lock, instead of a copy the caller
    /// made first: a large record is copied once less (and its checksum is taken under
    /// the lock). `write_payload` must append exactly `len` bytes; otherwise nothing is
    /// appended and the error (`PayloadLength`) says how many it wrote.
    pub fn append_deferred_in_place(
        &self,
        kind: u8,
        len: u64,
        write_payload: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(Lsn, Lsn)> {
        self.check_appendable(len)?;
        self.append_frame(len, |pending, start, synced_through| {
            let salt = self.inner.salt;
            encode_record_in_place(
                pending,
                salt,
                start,
                synced_through,
                (kind, len),
                write_payload,
            )
            .map_err(|written| WalError::PayloadLength { len, written })
        })
    }

    /// Refuses an append to a poisoned log, to one still being recovered, or of a payload
    /// over [`Wal::max_payload_len`].
    fn check_appendable(&self, len: u64) -> Result<()> {
        let inner = &self.inner;
        inner.check_poisoned()?;
        if inner.pending_repair.lock().is_some() {
            return Err(WalError::RecoveryPending {
                dir: inner.dir.clone(),
            });
        }
        let max = max_payload_len(inner.segment_size);
        if len > max {
            return Err(WalError::RecordTooLarge {
                len,
                max,
                segment_size: inner.segment_size,
            });
        }
        Ok(())
    }

    /// Gives the frame of a `len`-byte payload its position (rolling over to the next
    /// segment if it does not fit in this one) and has `encode` append it to the pending
    /// bytes, under the append lock; returns its `(start, end)` LSNs.
    fn append_frame(
        &self,
        len: u64,
        encode: impl FnOnce(&mut Vec<u8>, Lsn, Lsn) -> Result<()>,
    ) -> Result<(Lsn, Lsn)> {
        let inner = &self.inner;
        let (start, end) = {
            let mut state = inner.append.lock();
            let frame = frame_len(len);
            if state.next.0 + frame > state.active.end().0 {
                inner.roll_segment(&mut state)?;
            }
            let start = state.next;
            let end = Lsn(start.0 + frame);
            let synced_through = inner.synced_through();
            let pending = state.pending_bytes();
            pending.reserve(usize::try_from(frame).unwrap_or(0));
            encode(pending, start, synced_through)?;
            state.next = end;
            (start, end)
        };
        assert!(start < end, "LSNs must strictly increase");
        inner.counters.records.fetch_add(1, Ordering::Relaxed);
        inner
            .counters
            .payload_bytes
            .fetch_add(len, Ordering::Relaxed);
        Ok((start, end))
    }

    /// Returns once every record ending at or below `end` is as durable as the sync mode
    /// promises (written to the operating system for `Never`, fsynced otherwise).
    /// An `end` past every appended record is refused with `PastEnd`.
    pub fn flush_to(&self, end: Lsn) -> Result<()> {
        self.refuse_past_end(end)?;
        self.inner.flush_to(end)
    }

    /// Refuses an `end` past every appended record (`PastEnd`).
    fn refuse_past_end(&self, end: Lsn) -> Result<()> {
        let appended = self.inner.append.lock().next;
        if end > appended {
            return Err(WalError::PastEnd {
                lsn: end,
                end: appended,
            });
        }
        Ok(())
    }

    /// Returns once every record ending at or below `end` is written to the operating
    /// system, without waiting for an fsync: it then outlives this process (a kill), not
    /// a power cut. An `end` past every appended record is refused with `PastEnd`.
    pub fn write_to(&self, end: Lsn) -> Result<()> {
        self.refuse_past_end(end)?;
        self.inner.flush_to_with(end, false)
    }

    /// fsyncs everything written so far, whatever the sync mode. Returns the durable LSN.
    pub fn sync(&self) -> Result<Lsn> {
        let inner = &self.inner;
        let target = inner.append.lock().next;
        inner.flush_to_with(target, true)?;
        Ok(self.durable_lsn())
    }

    /// Removes whole segments that end at or below `lsn` (never the segment being
    /// written). Call it once everything below `lsn` is persisted elsewhere. Returns how
    /// many segments were removed.
    pub fn truncate_before(&self, lsn: Lsn) -> Result<usize> {
        let inner = &self.inner;
        let written = self.written_lsn();
        if lsn > written {
            return Err(WalError::PastEnd { lsn, end: written });
        }
        let active_start = inner.append.lock().active.start;
        let doomed: Vec<Arc<Segment>> = {
            let segments = inner.segments.read();
            segments
                .values()
                .filter(|segment| segment.end() <= lsn && segment.start < active_start)
                .cloned()
                .collect()
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        // Forget them first so no new reader picks them up; readers holding one keep a
        // working handle (unlinking does not disturb open files or maps).
        {
            let mut segments = inner.segments.write();
            for segment in &doomed {
                segments.remove(&segment.start);
            }
        }
        for segment in &doomed {
            inner
                .fs
                .remove_file(&segment.path)
                .map_err(WalError::io("remove segment", &segment.path))?;
        }
        sync_dir(inner.fs.as_ref(), &inner.dir)?;
        let removed = doomed.len();
        closer::close_removed(doomed, inner.fs.is_operating_system());
        Ok(removed)
    }

    /// A reader of the records from `from` (a record boundary: the end LSN of a record, or
    /// [`Wal::oldest_lsn`]) up to the written end, which keeps advancing as writes go on.
    pub fn read_from(&self, from: Lsn) -> Result<WalReader> {
        WalReader::new(Arc::clone(&self.inner), from)
    }
}

impl Inner {
    pub(crate) fn oldest_lsn(&self) -> Lsn {
        let segments = self.segments.read();
        let first = segments
            .values()
            .next()
            .expect("a log always has a segment");
        Lsn(first.start.0 + SEGMENT_HEADER_LEN)
    }

    /// What a frame encoded now records as "synced through": every byte below the durable
    /// LSN has been fsynced (see the format docs for how recovery uses it).
    fn synced_through(&self) -> Lsn {
        Lsn(self.durable.load(Ordering::Acquire))
    }

    fn check_poisoned(&self) -> Result<()> {
        match &*self.poisoned.lock() {
            Some(cause) => Err(WalError::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    fn poison(&self, error: &WalError) {
        let mut poisoned = self.poisoned.lock();
        if poisoned.is_none() {
            tracing::error!(%error, "WAL poisoned: refusing further appends");
            *poisoned = Some(error.to_string());
        }
    }

    /// Closes the active segment with a segment-end frame and opens the next one. The
    /// new segment is created first: if that fails, `state` is left as it was.
    fn roll_segment(&self, state: &mut AppendState) -> Result<()> {
        let old_end = state.active.end();
        let header = SegmentHeader {
            segment_size: self.segment_size,
            start: old_end,
            salt: self.salt,
        };
        let created = match self.take_made_ahead(old_end) {
            Some(prepared) if prepared.start == old_end => {
                self.counters
                    .segments_made_ahead
                    .fetch_add(1, Ordering::Relaxed);
                // Set before the segment-end frame below is queued, so the write stage
                // that writes the frame fsyncs the directory first.
                prepared.rename_into_place(self.fs.as_ref()).inspect(|_| {
                    self.segment_name_unsynced.store(true, Ordering::Release);
                })
            }
            stale => {
                if let Some(stale) = stale {
                    stale.discard(self.fs.as_ref());
                }
                self.counters
                    .segments_zero_filled
                    .fetch_add(1, Ordering::Relaxed);
                Segment::create(self.fs.as_ref(), &self.dir, header)
            }
        };
        let segment = Arc::new(created.inspect_err(|error| {
            self.poison(error);
        })?);
        self.counters
            .segments_started
            .fetch_add(1, Ordering::Relaxed);
        let remaining = old_end.0 - state.next.0;
        if remaining >= FRAME_HEADER_LEN {
            let marker = encode_segment_end(self.salt, state.next, self.synced_through());
            state.pending_bytes().extend_from_slice(&marker);
        }
        self.segments
            .write()
            .insert(segment.start, Arc::clone(&segment));
        state.active = segment;
        state.next = Lsn(old_end.0 + SEGMENT_HEADER_LEN);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferred_appends_are_durable_only_after_flush_to() {
        let dir = tempfile::tempdir().unwrap();
        let config = WalConfig {
            segment_size: 4096,
            ..WalConfig::default()
        };
        let wal = Wal::create(dir.path(), config).unwrap();
        let (_, first) = wal.append_deferred(1, b"one").unwrap();
        let (_, second) = wal.append_deferred(1, b"two").unwrap();
        assert!(
            wal.durable_lsn() < first,
            "nothing waited for durability yet"
        );
        // Appended (given a position) is ahead of written until a flush.
        assert_eq!(wal.appended_lsn(), second);
        assert!(wal.written_lsn() < second);
        wal.flush_to(second).unwrap();
        assert_eq!(wal.written_lsn(), wal.appended_lsn());
        assert!(wal.durable_lsn() >= second);
        let beyond = Lsn(second.0 + 8);
        assert!(matches!(
            wal.flush_to(beyond),
            Err(WalError::PastEnd { lsn, end }) if lsn == beyond && end == second
        ));
    }

    #[test]
    fn write_to_writes_without_an_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::create(dir.path(), WalConfig::default()).unwrap();
        let fsyncs = wal.stats().fsyncs;
        let (_, first) = wal.append_deferred(1, b"one").unwrap();
        let (_, second) = wal.append_deferred(1, b"two").unwrap();
        wal.write_to(first).unwrap();
        // The write stage takes everything pending: both records are in the file.
        assert!(wal.written_lsn() >= second);
        assert!(wal.durable_lsn() < first, "written, not fsynced");
        assert_eq!(wal.stats().fsyncs, fsyncs);
        let on_disk: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap();
                bytes.windows(3).filter(|window| *window == b"two").count() as u64
            })
            .sum();
        assert_eq!(on_disk, 1, "the record is in a segment file");
        let beyond = Lsn(second.0 + 8);
        assert!(matches!(
            wal.write_to(beyond),
            Err(WalError::PastEnd { lsn, end }) if lsn == beyond && end == second
        ));
    }

    /// Found by the concurrent power-loss runs (`wal_power_loss`): a roll whose new
    /// segment could not be created had already queued the old segment's end frame without
    /// moving `next`, so an appender that had passed the poison check before tripped the
    /// "pending bytes must be contiguous" assertion.
    #[test]
    fn regression_a_failed_segment_roll_leaves_the_append_state_as_it_was() {
        use crate::sim::{Fault, OpKind, SimFileSystem};
        let fs = SimFileSystem::new(1);
        let config = WalConfig {
            segment_size: 4096,
            ..WalConfig::default()
        };
        let wal = Wal::create_on(Arc::new(fs.clone()), "/wal", config).unwrap();
        fs.inject(
            OpKind::Create,
            fs.op_count(OpKind::Create) + 1,
            Fault::FailOnce,
        );
        let mut failed = None;
        for _ in 0..10 {
            if let Err(error) = wal.append_deferred(1, &[7; 1000]) {
                failed = Some(error);
                break;
            }
        }
        let failed = failed.expect("a roll must have been needed");
        assert!(failed.to_string().contains("create segment"), "{failed}");
        let state = wal.inner.append.lock();
        let pending_end = state
            .pending
            .last()
            .map(|write| write.start.0 + write.bytes.len() as u64);
        assert_eq!(
            pending_end,
            Some(state.next.0),
            "pending ends where next is"
        );
    }

    #[test]
    fn a_failed_fsync_poisons_the_log_until_it_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let config = WalConfig {
            segment_size: 4096,
            ..WalConfig::default()
        };
        let wal = Wal::create(dir.path(), config).unwrap();
        let (_, durable_end) = wal.append(1, b"durable").unwrap();
        wal.inner.fail_next_fsync.store(true, Ordering::Release);
        let failed = wal.append(1, b"not acknowledged").unwrap_err();
        assert!(
            matches!(
                failed,
                WalError::Io {
                    operation: "fsync WAL segment",
                    ..
                }
            ),
            "{failed}"
        );
        assert_eq!(
            wal.durable_lsn(),
            durable_end,
            "the failed batch is not durable"
        );
        // Every later append is refused, without retrying the fsync.
        for _ in 0..3 {
            let refused = wal.append(1, b"later").unwrap_err();
            assert!(matches!(refused, WalError::Poisoned { .. }), "{refused}");
            assert!(refused.to_string().contains("injected fsync failure"));
        }
        assert!(matches!(wal.sync(), Err(WalError::Poisoned { .. })));
        assert!(
            matches!(wal.flush_to(durable_end), Ok(())),
            "already durable"
        );
        drop(wal);
        // Reopening recovers: the acknowledged record is there and appends work again.
        let (wal, report) = Wal::open(dir.path(), config).unwrap();
        assert!(report.end >= durable_end);
        wal.append(1, b"after reopen").unwrap();
        let first = wal
            .read_from(wal.oldest_lsn())
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(&first.payload[..], b"durable");
    }

    /// Batches of every size on a real file system: small ones (written as whole blocks
    /// through the page cache) and large ones (direct), one after another in the same
    /// blocks, across a segment boundary, all read back after a reopen.
    #[test]
    fn small_and_large_batches_on_direct_segments_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let config = WalConfig::default();
        let wal = Wal::create(dir.path(), config).unwrap();
        assert!(
            wal.inner.append.lock().active.file.is_direct(),
            "the segments of a log on {} are open for direct I/O",
            dir.path().display()
        );
        let mut expected = Vec::new();
        for i in 0..450usize {
            let len = match i % 6 {
                0 => 70_000 + i * 13,
                1 => 150_001,
                _ => i * 37 % 5_000,
            };
            let payload: Vec<u8> = (0..len).map(|j| (i * 31 + j * 7) as u8).collect();
            if i % 4 == 0 {
                wal.append(i as u8, &payload).unwrap();
            } else {
                wal.append_deferred(i as u8, &payload).unwrap();
            }
            if i % 9 == 0 {
                wal.write_to(wal.appended_lsn()).unwrap();
            }
            expected.push((i as u8, payload));
        }
        wal.sync().unwrap();
        assert!(
            wal.stats().segments_started > 0,
            "crossed into a new segment"
        );
        drop(wal);
        let (wal, _) = Wal::open(dir.path(), config).unwrap();
        let read: Vec<(u8, Vec<u8>)> = wal
            .read_from(wal.oldest_lsn())
            .unwrap()
            .map(|record| {
                let record = record.unwrap();
                (record.kind, record.payload.to_vec())
            })
            .collect();
        assert_eq!(read.len(), expected.len());
        assert!(read == expected, "every record reads back as appended");
    }
}
