//! Housekeeping: freezing open layers, flushing them to L0 delta files, compacting, and
//! publishing the catalog, in a background thread (and on demand via `checkpoint` and
//! `compact`), while commits go on into fresh open layers.
//!
//! Invariants it keeps:
//! - One housekeeping cycle at a time (`StoreInner::housekeeping`), so layer files are
//!   created only by the cycle that will list them, and a catalog never lists a file
//!   that is not fully published.
//! - A frozen layer leaves memory only after its file is published and in the branch's
//!   layer map, under the branch's state lock: a read sees each version in exactly one
//!   place at every moment.
//! - The memory held by open and frozen layers and by housekeeping's buffers (counted
//!   with `Reservation`) stays about `memory_budget_bytes`: writers wait (before logging
//!   anything) while it is spent or open layers hold half of it, until a flush frees
//!   memory, and fail with `FlushFailed` rather than wait forever if flushing keeps
//!   failing. Open layers never hold more than half, so a frozen layer and its encoding
//!   fit in the rest.
//! - Order on disk per cycle: layer files, then the catalog (which makes them live), then
//!   removal of files it no longer lists, then WAL segments below every branch's
//!   `flushed` LSN. A crash anywhere leaves the previous catalog and a WAL that still
//!   holds everything after it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pagefork_wal::Lsn;
use parking_lot::{Condvar, Mutex};

use super::checkpoint::LAYERS_DIR_NAME;
use super::moves;
use super::{Store, StoreInner};
use crate::catalog::Branch;
use crate::error::{EngineError, Result};
use crate::key::Key;
use crate::layer::{LayerKind, LayerRange, Level, PersistedLayer};
use crate::log::Log;
use crate::update::Update;

/// A write waiting this long for memory is logged (debug): housekeeping fell behind.
const SLOW_MEMORY_WAIT: Duration = Duration::from_millis(100);

/// Thresholds of flushing and compaction (see `Config`).
#[derive(Clone, Copy, Debug)]
pub(super) struct LayerSettings {
    pub(super) flush_bytes: u64,
    pub(super) memory_budget: u64,
    pub(super) checkpoint_after_bytes: u64,
    pub(super) compact_l0_layers: usize,
    pub(super) l1_layer_bytes: u64,
    pub(super) image_after_deltas: usize,
    pub(super) image_after_changed_percent: u32,
    pub(super) gc_period: Duration,
}

/// What a cycle must do beyond what is due.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Force {
    /// Freeze and flush every non-empty open layer.
    pub(super) flush_all: bool,
    /// Compact every branch with L0 layers, and write images wherever a chain is long.
    pub(super) compact: bool,
}

/// Counters of what housekeeping has done.
#[derive(Debug, Default)]
pub(super) struct HousekeepingCounters {
    pub(super) flushes: AtomicU64,
    pub(super) flushed_bytes: AtomicU64,
    pub(super) largest_frozen_bytes: AtomicU64,
    pub(super) compactions: AtomicU64,
    pub(super) compacted_bytes: AtomicU64,
    pub(super) layers_moved: AtomicU64,
    pub(super) images_written: AtomicU64,
    pub(super) catalogs_published: AtomicU64,
    pub(super) gc_runs: AtomicU64,
    pub(super) gc_bytes_removed: AtomicU64,
    /// Background cycles and GC runs that failed (each is logged).
    pub(super) background_failures: AtomicU64,
}

#[derive(Debug, Default)]
struct WorkerState {
    requested: bool,
    shutdown: bool,
    /// The last cycle's error, cleared by a cycle that succeeds.
    last_error: Option<String>,
}

/// How writers and the background thread talk.
#[derive(Debug, Default)]
pub(super) struct WorkerSignals {
    state: Mutex<WorkerState>,
    /// Wakes the background thread.
    wake: Condvar,
    /// Wakes writers waiting for memory after each cycle.
    progress: Condvar,
}

/// Owns the background thread; stops and joins it when the last `Store` handle drops.
#[derive(Debug)]
pub(super) struct WorkerGuard {
    inner: Weak<StoreInner>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.signals.state.lock().shutdown = true;
            inner.signals.wake.notify_all();
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the housekeeping thread panicked");
        }
    }
}

/// Starts the background thread of an on-disk store.
pub(super) fn start_worker(inner: &Arc<StoreInner>) -> WorkerGuard {
    let weak = Arc::downgrade(inner);
    let thread_weak = weak.clone();
    let thread = std::thread::Builder::new()
        .name("pagefork-housekeeping".to_owned())
        .spawn(move || worker_loop(&thread_weak))
        .expect("spawn the housekeeping thread");
    WorkerGuard {
        inner: weak,
        thread: Some(thread),
    }
}

