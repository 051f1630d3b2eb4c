//! The model-based harness shared by `engine_model` (random operation sequences on disk,
//! through proptest) and `engine_simulation` (seeded runs on the simulated file system,
//! with power cuts): the operations, their strategies, and a `Harness` that runs each one
//! against the store and `pagefork_engine::model::Model` and checks they agree. The
//! operations and their strategies are in `ops`.

// Each test binary uses part of it.
#![allow(dead_code)]
// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use pagefork_engine::StoreFiles;
use pagefork_engine::model::{Model, Refusal};
use pagefork_engine::sim::SimFileSystem;
use pagefork_engine::{
    At, Backend, Backup, BranchFilter, BranchInfo, BranchOptions, Clock, Config, Expiry, Key, Lsn,
    ManualClock, Store, SyncMode, Timestamp, Update,
};
use pagefork_tests::{TEST_PAGE_SIZE, engine_config, manual_housekeeping};
use pagefork_wal::layout::SEGMENT_HEADER_LEN;
use proptest::prelude::*;

mod ops;

pub(crate) use ops::*;

/// Where the store's files live.
pub(crate) enum Backing {
    Disk(tempfile::TempDir),
    Simulated(SimFileSystem),
}

impl Backing {
    fn dir(&self) -> &std::path::Path {
        match self {
            Backing::Disk(dir) => dir.path(),
            Backing::Simulated(_) => std::path::Path::new("/store"),
        }
    }
}

pub(crate) struct Harness {
    backing: Backing,
    config: Config,
    clock: ManualClock,
    start: Timestamp,
    store: Option<Store>,
    pub(crate) model: Model,
    seen_lsns: Vec<Lsn>,
    /// The ends of leases and branch expiries the store answered with.
    ends: Vec<Timestamp>,
    /// Commits and branch creations the store accepted.
    pub(crate) accepted: usize,
    /// Where the WAL started when the store was created.
    first_wal_lsn: Lsn,
    /// Times the store was opened again.
    opened: u64,
    /// The last catalog published was published while a branch created below the oldest
    /// WAL kept held unflushed versions.
    risky_catalog: bool,
    coverage: Coverage,
    /// The layer source of a copy attached with local disk as a cache (`move_through`).
    layer_source: Option<std::sync::Arc<pagefork_remote::RemoteLayers>>,
}

/// How `move_through` opens the copy: with every layer file downloaded and no cache, or
/// with local disk as a cache of the bucket (layers left in it by a lazy attach, evicted
/// down to `budget` after each sync and each `evict_over_budget`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum CopyChoice {
    Whole,
    Cached { lazy: bool, budget: u64 },
}

