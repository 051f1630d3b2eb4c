//! WAL append throughput against the raw disk, in one run.
//!
//! For records of 128 B, 8 KiB and 64 KiB: `SyncMode::Never`, `Always` and `Group` at 1, 4
//! and 16 threads, and two baselines over the same bytes on the same disk:
//! - `raw_fsync_each`: one thread, `write` + `fdatasync` per record (what a naive
//!   durable log does);
//! - `raw_fsync_every_16`: one thread, `write` per record and one `fdatasync` per 16
//!   records: the I/O that group commit with 16 threads can at best produce (at most 16
//!   records are in flight), so `group/16t` against it measures the WAL's own overhead;
//! - `raw_stream`: one thread, `write` every record, one `fsync` at the end (the disk's
//!   sequential bandwidth: a ceiling no durable per-record log reaches).
//!
//! Throughput is reported in bytes of payload per second; records/s = bytes/s / size.
//! Run: `cargo bench -p pagefork-benches --bench wal_append` (set `PAGEFORK_BENCH_DIR` to
//! measure on another disk, default a temporary directory under `target/`, and
//! `PAGEFORK_GROUP_DELAY_US` for the group-commit linger, default 100).

use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pagefork_benches::bench_root;
use pagefork_wal::{SyncMode, Wal, WalConfig};

const RECORD_SIZES: [usize; 3] = [128, 8 * 1024, 64 * 1024];
const THREADS: [usize; 3] = [1, 4, 16];
/// `SyncMode::Group { max_delay }` used unless `PAGEFORK_GROUP_DELAY_US` says otherwise.
const DEFAULT_GROUP_DELAY_US: u64 = 100;

fn mode_name(mode: SyncMode) -> &'static str {
    match mode {
        SyncMode::Never => "never",
        SyncMode::Always => "always",
        SyncMode::Group { .. } => "group",
    }
}

/// Appends `records` records of `size` bytes split over `threads` threads to a fresh log
/// and returns the time the appends took (log creation excluded).
fn time_appends(mode: SyncMode, size: usize, threads: usize, records: u64) -> Duration {
    let dir = tempfile::tempdir_in(bench_root(env!("CARGO_TARGET_TMPDIR"))).expect("temp dir");
    let config = WalConfig {
        sync_mode: mode,
        ..WalConfig::default()
    };
    let wal = Wal::create(dir.path(), config).expect("create log");
    let payload = vec![0x5Au8; size];
    let per_thread = records.div_ceil(threads as u64);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let wal = &wal;
            let payload = &payload;
            scope.spawn(move || {
                for _ in 0..per_thread {
                    black_box(wal.append(1, payload).expect("append"));
                }
            });
        }
    });
    start.elapsed()
}

/// The raw baselines: the same bytes (record frames of the same length) written to one
/// file, with an `fdatasync` after every `records_per_fsync` records (`None`: only at the end).
fn time_raw(size: usize, records: u64, records_per_fsync: Option<u64>) -> Duration {
    let dir = tempfile::tempdir_in(bench_root(env!("CARGO_TARGET_TMPDIR"))).expect("temp dir");
    let mut file = File::create(dir.path().join("raw")).expect("create raw file");
    let frame = vec![0x5Au8; (16 + size).div_ceil(8) * 8];
    let start = Instant::now();
    for written in 1..=records {
        file.write_all(&frame).expect("write");
        if records_per_fsync.is_some_and(|every| written % every == 0) {
            file.sync_data().expect("fdatasync");
        }
    }
    file.sync_all().expect("fsync");
    start.elapsed()
}

fn wal_append(c: &mut Criterion) {
    let group_delay_us = std::env::var("PAGEFORK_GROUP_DELAY_US")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(DEFAULT_GROUP_DELAY_US);
    let group_mode = SyncMode::Group {
        max_delay: Duration::from_micros(group_delay_us),
    };
    for size in RECORD_SIZES {
        let mut group = c.benchmark_group(format!("wal_append/{size}B"));
        group.throughput(Throughput::Bytes(size as u64));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        group.bench_function("raw_fsync_each", |b| {
            b.iter_custom(|records| time_raw(size, records, Some(1)))
        });
        group.bench_function("raw_fsync_every_16", |b| {
            b.iter_custom(|records| time_raw(size, records, Some(16)))
        });
        group.bench_function("raw_stream", |b| {
            b.iter_custom(|records| time_raw(size, records, None))
        });
        for mode in [SyncMode::Never, SyncMode::Always, group_mode] {
            for threads in THREADS {
                let id = BenchmarkId::new(mode_name(mode), format!("{threads}t"));
                group.bench_function(id, |b| {
                    b.iter_custom(|records| time_appends(mode, size, threads, records))
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, wal_append);
criterion_main!(benches);
