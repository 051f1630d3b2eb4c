//! `Store`: a branching page store on disk (WAL + metadata) or in memory.
//!
//! Every change goes the same way: check it against the current state (refusals change
//! nothing), encode it as one WAL record, give it its time and LSN under the `sequencer`
//! lock (a short in-memory step, so times never decrease along the log), wait for the WAL
//! to make it durable *outside* any store lock, then apply it with `apply`, the same
//! function replay uses after a restart. So what a crash recovers is exactly what was
//! acknowledged, by construction.
//!
//! Locks, in the order they may be taken: `housekeeping` (one flush/compaction cycle at a
//! time, see `housekeeping`) -> `branch_ops` (branch creation and deletion, one at a time)
//! -> a branch's `commit_lock` -> `sequencer` -> `catalog` / a branch's `state` (both held
//! only for in-memory steps). Readers take only `catalog` and `state` read locks. Writers
//! wait for the memory budget before taking any of them.

mod apply;
mod branches;
mod checkpoint;
#[cfg(test)]
mod checkpoint_tests;
mod commit;
mod compaction;
mod detach;
mod diff;
mod evictions;
mod gc;
mod holds;
mod housekeeping;
mod images;
mod inspect;
mod lifecycle;
mod moves;
mod pitr;
mod published;
mod read;
mod replay;
mod retention;
#[cfg(all(test, feature = "rocksdb"))]
mod rocks_tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pagefork_wal::{
    DEFAULT_SEGMENT_SIZE, Lsn, RecoveryMode, RecoveryReport, SyncMode, Wal, WalConfig, WalError,
};
use parking_lot::{Mutex, RwLock};

use crate::backend::{Backend, VersionDb};
use crate::branch::{BranchId, validate_branch_name};
use crate::cache::PageCache;
use crate::catalog::Catalog;
use crate::error::{EngineError, Result};
use crate::fs::{FileSystem, StdFileSystem, create_dir_all_durably, publish_file};
use crate::history::HistoryEntry;
use crate::layer::{LayerCache, LayerCacheConfig};
use crate::log::Log;
use crate::meta::{META_FILE_NAME, StoreMeta};
use crate::record::{CreateBranch, Record};
use crate::time::{Clock, SystemClock, Timestamp};

pub use branches::{BranchFilter, BranchPage};
pub use diff::{PageDiff, RelationDiff};
pub use gc::{BranchGc, GcReport};
pub use holds::BranchHold;
use housekeeping::{HousekeepingCounters, LayerSettings, WorkerGuard, WorkerSignals};
pub use inspect::{
    BranchFiles, CommitRunSummary, FormatVersions, LayerFileSummary, StoreFiles, WalEntry, WalFiles,
};
pub use lifecycle::{Restored, default_backup_name};
pub use published::{PublishedFiles, PublishedLayer, StorePaths};
use read::ReadCounters;
pub use read::{ReadTrace, StoreStats};
pub use retention::{RetainPoint, RetainReason};

/// Default page size: 8 KiB, as Postgres.
pub const DEFAULT_PAGE_SIZE: usize = 8192;
/// Default `Config::checkpoint_after_bytes`: 64 MiB.
pub const DEFAULT_CHECKPOINT_AFTER_BYTES: u64 = 64 * 1024 * 1024;
/// Default `Config::page_cache_bytes`: 64 MiB.
pub const DEFAULT_PAGE_CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// Default `Config::layer_flush_bytes`: 32 MiB.
pub const DEFAULT_LAYER_FLUSH_BYTES: u64 = 32 * 1024 * 1024;
/// The least default `Config::memory_budget_bytes`, and the default where the machine's
/// memory cannot be read: 256 MiB.
pub const DEFAULT_MEMORY_BUDGET_BYTES: u64 = 256 * 1024 * 1024;
/// The most the default `Config::memory_budget_bytes` grows to: 1 GiB.
pub const MAX_DEFAULT_MEMORY_BUDGET_BYTES: u64 = 1024 * 1024 * 1024;