/// What one case reached (added to the suite's totals when its harness is dropped).
#[derive(Default)]
struct Coverage {
    wal_removed: bool,
    branch_below_wal: bool,
    quiet_publish: bool,
    quiet_publish_below_wal: bool,
    reopen_after_risky_publish: bool,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let coverage = &self.coverage;
        for (reached, total) in [
            (true, &CASES),
            (coverage.wal_removed, &CASES_WAL_REMOVED),
            (coverage.branch_below_wal, &CASES_BRANCH_BELOW_WAL),
            (coverage.quiet_publish, &CASES_QUIET_PUBLISH),
            (
                coverage.quiet_publish_below_wal,
                &CASES_QUIET_PUBLISH_BELOW_WAL,
            ),
            (
                coverage.reopen_after_risky_publish,
                &CASES_REOPEN_AFTER_RISKY_PUBLISH,
            ),
        ] {
            if reached {
                total.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Cases run, and how many of them removed WAL, created a branch (after the removal) at a
/// point below the oldest WAL kept, published a catalog while a branch held unflushed
/// versions, did so while that branch was one created below the oldest WAL kept, and
/// reopened the store after such a publish (with no other publish in between).
pub(crate) static CASES: AtomicUsize = AtomicUsize::new(0);
pub(crate) static CASES_WAL_REMOVED: AtomicUsize = AtomicUsize::new(0);
pub(crate) static CASES_BRANCH_BELOW_WAL: AtomicUsize = AtomicUsize::new(0);
pub(crate) static CASES_QUIET_PUBLISH: AtomicUsize = AtomicUsize::new(0);
pub(crate) static CASES_QUIET_PUBLISH_BELOW_WAL: AtomicUsize = AtomicUsize::new(0);
pub(crate) static CASES_REOPEN_AFTER_RISKY_PUBLISH: AtomicUsize = AtomicUsize::new(0);

/// The coverage totals so far, as a line for the suite's output; asserts each is reached
/// in at least the given share of the cases (in percent), so a generator that drifts away
/// from the states issue 18 needed fails loudly.
pub(crate) fn check_coverage(min_percent: [usize; 5]) {
    let cases = CASES.load(Ordering::Relaxed);
    let totals = [
        ("removed WAL", &CASES_WAL_REMOVED),
        (
            "created a branch below the oldest WAL kept",
            &CASES_BRANCH_BELOW_WAL,
        ),
        (
            "published while a branch held unflushed versions",
            &CASES_QUIET_PUBLISH,
        ),
        (
            "did so for a branch created below the oldest WAL kept",
            &CASES_QUIET_PUBLISH_BELOW_WAL,
        ),
        ("reopened after that", &CASES_REOPEN_AFTER_RISKY_PUBLISH),
    ];
    let line: Vec<String> = totals
        .iter()
        .map(|(what, total)| format!("{} {what}", total.load(Ordering::Relaxed)))
        .collect();
    println!("of {cases} cases: {}", line.join(", "));
    for ((what, total), percent) in totals.iter().zip(min_percent) {
        let reached = total.load(Ordering::Relaxed);
        assert!(
            reached * 100 >= cases * percent,
            "too few cases {what}: {reached} of {cases} (want {percent}%)"
        );
    }
}

impl Harness {
    /// A store on disk, in a temporary directory, with its background housekeeper,
    /// keeping flushed versions with `backend`.
    pub(crate) fn new(backend: Backend) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let (mut config, clock) = engine_config(SyncMode::Never);
        config.backend = backend;
        config.wal_segment_size = WAL_SEGMENT_SIZE;
        config.layer_flush_bytes = LAYER_FLUSH_BYTES;
        config.compact_l0_layers = 2;
        config.image_after_deltas = 1;
        // Images whenever a chain is long here; the simulated harness keeps the default
        // rule (images only once a range changed enough), so both run.
        config.image_after_changed_percent = 0;
        Harness::with_backing(Backing::Disk(dir), config, clock)
    }

    /// A store on a simulated disk (`SimFileSystem`): commits are durable when
    /// acknowledged (`SyncMode::Always`), a crash is a power cut, and nothing runs in the
    /// background: layers are written by the checkpoint, compact, GC and housekeep
    /// operations (the last runs the background's cycle: with thresholds as small as the
    /// disk harness's, it flushes and compacts what is due and leaves the rest unflushed),
    /// so a run is the same every time.
    pub(crate) fn on_simulated_disk(fs: SimFileSystem) -> Harness {
        let (config, clock) = engine_config(SyncMode::Always);
        let mut config = manual_housekeeping(config);
        config.fs = std::sync::Arc::new(fs.clone());
        config.housekeeping_thread = false;
        config.wal_segment_size = WAL_SEGMENT_SIZE;
        config.layer_flush_bytes = LAYER_FLUSH_BYTES;
        config.compact_l0_layers = 2;
        config.image_after_deltas = 1;
        Harness::with_backing(Backing::Simulated(fs), config, clock)
    }

    /// The simulated-disk store as it was before issue 18 (64 KiB segments, nothing
    /// flushed but by checkpoint and compact), for the regression seeds found with it.
    pub(crate) fn on_simulated_disk_v1(fs: SimFileSystem) -> Harness {
        let (config, clock) = engine_config(SyncMode::Always);
        let mut config = manual_housekeeping(config);
        config.fs = std::sync::Arc::new(fs.clone());
        config.housekeeping_thread = false;
        Harness::with_backing(Backing::Simulated(fs), config, clock)
    }

    fn with_backing(backing: Backing, mut config: Config, clock: ManualClock) -> Harness {
        config.pitr_window = PITR_WINDOW;
        // GC runs only when the suite says, so the model knows when cutoffs move.
        config.gc_period = Duration::ZERO;
        let start = clock.now();
        let store = Store::create(backing.dir(), config.clone()).unwrap();
        // Commits start 50 s after `start`, so requested times can fall before the history.
        clock.advance(Duration::from_secs(50));
        let root = store.branch_info("main").unwrap();
        let model = Model::new(TEST_PAGE_SIZE, "main", root.created_lsn, clock.now())
            .with_pitr_window(PITR_WINDOW);
        let first_wal_lsn = store
            .files(false)
            .ok()
            .and_then(|files| files.wal)
            .map_or(Lsn(0), |wal| wal.oldest);
        Harness {
            backing,
            config,
            clock,
            start,
            store: Some(store),
            model,
            seen_lsns: vec![root.created_lsn],
            ends: Vec::new(),
            accepted: 0,
            first_wal_lsn,
            opened: 0,
            risky_catalog: false,
            coverage: Coverage::default(),
            layer_source: None,
        }
    }

    pub(crate) fn store(&self) -> &Store {
        self.store
            .as_ref()
            .expect("the store is open between steps")
    }

    pub(crate) fn time(&self, secs: u64) -> Timestamp {
        self.start.saturating_add(Duration::from_secs(secs))
    }

    pub(crate) fn name(&self, pick: &BranchPick) -> String {
        match pick {
            BranchPick::Live(index) => {
                let live = self.model.branch_names();
                live.get(index % live.len().max(1))
                    .cloned()
                    .unwrap_or_else(|| "main".to_owned())
            }
            BranchPick::Pool(index) => NAMES[*index].to_owned(),
        }
    }

    pub(crate) fn at(&self, choice: &AtChoice) -> At {
        match choice {
            AtChoice::Latest => At::Latest,
            AtChoice::Lsn { index, delta } => {
                let base = self.seen_lsns[index % self.seen_lsns.len()];
                At::Lsn(Lsn(base.0.saturating_add_signed(i64::from(*delta) * 8)))
            }
            AtChoice::Time(secs) => At::Time(self.time(*secs)),
            AtChoice::Raw(lsn) => At::Lsn(Lsn(*lsn)),
            AtChoice::Oldest(_) => At::Lsn(self.seen_lsns[0]),
        }
    }

    /// `choice` for an operation on `branch` (`AtChoice::Oldest` looks at its history).
    pub(crate) fn at_on(&self, branch: &str, choice: &AtChoice) -> At {
        let AtChoice::Oldest(n) = choice else {
            return self.at(choice);
        };
        let mut readable: Vec<Lsn> = self
            .seen_lsns
            .iter()
            .copied()
            .filter(|lsn| self.model.resolve(branch, At::Lsn(*lsn)).is_ok())
            .collect();
        readable.sort();
        readable.dedup();
        match readable.len() {
            0 => self.at(choice),
            len => At::Lsn(readable[usize::from(*n) % len]),
        }
    }

    pub(crate) fn expiry(&self, choice: &ExpiryChoice) -> Expiry {
        match choice {
            ExpiryChoice::Never => Expiry::Never,
            ExpiryChoice::Ttl(secs) => Expiry::Ttl(Duration::from_secs(*secs)),
            ExpiryChoice::At(secs) => Expiry::At(self.time(*secs)),
            ExpiryChoice::FarTtlYears(years) => {
                Expiry::Ttl(Duration::from_secs(years.saturating_mul(365 * 24 * 3600)))
            }
        }
    }

    pub(crate) fn backup(&self, choice: &BackupChoice) -> Backup {
        match choice {
            BackupChoice::Default => Backup::Default,
            BackupChoice::Named(index) => Backup::Named(NAMES[*index].to_owned()),
            BackupChoice::Skip => Backup::Skip,
        }
    }

    /// Steps the clock back 5 s (the caller syncs the model's).
    fn clock_back_by_five_seconds(&mut self) {
        let now = self.clock.now();
        self.clock
            .set(Timestamp(now.as_micros().saturating_sub(5_000_000)));
    }

    /// Moves the model's clock to the store's and sweeps expired branches on both, so
    /// what is listed does not depend on when the background sweep runs.
    pub(crate) fn sync_clock(&mut self) -> Result<(), TestCaseError> {
        let swept = self.store().sweep_expired();
        prop_assert!(swept.is_ok(), "sweep failed: {:?}", swept);
        self.model.set_now(self.clock.now());
        Ok(())
    }

    pub(crate) fn updates(
        &self,
        branch: &str,
        choices: &[(u32, UpdateChoice)],
    ) -> Vec<(Key, Update)> {
        let existing = self
            .model
            .head(branch)
            .map(|head| self.model.pages(branch, head))
            .unwrap_or_default();
        choices
            .iter()
            .map(|(block, choice)| {
                let key = ops::key(*block);
                let update = match choice {
                    UpdateChoice::Patch { byte, .. } if !existing.contains_key(&key) => {
                        Update::Image(Bytes::from(vec![*byte; TEST_PAGE_SIZE]))
                    }
                    UpdateChoice::Image(byte) => {
                        Update::Image(Bytes::from(vec![*byte; TEST_PAGE_SIZE]))
                    }
                    UpdateChoice::ShortImage => {
                        Update::Image(Bytes::from(vec![0u8; TEST_PAGE_SIZE - 1]))
                    }
                    UpdateChoice::Patch { offset, len, byte }
                    | UpdateChoice::PatchAnyway { offset, len, byte } => Update::Patch {
                        offset: *offset,
                        bytes: Bytes::from(vec![*byte; *len]),
                    },
                    UpdateChoice::Drop => Update::Drop,
                };
                (key, update)
            })
            .collect()
    }

    pub(crate) fn reopen(&mut self) {
        self.count_housekeeping();
        let store = self.store();
        let failures = store.stats().housekeeping_failures;
        assert_eq!(
            failures,
            0,
            "background housekeeping failed: {:?}",
            store.housekeeping_error()
        );
        self.coverage.reopen_after_risky_publish |= self.risky_catalog;
        self.risky_catalog = false;
        self.opened += 1;
        drop(self.store.take());
        let store = Store::open_with(self.backing.dir(), self.config.clone());
        self.store = Some(store.unwrap_or_else(|error| panic!("the store does not open: {error}")));
    }

    /// Moves the store through object storage: checkpointed (so everything logged is
    /// durable), synced to `location`, attached in a new directory, and opened there as
    /// `copy` says; the harness goes on with the copy, which must hold everything (the
    /// recovery point is the end of the log). For the remote storage model suite.
    pub(crate) fn move_through(
        &mut self,
        location: &pagefork_remote::RemoteLocation,
        copy: CopyChoice,
    ) -> Result<(), TestCaseError> {
        let store = self.store();
        store
            .checkpoint()
            .map_err(|error| TestCaseError::fail(format!("checkpoint: {error}")))?;
        let end = store.stats().wal_end;
        let report = pagefork_remote::Uploader::connect_with_layers(
            location,
            store,
            self.layer_source.clone(),
        )
        .and_then(|mut uploader| uploader.sync(store))
        .map_err(|error| TestCaseError::fail(format!("sync: {error}")))?;
        self.evict_over_budget()?;
        prop_assert_eq!(
            report.recovery_point,
            end,
            "the recovery point is the log's end"
        );
        let dir = tempfile::tempdir().unwrap();
        let attached = match copy {
            CopyChoice::Cached { lazy: true, .. } => {
                pagefork_remote::attach_lazily(location, dir.path())
            }
            _ => pagefork_remote::attach(location, dir.path()),
        }
        .map_err(|error| TestCaseError::fail(format!("attach: {error}")))?;
        prop_assert_eq!(attached.recovery_point, end);
        self.count_housekeeping();
        drop(self.store.take());
        self.layer_source = match copy {
            CopyChoice::Whole => None,
            CopyChoice::Cached { .. } => Some(pagefork_remote::RemoteLayers::new(location)),
        };
        self.config.layer_cache = match (copy, &self.layer_source) {
            (CopyChoice::Cached { budget, .. }, Some(source)) => {
                Some(pagefork_engine::LayerCacheConfig {
                    source: std::sync::Arc::clone(source)
                        as std::sync::Arc<dyn pagefork_engine::LayerSource>,
                    budget_bytes: Some(budget),
                })
            }
            _ => None,
        };
        let copy = Store::open_with(dir.path(), self.config.clone()).map_err(|error| {
            TestCaseError::fail(format!("the attached copy does not open: {error}"))
        })?;
        self.backing = Backing::Disk(dir);
        self.store = Some(copy);
        self.opened += 1;
        Ok(())
    }

    /// With local disk as a cache: evicts uploaded layer files down to the budget, as a
    /// server does after each sync, and checks the cache against the disk: the layers on
    /// disk that the bucket holds fit the budget, and the cache counts what is on disk.
    /// (The housekeeping thread may download or evict one layer meanwhile: each check
    /// allows one layer more.)
    pub(crate) fn evict_over_budget(&mut self) -> Result<(), TestCaseError> {
        let Some(source) = self.layer_source.clone() else {
            return Ok(());
        };
        let store = self.store();
        let fail = |what: &str| {
            let what = what.to_owned();
            move |error: pagefork_engine::EngineError| {
                TestCaseError::fail(format!("{what}: {error}"))
            }
        };
        let stats = store.evict_layers_over_budget().map_err(fail("eviction"))?;
        let budget = stats.budget_bytes.unwrap_or(u64::MAX);
        let published = store.pin_published().map_err(fail("pin"))?;
        store.unpin_published();
        let held: std::collections::BTreeSet<&str> = published
            .layers
            .iter()
            .filter(|layer| {
                pagefork_engine::LayerSource::holds(&*source, &layer.name, layer.checksum)
            })
            .map(|layer| layer.name.as_str())
            .collect();
        let files = store.files(false).map_err(fail("files"))?;
        let layers: Vec<_> = files
            .branches
            .iter()
            .flat_map(|branch| &branch.layers)
            .collect();
        let largest = layers.iter().map(|layer| layer.bytes).max().unwrap_or(0);
        let resident = |only_held: bool| -> u64 {
            layers
                .iter()
                .filter(|layer| {
                    layer.resident && (!only_held || held.contains(layer.name.as_str()))
                })
                .map(|layer| layer.bytes)
                .sum()
        };
        let counted = store
            .layer_cache_stats()
            .map_or(0, |stats| stats.resident_bytes);
        prop_assert!(
            resident(false) <= counted + largest,
            "resident layers hold {} bytes, the cache counts {}",
            resident(false),
            counted
        );
        prop_assert!(
            resident(true) <= budget.saturating_add(largest),
            "uploaded layers on disk hold {} bytes after evicting down to {}: {:?}",
            resident(true),
            budget,
            stats
        );
        Ok(())
    }

    /// Runs `op` against the store and the model, then checks they agree.
    pub(crate) fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let published = self.store().stats().catalogs_published;
        let opened = self.opened;
        self.apply(op)?;
        self.observe(published, opened);
        self.check_everything()
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Commit { branch, updates } => {
                let name = &self.name(branch);
                let updates = self.updates(name, updates);
                let expected = self.model.check_commit(name, &updates);
                match self.store().commit(name, updates.clone()) {
                    Ok(commit) => {
                        prop_assert_eq!(
                            expected,
                            Ok(()),
                            "store accepted a commit the model refuses"
                        );
                        self.accepted += 1;
                        self.model.commit(name, updates, commit.lsn, commit.time);
                        self.seen_lsns.push(commit.lsn);
                    }
                    Err(error) => refused(&error, expected.err())?,
                }
            }
            Op::CreateBranch {
                name,
                parent,
                at,
                expiry,
                protected,
            } => {
                let (name, parent) = (NAMES[*name], &self.name(parent));
                let at = self.at_on(parent, at);
                let options = BranchOptions {
                    expiry: self.expiry(expiry),
                    protected: *protected,
                };
                let expected = self.model.check_create_branch(name, parent, at, options);
                match self.store().create_branch(name, parent, at, options) {
                    Ok(info) => {
                        let branch_point = info.parent.as_ref().map(|parent| parent.lsn);
                        prop_assert_eq!(expected.map(Some), Ok(branch_point));
                        if let At::Time(time) = at {
                            prop_assert_eq!(
                                info.created_at_time,
                                self.model.lsn_for_time(parent, time).ok()
                            );
                        }
                        self.accepted += 1;
                        self.ends.extend(info.expires_at);
                        self.model.create_branch(
                            name,
                            parent,
                            info.parent.unwrap().lsn,
                            info.created_lsn,
                            options,
                        );
                        self.seen_lsns.push(info.created_lsn);
                    }
                    Err(error) => refused(&error, expected.err())?,
                }
            }
            Op::DeleteBranch { branch } => {
                let name = &self.name(branch);
                if self.model.branch_names() == [name.clone()] {
                    // Deleting the last branch would leave every later step a refusal.
                    return Ok(());
                }
                let expected = self.model.check_delete_branch(name);
                match self.store().delete_branch(name) {
                    Ok(()) => {
                        prop_assert_eq!(expected, Ok(()));
                        self.model.delete_branch(name);
                    }
                    Err(error) => refused(&error, expected.err())?,
                }
            }
            Op::Rename { branch, name } => {
                let (branch, new_name) = (&self.name(branch), NAMES[*name]);
                let expected = self.model.check_rename(branch, new_name);
                match self.store().rename_branch(branch, new_name) {
                    Ok(info) => {
                        prop_assert_eq!(expected, Ok(()));
                        prop_assert_eq!(&info.name, new_name);
                        self.model.rename(branch, new_name);
                    }
                    Err(error) => refused(&error, expected.err())?,
                }
            }
            Op::Protect { branch, protected } => {
                let name = &self.name(branch);
                let expected = self.model.check_set_protected(name, *protected);
                match self.store().set_protected(name, *protected) {
                    Ok(info) => {
                        prop_assert_eq!(expected, Ok(()));
                        prop_assert_eq!(info.protected, *protected);
                        self.model.set_protected(name, *protected);
                    }
                    Err(error) => refused(&error, expected.err())?,
                }
            }
            Op::SetExpiry { branch, expiry } => {
                let (name, expiry) = (&self.name(branch), self.expiry(expiry));
                let expected = self.model.check_set_expiry(name, expiry);
                match self.store().set_expiry(name, expiry) {
                    Ok(info) => {
                        prop_assert_eq!(expected, Ok(info.expires_at));
                        self.ends.extend(info.expires_at);
                        self.model.set_expiry(name, expiry);
                    }
                    Err(error) => refused(&error, expected.err())?,
                }
            }
            Op::Reset { branch } => {
                let name = &self.name(branch);
                let expected = self.model.check_reset(name);
                match self.store().reset_branch(name) {
                    Ok(info) => {
                        prop_assert_eq!(expected, Ok(info.parent.as_ref().unwrap().lsn));
                        self.accepted += 1;
                        self.model.reset(name, info.created_lsn);
                        self.seen_lsns.push(info.created_lsn);
                    }
                    Err(error) => refused(&error, expected.err())?,
                }
            }
            Op::Detach { branch } => {
                let name = &self.name(branch);
                let expected = self.model.check_detach(name);
                match self.store().detach_branch(name) {
                    Ok(info) => {
                        prop_assert_eq!(expected, Ok(()));
                        prop_assert!(info.parent.is_none(), "{:?}", info);
                        DETACHES.fetch_add(1, Ordering::Relaxed);
                        self.model.detach(name);
                        prop_assert_eq!(Ok(info.gc_cutoff), self.model.cutoff(name));
                        prop_assert_eq!(Ok(info.head), self.model.head(name));
                        self.check_every_read()?;
                    }
                    Err(error) => refused(&error, expected.err())?,
                }
            }
            Op::Restore {
                branch,
                source,
                at,
                backup,
            } => {
                let (name, source) = (&self.name(branch), &self.name(source));
                let at = self.at_on(source, at);
                let backup = self.backup(backup);
                let expected = self.model.check_restore(name, source, at, &backup);
                match self
                    .store()
                    .restore_branch(name, source, at, backup.clone())
                {
                    Ok(restored) => {
                        let branch_point = restored.branch.parent.as_ref().unwrap().lsn;
                        prop_assert_eq!(expected, Ok((branch_point, restored.backup.clone())));
                        if let At::Time(time) = at {
                            prop_assert_eq!(
                                restored.branch.created_at_time,
                                self.model.lsn_for_time(source, time).ok()
                            );
                        }
                        self.accepted += 1;
                        let created_lsn = restored.branch.created_lsn;
                        self.model.restore(name, source, at, &backup, created_lsn);
                        self.seen_lsns.push(created_lsn);
                    }
                    Err(error) => refused(&error, expected.err())?,
                }
            }
            Op::Diff {
                from,
                from_at,
                to,
                to_at,
            } => {
                let (from, from_at) = (&self.name(from), self.at(from_at));
                let (to, to_at) = (&self.name(to), self.at(to_at));
                let lsns = self
                    .model
                    .resolve(from, from_at)
                    .and_then(|from_lsn| Ok((from_lsn, self.model.resolve(to, to_at)?)));
                match self.store().diff(from, from_at, to, to_at) {
                    Ok(diff) => {
                        prop_assert_eq!(lsns, Ok((diff.from_lsn, diff.to_lsn)));
                        let expected = self.model.diff(from, diff.from_lsn, to, diff.to_lsn);
                        prop_assert_eq!(&diff.added, &expected.added);
                        prop_assert_eq!(&diff.removed, &expected.removed);
                        prop_assert_eq!(&diff.changed, &expected.changed);
                    }
                    Err(error) => refused(&error, lsns.err())?,
                }
            }
            Op::Read { branch, key, at } => {
                let (name, key, at) = (&self.name(branch), ops::key(*key), self.at(at));
                let expected = self
                    .model
                    .resolve(name, at)
                    .map(|lsn| self.model.page(name, key, lsn));
                let got = self.store().get_page(name, key, at);
                match got {
                    Ok(page) => prop_assert_eq!(Ok(page.map(|page| page.to_vec())), expected),
                    Err(error) => refused(&error, expected.err())?,
                }
            }
            Op::LsnForTime { branch, secs } => {
                let (name, time) = (&self.name(branch), self.time(*secs));
                let expected = self.model.lsn_for_time(name, time);
                match self.store().lsn_for_time(name, time) {
                    Ok(answer) => prop_assert_eq!(Ok(answer), expected),
                    Err(error) => refused(&error, expected.err())?,
                }
            }
            Op::Clock { forward_secs, back } => {
                if *back {
                    self.clock_back_by_five_seconds();
                } else {
                    self.clock.advance(Duration::from_secs(*forward_secs));
                }
                self.sync_clock()?;
            }
            Op::ClockBackBeforeEnd { nth } => {
                let now = self.clock.now();
                let passed: Vec<Timestamp> = self
                    .ends
                    .iter()
                    .copied()
                    .filter(|end| *end <= now)
                    .collect();
                match passed.get(nth % passed.len().max(1)) {
                    Some(end) => self.clock.set(Timestamp(end.as_micros().saturating_sub(1))),
                    None => self.clock_back_by_five_seconds(),
                }
                self.sync_clock()?;
            }
            Op::Checkpoint => {
                let covered = self.store().checkpoint().unwrap();
                let heads = self
                    .model
                    .branch_names()
                    .iter()
                    .map(|name| self.model.head(name).unwrap())
                    .max();
                prop_assert!(
                    heads.is_none_or(|head| covered >= head),
                    "a checkpoint covers every head"
                );
            }
            Op::Compact => {
                self.store().compact().unwrap();
            }
            Op::Gc => {
                let report = self.store().gc();
                prop_assert!(report.is_ok(), "GC failed: {:?}", report);
                if let Ok(report) = report {
                    let counter = match self.config.backend {
                        Backend::Native => &GC_VERSIONS_REMOVED,
                        Backend::RocksDb => &ROCKSDB_GC_VERSIONS_REMOVED,
                    };
                    counter.fetch_add(report.versions_removed as usize, Ordering::Relaxed);
                }
                self.model.gc();
                self.check_every_read()?;
            }
            Op::Lease { branch, at, secs } => {
                let name = &self.name(branch);
                let lsn = match self.at(at) {
                    At::Lsn(lsn) => lsn,
                    At::Latest | At::Time(_) => self.model.head(name).unwrap_or_default(),
                };
                let duration = Duration::from_secs(*secs);
                let expected = self.model.check_lease(name, lsn, duration);
                match self.store().lease(name, lsn, duration) {
                    Ok(lease) => {
                        prop_assert_eq!(Ok(lease.expires_at), expected);
                        self.ends.push(lease.expires_at);
                        self.model.lease(name, lsn, duration);
                    }
                    Err(error) => refused(&error, expected.err())?,
                }
            }
            Op::SetPitrWindow { branch, secs } => {
                let name = &self.name(branch);
                let window = secs.map(Duration::from_secs);
                let expected = self.model.check_set_pitr_window(name, window);
                match self.store().set_pitr_window(name, window) {
                    Ok(info) => {
                        prop_assert_eq!(expected, Ok(()));
                        prop_assert_eq!(info.pitr_window, window);
                        self.model.set_pitr_window(name, window);
                    }
                    Err(error) => refused(&error, expected.err())?,
                }
            }
            Op::QuietBranch {
                name,
                parent,
                at,
                update,
            } => {
                self.apply(&Op::CreateBranch {
                    name: *name,
                    parent: parent.clone(),
                    at: at.clone(),
                    expiry: ExpiryChoice::Never,
                    protected: false,
                })?;
                self.apply(&Op::Commit {
                    branch: BranchPick::Pool(*name),
                    updates: vec![update.clone()],
                })?;
            }
            Op::Burst {
                branch,
                commits,
                pages,
                byte,
                then,
            } => {
                for commit in 0..*commits {
                    let byte = byte.wrapping_add(commit);
                    self.apply(&Op::Commit {
                        branch: branch.clone(),
                        updates: (0..*pages)
                            .map(|key| (key, UpdateChoice::Image(byte)))
                            .collect(),
                    })?;
                }
                if !matches!(then, AfterBurst::Nothing) {
                    let (published, opened) =
                        (self.store().stats().catalogs_published, self.opened);
                    self.apply(&Op::Housekeep)?;
                    // Notes what the cycle published, which the crash below opens.
                    self.observe(published, opened);
                }
                if matches!(then, AfterBurst::HousekeepAndCrash) {
                    self.apply(&Op::Crash)?;
                }
            }
            Op::Housekeep => {
                let covered = self.store().housekeep();
                prop_assert!(covered.is_ok(), "housekeeping failed: {:?}", covered);
            }
            Op::Reopen => self.reopen(),
            Op::Crash => {
                // On disk, a crash is the store dropped without shutdown (there is no
                // shutdown step, so it is a reopen; the SIGKILL tests cover a real process
                // death). On the simulated disk it is a power cut: what was not made
                // durable is gone, the last write may be torn.
                if let Backing::Simulated(fs) = &self.backing {
                    fs.crash();
                }
                self.reopen();
            }
        }
        Ok(())
    }

