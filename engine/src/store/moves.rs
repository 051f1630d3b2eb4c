//! Moves: how a flush cuts a frozen layer into key-disjoint L0 files, and which L0 files
//! compaction relabels as L1 without rewriting them.
//!
//! A merge of L0 files rewrites every version it reads. Where a workload writes new keys
//! in runs (a file written sequentially through a mount, a table or a WAL segment a
//! database appends to), the L0 files of consecutive flushes hold disjoint key ranges, and
//! the merge's output is the same versions in the same order: a third write of every byte,
//! after the WAL and the flush. So a flush writes each large run of one relation as an L0
//! file of its own, and compaction moves an L0 file that overlaps no other L0 file in keys
//! (and is large enough not to leave small files behind) to L1 as it is: the catalog lists
//! the same file, name, size and checksum at level L1.
//!
//! Invariants it keeps:
//! - The pieces of one flush are contiguous slices of its sorted versions, in order, and
//!   together hold all of them: their key ranges are disjoint, so the layer map's rule
//!   (delta layers overlapping in keys have disjoint LSN ranges) holds between them.
//! - A moved file's key range overlaps no other input of its compaction, so the merged
//!   outputs, cut at every moved file's first key (`L1Writer::cut_before`), never overlap
//!   it in keys either, whatever their LSN ranges.

use std::ops::Range;

use pagefork_wal::Lsn;

use crate::key::Key;
use crate::layer::PersistedLayer;
use crate::update::Update;

/// A flush cuts out runs holding at least this share (1/N) of the flush threshold or of
/// the frozen layer, whichever is larger: at most N runs, so a flush writes a few files
/// at most.
const RUN_SHARE: u64 = 4;

/// Per-version cost in a piece's size estimate beside the payload (block header, CRC,
/// index).
const VERSION_OVERHEAD: u64 = 56;

/// Cuts `versions` (sorted by key, then LSN) into the slices a flush writes as separate L0
/// files, for a store that flushes at `flush_bytes` and writes L1 layers of
/// `l1_layer_bytes`. A *run* is a stretch of consecutive blocks of one relation, each
/// present (with one version or more); every run holding a quarter of `flush_bytes` and
/// of all the versions' bytes is cut into pieces of its own of about `l1_layer_bytes`, and
/// what lies between such runs goes together, but never across the boundary of a
/// relation that has such a run.
///
/// A run has no gap, so another flush overlaps it only by writing one of its blocks
/// again: writes that arrive out of order around the moment a layer is frozen (the
/// kernel hands a mount's pages over from several threads) land beside it, not inside.
/// And the small pieces around it hold its relation's keys alone, so that another flush's
/// leftovers of the same relation do not span a run of this one.
pub(super) fn flush_pieces(
    versions: &[(Key, Lsn, Update)],
    flush_bytes: u64,
    l1_layer_bytes: u64,
) -> Vec<Range<usize>> {
    let bytes = |slice: &[(Key, Lsn, Update)]| -> u64 {
        slice
            .iter()
            .map(|(_, _, update)| VERSION_OVERHEAD + update.payload_len() as u64)
            .sum()
    };
    let threshold = (flush_bytes / RUN_SHARE)
        .max(bytes(versions) / RUN_SHARE)
        .max(1);
    let runs: Vec<&[(Key, Lsn, Update)]> = versions
        .chunk_by(|(a, _, _), (b, _, _)| a.rel == b.rel && b.block.saturating_sub(a.block) <= 1)
        .collect();
    let large: Vec<bool> = runs.iter().map(|run| bytes(run) >= threshold).collect();
    let rel_of = |run: &[(Key, Lsn, Update)]| run.first().map(|(key, _, _)| key.rel);
    let rels_with_large: Vec<Option<u32>> = runs
        .iter()
        .zip(&large)
        .filter(|(_, large)| **large)
        .map(|(run, _)| rel_of(run))
        .collect();
    let mut pieces = Vec::new();
    let mut piece_start = 0;
    let mut run_start = 0;
    let mut previous_rel = None;
    for (run, large) in runs.into_iter().zip(large) {
        let rel = rel_of(run);
        let rel_boundary = previous_rel.is_some()
            && previous_rel != rel
            && (rels_with_large.contains(&previous_rel) || rels_with_large.contains(&rel));
        if (large || rel_boundary) && piece_start < run_start {
            pieces.push(piece_start..run_start);
            piece_start = run_start;
        }
        let run_end = run_start + run.len();
        if large {
            // In pieces of about `l1_layer_bytes`, cut between keys: what compaction
            // moves is the size of what it writes.
            let mut chunk_start = run_start;
            let mut chunk_bytes = 0;
            for (offset, pair) in run.windows(2).enumerate() {
                if let [(key, _, update), (next, _, _)] = pair {
                    chunk_bytes += VERSION_OVERHEAD + update.payload_len() as u64;
                    if chunk_bytes >= l1_layer_bytes && key != next {
                        let cut = run_start + offset + 1;
                        pieces.push(chunk_start..cut);
                        chunk_start = cut;
                        chunk_bytes = 0;
                    }
                }
            }
            pieces.push(chunk_start..run_end);
            piece_start = run_end;
        }
        run_start = run_end;
        previous_rel = rel;
    }
    if piece_start < versions.len() {
        pieces.push(piece_start..versions.len());
    }
    pieces
}

