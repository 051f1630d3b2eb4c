//! `pagefork bench`: branch and restore latency at data sizes the user picks, beside the
//! thing users do without branching, a full copy of the same data, measured in the same
//! run on the same disk.
//!
//! For each size: load that many bytes of 8 KiB pages into a fresh store (durable
//! commits, then a checkpoint so the pages are in layer files), then time, each
//! `--branches` times: creating a branch at the latest state, creating a branch at a
//! time inside the load (PITR), restoring a branch in place at such a time, and reading
//! distinct pages through a chain of `--depth` branches; and, three times, copying the
//! store's files with fsync (`cp -r` and `sync`, as users copy a database). Medians and
//! p99s go in a table (or JSON), each with the full copy's median over its own.

mod plot;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use pagefork_engine::{At, Backend, Backup, BranchOptions, Config, Key, Store, Timestamp, Update};
use serde_json::{Value, json};

use crate::demo::format_duration;
use crate::mount::StopSignals;
use crate::output::out;

const PAGE_SIZE: usize = 8192;
const DATA_REL: u32 = 1;
const PAGES_PER_COMMIT: u64 = 128;
const COPIES: usize = 3;

/// What to run.
#[derive(Clone, Debug)]
pub(crate) struct BenchOptions {
    /// Data sizes in bytes.
    pub(crate) sizes: Vec<u64>,
    /// Backends to run the same work on, side by side.
    pub(crate) backends: Vec<Backend>,
    /// Samples of each branch operation.
    pub(crate) branches: usize,
    /// Depth of the branch chain reads go through.
    pub(crate) depth: usize,
    /// Where to put the stores (a temporary directory if `None`).
    pub(crate) dir: Option<PathBuf>,
    /// Draw latency against size here.
    pub(crate) plot: Option<PathBuf>,
    pub(crate) json: bool,
}

/// One operation's samples at one size.
#[derive(Clone, Debug)]
pub(crate) struct Measured {
    pub(crate) backend: Backend,
    pub(crate) size: u64,
    pub(crate) operation: &'static str,
    pub(crate) samples: Vec<Duration>,
}

impl Measured {
    pub(crate) fn new(
        backend: Backend,
        size: u64,
        operation: &'static str,
        mut samples: Vec<Duration>,
    ) -> Measured {
        samples.sort();
        Measured {
            backend,
            size,
            operation,
            samples,
        }
    }

    /// The sample at or above `percent` percent of them (nearest rank).
    pub(crate) fn percentile(&self, percent: usize) -> Duration {
        let rank = (self.samples.len() * percent).div_ceil(100).max(1);
        self.samples.get(rank - 1).copied().unwrap_or_default()
    }

    pub(crate) fn median(&self) -> Duration {
        self.percentile(50)
    }
}

pub(crate) const FULL_COPY: &str = "full copy (files + fsync)";
pub(crate) const BRANCH: &str = "branch create";
pub(crate) const BRANCH_AT_TIME: &str = "branch at a time (PITR)";
pub(crate) const RESTORE: &str = "restore in place at a time";
const READ: &str = "get_page through the chain";

/// Runs the benchmark and prints its table (or JSON), and the plot if asked.
pub(crate) fn run(options: &BenchOptions) -> Result<()> {
    for backend in &options.backends {
        anyhow::ensure!(
            backend.is_built(),
            "backend {backend} is not in this build (build pagefork with the `{backend}` cargo feature)"
        );
    }
    // Where the plot goes is checked before minutes of measuring (a review lost a whole
    // run's results to a plot path in a directory that did not exist).
    if let Some(path) = &options.plot {
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => std::path::Path::new("."),
        };
        anyhow::ensure!(
            parent.is_dir() && !path.is_dir(),
            "cannot write the plot to {}: {}",
            path.display(),
            match path.is_dir() {
                true => "it is a directory".to_owned(),
                false => format!("directory {} does not exist", parent.display()),
            }
        );
    }
    // The directories `--data-dir` makes are removed again at the end, deepest first
    // (each only if empty), as the run's own directory inside is: a benchmark leaves the
    // disk as it found it, also when stopped by SIGINT or SIGTERM (a review found both
    // left behind).
    let made = match &options.dir {
        Some(dir) => missing_ancestors(dir),
        None => Vec::new(),
    };
    let stop = AtomicBool::new(false);
    let mut signals = StopSignals::catch()?;
    let measured = signals.run_stoppable(&stop, || measure(options, &stop));
    for dir in &made {
        // Not empty: something else was put there meanwhile, and stays.
        let _ = std::fs::remove_dir(dir);
    }
    let results = measured?;
    if let Some(path) = &options.plot {
        // The plot is latency against size for one backend: the first asked for.
        let first = options.backends.first().copied().unwrap_or_default();
        let plotted: Vec<Measured> = results
            .iter()
            .filter(|measured| measured.backend == first)
            .cloned()
            .collect();
        plot::write_svg(path, &plotted)?;
    }
    if options.json {
        out!("{}", results_json(&results, options));
    } else {
        print_table(&results, options)?;
    }
    Ok(())
}

