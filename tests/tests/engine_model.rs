//! Model-based property test: random operation sequences run against a store on disk and
//! against `pagefork_engine::model::Model`; after every step they must agree on every
//! branch, head, page, time answer and refusal.
//!
//! Operations: commits (images, patches, drops; some invalid on purpose), branch creation
//! at latest / an LSN / a time with or without an expiry or protection, deletes, renames,
//! protection and expiry changes, resets, restores (default, named and skipped backups),
//! detaches (after which every read at every LSN seen is checked), diffs, reads at LSNs around every boundary seen and at times, `lsn_for_time`, clock steps
//! (sometimes backwards; expired branches are swept), checkpoints (flush), compaction, clean
//! reopen, crash (the store dropped without any shutdown, then reopened), GC (after which
//! every read at every LSN seen is checked: the model's page, or its refusal, such as
//! below the cutoff), leases and PITR window changes. The PITR window is 5 s and the
//! clock moves up to 20 s a step, so cutoffs move within a case.
//! Flush and compaction thresholds are tiny (a layer file every two versions, a merge
//! every two L0 files, an image over every merge's output), so the background
//! housekeeper runs all through every case; the suite checks that flushes, merges and
//! images happened.
//!
//! Cases: 1,000 by default; `PAGEFORK_MODEL_CASES=N` runs N.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use pagefork_engine::model::{Model, Refusal};
use pagefork_engine::{
    At, Backup, BranchOptions, Clock, Config, Expiry, Key, Lsn, ManualClock, Store, SyncMode,
    Timestamp, Update,
};
use pagefork_tests::{TEST_PAGE_SIZE, engine_config};
use proptest::prelude::*;

