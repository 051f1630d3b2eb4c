//! The native layer files against RocksDB on the same work, in the same run: branch
//! creation at 64 MiB, branch at a timestamp over 10^4 commits, `get_page` through 0, 10
//! and 100 ancestors with flushed data and the page cache off, and ingest (64 MiB in
//! commits of 256 pages, then a checkpoint that flushes it). Each benchmark id is
//! `backend/parameter`, so criterion's report puts the two side by side.
//!
//! `get_page` is measured twice: through ancestors whose own pages lie outside the read
//! key's range (a branch's key bounds rule them out, so only the page's owner is searched:
//! the common case), and through ancestors whose flushed pages span the read key (every
//! ancestor is searched and misses: the worst case for a deep chain).
//!
//! Run: `cargo bench -p pagefork-benches --features rocksdb --bench backends` (without the
//! feature it measures the native backend alone; `--profile release` reuses a release
//! build's RocksDB, the bench profile has the same settings). `PAGEFORK_BENCH_DIR` picks
//! the disk.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pagefork_benches::{
    bench_root, branch_chain, branch_chain_writing, load, page_8k, unique_name,
};
use pagefork_engine::{
    At, Backend, BranchOptions, Clock, Config, Key, ManualClock, Store, SyncMode, Timestamp, Update,
};

const PAGE_SIZE: usize = 8192;
const MIB_64_PAGES: u32 = 64 * 1024 * 1024 / PAGE_SIZE as u32;

fn backends() -> Vec<Backend> {
    Backend::ALL
        .into_iter()
        .filter(|backend| backend.is_built())
        .collect()
}

fn config(backend: Backend) -> Config {
    Config {
        backend,
        page_cache_bytes: 0,
        ..Config::default()
    }
}

fn new_store(backend: Backend, config: Config) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir_in(bench_root(env!("CARGO_TARGET_TMPDIR"))).expect("temp dir");
    let store = Store::create(dir.path(), Config { backend, ..config }).expect("create store");
    (dir, store)
}

fn branch_creation(c: &mut Criterion) {
    let mut group = c.benchmark_group("backend_branch_create_64MiB");
    group.sample_size(30);
    for backend in backends() {
        let (_dir, store) = new_store(backend, config(backend));
        load(&store, "main", MIB_64_PAGES);
        store.checkpoint().expect("checkpoint");
        group.bench_function(BenchmarkId::from_parameter(backend), |b| {
            b.iter(|| {
                let name = unique_name("branch");
                black_box(
                    store
                        .create_branch(&name, "main", At::Latest, BranchOptions::default())
                        .expect("branch"),
                )
            })
        });
    }
    group.finish();
}

fn branch_at_timestamp(c: &mut Criterion) {
    const COMMITS: u64 = 10_000;
    let mut group = c.benchmark_group("backend_branch_at_timestamp_10k_commits");
    group.sample_size(30);
    for backend in backends() {
        let clock = ManualClock::new(Timestamp(1_775_000_000_000_000));
        let first = clock.now();
        let (_dir, store) = new_store(
            backend,
            Config {
                clock: Arc::new(clock.clone()),
                ..config(backend)
            },
        );
        for commit in 0..COMMITS {
            clock.advance(Duration::from_millis(1));
            let key = Key::new(1, (commit % 4096) as u32);
            store
                .commit("main", vec![(key, Update::Image(page_8k(commit as u32)))])
                .expect("commit");
        }
        store.checkpoint().expect("checkpoint");
        let mut probe = 0u64;
        group.bench_function(BenchmarkId::from_parameter(backend), |b| {
            b.iter(|| {
                probe = probe
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let time = first
                    .saturating_add(Duration::from_micros(1000 + probe % ((COMMITS - 1) * 1000)));
                let name = unique_name("pitr");
                black_box(
                    store
                        .create_branch(&name, "main", At::Time(time), BranchOptions::default())
                        .expect("branch at a time"),
                )
            })
        });
    }
    group.finish();
}

/// `get_page` of relation 1 through 0, 10 and 100 ancestors built by `chain` on a store
/// of 1,024 pages, with everything flushed: reads go to layer files or RocksDB, not memory.
fn reads_through(c: &mut Criterion, group: &str, chain: fn(&Store) -> Vec<String>) {
    let mut group = c.benchmark_group(group);
    for backend in backends() {
        let (_dir, store) = new_store(backend, config(backend));
        load(&store, "main", 1024);
        let chain = chain(&store);
        store.checkpoint().expect("checkpoint");
        for depth in [0usize, 10, 100] {
            let branch = &chain[depth];
            let mut block = 0u32;
            group.bench_function(BenchmarkId::new(backend.name(), depth), |b| {
                b.iter(|| {
                    block = (block + 1) % 1024;
                    let page = store
                        .get_page(branch, Key::new(1, block), At::Latest)
                        .expect("read");
                    assert!(page.is_some(), "block {block} missing on {branch}");
                    black_box(page)
                })
            });
        }
    }
    group.finish();
}

/// Ancestors that each wrote a page of relation 2: their key bounds rule them out.
fn reads_through_ancestors(c: &mut Criterion) {
    reads_through(c, "backend_get_page_depth_uncached", |store| {
        branch_chain(store, 100)
    });
}

/// Ancestors that each flushed two pages bracketing every key of relation 1 (block N of
/// relation 0 and block `u32::MAX - N` of relation 1): none can be ruled out by its key
/// bounds, so a read searches them all.
fn reads_through_searched_ancestors(c: &mut Criterion) {
    reads_through(
        c,
        "backend_get_page_depth_every_ancestor_searched",
        |store| {
            branch_chain_writing(store, 100, |level| {
                vec![
                    (Key::new(0, level), Update::Image(page_8k(level))),
                    (Key::new(1, u32::MAX - level), Update::Image(page_8k(level))),
                ]
            })
        },
    );
}

fn ingest(c: &mut Criterion) {
    let mut group = c.benchmark_group("backend_ingest_64MiB");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(
        u64::from(MIB_64_PAGES) * PAGE_SIZE as u64,
    ));
    for backend in backends() {
        group.bench_function(BenchmarkId::from_parameter(backend), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let (_dir, store) = new_store(
                        backend,
                        Config {
                            sync_mode: SyncMode::Never,
                            ..config(backend)
                        },
                    );
                    let started = Instant::now();
                    load(&store, "main", MIB_64_PAGES);
                    store.checkpoint().expect("checkpoint");
                    total += started.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    branch_creation,
    branch_at_timestamp,
    reads_through_ancestors,
    reads_through_searched_ancestors,
    ingest
);
criterion_main!(benches);
