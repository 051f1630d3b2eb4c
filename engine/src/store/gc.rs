//! GC: removes the history no branch can read any more.
//!
//! A run (`Store::gc`, or the background thread every `Config::gc_period`) moves every
//! branch's cutoff forward (see `retention`), snapshots the retain points (child branch
//! points, leases), then for each branch keeps, of its own versions at or below its
//! cutoff, exactly what some retained state needs: for every key, the newest version at
//! or below each retain point and at or below the cutoff itself (the base of every state
//! in the PITR window). A kept patch whose older versions go is materialized into the
//! page it produces. Everything else goes.
//!
//! On disk, the branch's delta layers starting at or below the cutoff are rewritten into
//! L1 layers of the kept versions (and every version above the cutoff) over the same LSN
//! range (delta LSN ranges are disjoint generations, so the output overlaps no other
//! delta), and the image layers below the cutoff in that range (summaries, never needed)
//! are dropped; the catalog then lists the new set and the old files are removed after
//! it is published.
//! Image layers that neither the head nor any retain point would read (newer images cover
//! them for every one) are dropped too, wherever they are (`images`).
//! In memory, the open layer is pruned in place. So a parent with a long-lived child
//! keeps, below its cutoff, one version per key for the child's branch point, not its
//! whole history below it (Neon's GC keeps every layer that starts below a branch point).
//!
//! Invariants it keeps:
//! - Every state a branch can be read at (at or above its effective cutoff, or leased)
//!   and every retain point reads as before GC: kept versions are the newest at or below
//!   each needed point, and the chain from each one to its initializing version is either
//!   wholly kept or replaced by the materialized page.
//! - Cutoffs move before anything is removed, so a read that re-checks its LSN after
//!   reading (`get_page`) never returns a page rebuilt from half-collected history.
//! - A run takes the housekeeping lock (one flush, compaction or GC at a time) and
//!   `branch_ops` only while it moves cutoffs and takes the retain points.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use pagefork_wal::Lsn;

use super::checkpoint::LAYERS_DIR_NAME;
use super::compaction::{L1Writer, MergedVersions};
use super::retention::RetainPoint;
use super::{Store, StoreInner};
use crate::backend::VersionDb;
use crate::branch::BranchId;
use crate::catalog::Branch;
use crate::error::{EngineError, Result};
use crate::key::Key;
use crate::layer::{LayerKind, PersistedLayer};
use crate::log::Log;
use crate::update::Update;

/// What one GC run did.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct GcReport {
    /// Per branch (hidden old states too), parents first.
    pub branches: Vec<BranchGc>,
    /// Page versions removed, all branches.
    pub versions_removed: u64,
    /// Layer files removed.
    pub layers_removed: usize,
    /// Bytes of layer files removed.
    pub bytes_removed: u64,
    /// Layer files written (the kept versions, rewritten).
    pub layers_written: usize,
    /// Bytes of layer files written.
    pub bytes_written: u64,
}

/// What GC did on one branch, and why it kept what it kept.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BranchGc {
    /// The branch's id.
    pub id: BranchId,
    /// Its name (for a hidden old state, the name it had).
    pub name: String,
    /// Whether it is a hidden old state or expired: read by nobody itself, its cutoff is
    /// its head, or lower where its children read through it (see `retention`), and below
    /// that it keeps only its retain points.
    pub unreadable: bool,
    /// Its effective cutoff after this run: it keeps every state from here to its head.
    pub cutoff: Lsn,
    /// States below the cutoff it keeps, and why (branch points and leases).
    pub retained: Vec<RetainPoint>,
    /// Own page versions at or below the cutoff it looked at.
    pub versions_examined: u64,
    /// Of those, the ones it removed.
    pub versions_removed: u64,
    /// Layer files removed.
    pub layers_removed: usize,
    /// Bytes of layer files removed.
    pub bytes_removed: u64,
    /// Layer files written.
    pub layers_written: usize,
    /// Bytes of layer files written.
    pub bytes_written: u64,
}

/// What GC does with one version of a key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum VersionFate {
    /// Some retained state needs it, and its chain is whole.
    Keep,
    /// Some retained state needs it, but older versions of its chain go: it is replaced
    /// by the page it produces.
    Materialize,
    /// No retained state needs it.
    Remove,
}

