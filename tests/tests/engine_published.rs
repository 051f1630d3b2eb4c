//! `Store::pin_published`: the files it names make a store that opens as the original did
//! at `wal_end`, and they stay on disk while pinned, whatever housekeeping does meanwhile
//! (checkpoints that would remove the WAL, compaction that replaces layer files).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;
use pagefork_engine::{At, Config, Key, PublishedFiles, Store, StorePaths, Update};
use pagefork_tests::{engine_config, manual_housekeeping};
use pagefork_wal::SyncMode;

fn write(store: &Store, branch: &str, blocks: std::ops::Range<u32>, round: u8) {
    let page_size = store.page_size();
    for block in blocks {
        let page = Bytes::from(vec![round ^ block as u8; page_size]);
        store
            .commit(branch, vec![(Key::new(1, block), Update::Image(page))])
            .unwrap();
    }
}

/// Copies the published files into `dir` as a copy elsewhere would.
fn copy_published(files: &PublishedFiles, dir: &Path) {
    let paths = StorePaths::new(dir);
    std::fs::create_dir_all(paths.layers_dir()).unwrap();
    std::fs::create_dir_all(paths.commits_dir()).unwrap();
    std::fs::create_dir_all(paths.wal_dir()).unwrap();
    for layer in &files.layers {
        std::fs::copy(&layer.path, paths.listed_file(&layer.name)).unwrap();
    }
    for segment in &files.wal {
        let len = files.segment_len(segment.start);
        if len == 0 {
            continue;
        }
        let mut bytes = vec![0u8; len as usize];
        std::fs::File::open(&segment.path)
            .unwrap()
            .read_exact_at(&mut bytes, 0)
            .unwrap();
        let copy = std::fs::File::create(paths.segment(segment.start)).unwrap();
        copy.write_all_at(&bytes, 0).unwrap();
        copy.set_len(files.segment_size).unwrap();
    }
    if let Some(catalog) = &files.catalog {
        std::fs::write(paths.catalog(), catalog).unwrap();
    }
    std::fs::copy(&files.meta, paths.meta()).unwrap();
}

fn pages(store: &Store, branch: &str, blocks: u32) -> Vec<Option<Bytes>> {
    (0..blocks)
        .map(|block| {
            store
                .get_page(branch, Key::new(1, block), At::Latest)
                .unwrap()
        })
        .collect()
}

#[test]
fn pinned_files_outlive_housekeeping_and_open_as_the_store_did() {
    let (config, _clock) = engine_config(SyncMode::Always);
    let config = manual_housekeeping(config);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), config.clone()).unwrap();
    write(&store, "main", 0..64, 1);
    store.checkpoint().unwrap();
    write(&store, "main", 0..32, 2);
    store.checkpoint().unwrap();
    write(&store, "main", 16..48, 3);
    let pinned = store.pin_published().unwrap();
    assert!(
        pinned.catalog.is_some() && pinned.layers.len() >= 2,
        "{pinned:?}"
    );
    let expected = pages(&store, "main", 64);
    let head_at_pin = store.branch_info("main").unwrap().head;
    assert_eq!(
        pinned.wal_end, head_at_pin,
        "every commit was durable when pinned"
    );

    // Housekeeping that would remove every pinned file: more writes past several WAL
    // segments, checkpoints, and a compaction merging the pinned L0 files away.
    for round in 4..12 {
        write(&store, "main", 0..64, round);
        store.checkpoint().unwrap();
    }
    store.compact().unwrap();
    for layer in &pinned.layers {
        assert!(
            layer.path.exists(),
            "pinned layer {} was removed",
            layer.name
        );
    }
    for segment in &pinned.wal {
        assert!(
            segment.path.exists(),
            "pinned WAL segment {} was removed",
            segment.path.display()
        );
    }

    // The pinned files, copied elsewhere, open as the store was when they were pinned.
    let copy_dir = tempfile::tempdir().unwrap();
    copy_published(&pinned, copy_dir.path());
    let copy = Store::open_with(copy_dir.path(), config.clone()).unwrap();
    assert_eq!(pages(&copy, "main", 64), expected);
    assert_eq!(copy.branch_info("main").unwrap().head, head_at_pin);
    drop(copy);

    // Pinning a newer state releases the old files: the next checkpoint removes them.
    let newer = store.pin_published().unwrap();
    store.checkpoint().unwrap();
    let still_listed: std::collections::BTreeSet<_> = newer
        .layers
        .iter()
        .map(|layer| layer.name.clone())
        .collect();
    for layer in pinned
        .layers
        .iter()
        .filter(|layer| !still_listed.contains(&layer.name))
    {
        assert!(
            !layer.path.exists(),
            "layer {} outlived its pin",
            layer.name
        );
    }
    let oldest_needed = newer.wal.first().map(|segment| segment.start).unwrap();
    for segment in pinned
        .wal
        .iter()
        .filter(|segment| segment.start < oldest_needed)
    {
        assert!(
            !segment.path.exists(),
            "WAL segment {} outlived its pin",
            segment.path.display()
        );
    }
}

#[test]
fn a_store_with_no_catalog_yet_and_a_store_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), manual_housekeeping(Config::default())).unwrap();
    write(&store, "main", 0..8, 1);
    let files = store.pin_published().unwrap();
    assert!(files.layers.is_empty());
    let copy_dir = tempfile::tempdir().unwrap();
    let expected = pages(&store, "main", 8);
    copy_published(&files, copy_dir.path());
    let copy = Store::open(copy_dir.path()).unwrap();
    assert_eq!(pages(&copy, "main", 8), expected);

    let memory = Store::in_memory(Config::default()).unwrap();
    let error = memory.pin_published().unwrap_err().to_string();
    assert!(error.contains("in memory"), "{error}");
}
