//! Detach (Neon's detach-ancestor): a branch gets copies of everything it reads through
//! its ancestors, then its link to its parent is cut. Reads at every LSN the branch allows
//! answer as before; afterwards the parent can be deleted and GC no longer keeps the
//! parent's history for it.
//!
//! What is copied: per key, every version the branch can read through its ancestors from
//! its *base* (its effective GC cutoff, at most the branch point) up to the branch point,
//! and below the base the newest version at or below each retained point (its children's
//! branch points and leases that reach below the base), materialized where the chain
//! below it is not copied (the same rule GC keeps, `gc::version_fates`). Every copy keeps
//! its original LSN, so diffs, leases and time lookups see the same history; the
//! ancestors' commit points up to the branch point are copied too.
//!
//! Invariants it keeps:
//! - Copies are older than every version the branch wrote itself (those are above its
//!   branch point), so they go where the oldest versions live: L1 deltas over
//!   `[old root's start, branch point]` on disk, the open layer in memory (an in-memory
//!   store has no layer files).
//! - The copies are in place before the link is cut: a read that walked to the parent
//!   and one that stops at the branch find the same versions.
//! - One WAL record: the points (which depend on leases and the clock) are logged, so
//!   replay copies the same versions. The live path writes the layer files before
//!   logging; replay writes them again (same ranges and bytes; under another generation
//!   number if the live run's files are still there, which are then debris).
//! - It runs under the housekeeping lock (no flush, compaction or GC moves versions while
//!   they are copied) and `branch_ops`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use pagefork_wal::Lsn;

use super::StoreInner;
use super::checkpoint::LAYERS_DIR_NAME;
use super::compaction::{DeferredInput, L1Writer, MergeInput, MergedVersions};
use crate::Store;
use crate::backend::VersionDb;
use crate::branch::BranchInfo;
use crate::catalog::{Branch, CommitPoint};
use crate::error::{EngineError, Result};
use crate::history::{HistoryEntry, HistoryOperation};
use crate::key::Key;
use crate::layer::PersistedLayer;
use crate::log::Log;
use crate::record::Record;
use crate::time::Timestamp;
use crate::update::Update;

/// What a detach gives a branch.
struct Inherited {
    /// Copied versions: layer files on disk, or versions for the open layer in memory.
    versions: InheritedVersions,
    /// Bounds of the copied keys, if any were copied.
    keys: Option<(Key, Key)>,
    /// The ancestors' commit points up to the branch point, oldest first.
    commits: Vec<CommitPoint>,
    /// Where its history now starts: its old root's start.
    start: Lsn,
    /// The oldest state it keeps whole: its cutoff from now on.
    base: Lsn,
    /// How many versions were copied.
    copied: u64,
}

enum InheritedVersions {
    Layers(Vec<PersistedLayer>),
    /// Copies for the open layer (in memory) or for RocksDB, written when applied.
    Copies(Vec<(Key, Lsn, Update)>),
}

impl Store {
    /// Detaches branch `name` from its parent: it gets copies of every page version it
    /// reads through its ancestors (from its GC cutoff up to its branch point, and what its
    /// children and leases need below that), its link to the parent is cut, and reads answer
    /// as before. Afterwards it is a root: the parent can be deleted, and GC keeps nothing
    /// of the parent's for it. Refused for a root. Costs a copy of the pages it sees at its
    /// branch point plus the history it can still read below it.
    pub fn detach_branch(&self, name: &str) -> Result<BranchInfo> {
        self.inner.check_poisoned()?;
        // Its record would be refused after its layers were written.
        self.inner.now_in_range()?;
        let detached = self.detach_branch_unguarded(name);
        self.inner.poison_on_io_error(detached)
    }

    fn detach_branch_unguarded(&self, name: &str) -> Result<BranchInfo> {
        let inner = &self.inner;
        let _cycle = inner.housekeeping.lock();
        let ops = inner.branch_ops.lock();
        inner.sweep_expired_locked()?;
        let branch = inner.branch(name)?;
        let Some((_, branch_point)) = branch.parent() else {
            return Err(EngineError::NoParent {
                branch: name.to_owned(),
            });
        };
        let points = inner.detach_points(&branch, branch_point);
        let inherited = inner.inherit(&branch, branch_point, &points)?;
        let record = Record::DetachBranch {
            id: branch.id,
            points,
        };
        let (lsn, time) = inner.log_record(&record)?;
        inner.apply_detach(&branch, inherited, lsn, time)?;
        // The old parent may be an expired branch that was kept only for this one.
        inner.sweep_expired_locked()?;
        drop(ops);
        if let (Log::Wal(wal), Some(dir)) = (&inner.log, &inner.dir) {
            inner.publish_catalog(wal, dir, &dir.join(LAYERS_DIR_NAME))?;
        }
        self.branch_info(name)
    }
}

