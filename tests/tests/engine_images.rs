//! Image layers on real stores with 8 KiB pages: an image is written in layers of about
//! `l1_layer_bytes` that cover its range without gaps; scattered writes into a large
//! branch do not rewrite all of it as images; compaction and GC drop the images no read
//! stops at any more and keep the one a child's branch point reads; every read answers as
//! before.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use bytes::Bytes;
use pagefork_engine::layer::LayerKind;
use pagefork_engine::{
    At, BranchOptions, Config, Key, LayerFileSummary, Lsn, Store, SyncMode, Update,
};
use pagefork_tests::{engine_config, manual_housekeeping};

const PAGE_SIZE: usize = 8192;

fn config(image_after_deltas: usize, image_after_changed_percent: u32) -> Config {
    let (config, _clock) = engine_config(SyncMode::Never);
    Config {
        // The default WAL segment size: commits of 64 pages of 8 KiB.
        wal_segment_size: Config::default().wal_segment_size,
        page_size: PAGE_SIZE,
        image_after_deltas,
        image_after_changed_percent,
        l1_layer_bytes: 256 * 1024,
        ..manual_housekeeping(config)
    }
}

fn page(byte: u8) -> Bytes {
    Bytes::from(vec![byte; PAGE_SIZE])
}

/// Writes `byte` to each of `blocks` of relation 1, 64 pages a commit; returns the last LSN.
fn write(store: &Store, branch: &str, blocks: impl IntoIterator<Item = u32>, byte: u8) -> Lsn {
    let blocks: Vec<u32> = blocks.into_iter().collect();
    let mut last = Lsn(0);
    for chunk in blocks.chunks(64) {
        let updates = chunk
            .iter()
            .map(|block| (Key::new(1, *block), Update::Image(page(byte))))
            .collect();
        last = store.commit(branch, updates).unwrap().lsn;
    }
    last
}

/// Flushes what was written and compacts (images where due).
fn compact(store: &Store) {
    store.checkpoint().unwrap();
    store.compact().unwrap();
}

fn images(store: &Store, branch: &str) -> Vec<LayerFileSummary> {
    let files = store.files(false).unwrap();
    let branch = files.branches.iter().find(|b| b.name == branch).unwrap();
    let mut images: Vec<LayerFileSummary> = branch
        .layers
        .iter()
        .filter(|layer| layer.range.kind == LayerKind::Image)
        .cloned()
        .collect();
    images.sort_by_key(|layer| (layer.range.lsn_end, layer.range.key_start));
    images
}

fn byte_at(store: &Store, branch: &str, block: u32, at: At) -> Option<u8> {
    store
        .get_page(branch, Key::new(1, block), at)
        .unwrap()
        .map(|page| page[0])
}

#[test]
fn an_image_is_written_in_bounded_layers_that_cover_its_range_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), config(2, 0)).unwrap();
    write(&store, "main", 0..512, 1);
    compact(&store);
    assert!(
        images(&store, "main").is_empty(),
        "a chain of one: no image"
    );
    // Every 16th page: one L1 delta over blocks 0..=496, on top of the base's deltas.
    write(&store, "main", (0..512).step_by(16), 2);
    compact(&store);
    let images = images(&store, "main");
    assert!(
        images.len() > 1,
        "497 pages of 8 KiB in layers of 256 KiB: {images:?}"
    );
    let lsn_end = images[0].range.lsn_end;
    let mut next = Key::new(1, 0);
    for image in &images {
        assert_eq!(image.range.lsn_end, lsn_end, "one image, one LSN");
        assert_eq!(image.range.key_start, next, "no gap, no overlap");
        assert!(
            image.bytes <= 256 * 1024 + 2 * PAGE_SIZE as u64,
            "{} is {} bytes",
            image.name,
            image.bytes
        );
        next = Key::new(1, image.range.key_last.block + 1);
    }
    assert_eq!(images.last().unwrap().range.key_last, Key::new(1, 496));
    assert_eq!(
        store.stats().images_written,
        1,
        "one image, in several layers"
    );
    for block in 0..512 {
        let expected = if block % 16 == 0 { 2 } else { 1 };
        assert_eq!(byte_at(&store, "main", block, At::Latest), Some(expected));
    }
    drop(store);
    let store = Store::open_with(dir.path(), config(2, 0)).unwrap();
    assert_eq!(byte_at(&store, "main", 17, At::Latest), Some(1));
    assert_eq!(byte_at(&store, "main", 496, At::Latest), Some(2));
}