/// A branch's L0 files (`level_zero`) as compaction takes them: those it moves to L1 as
/// they are (a quarter to twice `l1_layer_bytes`, the size of what it writes, and
/// overlapping no other L0 file in keys), then those it merges.
pub(super) fn split_movable(
    level_zero: &[PersistedLayer],
    l1_layer_bytes: u64,
) -> (Vec<PersistedLayer>, Vec<PersistedLayer>) {
    let sizes = l1_layer_bytes / 4..=l1_layer_bytes.saturating_mul(2);
    let overlaps = |a: &PersistedLayer, b: &PersistedLayer| {
        let (a, b) = (a.file.range(), b.file.range());
        a.key_start <= b.key_last && b.key_start <= a.key_last
    };
    let (mut moved, mut merged) = (Vec::new(), Vec::new());
    for (index, layer) in level_zero.iter().enumerate() {
        let movable = sizes.contains(&layer.size)
            && level_zero
                .iter()
                .enumerate()
                .all(|(other, them)| other == index || !overlaps(layer, them));
        match movable {
            true => moved.push(layer.clone()),
            false => merged.push(layer.clone()),
        }
    }
    (moved, merged)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use bytes::Bytes;

    use super::*;

    fn version(rel: u32, block: u32, bytes: usize) -> (Key, Lsn, Update) {
        (
            Key::new(rel, block),
            Lsn(u64::from(block) + 1),
            Update::Image(Bytes::from(vec![0u8; bytes])),
        )
    }

    #[test]
    fn a_flush_of_one_run_is_one_piece() {
        let versions: Vec<_> = (0..64).map(|block| version(7, block, 8192)).collect();
        assert_eq!(flush_pieces(&versions, 4 << 20, u64::MAX), vec![0..64]);
    }

    #[test]
    fn a_large_run_is_cut_out_and_its_relation_kept_apart_from_the_others() {
        let mut versions = vec![version(1, 0, 100), version(1, 3, 100)];
        versions.push(version(5, 0, 100)); // a leftover of relation 5 before its run
        versions.extend((10..74).map(|block| version(5, block, 8192)));
        versions.push(version(5, 80, 100)); // and one after it
        versions.push(version(9, 0, 100));
        assert_eq!(
            flush_pieces(&versions, 4 << 16, u64::MAX),
            vec![0..2, 2..3, 3..67, 67..68, 68..69]
        );
    }

    #[test]
    fn a_gap_ends_a_run_and_repeated_versions_of_a_block_do_not() {
        let mut versions: Vec<_> = (0..32).map(|block| version(5, block, 8192)).collect();
        versions.push(version(5, 31, 8192)); // block 31 again, at a later LSN
        versions.extend((33..65).map(|block| version(5, block, 8192)));
        // Two runs, each large enough alone: 0..=31 (with block 31 twice) and 33..=64.
        assert_eq!(
            flush_pieces(&versions, 4 << 16, u64::MAX),
            vec![0..33, 33..65]
        );
    }

    #[test]
    fn scattered_writes_stay_one_piece() {
        // Every other block of several relations: no run holds a quarter of the flush.
        let versions: Vec<_> = (0..5)
            .flat_map(|rel| (0..16).map(move |block| version(rel + 2, block * 2, 8192)))
            .collect();
        assert_eq!(flush_pieces(&versions, 4096, u64::MAX), vec![0..80]);
    }

    #[test]
    fn a_large_run_is_cut_into_pieces_of_about_the_size_asked_between_keys() {
        let mut versions: Vec<_> = (0..10).map(|block| version(5, block, 8192)).collect();
        versions.insert(3, version(5, 2, 8192)); // block 2 twice: never cut between them
        let piece = 3 * (8192 + VERSION_OVERHEAD);
        assert_eq!(
            flush_pieces(&versions, 4096, piece),
            vec![0..4, 4..7, 7..10, 10..11]
        );
    }

    #[test]
    fn an_empty_flush_has_no_pieces() {
        assert!(flush_pieces(&[], 4096, u64::MAX).is_empty());
    }
}
