//! `LayerMap`: the published layer files of one branch, and the question reads ask of
//! them: "which layers may hold versions of key K at or below LSN L, newest first".
//!
//! Invariants it keeps (asserted on every insert):
//! - Two delta layers whose key ranges overlap have disjoint LSN ranges, so walking layers
//!   by descending LSN end visits every version of a key newest first.
//! - Layers are kept sorted by (LSN end, delta before image, first key); the walk goes
//!   backwards, so at one LSN end an image (which holds everything up to its LSN) is
//!   consulted before the delta it summarizes, and stops the walk.

use std::sync::Arc;

use pagefork_wal::Lsn;

use super::{LayerFile, LayerKind};
use crate::key::Key;

/// Where a layer sits in the compaction scheme.
#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
pub enum Level {
    /// A delta written by a flush: every key the open layer held, one LSN range.
    L0,
    /// A delta written by compaction: one key-range partition of several merged L0s.
    L1,
    /// An image layer: every page of a key range at one LSN.
    Image,
}

impl Level {
    /// The catalog's code for the level.
    pub(crate) fn code(self) -> u8 {
        match self {
            Level::L0 => 0,
            Level::L1 => 1,
            Level::Image => 2,
        }
    }

    /// The level a catalog code names.
    pub(crate) fn from_code(code: u8) -> Option<Level> {
        match code {
            0 => Some(Level::L0),
            1 => Some(Level::L1),
            2 => Some(Level::Image),
            _ => None,
        }
    }
}

/// A published layer file of a branch, as the catalog lists it.
#[derive(Debug, Clone)]
pub(crate) struct PersistedLayer {
    pub(crate) file: Arc<LayerFile>,
    /// File name inside the store's `layers` directory.
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) checksum: u32,
    pub(crate) level: Level,
}

impl PersistedLayer {
    fn sort_key(&self) -> (Lsn, bool, Key) {
        let range = self.file.range();
        (
            range.lsn_end,
            range.kind == LayerKind::Image,
            range.key_start,
        )
    }
}

/// The published layers of one branch.
#[derive(Debug, Default, Clone)]
pub(crate) struct LayerMap {
    layers: Vec<PersistedLayer>,
}

impl LayerMap {
    /// Adds a layer; asserts the map's invariants (a violation is a bug in compaction or
    /// flushing, or a catalog that `restore` should have refused).
    pub(crate) fn insert(&mut self, layer: PersistedLayer) {
        assert!(
            self.conflict_with(&layer).is_none(),
            "delta layers overlapping in keys must not overlap in LSNs"
        );
        let at = self
            .layers
            .partition_point(|existing| existing.sort_key() <= layer.sort_key());
        self.layers.insert(at, layer);
    }

    /// The name of an existing delta layer that `layer` would overlap in both keys and
    /// LSNs, if any.
    pub(crate) fn conflict_with(&self, layer: &PersistedLayer) -> Option<&str> {
        let new = layer.file.range();
        if new.kind == LayerKind::Image {
            return None;
        }
        self.layers
            .iter()
            .find(|existing| {
                let old = existing.file.range();
                old.kind == LayerKind::Delta
                    && old.key_start <= new.key_last
                    && new.key_start <= old.key_last
                    && old.lsn_start < new.lsn_end
                    && new.lsn_start < old.lsn_end
            })
            .map(|existing| existing.name.as_str())
    }

    /// Removes the layers named in `names`; returns how many it removed.
    pub(crate) fn remove(&mut self, names: &[String]) -> usize {
        let before = self.layers.len();
        self.layers.retain(|layer| !names.contains(&layer.name));
        before - self.layers.len()
    }

    /// Every layer, oldest first.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &PersistedLayer> {
        self.layers.iter()
    }

    /// Layers that may hold versions of `key` at or below `lsn`, newest first.
    pub(crate) fn search(&self, key: Key, lsn: Lsn) -> impl Iterator<Item = &PersistedLayer> {
        self.layers.iter().rev().filter(move |layer| {
            let range = layer.file.range();
            range.covers_key(key) && range.lsn_start <= lsn
        })
    }

    /// The delta layers starting at or below `lsn` (what GC rewrites and a detach copies
    /// from), oldest first.
    pub(crate) fn deltas_starting_at_or_below(&self, lsn: Lsn) -> Vec<PersistedLayer> {
        self.layers
            .iter()
            .filter(|layer| {
                let range = layer.file.range();
                range.kind == LayerKind::Delta && range.lsn_start <= lsn
            })
            .cloned()
            .collect()
    }

    /// What a GC rewrite at `lsn` takes: the delta layers starting at or below it, and
    /// every delta starting below the end of one already taken, oldest first by LSN
    /// start. The rewrite's output spans its inputs' LSN range, so a delta it left behind
    /// must start at or above that range's end (compaction moves L0 files with LSN ranges
    /// of their own into the same generation as the layers it merged).
    pub(crate) fn deltas_for_gc_at(&self, lsn: Lsn) -> Vec<PersistedLayer> {
        let mut deltas: Vec<&PersistedLayer> = self
            .layers
            .iter()
            .filter(|layer| layer.file.range().kind == LayerKind::Delta)
            .collect();
        deltas.sort_by_key(|layer| layer.file.range().lsn_start);
        let mut taken = Vec::new();
        let mut end = Lsn(0);
        for layer in deltas {
            let range = layer.file.range();
            if range.lsn_start > lsn && range.lsn_start >= end {
                break;
            }
            end = end.max(range.lsn_end);
            taken.push(layer.clone());
        }
        taken
    }

    /// The L0 deltas, oldest first.
    pub(crate) fn level_zero(&self) -> Vec<PersistedLayer> {
        self.layers
            .iter()
            .filter(|layer| layer.level == Level::L0)
            .cloned()
            .collect()
    }

    /// The end of the newest LSN range any layer covers (`Lsn(0)` without layers).
    pub(crate) fn lsn_end(&self) -> Lsn {
        self.layers
            .iter()
            .map(|layer| layer.file.range().lsn_end)
            .max()
            .unwrap_or_default()
    }
}