/// `dir` and each of its ancestors that does not exist, deepest first.
fn missing_ancestors(dir: &Path) -> Vec<PathBuf> {
    dir.ancestors()
        .take_while(|path| !path.as_os_str().is_empty() && !path.exists())
        .map(Path::to_path_buf)
        .collect()
}

/// Every size and backend's measurements, in a directory of its own that is removed at
/// the end, also when `stop` is set (by a signal) part way.
fn measure(options: &BenchOptions, stop: &AtomicBool) -> Result<Vec<Measured>> {
    let mut backends: Vec<Backend> = Vec::new();
    for backend in &options.backends {
        if !backends.contains(backend) {
            backends.push(*backend);
        }
    }
    // A directory of its own, inside the one given if any: the stores and copies it makes
    // and removes are never a user's (a review found `--data-dir` directories of the
    // benchmark's names deleted), and one a killed run left does not stop the next.
    let mut temp = tempfile::Builder::new();
    temp.prefix("pagefork-bench-");
    let temp = match &options.dir {
        Some(dir) => std::fs::create_dir_all(dir).and_then(|()| temp.tempdir_in(dir)),
        None => temp.tempdir(),
    }
    .context("cannot create a directory to run in")?;
    let root = temp.path().to_owned();
    let mut results = Vec::new();
    for (index, &size) in options.sizes.iter().enumerate() {
        for &backend in &backends {
            let dir = root.join(format!("bench-{index}-{size}-{backend}"));
            let measured = bench_size(&dir, backend, size, options, stop);
            // Each store is removed before the next is loaded (and a stopped one's
            // before the run's directory is); one never made leaves the error that
            // stopped it to be said.
            match std::fs::remove_dir_all(&dir) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    measured?;
                    return Err(error).with_context(|| format!("cannot remove {}", dir.display()));
                }
                _ => {}
            }
            results.extend(measured?);
        }
    }
    Ok(results)
}

/// Refuses to go on once `stop` is set.
fn go_on(stop: &AtomicBool) -> Result<()> {
    anyhow::ensure!(
        !stop.load(Ordering::Relaxed),
        "stopped by a signal before the benchmark finished; its directory was removed"
    );
    Ok(())
}

fn page(block: u64) -> Bytes {
    let mut state = block.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(PAGE_SIZE);
    while bytes.len() < PAGE_SIZE {
        // xorshift: every page differs and none compresses to nothing.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    Bytes::from(bytes)
}

/// Loads `size` bytes into a new store in `dir`; returns it with the commit times.
fn load(
    dir: &Path,
    backend: Backend,
    size: u64,
    quiet: bool,
    stop: &AtomicBool,
) -> Result<(Store, Vec<Timestamp>)> {
    let config = Config {
        backend,
        ..Config::default()
    };
    let store = Store::create(dir, config)
        .with_context(|| format!("cannot create a store in {}", dir.display()))?;
    let pages = (size / PAGE_SIZE as u64).max(1);
    let progress = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(pages)
    };
    progress.set_style(
        ProgressStyle::with_template(&format!(
            "  loading {} ({backend}) [{{bar:40}}] {{pos}}/{{len}} pages {{binary_bytes_per_sec}}",
            bytesize::ByteSize::b(size).display().iec()
        ))
        .context("progress bar template")?
        .progress_chars("=> "),
    );
    let mut times = Vec::new();
    for first in (0..pages).step_by(PAGES_PER_COMMIT as usize) {
        go_on(stop)?;
        let last = (first + PAGES_PER_COMMIT).min(pages);
        let updates = (first..last)
            .map(|block| (Key::new(DATA_REL, block as u32), Update::Image(page(block))))
            .collect();
        times.push(store.commit("main", updates)?.time);
        progress.inc(last - first);
    }
    progress.finish_and_clear();
    store.checkpoint()?;
    Ok((store, times))
}

