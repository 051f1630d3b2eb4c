//! The read path: resolve what `at` means on a branch, then answer from the page cache or
//! rebuild the page from the branch's versions and, below its branch point, its
//! ancestors' (Neon's read rule: a read at LSN L on B sees B's versions at or below L,
//! then B's parent at min(L, branch point)). Each read counts the layers it consulted and
//! the ancestors it descended into.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use pagefork_wal::Lsn;

use super::pitr::commit_time_on;
use super::{Store, StoreInner};
use crate::backend::VersionDb;
use crate::branch::{At, LsnForTime, TimeKind};
use crate::catalog::Branch;
use crate::error::{EngineError, Result};
use crate::key::Key;
use crate::layer::{LayerFile, Level};
use crate::time::Timestamp;
use crate::update::{Depth, Update, reconstruct};

/// How one read went: the state it resolved to, and what it took.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReadTrace {
    /// The LSN the read resolved to.
    pub lsn: Lsn,
    /// The time of the last commit at or below `lsn` in the branch's visible history (the
    /// time of the state read; `None` if there is none), found on the same branch the
    /// read went to: a reset between the read and a second call could not pair the read
    /// with another history's time.
    pub commit_time: Option<Timestamp>,
    /// Whether the page cache answered.
    pub cache_hit: bool,
    /// Layers consulted (a branch's open layer counts as one, its frozen layer as one,
    /// then each layer file that may hold the key), 0 on a cache hit.
    pub layers_visited: u32,
    /// Ancestors the read descended into, 0 on a cache hit.
    pub ancestors_descended: u32,
}

impl ReadTrace {
    /// A read at `lsn` that the cache did not answer, before it visited anything.
    fn uncached(lsn: Lsn) -> ReadTrace {
        ReadTrace {
            lsn,
            commit_time: None,
            cache_hit: false,
            layers_visited: 0,
            ancestors_descended: 0,
        }
    }
}

/// What the store has done since it was opened.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct StoreStats {
    /// Page reads answered (by `get_page`, and by commits checking that a patched page
    /// exists).
    pub page_reads: u64,
    /// Reads the page cache answered.
    pub cache_hits: u64,
    /// Reads it did not.
    pub cache_misses: u64,
    /// Bytes the page cache holds.
    pub cache_bytes: u64,
    /// Layers consulted by all reads (read amplification).
    pub layers_visited: u64,
    /// Ancestors descended into by all reads.
    pub ancestors_descended: u64,
    /// Bytes held now by open and frozen layers (unflushed versions).
    pub memory_bytes: u64,
    /// Layer files now live, by level: L0 deltas, L1 deltas, images.
    pub layers_l0: u64,
    /// See `layers_l0`.
    pub layers_l1: u64,
    /// See `layers_l0`.
    pub layers_image: u64,
    /// Frozen layers written to L0 files.
    pub flushes: u64,
    /// Bytes of L0 files written.
    pub flushed_bytes: u64,
    /// Memory held by the largest layer frozen and flushed so far: writers wait while
    /// open layers hold half the memory budget, so this stays near that bound however fast
    /// they write.
    pub largest_frozen_bytes: u64,
    /// L0-to-L1 merges.
    pub compactions: u64,
    /// Bytes of L1 files written by merges.
    pub compacted_bytes: u64,
    /// L0 files compaction moved to L1 as they were, not rewritten (key-disjoint from
    /// every other L0 file it compacted).
    pub layers_moved: u64,
    /// Image layers written.
    pub images_written: u64,
    /// Catalogs published.
    pub catalogs_published: u64,
    /// GC runs.
    pub gc_runs: u64,
    /// Background housekeeping cycles and background GC runs that failed (each is
    /// logged; the WAL still holds everything). Nonzero on a healthy disk is a bug.
    pub housekeeping_failures: u64,
    /// The end of the log: bytes of WAL written over the store's life (an LSN is a byte
    /// position).
    pub wal_end: Lsn,
    /// Bytes of layer files GC removed.
    pub gc_bytes_removed: u64,
    /// WAL records appended since the store was opened (0 in memory).
    pub wal_records: u64,
    /// WAL fsyncs since the store was opened: concurrent commits share them, so
    /// `wal_records / wal_fsyncs` is the mean group (0 in memory).
    pub wal_fsyncs: u64,
    /// Where flushed versions live: layer files or RocksDB.
    pub backend: crate::backend::Backend,
    /// Bytes of RocksDB table files (0 with layer files).
    pub rocksdb_bytes: u64,
}

