//! Commit points: the LSN and time of every commit on a branch, which PITR
//! (`lsn_for_time`) and `commit_time_at` search.
//!
//! A branch's commit points are *runs* followed by a *tail*:
//! - A run is an immutable file in `commits/`, mapped read-only. It holds a sorted array of
//!   fixed-size entries under a CRC32.
//! - The tail is in memory: the commits since the last catalog.
//!
//! Each catalog publish writes every branch's tail as a new run, and the catalog lists
//! runs by name. So a catalog's size does not grow with the number of commits, and a cut
//! copies only the tail. Runs are merged (`merge_plan`) so that each holds at least twice
//! the points of the next newer one: a branch keeps O(log n) runs, and each point is
//! rewritten O(log n) times.
//!
//! ```text
//! offset size field (little-endian)
//!      0    8 magic "PFCOMMIT"
//!      8    4 format version (1)
//!     12    4 zero (keeps the entries 8-byte aligned)
//!     16    8 branch id
//!     24    8 entry count n
//!     32 16*n entries, in LSN order: LSN u64, commit time u64 (microseconds)
//!   last    4 CRC32 of every byte before it
//! ```
//!
//! Invariants it keeps:
//! - Across a branch's runs and tail, LSNs strictly increase and times never decrease.
//!   This is checked for each run's own entries when it is opened, between runs when they
//!   are restored, and on every push.
//! - A run file is never rewritten. Its name holds its branch and the LSNs of its first
//!   and last points. A branch's points in an LSN range never change: a detach only adds
//!   points below every own point. So a name already listed would hold the same bytes,
//!   and writing it again is refused as a broken invariant.
//! - A run's entries are checked whole (CRC32, order, branch) before it is used. The
//!   catalog holds the run's own CRC32 (its trailer's), and a file that differs is refused
//!   by name.

use std::path::Path;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use pagefork_wal::Lsn;

use crate::branch::BranchId;
use crate::error::{EngineError, Result};
use crate::fs::{Access, FileSystem, MappedFile};
use crate::time::Timestamp;

/// The LSN and time of one commit on a branch.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct CommitPoint {
    pub(crate) lsn: Lsn,
    pub(crate) time: Timestamp,
}

const MAGIC: [u8; 8] = *b"PFCOMMIT";
pub(crate) const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 32;
const ENTRY_LEN: usize = 16;
const TRAILER_LEN: usize = 4;
/// The suffix of a commit run's file name.
pub(crate) const RUN_SUFFIX: &str = "commits";

/// A commit run as the catalog lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunEntry {
    pub(crate) name: String,
    pub(crate) size: u64,
    /// CRC32 of the file's bytes before its trailer: the value the trailer holds. (Not of
    /// the whole file: the CRC32 of bytes followed by their own CRC32 is the same constant
    /// for every run, so it would tell no two runs apart; found by a review.)
    pub(crate) checksum: u32,
}

impl RunEntry {
    /// The CRC32 of the whole file (what a copy of it is checked against, as layer files
    /// are): the body's CRC32 carried on over the trailer that holds it.
    pub(crate) fn whole_file_checksum(&self) -> u32 {
        let mut hasher = crc32fast::Hasher::new_with_initial(self.checksum);
        hasher.update(&self.checksum.to_le_bytes());
        hasher.finalize()
    }
}

/// The file name of `branch`'s run from `first` to `last`.
pub(crate) fn run_file_name(branch: BranchId, first: Lsn, last: Lsn) -> String {
    format!(
        "{:016X}-{:016X}-{:016X}.{RUN_SUFFIX}",
        branch.0, first.0, last.0
    )
}

/// One immutable run of commit points, mapped.
#[derive(Debug)]
pub(crate) struct CommitRun {
    entry: RunEntry,
    /// The entries, `ENTRY_LEN` bytes each (a slice of the mapping).
    entries: Bytes,
    count: usize,
    _mapping: MappedFile,
}

impl CommitRun {
    /// How the catalog lists this run.
    pub(crate) fn entry(&self) -> &RunEntry {
        &self.entry
    }

    /// Its number of points.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Point `index` (`index < len()`).
    fn get(&self, index: usize) -> CommitPoint {
        point_at(&self.entries, index)
    }

