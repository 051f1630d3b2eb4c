//! The model-based harness shared by `engine_model` (random operation sequences on disk,
//! through proptest) and `engine_simulation` (seeded runs on the simulated file system,
//! with power cuts): the operations, their strategies, and a `Harness` that runs each one
//! against the store and `pagefork_engine::model::Model` and checks they agree.

// Each test binary uses part of it.
#![allow(dead_code)]
// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use pagefork_engine::model::{Model, Refusal};
use pagefork_engine::sim::SimFileSystem;
use pagefork_engine::{
    At, Backend, Backup, BranchOptions, Clock, Config, Expiry, Key, Lsn, ManualClock, Store,
    SyncMode, Timestamp, Update,
};
use pagefork_tests::{TEST_PAGE_SIZE, engine_config, manual_housekeeping};
use proptest::prelude::*;

pub(crate) const NAMES: [&str; 6] = ["main", "a", "b", "c", "a/b", "bad name"];
pub(crate) const KEYS: u32 = 4;
/// The store's PITR window: shorter than most clock steps, so cutoffs move.
pub(crate) const PITR_WINDOW: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub(crate) enum UpdateChoice {
    Image(u8),
    ShortImage,
    /// A patch if the page exists at the branch's head (per the model), else an image.
    Patch {
        offset: u32,
        len: usize,
        byte: u8,
    },
    /// A patch whether or not the page exists.
    PatchAnyway {
        offset: u32,
        len: usize,
        byte: u8,
    },
    Drop,
}

/// Which branch an operation names: mostly a live one, sometimes any name of the pool
/// (which may not exist, or break the naming rule).
#[derive(Clone, Debug)]
pub(crate) enum BranchPick {
    Live(usize),
    Pool(usize),
}

pub(crate) fn branch_pick() -> impl Strategy<Value = BranchPick> {
    prop_oneof![
        6 => any::<usize>().prop_map(BranchPick::Live),
        1 => (0..NAMES.len()).prop_map(BranchPick::Pool),
    ]
}

#[derive(Clone, Debug)]
pub(crate) enum AtChoice {
    Latest,
    /// An LSN seen so far (by index), moved by `delta` frames of 8 bytes.
    Lsn {
        index: usize,
        delta: i8,
    },
    /// Seconds after the test's start time.
    Time(u64),
}

#[derive(Clone, Debug)]
pub(crate) enum ExpiryChoice {
    Never,
    /// A TTL in seconds (0 is already past).
    Ttl(u64),
    /// Seconds after the test's start time.
    At(u64),
}

#[derive(Clone, Debug)]
pub(crate) enum BackupChoice {
    Default,
    Named(usize),
    Skip,
}

#[derive(Clone, Debug)]
pub(crate) enum Op {
    Commit {
        branch: BranchPick,
        updates: Vec<(u32, UpdateChoice)>,
    },
    CreateBranch {
        name: usize,
        parent: BranchPick,
        at: AtChoice,
        expiry: ExpiryChoice,
        protected: bool,
    },
    Rename {
        branch: BranchPick,
        name: usize,
    },
    Protect {
        branch: BranchPick,
        protected: bool,
    },
    SetExpiry {
        branch: BranchPick,
        expiry: ExpiryChoice,
    },
    Reset {
        branch: BranchPick,
    },
    Detach {
        branch: BranchPick,
    },
    Restore {
        branch: BranchPick,
        source: BranchPick,
        at: AtChoice,
        backup: BackupChoice,
    },
    Diff {
        from: BranchPick,
        from_at: AtChoice,
        to: BranchPick,
        to_at: AtChoice,
    },
    DeleteBranch {
        branch: BranchPick,
    },
    Read {
        branch: BranchPick,
        key: u32,
        at: AtChoice,
    },
    LsnForTime {
        branch: BranchPick,
        secs: u64,
    },
    Clock {
        forward_secs: u64,
        back: bool,
    },
    Reopen,
    Crash,
    Checkpoint,
    Compact,
    /// GC now; then every read at every LSN seen must agree with the model.
    Gc,
    Lease {
        branch: BranchPick,
        at: AtChoice,
        secs: u64,
    },
    SetPitrWindow {
        branch: BranchPick,
        secs: Option<u64>,
    },
}