    /// Notes what the step just run reached, for the suites' coverage totals: the WAL's
    /// first segment removed, a branch created at a point below the oldest WAL kept, a
    /// catalog published while a branch held unflushed versions (and one whose branch
    /// point is below the oldest WAL kept).
    fn observe(&mut self, published_before: u64, opened_before: u64) {
        let Some(store) = &self.store else { return };
        let Ok(StoreFiles {
            wal: Some(wal),
            branches,
            ..
        }) = store.files(false)
        else {
            return;
        };
        let wal_start = Lsn(wal.oldest.0 - SEGMENT_HEADER_LEN);
        let coverage = &mut self.coverage;
        coverage.wal_removed |= wal.oldest > self.first_wal_lsn;
        let infos = store.list_branches();
        let below_wal = |id| {
            infos.iter().any(|info| {
                info.id == id
                    && info.created_lsn >= wal_start
                    && info
                        .parent
                        .as_ref()
                        .is_some_and(|parent| parent.lsn < wal_start)
            })
        };
        coverage.branch_below_wal |= branches.iter().any(|branch| below_wal(branch.id));
        if self.opened == opened_before && store.stats().catalogs_published > published_before {
            let quiet = branches.iter().filter(|branch| branch.unflushed_bytes > 0);
            coverage.quiet_publish |= quiet.clone().next().is_some();
            self.risky_catalog = quiet.clone().any(|branch| below_wal(branch.id));
            coverage.quiet_publish_below_wal |= self.risky_catalog;
        }
    }

