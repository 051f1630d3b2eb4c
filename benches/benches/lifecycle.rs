//! Lifecycle benchmarks: restore, branch creation at a timestamp and a checkpoint after a
//! commit against history length (10^3 to 10^6 commits), reset at 1 MiB and 64 MiB (must be flat), diff against pages
//! changed at 8 MiB and 64 MiB of data (flat in data size), GC throughput with the space it
//! reclaims, detach, and the on-disk space of 100 branches each changing 1% of a 64 MiB
//! base (goal: at most 2.3x the base).
//!
//! Run: `cargo bench -p pagefork-benches --bench lifecycle` (`PAGEFORK_BENCH_DIR` picks the
//! disk; default a temporary directory under `target/`). Space and GC figures are printed
//! to stderr.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use pagefork_benches::{bench_root, page_8k};
use pagefork_engine::{
    At, Backup, BranchOptions, Config, Key, ManualClock, Store, SyncMode, Timestamp, Update,
};

const PAGE_SIZE: usize = 8192;
const PAGES_PER_COMMIT: u32 = 256;
/// The page size of `against_history`'s store: small, so a million commits stay small.
const HISTORY_PAGE_SIZE: usize = 512;
const START: Timestamp = Timestamp(1_775_000_000_000_000);

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(bench_root(env!("CARGO_TARGET_TMPDIR"))).expect("temp dir")
}

/// Commits pages `first..first + count` of relation 1, each filled with `fill`.
fn write_pages(store: &Store, branch: &str, first: u32, count: u32, fill: u32) {
    for start in (first..first + count).step_by(PAGES_PER_COMMIT as usize) {
        let updates = (start..(start + PAGES_PER_COMMIT).min(first + count))
            .map(|block| (Key::new(1, block), Update::Image(page_8k(fill + block))))
            .collect();
        store.commit(branch, updates).expect("commit");
    }
}

/// A durable store in `dir` with `mib` MiB of 8 KiB pages on `main`.
fn loaded_store(dir: &Path, mib: u32, config: Config) -> Store {
    let store = Store::create(dir, config).expect("create store");
    write_pages(&store, "main", 0, mib * 1024 * 1024 / PAGE_SIZE as u32, 0);
    store
}

fn durable() -> Config {
    Config {
        sync_mode: SyncMode::Always,
        ..Config::default()
    }
}

/// The `written`-th one-page commit of `against_history`, 1 ms after the last (not waited
/// for: durable with the next fsync).
fn commit_next(store: &Store, clock: &ManualClock, written: &mut u64) {
    clock.advance(Duration::from_millis(1));
    let image = Bytes::from(vec![*written as u8; HISTORY_PAGE_SIZE]);
    let key = Key::new(1, (*written % 4096) as u32);
    store
        .commit_deferred("main", vec![(key, Update::Image(image))])
        .expect("commit");
    *written += 1;
}

