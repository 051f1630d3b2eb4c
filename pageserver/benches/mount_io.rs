//! A mounted branch against the host file system, the same operations in the same run
//! (issue 20's goals: fsync-bound work, reads and writes at least 50% of the host's rate;
//! branch creation of a mounted 1 GiB tree what a branch costs anyway). Runs the real
//! `pagefork serve` and mounts `main` through its API, so it can branch the mounted tree.
//! Needs root and /dev/fuse; `pg_test_fsync` (postgresql-15) for its line of the table.
//! Run with `cargo bench -p pagefork-pageserver --bench mount_io`; `PAGEFORK_BENCH_MIB`
//! sets the file size (256 by default).

#![allow(missing_docs, clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn drop_caches() {
    let _ = Command::new("sync").status();
    let _ = fs::write("/proc/sys/vm/drop_caches", "3");
}

/// MiB/s of writing `size` bytes in 1 MiB writes, then one fsync.
fn sequential_write(path: &Path, size: u64) -> f64 {
    let chunk = vec![0x5au8; 1 << 20];
    let started = Instant::now();
    let mut file = File::create(path).unwrap();
    for _ in 0..size >> 20 {
        file.write_all(&chunk).unwrap();
    }
    file.sync_all().unwrap();
    (size >> 20) as f64 / started.elapsed().as_secs_f64()
}

/// MiB/s of reading `path` front to back in 1 MiB reads (as `cp`, `dd` or a database's
/// sequential scan do).
fn sequential_read(path: &Path) -> f64 {
    let mut file = File::open(path).unwrap();
    let mut buffer = vec![0u8; 1 << 20];
    let started = Instant::now();
    let mut total = 0usize;
    loop {
        let read = std::io::Read::read(&mut file, &mut buffer).unwrap();
        if read == 0 {
            break;
        }
        total += read;
    }
    (total >> 20) as f64 / started.elapsed().as_secs_f64()
}

/// The median of `ROUNDS` runs of `measure`.
fn median(mut measure: impl FnMut() -> f64) -> f64 {
    let mut runs: Vec<f64> = (0..ROUNDS).map(|_| measure()).collect();
    runs.sort_by(f64::total_cmp);
    runs[ROUNDS / 2]
}

/// Runs per figure: the host's own figures move a lot from one run to the next.
const ROUNDS: usize = 3;

fn random_reads(path: &Path, size: u64, count: u64) -> f64 {
    let file = File::open(path).unwrap();
    let mut buffer = vec![0u8; 8192];
    let mut seed = 17u64;
    let started = Instant::now();
    for _ in 0..count {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let block = (seed >> 33) % (size / 8192);
        file.read_exact_at(&mut buffer, block * 8192).unwrap();
    }
    count as f64 / started.elapsed().as_secs_f64()
}

fn random_writes(path: &Path, size: u64, count: u64) -> f64 {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    let buffer = vec![0xa5u8; 8192];
    let mut seed = 29u64;
    let started = Instant::now();
    for _ in 0..count {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let block = (seed >> 33) % (size / 8192);
        file.write_all_at(&buffer, block * 8192).unwrap();
    }
    file.sync_all().unwrap();
    count as f64 / started.elapsed().as_secs_f64()
}

