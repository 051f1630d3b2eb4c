//! Recovery on open: check every segment and every record, find where the valid log ends.
//!
//! Invariants it keeps:
//! - Every segment header is checked (magic, version, CRC, start LSN against the file name,
//!   one segment size and one salt for the whole log, no gaps). A bad header is an error
//!   naming the file: segments are published crash-safely, so a bad header is never a crash
//!   artifact.
//! - The first frame that fails its checks ends the log *unless a valid frame after it
//!   proves it had been fsynced*: every frame records the log's durable LSN when it was
//!   written ("synced through", see `format`), and one past the bad frame's start means
//!   the bad frame was durable before, so this is damage, not a crash. Then `open` fails
//!   naming the segment, offset and LSN, unless the caller chose
//!   [`RecoveryMode::SalvageToLastGood`], which truncates there and says so in the report.
//!   Valid frames after a bad one without such proof are what a power cut leaves when the
//!   disk wrote pages back out of order: they were never acknowledged as durable, and are
//!   dropped with the tail (counted in the report).
//! - A segment-end frame is written only after the next segment was created, so a log
//!   whose last segment ends with one has lost a segment: `open` refuses, naming it.
//! - Recovery first only reads: what it would change is a [`Repair`]. A dropped tail is
//!   physically zeroed and fsynced, and segments after it are removed, when the repair is
//!   applied, before the log accepts writes, so stale bytes can never be read as records
//!   later; a caller that refuses the log after reading it leaves the files untouched.
//! - Every kept segment is fsynced by the repair, so the recovered end is durable.
//!
//! Recovery reads the whole retained log once; the engine keeps the log short by truncating
//! segments it has persisted.

use std::path::{Path, PathBuf};

use crate::config::{RecoveryMode, WalConfig};
use crate::error::{Result, WalError};
use crate::format::{
    FRAME_ALIGNMENT, FRAME_HEADER_LEN, FRAME_TYPE_OFFSET, Frame, SEGMENT_HEADER_LEN, SegmentHeader,
    check_body, decode_header,
};
use crate::fs::FileSystem;
use crate::lsn::Lsn;
use crate::segment::{Segment, list_segments, sync_dir};

/// What `open` found and did while recovering the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The oldest LSN a reader can start from.
    pub oldest: Lsn,
    /// Where the valid log ends: the end LSN of the last valid record (or `oldest` when
    /// the log holds none). New records are appended from here.
    pub end: Lsn,
    /// Valid records in the log.
    pub records: u64,
    /// Bytes dropped from the tail: from `end` to the last non-zero byte after it (a torn
    /// record, garbage in preallocated space, or, when salvaging, the discarded records).
    pub dropped_bytes: u64,
    /// Valid records dropped with the tail because a record before them was lost: written
    /// after the log's last fsync, so never acknowledged as durable, and kept by the disk
    /// while an earlier unsynced page was not. (Salvaged records are not counted here.)
    pub unsynced_records_dropped: u64,
    /// Segment files after the end that hold no record the log keeps: removed when the
    /// recovery is completed.
    pub removed_segments: Vec<PathBuf>,
    /// Set only in [`RecoveryMode::SalvageToLastGood`] when valid records after damage
    /// were discarded: the corruption that `Strict` would have refused to open with.
    pub salvaged_corruption: Option<String>,
    /// What was dropped from the tail, if anything (`dropped_bytes` > 0).
    pub dropped_tail: Option<DroppedTail>,
}

/// The part of the log recovery dropped: from the first bad frame to the last non-zero
/// byte after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedTail {
    /// The segment holding the first bad frame.
    pub segment: PathBuf,
    /// Where the dropped part starts: the end of the last record kept.
    pub from: Lsn,
    /// Just past its last non-zero byte.
    pub to: Lsn,
    /// Non-zero bytes dropped (`RecoveryReport::dropped_bytes`).
    pub bytes: u64,
    /// Whole, valid records among them (a torn record is not counted).
    pub records: u64,
}

/// The state recovery hands to the log.
pub(crate) struct Recovered {
    pub(crate) report: RecoveryReport,
    pub(crate) segment_size: u64,
    pub(crate) salt: u64,
    /// Kept segments in LSN order; never empty.
    pub(crate) segments: Vec<Segment>,
    /// Where the next frame goes. Equal to the last kept segment's end when every segment
    /// ended cleanly: the log continues in a segment not created yet.
    pub(crate) next_frame: Lsn,
    /// What must change on disk before the log accepts writes.
    pub(crate) repair: Repair,
}

