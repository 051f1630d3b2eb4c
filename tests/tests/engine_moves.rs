//! Moves: a flush cuts a large run of one relation into an L0 file of its own, and
//! compaction moves such files to L1 as they are when they overlap no other L0 file,
//! instead of rewriting them. Checked at realistic sizes (8 KiB pages, a relation
//! appended to as a file written sequentially through a mount is, with the small updates
//! a file's inode and its neighbours get in the same commits): every version reads back
//! at every LSN before and after compaction, GC and a reopen, and the moved files are the
//! same files, now listed at L1.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use pagefork_engine::{At, Config, Key, Lsn, ManualClock, Store, SyncMode, Timestamp, Update};
use pagefork_tests::layered::layer_dir_names;

const PAGE: usize = 8192;
/// The relation appended to (a file's pages).
const DATA_REL: u32 = 7;
/// Relations updated a little in every commit, before and after the data in key order
/// (an inode table, a directory).
const SMALL_RELS: [u32; 2] = [1, 9];
/// Pages appended per commit and commits per flush: 2 MiB per flush.
const PAGES_PER_COMMIT: u32 = 16;
const COMMITS_PER_FLUSH: u32 = 16;
/// The clock's start: the first commit's time.
const START: Timestamp = Timestamp(1_775_000_000_000_000);

fn config(clock: &ManualClock) -> Config {
    Config {
        page_size: PAGE,
        sync_mode: SyncMode::Never,
        clock: std::sync::Arc::new(clock.clone()),
        housekeeping_thread: false,
        checkpoint_after_bytes: u64::MAX,
        memory_budget_bytes: u64::MAX,
        compact_l0_layers: usize::MAX,
        image_after_deltas: usize::MAX,
        layer_flush_bytes: 2 << 20,
        l1_layer_bytes: 4 << 20,
        ..Config::default()
    }
}

fn page(tag: u32) -> Bytes {
    let mut page = vec![0u8; PAGE];
    page[..4].copy_from_slice(&tag.to_le_bytes());
    page[PAGE - 4..].copy_from_slice(&tag.to_le_bytes());
    Bytes::from(page)
}

/// What the store must answer: per key, its versions (LSN, tag) oldest first.
#[derive(Default)]
struct Expected {
    versions: BTreeMap<Key, Vec<(Lsn, u32)>>,
    commits: Vec<Lsn>,
}

impl Expected {
    /// Commits a page tagged `tag` at each of `tagged`'s keys on `main`, and expects them.
    fn commit(&mut self, store: &Store, tagged: &[(Key, u32)]) {
        let updates = tagged
            .iter()
            .map(|(key, tag)| (*key, Update::Image(page(*tag))))
            .collect();
        let commit = store.commit("main", updates).unwrap();
        for (key, tag) in tagged {
            self.versions
                .entry(*key)
                .or_default()
                .push((commit.lsn, *tag));
        }
        self.commits.push(commit.lsn);
    }

    fn at(&self, key: Key, lsn: Lsn) -> Option<u32> {
        let versions = self.versions.get(&key)?;
        versions
            .iter()
            .rev()
            .find(|(at, _)| *at <= lsn)
            .map(|(_, tag)| *tag)
    }

    /// Checks every key at every `step`-th commit from `from` on, and at the head.
    fn check(&self, store: &Store, from: Lsn, step: usize) {
        let mut points: Vec<Lsn> = self
            .commits
            .iter()
            .copied()
            .filter(|lsn| *lsn >= from)
            .step_by(step)
            .collect();
        points.extend(self.commits.last());
        for lsn in points {
            for &key in self.versions.keys() {
                let read = store.get_page("main", key, At::Lsn(lsn)).unwrap();
                let tag = read.map(|page| u32::from_le_bytes(page[..4].try_into().unwrap()));
                assert_eq!(tag, self.at(key, lsn), "{key} at {lsn}");
            }
        }
    }
}

/// Appends `flushes` flushes' worth of pages to `DATA_REL` (each commit also rewrites
/// block 0 of each of `small_rels`), flushing after each; the clock moves 1 s a commit.
fn append_beside(
    store: &Store,
    clock: &ManualClock,
    expected: &mut Expected,
    flushes: u32,
    small_rels: &[u32],
) {
    let mut next_block = expected
        .versions
        .range(Key::new(DATA_REL, 0)..Key::new(DATA_REL + 1, 0))
        .count() as u32;
    for _ in 0..flushes {
        for _ in 0..COMMITS_PER_FLUSH {
            let mut tagged: Vec<(Key, u32)> = (0..PAGES_PER_COMMIT)
                .map(|offset| (Key::new(DATA_REL, next_block + offset), next_block + offset))
                .collect();
            tagged.extend(small_rels.iter().map(|&rel| (Key::new(rel, 0), next_block)));
            expected.commit(store, &tagged);
            next_block += PAGES_PER_COMMIT;
            clock.advance(Duration::from_secs(1));
        }
        store.checkpoint().unwrap();
    }
}