pub(crate) fn update_choice() -> impl Strategy<Value = UpdateChoice> {
    prop_oneof![
        12 => any::<u8>().prop_map(UpdateChoice::Image),
        1 => Just(UpdateChoice::ShortImage),
        10 => (0..TEST_PAGE_SIZE as u32 - 8, 1..9usize, any::<u8>())
            .prop_map(|(offset, len, byte)| UpdateChoice::Patch { offset, len, byte }),
        1 => (TEST_PAGE_SIZE as u32 - 4..TEST_PAGE_SIZE as u32 + 4, 5..9usize, any::<u8>())
            .prop_map(|(offset, len, byte)| UpdateChoice::PatchAnyway { offset, len, byte }),
        1 => (0..TEST_PAGE_SIZE as u32 - 8, 1..9usize, any::<u8>())
            .prop_map(|(offset, len, byte)| UpdateChoice::PatchAnyway { offset, len, byte }),
        3 => Just(UpdateChoice::Drop),
    ]
}

/// Mostly 1 to 3 updates on distinct keys; sometimes none, sometimes a key twice.
pub(crate) fn updates_choice() -> impl Strategy<Value = Vec<(u32, UpdateChoice)>> {
    prop_oneof![
        12 => prop::collection::btree_map(0..KEYS, update_choice(), 1..4)
            .prop_map(|updates| updates.into_iter().collect::<Vec<_>>()),
        1 => Just(Vec::new()),
        1 => (0..KEYS, update_choice(), update_choice())
            .prop_map(|(key, first, second)| vec![(key, first), (key, second)]),
    ]
}

pub(crate) fn at_choice() -> impl Strategy<Value = AtChoice> {
    prop_oneof![
        2 => Just(AtChoice::Latest),
        4 => (any::<usize>(), -1i8..=1).prop_map(|(index, delta)| AtChoice::Lsn { index, delta }),
        2 => (0u64..200).prop_map(AtChoice::Time),
    ]
}

pub(crate) fn expiry_choice() -> impl Strategy<Value = ExpiryChoice> {
    prop_oneof![
        6 => Just(ExpiryChoice::Never),
        3 => (0u64..40).prop_map(ExpiryChoice::Ttl),
        1 => (0u64..300).prop_map(ExpiryChoice::At),
    ]
}

pub(crate) fn backup_choice() -> impl Strategy<Value = BackupChoice> {
    prop_oneof![
        2 => Just(BackupChoice::Default),
        1 => (0..NAMES.len()).prop_map(BackupChoice::Named),
        2 => Just(BackupChoice::Skip),
    ]
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (branch_pick(), updates_choice()).prop_map(|(branch, updates)| Op::Commit { branch, updates }),
        3 => (0..NAMES.len(), branch_pick(), at_choice(), expiry_choice(), prop::bool::weighted(0.1))
            .prop_map(|(name, parent, at, expiry, protected)| Op::CreateBranch { name, parent, at, expiry, protected }),
        1 => (branch_pick(), 0..NAMES.len()).prop_map(|(branch, name)| Op::Rename { branch, name }),
        1 => (branch_pick(), any::<bool>()).prop_map(|(branch, protected)| Op::Protect { branch, protected }),
        1 => (branch_pick(), expiry_choice()).prop_map(|(branch, expiry)| Op::SetExpiry { branch, expiry }),
        1 => branch_pick().prop_map(|branch| Op::Reset { branch }),
        2 => branch_pick().prop_map(|branch| Op::Detach { branch }),
        2 => (branch_pick(), branch_pick(), at_choice(), backup_choice())
            .prop_map(|(branch, source, at, backup)| Op::Restore { branch, source, at, backup }),
        1 => (branch_pick(), at_choice(), branch_pick(), at_choice())
            .prop_map(|(from, from_at, to, to_at)| Op::Diff { from, from_at, to, to_at }),
        1 => branch_pick().prop_map(|branch| Op::DeleteBranch { branch }),
        4 => (branch_pick(), 0..KEYS, at_choice()).prop_map(|(branch, key, at)| Op::Read { branch, key, at }),
        2 => (branch_pick(), 0u64..200).prop_map(|(branch, secs)| Op::LsnForTime { branch, secs }),
        3 => (0u64..20, prop::bool::weighted(0.2)).prop_map(|(forward_secs, back)| Op::Clock { forward_secs, back }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        2 => Just(Op::Checkpoint),
        2 => Just(Op::Compact),
        3 => Just(Op::Gc),
        1 => (branch_pick(), at_choice(), 0u64..60).prop_map(|(branch, at, secs)| Op::Lease { branch, at, secs }),
        1 => (branch_pick(), prop::option::of(0u64..60)).prop_map(|(branch, secs)| Op::SetPitrWindow { branch, secs }),
    ]
}

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
    /// Commits and branch creations the store accepted.
    pub(crate) accepted: usize,
}

