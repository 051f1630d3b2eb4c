//! Compaction, run by housekeeping cycles: L0 deltas merged into key-range-partitioned L1
//! deltas (or moved to L1 as they are where they overlap no other, `moves`), then image
//! layers written over those ranges where they are due (`images`).
//!
//! Invariants it keeps:
//! - Compaction never drops a version: the L1 layers of a compaction hold exactly the
//!   versions of the L0 layers they replace (merged ones over the LSN range of the files
//!   merged, moved ones over their own), so every read at every LSN answers as before
//!   (history is trimmed only by GC).
//! - New files replace old ones in the layer map in one step under the branch's state
//!   lock; the old files are removed only after a catalog without them is published.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use pagefork_wal::Lsn;

use super::StoreInner;
use super::checkpoint::layer_file_name;
use super::housekeeping::Reservation;
use super::moves;
use crate::catalog::Branch;
use crate::error::{EngineError, Result};
use crate::key::Key;
use crate::layer::{
    LayerFile, LayerKind, LayerRange, Level, PersistedLayer, encoding_memory, marker_path,
    write_layer,
};
use crate::update::Update;

/// Per-version cost in an L1 size estimate beside the payload (block header, CRC, index).
const VERSION_FILE_OVERHEAD: u64 = 56;

impl StoreInner {
    /// Compacts `branch` if due (or `force`): merges its L0 deltas once there are
    /// `compact_l0_layers` of them, then writes images over the merged key ranges where
    /// they are due. Returns whether it wrote anything.
    pub(super) fn compact_branch(
        &self,
        branch: &Arc<Branch>,
        layers_dir: &Path,
        force: bool,
    ) -> Result<bool> {
        let level_zero = {
            let state = branch.state.read();
            if state.deleted {
                return Ok(false);
            }
            state.layers.level_zero()
        };
        let mut candidates = Vec::new();
        if level_zero.len() >= self.settings.compact_l0_layers || (force && !level_zero.is_empty())
        {
            candidates = self.merge_level_zero(branch, layers_dir, &level_zero)?;
        } else if force {
            candidates = newest_l1_ranges(branch);
        }
        // Let go of the merged L0 files now, so their mappings end before images are read.
        drop(level_zero);
        let mut changed = !candidates.is_empty();
        let mut imaged = false;
        for (first, last) in candidates {
            imaged |= self.write_image_if_due(branch, layers_dir, first, last)?;
        }
        if imaged {
            self.drop_images_superseded_now(branch);
        }
        changed |= imaged;
        Ok(changed)
    }

    /// Compacts `level_zero` (all the branch's L0 layers) into L1: moves each file that
    /// overlaps no other in keys and holds a quarter to twice `l1_layer_bytes` as it is
    /// (`moves::split_movable`), and merges the rest into L1 layers of about `l1_layer_bytes`
    /// each, split at key boundaries and at every moved file's first key. Returns the key
    /// ranges of the layers now at L1. The merge streams: a k-way merge over buffered
    /// reads of its inputs, so it holds one output layer in memory, not the inputs.
    fn merge_level_zero(
        &self,
        branch: &Arc<Branch>,
        layers_dir: &Path,
        level_zero: &[PersistedLayer],
    ) -> Result<Vec<(Key, Key)>> {
        let (moved, inputs) = moves::split_movable(level_zero, self.settings.l1_layer_bytes);
        let mut outputs = Vec::new();
        if !inputs.is_empty() {
            let mut writer = L1Writer::new(self, branch, layers_dir, &inputs);
            writer.cut_before(moved.iter().map(|layer| layer.file.range().key_start));
            for version in MergedVersions::new(&inputs)? {
                let (key, lsn, update) = version?;
                writer.push(key, lsn, update)?;
            }
            outputs = writer.finish()?;
        }
        let written: u64 = outputs.iter().map(|layer| layer.size).sum();
        let moved_count = moved.len() as u64;
        outputs.extend(moved.into_iter().map(|layer| PersistedLayer {
            level: Level::L1,
            ..layer
        }));
        let ranges: Vec<(Key, Key)> = outputs
            .iter()
            .map(|layer| {
                let range = layer.file.range();
                (range.key_start, range.key_last)
            })
            .collect();
        if !self.replace_layers(branch, level_zero, Vec::new(), outputs) {
            return Ok(Vec::new());
        }
        let counters = &self.housekeeping_counters;
        counters.compactions.fetch_add(1, Ordering::Relaxed);
        counters
            .compacted_bytes
            .fetch_add(written, Ordering::Relaxed);
        counters
            .layers_moved
            .fetch_add(moved_count, Ordering::Relaxed);
        Ok(ranges)
    }