/// `Config::memory_budget_bytes` by default: a sixteenth of the machine's memory (or of
/// its cgroup's limit), from [`DEFAULT_MEMORY_BUDGET_BYTES`] to
/// [`MAX_DEFAULT_MEMORY_BUDGET_BYTES`]. Writers wait for flushes only once half of it is
/// unflushed, so on a machine with memory to spare a burst of writes (a bulk load through
/// a mount) goes at the speed of the log while flushes follow; 16 GiB or more gives the
/// most. A crash replays at most about this much WAL on the next open.
pub fn default_memory_budget_bytes() -> u64 {
    crate::machine::memory_bytes().map_or(DEFAULT_MEMORY_BUDGET_BYTES, |memory| {
        (memory / 16).clamp(DEFAULT_MEMORY_BUDGET_BYTES, MAX_DEFAULT_MEMORY_BUDGET_BYTES)
    })
}
/// Default `Config::compact_l0_layers`: 8.
pub const DEFAULT_COMPACT_L0_LAYERS: usize = 8;
/// Default `Config::l1_layer_bytes`: 32 MiB.
pub const DEFAULT_L1_LAYER_BYTES: u64 = 32 * 1024 * 1024;
/// Default `Config::image_after_deltas`: 4.
pub const DEFAULT_IMAGE_AFTER_DELTAS: usize = 4;
/// Default `Config::image_after_changed_percent`: 50 (images take at most about twice the
/// bytes of the deltas they summarize).
pub const DEFAULT_IMAGE_AFTER_CHANGED_PERCENT: u32 = 50;
/// Default `Config::pitr_window`: 7 days (Neon's default `pitr_interval`).
pub const DEFAULT_PITR_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// Refuses a page size a store cannot have: a power of two from 512 to 65536 bytes
/// (`Config::page_size`). Callers that take one as input check it with this first.
pub fn check_page_size(page_size: usize) -> Result<()> {
    if !page_size.is_power_of_two() || !(512..=65536).contains(&page_size) {
        return Err(EngineError::InvalidConfig(format!(
            "page size {page_size} must be a power of two from 512 to 65536 bytes"
        )));
    }
    Ok(())
}

/// The longest PITR window a branch may be given (`Store::set_pitr_window`): a store
/// keeps windows in microseconds, as a u64 (about 584,542 years).
pub const MAX_PITR_WINDOW: Duration = Duration::from_micros(u64::MAX);
/// Default `Config::gc_period`: 1 hour (Neon's default `gc_period`).
pub const DEFAULT_GC_PERIOD: Duration = Duration::from_secs(3600);
/// Default name of the root branch.
pub const DEFAULT_ROOT_BRANCH: &str = "main";
const WAL_DIR_NAME: &str = "wal";
/// The RocksDB database of a store with the RocksDB backend.
pub(crate) const VERSIONS_DIR_NAME: &str = "versions";
/// Present (empty) from the start of a create until its `pagefork.meta` is published: a
/// log or database beside it, without the metadata, is debris of a create that stopped.
/// Without it they are a store that lost its metadata, which no create may overwrite.
pub const CREATING_MARKER_NAME: &str = "pagefork.creating";
/// What a create that stopped before its metadata may have left beside its marker (the
/// marker included): a new create clears them.
pub const CREATE_DEBRIS: [&str; 3] = [CREATING_MARKER_NAME, WAL_DIR_NAME, VERSIONS_DIR_NAME];
/// The names of every file and directory a store keeps at the top of its directory
/// (`create` refuses a directory holding any of them, naming what it found).
pub const STORE_FILE_NAMES: [&str; 7] = [
    crate::meta::META_FILE_NAME,
    CREATING_MARKER_NAME,
    WAL_DIR_NAME,
    VERSIONS_DIR_NAME,
    crate::checkpoint::CATALOG_FILE_NAME,
    checkpoint::LAYERS_DIR_NAME,
    checkpoint::COMMITS_DIR_NAME,
];