/// Writes 2048 pages, then six rounds of four scattered pages, compacting after each;
/// returns the images written in those rounds.
fn scattered_rounds(image_after_changed_percent: u32) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), config(1, image_after_changed_percent)).unwrap();
    write(&store, "main", 0..2048, 0);
    compact(&store);
    let base_images = store.stats().images_written;
    for round in 1..=6u32 {
        let blocks = (0..4).map(|i| (round * 131 + i * 509) % 2048);
        write(&store, "main", blocks, round as u8);
        compact(&store);
    }
    for round in 1..=6u32 {
        for i in 0..4 {
            let block = (round * 131 + i * 509) % 2048;
            assert_eq!(
                byte_at(&store, "main", block, At::Latest),
                Some(round as u8)
            );
        }
    }
    store.stats().images_written - base_images
}

#[test]
fn scattered_writes_into_a_large_branch_do_not_rewrite_it_as_images() {
    let default_images = scattered_rounds(50);
    let eager_images = scattered_rounds(0);
    // None for 24 changed pages of 2048.
    assert_eq!(default_images, 0);
    // Without the rule every round rewrites the range its four pages span.
    assert!(eager_images >= 6, "{eager_images} images");
}

#[test]
fn superseded_images_are_dropped_but_not_the_one_a_child_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), config(1, 0)).unwrap();
    let mut lsns = Vec::new();
    for round in 1..=5u8 {
        lsns.push(write(&store, "main", 0..64, round));
        compact(&store);
        if round == 2 {
            store
                .create_branch("child", "main", At::Lsn(lsns[1]), BranchOptions::default())
                .unwrap();
        }
    }
    let generations = |store: &Store| {
        let mut ends: Vec<Lsn> = images(store, "main")
            .iter()
            .map(|layer| layer.range.lsn_end)
            .collect();
        ends.dedup();
        ends
    };
    // An image per round (over each of the round's two L1 ranges).
    assert_eq!(store.stats().images_written, 10);
    // Compaction dropped the images its new ones superseded, but not the child's.
    let kept = generations(&store);
    assert_eq!(kept.len(), 2, "the child's and the head's: {kept:?}");
    assert!(kept[0] > lsns[1] && kept[0] <= lsns[2], "{kept:?} {lsns:?}");
    let check = |store: &Store, child: bool| {
        for (round, lsn) in lsns.iter().enumerate() {
            for block in [0, 31, 63] {
                let byte = byte_at(store, "main", block, At::Lsn(*lsn));
                assert_eq!(byte, Some(round as u8 + 1), "block {block} at {lsn}");
            }
        }
        if child {
            assert_eq!(byte_at(store, "child", 40, At::Latest), Some(2));
        }
    };
    check(&store, true);
    // Without the child, GC drops its image too.
    store.delete_branch("child").unwrap();
    let before = images(&store, "main").len();
    let report = store.gc().unwrap();
    assert_eq!(generations(&store), vec![kept[1]]);
    assert_eq!(
        report.layers_removed,
        before - images(&store, "main").len(),
        "only images go: {report:?}"
    );
    check(&store, false);
    drop(store);
    let store = Store::open_with(dir.path(), config(1, 0)).unwrap();
    check(&store, false);
    let on_disk = std::fs::read_dir(dir.path().join("layers"))
        .unwrap()
        .filter(|entry| {
            let name = entry.as_ref().unwrap().file_name();
            name.to_string_lossy().contains("image")
        })
        .count();
    assert_eq!(
        on_disk,
        images(&store, "main").len(),
        "dropped files are gone"
    );
}