/// Restore in place and branch creation at a time, with 10^3 to 10^6 one-page commits of
/// history (1 ms apart on a manual clock; the store grows between the sizes).
fn against_history(c: &mut Criterion) {
    let dir = temp_dir();
    let clock = ManualClock::new(START);
    let config = |sync_mode| Config {
        sync_mode,
        page_size: HISTORY_PAGE_SIZE,
        clock: Arc::new(clock.clone()),
        ..Config::default()
    };
    drop(Store::create(dir.path(), config(SyncMode::Never)).expect("create store"));
    let mut written = 0u64;
    let mut group = c.benchmark_group("history");
    group.sample_size(20);
    for commits in [1_000u64, 10_000, 100_000, 1_000_000] {
        {
            let store = Store::open_with(dir.path(), config(SyncMode::Never)).expect("open");
            while written < commits {
                commit_next(&store, &clock, &mut written);
            }
            store.checkpoint().expect("checkpoint");
        }
        let store = Store::open_with(dir.path(), config(SyncMode::Always)).expect("reopen");
        if store.branch_info("target").is_err() {
            store
                .create_branch("target", "main", At::Latest, BranchOptions::default())
                .expect("target");
        }
        let mut probe = 0u64;
        let mut next_time = || {
            probe = probe
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            START.saturating_add(Duration::from_micros(1000 + probe % ((commits - 1) * 1000)))
        };
        group.bench_function(BenchmarkId::new("restore_at_time", commits), |b| {
            b.iter(|| {
                black_box(
                    store
                        .restore_branch("target", "main", At::Time(next_time()), Backup::Skip)
                        .expect("restore"),
                )
            })
        });
        let mut created = Vec::new();
        group.bench_function(BenchmarkId::new("branch_at_time", commits), |b| {
            b.iter(|| {
                let name = format!("pitr-{}", created.len());
                let info = store
                    .create_branch(
                        &name,
                        "main",
                        At::Time(next_time()),
                        BranchOptions::default(),
                    )
                    .expect("branch at a time");
                created.push(name);
                black_box(info)
            })
        });
        for name in created {
            store.delete_branch(&name).expect("delete");
        }
        // A catalog after one more commit: it writes the new point as a run and lists
        // runs, so it costs the same whatever the history (it used to rewrite every
        // point). Each iteration adds one point to the history measured next.
        group.bench_function(
            BenchmarkId::new("checkpoint_after_a_commit", commits),
            |b| {
                b.iter_custom(|iterations| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iterations {
                        commit_next(&store, &clock, &mut written);
                        let started = Instant::now();
                        black_box(store.checkpoint().expect("checkpoint"));
                        spent += started.elapsed();
                    }
                    spent
                })
            },
        );
    }
    group.finish();
}

/// Reset of a branch with a few own pages, at 1 MiB and 64 MiB of parent data.
fn reset(c: &mut Criterion) {
    let mut group = c.benchmark_group("reset");
    group.sample_size(30);
    for mib in [1u32, 64] {
        let dir = temp_dir();
        let store = loaded_store(dir.path(), mib, durable());
        store
            .create_branch("dev", "main", At::Latest, BranchOptions::default())
            .expect("dev");
        group.bench_function(BenchmarkId::from_parameter(format!("{mib}MiB")), |b| {
            b.iter_custom(|iterations| {
                let mut spent = Duration::ZERO;
                for _ in 0..iterations {
                    write_pages(&store, "dev", 0, 4, 7);
                    let start = Instant::now();
                    black_box(store.reset_branch("dev").expect("reset"));
                    spent += start.elapsed();
                }
                spent
            })
        });
    }
    group.finish();
}

/// Diff of `main` and a child that changed 1, 10 or 100 pages, at 8 MiB and 64 MiB.
fn diff(c: &mut Criterion) {
    let mut group = c.benchmark_group("diff");
    group.sample_size(30);
    for mib in [8u32, 64] {
        let dir = temp_dir();
        let store = loaded_store(dir.path(), mib, durable());
        for changed in [1u32, 10, 100] {
            let name = format!("changed-{changed}");
            store
                .create_branch(&name, "main", At::Latest, BranchOptions::default())
                .expect("branch");
            write_pages(&store, &name, 0, changed, 99);
            group.bench_function(BenchmarkId::new(format!("{mib}MiB"), changed), |b| {
                b.iter(|| {
                    let diff = store
                        .diff("main", At::Latest, &name, At::Latest)
                        .expect("diff");
                    assert_eq!(diff.changed.len(), changed as usize);
                    black_box(diff)
                })
            });
        }
    }
    group.finish();
}