/// How to create or open a store.
#[derive(Clone, Debug)]
pub struct Config {
    /// Page size in bytes: a power of two from 512 to 65536. Fixed when the store is
    /// created; opening with another size is refused.
    pub page_size: usize,
    /// Durability of commits and branch operations (see [`SyncMode`]).
    pub sync_mode: SyncMode,
    /// Where commit times come from. Tests and simulations use a [`crate::ManualClock`].
    pub clock: Arc<dyn Clock>,
    /// Name of the root branch a new store starts with.
    pub root_branch: String,
    /// All file I/O of the store, its WAL included (see [`FileSystem`]).
    pub fs: Arc<dyn FileSystem>,
    /// WAL segment size for a new store (a power of two from 4 KiB to 1 GiB); an existing
    /// store keeps the size its log was created with. One commit must fit in a segment.
    pub wal_segment_size: u64,
    /// Flush every open layer and publish the catalog (so WAL can be removed) once this
    /// many bytes of records were logged since the last catalog. Bounds the WAL that
    /// `open` replays.
    pub checkpoint_after_bytes: u64,
    /// Bytes of reconstructed pages the page cache may hold (0 turns it off).
    pub page_cache_bytes: u64,
    /// A branch's open layer is frozen and flushed to an L0 delta file in the background
    /// once it holds this many bytes.
    pub layer_flush_bytes: u64,
    /// Bytes that open and frozen layers of all branches and housekeeping's buffers may
    /// hold together. Once open layers hold a quarter of it, all of them are flushed;
    /// writers wait while open layers hold half of it or everything holds all of it. (In
    /// memory there is nowhere to flush to, and no bound.)
    pub memory_budget_bytes: u64,
    /// A branch's L0 delta layers are merged into L1 layers once it has this many.
    pub compact_l0_layers: usize,
    /// Target size of an L1 layer: a merge splits its output by key range at about this
    /// many bytes.
    pub l1_layer_bytes: u64,
    /// After a merge, an image layer is written over each output's key range where a read
    /// could visit this many delta layers above the newest image.
    pub image_after_deltas: usize,
    /// ... and only once those deltas hold at least this many page versions per hundred
    /// pages of the range, so the bytes images take stay proportional to the bytes written
    /// (0: whenever the chain is long).
    pub image_after_changed_percent: u32,
    /// How much history every branch keeps readable (point-in-time recovery), unless it
    /// sets its own ([`Store::set_pitr_window`]). GC moves each branch's cutoff up to the
    /// last commit at or before `now - window`.
    pub pitr_window: Duration,
    /// How often the background thread of a store on disk runs GC (`Duration::ZERO`:
    /// never; [`Store::gc`] runs it on demand).
    pub gc_period: Duration,
    /// Whether a store on disk runs its background housekeeping thread (flushes,
    /// compaction and checkpoints when due, expiry sweeps, periodic GC). Off, that work
    /// happens only when called for (`checkpoint`, `compact`, `gc`, `sweep_expired`, and
    /// the sweeps branch operations and `open` do), and nothing in the store runs on its
    /// own clock: what deterministic simulations need. Keep the memory budget unbounded
    /// then, since nothing frees it in the background.
    pub housekeeping_thread: bool,
    /// Where a store on disk keeps the page versions it flushes from memory: layer files
    /// (`Native`) or RocksDB (`RocksDb`, in a build with the `rocksdb` feature, on the
    /// operating system's file system). Fixed when the store is created; `Store::open`
    /// uses the store's own, `Store::open_with` refuses another. An in-memory store has
    /// only `Native`.
    pub backend: Backend,
    /// What opening does with a WAL damaged in a way no crash explains (a bad record that
    /// a later one proves was durable, a missing or short segment): refuse, naming it
    /// (`Strict`, the default), or cut the log at the last good record and say what was
    /// discarded (`SalvageToLastGood`, what `pagefork recover --salvage` uses).
    pub wal_recovery: RecoveryMode,
    /// Layer files kept elsewhere too (remote storage) and evicted from local disk under
    /// a budget, read back by the first read that needs them (see [`LayerCacheConfig`]).
    /// Only for a store on disk with layer files (`Native`). `None`: every layer file
    /// stays on local disk, and a store with evicted layers does not open.
    pub layer_cache: Option<LayerCacheConfig>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            page_size: DEFAULT_PAGE_SIZE,
            sync_mode: SyncMode::Always,
            clock: Arc::new(SystemClock),
            root_branch: DEFAULT_ROOT_BRANCH.to_owned(),
            fs: Arc::new(StdFileSystem),
            wal_segment_size: DEFAULT_SEGMENT_SIZE,
            checkpoint_after_bytes: DEFAULT_CHECKPOINT_AFTER_BYTES,
            page_cache_bytes: DEFAULT_PAGE_CACHE_BYTES,
            layer_flush_bytes: DEFAULT_LAYER_FLUSH_BYTES,
            memory_budget_bytes: default_memory_budget_bytes(),
            compact_l0_layers: DEFAULT_COMPACT_L0_LAYERS,
            l1_layer_bytes: DEFAULT_L1_LAYER_BYTES,
            image_after_deltas: DEFAULT_IMAGE_AFTER_DELTAS,
            image_after_changed_percent: DEFAULT_IMAGE_AFTER_CHANGED_PERCENT,
            pitr_window: DEFAULT_PITR_WINDOW,
            gc_period: DEFAULT_GC_PERIOD,
            housekeeping_thread: true,
            backend: Backend::Native,
            wal_recovery: RecoveryMode::Strict,
            layer_cache: None,
        }
    }
}

impl Config {
    /// The default configuration with the page size and backend of the store in `dir`
    /// (read from its metadata file): what `Store::open` uses.
    pub fn of_store(dir: &Path) -> Result<Config> {
        let meta = read_meta(&StdFileSystem, dir)?;
        Ok(Config {
            page_size: meta.page_size as usize,
            backend: meta.backend,
            ..Config::default()
        })
    }

