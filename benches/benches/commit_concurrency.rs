//! Commits per second from 16 threads on one branch against 16 threads on 16 branches,
//! in the same run (issue 20's goal: one branch within 20% of sixteen). Durable commits
//! (`SyncMode::Always`, 8 KiB pages) on the real disk; each thread commits single pages.

#![allow(missing_docs, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pagefork_engine::{At, BranchOptions, Config, Key, Store, SyncMode, Update};

const THREADS: u32 = 16;
const COMMITS_PER_THREAD: u32 = 8;

/// Runs `THREADS` writers, writer `t` committing to `branch_of(t)`, `iterations` times;
/// returns the total time.
fn run(store: &Store, branch_of: impl Fn(u32) -> String + Sync, iterations: u64) -> Duration {
    let page: bytes::Bytes = vec![7u8; 8192].into();
    let started = Instant::now();
    for iteration in 0..iterations {
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let (store, page, branch) = (store.clone(), page.clone(), branch_of(thread));
                scope.spawn(move || {
                    for round in 0..COMMITS_PER_THREAD {
                        let block = (iteration as u32 % 64) * COMMITS_PER_THREAD + round;
                        let key = Key::new(thread + 1, block);
                        store
                            .commit(&branch, vec![(key, Update::Image(page.clone()))])
                            .unwrap();
                    }
                });
            }
        });
    }
    started.elapsed()
}

fn commits(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        sync_mode: SyncMode::Always,
        ..Config::default()
    };
    let store = Store::create(dir.path(), config).unwrap();
    for thread in 0..THREADS {
        store
            .create_branch(
                &format!("b{thread}"),
                "main",
                At::Latest,
                BranchOptions::default(),
            )
            .unwrap();
    }
    let mut group = c.benchmark_group("commits_16_threads");
    group.throughput(Throughput::Elements(u64::from(
        THREADS * COMMITS_PER_THREAD,
    )));
    group.sample_size(20);
    group.bench_function("one_branch", |b| {
        b.iter_custom(|iterations| run(&store, |_| "main".to_owned(), iterations))
    });
    group.bench_function("sixteen_branches", |b| {
        b.iter_custom(|iterations| run(&store, |thread| format!("b{thread}"), iterations))
    });
    group.finish();
}

criterion_group!(benches, commits);
criterion_main!(benches);