/// The changes recovery decided on, made only by [`Repair::apply`]: until then recovery
/// has only read. A caller that must accept more than the log (the engine checks its
/// catalog and layers and replays) applies it once everything was accepted, so a refused
/// open changes nothing on disk.
#[derive(Debug, Default)]
pub(crate) struct Repair {
    /// The damaged segment, the offset of the first bad frame, and how many bytes from
    /// there to its last non-zero byte are zeroed.
    zero_tail: Option<(PathBuf, u64, u64)>,
    /// Segments after the end, removed newest first.
    remove: Vec<PathBuf>,
    /// Temporary files of segment creations a crash interrupted.
    debris: Vec<PathBuf>,
    /// Kept segments shorter than the segment size (salvage only), extended back to it
    /// with zeros, which read as the end of the log.
    extend: Vec<(PathBuf, u64)>,
}

impl Repair {
    /// Zeroes the dropped tail, removes the segments after it, then fsyncs every kept
    /// segment so the recovered end is durable.
    pub(crate) fn apply(self, fs: &dyn FileSystem, dir: &Path, kept: &[&Segment]) -> Result<()> {
        for (path, segment_size) in &self.extend {
            if let Some(segment) = kept.iter().find(|segment| &segment.path == path) {
                segment
                    .file
                    .set_len(*segment_size)
                    .map_err(WalError::io("extend short segment", path))?;
            }
        }
        if let Some((path, from, len)) = &self.zero_tail {
            let segment = kept
                .iter()
                .find(|segment| &segment.path == path)
                .expect("the damaged segment is kept");
            segment
                .file
                .write_all_at(&vec![0u8; *len as usize], *from)
                .map_err(WalError::io("zero torn WAL tail", path))?;
            segment
                .file
                .sync_data()
                .map_err(WalError::io("fsync segment", path))?;
            tracing::info!(offset = from, bytes = len, segment = %path.display(), "dropped torn WAL tail");
        }
        // Newest first: if a removal fails part way, the segments left are still contiguous,
        // so the next open sees a log with a longer tail to drop, not a gap it must refuse.
        for path in self.remove.iter().rev() {
            fs.remove_file(path)
                .map_err(WalError::io("remove segment", path))?;
        }
        for path in &self.debris {
            fs.remove_file(path)
                .map_err(WalError::io("remove debris", path))?;
        }
        if !self.remove.is_empty() || !self.debris.is_empty() {
            sync_dir(fs, dir)?;
        }
        for segment in kept {
            segment
                .file
                .sync_data()
                .map_err(WalError::io("fsync segment", &segment.path))?;
        }
        Ok(())
    }
}