/// The fate of each of one key's versions (`(LSN, initializing)`, oldest first, all at
/// or below the last point) given the retained `points` (ascending): the newest version
/// at or below each point is needed; a needed patch is materialized unless every version
/// back to its initializing one (or to the first, if none is) is kept too.
pub(crate) fn version_fates(versions: &[(Lsn, bool)], points: &[Lsn]) -> Vec<VersionFate> {
    let lsns: Vec<Lsn> = versions.iter().map(|(lsn, _)| *lsn).collect();
    let needed = needed_versions(&lsns, points);
    let mut chain_whole = true;
    versions
        .iter()
        .zip(needed)
        .map(|((_, initializing), needed)| {
            let fate = match (needed, *initializing || chain_whole) {
                (false, _) => VersionFate::Remove,
                (true, true) => VersionFate::Keep,
                (true, false) => VersionFate::Materialize,
            };
            chain_whole = if *initializing {
                needed
            } else {
                needed && (chain_whole || fate == VersionFate::Materialize)
            };
            fate
        })
        .collect()
}

/// Which of one key's versions (`lsns`, ascending) some point needs: the newest at or
/// below each of `points`.
fn needed_versions(lsns: &[Lsn], points: &[Lsn]) -> Vec<bool> {
    let mut needed = vec![false; lsns.len()];
    for point in points {
        let at_or_below = lsns.partition_point(|lsn| lsn <= point);
        if let Some(slot) = at_or_below.checked_sub(1).and_then(|i| needed.get_mut(i)) {
            *slot = true;
        }
    }
    needed
}

impl Store {
    /// Runs GC now: moves every branch's cutoff to the start of its PITR window, then
    /// removes the history below it that no branch point or lease needs (see the module
    /// docs). Returns what it removed and why it kept the rest. A store on disk also does
    /// this every `Config::gc_period` in the background.
    pub fn gc(&self) -> Result<GcReport> {
        self.inner.run_gc()
    }
}

impl StoreInner {
    /// A GC run (refused once the store is poisoned; an I/O error in it poisons the
    /// store).
    pub(super) fn run_gc(&self) -> Result<GcReport> {
        self.check_poisoned()?;
        self.poison_on_io_error(self.run_gc_unguarded())
    }