    /// Swaps `inputs` and `also_removed` for `outputs` in the branch's layer map, in one
    /// step under its state lock. Returns false (changing nothing) if the branch was
    /// deleted meanwhile.
    pub(super) fn replace_layers(
        &self,
        branch: &Branch,
        inputs: &[PersistedLayer],
        also_removed: Vec<String>,
        outputs: Vec<PersistedLayer>,
    ) -> bool {
        let mut names: Vec<String> = inputs.iter().map(|layer| layer.name.clone()).collect();
        names.extend(also_removed);
        let mut state = branch.state.write();
        if state.deleted {
            return false;
        }
        let removed = state.layers.remove(&names);
        assert_eq!(
            removed,
            names.len(),
            "only housekeeping changes a branch's layers, and it runs one cycle at a time"
        );
        for layer in outputs {
            state.layers.insert(layer);
        }
        true
    }

    /// Writes `versions` (sorted, non-empty) as one L1 delta over `lsn_start..lsn_end`.
    fn write_l1(
        &self,
        branch: &Branch,
        layers_dir: &Path,
        versions: &[(Key, Lsn, Update)],
        lsn_start: Lsn,
        lsn_end: Lsn,
    ) -> Result<PersistedLayer> {
        let (Some((first, _, _)), Some((last, _, _))) = (versions.first(), versions.last()) else {
            unreachable!("an L1 layer is written only with versions in it");
        };
        let range = LayerRange {
            kind: LayerKind::Delta,
            branch: branch.id,
            key_start: *first,
            key_last: *last,
            lsn_start,
            lsn_end,
        };
        self.write_layer_file(layers_dir, &range, Level::L1, versions)
    }

    /// Publishes one layer file and opens it.
    pub(super) fn write_layer_file(
        &self,
        layers_dir: &Path,
        range: &LayerRange,
        level: Level,
        versions: &[(Key, Lsn, Update)],
    ) -> Result<PersistedLayer> {
        // A new file never takes the name of an existing one: a listed layer must stay as
        // the catalog describes it until a catalog without it is published.
        let mut generation = 1;
        let (name, path) = loop {
            let name = layer_file_name(range, level, generation);
            let path = layers_dir.join(&name);
            // An evicted layer's name stays taken by its marker until no catalog lists it.
            let taken = |path: &Path| {
                self.fs
                    .exists(path)
                    .map_err(EngineError::io("look for layer", path))
            };
            if !taken(&path)? && !taken(&marker_path(&path))? {
                break (name, path);
            }
            generation += 1;
        };
        let mut encoding = Reservation::new(&self.memory);
        encoding.grow(encoding_memory(versions) as u64);
        let summary = write_layer(self.fs.as_ref(), &path, range, versions)?;
        drop(encoding);
        let file = LayerFile::open_new(
            Arc::clone(&self.fs),
            &path,
            &name,
            summary.checksum,
            self.layer_cache.as_ref(),
        )?;
        Ok(PersistedLayer {
            file,
            name,
            size: summary.size,
            checksum: summary.checksum,
            level,
        })
    }
}

/// Key ranges of the branch's newest L1 layers (one compaction's output).
fn newest_l1_ranges(branch: &Branch) -> Vec<(Key, Key)> {
    let state = branch.state.read();
    let newest_end = state
        .layers
        .iter()
        .filter(|layer| layer.level == Level::L1)
        .map(|layer| layer.file.range().lsn_end)
        .max();
    state
        .layers
        .iter()
        .filter(|layer| layer.level == Level::L1 && Some(layer.file.range().lsn_end) == newest_end)
        .map(|layer| {
            let range = layer.file.range();
            (range.key_start, range.key_last)
        })
        .collect()
}

/// One input of a merge: versions in (key, LSN) order.
pub(super) type MergeInput = Box<dyn Iterator<Item = Result<(Key, Lsn, Update)>>>;