    fn validate(&self) -> Result<()> {
        check_page_size(self.page_size)?;
        if self.compact_l0_layers < 2 || self.image_after_deltas < 1 {
            return Err(EngineError::InvalidConfig(format!(
                "compact_l0_layers ({}) must be at least 2 and image_after_deltas ({}) at least 1",
                self.compact_l0_layers, self.image_after_deltas
            )));
        }
        if !self.housekeeping_thread && self.memory_budget_bytes != u64::MAX {
            return Err(EngineError::InvalidConfig(format!(
                "without the housekeeping thread nothing frees the memory budget ({} bytes) and writers would wait forever: set memory_budget_bytes to u64::MAX",
                self.memory_budget_bytes
            )));
        }
        if self.backend != Backend::Native {
            if !self.backend.is_built() {
                return Err(EngineError::InvalidConfig(format!(
                    "backend {} is not in this build (build pagefork with the `{}` cargo feature)",
                    self.backend, self.backend
                )));
            }
            if !self.fs.is_operating_system() {
                return Err(EngineError::InvalidConfig(format!(
                    "backend {} does its own file I/O: it needs the operating system's file system, not Config::fs",
                    self.backend
                )));
            }
        }
        if self.layer_cache.is_some() && self.backend != Backend::Native {
            return Err(EngineError::InvalidConfig(format!(
                "a layer cache evicts layer files, and backend {} keeps none",
                self.backend
            )));
        }
        validate_branch_name(&self.root_branch)
    }

    fn layer_settings(&self) -> LayerSettings {
        LayerSettings {
            flush_bytes: self.layer_flush_bytes.max(1),
            memory_budget: self.memory_budget_bytes.max(1),
            checkpoint_after_bytes: self.checkpoint_after_bytes,
            compact_l0_layers: self.compact_l0_layers,
            l1_layer_bytes: self.l1_layer_bytes.max(1),
            image_after_deltas: self.image_after_deltas,
            image_after_changed_percent: self.image_after_changed_percent,
            gc_period: self.gc_period,
        }
    }
}

/// A branching page store. Cheap to clone (clones share the store), `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Store {
    /// The background housekeeping thread of an on-disk store (dropped first, so it
    /// stops while the store is still whole).
    worker: Option<Arc<WorkerGuard>>,
    inner: Arc<StoreInner>,
    /// What the WAL's recovery found when this store was opened (`None` when created).
    recovery: Option<RecoveryReport>,
}

#[derive(Debug)]
struct StoreInner {
    page_size: usize,
    clock: Arc<dyn Clock>,
    log: Log,
    dir: Option<PathBuf>,
    fs: Arc<dyn FileSystem>,
    /// The time of the last record: records get `max(clock, last)` under this lock.
    sequencer: Mutex<Timestamp>,
    /// Serializes branch creation and deletion.
    branch_ops: Mutex<()>,
    /// Record bytes logged since the last catalog was published.
    bytes_since_checkpoint: AtomicU64,
    /// Flush and compaction thresholds.
    settings: LayerSettings,
    /// Bytes held by every branch's open and frozen layers and housekeeping's buffers.
    memory: AtomicU64,
    /// The part of `memory` held by open layers.
    open_memory: AtomicU64,
    /// One housekeeping cycle at a time.
    housekeeping: Mutex<()>,
    /// The files of the published state last handed out for copying, kept until the next.
    pin: Mutex<published::Pin>,
    /// Layer files evicted and read back (`Config::layer_cache`), if any.
    layer_cache: Option<Arc<LayerCache>>,
    signals: WorkerSignals,
    housekeeping_counters: HousekeepingCounters,
    /// The LSN the last published catalog covers.
    catalog_covered: AtomicU64,
    catalog: RwLock<Catalog>,
    /// Active leases (and expired ones not yet pruned by GC): (branch, LSN) -> until.
    leases: Mutex<BTreeMap<(BranchId, Lsn), Timestamp>>,
    /// What processes using branches keep from the expiry sweep and GC (never logged).
    holds: holds::Holds,
    /// The store's default PITR window.
    pitr_window: Duration,
    /// Bumped each time GC moves cutoffs (before it removes anything): a read re-checks
    /// its LSN against the cutoff only if this changed while it read.
    cutoff_epoch: AtomicU64,
    /// The branch-graph history (see `history`), appended by `apply`.
    history: Mutex<Vec<HistoryEntry>>,
    /// Set by the first I/O error while writing the store's files: writes are refused
    /// from then on (see `EngineError::Poisoned`).
    poisoned: Mutex<Option<(String, Option<std::io::ErrorKind>)>>,
    cache: PageCache,
    read_counters: ReadCounters,
    /// The RocksDB database of a store with the RocksDB backend (see `backend`); `None`
    /// for layer files and in memory.
    version_db: Option<Arc<VersionDb>>,
}