fn append(store: &Store, clock: &ManualClock, expected: &mut Expected, flushes: u32) {
    append_beside(store, clock, expected, flushes, &SMALL_RELS);
}

#[test]
fn appended_runs_are_moved_to_l1_not_rewritten_and_read_back_at_every_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let store = Store::create(dir.path(), config(&clock)).unwrap();
    let mut expected = Expected::default();
    append(&store, &clock, &mut expected, 4);
    let stats = store.stats();
    assert_eq!(stats.flushes, 4);
    assert_eq!(
        stats.layers_l0, 12,
        "each flush: the small relation before the run, the run, the one after"
    );
    let before = layer_dir_names(dir.path());
    expected.check(&store, Lsn(0), 7);

    store.compact().unwrap();
    let stats = store.stats();
    assert_eq!(stats.layers_moved, 4, "the four runs of the data relation");
    assert_eq!(stats.layers_l0, 0);
    assert!(
        stats.compacted_bytes * 4 < stats.flushed_bytes,
        "only the small relations were rewritten: {} of {} bytes",
        stats.compacted_bytes,
        stats.flushed_bytes
    );
    let after = layer_dir_names(dir.path());
    let kept = after.iter().filter(|name| before.contains(name)).count();
    assert_eq!(kept, 4, "the moved files are the files flushed: {after:?}");
    expected.check(&store, Lsn(0), 7);

    drop(store);
    let store = Store::open_with(dir.path(), config(&clock)).unwrap();
    assert_eq!(store.stats().layers_l1, after.len() as u64);
    expected.check(&store, Lsn(0), 7);
}

/// A GC whose cutoff falls inside a compaction's generation: the merged layer of the
/// small relations starts below the cutoff, the moved run of the second flush above it.
/// GC's rewrite spans its inputs' LSN range, so it must take that run too, or its output
/// (which spans the run's keys: the small relations lie on both sides) would overlap it
/// in keys and LSNs, which the layer map refuses.
#[test]
fn gc_with_a_cutoff_inside_a_generation_of_moved_files_keeps_every_read() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let store = Store::create(dir.path(), config(&clock)).unwrap();
    let mut expected = Expected::default();
    append(&store, &clock, &mut expected, 2);
    store.compact().unwrap();
    assert_eq!(store.stats().layers_moved, 2);
    // Commit i was at START + i s: cut off at the eighth of the first flush's sixteen.
    let window = Duration::from_secs(3600);
    clock.set(Timestamp(START.0 + 7_500_000 + window.as_micros() as u64));
    store.set_pitr_window("main", Some(window)).unwrap();
    let report = store.gc().unwrap();
    assert!(report.versions_removed > 0, "{report:?}");
    let cutoff = expected.commits[7];
    expected.check(&store, cutoff, 3);
    drop(store);
    let store = Store::open_with(dir.path(), config(&clock)).unwrap();
    expected.check(&store, cutoff, 3);
}

/// The inode table of a mount lies below a file's pages in key order and gets a version in
/// every commit, so after a few compactions a read of it visits many deltas while a read
/// of the file's pages visits one or two. An image of a range spanning both (a merged
/// layer holding the table's versions and a page written again) goes over the deep part
/// alone: the table's page, not the file's pages beside it.
#[test]
fn an_image_covers_the_deep_end_of_a_range_not_the_pages_written_once_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let config = Config {
        image_after_deltas: 3,
        image_after_changed_percent: 0,
        ..config(&clock)
    };
    let store = Store::create(dir.path(), config.clone()).unwrap();
    let mut expected = Expected::default();
    for round in 0..4u32 {
        append_beside(&store, &clock, &mut expected, 1, &[1]);
        if round == 3 {
            // A straggler: a page of the first run written again (a page the kernel
            // handed over late). It is merged with the table's versions into one L1
            // layer spanning from the table's page to it: a range deep at one end.
            expected.commit(&store, &[(Key::new(DATA_REL, 3), 1_000_000)]);
            store.checkpoint().unwrap();
        }
        store.compact().unwrap();
    }
    let stats = store.stats();
    assert!(stats.images_written > 0, "{stats:?}");
    let image_bytes: u64 = std::fs::read_dir(dir.path().join("layers"))
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".image"))
        .map(|entry| entry.metadata().unwrap().len())
        .sum();
    assert!(
        image_bytes < 3 * PAGE as u64,
        "an image of the table's page alone, not of the pages beside it: {image_bytes} bytes"
    );
    expected.check(&store, Lsn(0), 7);
    drop(store);
    let store = Store::open_with(dir.path(), config).unwrap();
    expected.check(&store, Lsn(0), 7);
}