/// An input opened only once the merge reaches its first key (a layer whose reader holds
/// a buffer of its own), with that key.
pub(super) type DeferredInput = (Key, Box<dyn FnOnce() -> Result<MergeInput>>);

/// Every version of several sorted inputs (delta layers, sorted versions in memory), in
/// (key, LSN) order: a k-way merge over buffered sequential reads, holding one version
/// per open input. Versions of one key and LSN in two inputs come out one after the
/// other. Deferred inputs open when the merge reaches their first key and each input is
/// closed once read, so key-disjoint layers (an L1 generation) hold one buffer at a time.
pub(super) struct MergedVersions {
    readers: Vec<MergeInput>,
    heads: BinaryHeap<Reverse<MergeHead>>,
    /// Inputs not yet opened, the one with the highest first key first.
    deferred: Vec<DeferredInput>,
}

impl MergedVersions {
    /// A merge of delta layers.
    pub(super) fn new(inputs: &[PersistedLayer]) -> Result<MergedVersions> {
        let readers = inputs
            .iter()
            .map(|layer| Ok(Box::new(layer.file.read_sequentially()?) as MergeInput))
            .collect::<Result<Vec<_>>>()?;
        MergedVersions::of(readers, Vec::new())
    }

    /// A merge of `readers` and `deferred`, each sorted by (key, LSN).
    pub(super) fn of(
        readers: Vec<MergeInput>,
        mut deferred: Vec<DeferredInput>,
    ) -> Result<MergedVersions> {
        deferred.sort_by_key(|(first, _)| std::cmp::Reverse(*first));
        let mut merged = MergedVersions {
            readers,
            heads: BinaryHeap::new(),
            deferred,
        };
        for input in 0..merged.readers.len() {
            merged.refill(input)?;
        }
        Ok(merged)
    }

    /// Opens every deferred input whose first key is at or below the merge's next key
    /// (all of them once the open inputs are read): none of their versions comes before.
    fn open_due(&mut self) -> Result<()> {
        loop {
            let due = match (self.deferred.last(), self.heads.peek()) {
                (None, _) => return Ok(()),
                (Some((first, _)), Some(Reverse(next))) => *first <= next.key,
                (Some(_), None) => true,
            };
            if !due {
                return Ok(());
            }
            if let Some((_, open)) = self.deferred.pop() {
                self.readers.push(open()?);
                self.refill(self.readers.len() - 1)?;
            }
        }
    }

    /// Pushes the next version of input `input`, if any.
    fn refill(&mut self, input: usize) -> Result<()> {
        let Some(reader) = self.readers.get_mut(input) else {
            return Ok(());
        };
        match reader.next() {
            Some(version) => {
                let (key, lsn, update) = version?;
                self.heads.push(Reverse(MergeHead {
                    key,
                    lsn,
                    input,
                    update,
                }));
            }
            // Read: its buffer goes now.
            None => *reader = Box::new(std::iter::empty()),
        }
        Ok(())
    }
}

/// One key and its versions, oldest first.
pub(super) type KeyVersions = (Key, Vec<(Lsn, Update)>);

impl MergedVersions {
    /// Every version of the next key, oldest first.
    pub(super) fn next_key(&mut self) -> Option<Result<KeyVersions>> {
        let (key, lsn, update) = match self.next()? {
            Ok(version) => version,
            Err(error) => return Some(Err(error)),
        };
        let mut versions = vec![(lsn, update)];
        // `next` opened every input starting at or below `key` before it took it, so the
        // heads alone say whether more versions of it come.
        while self
            .heads
            .peek()
            .is_some_and(|Reverse(head)| head.key == key)
        {
            match self.next()? {
                Ok((_, lsn, update)) => versions.push((lsn, update)),
                Err(error) => return Some(Err(error)),
            }
        }
        Some(Ok((key, versions)))
    }
}

impl Iterator for MergedVersions {
    type Item = Result<(Key, Lsn, Update)>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Err(error) = self.open_due() {
            return Some(Err(error));
        }
        let Reverse(head) = self.heads.pop()?;
        if let Err(error) = self.refill(head.input) {
            return Some(Err(error));
        }
        Some(Ok((head.key, head.lsn, head.update)))
    }
}