/// Totals behind `StoreStats`.
#[derive(Debug, Default)]
pub(super) struct ReadCounters {
    reads: AtomicU64,
    layers_visited: AtomicU64,
    ancestors_descended: AtomicU64,
}

impl Store {
    /// The page `key` of `branch` as it was `at`: `None` if it was never written or was
    /// dropped. An LSN past the branch's head and a time before its history are errors.
    pub fn get_page(&self, branch: &str, key: Key, at: At) -> Result<Option<Bytes>> {
        let target = self.inner.branch(branch)?;
        Ok(self.inner.read_page_checked(&target, key, at)?.0)
    }

    /// `get_page`, also saying which state it read (LSN and commit time) and what the
    /// read took (read amplification).
    pub fn get_page_traced(
        &self,
        branch: &str,
        key: Key,
        at: At,
    ) -> Result<(Option<Bytes>, ReadTrace)> {
        let target = self.inner.branch(branch)?;
        let (page, mut trace) = self.inner.read_page_checked(&target, key, at)?;
        trace.commit_time = commit_time_on(&target, trace.lsn);
        Ok((page, trace))
    }

    /// Tells the store that pages `first..=last` of `branch` are about to be read `at`,
    /// so it starts reading their layer file blocks from disk now, all at once (a file
    /// read of a megabyte is then one large read, not a fault per page). Only a hint:
    /// it returns at once and never changes what a read answers; an unknown branch or an
    /// `at` a read would refuse is the same error `get_page` gives.
    pub fn prefetch(&self, branch: &str, first: Key, last: Key, at: At) -> Result<()> {
        let inner = &self.inner;
        let target = inner.branch(branch)?;
        let lsn = inner.resolve(&target, at)?;
        inner.prefetch(&target, first, last, lsn, Depth::Newest);
        Ok(())
    }

    /// `prefetch` of every version of pages `first..=last`, not only the newest: for pages
    /// patched often (a file tree's inode table), whose rebuild reads a chain of versions.
    /// A hint, as `prefetch` is, refusing what it refuses.
    pub fn prefetch_history(&self, branch: &str, first: Key, last: Key, at: At) -> Result<()> {
        let inner = &self.inner;
        let target = inner.branch(branch)?;
        let lsn = inner.resolve(&target, at)?;
        inner.prefetch(&target, first, last, lsn, Depth::ToWhole);
        Ok(())
    }

    /// Every key in `first..=last` with a version a read of `branch` at its head can see
    /// (its own, and its ancestors' below its branch point), in key order: a superset of
    /// the pages there (a dropped page's key is listed too). Costs the versions stored in
    /// the range, not its size: how a file tree finds the pages of a sparse file.
    pub fn keys_in(&self, branch: &str, first: Key, last: Key) -> Result<Vec<Key>> {
        let inner = &self.inner;
        let target = inner.branch(branch)?;
        let keys = inner.keys_seen(&target, first, last, target.head())?;
        Ok(keys.into_iter().collect())
    }

    /// Counters since the store was opened.
    pub fn stats(&self) -> StoreStats {
        let inner = &self.inner;
        let counters = &inner.read_counters;
        let housekeeping = &inner.housekeeping_counters;
        let (mut layers_l0, mut layers_l1, mut layers_image) = (0, 0, 0);
        for branch in inner.catalog.read().branches() {
            for layer in branch.state.read().layers.iter() {
                *match layer.level {
                    Level::L0 => &mut layers_l0,
                    Level::L1 => &mut layers_l1,
                    Level::Image => &mut layers_image,
                } += 1;
            }
        }
        let wal = inner.log.stats();
        StoreStats {
            backend: self.backend(),
            rocksdb_bytes: inner.version_db.as_ref().map_or(0, |db| db.disk_bytes()),
            memory_bytes: inner.memory.load(Ordering::Relaxed),
            layers_l0,
            layers_l1,
            layers_image,
            flushes: housekeeping.flushes.load(Ordering::Relaxed),
            flushed_bytes: housekeeping.flushed_bytes.load(Ordering::Relaxed),
            largest_frozen_bytes: housekeeping.largest_frozen_bytes.load(Ordering::Relaxed),
            compactions: housekeeping.compactions.load(Ordering::Relaxed),
            compacted_bytes: housekeeping.compacted_bytes.load(Ordering::Relaxed),
            layers_moved: housekeeping.layers_moved.load(Ordering::Relaxed),
            images_written: housekeeping.images_written.load(Ordering::Relaxed),
            catalogs_published: housekeeping.catalogs_published.load(Ordering::Relaxed),
            gc_runs: housekeeping.gc_runs.load(Ordering::Relaxed),
            housekeeping_failures: housekeeping.background_failures.load(Ordering::Relaxed),
            wal_end: inner.log.end(),
            wal_records: wal.records,
            wal_fsyncs: wal.fsyncs,
            gc_bytes_removed: housekeeping.gc_bytes_removed.load(Ordering::Relaxed),
            page_reads: counters.reads.load(Ordering::Relaxed),
            cache_hits: inner.cache.hits(),
            cache_misses: inner.cache.misses(),
            cache_bytes: inner.cache.bytes(),
            layers_visited: counters.layers_visited.load(Ordering::Relaxed),
            ancestors_descended: counters.ancestors_descended.load(Ordering::Relaxed),
        }
    }
}

