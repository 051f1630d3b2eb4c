//! Shared setup for pagefork's criterion benchmarks (the benchmarks are in `benches/`).

use std::path::PathBuf;

/// Where benchmarks put their files: `PAGEFORK_BENCH_DIR` if set (to measure another
/// disk), else `target_tmp`, the calling bench's `CARGO_TARGET_TMPDIR`. Created if missing.
pub fn bench_root(target_tmp: &str) -> PathBuf {
    let root = std::env::var_os("PAGEFORK_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(target_tmp));
    std::fs::create_dir_all(&root).expect("create bench directory");
    root
}