impl Store {
    /// Creates a store in `dir` (created if missing) with its root branch.
    pub fn create(dir: impl AsRef<Path>, config: Config) -> Result<Store> {
        let dir = dir.as_ref();
        config.validate()?;
        // The root's record would be refused, after the files were made.
        clock_in_range(config.clock.as_ref())?;
        let fs = Arc::clone(&config.fs);
        let meta_path = dir.join(META_FILE_NAME);
        if fs
            .exists(&meta_path)
            .map_err(EngineError::io("stat", &meta_path))?
        {
            return Err(EngineError::StoreExists {
                dir: dir.to_owned(),
            });
        }
        let marker = dir.join(CREATING_MARKER_NAME);
        let exists = |path: &Path| fs.exists(path).map_err(EngineError::io("stat", path));
        let wal_dir = dir.join(WAL_DIR_NAME);
        let versions_dir = dir.join(VERSIONS_DIR_NAME);
        // Any other store files are a store's (a review found `init` wiping the log of a
        // store whose pagefork.meta had been deleted).
        let found = files_of_a_store_without_meta(fs.as_ref(), dir)?;
        if !found.is_empty() {
            return Err(EngineError::StoreFilesWithoutMeta {
                dir: dir.to_owned(),
                found: found.join(", "),
            });
        }
        // The store's directory must survive a power cut as well as what is in it.
        create_dir_all_durably(fs.as_ref(), dir)
            .map_err(EngineError::io("create directory", dir))?;
        publish_file(fs.as_ref(), &marker, b"")
            .map_err(EngineError::io("publish the create marker", &marker))?;
        for debris in [&wal_dir, &versions_dir] {
            if exists(debris)? {
                fs.remove_dir_all(debris).map_err(EngineError::io(
                    "remove debris of an unfinished create",
                    debris,
                ))?;
            }
        }
        let wal = Wal::create_on(Arc::clone(&config.fs), &wal_dir, wal_config(&config))?;
        let version_db = open_version_db(config.backend, dir, true)?;
        let mut store = Store::with_log(&config, Log::Wal(wal), Some(dir.to_owned()), version_db);
        store.create_root(&config.root_branch)?;
        if let Some(db) = &store.inner.version_db {
            db.persist()?;
        }
        let meta = StoreMeta {
            page_size: u32::try_from(config.page_size).expect("page size checked"),
            backend: config.backend,
        };
        publish_file(fs.as_ref(), &meta_path, &meta.encode())
            .map_err(EngineError::io("publish store metadata", &meta_path))?;
        // The store exists now; a marker a crash here leaves is stale, and the next open
        // removes it. A failure to remove it is an I/O error like any other: the create
        // fails (as every operation does on one, so nothing is acknowledged after it).
        remove_create_marker(fs.as_ref(), dir)?;
        store.start_housekeeping(&config);
        Ok(store)
    }

    /// `Poisoned` (naming the I/O error, and whether the disk was full) once a failed
    /// write made the store refuse writes until it is opened again; `Ok` before.
    pub fn check_writable(&self) -> Result<()> {
        self.inner.check_poisoned()
    }

    /// Whether `dir` holds a store, without opening it (its lock may be another process's):
    /// `NotAStore` when it holds none, or the error reading its metadata file names.
    pub fn check_is_store(dir: impl AsRef<Path>) -> Result<()> {
        read_meta(&StdFileSystem, dir.as_ref()).map(|_| ())
    }