impl StoreInner {
    /// Replays a detach record.
    pub(super) fn replay_detach(
        &self,
        branch: &Arc<Branch>,
        points: &[Lsn],
        lsn: Lsn,
        time: Timestamp,
    ) -> Result<()> {
        let Some((_, branch_point)) = branch.parent() else {
            return Err(EngineError::CorruptRecord {
                lsn,
                reason: format!("detach of {}, which has no parent", branch.id),
            });
        };
        if points.last().is_none_or(|base| *base > branch_point) {
            return Err(EngineError::CorruptRecord {
                lsn,
                reason: format!(
                    "detach of {} keeps states above its branch point {branch_point}",
                    branch.id
                ),
            });
        }
        let inherited = self.inherit(branch, branch_point, points)?;
        self.apply_detach(branch, inherited, lsn, time)
    }

    /// The states below the branch point a detach of `branch` keeps, ascending: those
    /// below its base that its children and leases retain, then the base (its effective
    /// cutoff, at most the branch point). The caller holds `branch_ops`.
    fn detach_points(&self, branch: &Branch, branch_point: Lsn) -> Vec<Lsn> {
        let base = branch.effective_cutoff().min(branch_point);
        let catalog = self.catalog.read();
        let retained = self.retain_points(&catalog, self.clock.now());
        let mut points: Vec<Lsn> = retained
            .get(&branch.id)
            .into_iter()
            .flatten()
            .map(|point| point.lsn)
            .filter(|lsn| *lsn < base)
            .collect();
        points.sort_unstable();
        points.dedup();
        points.push(base);
        points
    }

    /// Copies what `branch` reads through its ancestors at the `points` (the last is the
    /// base) and above the base up to `branch_point`; on disk, writes them as layer files.
    /// The ancestors' versions stream through a merge into the layer writer, a key at a
    /// time, so a detach holds one output layer in memory, not the history it copies (it
    /// held all of it: 2.1 GB of memory to detach a branch of a 2 GiB tree). The RocksDB
    /// backend and an in-memory store still gather the copies first.
    fn inherit(
        &self,
        branch: &Arc<Branch>,
        branch_point: Lsn,
        points: &[Lsn],
    ) -> Result<Inherited> {
        let base = points.last().copied().unwrap_or(branch_point);
        let mut inputs: Vec<MergeInput> = Vec::new();
        let mut deferred: Vec<DeferredInput> = Vec::new();
        let mut commits: Vec<CommitPoint> = Vec::new();
        let mut start = branch.start();
        for (ancestor, seen) in branch.lineage(branch_point).skip(1) {
            start = ancestor.start();
            own_versions_up_to(
                self.version_db.as_deref(),
                ancestor,
                seen,
                (&mut inputs, &mut deferred),
            )?;
            let state = ancestor.state.read();
            let mut older = state.commits.to_vec_up_to(seen);
            older.append(&mut commits);
            commits = older;
        }
        let layers_dir = self.dir.as_ref().map(|dir| dir.join(LAYERS_DIR_NAME));
        let mut sink = match (&self.log, &layers_dir) {
            (Log::Wal(_), Some(layers_dir)) if self.version_db.is_none() => {
                self.fs
                    .create_dir_all(layers_dir)
                    .map_err(EngineError::io("create directory", layers_dir))?;
                // Every copy is at or above the old root's start, which a replay of the
                // detach finds the same: its layers get the same ranges.
                CopySink::Layers(L1Writer::spanning(
                    self,
                    branch,
                    layers_dir,
                    start,
                    Lsn(branch_point.0 + 1),
                ))
            }
            _ => CopySink::Copies(Vec::new()),
        };
        let mut keys: Option<(Key, Key)> = None;
        let mut copied = 0u64;
        let mut merged = MergedVersions::of(inputs, deferred)?;
        while let Some(next) = merged.next_key() {
            let (key, mut history) = next?;
            // The same version in two places (the RocksDB backend's and a frozen layer's)
            // is one version.
            history.dedup_by_key(|(lsn, _)| *lsn);
            self.keep_versions(branch, key, history, (base, points), |lsn, update| {
                keys = Some((keys.map_or(key, |(first, _)| first), key));
                copied += 1;
                sink.push(key, lsn, update)
            })?;
        }
        let versions = match sink {
            CopySink::Layers(writer) => InheritedVersions::Layers(writer.finish()?),
            CopySink::Copies(copies) => InheritedVersions::Copies(copies),
        };
        Ok(Inherited {
            versions,
            keys,
            commits,
            start,
            base,
            copied,
        })
    }