impl Harness {
    /// A store on disk, in a temporary directory, with its background housekeeper,
    /// keeping flushed versions with `backend`.
    pub(crate) fn new(backend: Backend) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let (mut config, clock) = engine_config(SyncMode::Never);
        config.backend = backend;
        config.layer_flush_bytes = 1024;
        config.compact_l0_layers = 2;
        config.image_after_deltas = 1;
        Harness::with_backing(Backing::Disk(dir), config, clock)
    }

    /// A store on a simulated disk (`SimFileSystem`): commits are durable when
    /// acknowledged (`SyncMode::Always`), a crash is a power cut, and nothing runs in the
    /// background (layers are written by the checkpoint and compact operations), so a run
    /// is the same every time.
    pub(crate) fn on_simulated_disk(fs: SimFileSystem) -> Harness {
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
        Harness {
            backing,
            config,
            clock,
            start,
            store: Some(store),
            model,
            seen_lsns: vec![root.created_lsn],
            accepted: 0,
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
        }
    }

    pub(crate) fn expiry(&self, choice: &ExpiryChoice) -> Expiry {
        match choice {
            ExpiryChoice::Never => Expiry::Never,
            ExpiryChoice::Ttl(secs) => Expiry::Ttl(Duration::from_secs(*secs)),
            ExpiryChoice::At(secs) => Expiry::At(self.time(*secs)),
        }
    }

    pub(crate) fn backup(&self, choice: &BackupChoice) -> Backup {
        match choice {
            BackupChoice::Default => Backup::Default,
            BackupChoice::Named(index) => Backup::Named(NAMES[*index].to_owned()),
            BackupChoice::Skip => Backup::Skip,
        }
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
                let key = Key::new(1, *block);
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
        drop(self.store.take());
        let store = Store::open_with(self.backing.dir(), self.config.clone());
        self.store = Some(store.unwrap_or_else(|error| panic!("the store does not open: {error}")));
    }

    pub(crate) fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
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
                    Err(error) => prop_assert_eq!(Refusal::of(&error), expected.err(), "{}", error),
                }
            }
            Op::CreateBranch {
                name,
                parent,
                at,
                expiry,
                protected,
            } => {
                let (name, parent, at) = (NAMES[*name], &self.name(parent), self.at(at));
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
                        self.model.create_branch(
                            name,
                            parent,
                            info.parent.unwrap().lsn,
                            info.created_lsn,
                            info.created,
                            options,
                        );
                        self.seen_lsns.push(info.created_lsn);
                    }
                    Err(error) => prop_assert_eq!(Refusal::of(&error), expected.err(), "{}", error),
                }
            }
            Op::DeleteBranch { branch } => {
                let name = &self.name(branch);
                if self.model.branch_names() == [name.clone()] {
                    // Deleting the last branch would leave every later step a refusal.
                    return self.check_everything();
                }
                let expected = self.model.check_delete_branch(name);
                match self.store().delete_branch(name) {
                    Ok(()) => {
                        prop_assert_eq!(expected, Ok(()));
                        self.model.delete_branch(name);
                    }
                    Err(error) => prop_assert_eq!(Refusal::of(&error), expected.err(), "{}", error),
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
                    Err(error) => prop_assert_eq!(Refusal::of(&error), expected.err(), "{}", error),
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
                    Err(error) => prop_assert_eq!(Refusal::of(&error), expected.err(), "{}", error),
                }
            }
            Op::SetExpiry { branch, expiry } => {
                let (name, expiry) = (&self.name(branch), self.expiry(expiry));
                let expected = self.model.check_set_expiry(name, expiry);
                match self.store().set_expiry(name, expiry) {
                    Ok(info) => {
                        prop_assert_eq!(expected, Ok(info.expires_at));
                        self.model.set_expiry(name, expiry);
                    }
                    Err(error) => prop_assert_eq!(Refusal::of(&error), expected.err(), "{}", error),
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
                    Err(error) => prop_assert_eq!(Refusal::of(&error), expected.err(), "{}", error),
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
                    Err(error) => prop_assert_eq!(Refusal::of(&error), expected.err(), "{}", error),
                }
            }
            Op::Restore {
                branch,
                source,
                at,
                backup,
            } => {
                let (name, source, at) = (&self.name(branch), &self.name(source), self.at(at));
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
                    Err(error) => prop_assert_eq!(Refusal::of(&error), expected.err(), "{}", error),
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
                    Err(error) => prop_assert_eq!(Refusal::of(&error), lsns.err(), "{}", error),
                }
            }
            Op::Read { branch, key, at } => {
                let (name, key, at) = (&self.name(branch), Key::new(1, *key), self.at(at));
                let expected = self
                    .model
                    .resolve(name, at)
                    .map(|lsn| self.model.page(name, key, lsn));
                let got = self.store().get_page(name, key, at);
                match got {
                    Ok(page) => prop_assert_eq!(Ok(page.map(|page| page.to_vec())), expected),
                    Err(error) => prop_assert_eq!(Refusal::of(&error), expected.err(), "{}", error),
                }
            }
            Op::LsnForTime { branch, secs } => {
                let (name, time) = (&self.name(branch), self.time(*secs));
                let expected = self.model.lsn_for_time(name, time);
                match self.store().lsn_for_time(name, time) {
                    Ok(answer) => prop_assert_eq!(Ok(answer), expected),
                    Err(error) => prop_assert_eq!(Refusal::of(&error), expected.err(), "{}", error),
                }
            }
            Op::Clock { forward_secs, back } => {
                if *back {
                    let now = self.clock.now();
                    self.clock
                        .set(Timestamp(now.as_micros().saturating_sub(5_000_000)));
                } else {
                    self.clock.advance(Duration::from_secs(*forward_secs));
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
                        self.model.lease(name, lsn, duration);
                    }
                    Err(error) => prop_assert_eq!(Refusal::of(&error), expected.err(), "{}", error),
                }
            }
            Op::SetPitrWindow { branch, secs } => {
                let name = &self.name(branch);
                let window = secs.map(Duration::from_secs);
                let expected = self.model.check_set_pitr_window(name);
                match self.store().set_pitr_window(name, window) {
                    Ok(info) => {
                        prop_assert_eq!(expected, Ok(()));
                        prop_assert_eq!(info.pitr_window, window);
                        self.model.set_pitr_window(name, window);
                    }
                    Err(error) => prop_assert_eq!(Refusal::of(&error), expected.err(), "{}", error),
                }
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
        self.check_everything()
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
                    let key = Key::new(1, block);
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

    /// Every live branch, head and page agrees with the model.
    pub(crate) fn check_everything(&self) -> Result<(), TestCaseError> {
        let store = self.store();
        let infos = store.list_branches();
        let names: Vec<String> = infos.iter().map(|info| info.name.clone()).collect();
        prop_assert_eq!(&names, &self.model.branch_names());
        for info in &infos {
            prop_assert_eq!(Ok(info.head), self.model.head(&info.name));
            prop_assert_eq!(
                Ok(info.gc_cutoff),
                self.model.cutoff(&info.name),
                "cutoff of {}",
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
                let read = store.get_page(&info.name, Key::new(1, 0), At::Latest);
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
                let key = Key::new(1, block);
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
pub(crate) static IMAGES: AtomicUsize = AtomicUsize::new(0);