    /// Opens the store in `dir` with the default configuration (its own page size,
    /// `SyncMode::Always`, the system clock), replaying its WAL.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        let dir = dir.as_ref();
        Store::open_with(dir, Config::of_store(dir)?)
    }

    /// Opens the store in `dir` with `config` (whose page size must be the store's),
    /// replaying its WAL. Nothing on disk changes unless the whole store (metadata,
    /// catalog, every listed layer, the WAL) was read and accepted.
    pub fn open_with(dir: impl AsRef<Path>, config: Config) -> Result<Store> {
        let dir = dir.as_ref();
        let (mut store, wal, report, catalog_layers) = Store::read_and_accept(dir, &config)?;
        // Accepted: now recovery may change files.
        wal.complete_recovery()?;
        if let Some(tail) = &report.dropped_tail {
            tracing::warn!(segment = %tail.segment.display(), from = %tail.from, to = %tail.to, bytes = tail.bytes, records = tail.records, "dropped the WAL's torn tail");
        }
        if let Some(damage) = &report.salvaged_corruption {
            tracing::warn!(%damage, end = %report.end, "salvaged the WAL: the log now ends at its last good record");
        }
        store.inner.remove_layer_debris(dir, catalog_layers)?;
        // A create marker beside published metadata is stale (a crash right after the
        // create): left, it would let a create take this store's log for debris should
        // the metadata ever be lost.
        let marker = dir.join(CREATING_MARKER_NAME);
        if config
            .fs
            .exists(&marker)
            .map_err(EngineError::io("stat", &marker))?
        {
            remove_create_marker(config.fs.as_ref(), dir)?;
        }
        store.recovery = Some(report);
        store.start_housekeeping(&config);
        store.inner.housekeeping_if_due(0);
        store.sweep_expired()?;
        Ok(store)
    }

    /// Reads the store in `dir` as `open_with` does and says what opening it would find
    /// and do to its WAL, changing nothing on disk (no torn tail is dropped, no debris
    /// removed). An error is the one `open_with` would give, or, past what an open reads,
    /// the first damage found reading every listed layer file on local disk in full
    /// against its checksums (an open reads only their indexes: a review found `recover`
    /// calling a store with a damaged data block clean). Evicted layers are not fetched.
    pub fn check_open(dir: impl AsRef<Path>, config: Config) -> Result<RecoveryReport> {
        let (store, _wal, report, _) = Store::read_and_accept(dir.as_ref(), &config)?;
        store.check_local_layers()?;
        Ok(report)
    }

    /// Everything `open_with` does before it changes anything: reads the metadata, the
    /// WAL (recovery only planned), the catalog and its layers, and replays. Returns the
    /// store, its log, what recovery found, and the layer files the catalog lists.
    fn read_and_accept(
        dir: &Path,
        config: &Config,
    ) -> Result<(Store, Wal, RecoveryReport, BTreeSet<String>)> {
        let meta = read_meta(config.fs.as_ref(), dir)?;
        if !meta.backend.is_built() {
            return Err(EngineError::BackendNotBuilt {
                dir: dir.to_owned(),
                backend: meta.backend,
            });
        }
        config.validate()?;
        if meta.backend != config.backend {
            return Err(EngineError::InvalidConfig(format!(
                "the store in {} keeps its page versions in {}, the configuration says {}",
                dir.display(),
                meta.backend,
                config.backend
            )));
        }
        if meta.page_size as usize != config.page_size {
            return Err(EngineError::InvalidConfig(format!(
                "the store in {} has {}-byte pages, the configuration says {}",
                dir.display(),
                meta.page_size,
                config.page_size
            )));
        }
        let wal_dir = dir.join(WAL_DIR_NAME);
        // Nothing on disk changes until the whole store was read and accepted: the log's
        // recovery only reads until `complete_recovery`, the catalog's layers are checked
        // before any is removed, and replay runs in memory.
        let (wal, report) =
            Wal::open_for_recovery_on(Arc::clone(&config.fs), &wal_dir, wal_config(config))
                .map_err(|error| match error {
                    WalError::NotFound { .. } => EngineError::NotAStore {
                        dir: dir.to_owned(),
                        reason: format!(
                            "its WAL directory {} is missing or empty",
                            wal_dir.display()
                        ),
                    },
                    other => EngineError::Wal(other),
                })?;
        let version_db = open_version_db(config.backend, dir, false)?;
        let store = Store::with_log(
            config,
            Log::Wal(wal.clone()),
            Some(dir.to_owned()),
            version_db,
        );
        let restored = store.inner.restore_checkpoint(dir, &wal)?;
        let (cut, catalog_layers) = match restored {
            Some((cut, layers)) => (Some(cut), layers),
            None => (None, BTreeSet::new()),
        };
        store.inner.replay(&wal, cut)?;
        Ok((store, wal, report, catalog_layers))
    }

    /// A store with no files: same semantics, for fast tests. Gone when dropped.
    pub fn in_memory(config: Config) -> Result<Store> {
        if config.backend != Backend::Native {
            return Err(EngineError::InvalidConfig(format!(
                "an in-memory store keeps its versions in memory: backend {} needs a store on disk",
                config.backend
            )));
        }
        config.validate()?;
        if config.layer_cache.is_some() {
            return Err(EngineError::InvalidConfig(
                "an in-memory store has no layer files to evict".to_owned(),
            ));
        }
        let store = Store::with_log(&config, Log::memory(), None, None);
        store.create_root(&config.root_branch)?;
        Ok(store)
    }

    fn with_log(
        config: &Config,
        log: Log,
        dir: Option<PathBuf>,
        version_db: Option<Arc<VersionDb>>,
    ) -> Store {
        Store {
            recovery: None,
            worker: None,
            inner: Arc::new(StoreInner {
                page_size: config.page_size,
                clock: Arc::clone(&config.clock),
                log,
                dir,
                fs: Arc::clone(&config.fs),
                sequencer: Mutex::new(Timestamp(0)),
                branch_ops: Mutex::new(()),
                bytes_since_checkpoint: AtomicU64::new(0),
                settings: config.layer_settings(),
                memory: AtomicU64::new(0),
                open_memory: AtomicU64::new(0),
                housekeeping: Mutex::new(()),
                pin: Mutex::new(published::Pin::default()),
                signals: WorkerSignals::default(),
                housekeeping_counters: HousekeepingCounters::default(),
                catalog_covered: AtomicU64::new(0),
                catalog: RwLock::new(Catalog::default()),
                history: Mutex::new(Vec::new()),
                poisoned: Mutex::new(None),
                leases: Mutex::new(BTreeMap::new()),
                holds: holds::Holds::default(),
                pitr_window: config.pitr_window,
                cutoff_epoch: AtomicU64::new(0),
                cache: PageCache::new(config.page_cache_bytes),
                read_counters: ReadCounters::default(),
                layer_cache: config.layer_cache.as_ref().map(LayerCache::new),
                version_db,
            }),
        }
    }

    fn start_housekeeping(&mut self, config: &Config) {
        if config.housekeeping_thread {
            self.worker = Some(Arc::new(housekeeping::start_worker(&self.inner)));
        }
    }

    fn create_root(&self, name: &str) -> Result<()> {
        let record = Record::CreateBranch(CreateBranch {
            id: self.inner.catalog.read().next_id(),
            name: name.to_owned(),
            parent: None,
            options: Default::default(),
            created_at_time: None,
        });
        let (lsn, time) = self.inner.log_record(&record)?;
        self.inner.apply(record, lsn, time)
    }

    /// Where the store keeps the page versions it flushed from memory.
    pub fn backend(&self) -> Backend {
        if self.inner.version_db.is_some() {
            Backend::RocksDb
        } else {
            Backend::Native
        }
    }

    /// What recovery found and did to the WAL when this store was opened: where the log
    /// ends, and any torn tail it dropped. `None` for a store created or in memory.
    pub fn recovery(&self) -> Option<&RecoveryReport> {
        self.recovery.as_ref()
    }

    /// The page size in bytes.
    pub fn page_size(&self) -> usize {
        self.inner.page_size
    }

    /// The directory of a store on disk; `None` in memory.
    pub fn dir(&self) -> Option<&Path> {
        self.inner.dir.as_deref()
    }
}