pub(crate) fn recover(fs: &dyn FileSystem, dir: &Path, mode: RecoveryMode) -> Result<Recovered> {
    let listing = list_segments(fs, dir)?;
    let listed = listing.segments;
    if listed.is_empty() {
        return Err(WalError::NotFound {
            dir: dir.to_owned(),
        });
    }
    let checked = open_and_check_headers(fs, listed, mode)?;
    let (segments, segment_size, salt) = (checked.segments, checked.segment_size, checked.salt);
    let scan = scan_frames(&segments, segment_size, salt)?;

    let mut report = RecoveryReport {
        oldest: scan.oldest,
        end: scan.last_record_end,
        records: scan.records,
        dropped_bytes: 0,
        unsynced_records_dropped: 0,
        removed_segments: Vec::new(),
        salvaged_corruption: None,
        dropped_tail: None,
    };
    let mut segments = segments;
    let mut repair = Repair {
        debris: listing.debris,
        extend: checked.short,
        ..Repair::default()
    };
    if let Some((error, cut)) = checked.salvaged {
        tracing::warn!(%error, "salvaging the WAL: discarding the segments from the damaged one on");
        report.salvaged_corruption = Some(error.to_string());
        report.removed_segments = cut.clone();
        repair.remove = cut;
    }
    let next_frame = match scan.first_bad {
        None => {
            let last = segments.last().expect("at least one segment was listed");
            if scan.last_segment_closed && report.salvaged_corruption.is_none() {
                // A segment-end frame is written only after its successor was created:
                // the successor existed, and is gone.
                let missing = WalError::MissingSegment {
                    path: dir.join(crate::segment::segment_file_name(last.end())),
                    after: last.path.clone(),
                    lost_from: Lsn(last.end().0 + SEGMENT_HEADER_LEN),
                    kept_end: scan.last_record_end,
                };
                match mode {
                    RecoveryMode::Strict => return Err(missing),
                    RecoveryMode::SalvageToLastGood => {
                        tracing::warn!(%missing, "salvaging the WAL: the log ends where the missing segment began");
                        report.salvaged_corruption = Some(missing.to_string());
                    }
                }
            }
            last.end()
        }
        Some(bad) => {
            // Strict mode refuses at the first proof; only salvage needs every record after
            // it counted (it drops them all).
            let count_past_proof = mode == RecoveryMode::SalvageToLastGood;
            let later = valid_frames_after(&segments, &bad, segment_size, salt, count_past_proof)?;
            let damaged = segments
                .get(bad.segment_index)
                .expect("bad frame lies in a listed segment");
            let (damaged, offset) = (damaged.path.clone(), damaged.offset_of(bad.lsn));
            if let Some(proof) = later.proof_of_sync {
                let corruption = WalError::CorruptedInMiddle {
                    lsn: bad.lsn,
                    path: damaged.clone(),
                    offset,
                    next_valid: proof.frame,
                    synced_through: proof.synced_through,
                };
                match mode {
                    RecoveryMode::Strict => return Err(corruption),
                    RecoveryMode::SalvageToLastGood => {
                        tracing::warn!(%corruption, "salvaging the WAL: discarding everything after the damage");
                        report
                            .salvaged_corruption
                            .get_or_insert_with(|| corruption.to_string());
                    }
                }
            } else {
                report.unsynced_records_dropped = later.records;
            }
            let (bytes, to) = plan_tail_drop(&mut segments, &bad, segment_size, &mut repair)?;
            report.dropped_bytes = bytes;
            // Segments cut at damaged headers (salvage) come after the ones drained here:
            // in LSN order (names are hex start LSNs), `apply` removes newest first.
            repair.remove.sort();
            report.removed_segments = repair.remove.clone();
            if bytes > 0 {
                report.dropped_tail = Some(DroppedTail {
                    segment: damaged,
                    from: bad.lsn,
                    to,
                    bytes,
                    records: later.records,
                });
            }
            bad.lsn
        }
    };
    Ok(Recovered {
        report,
        segment_size,
        salt,
        segments,
        next_frame,
        repair,
    })
}

fn bad_segment(path: &Path, offset: u64, problem: impl Into<String>) -> WalError {
    WalError::BadSegment {
        path: path.to_owned(),
        offset,
        problem: problem.into(),
    }
}

/// What `open_and_check_headers` accepted.
struct CheckedSegments {
    segments: Vec<Segment>,
    segment_size: u64,
    salt: u64,
    /// Salvage only: the damage that ended the log early, and the segments cut with it.
    salvaged: Option<(WalError, Vec<PathBuf>)>,
    /// Salvage only: kept segments shorter than the segment size, and that size.
    short: Vec<(PathBuf, u64)>,
}

