//! Diff: which pages differ between two branch states.
//!
//! Two states share everything below the point where their histories diverge, so only
//! keys written since then can differ: the keys each side's own branches wrote up to the
//! LSN it sees them at, down to the nearest branch both sides descend from, and the keys
//! that shared branch (and, below its start, its ancestors) wrote between the two LSNs the
//! sides see it at. The cost grows with
//! the pages written since the divergence, not with the data size. Each candidate key is
//! then read on both sides (through the page cache) and compared.

use std::collections::{BTreeMap, BTreeSet};

use pagefork_wal::Lsn;

use super::Store;
use crate::backend::VersionDb;
use crate::branch::At;
use crate::catalog::Branch;
use crate::error::Result;
use crate::key::Key;
use crate::layer::LayerKind;

/// The pages that differ between two branch states, `from` and `to`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PageDiff {
    /// The LSN the `from` side resolved to.
    pub from_lsn: Lsn,
    /// The LSN the `to` side resolved to.
    pub to_lsn: Lsn,
    /// Pages `to` has and `from` does not, in key order.
    pub added: Vec<Key>,
    /// Pages `from` has and `to` does not.
    pub removed: Vec<Key>,
    /// Pages both have, with different bytes.
    pub changed: Vec<Key>,
    /// Keys read on both sides to find these (the cost: keys written since the divergence).
    pub keys_compared: usize,
}

/// Counts of one relation's differing pages.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct RelationDiff {
    /// Pages added.
    pub added: usize,
    /// Pages removed.
    pub removed: usize,
    /// Pages changed.
    pub changed: usize,
}

impl PageDiff {
    /// Counts per relation.
    pub fn by_relation(&self) -> BTreeMap<u32, RelationDiff> {
        let mut relations: BTreeMap<u32, RelationDiff> = BTreeMap::new();
        for key in &self.added {
            relations.entry(key.rel).or_default().added += 1;
        }
        for key in &self.removed {
            relations.entry(key.rel).or_default().removed += 1;
        }
        for key in &self.changed {
            relations.entry(key.rel).or_default().changed += 1;
        }
        relations
    }

    /// Whether the two states hold the same pages.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl Store {
    /// The pages that differ between `from` as it was `from_at` and `to` as it was
    /// `to_at` (each at its latest state, an LSN or a time).
    pub fn diff(&self, from: &str, from_at: At, to: &str, to_at: At) -> Result<PageDiff> {
        let inner = &self.inner;
        let from = inner.branch(from)?;
        let from_lsn = inner.resolve(&from, from_at)?;
        let to = inner.branch(to)?;
        let to_lsn = inner.resolve(&to, to_at)?;
        let db = inner.version_db.as_deref();
        let candidates = candidate_keys(db, &from, from_lsn, &to, to_lsn)?;
        let mut diff = PageDiff {
            from_lsn,
            to_lsn,
            added: Vec::new(),
            removed: Vec::new(),
            changed: Vec::new(),
            keys_compared: candidates.len(),
        };
        for key in candidates {
            let before = inner.read_page_cached(&from, key, from_lsn)?.0;
            let after = inner.read_page_cached(&to, key, to_lsn)?.0;
            match (before, after) {
                (None, Some(_)) => diff.added.push(key),
                (Some(_), None) => diff.removed.push(key),
                (Some(before), Some(after)) if before != after => diff.changed.push(key),
                _ => {}
            }
        }
        Ok(diff)
    }
}

/// Every key that may differ between the two states (see the module docs).
fn candidate_keys(
    db: Option<&VersionDb>,
    from: &Branch,
    from_lsn: Lsn,
    to: &Branch,
    to_lsn: Lsn,
) -> Result<BTreeSet<Key>> {
    let from_line: Vec<(&Branch, Lsn)> = from.lineage(from_lsn).collect();
    let to_line: Vec<(&Branch, Lsn)> = to.lineage(to_lsn).collect();
    let shared = from_line
        .iter()
        .enumerate()
        .find_map(|(from_depth, (branch, seen_from))| {
            to_line
                .iter()
                .position(|(other, _)| other.id == branch.id)
                .zip(to_line.iter().find(|(other, _)| other.id == branch.id))
                .map(|(to_depth, (_, seen_to))| {
                    (from_depth, to_depth, *branch, *seen_from, *seen_to)
                })
        });
    let mut keys = BTreeSet::new();
    let (from_own, to_own) = match shared {
        Some((from_depth, to_depth, branch, seen_from, seen_to)) => {
            // Between the two LSNs the shared branch is seen at, and below its start the
            // same on its ancestors, down to where both sides see the same LSN.
            let (low, high) = (seen_from.min(seen_to), seen_from.max(seen_to));
            for ((level, after), (_, up_to)) in branch.lineage(low).zip(branch.lineage(high)) {
                if after == up_to {
                    break;
                }
                written_between(db, level, after, up_to, &mut keys)?;
            }
            (
                from_line.get(..from_depth).unwrap_or_default(),
                to_line.get(..to_depth).unwrap_or_default(),
            )
        }
        // Separate roots: nothing is shared.
        None => (&from_line[..], &to_line[..]),
    };
    for (branch, seen) in from_own.iter().chain(to_own) {
        written_between(db, branch, Lsn(0), *seen, &mut keys)?;
    }
    Ok(keys)
}

/// Adds the keys `branch` wrote above `after` and at or below `up_to`. Delta layers hold
/// every version the branch wrote (image layers only summarize them), so they and the
/// in-memory layers are enough; with the RocksDB backend, its index by LSN.
fn written_between(
    db: Option<&VersionDb>,
    branch: &Branch,
    after: Lsn,
    up_to: Lsn,
    keys: &mut BTreeSet<Key>,
) -> Result<()> {
    if after >= up_to {
        return Ok(());
    }
    let state = branch.state.read();
    keys.extend(state.open.keys_written(after, up_to));
    if let Some((frozen, _)) = &state.frozen {
        keys.extend(frozen.keys_written(after, up_to));
    }
    if let Some(db) = db {
        keys.extend(db.keys_written(branch.id, after, up_to.min(state.flushed))?);
    }
    for layer in state.layers.iter() {
        let range = layer.file.range();
        if range.kind == LayerKind::Delta && range.lsn_start <= up_to && after < range.lsn_end {
            keys.extend(layer.file.keys_written(after, up_to));
        }
    }
    Ok(())
}