    fn first(&self) -> CommitPoint {
        self.get(0)
    }

    fn last(&self) -> CommitPoint {
        self.get(self.count - 1)
    }

    /// Writes `points` (at least one, in order) as `branch`'s run in `dir` and maps it: the
    /// file is whole and fsynced under its name, but `dir` is not fsynced (the caller does
    /// that once for every run a catalog lists, before publishing the catalog).
    pub(crate) fn write(
        fs: &dyn FileSystem,
        dir: &Path,
        branch: BranchId,
        points: impl Iterator<Item = CommitPoint>,
    ) -> Result<CommitRun> {
        let broken = |detail: String| EngineError::InvariantViolated {
            action: "write a commit run",
            rule: "a run holds points whose LSNs increase and whose times never decrease",
            detail,
        };
        let mut bytes = Vec::with_capacity(HEADER_LEN + ENTRY_LEN * points.size_hint().0);
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&branch.0.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        let mut ends: Option<(CommitPoint, CommitPoint)> = None;
        let mut count = 0u64;
        for point in points {
            ends = match ends {
                None => Some((point, point)),
                Some((first, last)) if follows(last, point) => Some((first, point)),
                Some((_, last)) => {
                    return Err(broken(format!(
                        "branch {branch}: {} at {} after {} at {}",
                        point.lsn, point.time, last.lsn, last.time
                    )));
                }
            };
            bytes.extend_from_slice(&point.lsn.0.to_le_bytes());
            bytes.extend_from_slice(&point.time.0.to_le_bytes());
            count += 1;
        }
        let Some((first, last)) = ends else {
            return Err(broken(format!("branch {branch}: no points")));
        };
        if let Some(slot) = bytes.get_mut(24..32) {
            slot.copy_from_slice(&count.to_le_bytes());
        }
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let entry = RunEntry {
            name: run_file_name(branch, first.lsn, last.lsn),
            size: bytes.len() as u64,
            checksum: crc,
        };
        let path = dir.join(&entry.name);
        let dir_sync = crate::fs::DirSync::ByCaller;
        let mapping = crate::fs::publish_file_opened(fs, &path, &bytes, dir_sync, |temp| {
            // SAFETY: as in `open`: the file is whole and fsynced, and never written again.
            #[allow(unsafe_code)]
            unsafe {
                fs.open_read(temp)?.map_read_only(Access::Sequential)
            }
        })
        .map_err(EngineError::io("publish commit run", &path))?;
        drop(bytes);
        CommitRun::mapped(mapping, &entry, branch, &path)
    }

    /// Opens the run the catalog lists as `entry` for `branch`, checking all of it: its
    /// size and whole-file CRC32 against the catalog's, its own CRC32, header and order.
    pub(crate) fn open(
        fs: &dyn FileSystem,
        dir: &Path,
        entry: &RunEntry,
        branch: BranchId,
    ) -> Result<CommitRun> {
        let path = dir.join(&entry.name);
        let file = fs.open_read(&path).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => EngineError::CorruptFile {
                path: path.clone(),
                offset: 0,
                reason: "the catalog lists this commit run but it is missing".to_owned(),
            },
            _ => EngineError::io("open commit run", &path)(error),
        })?;
        // SAFETY: a run is mapped once it is whole and fsynced, and never written again
        // nor truncated: it is written under a temporary name, fsynced and renamed into
        // place, and a name the catalog lists is never written again (module docs); the
        // store's directory lock keeps other pagefork processes out.
        #[allow(unsafe_code)]
        let mapping = unsafe { file.map_read_only(Access::Sequential) }
            .map_err(EngineError::io("map commit run", &path))?;
        CommitRun::mapped(mapping, entry, branch, &path)
    }

    /// The run `entry` of `branch` mapped from `path`, once checked whole.
    fn mapped(
        mapping: MappedFile,
        entry: &RunEntry,
        branch: BranchId,
        path: &Path,
    ) -> Result<CommitRun> {
        let bytes = mapping.bytes();
        let (entries, count) = check_run(&bytes, entry, branch).map_err(|(offset, reason)| {
            EngineError::CorruptFile {
                path: path.to_owned(),
                offset,
                reason,
            }
        })?;
        // Read once to check it: searches fault back only the pages they touch.
        mapping.release_resident_pages();
        Ok(CommitRun {
            entry: entry.clone(),
            entries,
            count,
            _mapping: mapping,
        })
    }
}

