//! Shared helpers for pagefork's cross-crate, crash and fault tests.
//!
//! Owns nothing but test scaffolding: deterministic payloads that identify themselves, a
//! tiny seeded random generator (tests must replay from a printed seed), and access to a
//! log's segment files for tests that damage them on purpose.

pub mod faults;
pub mod files_model;
pub mod layered;
pub mod s3;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use pagefork_engine::{Backend, Config, EngineError, ManualClock, Store, Timestamp};
use pagefork_wal::{SyncMode, WalConfig};

/// The backends this build has, for suites that run one body against each: `native`, and
/// `rocksdb` in a build with the `rocksdb` feature (`cargo test -p pagefork-tests
/// --features rocksdb`).
pub fn backends() -> Vec<Backend> {
    Backend::ALL
        .into_iter()
        .filter(|backend| backend.is_built())
        .collect()
}

/// A log configuration for tests that reopen logs rather than cut power: segments of
/// `segment_size` bytes and `SyncMode::Never`, so tests spend no time in fsync.
pub fn unsynced_config(segment_size: u64) -> WalConfig {
    WalConfig {
        segment_size,
        sync_mode: SyncMode::Never,
        ..WalConfig::default()
    }
}

/// A payload of `len` bytes that carries `seq` and a pattern derived from it, so a reader
/// can tell which record it is and whether any byte is wrong. Lengths below 8 carry a
/// truncated `seq` and are checked by comparing with `payload_for` again.
pub fn payload_for(seq: u64, len: usize) -> Vec<u8> {
    let mut payload: Vec<u8> = (0..len)
        .map(|i| (seq as u8).wrapping_mul(31).wrapping_add(i as u8))
        .collect();
    let seq_bytes = seq.to_le_bytes();
    let head = len.min(8);
    payload[..head].copy_from_slice(&seq_bytes[..head]);
    payload
}

/// The `seq` of a payload made by [`payload_for`] with at least 8 bytes, if every byte of it
/// is what `payload_for` would write.
pub fn seq_of_payload(payload: &[u8]) -> Option<u64> {
    let seq = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    (payload_for(seq, payload.len()) == payload).then_some(seq)
}

/// A small, seeded pseudo-random generator (SplitMix64): deterministic for a seed.
#[derive(Debug, Clone)]
pub struct TestRng(u64);

impl TestRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> TestRng {
        TestRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `range` (which must not be empty).
    pub fn in_range(&mut self, range: std::ops::Range<u64>) -> u64 {
        range.start + self.next_u64() % (range.end - range.start)
    }

    /// A number below `bound` (0 if `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// A number from `low` to `high`, both included (`low <= high`).
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    /// True `per_mille` times in a thousand.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// One of `items`, or `None` if there are none.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(usize::try_from(self.below(items.len() as u64)).ok()?)
    }
}

/// A seed from the environment variable `name` if set, else from the clock. Tests print
/// the seed they use so a failure can be replayed by setting the variable.
pub fn seed_from_env(name: &str) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |elapsed| elapsed.as_nanos() as u64)
        })
}

/// The segment files of the log in `dir`, sorted by name (that is, by start LSN).
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read log directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    files.sort();
    files
}

/// Page size the engine tests use: small, so images are cheap to write and compare.
pub const TEST_PAGE_SIZE: usize = 512;

/// The paths in `dir`, sorted (none if it is missing).
pub fn sorted_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.map(|entry| entry.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// A full page of `TEST_PAGE_SIZE` bytes filled with `byte`.
pub fn page_of(byte: u8) -> Bytes {
    Bytes::from(vec![byte; TEST_PAGE_SIZE])
}

/// An engine configuration for tests: 512-byte pages, 64 KiB WAL segments, a catalog
/// every 16 KiB of WAL, flushes every 4 KiB, compaction after 3 L0 layers, images after
/// chains of 2, a manual clock at a fixed start (returned so the test can move
/// it), and the given sync mode.
pub fn engine_config(sync_mode: SyncMode) -> (Config, ManualClock) {
    let clock = ManualClock::new(Timestamp(1_775_000_000_000_000));
    let config = Config {
        page_size: TEST_PAGE_SIZE,
        sync_mode,
        clock: std::sync::Arc::new(clock.clone()),
        wal_segment_size: 64 * 1024,
        // Tiny, so every test that commits a little runs through flushes, L0 and L1
        // layers, images and WAL removal.
        checkpoint_after_bytes: 16 * 1024,
        layer_flush_bytes: 4 * 1024,
        memory_budget_bytes: 256 * 1024,
        compact_l0_layers: 3,
        l1_layer_bytes: 8 * 1024,
        image_after_deltas: 2,
        ..Config::default()
    };
    (config, clock)
}

/// The configuration of the engine crash test's child (and of the parent's reopen):
/// `SyncMode::Always`, and flush and compaction thresholds so small that the background
/// housekeeper is flushing, merging or writing an image most of the time, so kills land
/// in the middle of them. Flushed versions go to `backend`.
pub fn crash_child_config(backend: Backend) -> Config {
    Config {
        backend,
        page_size: TEST_PAGE_SIZE,
        sync_mode: SyncMode::Always,
        // Small, so catalogs remove WAL segments all through a run and old branch points
        // fall below the oldest WAL kept.
        wal_segment_size: 32 * 1024,
        checkpoint_after_bytes: 64 * 1024,
        layer_flush_bytes: 16 * 1024,
        compact_l0_layers: 3,
        l1_layer_bytes: 8 * 1024,
        image_after_deltas: 1,
        image_after_changed_percent: 0,
        ..Config::default()
    }
}

/// The first of the pages of relation 2 the engine crash child appends with commit `seq`
/// (eight per commit; a commit never acknowledged may be made again with the same pages).
pub fn appended_block(seq: u64) -> u32 {
    u32::try_from(seq * 8).expect("fewer than 2^29 commits")
}

/// Opens the store in `dir` with `config`, or creates it there if there is none yet (a
/// crash-test child's first run).
pub fn open_or_create(dir: &str, config: Config) -> Result<Store, EngineError> {
    match Store::open_with(dir, config.clone()) {
        Ok(store) => Ok(store),
        Err(EngineError::NotAStore { .. }) => Store::create(dir, config),
        Err(error) => Err(error),
    }
}

/// Pages every commit of the lifecycle crash test writes (a commit is visible whole or not
/// at all).
pub const LIFECYCLE_CRASH_PAGES: u32 = 4;

/// Added to a round's number for the commit its branch makes of its own.
pub const LIFECYCLE_CRASH_MARK: u64 = 1 << 40;

/// The configuration of the lifecycle crash test's child (and of the parent's reopen): the
/// engine crash child's, with a PITR window of 200 ms and background GC every 100 ms, so
/// GC removes history all through the run and kills land in the middle of it.
pub fn lifecycle_crash_config(backend: Backend) -> Config {
    Config {
        pitr_window: Duration::from_millis(200),
        gc_period: Duration::from_millis(100),
        ..crash_child_config(backend)
    }
}

/// `config` with every automatic flush, checkpoint and compaction turned off, so a test
/// decides when layers are written (`Store::checkpoint`, `Store::compact`).
pub fn manual_housekeeping(config: Config) -> Config {
    Config {
        checkpoint_after_bytes: u64::MAX,
        layer_flush_bytes: u64::MAX,
        memory_budget_bytes: u64::MAX,
        compact_l0_layers: usize::MAX,
        image_after_deltas: usize::MAX,
        ..config
    }
}

/// Runs a crash-test child: spawns `command` with piped stdout, waits for it to print
/// `ready`, lets it run for `run_for`, kills it with SIGKILL, and returns every line it
/// printed after `ready` (everything it acknowledged before it died).
pub fn run_then_sigkill(mut command: Command, run_for: Duration) -> Vec<String> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the child starts");
    assert_eq!(first, "ready", "the child's first line");
    std::thread::sleep(run_for);
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("wait for the child");
    assert!(!status.success(), "the child was killed, it did not exit");
    reader.join().expect("the stdout reader");
    lines_rx.try_iter().collect()
}

