//! Shared setup for pagefork's criterion benchmarks (the benchmarks are in `benches/`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use pagefork_engine::{At, BranchOptions, Key, Store, Update};

/// Where benchmarks put their files: `PAGEFORK_BENCH_DIR` if set (to measure another
/// disk), else `target_tmp`, the calling bench's `CARGO_TARGET_TMPDIR`. Created if missing.
pub fn bench_root(target_tmp: &str) -> PathBuf {
    let root = std::env::var_os("PAGEFORK_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(target_tmp));
    std::fs::create_dir_all(&root).expect("create bench directory");
    root
}

/// An 8 KiB page filled with the low byte of `fill`.
pub fn page_8k(fill: u32) -> Bytes {
    Bytes::from(vec![fill as u8; 8192])
}

/// Builds a chain of `depth` branches on top of `main` (`depth-1` a child of `main`,
/// `depth-2` of `depth-1`, ...), each writing one 8 KiB page of relation 2 of its own.
/// Returns the names from `main` down.
pub fn branch_chain(store: &Store, depth: u32) -> Vec<String> {
    branch_chain_writing(store, depth, |level| {
        vec![(Key::new(2, level), Update::Image(page_8k(level)))]
    })
}

/// [`branch_chain`], with branch `depth-N` committing `own(N)` as its own pages.
pub fn branch_chain_writing(
    store: &Store,
    depth: u32,
    own: impl Fn(u32) -> Vec<(Key, Update)>,
) -> Vec<String> {
    let mut chain = vec!["main".to_owned()];
    for level in 1..=depth {
        let name = format!("depth-{level}");
        let tip = chain.last().expect("main at least");
        store
            .create_branch(&name, tip, At::Latest, BranchOptions::default())
            .expect("branch");
        store.commit(&name, own(level)).expect("commit");
        chain.push(name);
    }
    chain
}

/// Pages per commit of [`load`].
pub const PAGES_PER_COMMIT: u32 = 256;

/// Commits `pages` distinct 8 KiB pages of relation 1 to `branch`, [`PAGES_PER_COMMIT`]
/// per commit.
pub fn load(store: &Store, branch: &str, pages: u32) {
    for first in (0..pages).step_by(PAGES_PER_COMMIT as usize) {
        let updates = (first..(first + PAGES_PER_COMMIT).min(pages))
            .map(|block| (Key::new(1, block), Update::Image(page_8k(block))))
            .collect();
        store.commit(branch, updates).expect("load commit");
    }
}

static NAMES: AtomicU64 = AtomicU64::new(0);

/// A branch name no other call in this process returns.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", NAMES.fetch_add(1, Ordering::Relaxed))
}