/// Appends `branch`'s own versions of `key` at or below `lsn`, newest first (nothing, and
/// no layer visited, when `key` is outside the keys the branch ever wrote): the open
/// layer, the frozen one, then the layer files that may hold the key, newest first (or,
/// with the RocksDB backend, its flushed versions there), as far back as `depth` says.
/// Says whether that was far enough (an initializing version, an image layer's proof, or
/// for `Depth::Newest` any version), so the walk can stop, or that the branch was deleted
/// (its versions are gone).
fn collect_from_branch(
    branch: &Branch,
    version_db: Option<&VersionDb>,
    key: Key,
    lsn: Lsn,
    depth: Depth,
    out: &mut Vec<Update>,
    layers_visited: &mut u32,
) -> Result<Walk> {
    if !branch.key_bounds.may_hold(key) {
        return Ok(Walk::Continue);
    }
    let state = branch.state.read();
    if state.deleted {
        return Ok(Walk::Deleted);
    }
    *layers_visited += 1;
    if state.open.collect_versions(key, lsn, depth, out) {
        return Ok(Walk::Done);
    }
    if let Some((frozen, _)) = &state.frozen {
        *layers_visited += 1;
        if frozen.collect_versions(key, lsn, depth, out) {
            return Ok(Walk::Done);
        }
    }
    if let Some(db) = version_db {
        // Versions above `flushed` are in memory; any in the database too (a flush under
        // way, or one a crash cut short) must not be read twice.
        *layers_visited += 1;
        let complete = db.collect_versions(branch.id, key, lsn.min(state.flushed), depth, out)?;
        return Ok(if complete { Walk::Done } else { Walk::Continue });
    }
    let mut layers = state.layers.search(key, lsn);
    let evicted: Vec<Arc<LayerFile>> = loop {
        let Some(layer) = layers.next() else {
            return Ok(Walk::Continue);
        };
        *layers_visited += 1;
        match layer.file.collect_resident_versions(key, lsn, depth, out)? {
            Some(true) => return Ok(Walk::Done),
            Some(false) => {}
            None => {
                break std::iter::once(layer)
                    .chain(layers)
                    .map(|layer| Arc::clone(&layer.file))
                    .collect();
            }
        }
    };
    // From the first evicted layer on, the walk lets go of the branch: a download may take
    // minutes (a stalled S3 server), and a commit waiting for the lock meanwhile would
    // hold up every other read of the branch too (a review found one waiting 121 s). The
    // layers are immutable and were the branch's when the lock was held, so they answer
    // as they would have; one that a compaction, GC or deletion removed since may be gone
    // from the source too, and its failure then means walking again.
    drop(state);
    for (nth, layer) in evicted.iter().enumerate() {
        if nth > 0 {
            *layers_visited += 1;
        }
        match layer.collect_versions(key, lsn, depth, out) {
            Ok(true) => return Ok(Walk::Done),
            Ok(false) => {}
            Err(error) => {
                let state = branch.state.read();
                let listed = state
                    .layers
                    .iter()
                    .any(|current| Arc::ptr_eq(&current.file, layer));
                return match (state.deleted, listed) {
                    (true, _) => Ok(Walk::Deleted),
                    (false, false) => Ok(Walk::Again),
                    (false, true) => Err(error),
                };
            }
        }
    }
    Ok(Walk::Continue)
}

/// How a read's walk goes on after one branch of the lineage.
enum Walk {
    /// The page is complete.
    Done,
    /// Older versions are needed: on to the parent.
    Continue,
    /// The branch was deleted while the read walked (its versions are freed).
    Deleted,
    /// A layer the walk read had been replaced meanwhile, and could not be read: walk
    /// again over the branch's layers as they are now.
    Again,
}

