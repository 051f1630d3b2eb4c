//! A workload for layer cache tests (the engine's over a directory, the remote suites'
//! over S3): rounds of 8 KiB page writes to `main` and a branch, a checkpoint (so a layer
//! file per branch) after each, and the page every read at each round's head must return.

use std::path::Path;

use bytes::Bytes;
use pagefork_engine::{At, BranchOptions, Key, Lsn, Store, Update};

/// Page size of the workload's store.
pub const PAGE: usize = 8192;
/// Blocks written per round.
pub const BLOCKS: u32 = 64;

/// The page of `block` in `round`.
pub fn page(round: u8, block: u32) -> Bytes {
    let mut bytes = vec![round; PAGE];
    bytes[..4].copy_from_slice(&block.to_le_bytes());
    Bytes::from(bytes)
}

/// Every page a read at an LSN is expected to return: (branch, LSN, block, page).
pub type Expected = Vec<(String, Lsn, u32, Option<Bytes>)>;

/// Rounds of writes to `main` and a branch, each round a checkpoint (so a layer file per
/// branch and round); returns what reads at each round's head must see.
pub fn write_rounds(store: &Store, rounds: u8) -> Expected {
    let mut expected = Expected::new();
    let mut state: std::collections::BTreeMap<(String, u32), Bytes> = Default::default();
    for round in 1..=rounds {
        for block in 0..BLOCKS {
            if u32::from(round) % 2 == 0 && block % 3 == 0 {
                continue;
            }
            store
                .commit(
                    "main",
                    vec![(Key::new(1, block), Update::Image(page(round, block)))],
                )
                .unwrap();
            state.insert(("main".to_owned(), block), page(round, block));
        }
        if round == 2 {
            store
                .create_branch("feature", "main", At::Latest, BranchOptions::default())
                .unwrap();
            for block in 0..BLOCKS {
                if let Some(page) = state.get(&("main".to_owned(), block)).cloned() {
                    state.insert(("feature".to_owned(), block), page);
                }
            }
        }
        if round > 2 {
            for block in (0..BLOCKS).step_by(2) {
                let page = page(round + 100, block);
                store
                    .commit(
                        "feature",
                        vec![(Key::new(1, block), Update::Image(page.clone()))],
                    )
                    .unwrap();
                state.insert(("feature".to_owned(), block), page);
            }
        }
        store.checkpoint().unwrap();
        for branch in ["main", "feature"] {
            let Ok(info) = store.branch_info(branch) else {
                continue;
            };
            for block in 0..BLOCKS {
                let page = state.get(&(branch.to_owned(), block)).cloned();
                expected.push((branch.to_owned(), info.head, block, page));
            }
        }
    }
    expected
}

/// Reads every expected page at its LSN, calling `after_each` after each read.
pub fn check_reads(store: &Store, expected: &Expected, after_each: impl Fn(&Store)) {
    for (branch, lsn, block, page) in expected {
        let read = store
            .get_page(branch, Key::new(1, *block), At::Lsn(*lsn))
            .unwrap();
        assert_eq!(
            read.as_ref(),
            page.as_ref(),
            "{branch} block {block} at {lsn}"
        );
        after_each(store);
    }
}

/// The names of the files in the store's `layers` directory, sorted.
pub fn layer_dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("layers"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// (layer files, eviction markers) in the store's `layers` directory.
pub fn layer_dir_entries(dir: &Path) -> (usize, usize) {
    let names = layer_dir_names(dir);
    let markers = names
        .iter()
        .filter(|name| name.ends_with(".evicted"))
        .count();
    (names.len() - markers, markers)
}