/// Opens every segment and checks its header against its name and its neighbours. When
/// salvaging, damage to any segment but the first ends the log before it (a segment that
/// is only too short is kept, read as if zero-filled, and cut at its last whole record).
fn open_and_check_headers(
    fs: &dyn FileSystem,
    listed: Vec<(Lsn, PathBuf)>,
    mode: RecoveryMode,
) -> Result<CheckedSegments> {
    let mut checked = CheckedSegments {
        segments: Vec::with_capacity(listed.len()),
        segment_size: 0,
        salt: 0,
        salvaged: None,
        short: Vec::new(),
    };
    let mut log_shape: Option<(u64, u64)> = None;
    let paths: Vec<PathBuf> = listed.iter().map(|(_, path)| path.clone()).collect();
    for (index, (start, path)) in listed.into_iter().enumerate() {
        match check_segment(fs, start, &path, &mut log_shape, checked.segments.last()) {
            Ok((segment, None)) => checked.segments.push(segment),
            Ok((segment, Some(short))) if mode == RecoveryMode::SalvageToLastGood => {
                checked
                    .short
                    .push((path.clone(), segment.end().0 - segment.start.0));
                tracing::warn!(segment = %path.display(), bytes = short.file_len, "salvaging a short WAL segment");
                // The log ends in it: later segments would follow a hole.
                let cut = paths.get(index + 1..).unwrap_or_default().to_vec();
                checked.salvaged = Some((short.error, cut));
                checked.segments.push(segment);
                break;
            }
            Ok((_, Some(short))) => return Err(short.error),
            Err(error) if mode == RecoveryMode::SalvageToLastGood && index > 0 => {
                let cut = paths.get(index..).unwrap_or_default().to_vec();
                checked.salvaged = Some((error, cut));
                break;
            }
            Err(error) => return Err(error),
        }
    }
    let (segment_size, salt) = log_shape.expect("at least one segment was listed");
    checked.segment_size = segment_size;
    checked.salt = salt;
    Ok(checked)
}

/// A segment file shorter than the segment size: damage, which salvage can cut at.
struct ShortSegment {
    file_len: u64,
    error: WalError,
}

/// Opens one segment and checks its header (against its name, the log's shape in
/// `log_shape`, set by the first, and the segment before it).
fn check_segment(
    fs: &dyn FileSystem,
    start: Lsn,
    path: &Path,
    log_shape: &mut Option<(u64, u64)>,
    previous: Option<&Segment>,
) -> Result<(Segment, Option<ShortSegment>)> {
    let mut header_bytes = [0u8; SEGMENT_HEADER_LEN as usize];
    let file = fs
        .open_direct(path)
        .map_err(WalError::io("open segment", path))?;
    let file_len = file.size().map_err(WalError::io("stat segment", path))?;
    if file_len < SEGMENT_HEADER_LEN {
        return Err(bad_segment(
            path,
            0,
            "file is shorter than a segment header",
        ));
    }
    file.read_exact_at(&mut header_bytes, 0)
        .map_err(WalError::io("read segment header", path))?;
    let header = SegmentHeader::decode(&header_bytes)
        .map_err(|problem| bad_segment(path, 0, problem.to_string()))?;
    if header.start != start {
        return Err(bad_segment(
            path,
            16,
            format!(
                "header says the segment starts at {}, its name says {start}",
                header.start
            ),
        ));
    }
    WalConfig::validate_segment_size(header.segment_size)
        .map_err(|error| bad_segment(path, 12, error.to_string()))?;
    let (segment_size, salt) = *log_shape.get_or_insert((header.segment_size, header.salt));
    if header.segment_size != segment_size || header.salt != salt {
        return Err(bad_segment(
            path,
            12,
            "segment size or salt differs from the log's first segment: the file belongs to another log",
        ));
    }
    if !start.is_aligned(segment_size) {
        return Err(bad_segment(
            path,
            16,
            format!("start {start} is not a multiple of the segment size"),
        ));
    }
    if let Some(previous) = previous
        && previous.end() != start
    {
        return Err(bad_segment(
            path,
            0,
            format!(
                "segment starting at {} is missing before this one",
                previous.end()
            ),
        ));
    }
    if file_len > segment_size {
        return Err(bad_segment(
            path,
            file_len,
            format!("file is {file_len} bytes, the segment size is {segment_size}"),
        ));
    }
    let short = (file_len < segment_size).then(|| ShortSegment {
        file_len,
        error: bad_segment(
            path,
            file_len,
            format!("file is {file_len} bytes, the segment size is {segment_size}"),
        ),
    });
    Ok((
        Segment::open(start, path.to_owned(), file, segment_size),
        short,
    ))
}

/// The first frame position that failed its checks, with the bytes of its segment (kept
/// so the rest of recovery does not read that segment again).
struct BadFrame {
    segment_index: usize,
    lsn: Lsn,
    segment_bytes: Vec<u8>,
}

struct Scan {
    records: u64,
    /// The first record boundary of the log.
    oldest: Lsn,
    /// End of the last valid record, or `oldest` if there is none.
    last_record_end: Lsn,
    first_bad: Option<BadFrame>,
    /// The last segment scanned ended with a segment-end frame, which promises a successor.
    last_segment_closed: bool,
}