/// Writes a sorted stream of versions as L1 delta layers over one LSN range, split at
/// key boundaries once a layer reaches `l1_layer_bytes`; holds one output layer in memory
/// (counted on the memory gauge).
pub(super) struct L1Writer<'a> {
    inner: &'a StoreInner,
    branch: &'a Branch,
    layers_dir: &'a Path,
    lsn_start: Lsn,
    lsn_end: Lsn,
    chunk: Vec<(Key, Lsn, Update)>,
    chunk_bytes: Reservation<'a>,
    outputs: Vec<PersistedLayer>,
    /// Keys no layer may span (ascending; those passed are dropped): a layer ends before
    /// each.
    cuts: VecDeque<Key>,
}

impl<'a> L1Writer<'a> {
    /// A writer whose layers span the LSN range of all `inputs`.
    pub(super) fn new(
        inner: &'a StoreInner,
        branch: &'a Branch,
        layers_dir: &'a Path,
        inputs: &[PersistedLayer],
    ) -> L1Writer<'a> {
        let ranges = inputs.iter().map(|layer| layer.file.range());
        let lsn_start = ranges
            .clone()
            .map(|range| range.lsn_start)
            .min()
            .unwrap_or_default();
        let lsn_end = ranges.map(|range| range.lsn_end).max().unwrap_or_default();
        L1Writer::spanning(inner, branch, layers_dir, lsn_start, lsn_end)
    }

    /// A writer whose layers span `lsn_start..lsn_end`.
    pub(super) fn spanning(
        inner: &'a StoreInner,
        branch: &'a Branch,
        layers_dir: &'a Path,
        lsn_start: Lsn,
        lsn_end: Lsn,
    ) -> L1Writer<'a> {
        L1Writer {
            inner,
            branch,
            layers_dir,
            lsn_start,
            lsn_end,
            chunk: Vec::new(),
            chunk_bytes: Reservation::new(&inner.memory),
            outputs: Vec::new(),
            cuts: VecDeque::new(),
        }
    }

    /// Ends a layer before each of `keys` (none of which is pushed): the first keys of
    /// the files a compaction moves, which its merged layers must not span.
    pub(super) fn cut_before(&mut self, keys: impl IntoIterator<Item = Key>) {
        let mut keys: Vec<Key> = keys.into_iter().collect();
        keys.sort_unstable();
        self.cuts = keys.into();
    }

    /// Adds the next version (in (key, LSN) order).
    pub(super) fn push(&mut self, key: Key, lsn: Lsn, update: Update) -> Result<()> {
        let mut crossed = false;
        while self.cuts.front().is_some_and(|cut| *cut <= key) {
            let cut = self.cuts.pop_front();
            assert_ne!(cut, Some(key), "a moved file's first key is not merged");
            crossed = true;
        }
        let full = self.chunk_bytes.bytes() >= self.inner.settings.l1_layer_bytes;
        let new_key = self.chunk.last().is_some_and(|(last, _, _)| *last != key);
        if (full && new_key) || (crossed && !self.chunk.is_empty()) {
            self.write_chunk()?;
        }
        self.chunk_bytes
            .grow(VERSION_FILE_OVERHEAD + update.payload_len() as u64);
        self.chunk.push((key, lsn, update));
        Ok(())
    }

    fn write_chunk(&mut self) -> Result<()> {
        let layer = self.inner.write_l1(
            self.branch,
            self.layers_dir,
            &self.chunk,
            self.lsn_start,
            self.lsn_end,
        )?;
        self.outputs.push(layer);
        self.chunk.clear();
        self.chunk_bytes.release();
        Ok(())
    }

    /// Writes what is left; returns every layer written.
    pub(super) fn finish(mut self) -> Result<Vec<PersistedLayer>> {
        if !self.chunk.is_empty() {
            self.write_chunk()?;
        }
        Ok(std::mem::take(&mut self.outputs))
    }
}

/// The next version of one merge input, ordered by (key, LSN) alone.
struct MergeHead {
    key: Key,
    lsn: Lsn,
    input: usize,
    update: Update,
}

impl PartialEq for MergeHead {
    fn eq(&self, other: &Self) -> bool {
        (self.key, self.lsn) == (other.key, other.lsn)
    }
}

impl Eq for MergeHead {}

impl PartialOrd for MergeHead {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MergeHead {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.key, self.lsn).cmp(&(other.key, other.lsn))
    }
}