    /// Gives `branch` what `inherit` copied and cuts its parent link (logged at `lsn`).
    fn apply_detach(
        &self,
        branch: &Branch,
        inherited: Inherited,
        lsn: Lsn,
        time: Timestamp,
    ) -> Result<()> {
        let Some((parent, branch_point)) = branch.parent() else {
            unreachable!("checked by the caller under branch_ops");
        };
        {
            let mut state = branch.state.write();
            if let Some((first, last)) = inherited.keys {
                branch.key_bounds.widen(first, last);
            }
            match (inherited.versions, &self.version_db) {
                (InheritedVersions::Layers(layers), _) => {
                    for layer in layers {
                        state.layers.insert(layer);
                    }
                }
                (InheritedVersions::Copies(copies), Some(db)) => {
                    // Below the branch point, so below `flushed`: readable at once,
                    // durable with the next catalog (a replay copies them again).
                    db.put_versions(branch.id, &copies)?;
                }
                (InheritedVersions::Copies(copies), None) => {
                    assert!(
                        state.layers.iter().next().is_none() && state.frozen.is_none(),
                        "an in-memory store keeps every version in the open layer"
                    );
                    let before = state.open.bytes();
                    // Newest first: each copy goes below every version of its key there.
                    for (key, lsn, update) in copies.into_iter().rev() {
                        state.open.insert_inherited(key, lsn, update);
                    }
                    let added = state.open.bytes() - before;
                    self.memory.fetch_add(added, Ordering::Relaxed);
                    self.open_memory.fetch_add(added, Ordering::Relaxed);
                }
            }
            assert!(
                inherited.commits.last().is_none_or(|last| {
                    last.lsn <= branch_point
                        && state
                            .commits
                            .first_up_to(Lsn::MAX)
                            .is_none_or(|own| last.lsn < own.lsn && last.time <= own.time)
                }),
                "inherited commit points come before the branch's own"
            );
            state.commits.prepend(inherited.commits);
        };
        let base = inherited.base;
        branch.advance_cutoff(base);
        branch.cut_parent(inherited.start);
        let entry = HistoryEntry {
            lsn,
            time,
            operation: HistoryOperation::Detach,
            branch_id: branch.id,
            branch: branch.name(),
            details: format!(
                "from {:?} ({}) at {branch_point}: {} page versions copied, readable from {base}",
                parent.name(),
                parent.id,
                inherited.copied
            ),
        };
        self.history.lock().push(entry);
        self.remove_old_state_if_unneeded(&parent, branch, lsn, time);
        Ok(())
    }
}

/// Where a detach's copies go: layer files as they come, or a vector.
enum CopySink<'a> {
    Layers(L1Writer<'a>),
    Copies(Vec<(Key, Lsn, Update)>),
}

impl CopySink<'_> {
    fn push(&mut self, key: Key, lsn: Lsn, update: Update) -> Result<()> {
        match self {
            CopySink::Layers(writer) => writer.push(key, lsn, update),
            CopySink::Copies(copies) => {
                copies.push((key, lsn, update));
                Ok(())
            }
        }
    }
}