    fn run_gc_unguarded(&self) -> Result<GcReport> {
        let _cycle = self.housekeeping.lock();
        let now = self.now_in_range()?;
        let (branches, mut points) = {
            let _ops = self.branch_ops.lock();
            self.advance_cutoffs(now);
            let catalog = self.catalog.read();
            let branches: Vec<Arc<Branch>> = catalog.branches().cloned().collect();
            self.forget_expired_leases(&catalog, now);
            (branches, self.retain_points(&catalog, now))
        };
        let disk = match (&self.log, &self.dir) {
            (Log::Wal(wal), Some(dir)) => Some((wal, dir, dir.join(LAYERS_DIR_NAME))),
            _ => None,
        };
        if let Some((_, _, layers_dir)) = &disk {
            self.fs
                .create_dir_all(layers_dir)
                .map_err(EngineError::io("create directory", layers_dir))?;
        }
        if let (Some(_), Some((wal, dir, layers_dir))) = (&self.version_db, &disk) {
            // RocksDB removes versions in place: the new cutoffs must be durable first, or
            // a power cut would bring back older cutoffs over versions already gone.
            for branch in &branches {
                self.flush_branch(branch, layers_dir, true)?;
            }
            self.publish_catalog(wal, dir, layers_dir)?;
        }
        let mut report = GcReport::default();
        for branch in &branches {
            let cutoff = branch.effective_cutoff();
            let unreadable = !self.keeps_window(branch, now);
            let mut retained = points.remove(&branch.id).unwrap_or_default();
            let read_points: Vec<Lsn> = retained.iter().map(|point| point.lsn).collect();
            // Every state from the cutoff up stays (for an unreadable branch, its head at
            // least: a reset of its child starts there; and what its children read through
            // it below their branch points); below it, only the retain points.
            retained.retain(|point| point.lsn < cutoff);
            let mut needed: Vec<Lsn> = retained.iter().map(|point| point.lsn).collect();
            needed.push(cutoff);
            needed.dedup();
            let mut entry = BranchGc {
                id: branch.id,
                name: branch.name(),
                unreadable,
                cutoff,
                retained,
                versions_examined: 0,
                versions_removed: 0,
                layers_removed: 0,
                bytes_removed: 0,
                layers_written: 0,
                bytes_written: 0,
            };
            let collected = match &disk {
                Some(_) if let Some(db) = &self.version_db => {
                    self.collect_in_db(db, branch, cutoff, &needed, &mut entry)
                }
                Some((_, _, layers_dir)) => self
                    .flush_branch(branch, layers_dir, true)
                    .and_then(|_| {
                        self.collect_layers(branch, layers_dir, cutoff, &needed, &mut entry)
                    })
                    .map(|()| {
                        let (count, bytes) = self.drop_superseded_images(branch, &read_points);
                        entry.layers_removed += count;
                        entry.bytes_removed += bytes;
                    }),
                None => self.prune_open_layer(branch, cutoff, &needed, &mut entry),
            };
            match collected {
                Ok(()) => {}
                // Deleted while GC read it (a materialized page's read says so): nothing of
                // it needs collecting; its files go with the next catalog.
                Err(EngineError::UnknownBranch { .. }) if branch.state.read().deleted => continue,
                Err(error) => return Err(error),
            }
            report.versions_removed += entry.versions_removed;
            report.layers_removed += entry.layers_removed;
            report.bytes_removed += entry.bytes_removed;
            report.layers_written += entry.layers_written;
            report.bytes_written += entry.bytes_written;
            report.branches.push(entry);
        }
        if let Some((wal, dir, layers_dir)) = &disk
            && self.version_db.is_none()
        {
            self.publish_catalog(wal, dir, layers_dir)?;
        }
        let counters = &self.housekeeping_counters;
        counters.gc_runs.fetch_add(1, Ordering::Relaxed);
        counters
            .gc_bytes_removed
            .fetch_add(report.bytes_removed, Ordering::Relaxed);
        tracing::debug!(
            versions_removed = report.versions_removed,
            layers_removed = report.layers_removed,
            bytes_removed = report.bytes_removed,
            "GC ran"
        );
        Ok(report)
    }

    /// GC of a branch's versions in RocksDB: replaces each key's versions with those the
    /// keep rule keeps (one atomic batch per key). The catalog with the new cutoffs is
    /// already durable; the removals become durable with the next one.
    fn collect_in_db(
        &self,
        db: &VersionDb,
        branch: &Arc<Branch>,
        cutoff: Lsn,
        needed: &[Lsn],
        entry: &mut BranchGc,
    ) -> Result<()> {
        let flushed = branch.state.read().flushed;
        db.for_each_key(branch.id, flushed, |key, versions| {
            entry.versions_examined +=
                versions.iter().filter(|(lsn, _)| *lsn <= cutoff).count() as u64;
            if versions.first().is_none_or(|(oldest, _)| *oldest > cutoff) {
                return Ok(());
            }
            let old: Vec<Lsn> = versions.iter().map(|(lsn, _)| *lsn).collect();
            let originals = versions.clone();
            let mut kept = Vec::with_capacity(versions.len());
            let dropped =
                self.keep_versions(branch, key, versions, (cutoff, needed), |lsn, update| {
                    kept.push((lsn, update));
                    Ok(())
                })?;
            if kept != originals {
                db.replace_versions(branch.id, key, &old, &kept)?;
                entry.versions_removed += dropped;
            }
            Ok(())
        })
    }