/// Whether `next` can follow `previous` on one branch.
fn follows(previous: CommitPoint, next: CommitPoint) -> bool {
    next.lsn > previous.lsn && next.time >= previous.time
}

/// Checks a run's bytes; returns its entries and their count, or where it is damaged and
/// how.
fn check_run(
    bytes: &Bytes,
    entry: &RunEntry,
    branch: BranchId,
) -> std::result::Result<(Bytes, usize), (u64, String)> {
    let len = bytes.len();
    if len as u64 != entry.size {
        return Err((
            0,
            format!("{len} bytes long, the catalog says {}", entry.size),
        ));
    }
    let Some(body_len) = len.checked_sub(TRAILER_LEN).filter(|&n| n >= HEADER_LEN) else {
        return Err((0, "shorter than a header and a checksum".to_owned()));
    };
    let mut stored = [0u8; 4];
    stored.copy_from_slice(bytes.get(body_len..).unwrap_or_default());
    let stored = u32::from_le_bytes(stored);
    if stored != entry.checksum {
        return Err((
            body_len as u64,
            format!(
                "its CRC32 is {stored:08x}, not the {:08x} the catalog lists for it: another run of the same name",
                entry.checksum
            ),
        ));
    }
    if crc32fast::hash(bytes.get(..body_len).unwrap_or_default()) != stored {
        return Err((
            body_len as u64,
            crate::checkpoint::whole_file_checksum_mismatch(body_len),
        ));
    }
    let mut header = bytes.slice(..HEADER_LEN);
    if header.get(..8) != Some(&MAGIC[..]) {
        return Err((0, "bad magic: not a pagefork commit run".to_owned()));
    }
    header.advance(8);
    let version = header.get_u32_le();
    if version != FORMAT_VERSION {
        return Err((8, format!("unsupported format version {version}")));
    }
    header.advance(4);
    let owner = BranchId(header.get_u64_le());
    if owner != branch {
        return Err((
            16,
            format!("holds branch {owner}'s commits, not {branch}'s"),
        ));
    }
    let count = header.get_u64_le();
    let entries = bytes.slice(HEADER_LEN..body_len);
    if count == 0 || Some(entries.len() as u64) != count.checked_mul(ENTRY_LEN as u64) {
        return Err((
            24,
            format!(
                "says {count} points, but holds {} bytes of them",
                entries.len()
            ),
        ));
    }
    let count = usize::try_from(count).map_err(|_| (24, format!("{count} points")))?;
    for index in 1..count {
        let (previous, next) = (point_at(&entries, index - 1), point_at(&entries, index));
        if !follows(previous, next) {
            return Err((
                (HEADER_LEN + index * ENTRY_LEN) as u64,
                format!(
                    "commit {} at {} comes after {} at {}",
                    next.lsn, next.time, previous.lsn, previous.time
                ),
            ));
        }
    }
    let (first, last) = (point_at(&entries, 0), point_at(&entries, count - 1));
    let name = run_file_name(branch, first.lsn, last.lsn);
    if name != entry.name {
        return Err((HEADER_LEN as u64, format!("holds the points of {name}")));
    }
    Ok((entries, count))
}

/// Point `index` of a run's entries (`index` below their count).
fn point_at(entries: &Bytes, index: usize) -> CommitPoint {
    let start = index * ENTRY_LEN;
    let mut bytes = entries.slice(start..start + ENTRY_LEN);
    CommitPoint {
        lsn: Lsn(bytes.get_u64_le()),
        time: Timestamp(bytes.get_u64_le()),
    }
}

/// How many of a branch's newest runs to merge into one, given each run's number of
/// points, oldest first, the new run last: the newest runs are merged while the next
/// older one holds fewer than twice the points merged so far. 0 for none.
///
/// So every run holds at least twice the points of the next newer one, and a branch of
/// n points keeps at most log2(n) + 1 runs, whatever the sizes of the tails; and a point
/// is rewritten only when its run grows by half, O(log n) times. (Merging only while the
/// older run held no more points, as a binary counter carries, kept one run per catalog
/// when each tail was smaller than the last; found by a review.)
pub(crate) fn merge_plan(counts: &[usize]) -> usize {
    let mut merged = match counts.last() {
        Some(&newest) => newest,
        None => return 0,
    };
    let mut taken = 1;
    for &older in counts.iter().rev().skip(1) {
        if older >= merged.saturating_mul(2) {
            break;
        }
        merged += older;
        taken += 1;
    }
    if taken >= 2 { taken } else { 0 }
}

