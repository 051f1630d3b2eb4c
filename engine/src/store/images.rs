//! Image layers: when compaction writes one, how it writes it, and which ones GC drops.
//!
//! An image layer holds every page of a key range at one LSN; a read that reaches it stops
//! there instead of walking the delta chain below. Images are summaries: no read ever
//! needs one to be correct (GC keeps the deltas every retained state needs), so the rules
//! here trade read speed against the bytes images cost.
//!
//! - **When**: over the part of a key range where the chain above its newest image reached
//!   `Config::image_after_deltas` (`LayerMap::deep_span`), and only once those deltas
//!   hold at least `Config::image_after_changed_percent` versions per hundred pages of
//!   the range: the bytes images take stay proportional to the bytes written, whatever
//!   the branch's size (a few scattered writes into a large branch do not rewrite all of
//!   it).
//! - **How**: streamed, one key at a time, into image layers of about
//!   `Config::l1_layer_bytes` each (bounded memory, counted on the memory gauge). The
//!   layers of one image cover the range between them without gaps, all at one LSN, and
//!   are published into the layer map in one step.
//! - **Which are dropped** (by compaction right after it wrote images, and by GC): an image
//!   no read the branch keeps serving would stop at. The reads that matter are at the head
//!   and at the branch's retain points (child branch points, leases); an image is dropped
//!   once newer images cover its whole range for each of them. A read at another old LSN
//!   inside the PITR window stays correct and walks further.
//!
//! Invariants it keeps:
//! - An image layer at LSN X over a key range holds every page a read at X on the branch
//!   sees in that range (through its ancestors too), and X is the top of the branch's
//!   published layers, so no delta covering the range holds a version above X that the
//!   image could hide. Keys in the range without a page prove absence.
//! - The image layers written for one range together cover exactly that range.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use pagefork_wal::Lsn;

use super::StoreInner;
use super::housekeeping::Reservation;
use crate::catalog::Branch;
use crate::error::{EngineError, Result};
use crate::key::Key;
use crate::layer::{LayerKind, LayerMap, LayerRange, Level, PersistedLayer};
use crate::update::{Depth, Update};

/// How many keys' blocks an image asks the kernel to read ahead at once (1 MiB of 8 KiB
/// pages).
const PREFETCH_KEYS: usize = 128;

/// Per-page cost in an image size estimate beside the page (block header, CRC, index).
const PAGE_FILE_OVERHEAD: u64 = 56;

/// What a read of a key range may walk above the newest image covering it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct ChainAboveImage {
    /// Delta layers overlapping the range above the image.
    pub(crate) deltas: usize,
    /// Versions of keys in the range those deltas hold.
    pub(crate) versions: u64,
}

impl LayerMap {
    /// The delta layers a read of some key of `first..=last` could visit above the newest
    /// image covering the whole range.
    fn deltas_above_image(&self, first: Key, last: Key) -> Vec<&PersistedLayer> {
        let image_end = newest_covering_image_end(self, first, last, Lsn(u64::MAX));
        self.iter()
            .filter(|layer| {
                let range = layer.file.range();
                range.kind == LayerKind::Delta
                    && range.key_start <= last
                    && first <= range.key_last
                    && range.lsn_end > image_end
            })
            .collect()
    }

    /// The delta chain above the newest image over `first..=last`: what an image there
    /// would cut, and how much of the range it changed.
    pub(crate) fn chain_above_image(&self, first: Key, last: Key) -> ChainAboveImage {
        let deltas = self.deltas_above_image(first, last);
        ChainAboveImage {
            deltas: deltas.len(),
            versions: deltas
                .iter()
                .map(|layer| layer.file.versions_in(first, last) as u64)
                .sum(),
        }
    }

