//! Engine benchmarks: branch creation at 1 MiB, 64 MiB and 512 MiB of data (must be flat),
//! branch at a timestamp over 10^6 commits, commit latency and throughput, and `get_page`
//! through 0, 1, 10 and 100 ancestors, with the page cache off and on.
//!
//! Run: `cargo bench -p pagefork-benches --bench engine` (`PAGEFORK_BENCH_DIR` picks the
//! disk; default a temporary directory under `target/`).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pagefork_benches::{bench_root, branch_chain, load, unique_name};
use pagefork_engine::{
    At, BranchOptions, Config, Key, ManualClock, Store, SyncMode, Timestamp, Update,
};

const PAGE_SIZE: usize = 8192;

fn page(fill: u32) -> Bytes {
    Bytes::from(vec![fill as u8; PAGE_SIZE])
}

fn branch_creation(c: &mut Criterion) {
    let mut group = c.benchmark_group("branch_create_durable");
    group.sample_size(30);
    for mib in [1u32, 64, 512] {
        let dir = tempfile::tempdir_in(bench_root(env!("CARGO_TARGET_TMPDIR"))).expect("temp dir");
        let config = Config {
            sync_mode: SyncMode::Always,
            ..Config::default()
        };
        let store = Store::create(dir.path(), config).expect("create store");
        load(&store, "main", mib * 1024 * 1024 / PAGE_SIZE as u32);
        group.bench_function(BenchmarkId::from_parameter(format!("{mib}MiB")), |b| {
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
    const COMMITS: u64 = 1_000_000;
    let dir = tempfile::tempdir_in(bench_root(env!("CARGO_TARGET_TMPDIR"))).expect("temp dir");
    let clock = ManualClock::new(Timestamp(1_775_000_000_000_000));
    // Small pages on rotating keys: the lookup is what is measured, and a commit that
    // patches one page again and again would build a delta chain that every later patch
    // check walks (bounded by the image layers of the next issue).
    const SMALL_PAGE: usize = 512;
    let config = |sync_mode| Config {
        sync_mode,
        page_size: SMALL_PAGE,
        clock: Arc::new(clock.clone()),
        ..Config::default()
    };
    let start = Instant::now();
    {
        let store = Store::create(dir.path(), config(SyncMode::Never)).expect("create store");
        for commit in 0..COMMITS {
            clock.advance(Duration::from_millis(1));
            let image = Bytes::from(vec![commit as u8; SMALL_PAGE]);
            let key = Key::new(1, (commit % 4096) as u32);
            store
                .commit("main", vec![(key, Update::Image(image))])
                .expect("commit");
        }
    }
    let store = Store::open_with(dir.path(), config(SyncMode::Always)).expect("reopen");
    eprintln!(
        "branch_at_timestamp: {COMMITS} commits written and replayed in {:.1?}",
        start.elapsed()
    );
    let first = Timestamp(1_775_000_000_000_000);
    let mut group = c.benchmark_group("branch_at_timestamp_1M_commits");
    group.sample_size(30);
    let mut probe = 0u64;
    let mut next_time = || {
        probe = probe
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Commit n is at `first` + n ms, n = 1..=COMMITS: probe that span, never before it.
        first.saturating_add(Duration::from_micros(1000 + probe % ((COMMITS - 1) * 1000)))
    };
    group.bench_function("lsn_for_time", |b| {
        b.iter(|| black_box(store.lsn_for_time("main", next_time()).expect("lookup")))
    });
    group.bench_function("create_branch_durable", |b| {
        b.iter(|| {
            let name = unique_name("pitr");
            black_box(
                store
                    .create_branch(
                        &name,
                        "main",
                        At::Time(next_time()),
                        BranchOptions::default(),
                    )
                    .expect("branch at a time"),
            )
        })
    });
    group.finish();
}

fn commits(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit_1_page_8KiB");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    for threads in [1usize, 16] {
        let dir = tempfile::tempdir_in(bench_root(env!("CARGO_TARGET_TMPDIR"))).expect("temp dir");
        let config = Config {
            sync_mode: SyncMode::Always,
            ..Config::default()
        };
        let store = Store::create(dir.path(), config).expect("create store");
        let branches: Vec<String> = (0..threads)
            .map(|thread| {
                let name = format!("writer-{thread}");
                store
                    .create_branch(&name, "main", At::Latest, BranchOptions::default())
                    .expect("branch");
                name
            })
            .collect();
        group.bench_function(BenchmarkId::new("always", format!("{threads}t")), |b| {
            b.iter_custom(|commits| {
                let per_thread = commits.div_ceil(threads as u64);
                let started = Instant::now();
                std::thread::scope(|scope| {
                    for branch in &branches {
                        let store = &store;
                        scope.spawn(move || {
                            for commit in 0..per_thread {
                                let update = Update::Image(page(commit as u32));
                                store
                                    .commit(branch, vec![(Key::new(2, commit as u32 % 64), update)])
                                    .expect("commit");
                            }
                        });
                    }
                });
                started.elapsed()
            })
        });
    }
    group.finish();
}

/// A chain of 100 branches over 1024 pages of main, each level writing a page of its own.
fn store_with_chain(page_cache_bytes: u64) -> (Store, Vec<String>) {
    let config = Config {
        page_cache_bytes,
        ..Config::default()
    };
    let store = Store::in_memory(config).expect("store");
    load(&store, "main", 1024);
    let chain = branch_chain(&store, 100);
    (store, chain)
}

fn reads_through_ancestors(c: &mut Criterion) {
    let mut group = c.benchmark_group("get_page_depth");
    for (label, cache_bytes) in [("uncached", 0), ("cached", 64 * 1024 * 1024)] {
        let (store, chain) = store_with_chain(cache_bytes);
        for depth in [0usize, 1, 10, 100] {
            let branch = &chain[depth];
            let mut block = 0u32;
            group.bench_function(BenchmarkId::new(label, depth), |b| {
                b.iter(|| {
                    block = (block + 1) % 1024;
                    black_box(
                        store
                            .get_page(branch, Key::new(1, block), At::Latest)
                            .expect("read"),
                    )
                })
            });
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    branch_creation,
    branch_at_timestamp,
    commits,
    reads_through_ancestors
);
criterion_main!(benches);
