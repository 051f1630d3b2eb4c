//! Remote storage against the local disk, in one run (issue 22's table): upload throughput
//! beside writing the same bytes to local disk; attaching a store of 1 GiB with 100
//! branches (whole, and lazily); the first read from an evicted layer beside a read from a
//! cached one; branch creation and PITR with a replicator syncing beside without one.
//! Against a real S3-compatible server on 127.0.0.1 (`s3s-fs`, as the tests use; it
//! persists to the same disk). Run with `cargo bench -p pagefork-pageserver --bench remote`;
//! `PAGEFORK_BENCH_MIB` sets the store's size (1024 by default), `PAGEFORK_BENCH_BRANCHES`
//! its branches (100).

#![allow(missing_docs, clippy::unwrap_used, clippy::indexing_slicing)]

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use pagefork_engine::{
    At, BranchOptions, Config, Key, LayerCacheConfig, LayerSource, Store, Timestamp, Update,
};
use pagefork_remote::{RemoteLayers, Replicator, Uploader};
use pagefork_tests::s3::S3Server;

const PAGE: usize = 8192;
const PAGES_PER_COMMIT: u32 = 64;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn page(seed: u64, block: u32) -> Bytes {
    let mut bytes = vec![0u8; PAGE];
    let mut state = seed ^ (u64::from(block) << 20) ^ 0x9E37_79B9_7F4A_7C15;
    for chunk in bytes.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    Bytes::from(bytes)
}

/// `mib` MiB of pages on `main` (relation 1), then `branches` branches of it, each with
/// 16 pages of its own; checkpointed and compacted.
fn build_store(dir: &Path, mib: u64, branches: u64) -> (Store, u32) {
    let store = Store::create(dir, Config::default()).unwrap();
    let blocks = (mib << 20) / PAGE as u64;
    let blocks = u32::try_from(blocks).unwrap();
    for first in (0..blocks).step_by(PAGES_PER_COMMIT as usize) {
        let updates = (first..(first + PAGES_PER_COMMIT).min(blocks))
            .map(|block| (Key::new(1, block), Update::Image(page(1, block))))
            .collect();
        store.commit("main", updates).unwrap();
    }
    for number in 0..branches {
        let name = format!("b{number:03}");
        store
            .create_branch(&name, "main", At::Latest, BranchOptions::default())
            .unwrap();
        let updates = (0..16)
            .map(|block| {
                let block = (number as u32 * 997 + block * 131) % blocks;
                (Key::new(1, block), Update::Image(page(number + 2, block)))
            })
            .collect();
        store.commit(&name, updates).unwrap();
    }
    store.compact().unwrap();
    (store, blocks)
}

fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / f64::from(1 << 20) / elapsed.as_secs_f64()
}

/// Writes files of the layer files' sizes into `dir`, each fsynced, as a local copy would.
fn local_copy(sizes: &[u64], dir: &Path) -> Duration {
    std::fs::create_dir_all(dir).unwrap();
    let chunk = vec![0x5Au8; 1 << 20];
    let started = Instant::now();
    for (number, size) in sizes.iter().enumerate() {
        let mut file = File::create(dir.join(format!("{number}"))).unwrap();
        let mut left = *size;
        while left > 0 {
            let now = left.min(chunk.len() as u64) as usize;
            file.write_all(&chunk[..now]).unwrap();
            left -= now as u64;
        }
        file.sync_all().unwrap();
    }
    File::open(dir).unwrap().sync_all().unwrap();
    started.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1000.0)
}

/// Median latency of creating a branch at latest and one at a time (PITR), `samples` each.
fn branch_and_pitr(store: &Store, prefix: &str, samples: usize) -> (Duration, Duration) {
    let now = Timestamp::from_system_time(SystemTime::now());
    let (mut latest, mut at_time) = (Vec::new(), Vec::new());
    for number in 0..samples {
        let started = Instant::now();
        store
            .create_branch(
                &format!("{prefix}-l{number}"),
                "main",
                At::Latest,
                BranchOptions::default(),
            )
            .unwrap();
        latest.push(started.elapsed());
        let started = Instant::now();
        store
            .create_branch(
                &format!("{prefix}-t{number}"),
                "main",
                At::Time(now),
                BranchOptions::default(),
            )
            .unwrap();
        at_time.push(started.elapsed());
    }
    (median(latest), median(at_time))
}