    /// The narrowest part of `first..=last` that holds every key a read of which could
    /// visit at least `min_deltas` delta layers above the newest image covering the range
    /// (`None`: no such key). An image over a range goes no wider than that: a range whose
    /// chain is long at one end only (the tree's own pages, in every commit, beside the
    /// pages of a file written once) is not rewritten whole for that end.
    pub(crate) fn deep_span(&self, first: Key, last: Key, min_deltas: usize) -> Option<(Key, Key)> {
        if min_deltas == 0 {
            return Some((first, last));
        }
        let (low, high) = (first.packed(), last.packed());
        // Where the depth changes: +1 where a delta's keys start, -1 just past their end.
        let mut changes: Vec<(u64, i64)> = Vec::new();
        for layer in self.deltas_above_image(first, last) {
            let range = layer.file.range();
            changes.push((range.key_start.packed().max(low), 1));
            let end = range.key_last.packed().min(high);
            // `end < high <= u64::MAX`: no overflow; past `high` nothing is asked.
            if end < high {
                changes.push((end + 1, -1));
            }
        }
        changes.sort_unstable();
        let mut depth = 0i64;
        let mut span: Option<(u64, u64)> = None;
        let points: Vec<&[(u64, i64)]> = changes.chunk_by(|a, b| a.0 == b.0).collect();
        for (index, at_point) in points.iter().enumerate() {
            let Some(&(point, _)) = at_point.first() else {
                continue;
            };
            depth += at_point.iter().map(|(_, change)| change).sum::<i64>();
            // The depth holds from `point` to just before the next change.
            let until = points
                .get(index + 1)
                .and_then(|next| next.first())
                .map_or(high, |(next, _)| next - 1);
            if depth >= min_deltas as i64 {
                span = Some((span.map_or(point, |(start, _)| start), until));
            }
        }
        span.map(|(start, end)| (Key::from_packed(start), Key::from_packed(end)))
    }
}

/// The largest LSN end E such that image layers ending at E or later, and starting at or
/// below `read_at`, cover all of `first..=last` (`Lsn(0)` if none do): a read at
/// `read_at` of any key in the range stops at an image at least that new.
fn newest_covering_image_end(layers: &LayerMap, first: Key, last: Key, read_at: Lsn) -> Lsn {
    let images: Vec<&LayerRange> = layers
        .iter()
        .map(|layer| layer.file.range())
        .filter(|range| {
            range.kind == LayerKind::Image
                && range.lsn_start <= read_at
                && range.key_start <= last
                && first <= range.key_last
        })
        .collect();
    let mut ends: Vec<Lsn> = images.iter().map(|range| range.lsn_end).collect();
    ends.sort_unstable_by(|a, b| b.cmp(a));
    ends.dedup();
    for end in ends {
        let mut spans: Vec<(u64, u64)> = images
            .iter()
            .filter(|range| range.lsn_end >= end)
            .map(|range| (range.key_start.packed(), range.key_last.packed()))
            .collect();
        if spans_cover(&mut spans, first.packed(), last.packed()) {
            return end;
        }
    }
    Lsn(0)
}

/// Whether the inclusive `spans` together cover `first..=last`.
fn spans_cover(spans: &mut [(u64, u64)], first: u64, last: u64) -> bool {
    spans.sort_unstable();
    let mut uncovered = first;
    for (start, end) in spans.iter() {
        if *start > uncovered {
            return false;
        }
        if *end >= last {
            return true;
        }
        // `end < last <= u64::MAX`: no overflow.
        uncovered = uncovered.max(end + 1);
    }
    false
}

/// The image layers of a branch that no read it serves would stop at: for the head and for
/// each of `points` (its retain points), newer images starting at or below the read cover
/// the image's whole range, or the image starts above the read.
pub(crate) fn superseded_images(layers: &LayerMap, points: &[Lsn]) -> Vec<PersistedLayer> {
    let reads: Vec<Lsn> = points
        .iter()
        .copied()
        .chain(std::iter::once(Lsn(u64::MAX)))
        .collect();
    layers
        .iter()
        .filter(|layer| {
            let image = layer.file.range();
            image.kind == LayerKind::Image
                && reads.iter().all(|read_at| {
                    *read_at < image.lsn_start
                        || newest_covering_image_end(
                            layers,
                            image.key_start,
                            image.key_last,
                            *read_at,
                        ) > image.lsn_end
                })
        })
        .cloned()
        .collect()
}