/// 8 KiB overwrite + fdatasync per operation, for `seconds`: what a database's commit does.
fn write_fdatasync(path: &Path, seconds: f64) -> f64 {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    file.write_all_at(&vec![0u8; 1 << 20], 0).unwrap();
    file.sync_all().unwrap();
    let buffer = vec![1u8; 8192];
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed().as_secs_f64() < seconds {
        file.write_all_at(&buffer, (count % 128) * 8192).unwrap();
        file.sync_data().unwrap();
        count += 1;
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// `pg_test_fsync`'s fdatasync line (ops/s), if it is installed.
fn pg_test_fsync(dir: &Path) -> Option<f64> {
    let output = Command::new("/usr/lib/postgresql/15/bin/pg_test_fsync")
        .args(["-s", "2", "-f"])
        .arg(dir.join("pg_test_fsync.out"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find(|line| line.trim_start().starts_with("fdatasync"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|ops| ops.parse().ok())
}

/// Creates, renames and unlinks of `count` files per second, each as a separate figure.
fn metadata(dir: &Path, count: usize) -> (f64, f64, f64) {
    let work = dir.join("meta");
    fs::create_dir_all(&work).unwrap();
    let rate = |started: Instant| count as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for index in 0..count {
        File::create(work.join(format!("f{index}"))).unwrap();
    }
    let creates = rate(started);
    let started = Instant::now();
    for index in 0..count {
        fs::rename(
            work.join(format!("f{index}")),
            work.join(format!("g{index}")),
        )
        .unwrap();
    }
    let renames = rate(started);
    let started = Instant::now();
    for index in 0..count {
        fs::remove_file(work.join(format!("g{index}"))).unwrap();
    }
    (creates, renames, rate(started))
}

struct Figures {
    rows: Vec<(String, f64, f64, &'static str)>,
}

impl Figures {
    fn row(&mut self, what: &str, mount: f64, host: f64, unit: &'static str) {
        println!(
            "{what:<44} mount {mount:>10.1} {unit:<8} host {host:>10.1} {unit:<8} ratio {:>5.2}",
            mount / host
        );
        self.rows.push((what.to_owned(), mount, host, unit));
    }
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let mib: u64 = std::env::var("PAGEFORK_BENCH_MIB")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(256);
    let size = mib << 20;
    let root = tempfile::tempdir_in(
        std::env::var("PAGEFORK_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".to_owned()),
    )
    .unwrap();
    let data = root.path().join("data");
    let host = root.path().join("host");
    fs::create_dir_all(&host).unwrap();
    let served = support::Served::start(&data);
    assert_eq!(served.post("/v1/projects", r#"{"project_id": "p"}"#).0, 201);
    let mount_dir: PathBuf = data.join("mounts/main");
    fs::create_dir_all(&mount_dir).unwrap();
    let (status, body) = served.post("/v1/projects/p/branches/main/mount", r#"{"path": "main"}"#);
    assert_eq!(status, 201, "{body}");
    let mut figures = Figures { rows: Vec::new() };
    println!(
        "file of {mib} MiB, 8 KiB pages; mount = a mounted branch, host = the same disk directly"
    );
    let both = |measure: &dyn Fn(&Path) -> f64| {
        (median(|| measure(&mount_dir)), median(|| measure(&host)))
    };
    let (m, h) = both(&|dir| sequential_write(&dir.join("big"), size));
    figures.row("sequential write, 1 MiB writes + fsync", m, h, "MiB/s");
    let (m, h) = both(&|dir| sequential_read(&dir.join("big")));
    figures.row("sequential read, warm", m, h, "MiB/s");
    // One round: after its first read the store's layer pages are mapped by the server,
    // and dropping the kernel's caches cannot evict mapped pages.
    drop_caches();
    let m = sequential_read(&mount_dir.join("big"));
    drop_caches();
    let h = sequential_read(&host.join("big"));
    figures.row("sequential read, cold kernel cache", m, h, "MiB/s");
    drop_caches();
    let (m, h) = both(&|dir| random_reads(&dir.join("big"), size, 20_000));
    figures.row("random 8 KiB reads", m, h, "ops/s");
    let (m, h) = both(&|dir| random_writes(&dir.join("big"), size, 20_000));
    figures.row("random 8 KiB writes, then fsync", m, h, "ops/s");
    let (m, h) = both(&|dir| write_fdatasync(&dir.join("sync"), 3.0));
    figures.row("8 KiB write + fdatasync", m, h, "ops/s");
    if let (Some(m), Some(h)) = (pg_test_fsync(&mount_dir), pg_test_fsync(&host)) {
        figures.row("pg_test_fsync, fdatasync", m, h, "ops/s");
    }
    let (mc, mr, mu) = metadata(&mount_dir, 2000);
    let (hc, hr, hu) = metadata(&host, 2000);
    figures.row("creates", mc, hc, "ops/s");
    figures.row("renames", mr, hr, "ops/s");
    figures.row("unlinks", mu, hu, "ops/s");

    // Branch creation of the mounted tree at 1 GiB against an empty project's.
    let gib = mount_dir.join("gib");
    sequential_write(&gib, 1 << 30);
    let time_branch = |name: &str| {
        let body = format!(r#"{{"branch_id": "{name}", "spec": {{"no_expiry": true}}}}"#);
        let started = Instant::now();
        let (status, text) = served.post("/v1/projects/p/branches", &body);
        assert_eq!(status, 201, "{text}");
        started.elapsed()
    };
    let mut mounted: Vec<Duration> = (0..5)
        .map(|index| time_branch(&format!("b{index}")))
        .collect();
    mounted.sort();
    assert_eq!(
        served.post("/v1/projects", r#"{"project_id": "empty"}"#).0,
        201
    );
    let time_empty = |name: &str| {
        let body = format!(r#"{{"branch_id": "{name}", "spec": {{"no_expiry": true}}}}"#);
        let started = Instant::now();
        let (status, text) = served.post("/v1/projects/empty/branches", &body);
        assert_eq!(status, 201, "{text}");
        started.elapsed()
    };
    let mut empty: Vec<Duration> = (0..5)
        .map(|index| time_empty(&format!("e{index}")))
        .collect();
    empty.sort();
    println!(
        "branch of the mounted 1 GiB tree (API, median of 5): {:?}; of an empty project: {:?}; ratio {:.2}",
        mounted[2],
        empty[2],
        mounted[2].as_secs_f64() / empty[2].as_secs_f64()
    );
    let _ = std::io::stdout().flush();
}