fn main() {
    let mib = env_number("PAGEFORK_BENCH_MIB", 1024);
    let branches = env_number("PAGEFORK_BENCH_BRANCHES", 100);
    let server = S3Server::start();
    let location = server.location("bench");
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("store");

    eprintln!("building a store of {mib} MiB with {branches} branches...");
    let started = Instant::now();
    let (store, blocks) = build_store(&data, mib, branches);
    eprintln!("built in {:.1} s", started.elapsed().as_secs_f64());
    let files = store.pin_published().unwrap();
    store.unpin_published();
    let sizes: Vec<u64> = files.layers.iter().map(|layer| layer.size).collect();
    let layer_bytes: u64 = sizes.iter().sum();

    // 1. Upload against writing the same bytes to local disk.
    let local = local_copy(&sizes, &root.path().join("local-copy"));
    let _ = std::fs::remove_dir_all(root.path().join("local-copy"));
    let mut uploader = Uploader::connect(&location, &store).unwrap();
    let report = uploader.sync(&store).unwrap();
    let upload = mib_per_s(report.uploaded_bytes, report.elapsed);
    let local_rate = mib_per_s(layer_bytes, local);

    // 2. Branch and PITR with a replicator syncing every 100 ms, and without.
    let samples = 50;
    let (latest_off, time_off) = branch_and_pitr(&store, "off", samples);
    drop(uploader);
    let replicator =
        Replicator::start(&location, store.clone(), Duration::from_millis(100), None).unwrap();
    let (latest_on, time_on) = branch_and_pitr(&store, "on", samples);
    replicator.sync_now().unwrap();
    drop(replicator);
    drop(store);

    // 3. Attach: every file, and lazily.
    let whole_dir = root.path().join("whole");
    let started = Instant::now();
    pagefork_remote::attach(&location, &whole_dir).unwrap();
    let whole_attach = started.elapsed();
    let attached = Store::open(&whole_dir).unwrap();
    let whole = started.elapsed();
    eprintln!(
        "whole attach {whole_attach:?}, open {:?}",
        whole - whole_attach
    );
    assert_eq!(attached.branch_count(), 1 + branches as usize + 4 * samples);
    drop(attached);
    let _ = std::fs::remove_dir_all(&whole_dir);
    let lazy_dir = root.path().join("lazy");
    let started = Instant::now();
    pagefork_remote::attach_lazily(&location, &lazy_dir).unwrap();
    let lazy_attach = started.elapsed();
    let source = RemoteLayers::new(&location);
    let config = Config {
        layer_cache: Some(LayerCacheConfig {
            source: Arc::clone(&source) as Arc<dyn LayerSource>,
            budget_bytes: None,
        }),
        ..Config::default()
    };
    let lazy_store = Store::open_with(&lazy_dir, config).unwrap();
    let lazy = started.elapsed();
    // 4. A read that downloads its layer against one from a layer on disk (another page of
    // the same layer: not in the page cache).
    let reads = 20u32;
    let (mut first_reads, mut cached_reads) = (Vec::new(), Vec::new());
    for number in 0..reads {
        let block = number * (blocks / reads);
        lazy_store.evict_layers_to(0).unwrap();
        let started = Instant::now();
        let read = lazy_store
            .get_page("main", Key::new(1, block), At::Latest)
            .unwrap();
        first_reads.push(started.elapsed());
        assert!(read.is_some());
        let started = Instant::now();
        lazy_store
            .get_page("main", Key::new(1, block + 1), At::Latest)
            .unwrap();
        cached_reads.push(started.elapsed());
    }
    let downloads = lazy_store.layer_cache_stats().unwrap();
    let (first, cached) = (median(first_reads), median(cached_reads));

    println!(
        "remote storage, {mib} MiB store, {branches} branches, {} layer files ({} MiB), s3s-fs on 127.0.0.1",
        sizes.len(),
        layer_bytes >> 20
    );
    println!("| measure | with remote storage | local disk / without | ratio |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| upload of the layer files (MiB/s) | {upload:.1} ({} objects) | {local_rate:.1} (same sizes written and fsynced) | {:.2} |",
        report.uploaded_objects,
        upload / local_rate
    );
    println!(
        "| attach {mib} MiB, {} branches, and open | whole: {:.2} s; lazy: {:.3} s (attach {:.3} s) | | {:.1}x faster lazily |",
        1 + branches as usize + 4 * samples,
        whole.as_secs_f64(),
        lazy.as_secs_f64(),
        lazy_attach.as_secs_f64(),
        whole.as_secs_f64() / lazy.as_secs_f64()
    );
    println!(
        "| read of a page, median of {reads} | first read from an evicted layer: {} | from a layer on disk: {} | {:.0}x |",
        ms(first),
        ms(cached),
        first.as_secs_f64() / cached.as_secs_f64()
    );
    println!(
        "| branch at latest, median of {samples} | replicator syncing every 100 ms: {} | without: {} | {:.2} |",
        ms(latest_on),
        ms(latest_off),
        latest_on.as_secs_f64() / latest_off.as_secs_f64()
    );
    println!(
        "| branch at a time (PITR), median of {samples} | replicator syncing every 100 ms: {} | without: {} | {:.2} |",
        ms(time_on),
        ms(time_off),
        time_on.as_secs_f64() / time_off.as_secs_f64()
    );
    println!(
        "(lazy store: {} layer files downloaded by the reads, {} MiB)",
        downloads.downloads,
        downloads.downloaded_bytes >> 20
    );
}