const NAMES: [&str; 6] = ["main", "a", "b", "c", "a/b", "bad name"];
const KEYS: u32 = 4;
/// The store's PITR window: shorter than most clock steps, so cutoffs move.
const PITR_WINDOW: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
enum UpdateChoice {
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
enum BranchPick {
    Live(usize),
    Pool(usize),
}

fn branch_pick() -> impl Strategy<Value = BranchPick> {
    prop_oneof![
        6 => any::<usize>().prop_map(BranchPick::Live),
        1 => (0..NAMES.len()).prop_map(BranchPick::Pool),
    ]
}

#[derive(Clone, Debug)]
enum AtChoice {
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
enum ExpiryChoice {
    Never,
    /// A TTL in seconds (0 is already past).
    Ttl(u64),
    /// Seconds after the test's start time.
    At(u64),
}

#[derive(Clone, Debug)]
enum BackupChoice {
    Default,
    Named(usize),
    Skip,
}

#[derive(Clone, Debug)]
enum Op {
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

fn update_choice() -> impl Strategy<Value = UpdateChoice> {
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
fn updates_choice() -> impl Strategy<Value = Vec<(u32, UpdateChoice)>> {
    prop_oneof![
        12 => prop::collection::btree_map(0..KEYS, update_choice(), 1..4)
            .prop_map(|updates| updates.into_iter().collect::<Vec<_>>()),
        1 => Just(Vec::new()),
        1 => (0..KEYS, update_choice(), update_choice())
            .prop_map(|(key, first, second)| vec![(key, first), (key, second)]),
    ]
}

fn at_choice() -> impl Strategy<Value = AtChoice> {
    prop_oneof![
        2 => Just(AtChoice::Latest),
        4 => (any::<usize>(), -1i8..=1).prop_map(|(index, delta)| AtChoice::Lsn { index, delta }),
        2 => (0u64..200).prop_map(AtChoice::Time),
    ]
}

fn expiry_choice() -> impl Strategy<Value = ExpiryChoice> {
    prop_oneof![
        6 => Just(ExpiryChoice::Never),
        3 => (0u64..40).prop_map(ExpiryChoice::Ttl),
        1 => (0u64..300).prop_map(ExpiryChoice::At),
    ]
}

fn backup_choice() -> impl Strategy<Value = BackupChoice> {
    prop_oneof![
        2 => Just(BackupChoice::Default),
        1 => (0..NAMES.len()).prop_map(BackupChoice::Named),
        2 => Just(BackupChoice::Skip),
    ]
}

fn op() -> impl Strategy<Value = Op> {
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

struct Harness {
    dir: tempfile::TempDir,
    config: Config,
    clock: ManualClock,
    start: Timestamp,
    store: Option<Store>,
    model: Model,
    seen_lsns: Vec<Lsn>,
    /// Commits and branch creations the store accepted.
    accepted: usize,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let (mut config, clock) = engine_config(SyncMode::Never);
        config.layer_flush_bytes = 1024;
        config.compact_l0_layers = 2;
        config.image_after_deltas = 1;
        config.pitr_window = PITR_WINDOW;
        // GC runs only when the suite says, so the model knows when cutoffs move.
        config.gc_period = Duration::ZERO;
        let start = clock.now();
        let store = Store::create(dir.path(), config.clone()).unwrap();
        // Commits start 50 s after `start`, so requested times can fall before the history.
        clock.advance(Duration::from_secs(50));
        let root = store.branch_info("main").unwrap();
        let model = Model::new(TEST_PAGE_SIZE, "main", root.created_lsn, clock.now())
            .with_pitr_window(PITR_WINDOW);
        Harness {
            dir,
            config,
            clock,
            start,
            store: Some(store),
            model,
            seen_lsns: vec![root.created_lsn],
            accepted: 0,
        }
    }

    fn store(&self) -> &Store {
        self.store
            .as_ref()
            .expect("the store is open between steps")
    }

    fn time(&self, secs: u64) -> Timestamp {
        self.start.saturating_add(Duration::from_secs(secs))
    }

    fn name(&self, pick: &BranchPick) -> String {
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

    fn at(&self, choice: &AtChoice) -> At {
        match choice {
            AtChoice::Latest => At::Latest,
            AtChoice::Lsn { index, delta } => {
                let base = self.seen_lsns[index % self.seen_lsns.len()];
                At::Lsn(Lsn(base.0.saturating_add_signed(i64::from(*delta) * 8)))
            }
            AtChoice::Time(secs) => At::Time(self.time(*secs)),
        }
    }

    fn expiry(&self, choice: &ExpiryChoice) -> Expiry {
        match choice {
            ExpiryChoice::Never => Expiry::Never,
            ExpiryChoice::Ttl(secs) => Expiry::Ttl(Duration::from_secs(*secs)),
            ExpiryChoice::At(secs) => Expiry::At(self.time(*secs)),
        }
    }

    fn backup(&self, choice: &BackupChoice) -> Backup {
        match choice {
            BackupChoice::Default => Backup::Default,
            BackupChoice::Named(index) => Backup::Named(NAMES[*index].to_owned()),
            BackupChoice::Skip => Backup::Skip,
        }
    }

    /// Moves the model's clock to the store's and sweeps expired branches on both, so
    /// what is listed does not depend on when the background sweep runs.
    fn sync_clock(&mut self) -> Result<(), TestCaseError> {
        let swept = self.store().sweep_expired();
        prop_assert!(swept.is_ok(), "sweep failed: {:?}", swept);
        self.model.set_now(self.clock.now());
        Ok(())
    }

    fn updates(&self, branch: &str, choices: &[(u32, UpdateChoice)]) -> Vec<(Key, Update)> {
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

    fn reopen(&mut self) {
        self.count_housekeeping();
        drop(self.store.take());
        self.store = Some(Store::open_with(self.dir.path(), self.config.clone()).unwrap());
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
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
                    GC_VERSIONS_REMOVED
                        .fetch_add(report.versions_removed as usize, Ordering::Relaxed);
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
            Op::Reopen | Op::Crash => {
                // In this process a crash is the store dropped without shutdown: there is
                // no shutdown step at all, so the two differ only in intent; the SIGKILL
                // test covers a real process death.
                self.reopen();
            }
        }
        self.check_everything()
    }

    /// Every read of every key on every listed branch at every LSN seen (and a time a
    /// second after each start of a second): the page the model has, or the refusal it
    /// says (below the GC cutoff, past the head, ...).
    fn check_every_read(&self) -> Result<(), TestCaseError> {
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
    fn check_everything(&self) -> Result<(), TestCaseError> {
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
    fn count_housekeeping(&self) {
        let stats = self.store().stats();
        FLUSHES.fetch_add(stats.flushes as usize, Ordering::Relaxed);
        MERGES.fetch_add(stats.compactions as usize, Ordering::Relaxed);
        IMAGES.fetch_add(stats.images_written as usize, Ordering::Relaxed);
    }
}

/// Page versions GC removed, and reads refused below a cutoff, over all cases.
static GC_VERSIONS_REMOVED: AtomicUsize = AtomicUsize::new(0);
static BELOW_CUTOFF_REFUSALS: AtomicUsize = AtomicUsize::new(0);
/// Detaches the store accepted, over all cases.
static DETACHES: AtomicUsize = AtomicUsize::new(0);

/// Flushes, L0 merges and image layers over all cases.
static FLUSHES: AtomicUsize = AtomicUsize::new(0);
static MERGES: AtomicUsize = AtomicUsize::new(0);
static IMAGES: AtomicUsize = AtomicUsize::new(0);

/// Accepted and attempted commits and branch creations over all cases, so the suite can
/// check it is not testing refusals alone.
static ACCEPTED: AtomicUsize = AtomicUsize::new(0);
static ATTEMPTED: AtomicUsize = AtomicUsize::new(0);

fn cases() -> u32 {
    std::env::var("PAGEFORK_MODEL_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1000)
}

/// Runs the operations; returns how many commits and branch creations were accepted.
fn run(ops: &[Op]) -> Result<usize, TestCaseError> {
    let mut harness = Harness::new();
    for op in ops {
        harness.step(op)?;
    }
    harness.count_housekeeping();
    Ok(harness.accepted)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    // Not a #[test] itself: the test below runs it and then checks the accept rate.
    fn store_agrees_with_model(ops in prop::collection::vec(op(), 1..40)) {
        let accepted = run(&ops)?;
        let attempted = ops.iter().filter(|op| matches!(op, Op::Commit { .. } | Op::CreateBranch { .. } | Op::Reset { .. } | Op::Restore { .. })).count();
        ACCEPTED.fetch_add(accepted, Ordering::Relaxed);
        ATTEMPTED.fetch_add(attempted, Ordering::Relaxed);
    }
}

#[test]
fn model_harness_sees_refusals_and_successes() {
    // A fixed sequence touching every operation, so a harness bug cannot hide behind
    // randomness: it must run clean.
    let ops = vec![
        Op::Commit {
            branch: BranchPick::Pool(0),
            updates: vec![(0, UpdateChoice::Image(1))],
        },
        Op::Clock {
            forward_secs: 10,
            back: false,
        },
        Op::Commit {
            branch: BranchPick::Pool(0),
            updates: vec![(
                0,
                UpdateChoice::Patch {
                    offset: 3,
                    len: 2,
                    byte: 9,
                },
            )],
        },
        Op::CreateBranch {
            name: 1,
            parent: BranchPick::Pool(0),
            at: AtChoice::Time(55),
            expiry: ExpiryChoice::Never,
            protected: false,
        },
        Op::Commit {
            branch: BranchPick::Pool(1),
            updates: vec![(1, UpdateChoice::Drop), (0, UpdateChoice::Image(4))],
        },
        Op::Read {
            branch: BranchPick::Pool(1),
            key: 0,
            at: AtChoice::Lsn { index: 1, delta: 0 },
        },
        Op::LsnForTime {
            branch: BranchPick::Pool(1),
            secs: 3,
        },
        Op::Detach {
            branch: BranchPick::Pool(0),
        },
        Op::Detach {
            branch: BranchPick::Pool(1),
        },
        Op::Crash,
        Op::Checkpoint,
        Op::DeleteBranch {
            branch: BranchPick::Pool(0),
        },
        Op::DeleteBranch {
            branch: BranchPick::Pool(1),
        },
        Op::Reopen,
        Op::Commit {
            branch: BranchPick::Pool(5),
            updates: vec![],
        },
    ];
    let accepted = run(&ops).unwrap();
    assert_eq!(
        accepted, 4,
        "three commits and one branch creation are accepted"
    );
}

/// Found by the suite: restoring a branch away from an expired parent left the parent with
/// no live descendant; the store stopped listing it while the model kept it until the
/// next clock move (both now sweep after every delete, reset and restore).
#[test]
fn regression_restore_away_from_an_expired_parent_removes_the_parent() {
    let ops = vec![
        Op::CreateBranch {
            name: 2,
            parent: BranchPick::Live(0),
            at: AtChoice::Time(0),
            expiry: ExpiryChoice::Ttl(1),
            protected: false,
        },
        Op::Commit {
            branch: BranchPick::Live(4688286681963216158),
            updates: vec![(0, UpdateChoice::Image(0))],
        },
        Op::Commit {
            branch: BranchPick::Live(0),
            updates: vec![(0, UpdateChoice::Image(0))],
        },
        Op::Restore {
            branch: BranchPick::Live(522814619662281847),
            source: BranchPick::Live(5935864049978218943),
            at: AtChoice::Latest,
            backup: BackupChoice::Default,
        },
        Op::CreateBranch {
            name: 1,
            parent: BranchPick::Live(15045174937072875999),
            at: AtChoice::Latest,
            expiry: ExpiryChoice::Never,
            protected: false,
        },
        Op::Clock {
            forward_secs: 1,
            back: false,
        },
        Op::Restore {
            branch: BranchPick::Pool(1),
            source: BranchPick::Live(6408218030730803226),
            at: AtChoice::Latest,
            backup: BackupChoice::Skip,
        },
    ];
    run(&ops).unwrap();
}

#[test]
fn the_store_agrees_with_the_model_and_most_operations_are_accepted() {
    store_agrees_with_model();
    let (accepted, attempted) = (
        ACCEPTED.load(Ordering::Relaxed),
        ATTEMPTED.load(Ordering::Relaxed),
    );
    println!("{accepted} of {attempted} commits and branch creations accepted");
    assert!(
        accepted * 2 > attempted,
        "only {accepted} of {attempted} accepted: the generator tests refusals alone"
    );
    let (flushes, merges, images) = (
        FLUSHES.load(Ordering::Relaxed),
        MERGES.load(Ordering::Relaxed),
        IMAGES.load(Ordering::Relaxed),
    );
    let cases = cases() as usize;
    println!("{cases} cases: {flushes} flushes, {merges} L0 merges, {images} image layers");
    assert!(
        flushes >= cases && merges >= cases / 2 && images >= cases / 2,
        "housekeeping too rare to test: {flushes} flushes, {merges} merges, {images} images in {cases} cases"
    );
    let (removed, refused) = (
        GC_VERSIONS_REMOVED.load(Ordering::Relaxed),
        BELOW_CUTOFF_REFUSALS.load(Ordering::Relaxed),
    );
    println!("GC removed {removed} page versions; {refused} reads were refused below a cutoff");
    assert!(
        removed >= cases / 10 && refused >= cases / 10,
        "GC too idle to test: {removed} versions removed, {refused} reads below a cutoff in {cases} cases"
    );
    let detaches = DETACHES.load(Ordering::Relaxed);
    println!("{detaches} branches detached");
    assert!(
        detaches >= cases / 10,
        "detach too rare to test: {detaches} in {cases} cases"
    );
}

/// Found by the suite: GC of a hidden old state (cutoff at its head) kept only its child's
/// branch point and dropped the versions its head reads; here the child's own page
/// history must stay readable at every LSN.
#[test]
fn regression_gc_keeps_what_a_restored_branch_reads_through_its_hidden_old_state() {
    let patch = || UpdateChoice::Patch {
        offset: 0,
        len: 1,
        byte: 0,
    };
    run(&[
        Op::Commit {
            branch: BranchPick::Live(0),
            updates: vec![(0, patch())],
        },
        Op::Restore {
            branch: BranchPick::Live(0),
            source: BranchPick::Live(0),
            at: AtChoice::Latest,
            backup: BackupChoice::Skip,
        },
        Op::Commit {
            branch: BranchPick::Live(0),
            updates: vec![(0, patch())],
        },
        Op::Gc,
    ])
    .unwrap();
}

/// Found by the suite: GC forgets an expired lease; when the clock then steps back before
/// the lease's end, the model must not count it active again (the history may be gone).
#[test]
fn regression_gc_forgets_an_expired_lease_even_if_the_clock_steps_back() {
    run(&[
        Op::Lease {
            branch: BranchPick::Live(0),
            at: AtChoice::Latest,
            secs: 15,
        },
        Op::Commit {
            branch: BranchPick::Live(0),
            updates: vec![(0, UpdateChoice::Drop)],
        },
        Op::Clock {
            forward_secs: 15,
            back: false,
        },
        Op::Gc,
        Op::Clock {
            forward_secs: 0,
            back: true,
        },
        Op::Gc,
    ])
    .unwrap();
}

/// Found by the suite: a reset to a hidden parent starts at the parent's head, so GC of
/// an unreadable branch must keep its head's state, not only its children's branch points.
#[test]
fn regression_gc_keeps_the_head_of_a_hidden_parent_for_a_reset() {
    run(&[
        Op::Commit {
            branch: BranchPick::Live(0),
            updates: vec![(0, UpdateChoice::Image(0))],
        },
        Op::Commit {
            branch: BranchPick::Live(0),
            updates: vec![(
                0,
                UpdateChoice::Patch {
                    offset: 0,
                    len: 1,
                    byte: 0,
                },
            )],
        },
        Op::Restore {
            branch: BranchPick::Live(0),
            source: BranchPick::Live(0),
            at: AtChoice::Lsn { index: 1, delta: 0 },
            backup: BackupChoice::Skip,
        },
        Op::Gc,
        Op::Reset {
            branch: BranchPick::Live(0),
        },
    ])
    .unwrap();
}