/// The RocksDB database of a store in `dir`, if its backend is RocksDB (a new one when
/// `create`).
fn open_version_db(backend: Backend, dir: &Path, create: bool) -> Result<Option<Arc<VersionDb>>> {
    match backend {
        Backend::Native => Ok(None),
        #[cfg(feature = "rocksdb")]
        Backend::RocksDb => {
            let path = dir.join(VERSIONS_DIR_NAME);
            Ok(Some(Arc::new(VersionDb::open(&path, create)?)))
        }
        #[cfg(not(feature = "rocksdb"))]
        Backend::RocksDb => {
            let _ = create;
            Err(EngineError::BackendNotBuilt {
                dir: dir.to_owned(),
                backend,
            })
        }
    }
}

fn wal_config(config: &Config) -> WalConfig {
    WalConfig {
        segment_size: config.wal_segment_size,
        sync_mode: config.sync_mode,
        recovery_mode: config.wal_recovery,
    }
}

/// The store files in `dir`, a directory without `pagefork.meta`, that make it a store
/// that lost that file: any of its log, database, catalog, layers and commit runs, unless they are
/// only a log and a database beside the marker of a create that stopped (its debris,
/// which a create clears). Create and open both decide by this.
fn files_of_a_store_without_meta(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<&'static str>> {
    let exists = |name: &str| {
        let path = dir.join(name);
        fs.exists(&path).map_err(EngineError::io("stat", &path))
    };
    let mut found = Vec::new();
    for name in [
        WAL_DIR_NAME,
        VERSIONS_DIR_NAME,
        crate::checkpoint::CATALOG_FILE_NAME,
        checkpoint::LAYERS_DIR_NAME,
        checkpoint::COMMITS_DIR_NAME,
    ] {
        if exists(name)? {
            found.push(name);
        }
    }
    let debris = exists(CREATING_MARKER_NAME)?
        && found
            .iter()
            .all(|name| [WAL_DIR_NAME, VERSIONS_DIR_NAME].contains(name));
    Ok(match debris {
        true => Vec::new(),
        false => found,
    })
}

/// Removes the create marker from `dir` and fsyncs the directory.
fn remove_create_marker(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    let marker = dir.join(CREATING_MARKER_NAME);
    fs.remove_file(&marker)
        .and_then(|()| fs.sync_dir(dir))
        .map_err(EngineError::io("remove the create marker", &marker))
}