/// A time inside the load, spread over it by sample index.
fn time_in_load(times: &[Timestamp], sample: usize, samples: usize) -> Timestamp {
    let index = (sample * 7919 + samples / 2) % times.len().max(1);
    times.get(index).copied().unwrap_or(Timestamp(0))
}

fn timed<T>(operation: impl FnOnce() -> Result<T>) -> Result<(T, Duration)> {
    let started = Instant::now();
    let value = operation()?;
    Ok((value, started.elapsed()))
}

fn bench_size(
    dir: &Path,
    backend: Backend,
    size: u64,
    options: &BenchOptions,
    stop: &AtomicBool,
) -> Result<Vec<Measured>> {
    let (store, times) = load(dir, backend, size, options.json, stop)?;
    let samples = options.branches.max(1);
    let pages = (size / PAGE_SIZE as u64).max(1);

    let mut copies = Vec::with_capacity(COPIES);
    for copy in 0..COPIES {
        go_on(stop)?;
        let target = dir.with_extension(format!("copy-{copy}"));
        let ((), took) = timed(|| copy_dir(dir, &target, stop))?;
        copies.push(took);
        std::fs::remove_dir_all(&target)
            .with_context(|| format!("cannot remove {}", target.display()))?;
    }

    let mut created = Vec::with_capacity(samples);
    for sample in 0..samples {
        go_on(stop)?;
        let name = format!("bench-{sample}");
        let (_, took) = timed(|| {
            Ok(store.create_branch(&name, "main", At::Latest, BranchOptions::default())?)
        })?;
        created.push(took);
        store.delete_branch(&name)?;
    }

    let mut at_time = Vec::with_capacity(samples);
    for sample in 0..samples {
        go_on(stop)?;
        let name = format!("pitr-{sample}");
        let time = time_in_load(&times, sample, samples);
        let (_, took) = timed(|| {
            Ok(store.create_branch(&name, "main", At::Time(time), BranchOptions::default())?)
        })?;
        at_time.push(took);
        store.delete_branch(&name)?;
    }

    store.create_branch("target", "main", At::Latest, BranchOptions::default())?;
    let mut restores = Vec::with_capacity(samples);
    for sample in 0..samples {
        go_on(stop)?;
        let time = time_in_load(&times, sample, samples);
        let (_, took) =
            timed(|| Ok(store.restore_branch("target", "main", At::Time(time), Backup::Skip)?))?;
        restores.push(took);
    }

    let mut parent = "main".to_owned();
    for level in 0..options.depth {
        go_on(stop)?;
        let name = format!("depth-{level}");
        store.create_branch(&name, &parent, At::Latest, BranchOptions::default())?;
        // Each level writes a page of its own, so the chain is not empty.
        store.commit(
            &name,
            vec![(
                Key::new(DATA_REL + 1, level as u32),
                Update::Image(page(level as u64)),
            )],
        )?;
        parent = name;
    }
    let mut reads = Vec::with_capacity(samples * 10);
    for sample in 0..samples * 10 {
        go_on(stop)?;
        let block = (sample as u64).wrapping_mul(7919) % pages;
        let key = Key::new(DATA_REL, block as u32);
        let (page, took) = timed(|| Ok(store.get_page(&parent, key, At::Latest)?))?;
        anyhow::ensure!(
            page.is_some(),
            "benchmark check failed: {key} missing on {parent}"
        );
        reads.push(took);
    }
    Ok(vec![
        Measured::new(backend, size, FULL_COPY, copies),
        Measured::new(backend, size, BRANCH, created),
        Measured::new(backend, size, BRANCH_AT_TIME, at_time),
        Measured::new(backend, size, RESTORE, restores),
        Measured::new(backend, size, READ, reads),
    ])
}

/// Copies every file of `from` into `to` (recursively), fsyncing each file and directory:
/// what it takes to have a second, independent copy of the data without branching.
fn copy_dir(from: &Path, to: &Path, stop: &AtomicBool) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    let entries =
        std::fs::read_dir(from).with_context(|| format!("cannot list {}", from.display()))?;
    for entry in entries {
        // A stop does not wait for a whole copy of a large store (found by a review).
        go_on(stop)?;
        let entry = entry.with_context(|| format!("cannot list {}", from.display()))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if source.is_dir() {
            copy_dir(&source, &target, stop)?;
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(&source, &target)
                .with_context(|| format!("cannot copy {}", source.display()))?;
            std::fs::File::open(&target)
                .and_then(|file| file.sync_all())
                .with_context(|| format!("cannot fsync {}", target.display()))?;
        }
    }
    std::fs::File::open(to)
        .and_then(|directory| directory.sync_all())
        .with_context(|| format!("cannot fsync {}", to.display()))
}