    /// GC of an in-memory branch: prunes its open layer.
    fn prune_open_layer(
        &self,
        branch: &Arc<Branch>,
        cutoff: Lsn,
        needed: &[Lsn],
        entry: &mut BranchGc,
    ) -> Result<()> {
        let mut plans = Vec::new();
        for (key, versions) in branch.state.read().open.history_up_to(cutoff) {
            entry.versions_examined += versions.len() as u64;
            let fates = version_fates(&versions, needed);
            if fates.iter().any(|fate| *fate != VersionFate::Keep) {
                plans.push((key, versions, fates));
            }
        }
        // Materialize outside the state lock (a read takes it); nothing at or below the
        // cutoff changes meanwhile: commits land above the head, and GC runs alone.
        let mut pages = Vec::new();
        for (key, versions, fates) in &plans {
            for ((lsn, _), fate) in versions.iter().zip(fates) {
                if *fate == VersionFate::Materialize {
                    pages.push((*key, *lsn, self.materialized(branch, *key, *lsn)?));
                }
            }
        }
        let mut state = branch.state.write();
        if state.deleted {
            return Ok(());
        }
        let before = state.open.bytes();
        for (key, lsn, page) in pages {
            state.open.materialize(key, lsn, page);
        }
        for (key, versions, fates) in plans {
            for ((lsn, _), fate) in versions.iter().zip(fates) {
                if fate == VersionFate::Remove {
                    state.open.remove_version(key, *lsn);
                    entry.versions_removed += 1;
                }
            }
        }
        let after = state.open.bytes();
        drop(state);
        // Materializing can grow a version; the gauges follow either way.
        if after <= before {
            self.memory.fetch_sub(before - after, Ordering::Relaxed);
            self.open_memory
                .fetch_sub(before - after, Ordering::Relaxed);
        } else {
            self.memory.fetch_add(after - before, Ordering::Relaxed);
            self.open_memory
                .fetch_add(after - before, Ordering::Relaxed);
        }
        Ok(())
    }

    /// GC of a branch's layer files: rewrites the deltas starting at or below the cutoff
    /// (and those their LSN range reaches, `LayerMap::deltas_for_gc_at`) into the
    /// versions `needed` keeps, and drops the images among them.
    fn collect_layers(
        &self,
        branch: &Arc<Branch>,
        layers_dir: &Path,
        cutoff: Lsn,
        needed: &[Lsn],
        entry: &mut BranchGc,
    ) -> Result<()> {
        let (inputs, images) = {
            let state = branch.state.read();
            let inputs = state.layers.deltas_for_gc_at(cutoff);
            let inputs_end = inputs
                .iter()
                .map(|layer| layer.file.range().lsn_end)
                .max()
                .unwrap_or_default();
            let images: Vec<PersistedLayer> = state
                .layers
                .iter()
                .filter(|layer| {
                    let range = layer.file.range();
                    range.kind == LayerKind::Image
                        && range.lsn_start < cutoff
                        && range.lsn_end <= inputs_end
                })
                .cloned()
                .collect();
            (inputs, images)
        };
        if inputs.is_empty() {
            return Ok(());
        }
        // Plan off the indexes alone; rewrite only if something goes.
        let mut history: BTreeMap<Key, Vec<Lsn>> = BTreeMap::new();
        for layer in &inputs {
            for (key, lsn) in layer.file.version_index() {
                if lsn <= cutoff {
                    history.entry(key).or_default().push(lsn);
                }
            }
        }
        let mut removable = 0u64;
        for lsns in history.values_mut() {
            lsns.sort_unstable();
            entry.versions_examined += lsns.len() as u64;
            let unneeded = needed_versions(lsns, needed)
                .into_iter()
                .filter(|needed| !needed)
                .count();
            removable += unneeded as u64;
        }
        drop(history);
        if removable == 0 && images.is_empty() {
            return Ok(());
        }
        let mut outputs = Vec::new();
        if removable > 0 {
            let mut writer = L1Writer::new(self, branch, layers_dir, &inputs);
            let mut merged = MergedVersions::new(&inputs)?;
            while let Some(versions) = merged.next_key() {
                let (key, versions) = versions?;
                entry.versions_removed +=
                    self.keep_versions(branch, key, versions, (cutoff, needed), |lsn, update| {
                        writer.push(key, lsn, update)
                    })?;
            }
            outputs = writer.finish()?;
        }
        let rewritten = if removable > 0 { inputs } else { Vec::new() };
        let removed_layers: Vec<&PersistedLayer> = rewritten.iter().chain(&images).collect();
        let removed_bytes: u64 = removed_layers.iter().map(|layer| layer.size).sum();
        let removed_count = removed_layers.len();
        let written_count = outputs.len();
        let written_bytes: u64 = outputs.iter().map(|layer| layer.size).sum();
        let image_names = images.iter().map(|layer| layer.name.clone()).collect();
        if self.replace_layers(branch, &rewritten, image_names, outputs) {
            entry.layers_removed += removed_count;
            entry.bytes_removed += removed_bytes;
            entry.layers_written += written_count;
            entry.bytes_written += written_bytes;
        }
        Ok(())
    }