/// What a catalog's cut took of a branch's points: its runs and a copy of its tail.
#[derive(Debug)]
pub(crate) struct CommitsCut {
    runs: Vec<Arc<CommitRun>>,
    tail: Vec<CommitPoint>,
    epoch: u64,
}

impl CommitsCut {
    /// Whether the cut took points not yet in a run.
    pub(crate) fn has_tail(&self) -> bool {
        !self.tail.is_empty()
    }
}

/// A branch's commit points: runs, then the tail (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct CommitPoints {
    runs: Vec<Arc<CommitRun>>,
    tail: Vec<CommitPoint>,
    /// Moves whenever the runs are replaced other than by a catalog's `persisted`, so a
    /// cut taken before knows its runs are stale.
    epoch: u64,
}

impl CommitPoints {
    /// How many points.
    pub(crate) fn len(&self) -> usize {
        self.runs.iter().map(|run| run.len()).sum::<usize>() + self.tail.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.runs.is_empty() && self.tail.is_empty()
    }

    /// Point `index` (`index < len()`).
    fn get(&self, mut index: usize) -> Option<CommitPoint> {
        for run in &self.runs {
            if index < run.len() {
                return Some(run.get(index));
            }
            index -= run.len();
        }
        self.tail.get(index).copied()
    }

    /// The number of leading points for which `pred` holds (`pred` must hold for a prefix).
    fn partition_point(&self, pred: impl Fn(CommitPoint) -> bool) -> usize {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            if self.get(mid).is_some_and(&pred) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        low
    }

    /// The newest point.
    pub(crate) fn last(&self) -> Option<CommitPoint> {
        match self.tail.last() {
            Some(last) => Some(*last),
            None => self.runs.last().map(|run| run.last()),
        }
    }

    /// The oldest point at or below `upper`.
    pub(crate) fn first_up_to(&self, upper: Lsn) -> Option<CommitPoint> {
        let first = match self.runs.first() {
            Some(run) => Some(run.first()),
            None => self.tail.first().copied(),
        };
        first.filter(|first| first.lsn <= upper)
    }

    /// The newest point at or below `upper`.
    pub(crate) fn last_up_to(&self, upper: Lsn) -> Option<CommitPoint> {
        let end = self.partition_point(|point| point.lsn <= upper);
        end.checked_sub(1).and_then(|index| self.get(index))
    }

    /// Whether a commit ends exactly at `lsn`.
    pub(crate) fn contains(&self, lsn: Lsn) -> bool {
        self.last_up_to(lsn).is_some_and(|point| point.lsn == lsn)
    }

    /// Among the points at or below `upper`: the newest at or before `time`, and whether a
    /// later one exists and whether there is any.
    pub(crate) fn search_time(&self, upper: Lsn, time: Timestamp) -> TimeSearch {
        let end = self.partition_point(|point| point.lsn <= upper);
        // Times never decrease along the points, so the prefix at or before `time` of the
        // points up to `upper` is the shorter of the two prefixes.
        let at_or_before = self.partition_point(|point| point.time <= time).min(end);
        TimeSearch {
            found: at_or_before
                .checked_sub(1)
                .and_then(|index| self.get(index)),
            later_exists: at_or_before < end,
            any: end > 0,
        }
    }

    /// Every point at or below `upper`, oldest first.
    pub(crate) fn to_vec_up_to(&self, upper: Lsn) -> Vec<CommitPoint> {
        let end = self.partition_point(|point| point.lsn <= upper);
        (0..end).filter_map(|index| self.get(index)).collect()
    }

    /// Adds the newest point (the caller checked that it follows the last).
    pub(crate) fn push(&mut self, point: CommitPoint) {
        assert!(
            self.last().is_none_or(|last| follows(last, point)),
            "a branch's commit LSNs increase and their times never decrease"
        );
        self.tail.push(point);
    }