impl StoreInner {
    /// A read of `key` on `target` as it was `at`, refused if GC collected what it
    /// needed while it read.
    fn read_page_checked(
        &self,
        target: &Arc<Branch>,
        key: Key,
        at: At,
    ) -> Result<(Option<Bytes>, ReadTrace)> {
        let epoch = self.cutoff_epoch.load(Ordering::Acquire);
        let lsn = self.resolve(target, at)?;
        let read = self.read_page_cached(target, key, lsn)?;
        // GC moves cutoffs (and bumps the epoch) before it removes anything below them: if
        // they moved during the read and past `lsn`, the read may have missed collected
        // versions. A read that saw a removal sees the bump.
        if self.cutoff_epoch.load(Ordering::Acquire) != epoch {
            self.check_available(target, lsn, requested_time(at))?;
        }
        Ok(read)
    }

    /// `Store::prefetch` (`Depth::Newest`) and `Store::prefetch_history`
    /// (`Depth::ToWhole`) for a branch and LSN already resolved. Newest: for each key, the
    /// block a read would find first (its newest version in memory or in the newest layer
    /// holding one), walking the lineage and each branch's layers newest first as reads
    /// do, so layers whose versions are superseded are not read. To whole: every block of
    /// the keys' versions in every layer of the lineage that may hold them.
    pub(super) fn prefetch(&self, branch: &Branch, first: Key, last: Key, lsn: Lsn, depth: Depth) {
        let mut found = std::collections::BTreeSet::new();
        for (current, seen_at) in branch.lineage(lsn) {
            let layers: Vec<Arc<LayerFile>> = {
                let state = current.state.read();
                if state.deleted {
                    break;
                }
                if depth == Depth::Newest {
                    found.extend(state.open.keys_in(first, last, seen_at));
                    if let Some((frozen, _)) = &state.frozen {
                        found.extend(frozen.keys_in(first, last, seen_at));
                    }
                }
                state
                    .layers
                    .iter()
                    .rev()
                    .filter(|layer| layer.file.may_hold_range(first, last, seen_at))
                    .map(|layer| Arc::clone(&layer.file))
                    .collect()
            };
            // Asking the kernel to read ahead may wait for the disk's queue: not under
            // the branch's lock, which its reads and its housekeeping take. A layer
            // replaced meanwhile is still mapped, and this is only a hint.
            for file in layers {
                match depth {
                    Depth::Newest => file.prefetch_newest(first, last, seen_at, &mut found),
                    Depth::ToWhole => file.prefetch_all_versions(first, last, seen_at),
                }
            }
        }
    }

    /// The LSN that `at` means on `branch`: refused past the head, below the start of
    /// the history it reads (an LSN: its root's start), before that history (a time) or
    /// below the GC cutoff.
    pub(super) fn resolve(&self, branch: &Branch, at: At) -> Result<Lsn> {
        Ok(self.resolve_at(branch, at)?.0)
    }

    /// `resolve`, also giving the time answer when `at` is a time.
    pub(super) fn resolve_at(&self, branch: &Branch, at: At) -> Result<(Lsn, Option<LsnForTime>)> {
        let (lsn, answer) = self.resolve_unchecked(branch, at)?;
        self.check_available(branch, lsn, requested_time(at))?;
        Ok((lsn, answer))
    }

    /// `resolve_at` without the check that GC kept the state there (the caller's, once
    /// it has made checks that come first).
    pub(super) fn resolve_unchecked(
        &self,
        branch: &Branch,
        at: At,
    ) -> Result<(Lsn, Option<LsnForTime>)> {
        let head = branch.head();
        let (lsn, answer) = match at {
            At::Latest => (head, None),
            At::Lsn(lsn) if lsn > head => {
                return Err(EngineError::LsnPastHead {
                    branch: branch.name(),
                    lsn,
                    head,
                });
            }
            At::Lsn(lsn) => {
                let start = branch.history_start();
                if lsn < start {
                    return Err(EngineError::LsnBelowBranchStart {
                        branch: branch.name(),
                        lsn,
                        start,
                    });
                }
                (lsn, None)
            }
            At::Time(time) => {
                let answer = self.lsn_for_time_on(branch, time);
                if answer.kind == TimeKind::Past {
                    return Err(self.time_before_history(branch, time));
                }
                (answer.lsn, Some(answer))
            }
        };
        Ok((lsn, answer))
    }