/// A segment's bytes; past the end of a short file (kept only when salvaging), zeros.
fn read_whole(segment: &Segment, segment_size: u64) -> Result<Vec<u8>> {
    let mut data = vec![0u8; segment_size as usize];
    let file_len = segment
        .file
        .size()
        .map_err(WalError::io("stat segment", &segment.path))?
        .min(segment_size);
    let present = data
        .get_mut(..file_len as usize)
        .expect("file_len is at most the segment size");
    segment
        .file
        .read_exact_at(present, 0)
        .map_err(WalError::io("read segment", &segment.path))?;
    Ok(data)
}

/// What is at `offset` of a segment's bytes, fully checked (a record's body too).
enum FrameCheck {
    Valid(Frame),
    Invalid,
}

fn check_frame_at(data: &[u8], offset: u64, segment_start: Lsn, salt: u64) -> FrameCheck {
    let Some(rest) = data.get(offset as usize..) else {
        return FrameCheck::Invalid;
    };
    match decode_header(salt, Lsn(segment_start.0 + offset), rest) {
        Some(
            frame @ Frame::Record {
                payload_len,
                body_crc,
                ..
            },
        ) => {
            let body = rest.get(FRAME_HEADER_LEN as usize..frame.len() as usize);
            match body {
                Some(body) if check_body(body, payload_len, body_crc) => FrameCheck::Valid(frame),
                _ => FrameCheck::Invalid,
            }
        }
        Some(frame @ Frame::SegmentEnd { .. }) => FrameCheck::Valid(frame),
        None => FrameCheck::Invalid,
    }
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// Walks the frames of every segment in order until the first invalid one.
fn scan_frames(segments: &[Segment], segment_size: u64, salt: u64) -> Result<Scan> {
    let oldest = Lsn(segments.first().map_or(0, |first| first.start.0) + SEGMENT_HEADER_LEN);
    let mut scan = Scan {
        records: 0,
        oldest,
        last_record_end: oldest,
        first_bad: None,
        last_segment_closed: false,
    };
    for (segment_index, segment) in segments.iter().enumerate() {
        let data = read_whole(segment, segment_size)?;
        if let Some(bad_offset) = first_bad_offset(&data, segment, salt, &mut scan) {
            scan.first_bad = Some(BadFrame {
                segment_index,
                lsn: Lsn(segment.start.0 + bad_offset),
                segment_bytes: data,
            });
            return Ok(scan);
        }
    }
    Ok(scan)
}

/// Walks the frames of one segment, counting valid records into `scan`. Returns the offset
/// of the first invalid frame, or `None` if the segment ends cleanly (a segment-end frame or
/// too little room for one, followed only by zeros).
fn first_bad_offset(data: &[u8], segment: &Segment, salt: u64, scan: &mut Scan) -> Option<u64> {
    let mut offset = SEGMENT_HEADER_LEN;
    scan.last_segment_closed = false;
    loop {
        let rest = data.get(offset as usize..).unwrap_or(&[]);
        if (rest.len() as u64) < FRAME_HEADER_LEN {
            // No frame fits: the log continues in the next segment if these bytes are zero.
            return (!all_zero(rest)).then_some(offset);
        }
        match check_frame_at(data, offset, segment.start, salt) {
            FrameCheck::Valid(frame @ Frame::Record { .. }) => {
                scan.records += 1;
                offset += frame.len();
                scan.last_record_end = Lsn(segment.start.0 + offset);
            }
            FrameCheck::Valid(Frame::SegmentEnd { .. }) => {
                let unused = rest.get(FRAME_HEADER_LEN as usize..).unwrap_or(&[]);
                scan.last_segment_closed = all_zero(unused);
                return (!all_zero(unused)).then_some(offset);
            }
            FrameCheck::Invalid => return Some(offset),
        }
    }
}

/// A valid frame after a bad one that proves the bad one had been fsynced.
struct ProofOfSync {
    /// Where the proving frame starts.
    frame: Lsn,
    /// What it records as synced through: past the bad frame's start.
    synced_through: Lsn,
}

/// What lies after the first bad frame.
struct LaterFrames {
    /// Valid records after it (up to the proof of sync, unless counted past it).
    records: u64,
    /// The first valid frame whose "synced through" covers the bad frame, if any.
    proof_of_sync: Option<ProofOfSync>,
}

/// Looks at every aligned position after `bad` for frames that pass all checks, counting
/// the records and noting the first frame that proves `bad` was durable (stopping there
/// unless `count_past_proof`).
fn valid_frames_after(
    segments: &[Segment],
    bad: &BadFrame,
    segment_size: u64,
    salt: u64,
    count_past_proof: bool,
) -> Result<LaterFrames> {
    let mut later = LaterFrames {
        records: 0,
        proof_of_sync: None,
    };
    for (segment_index, segment) in segments.iter().enumerate().skip(bad.segment_index) {
        let later_segment_bytes;
        let (data, first) = if segment_index == bad.segment_index {
            let after_bad = segment.offset_of(bad.lsn) + FRAME_ALIGNMENT;
            (&bad.segment_bytes, after_bad)
        } else {
            later_segment_bytes = read_whole(segment, segment_size)?;
            (&later_segment_bytes, SEGMENT_HEADER_LEN)
        };
        let mut offset = first;
        while offset + FRAME_HEADER_LEN <= segment_size {
            // A valid frame has a non-zero frame type at byte 12, so none starts more than
            // 12 bytes before the next non-zero byte: skip zeroed space in one pass.
            let Some(next_nonzero) = data
                .get(offset as usize..)
                .and_then(|rest| rest.iter().position(|&b| b != 0))
            else {
                break;
            };
            let earliest_candidate =
                (offset + next_nonzero as u64).saturating_sub(FRAME_TYPE_OFFSET);
            offset = offset.max(earliest_candidate - earliest_candidate % FRAME_ALIGNMENT);
            if offset + FRAME_HEADER_LEN > segment_size {
                break;
            }
            let start = Lsn(segment.start.0 + offset);
            match check_frame_at(data, offset, segment.start, salt) {
                FrameCheck::Invalid => offset += FRAME_ALIGNMENT,
                FrameCheck::Valid(frame) => {
                    if frame.synced_through() > bad.lsn && later.proof_of_sync.is_none() {
                        later.proof_of_sync = Some(ProofOfSync {
                            frame: start,
                            synced_through: frame.synced_through(),
                        });
                        // Salvage counts on past the proof: it drops every record after
                        // the damage, and its report must say how many.
                        if !count_past_proof {
                            return Ok(later);
                        }
                    }
                    if matches!(frame, Frame::Record { .. }) {
                        later.records += 1;
                    }
                    offset += frame.len();
                }
            }
        }
    }
    Ok(later)
}

/// Plans the drop of everything from `bad` on: zeroing the damaged segment's tail and
/// removing every later segment (taken out of `segments`). Reads only; returns how many
/// bytes of non-zero data the drop discards, and the LSN just past the last of them.
fn plan_tail_drop(
    segments: &mut Vec<Segment>,
    bad: &BadFrame,
    segment_size: u64,
    repair: &mut Repair,
) -> Result<(u64, Lsn)> {
    let mut dropped_bytes = 0;
    let mut to = bad.lsn;
    let damaged = segments
        .get(bad.segment_index)
        .expect("bad frame lies in a listed segment");
    let from = damaged.offset_of(bad.lsn);
    let tail = bad.segment_bytes.get(from as usize..).unwrap_or(&[]);
    if let Some(last_nonzero) = tail.iter().rposition(|&b| b != 0) {
        let garbage_len = last_nonzero as u64 + 1;
        dropped_bytes += garbage_len;
        to = Lsn(bad.lsn.0 + garbage_len);
        repair.zero_tail = Some((damaged.path.clone(), from, garbage_len));
    }
    for segment in segments.drain(bad.segment_index + 1..) {
        let data = read_whole(&segment, segment_size)?;
        let body = data.get(SEGMENT_HEADER_LEN as usize..).unwrap_or(&[]);
        if let Some(last_nonzero) = body.iter().rposition(|&b| b != 0) {
            dropped_bytes += last_nonzero as u64 + 1;
            to = Lsn(segment.start.0 + SEGMENT_HEADER_LEN + last_nonzero as u64 + 1);
        }
        repair.remove.push(segment.path.clone());
    }
    Ok((dropped_bytes, to))
}