fn worker_loop(weak: &Weak<StoreInner>) {
    let mut last_gc = Instant::now();
    loop {
        // The thread holds the store only while it works, so dropping the last handle
        // ends it.
        let Some(inner) = weak.upgrade() else { return };
        if let Err(error) = inner.sweep_expired_if_any() {
            tracing::warn!(%error, "the expiry sweep failed; expired branches stay refused");
        }
        let period = inner.settings.gc_period;
        if !period.is_zero() && last_gc.elapsed() >= period {
            last_gc = Instant::now();
            match inner.run_gc() {
                Ok(report) => tracing::info!(
                    layers_removed = report.layers_removed,
                    bytes_removed = report.bytes_removed,
                    versions_removed = report.versions_removed,
                    "background GC"
                ),
                Err(error) => {
                    inner
                        .housekeeping_counters
                        .background_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, "background GC failed; nothing was lost");
                }
            }
        }
        let run = {
            let mut state = inner.signals.state.lock();
            if !state.requested && !state.shutdown {
                inner
                    .signals
                    .wake
                    .wait_for(&mut state, Duration::from_millis(200));
            }
            if state.shutdown {
                return;
            }
            std::mem::take(&mut state.requested)
        };
        if !run || inner.check_poisoned().is_err() {
            // A poisoned store writes nothing more until it is reopened.
            continue;
        }
        let outcome = inner.run_cycle(Force::default());
        let failed = outcome.is_err();
        if failed {
            inner
                .housekeeping_counters
                .background_failures
                .fetch_add(1, Ordering::Relaxed);
        }
        inner.signals.state.lock().last_error = outcome.err().map(|error| {
            tracing::warn!(%error, "housekeeping failed; the WAL still holds everything");
            error.to_string()
        });
        inner.signals.progress.notify_all();
        drop(inner);
        if failed {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Store {
    /// Flushes every branch's unflushed versions to layer files, publishes the catalog,
    /// and removes the WAL segments no branch needs any more, so the next `open` replays
    /// only what came after. Returns the LSN the catalog covers. Commits go on while it
    /// runs (the store also does this by itself in the background). An in-memory store
    /// has nothing to write and returns its current end.
    pub fn checkpoint(&self) -> Result<Lsn> {
        self.inner.run_cycle(Force {
            flush_all: true,
            compact: false,
        })
    }

    /// Runs one housekeeping cycle now, as the background thread does when a write asks
    /// for one: flushes the open layers that are due (all of them if enough WAL was
    /// written since the last catalog), compacts what is due, and publishes the catalog if
    /// anything changed. Branches with unflushed versions below the thresholds keep them.
    /// For a store without the background thread (`Config::housekeeping_thread`) and for
    /// tests that want the background's steps at chosen points. Returns the LSN the
    /// published catalog covers.
    pub fn housekeep(&self) -> Result<Lsn> {
        self.inner.run_cycle(Force::default())
    }

    /// The error of the background thread's last housekeeping cycle, if it failed (a cycle
    /// that succeeds clears it); `StoreStats::housekeeping_failures` counts them all.
    pub fn housekeeping_error(&self) -> Option<String> {
        self.inner.signals.state.lock().last_error.clone()
    }

    /// A checkpoint that also compacts now: every branch's L0 deltas are merged into L1
    /// deltas, and image layers are written where a key range has a long delta chain
    /// (`Config::image_after_deltas`). Returns the LSN the catalog covers.
    pub fn compact(&self) -> Result<Lsn> {
        self.inner.run_cycle(Force {
            flush_all: true,
            compact: true,
        })
    }
}

impl StoreInner {
    /// Asks the background thread for a cycle (no-op in memory).
    pub(super) fn request_housekeeping(&self) {
        if self.dir.is_none() {
            return;
        }
        self.signals.state.lock().requested = true;
        self.signals.wake.notify_one();
    }

    /// Called after a change was applied: asks for a cycle if anything is due.
    pub(super) fn housekeeping_if_due(&self, branch_open_bytes: u64) {
        if branch_open_bytes >= self.settings.flush_bytes || self.flush_all_due() {
            self.request_housekeeping();
        }
    }

    /// Whether every open layer should be flushed: open layers hold a quarter of the
    /// memory budget, or enough WAL was written since the last catalog.
    fn flush_all_due(&self) -> bool {
        let settings = &self.settings;
        self.open_memory.load(Ordering::Relaxed) >= settings.memory_budget / 4
            || self.bytes_since_checkpoint.load(Ordering::Relaxed)
                >= settings.checkpoint_after_bytes
    }

    /// Waits, before a write logs anything, until unflushed versions fit the memory
    /// budget.
    pub(super) fn wait_for_memory(&self) -> Result<()> {
        if self.dir.is_none() {
            return Ok(());
        }
        let budget = self.settings.memory_budget;
        let over_budget = || {
            self.memory.load(Ordering::Relaxed) >= budget
                || self.open_memory.load(Ordering::Relaxed) >= budget / 2
        };
        if !over_budget() {
            return Ok(());
        }
        let started = Instant::now();
        let result = self.wait_until(over_budget);
        let waited = started.elapsed();
        if waited >= SLOW_MEMORY_WAIT {
            tracing::debug!(
                waited_ms = waited.as_millis(),
                budget,
                "a write waited for housekeeping to free memory"
            );
        }
        result
    }

    /// Wakes writers waiting for memory to look again (under the lock they check and wait
    /// under, so none misses it between its check and its wait).
    fn wake_writers(&self) {
        let _state = self.signals.state.lock();
        self.signals.progress.notify_all();
    }

    /// Waits while `over_budget`, waking housekeeping, until a flush frees memory.
    fn wait_until(&self, over_budget: impl Fn() -> bool) -> Result<()> {
        let budget = self.settings.memory_budget;
        let mut state = self.signals.state.lock();
        let mut failed_cycles = 0;
        while over_budget() {
            // A poisoned store flushes nothing more: waiting would never end.
            self.check_poisoned()?;
            state.requested = true;
            self.signals.wake.notify_one();
            let timed_out = self
                .signals
                .progress
                .wait_for(&mut state, Duration::from_millis(500))
                .timed_out();
            if let Some(reason) = &state.last_error
                && !timed_out
            {
                failed_cycles += 1;
                if failed_cycles >= 3 {
                    return Err(EngineError::FlushFailed {
                        budget,
                        reason: reason.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// One housekeeping cycle: flush what is due (or everything), compact what is due (or
    /// everything), publish the catalog, remove what it no longer needs. Returns the LSN
    /// the catalog covers. Refused once the store is poisoned; an I/O error in it poisons
    /// the store.
    pub(super) fn run_cycle(&self, force: Force) -> Result<Lsn> {
        self.check_poisoned()?;
        self.poison_on_io_error(self.run_cycle_unguarded(force))
    }

    fn run_cycle_unguarded(&self, force: Force) -> Result<Lsn> {
        let _cycle = self.housekeeping.lock();
        let (Log::Wal(wal), Some(dir)) = (&self.log, &self.dir) else {
            return Ok(self
                .catalog
                .read()
                .branches()
                .map(|branch| branch.head())
                .max()
                .unwrap_or_default());
        };
        let layers_dir = dir.join(LAYERS_DIR_NAME);
        self.fs
            .create_dir_all(&layers_dir)
            .map_err(EngineError::io("create directory", &layers_dir))?;
        let flush_all = force.flush_all || self.flush_all_due();
        let mut branches: Vec<Arc<Branch>> = self.catalog.read().branches().cloned().collect();
        branches.sort_by_key(|branch| branch.id);
        let started = Instant::now();
        let mut changed = false;
        for branch in &branches {
            changed |= self.flush_branch(branch, &layers_dir, flush_all)?;
            self.wake_writers();
        }
        let flushed = started.elapsed();
        for branch in &branches {
            changed |= self.compact_branch(branch, &layers_dir, force.compact)?;
        }
        let compacted = started.elapsed();
        if !changed && !flush_all {
            return Ok(self.catalog_covered());
        }
        let covered = self.publish_catalog(wal, dir, &layers_dir)?;
        tracing::debug!(
            flush_ms = flushed.as_millis(),
            compact_ms = (compacted - flushed).as_millis(),
            publish_ms = (started.elapsed() - compacted).as_millis(),
            "housekeeping cycle"
        );
        Ok(covered)
    }

    /// Freezes the branch's open layer if it is due (or `all` and it is not empty) and
    /// writes the frozen layer to L0 delta files: one, or one per large run of a relation
    /// and one for what lies between them (`moves::flush_pieces`). Returns whether a file
    /// was written.
    pub(super) fn flush_branch(
        &self,
        branch: &Branch,
        layers_dir: &Path,
        all: bool,
    ) -> Result<bool> {
        let (frozen, frozen_head) = {
            let mut state = branch.state.write();
            if state.deleted {
                return Ok(false);
            }
            if state.frozen.is_none() {
                let due = !state.open.is_empty()
                    && (all || state.open.bytes() >= self.settings.flush_bytes);
                if !due {
                    if state.open.is_empty() {
                        // Nothing unflushed: the branch needs no WAL below its head.
                        let head = state.head;
                        state.advance_flushed(head);
                    }
                    return Ok(false);
                }
                let open = std::mem::take(&mut state.open);
                self.open_memory.fetch_sub(open.bytes(), Ordering::Relaxed);
                state.frozen = Some((Arc::new(open), state.head));
            }
            state.frozen.clone().expect("frozen above")
        };
        let versions = frozen.to_sorted_vec();
        let (layers, size) = match &self.version_db {
            Some(db) => {
                db.put_versions(branch.id, &versions)?;
                (Vec::new(), frozen.bytes())
            }
            None => {
                let settings = &self.settings;
                let mut layers = Vec::new();
                for piece in
                    moves::flush_pieces(&versions, settings.flush_bytes, settings.l1_layer_bytes)
                {
                    let slice = versions.get(piece).expect("pieces lie within the versions");
                    layers.push(self.write_l0(branch, layers_dir, slice)?);
                }
                let size = layers.iter().map(|layer| layer.size).sum();
                (layers, size)
            }
        };
        let mut state = branch.state.write();
        if state.deleted {
            // The delete already took the frozen layer's bytes off the memory gauge; the
            // file (or the versions in RocksDB) is debris the next catalog does not list.
            return Ok(false);
        }
        for layer in layers {
            state.layers.insert(layer);
        }
        state.frozen = None;
        state.advance_flushed(frozen_head);
        if state.open.is_empty() {
            let head = state.head;
            state.advance_flushed(head);
        }
        self.memory.fetch_sub(frozen.bytes(), Ordering::Relaxed);
        let counters = &self.housekeeping_counters;
        counters.flushes.fetch_add(1, Ordering::Relaxed);
        counters.flushed_bytes.fetch_add(size, Ordering::Relaxed);
        counters
            .largest_frozen_bytes
            .fetch_max(frozen.bytes(), Ordering::Relaxed);
        Ok(true)
    }

    /// Writes some of a frozen layer's versions (sorted, not empty) to an L0 delta file
    /// whose LSN range is theirs.
    fn write_l0(
        &self,
        branch: &Branch,
        layers_dir: &Path,
        versions: &[(Key, Lsn, Update)],
    ) -> Result<PersistedLayer> {
        let lsns = versions.iter().map(|(_, lsn, _)| *lsn);
        let (Some((key_start, _, _)), Some((key_last, _, _)), Some(lsn_start), Some(lsn_last)) = (
            versions.first(),
            versions.last(),
            lsns.clone().min(),
            lsns.max(),
        ) else {
            unreachable!("a frozen layer is not empty");
        };
        let range = LayerRange {
            kind: LayerKind::Delta,
            branch: branch.id,
            key_start: *key_start,
            key_last: *key_last,
            lsn_start,
            lsn_end: Lsn(lsn_last.0 + 1),
        };
        self.write_layer_file(layers_dir, &range, Level::L0, versions)
    }
}

/// Memory housekeeping holds for a while (a layer being encoded, a merge's output chunk),
/// counted on the store's memory gauge so writers wait for it too; released on drop.
pub(super) struct Reservation<'a> {
    gauge: &'a AtomicU64,
    bytes: u64,
}

impl<'a> Reservation<'a> {
    pub(super) fn new(gauge: &'a AtomicU64) -> Reservation<'a> {
        Reservation { gauge, bytes: 0 }
    }

    pub(super) fn grow(&mut self, bytes: u64) {
        self.gauge.fetch_add(bytes, Ordering::Relaxed);
        self.bytes += bytes;
    }

    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(super) fn release(&mut self) {
        self.gauge.fetch_sub(self.bytes, Ordering::Relaxed);
        self.bytes = 0;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::At;
    use crate::branch::BranchOptions;
    use crate::key::Key;
    use crate::store::{Config, Store};
    use crate::update::Update;

    /// Issue 18's second cause: flushing a branch with nothing unflushed set `flushed` to
    /// its head, which for a branch with no commits yet is its branch point, below the WAL
    /// the last catalog kept. `flushed` only moves forward.
    #[test]
    fn flushing_an_idle_branch_never_lowers_its_flushed_lsn() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            page_size: 512,
            housekeeping_thread: false,
            wal_segment_size: 4096,
            memory_budget_bytes: u64::MAX,
            ..Config::default()
        };
        let store = Store::create(dir.path(), config).unwrap();
        let early = store
            .commit(
                "main",
                vec![(Key::new(1, 0), Update::Image(vec![1; 512].into()))],
            )
            .unwrap()
            .lsn;
        for block in 0..40 {
            store
                .commit(
                    "main",
                    vec![(Key::new(1, block), Update::Image(vec![2; 512].into()))],
                )
                .unwrap();
        }
        store.checkpoint().unwrap();
        store
            .create_branch("idle", "main", At::Lsn(early), BranchOptions::default())
            .unwrap();
        let branch = store.inner.branch("idle").unwrap();
        let before = branch.state.read().flushed;
        assert!(
            before > early,
            "a new branch's flushed LSN starts at its creation"
        );
        let layers_dir = dir.path().join(LAYERS_DIR_NAME);
        assert!(
            !store
                .inner
                .flush_branch(&branch, &layers_dir, false)
                .unwrap()
        );
        assert_eq!(branch.state.read().flushed, before);
    }
}
