//! `pagefork branch detach` as users run it, on a branch of a tree of realistic size: the
//! real binary copies what the branch reads through its parent (384 MiB of 8 KiB pages)
//! and holds memory bounded by its layer writer and readers, not by what it copies; the
//! detached branch reads the same pages. Alone in its file: the peak is read from the
//! largest child process this test binary waited for.

// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use bytes::Bytes;
use pagefork_engine::{At, Key, Store, Update};
use support::cli::{ok_json, pagefork};

const PAGES: u32 = 49_152;
const PAGE: usize = 8192;

fn page(block: u32) -> Bytes {
    let mut bytes = vec![0u8; PAGE];
    for (index, chunk) in bytes.chunks_mut(4).enumerate() {
        chunk.copy_from_slice(&(block ^ index as u32).to_le_bytes());
    }
    Bytes::from(bytes)
}

/// Found while measuring detach: it gathered every version it copied in memory first,
/// 2.1 GB of memory for a branch of a 2 GiB tree. It now streams them into its layers.
#[test]
fn a_detach_holds_memory_bounded_by_its_layers_not_by_what_it_copies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    ok_json(pagefork(&data, &["--json", "init"]));
    let store = Store::open(&data).unwrap();
    for first in (0..PAGES).step_by(64) {
        let updates = (first..first + 64)
            .map(|block| (Key::new(1, block), Update::Image(page(block))))
            .collect();
        store.commit("main", updates).unwrap();
    }
    store.checkpoint().unwrap();
    drop(store);
    ok_json(pagefork(&data, &["--json", "branch", "create", "child"]));

    let detached = pagefork(&data, &["--json", "branch", "detach", "child"]);
    ok_json(detached);
    let peak_kib = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .unwrap()
        .max_rss();
    let copied_mib = (u64::from(PAGES) * PAGE as u64) >> 20;
    assert!(
        (peak_kib >> 10) < 200,
        "the detach peaked at {} MiB of memory copying {copied_mib} MiB",
        peak_kib >> 10
    );

    let store = Store::open(&data).unwrap();
    assert_eq!(store.branch_info("child").unwrap().parent, None);
    for block in (0..PAGES).step_by(997) {
        assert_eq!(
            store
                .get_page("child", Key::new(1, block), At::Latest)
                .unwrap(),
            Some(page(block)),
            "block {block}"
        );
    }
}