/// The clock's time, refused past the latest time a store can hold: a record stamped so,
/// or a GC or expiry sweep run at it, would act on a time that is not now (every later
/// record stamped there; every cutoff moved to its head; every branch with an expiry
/// deleted).
fn clock_in_range(clock: &dyn Clock) -> Result<Timestamp> {
    let now = clock.now();
    if now > Timestamp::MAX {
        return Err(EngineError::ClockPastLatest {
            now,
            latest: Timestamp::MAX,
        });
    }
    Ok(now)
}

fn read_meta(fs: &dyn FileSystem, dir: &Path) -> Result<StoreMeta> {
    let path = dir.join(META_FILE_NAME);
    let bytes = fs.read(&path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => match files_of_a_store_without_meta(fs, dir) {
            Ok(found) if !found.is_empty() => EngineError::MetaMissing {
                dir: dir.to_owned(),
                found: found.join(", "),
            },
            _ => EngineError::NotAStore {
                dir: dir.to_owned(),
                reason: format!("{META_FILE_NAME} is missing"),
            },
        },
        _ => EngineError::Io {
            operation: "read",
            path: path.clone(),
            source: error,
        },
    })?;
    StoreMeta::decode(&bytes, &path)
}

impl StoreInner {
    /// Logs `record`: stamps its time and fixes its LSN under the sequencer lock, then
    /// waits (outside every store lock) until it is durable. Returns its LSN and time.
    fn log_record(&self, record: &Record) -> Result<(Lsn, Timestamp)> {
        let (lsn, time) = self.log_record_deferred(record)?;
        self.wait_logged(lsn)?;
        Ok((lsn, time))
    }

    /// Logs `record` without waiting for it to be durable: its place in the log (and so
    /// its order against every other record) is fixed when this returns; `wait_logged`
    /// with its LSN makes it durable.
    pub(super) fn log_record_deferred(&self, record: &Record) -> Result<(Lsn, Timestamp)> {
        self.check_poisoned()?;
        self.poison_on_io_error(self.append_record(record))
    }

    /// Returns once every record up to `lsn` is durable; an I/O error poisons the store
    /// (no later wait may succeed after a failed one).
    pub(super) fn wait_logged(&self, lsn: Lsn) -> Result<()> {
        self.check_poisoned()?;
        self.poison_on_io_error(self.log.flush_to(lsn))
    }

    /// Returns once every record up to `lsn` is written to the log's files (not fsynced);
    /// an I/O error poisons the store, as in `wait_logged`.
    pub(super) fn wait_log_written(&self, lsn: Lsn) -> Result<()> {
        self.check_poisoned()?;
        self.poison_on_io_error(self.log.write_to(lsn))
    }

    /// Refuses a write once an I/O error poisoned the store.
    pub(crate) fn check_poisoned(&self) -> Result<()> {
        match &*self.poisoned.lock() {
            Some((cause, kind)) => Err(EngineError::Poisoned {
                cause: cause.clone(),
                kind: *kind,
            }),
            None => Ok(()),
        }
    }

    /// Passes `result` on, poisoning the store if it is an I/O error (of the store's
    /// files or its log).
    pub(super) fn poison_on_io_error<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(error) = &result
            && matches!(
                error,
                EngineError::Io { .. }
                    | EngineError::Wal(WalError::Io { .. } | WalError::Poisoned { .. })
            )
        {
            let mut poisoned = self.poisoned.lock();
            if poisoned.is_none() {
                tracing::error!(%error, "store poisoned: refusing writes until reopened");
                *poisoned = Some((error.to_string(), io_error_kind(error)));
            }
        }
        result
    }

    /// The store clock's time, refused past the latest time a store can hold (see
    /// `clock_in_range`).
    pub(super) fn now_in_range(&self) -> Result<Timestamp> {
        clock_in_range(self.clock.as_ref())
    }

    fn append_record(&self, record: &Record) -> Result<(Lsn, Timestamp)> {
        let len = record.encoded_len();
        let (lsn, time) = {
            let mut last_time = self.sequencer.lock();
            // A clock past the year 9999 (a glitch) stamps nothing: every later record
            // would take that time (found by a review).
            let time = self.now_in_range()?.max(*last_time);
            // Encoded straight into the log's buffer: a commit of a megabyte of pages is
            // copied once, not into a buffer of its own first.
            let lsn = self
                .log
                .append_deferred_in_place(record.kind(), len, |out| {
                    record.encode_into(out, time);
                })?;
            *last_time = time;
            (lsn, time)
        };
        self.bytes_since_checkpoint
            .fetch_add(len as u64, Ordering::Relaxed);
        Ok((lsn, time))
    }
}

/// The kind of the operating-system error behind `error`, if there is one.
fn io_error_kind(error: &EngineError) -> Option<std::io::ErrorKind> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cause = current.source();
    }
    None
}