/// Adds merge inputs for `branch`'s own versions at or below `up_to`: its open and frozen
/// layers' and, deferred, its delta layers' (image layers only summarize them), or its
/// flushed versions in RocksDB (gathered: that backend has no sorted stream to merge).
fn own_versions_up_to(
    db: Option<&VersionDb>,
    branch: &Branch,
    up_to: Lsn,
    (inputs, deferred): (&mut Vec<MergeInput>, &mut Vec<DeferredInput>),
) -> Result<()> {
    let (open, frozen, layers, flushed) = {
        let state = branch.state.read();
        (
            state.open.to_sorted_vec(),
            state
                .frozen
                .as_ref()
                .map(|(frozen, _)| frozen.to_sorted_vec()),
            state.layers.deltas_starting_at_or_below(up_to),
            state.flushed,
        )
    };
    inputs.push(sorted_input(open, up_to));
    inputs.extend(frozen.map(|frozen| sorted_input(frozen, up_to)));
    if let Some(db) = db {
        let mut versions = Vec::new();
        db.for_each_key(branch.id, up_to.min(flushed), |key, of_key| {
            versions.extend(of_key.into_iter().map(|(lsn, update)| (key, lsn, update)));
            Ok(())
        })?;
        inputs.push(sorted_input(versions, up_to));
    }
    // Each opened when the merge reaches its first key: a layer's reader holds a buffer
    // of a megabyte, and an L1 generation's layers are read one after another.
    for layer in layers {
        let first = layer.file.range().key_start;
        deferred.push((
            first,
            Box::new(move || {
                let versions = layer.file.read_sequentially()?;
                Ok(Box::new(versions.filter(move |version| {
                    version.as_ref().map_or(true, |(_, lsn, _)| *lsn <= up_to)
                })) as MergeInput)
            }),
        ));
    }
    Ok(())
}

/// A merge input of `versions` (sorted by key and LSN) at or below `up_to`.
fn sorted_input(versions: Vec<(Key, Lsn, Update)>, up_to: Lsn) -> MergeInput {
    Box::new(
        versions
            .into_iter()
            .filter(move |(_, lsn, _)| *lsn <= up_to)
            .map(Ok),
    )
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{At, BranchOptions, Config};

    fn page(byte: u8) -> Update {
        Update::Image(Bytes::from(vec![byte; 512]))
    }

    /// A crash right after the detach record is logged: replay copies what the live path
    /// would have, and the branch reads as before.
    #[test]
    fn replay_of_a_logged_detach_reads_as_before() {
        let dir = tempfile::tempdir().unwrap();
        // Nothing publishes a catalog on its own, so the record must be replayed.
        let config = Config {
            page_size: 512,
            checkpoint_after_bytes: u64::MAX,
            layer_flush_bytes: u64::MAX,
            memory_budget_bytes: u64::MAX,
            compact_l0_layers: usize::MAX,
            image_after_deltas: usize::MAX,
            gc_period: std::time::Duration::ZERO,
            ..Config::default()
        };
        let store = Store::create(dir.path(), config.clone()).unwrap();
        let keys: Vec<Key> = (0..8).map(|block| Key::new(1, block)).collect();
        let commit = |branch: &str, byte: u8| {
            let updates = keys.iter().map(|key| (*key, page(byte))).collect();
            store.commit(branch, updates).unwrap().lsn
        };
        let first = commit("main", 1);
        store.checkpoint().unwrap();
        commit("main", 2);
        let child = store
            .create_branch("child", "main", At::Latest, BranchOptions::default())
            .unwrap();
        commit("child", 3);
        commit("main", 4);
        let read_all = |store: &Store| -> Vec<Option<Bytes>> {
            [At::Lsn(first), At::Lsn(child.head), At::Latest]
                .iter()
                .flat_map(|at| {
                    keys.iter()
                        .map(|key| store.get_page("child", *key, *at).unwrap())
                })
                .collect()
        };
        let before = read_all(&store);
        {
            let inner = &store.inner;
            let branch = inner.branch("child").unwrap();
            let points = {
                let _ops = inner.branch_ops.lock();
                inner.detach_points(&branch, child.head)
            };
            assert_eq!(
                points,
                vec![Lsn(0)],
                "nothing collected: the whole history is kept"
            );
            let record = Record::DetachBranch {
                id: branch.id,
                points,
            };
            inner.log_record(&record).unwrap();
        }
        drop(store);

        let store = Store::open_with(dir.path(), config).unwrap();
        let info = store.branch_info("child").unwrap();
        assert_eq!(info.parent, None);
        assert_eq!(read_all(&store), before);
        store.delete_branch("main").unwrap();
        assert_eq!(read_all(&store), before);
        let history = store.history();
        assert_eq!(
            history.last().map(|entry| entry.operation),
            Some(HistoryOperation::Delete)
        );
    }
}