/// The number of kills a crash test runs: `PAGEFORK_CRASH_KILLS`, or `default`.
pub fn crash_kills(default: u64) -> u64 {
    std::env::var("PAGEFORK_CRASH_KILLS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Runs a seeded simulation suite: `run` once per seed, the seed given by
/// `PAGEFORK_SIM_SEED=S` (one run, to replay a failure) or `0..PAGEFORK_SIM_SEEDS`
/// (`default_seeds` if unset). A failing run prints its seed before the failure goes on.
/// Returns each run's result.
pub fn run_seeds<T>(default_seeds: u64, run: impl Fn(u64) -> T) -> Vec<T> {
    let number = |name: &str| {
        std::env::var(name).ok().map(|value| {
            value
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("{name} must be a number, not {value:?}"))
        })
    };
    let seeds: Vec<u64> = match number("PAGEFORK_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..number("PAGEFORK_SIM_SEEDS").unwrap_or(default_seeds)).collect(),
    };
    seeds
        .into_iter()
        .map(|seed| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(seed))).unwrap_or_else(
                |panic| {
                    eprintln!("failing seed: PAGEFORK_SIM_SEED={seed}");
                    std::panic::resume_unwind(panic)
                },
            )
        })
        .collect()
}

/// Every file under `dir` (recursively) with its bytes, and every directory (as `None`):
/// what "nothing changed on disk" is compared by.
pub fn tree_snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut tree = std::collections::BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).expect("read directory") {
            let path = entry.expect("directory entry").path();
            let relative = path.strip_prefix(dir).expect("under dir").to_path_buf();
            let kind = std::fs::symlink_metadata(&path).expect("stat").file_type();
            if kind.is_dir() {
                tree.insert(relative, None);
                pending.push(path);
            } else if kind.is_file() {
                tree.insert(relative, Some(std::fs::read(&path).expect("read file")));
            } else {
                // A FIFO or a link: its presence is compared, its contents are not read
                // (reading a FIFO would wait for a writer).
                tree.insert(relative, Some(Vec::new()));
            }
        }
    }
    tree
}

/// Runs `open`, which must fail, and asserts it changed nothing under `dir`, byte for
/// byte (DESIGN.md invariant 8). Returns the error.
pub fn open_fails_changing_nothing<T, E: std::fmt::Debug>(
    dir: &Path,
    open: impl FnOnce() -> Result<T, E>,
) -> E {
    let before = tree_snapshot(dir);
    let Err(error) = open() else {
        panic!("the damaged store in {} opened", dir.display());
    };
    let after = tree_snapshot(dir);
    let changed: Vec<&PathBuf> = before
        .keys()
        .chain(after.keys())
        .filter(|path| before.get(*path) != after.get(*path))
        .collect();
    assert!(
        changed.is_empty(),
        "a failed open ({error:?}) changed {changed:?}"
    );
    error
}

/// Copies the tree under `from` into `to` (created).
pub fn copy_tree(from: &Path, to: &Path) {
    for (relative, contents) in tree_snapshot(from) {
        let path = to.join(relative);
        match contents {
            None => std::fs::create_dir_all(&path).expect("create directory"),
            Some(bytes) => {
                std::fs::create_dir_all(path.parent().expect("a parent")).expect("create parent");
                std::fs::write(&path, bytes).expect("write file");
            }
        }
    }
}