    /// Puts `older` (every one below every point held) before the points held (a
    /// detach). The next catalog writes them all as one run.
    pub(crate) fn prepend(&mut self, older: Vec<CommitPoint>) {
        if older.is_empty() {
            return;
        }
        let mut all = older;
        let held = self.len();
        all.reserve(held);
        all.extend((0..held).filter_map(|index| self.get(index)));
        assert!(
            all.windows(2)
                .all(|pair| matches!(pair, [older, newer] if follows(*older, *newer))),
            "points prepended come before every point held"
        );
        self.runs.clear();
        self.tail = all;
        self.epoch += 1;
    }

    /// Restores runs read from a catalog, oldest first, before any other point; refused
    /// (with why) if they are out of order with each other or with `after`.
    pub(crate) fn restore_runs(
        &mut self,
        runs: Vec<CommitRun>,
        after: Lsn,
    ) -> std::result::Result<(), String> {
        assert!(self.is_empty(), "runs are restored before any other point");
        for run in runs {
            let first = run.first();
            let in_order = match self.last() {
                Some(last) => follows(last, first),
                None => first.lsn > after,
            };
            if !in_order {
                let before = match self.last() {
                    Some(last) => {
                        format!("the last point before it, {} at {}", last.lsn, last.time)
                    }
                    None => format!("the branch's start {after}"),
                };
                return Err(format!(
                    "commit run {} starts with {} at {}, which does not follow {before} (LSNs must increase, times never decrease)",
                    run.entry.name, first.lsn, first.time
                ));
            }
            self.runs.push(Arc::new(run));
        }
        Ok(())
    }

    /// The runs, oldest first: how the catalog lists each, and its number of points.
    pub(crate) fn runs(&self) -> impl Iterator<Item = (&RunEntry, usize)> {
        self.runs.iter().map(|run| (run.entry(), run.len()))
    }

    /// What a catalog's cut takes: the runs and a copy of the tail.
    pub(crate) fn cut(&self) -> CommitsCut {
        CommitsCut {
            runs: self.runs.clone(),
            tail: self.tail.clone(),
            epoch: self.epoch,
        }
    }

    /// Takes the runs a catalog published for `cut` (its runs with its tail written and
    /// merged): they replace the cut's runs and the tail's points they hold. Nothing if
    /// the points were replaced since the cut (a detach): the next catalog writes them.
    pub(crate) fn persisted(&mut self, cut: &CommitsCut, runs: &[Arc<CommitRun>]) {
        if cut.epoch != self.epoch {
            return;
        }
        assert!(
            self.tail.len() >= cut.tail.len()
                && self.runs.len() == cut.runs.len()
                && self.tail.get(..cut.tail.len()) == Some(&cut.tail[..]),
            "a branch's points only grow at the end between a cut and its catalog"
        );
        self.tail.drain(..cut.tail.len());
        self.runs = runs.to_vec();
    }
}

/// The answer of [`CommitPoints::search_time`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct TimeSearch {
    pub(crate) found: Option<CommitPoint>,
    pub(crate) later_exists: bool,
    pub(crate) any: bool,
}