    /// Passes to `keep`, oldest first, the versions of one key (`versions`, oldest first)
    /// that the keep rule keeps: all above the cutoff, and at or below it those `needed`
    /// keeps, materialized where their chain goes (the newest at or below the cutoff always
    /// stays, so the chains above it stay whole). Returns how many it dropped. GC writes
    /// what it keeps; a detach copies it.
    pub(super) fn keep_versions(
        &self,
        branch: &Arc<Branch>,
        key: Key,
        versions: Vec<(Lsn, Update)>,
        (cutoff, needed): (Lsn, &[Lsn]),
        mut keep: impl FnMut(Lsn, Update) -> Result<()>,
    ) -> Result<u64> {
        let shape: Vec<(Lsn, bool)> = versions
            .iter()
            .take_while(|(lsn, _)| *lsn <= cutoff)
            .map(|(lsn, update)| (*lsn, update.is_initializing()))
            .collect();
        let mut fates = version_fates(&shape, needed);
        fates.resize(versions.len(), VersionFate::Keep);
        let mut dropped = 0;
        for ((lsn, update), fate) in versions.into_iter().zip(fates) {
            match fate {
                VersionFate::Remove => dropped += 1,
                VersionFate::Keep => keep(lsn, update)?,
                VersionFate::Materialize => keep(lsn, self.materialized(branch, key, lsn)?)?,
            }
        }
        Ok(dropped)
    }

    /// The page `key` of `branch` at `lsn` as one initializing version.
    pub(super) fn materialized(&self, branch: &Arc<Branch>, key: Key, lsn: Lsn) -> Result<Update> {
        Ok(match self.read_page(branch, key, lsn)?.0 {
            Some(page) => Update::Image(page),
            None => Update::Drop,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::VersionFate::{Keep, Materialize, Remove};
    use super::*;

    fn lsns(versions: &[(u64, bool)]) -> Vec<(Lsn, bool)> {
        versions
            .iter()
            .map(|(lsn, initializing)| (Lsn(*lsn), *initializing))
            .collect()
    }

    fn points(points: &[u64]) -> Vec<Lsn> {
        points.iter().map(|lsn| Lsn(*lsn)).collect()
    }

    #[test]
    fn only_the_newest_version_at_or_below_each_point_stays() {
        let versions = lsns(&[(10, true), (20, true), (30, true), (40, true)]);
        assert_eq!(
            version_fates(&versions, &points(&[25, 45])),
            vec![Remove, Keep, Remove, Keep]
        );
        assert_eq!(
            version_fates(&versions, &points(&[5])),
            vec![Remove, Remove, Remove, Remove]
        );
        assert_eq!(
            version_fates(&versions, &points(&[10, 20, 30, 40])),
            vec![Keep, Keep, Keep, Keep]
        );
    }

    #[test]
    fn a_needed_patch_is_materialized_once_its_chain_breaks() {
        // image 10, patch 20, patch 30: keeping only 30 needs it materialized.
        let versions = lsns(&[(10, true), (20, false), (30, false)]);
        assert_eq!(
            version_fates(&versions, &points(&[30])),
            vec![Remove, Remove, Materialize]
        );
        // Keeping 10 and 30: 20 goes, so 30 is materialized; 10 is whole.
        assert_eq!(
            version_fates(&versions, &points(&[15, 35])),
            vec![Keep, Remove, Materialize]
        );
        // Keeping 20 and 30 (20 materialized), then 30 chains onto a whole page.
        assert_eq!(
            version_fates(&versions, &points(&[20, 30])),
            vec![Remove, Materialize, Keep]
        );
    }

    #[test]
    fn patches_on_an_inherited_page_keep_their_chain_when_whole() {
        // No initializing version: the chain runs into the parent, which keeps it.
        let versions = lsns(&[(10, false), (20, false)]);
        assert_eq!(
            version_fates(&versions, &points(&[10, 20])),
            vec![Keep, Keep]
        );
        assert_eq!(
            version_fates(&versions, &points(&[20])),
            vec![Remove, Materialize]
        );
    }
}