/// How many times faster than the full copy at the same size (`None` for the copy and
/// for reads, which a copy does not replace).
pub(crate) fn ratio_to_copy(results: &[Measured], measured: &Measured) -> Option<f64> {
    if matches!(measured.operation, FULL_COPY | READ) {
        return None;
    }
    let copy = results.iter().find(|other| {
        other.backend == measured.backend
            && other.size == measured.size
            && other.operation == FULL_COPY
    })?;
    let ours = measured.median().as_secs_f64();
    (ours > 0.0).then(|| copy.median().as_secs_f64() / ours)
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cpus} CPUs, {model}")
}

fn results_json(results: &[Measured], options: &BenchOptions) -> Value {
    let rows: Vec<Value> = results
        .iter()
        .map(|measured| {
            json!({
                "backend": measured.backend.name(),
                "size_bytes": measured.size,
                "operation": measured.operation,
                "samples": measured.samples.len(),
                "median_ns": measured.median().as_nanos() as u64,
                "p99_ns": measured.percentile(99).as_nanos() as u64,
                "times_faster_than_full_copy": ratio_to_copy(results, measured),
            })
        })
        .collect();
    let compared: Vec<Value> = side_by_side(results)
        .into_iter()
        .map(|row| {
            json!({
                "size_bytes": row.native.size,
                "operation": row.native.operation,
                "native_median_ns": row.native.median().as_nanos() as u64,
                "rocksdb_median_ns": row.rocksdb.median().as_nanos() as u64,
                "rocksdb_over_native": row.rocksdb_over_native(),
            })
        })
        .collect();
    json!({
        "machine": machine(),
        "branches": options.branches,
        "depth": options.depth,
        "results": rows,
        "native_vs_rocksdb": compared,
    })
}

/// One operation at one size on both backends.
struct SideBySide<'a> {
    native: &'a Measured,
    rocksdb: &'a Measured,
}

impl SideBySide<'_> {
    /// How many times RocksDB's median is native's: above 1, native is faster.
    fn rocksdb_over_native(&self) -> Option<f64> {
        let native = self.native.median().as_secs_f64();
        (native > 0.0).then(|| self.rocksdb.median().as_secs_f64() / native)
    }
}

/// The operations measured on both backends, paired, in the order they were run.
fn side_by_side(results: &[Measured]) -> Vec<SideBySide<'_>> {
    results
        .iter()
        .filter(|measured| measured.backend == Backend::Native && measured.operation != FULL_COPY)
        .filter_map(|native| {
            let rocksdb = results.iter().find(|other| {
                other.backend == Backend::RocksDb
                    && other.size == native.size
                    && other.operation == native.operation
            })?;
            Some(SideBySide { native, rocksdb })
        })
        .collect()
}

fn print_table(results: &[Measured], options: &BenchOptions) -> anyhow::Result<()> {
    out!(
        "pagefork bench on {} ({} samples per branch operation, reads through {} branches; durable: every operation fsynced)\n",
        machine(),
        options.branches,
        options.depth
    );
    out!(
        "{:<8} {:<10} {:<28} {:>12} {:>12} {:>22}",
        "backend",
        "size",
        "operation",
        "median",
        "p99",
        "vs full copy (median)"
    );
    for measured in results {
        let ratio = ratio_to_copy(results, measured)
            .map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.0}x faster"));
        out!(
            "{:<8} {:<10} {:<28} {:>12} {:>12} {:>22}",
            measured.backend.name(),
            bytesize::ByteSize::b(measured.size)
                .display()
                .iec()
                .to_string(),
            measured.operation,
            format_duration(measured.median()),
            format_duration(measured.percentile(99)),
            ratio
        );
    }
    let pairs = side_by_side(results);
    if !pairs.is_empty() {
        out!("\nnative layers against RocksDB, same work in the same run (medians)\n");
        out!(
            "{:<10} {:<28} {:>12} {:>12} {:>20}",
            "size",
            "operation",
            "native",
            "rocksdb",
            "rocksdb / native"
        );
        for pair in pairs {
            let ratio = pair
                .rocksdb_over_native()
                .map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.2}x"));
            out!(
                "{:<10} {:<28} {:>12} {:>12} {:>20}",
                bytesize::ByteSize::b(pair.native.size)
                    .display()
                    .iec()
                    .to_string(),
                pair.native.operation,
                format_duration(pair.native.median()),
                format_duration(pair.rocksdb.median()),
                ratio
            );
        }
    }
    Ok(())
}