impl StoreInner {
    /// Writes an image of `first..=last` at the top of the branch's published layers if it
    /// is due (see the module docs). Returns whether it wrote one (not if the branch was
    /// deleted meanwhile).
    pub(super) fn write_image_if_due(
        &self,
        branch: &Arc<Branch>,
        layers_dir: &Path,
        first: Key,
        last: Key,
    ) -> Result<bool> {
        let (top, chain, first, last) = {
            let state = branch.state.read();
            let Some((first, last)) =
                state
                    .layers
                    .deep_span(first, last, self.settings.image_after_deltas)
            else {
                return Ok(false);
            };
            (
                state.layers.lsn_end(),
                state.layers.chain_above_image(first, last),
                first,
                last,
            )
        };
        if chain.deltas < self.settings.image_after_deltas {
            return Ok(false);
        }
        let Some(lsn) = top.0.checked_sub(1).map(Lsn) else {
            return Ok(false);
        };
        let keys = self.keys_seen(branch, first, last, lsn)?;
        let percent = u64::from(self.settings.image_after_changed_percent);
        if chain.versions.saturating_mul(100) < (keys.len() as u64).saturating_mul(percent) {
            return Ok(false);
        }
        let mut writer = ImageWriter {
            inner: self,
            branch: branch.id,
            layers_dir,
            lsn,
            top,
            start: first,
            chunk: Vec::new(),
            chunk_bytes: Reservation::new(&self.memory),
            outputs: Vec::new(),
        };
        let keys: Vec<Key> = keys.into_iter().collect();
        for batch in keys.chunks(PREFETCH_KEYS) {
            // Layer files are written with direct I/O, so their blocks are seldom in the
            // page cache: ask for the batch's blocks in one read ahead of the reads.
            if let (Some(first), Some(last)) = (batch.first(), batch.last()) {
                self.prefetch(branch, *first, *last, lsn, Depth::Newest);
            }
            for &key in batch {
                match self.read_page(branch, key, lsn) {
                    Ok((Some(page), _)) => writer.push(key, page)?,
                    Ok((None, _)) => {}
                    // Deleted meanwhile (a detach or restore replaced it): nothing to
                    // image; the layers written so far are debris the next catalog removes.
                    Err(EngineError::UnknownBranch { .. }) if branch.state.read().deleted => {
                        return Ok(false);
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        let outputs = writer.finish(last)?;
        let mut state = branch.state.write();
        if state.deleted {
            return Ok(false);
        }
        assert_eq!(
            state.layers.lsn_end(),
            top,
            "only housekeeping adds layers, one cycle at a time"
        );
        for layer in outputs {
            state.layers.insert(layer);
        }
        self.housekeeping_counters
            .images_written
            .fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Drops the branch's image layers that neither its head nor any of `read_points` (its
    /// retain points) would stop at. Returns how many layers and bytes went (their files
    /// go once a catalog without them is published).
    pub(super) fn drop_superseded_images(
        &self,
        branch: &Branch,
        read_points: &[Lsn],
    ) -> (usize, u64) {
        let superseded = superseded_images(&branch.state.read().layers, read_points);
        if superseded.is_empty() {
            return (0, 0);
        }
        let bytes: u64 = superseded.iter().map(|layer| layer.size).sum();
        let count = superseded.len();
        let names = superseded.into_iter().map(|layer| layer.name).collect();
        if self.replace_layers(branch, &[], names, Vec::new()) {
            (count, bytes)
        } else {
            (0, 0)
        }
    }

    /// After compaction wrote images on `branch`: drops the images they superseded, for
    /// the retain points as of now (a branch created at an old point meanwhile reads
    /// correctly all the same, through more deltas).
    pub(super) fn drop_images_superseded_now(&self, branch: &Branch) {
        let read_points: Vec<Lsn> = {
            let catalog = self.catalog.read();
            let mut points = self.retain_points(&catalog, self.clock.now());
            points
                .remove(&branch.id)
                .unwrap_or_default()
                .iter()
                .map(|point| point.lsn)
                .collect()
        };
        self.drop_superseded_images(branch, &read_points);
    }

    /// Every key in `first..=last` that has some version a read at `lsn` on `branch`
    /// could see: its own, and its ancestors' below each branch point. A superset of the
    /// pages that exist; the caller reads each. Costs the versions in the range, not its
    /// size.
    pub(super) fn keys_seen(
        &self,
        branch: &Branch,
        first: Key,
        last: Key,
        lsn: Lsn,
    ) -> Result<BTreeSet<Key>> {
        let mut keys = BTreeSet::new();
        for (current, lsn) in branch.lineage(lsn) {
            {
                let state = current.state.read();
                keys.extend(state.open.keys_in(first, last, lsn));
                if let Some((frozen, _)) = &state.frozen {
                    keys.extend(frozen.keys_in(first, last, lsn));
                }
                for layer in state.layers.iter() {
                    let range = layer.file.range();
                    if range.key_start <= last && first <= range.key_last {
                        keys.extend(layer.file.keys_in(first, last, lsn));
                    }
                }
            }
            // RocksDB after memory, as reads do: a flush moves versions from memory into
            // the database, never the other way, so a key is seen in one or the other.
            if let Some(db) = &self.version_db {
                keys.extend(db.keys_in(current.id, first, last, lsn)?);
            }
        }
        Ok(keys)
    }
}

/// Writes the pages of one image (in key order) as image layers of about
/// `l1_layer_bytes` each, covering the image's range between them.
struct ImageWriter<'a> {
    inner: &'a StoreInner,
    branch: crate::branch::BranchId,
    layers_dir: &'a Path,
    /// The image's LSN, and the end of its LSN range (`lsn + 1`).
    lsn: Lsn,
    top: Lsn,
    /// The first key the next layer covers.
    start: Key,
    chunk: Vec<(Key, Lsn, Update)>,
    chunk_bytes: Reservation<'a>,
    outputs: Vec<PersistedLayer>,
}

impl ImageWriter<'_> {
    /// Adds the page of `key` (keys ascending); writes a layer covering everything below
    /// `key` first once the current one is full.
    fn push(&mut self, key: Key, page: bytes::Bytes) -> Result<()> {
        if self.chunk_bytes.bytes() >= self.inner.settings.l1_layer_bytes
            && let Some(before) = key.packed().checked_sub(1)
            && before >= self.start.packed()
        {
            self.write_chunk(Key::from_packed(before))?;
            self.start = key;
        }
        self.chunk_bytes
            .grow(PAGE_FILE_OVERHEAD + page.len() as u64);
        self.chunk.push((key, self.lsn, Update::Image(page)));
        Ok(())
    }

    fn write_chunk(&mut self, last: Key) -> Result<()> {
        let range = LayerRange {
            kind: LayerKind::Image,
            branch: self.branch,
            key_start: self.start,
            key_last: last,
            lsn_start: self.lsn,
            lsn_end: self.top,
        };
        let layer =
            self.inner
                .write_layer_file(self.layers_dir, &range, Level::Image, &self.chunk)?;
        self.outputs.push(layer);
        self.chunk.clear();
        self.chunk_bytes.release();
        Ok(())
    }

    /// Writes the last layer, up to `last`; returns every layer written.
    fn finish(mut self, last: Key) -> Result<Vec<PersistedLayer>> {
        self.write_chunk(last)?;
        Ok(std::mem::take(&mut self.outputs))
    }
}

#[cfg(test)]
mod tests {
    use super::spans_cover;

    #[test]
    fn spans_cover_a_range_only_without_gaps() {
        assert!(spans_cover(&mut [(0, 4), (5, 9)], 0, 9));
        assert!(spans_cover(&mut [(5, 9), (0, 6)], 1, 8));
        assert!(!spans_cover(&mut [(0, 4), (6, 9)], 0, 9));
        assert!(!spans_cover(&mut [(1, 9)], 0, 9));
        assert!(!spans_cover(&mut [(0, 8)], 0, 9));
        assert!(spans_cover(&mut [(0, u64::MAX)], 3, u64::MAX));
        assert!(!spans_cover(&mut [], 0, 0));
    }
}
