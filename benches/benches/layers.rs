//! Layered-storage benchmarks, all on disk with the page cache off unless named:
//! - `get_page_delta_chain`: a page patched in N successive layer files (N = 1, 10, 100),
//!   read before and after `compact` (L0 merge plus an image layer);
//! - `get_page_depth_layers`: reads through 0, 10 and 100 ancestors whose versions are in
//!   layer files;
//! - `ingest`: 128 KiB commits with background flushes and compactions running;
//! - `compaction`: merging 8 L0 layers of 8 MiB into L1 layers, and writing images.
//!
//! Run: `cargo bench -p pagefork-benches --bench layers` (`PAGEFORK_BENCH_DIR` picks the
//! disk; default a temporary directory under `target/`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pagefork_benches::{bench_root, branch_chain};
use pagefork_engine::{At, Config, Key, Store, SyncMode, Update};

const PAGE_SIZE: usize = 8192;
/// Pages each chain benchmark reads from.
const PAGES: u32 = 256;

fn page(fill: u32) -> Bytes {
    Bytes::from(vec![fill as u8; PAGE_SIZE])
}

/// An on-disk store where only the benchmark flushes and compacts, page cache off.
fn manual_store(dir: &std::path::Path) -> Store {
    let config = Config {
        sync_mode: SyncMode::Never,
        page_cache_bytes: 0,
        checkpoint_after_bytes: u64::MAX,
        layer_flush_bytes: u64::MAX,
        memory_budget_bytes: u64::MAX,
        compact_l0_layers: usize::MAX,
        image_after_deltas: 1,
        image_after_changed_percent: 0,
        ..Config::default()
    };
    Store::create(dir, config).expect("store")
}

/// Commits an image of each of the `PAGES` pages of relation 1 to `main`, in one commit.
fn commit_images(store: &Store) {
    let images = (0..PAGES)
        .map(|block| (Key::new(1, block), Update::Image(page(block))))
        .collect();
    store.commit("main", images).expect("images");
}

fn read_all(store: &Store, branch: &str, rel: u32) -> impl FnMut() {
    let mut block = 0u32;
    move || {
        block = (block + 1) % PAGES;
        black_box(
            store
                .get_page(branch, Key::new(rel, block), At::Latest)
                .expect("read"),
        );
    }
}

fn delta_chains(c: &mut Criterion) {
    let root = bench_root(env!("CARGO_TARGET_TMPDIR"));
    let mut group = c.benchmark_group("get_page_delta_chain");
    for chain in [1u32, 10, 100] {
        let dir = tempfile::tempdir_in(&root).expect("temp dir");
        let store = manual_store(dir.path());
        commit_images(&store);
        store.checkpoint().expect("flush");
        for round in 1..chain {
            let patches = (0..PAGES)
                .map(|block| {
                    let patch = Update::Patch {
                        offset: (round * 64) % (PAGE_SIZE as u32 - 64),
                        bytes: Bytes::from(vec![round as u8; 64]),
                    };
                    (Key::new(1, block), patch)
                })
                .collect();
            store.commit("main", patches).expect("patches");
            store.checkpoint().expect("flush: one layer per round");
        }
        let mut read = read_all(&store, "main", 1);
        group.bench_function(BenchmarkId::new("before_compaction", chain), |b| {
            b.iter(&mut read)
        });
        store.compact().expect("compact");
        let mut read = read_all(&store, "main", 1);
        group.bench_function(BenchmarkId::new("after_compaction", chain), |b| {
            b.iter(&mut read)
        });
    }
    group.finish();
}

fn depth_with_layers(c: &mut Criterion) {
    let root = bench_root(env!("CARGO_TARGET_TMPDIR"));
    let dir = tempfile::tempdir_in(&root).expect("temp dir");
    let store = manual_store(dir.path());
    commit_images(&store);
    let chain = branch_chain(&store, 100);
    store
        .checkpoint()
        .expect("every branch's versions into layer files");
    let mut group = c.benchmark_group("get_page_depth_layers");
    for depth in [0usize, 10, 100] {
        let mut read = read_all(&store, &chain[depth], 1);
        group.bench_function(BenchmarkId::from_parameter(depth), |b| b.iter(&mut read));
    }
    group.finish();
}

fn ingest(c: &mut Criterion) {
    let root = bench_root(env!("CARGO_TARGET_TMPDIR"));
    let dir = tempfile::tempdir_in(&root).expect("temp dir");
    let config = Config {
        sync_mode: SyncMode::Never,
        layer_flush_bytes: 8 << 20,
        compact_l0_layers: 4,
        l1_layer_bytes: 8 << 20,
        memory_budget_bytes: 128 << 20,
        ..Config::default()
    };
    let store = Store::create(dir.path(), config).expect("store");
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Bytes(16 * PAGE_SIZE as u64));
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(10));
    let mut next = 0u32;
    group.bench_function("commit_16_pages_with_flushes", |b| {
        b.iter(|| {
            let updates = (next..next + 16)
                .map(|block| (Key::new(1, block), Update::Image(page(block))))
                .collect();
            next = next.wrapping_add(16);
            store.commit("main", updates).expect("commit")
        })
    });
    group.finish();
    let stats = store.stats();
    eprintln!(
        "ingest: {} flushes ({} MiB), {} compactions ({} MiB)",
        stats.flushes,
        stats.flushed_bytes >> 20,
        stats.compactions,
        stats.compacted_bytes >> 20
    );
}

fn compaction(c: &mut Criterion) {
    let root = bench_root(env!("CARGO_TARGET_TMPDIR"));
    let layer_pages = (8 << 20) / PAGE_SIZE as u32;
    let mut group = c.benchmark_group("compaction");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(
        8 * u64::from(layer_pages) * PAGE_SIZE as u64,
    ));
    group.bench_function("merge_8_l0_of_8MiB", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let dir = tempfile::tempdir_in(&root).expect("temp dir");
                let store = manual_store(dir.path());
                for layer in 0..8u32 {
                    // Each L0 rewrites the same keys, so the merge interleaves all eight.
                    let updates: Vec<_> = (0..layer_pages)
                        .map(|block| (Key::new(1, block), Update::Image(page(block + layer))))
                        .collect();
                    for chunk in updates.chunks(256) {
                        store.commit("main", chunk.to_vec()).expect("commit");
                    }
                    store.checkpoint().expect("one L0");
                }
                let start = Instant::now();
                store.compact().expect("compact");
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, delta_chains, depth_with_layers, ingest, compaction);
criterion_main!(benches);