    /// Every read of every key on every listed branch at every LSN seen (and a time a
    /// second after each start of a second): the page the model has, or the refusal it
    /// says (below the GC cutoff, past the head, ...).
    pub(crate) fn check_every_read(&self) -> Result<(), TestCaseError> {
        let store = self.store();
        for name in self.model.branch_names() {
            let mut ats: Vec<At> = self.seen_lsns.iter().map(|lsn| At::Lsn(*lsn)).collect();
            ats.extend((0..12).map(|step| At::Time(self.time(step * 10))));
            for at in ats {
                let expected_lsn = self.model.resolve(&name, at);
                for block in 0..KEYS {
                    let key = ops::key(block);
                    let expected = expected_lsn.map(|lsn| self.model.page(&name, key, lsn));
                    match store.get_page(&name, key, at) {
                        Ok(page) => prop_assert_eq!(
                            Ok(page.map(|page| page.to_vec())),
                            expected,
                            "{} {} at {:?}",
                            name,
                            key,
                            at
                        ),
                        Err(error) => {
                            if Refusal::of(&error) == Some(Refusal::BelowGcCutoff) {
                                BELOW_CUTOFF_REFUSALS.fetch_add(1, Ordering::Relaxed);
                            }
                            prop_assert!(
                                Refusal::of(&error).is_some(),
                                "{} {} at {:?}: a failure, not a refusal: {}",
                                name,
                                key,
                                at,
                                error
                            );
                            prop_assert_eq!(
                                Refusal::of(&error),
                                expected.err(),
                                "{} {} at {:?}: {}",
                                name,
                                key,
                                at,
                                error
                            )
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Every live branch, head and page agrees with the model, and no background
    /// housekeeping failed.
    pub(crate) fn check_everything(&self) -> Result<(), TestCaseError> {
        let store = self.store();
        prop_assert_eq!(
            store.stats().housekeeping_failures,
            0,
            "background housekeeping failed: {:?}",
            store.housekeeping_error()
        );
        let infos = store.list_branches();
        let names: Vec<String> = infos.iter().map(|info| info.name.clone()).collect();
        prop_assert_eq!(&names, &self.model.branch_names());
        prop_assert_eq!(&listed_in_pages(store), &infos);
        // A parent filter keeps the children of the branch the name names now, not of a
        // hidden old state that had the name (found by a review).
        for parent in &infos {
            let filter = BranchFilter {
                name_prefix: None,
                parent: Some(parent.name.clone()),
            };
            let listed = store.list_branches_page(&filter, None, std::num::NonZeroUsize::MAX);
            let children: Vec<&BranchInfo> = infos
                .iter()
                .filter(|info| {
                    info.parent
                        .as_ref()
                        .is_some_and(|of| of.name == parent.name && !of.hidden)
                })
                .collect();
            prop_assert_eq!(listed.branches.iter().collect::<Vec<_>>(), children);
        }
        // Every time a store holds can be written (an expiry past year 9999 was stored
        // once and broke every view of its branch).
        let expiries = infos.iter().filter_map(|info| info.expires_at);
        let lease_ends = store.leases().into_iter().map(|lease| lease.expires_at);
        for time in expiries.chain(lease_ends) {
            prop_assert!(
                time <= Timestamp::MAX,
                "a stored expiry past year 9999: {:?}",
                time
            );
            prop_assert!(!time.to_string().is_empty());
        }
        for info in &infos {
            prop_assert_eq!(Ok(info.head), self.model.head(&info.name));
            prop_assert_eq!(
                Ok(info.gc_cutoff),
                self.model.cutoff(&info.name),
                "cutoff of {}",
                info.name
            );
            // Settings too, not only what they lead to (a reset dropping a branch's PITR
            // window in the store and the model alike was found by a review; a store that
            // alone dropped it was caught only if a GC happened to move a cutoff).
            prop_assert_eq!(
                Ok((info.expires_at, info.protected, info.pitr_window)),
                self.model.settings(&info.name),
                "settings of {}",
                info.name
            );
            prop_assert_eq!(
                !info.kept_for.is_empty(),
                self.model.expired(&info.name),
                "{} kept for {:?}",
                info.name,
                info.kept_for
            );
            if !info.kept_for.is_empty() {
                // Expired, kept for its descendants: never readable.
                let read = store.get_page(&info.name, ops::key(0), At::Latest);
                prop_assert!(
                    read.as_ref()
                        .is_err_and(|error| Refusal::of(error) == Some(Refusal::BranchExpired)),
                    "read of expired {}: {:?}",
                    info.name,
                    read
                );
                continue;
            }
            let pages = self.model.pages(&info.name, info.head);
            for block in 0..KEYS {
                let key = ops::key(block);
                let page = store.get_page(&info.name, key, At::Latest).unwrap();
                prop_assert_eq!(
                    page.map(|page| page.to_vec()),
                    pages.get(&key).cloned(),
                    "{} {}",
                    info.name,
                    key
                );
            }
        }
        Ok(())
    }
}

impl Harness {
    /// Adds what the open store's housekeeping did to the suite's totals.
    pub(crate) fn count_housekeeping(&self) {
        let stats = self.store().stats();
        if stats.backend == Backend::RocksDb {
            ROCKSDB_FLUSHES.fetch_add(stats.flushes as usize, Ordering::Relaxed);
            return;
        }
        FLUSHES.fetch_add(stats.flushes as usize, Ordering::Relaxed);
        MERGES.fetch_add(stats.compactions as usize, Ordering::Relaxed);
        MOVES.fetch_add(stats.layers_moved as usize, Ordering::Relaxed);
        IMAGES.fetch_add(stats.images_written as usize, Ordering::Relaxed);
    }
}

/// Page versions GC removed (native layer files, RocksDB), and reads refused below a
/// cutoff, over all cases.
pub(crate) static GC_VERSIONS_REMOVED: AtomicUsize = AtomicUsize::new(0);
pub(crate) static ROCKSDB_GC_VERSIONS_REMOVED: AtomicUsize = AtomicUsize::new(0);
pub(crate) static BELOW_CUTOFF_REFUSALS: AtomicUsize = AtomicUsize::new(0);
/// Detaches the store accepted, over all cases.
pub(crate) static DETACHES: AtomicUsize = AtomicUsize::new(0);

/// Flushes, L0 merges and image layers over all cases (native layer files), and flushes
/// to RocksDB.
pub(crate) static FLUSHES: AtomicUsize = AtomicUsize::new(0);
pub(crate) static ROCKSDB_FLUSHES: AtomicUsize = AtomicUsize::new(0);
pub(crate) static MERGES: AtomicUsize = AtomicUsize::new(0);
/// L0 files compaction moved to L1 without rewriting them.
pub(crate) static MOVES: AtomicUsize = AtomicUsize::new(0);
pub(crate) static IMAGES: AtomicUsize = AtomicUsize::new(0);

/// Issue 18's first cause: `main` writes a few WAL segments and a background cycle
/// publishes (removing the oldest), a quiet branch is created at the oldest point still
/// readable (below the oldest WAL kept) and gets one commit, then `main` writes more and a
/// background cycle publishes while that commit is unflushed; then a crash.
pub(crate) fn issue_18_quiet_branch_below_the_wal() -> Vec<Op> {
    let burst = |commits, then| Op::Burst {
        branch: BranchPick::Pool(0),
        commits,
        pages: 3,
        byte: 0,
        then,
    };
    vec![
        burst(4, AfterBurst::Housekeep),
        Op::QuietBranch {
            name: 1,
            parent: BranchPick::Pool(0),
            at: AtChoice::Oldest(0),
            update: (0, UpdateChoice::Image(1)),
        },
        burst(7, AfterBurst::HousekeepAndCrash),
    ]
}

/// Issue 18's second cause: a branch gets a commit, a checkpoint flushes it, `main` writes
/// past the WAL segment holding that commit and a background cycle publishes (removing
/// it), a cycle with nothing due runs, the branch gets one more commit, and `main`'s next
/// background publish happens while that commit is unflushed; then a crash.
pub(crate) fn issue_18_idle_branch_written_again() -> Vec<Op> {
    let burst = |commits, then| Op::Burst {
        branch: BranchPick::Pool(0),
        commits,
        pages: 3,
        byte: 0,
        then,
    };
    vec![
        Op::QuietBranch {
            name: 1,
            parent: BranchPick::Pool(0),
            at: AtChoice::Latest,
            update: (0, UpdateChoice::Image(1)),
        },
        Op::Checkpoint,
        burst(7, AfterBurst::Housekeep),
        Op::Housekeep,
        Op::Commit {
            branch: BranchPick::Pool(1),
            updates: vec![(1, UpdateChoice::Image(2))],
        },
        burst(7, AfterBurst::HousekeepAndCrash),
    ]
}

/// Every branch, read two at a time through `Store::list_branches_page`.
fn listed_in_pages(store: &Store) -> Vec<BranchInfo> {
    let two = std::num::NonZeroUsize::new(2).expect("not zero");
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list_branches_page(&BranchFilter::default(), after.as_deref(), two);
        listed.extend(page.branches);
        match page.next_after {
            Some(next) => after = Some(next),
            None => return listed,
        }
    }
}