/// GC of a 16 MiB base rewritten 4 times (80 MiB of history, 64 MiB of it collectable),
/// each iteration on a fresh store; prints what it reclaimed.
fn gc(c: &mut Criterion) {
    const BASE_MIB: u32 = 16;
    let mut group = c.benchmark_group("gc");
    group.sample_size(10);
    let mut reclaimed = Vec::new();
    group.bench_function(format!("{BASE_MIB}MiB_base_x5"), |b| {
        b.iter_custom(|iterations| {
            let mut spent = Duration::ZERO;
            for _ in 0..iterations {
                let dir = temp_dir();
                let clock = ManualClock::new(START);
                let config = Config {
                    clock: Arc::new(clock.clone()),
                    pitr_window: Duration::from_secs(60),
                    gc_period: Duration::ZERO,
                    ..Config::default()
                };
                let store = Store::create(dir.path(), config).expect("create");
                let pages = BASE_MIB * 1024 * 1024 / PAGE_SIZE as u32;
                for round in 0..5 {
                    write_pages(&store, "main", 0, pages, round * 7);
                    clock.advance(Duration::from_secs(1));
                }
                store.checkpoint().expect("checkpoint");
                clock.advance(Duration::from_secs(120));
                let before = dir_bytes(dir.path());
                let start = Instant::now();
                let report = store.gc().expect("gc");
                spent += start.elapsed();
                reclaimed.push((report.bytes_removed, report.bytes_written, before));
            }
            spent
        })
    });
    group.finish();
    if let Some((removed, written, before)) = reclaimed.last() {
        eprintln!(
            "gc: store {:.1} MiB before; removed {:.1} MiB of layers, wrote {:.1} MiB (net {:.1} MiB reclaimed)",
            mib(*before),
            mib(*removed),
            mib(*written),
            mib(removed.saturating_sub(*written))
        );
    }
}

/// Detach of a branch of a 64 MiB base (copies what it reads through the parent).
fn detach(c: &mut Criterion) {
    let dir = temp_dir();
    let store = loaded_store(dir.path(), 64, durable());
    store.checkpoint().expect("checkpoint");
    let mut group = c.benchmark_group("detach");
    group.sample_size(10);
    let mut count = 0u32;
    group.bench_function("64MiB", |b| {
        b.iter_custom(|iterations| {
            let mut spent = Duration::ZERO;
            for _ in 0..iterations {
                let name = format!("detached-{count}");
                count += 1;
                store
                    .create_branch(&name, "main", At::Latest, BranchOptions::default())
                    .expect("branch");
                let start = Instant::now();
                black_box(store.detach_branch(&name).expect("detach"));
                spent += start.elapsed();
                store.delete_branch(&name).expect("delete");
            }
            spent
        })
    });
    group.finish();
}

/// Space: 100 branches each rewriting a different 1% of a 64 MiB base, checkpointed; the
/// store's bytes on disk against the base's. Printed, and timed as the whole build.
fn space(c: &mut Criterion) {
    const BASE_MIB: u32 = 64;
    let pages = BASE_MIB * 1024 * 1024 / PAGE_SIZE as u32;
    let per_branch = pages / 100;
    let mut group = c.benchmark_group("space");
    group.sample_size(10);
    let mut ratio = 0.0;
    let mut total = 0;
    group.bench_function("100_branches_x1pct_of_64MiB", |b| {
        b.iter_custom(|iterations| {
            let mut spent = Duration::ZERO;
            for _ in 0..iterations {
                let dir = temp_dir();
                let store = loaded_store(dir.path(), BASE_MIB, Config::default());
                let start = Instant::now();
                for branch in 0..100 {
                    let name = format!("b{branch}");
                    store
                        .create_branch(&name, "main", At::Latest, BranchOptions::default())
                        .expect("branch");
                    write_pages(&store, &name, branch * per_branch, per_branch, 50);
                }
                store.checkpoint().expect("checkpoint");
                spent += start.elapsed();
                total = dir_bytes(dir.path());
                ratio = total as f64 / f64::from(BASE_MIB * 1024 * 1024);
            }
            spent
        })
    });
    group.finish();
    eprintln!(
        "space: 100 branches x {per_branch} pages (1%) of a {BASE_MIB} MiB base: {:.1} MiB on disk = {ratio:.2}x the base (goal 2.3x)",
        mib(total)
    );
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Bytes the files under `dir` take on disk (allocated blocks).
fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("dir entry");
        let metadata = entry.metadata().expect("metadata");
        total += if metadata.is_dir() {
            dir_bytes(&entry.path())
        } else {
            metadata.blocks() * 512
        };
    }
    total
}

criterion_group!(benches, against_history, reset, diff, gc, detach, space);
criterion_main!(benches);