    /// The refusal of a read or branch at `time`, which is before `branch`'s history.
    pub(super) fn time_before_history(&self, branch: &Branch, time: Timestamp) -> EngineError {
        EngineError::TimeBeforeHistory {
            branch: branch.name(),
            requested: time,
            earliest: self.earliest_commit_time(branch).unwrap_or(time),
        }
    }

    /// `key` as `branch` sees it at `lsn` (at or below its head), from the cache or rebuilt.
    pub(super) fn read_page_cached(
        &self,
        branch: &Arc<Branch>,
        key: Key,
        lsn: Lsn,
    ) -> Result<(Option<Bytes>, ReadTrace)> {
        self.read_counters.reads.fetch_add(1, Ordering::Relaxed);
        if let Some(page) = self.cache.get(branch.id, key, lsn) {
            let trace = ReadTrace {
                cache_hit: true,
                ..ReadTrace::uncached(lsn)
            };
            return Ok((page, trace));
        }
        let (page, trace) = self.read_page(branch, key, lsn)?;
        self.cache.insert(branch.id, key, lsn, page.clone());
        let counters = &self.read_counters;
        counters
            .layers_visited
            .fetch_add(u64::from(trace.layers_visited), Ordering::Relaxed);
        counters
            .ancestors_descended
            .fetch_add(u64::from(trace.ancestors_descended), Ordering::Relaxed);
        Ok((page, trace))
    }

    /// Rebuilds `key` as `branch` sees it at `lsn`.
    pub(super) fn read_page(
        &self,
        branch: &Arc<Branch>,
        key: Key,
        lsn: Lsn,
    ) -> Result<(Option<Bytes>, ReadTrace)> {
        let mut trace = ReadTrace::uncached(lsn);
        let (versions, lsn) =
            self.collect_versions(branch, key, lsn, Depth::ToWhole, &mut trace)?;
        let page = reconstruct(key, &versions, self.page_size).map_err(|error| {
            EngineError::CorruptRecord {
                lsn,
                reason: format!(
                    "cannot rebuild {} on branch {:?}: {}",
                    error.key,
                    branch.name(),
                    error.reason
                ),
            }
        })?;
        Ok((page, trace))
    }

    /// The versions of `key` that `branch` sees at `lsn`, newest first, as far back as
    /// `depth` says, through the lineage; with the LSN the walk ended at (in the last
    /// branch it looked at).
    fn collect_versions(
        &self,
        branch: &Arc<Branch>,
        key: Key,
        lsn: Lsn,
        depth: Depth,
        trace: &mut ReadTrace,
    ) -> Result<(Vec<Update>, Lsn)> {
        let mut versions = Vec::new();
        let requested = lsn;
        let mut lsn = lsn;
        // An ancestor is deleted only after its last child was detached, which gave the
        // child copies of everything it read there: a walk that meets one walks again.
        'walk: loop {
            versions.clear();
            for (descended, (current, seen_at)) in branch.lineage(requested).enumerate() {
                lsn = seen_at;
                trace.ancestors_descended = descended as u32;
                let walk = collect_from_branch(
                    current,
                    self.version_db.as_deref(),
                    key,
                    lsn,
                    depth,
                    &mut versions,
                    &mut trace.layers_visited,
                )?;
                match walk {
                    Walk::Done => break 'walk,
                    Walk::Continue => {}
                    Walk::Deleted if descended == 0 => {
                        return Err(EngineError::UnknownBranch {
                            name: branch.name(),
                        });
                    }
                    Walk::Deleted | Walk::Again => continue 'walk,
                }
            }
            break;
        }
        Ok((versions, lsn))
    }

    /// Whether `key` exists on `branch` at `lsn`: its newest version there is an image or
    /// a patch (a patch is logged only over a page that exists). Nothing is rebuilt: a
    /// commit asks this of every page it patches.
    pub(super) fn page_exists(&self, branch: &Arc<Branch>, key: Key, lsn: Lsn) -> Result<bool> {
        if let Some(page) = self.cache.get(branch.id, key, lsn) {
            return Ok(page.is_some());
        }
        let mut trace = ReadTrace::uncached(lsn);
        let (versions, _) = self.collect_versions(branch, key, lsn, Depth::Newest, &mut trace)?;
        Ok(versions
            .first()
            .is_some_and(|newest| *newest != Update::Drop))
    }
}

/// The time a request named, if it named one.
pub(super) fn requested_time(at: At) -> Option<Timestamp> {
    match at {
        At::Time(time) => Some(time),
        At::Latest | At::Lsn(_) => None,
    }
}