/// Writes `cut`'s tail as a run of `branch` in `dir`, merged with the newest runs as
/// `merge_plan` says; returns the runs the catalog lists from now on. The caller fsyncs
/// `dir` before publishing a catalog that lists them.
pub(crate) fn persist_cut(
    fs: &dyn FileSystem,
    dir: &Path,
    branch: BranchId,
    cut: &CommitsCut,
) -> Result<Vec<Arc<CommitRun>>> {
    let mut runs = cut.runs.clone();
    if cut.tail.is_empty() {
        return Ok(runs);
    }
    let counts: Vec<usize> = runs
        .iter()
        .map(|run| run.len())
        .chain([cut.tail.len()])
        .collect();
    let merged_runs = merge_plan(&counts).saturating_sub(1);
    let merging = runs.split_off(runs.len() - merged_runs);
    let points = merging
        .iter()
        .flat_map(|run| (0..run.len()).map(|index| run.get(index)))
        .chain(cut.tail.iter().copied());
    let run = CommitRun::write(fs, dir, branch, points)?;
    // A listed run is never written again (module docs): the new run ends at the tail's
    // last point, above every listed run's, so its name is new.
    assert!(
        cut.runs
            .iter()
            .all(|listed| listed.entry.name != run.entry.name),
        "a new commit run's name is not one already listed"
    );
    runs.push(Arc::new(run));
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::fs::StdFileSystem;

    fn point(lsn: u64, time: u64) -> CommitPoint {
        CommitPoint {
            lsn: Lsn(lsn),
            time: Timestamp(time),
        }
    }

    /// Points with increasing LSNs and times that never decrease (often equal).
    fn points() -> impl Strategy<Value = Vec<CommitPoint>> {
        prop::collection::vec((1u64..50, 0u64..3), 0..120).prop_map(|steps| {
            let (mut lsn, mut time) = (100, 1_000);
            steps
                .into_iter()
                .map(|(lsn_step, time_step)| {
                    lsn += lsn_step;
                    time += time_step;
                    point(lsn, time)
                })
                .collect()
        })
    }

    /// `all` as runs of the given lengths (written to `dir`) and a tail.
    fn split(dir: &Path, all: &[CommitPoint], cuts: &BTreeSet<usize>) -> CommitPoints {
        let fs = StdFileSystem;
        let mut held = CommitPoints::default();
        let mut runs = Vec::new();
        let mut start = 0;
        for &end in cuts.iter().filter(|&&end| end <= all.len()) {
            if end > start {
                let run = CommitRun::write(&fs, dir, BranchId(7), all[start..end].iter().copied());
                runs.push(run.expect("write a run"));
                start = end;
            }
        }
        held.restore_runs(runs, Lsn(0)).expect("runs in order");
        for point in &all[start..] {
            held.push(*point);
        }
        held
    }

    proptest! {
        /// Every query over runs and a tail answers as a search of one sorted vector does.
        #[test]
        fn queries_over_runs_answer_as_over_one_vector(
            all in points(),
            cuts in prop::collection::btree_set(1usize..120, 0..6),
            queries in prop::collection::vec((0u64..6_000, 990u64..1_400), 1..40),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let held = split(dir.path(), &all, &cuts);
            prop_assert_eq!(held.len(), all.len());
            prop_assert_eq!(held.last(), all.last().copied());
            prop_assert_eq!(held.to_vec_up_to(Lsn::MAX), all.clone());
            for (lsn, time) in queries {
                let upper = Lsn(lsn);
                let visible: Vec<CommitPoint> =
                    all.iter().copied().filter(|p| p.lsn <= upper).collect();
                prop_assert_eq!(held.last_up_to(upper), visible.last().copied());
                prop_assert_eq!(held.first_up_to(upper), visible.first().copied());
                prop_assert_eq!(held.contains(upper), visible.last().is_some_and(|p| p.lsn == upper));
                prop_assert_eq!(held.to_vec_up_to(upper), visible.clone());
                let search = held.search_time(upper, Timestamp(time));
                let at_or_before: Vec<&CommitPoint> =
                    visible.iter().filter(|p| p.time <= Timestamp(time)).collect();
                prop_assert_eq!(search.found, at_or_before.last().map(|p| **p));
                prop_assert_eq!(search.later_exists, at_or_before.len() < visible.len());
                prop_assert_eq!(search.any, !visible.is_empty());
            }
        }
    }

    #[test]
    fn merges_carry_like_a_binary_counter() {
        assert_eq!(merge_plan(&[]), 0);
        assert_eq!(merge_plan(&[5]), 0);
        assert_eq!(merge_plan(&[5, 5]), 2);
        assert_eq!(merge_plan(&[10, 5]), 0);
        assert_eq!(merge_plan(&[9, 5]), 2);
        assert_eq!(merge_plan(&[10, 5, 5]), 3);
        assert_eq!(merge_plan(&[40, 10, 5, 5]), 3);
        // Tails that shrink from one catalog to the next are merged too (found by a
        // review: 24 tails of 24 down to 1 point stayed 24 runs).
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = StdFileSystem;
        let mut held = CommitPoints::default();
        let mut lsn = 0;
        for tail in (1..=24u64).rev() {
            for _ in 0..tail {
                lsn += 8;
                held.push(point(lsn, lsn));
            }
            let cut = held.cut();
            let runs = persist_cut(&fs, dir.path(), BranchId(2), &cut).expect("persist");
            held.persisted(&cut, &runs);
            let bound = (held.len() as f64).log2().floor() as usize + 1;
            assert!(held.runs.len() <= bound, "{} runs", held.runs.len());
        }
        // Persisting one tail at a time keeps O(log n) runs.
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = StdFileSystem;
        let mut held = CommitPoints::default();
        let mut lsn = 0;
        for _ in 0..200 {
            for _ in 0..10 {
                lsn += 8;
                held.push(point(lsn, lsn));
            }
            let cut = held.cut();
            let runs = persist_cut(&fs, dir.path(), BranchId(1), &cut).expect("persist");
            held.persisted(&cut, &runs);
            assert!(held.tail.is_empty());
            assert!(held.runs.len() <= 9, "{} runs", held.runs.len());
        }
        assert_eq!(held.len(), 2_000);
        let expected: Vec<CommitPoint> = (1..=2_000).map(|n| point(n * 8, n * 8)).collect();
        assert_eq!(held.to_vec_up_to(Lsn::MAX), expected);
    }

    /// Defensive: a detach and a catalog both hold the housekeeping lock, so the store
    /// never overtakes a cut this way; `persisted` must still not lose the points if it did.
    #[test]
    fn a_cut_whose_points_a_detach_replaced_leaves_them_to_the_next_catalog() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = StdFileSystem;
        let mut held = CommitPoints::default();
        held.push(point(50, 5));
        let cut = held.cut();
        let runs = persist_cut(&fs, dir.path(), BranchId(1), &cut).expect("persist");
        held.prepend(vec![point(10, 1)]);
        held.persisted(&cut, &runs);
        assert!(held.runs.is_empty());
        assert_eq!(
            held.to_vec_up_to(Lsn::MAX),
            vec![point(10, 1), point(50, 5)]
        );
    }

    #[test]
    fn a_run_is_checked_whole_when_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = StdFileSystem;
        let points = [point(10, 1), point(20, 1), point(30, 2)];
        let run =
            CommitRun::write(&fs, dir.path(), BranchId(3), points.iter().copied()).expect("write");
        let entry = run.entry().clone();
        assert_eq!(entry.name, run_file_name(BranchId(3), Lsn(10), Lsn(30)));
        assert_eq!(entry.size, 32 + 3 * 16 + 4);
        let path = dir.path().join(&entry.name);
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(
            entry.whole_file_checksum(),
            crc32fast::hash(&bytes),
            "what a copy is checked against"
        );
        // Another run of the same name and size with a right trailer of its own is not
        // the one the catalog lists.
        let other = [point(10, 1), point(20, 1), point(30, 3)];
        let forged =
            CommitRun::write(&fs, dir.path(), BranchId(3), other.iter().copied()).expect("write");
        assert_ne!(forged.entry().checksum, entry.checksum);
        let error = CommitRun::open(&fs, dir.path(), &entry, BranchId(3)).expect_err("refused");
        assert!(
            error.to_string().contains("another run of the same name"),
            "{error}"
        );
        std::fs::write(&path, &bytes).expect("put the first back");
        let reopened = CommitRun::open(&fs, dir.path(), &entry, BranchId(3)).expect("open");
        assert_eq!(reopened.len(), 3);
        // Another branch's run, and any flipped bit, are refused.
        assert!(CommitRun::open(&fs, dir.path(), &entry, BranchId(4)).is_err());
        for index in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[index] ^= 0x10;
            std::fs::write(&path, &damaged).expect("write");
            let error =
                CommitRun::open(&fs, dir.path(), &entry, BranchId(3)).expect_err("damage is found");
            assert!(
                matches!(&error, EngineError::CorruptFile { path: named, .. } if named == &path),
                "byte {index}: {error}"
            );
        }
        // Points out of order are not written.
        let backwards = [point(10, 2), point(20, 1)];
        assert!(CommitRun::write(&fs, dir.path(), BranchId(3), backwards.into_iter()).is_err());
        assert!(CommitRun::write(&fs, dir.path(), BranchId(3), std::iter::empty()).is_err());
    }
}
