//! GC's promise checked on its own, without the reference model: whatever a store did
//! (commits, branches at a time, restores in place with and without a backup, detaches,
//! deletes, PITR windows set per branch, reopens), a GC changes no read of any branch at
//! any time inside that branch's PITR window, nor at the LSN of a lease that has not
//! ended. Before each GC the test reads every page of every branch at every time the store
//! has seen inside the window (and at the window's start itself) and at every leased LSN,
//! and after it reads them again: the same pages, or the same refusal.
//!
//! The model suite compares the store with a model that has the same retention rules, so
//! a rule wrong in both passes it (a review found GC taking a restored branch's window
//! through its hidden old state, in both); this suite states the rule as users read it.

// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::time::Duration;

use pagefork_engine::model::Refusal;
use pagefork_engine::{
    At, Backup, BranchId, BranchInfo, BranchOptions, Clock, Config, Key, Lsn, ManualClock,
    ParentRef, Store, SyncMode, Timestamp, Update,
};
use pagefork_tests::{engine_config, page_of};
use proptest::prelude::*;

/// The store's default window; branches may set their own (`Op::Window`).
const WINDOW: Duration = Duration::from_secs(60);
const KEYS: u32 = 6;
const NAMES: [&str; 4] = ["main", "a", "b", "c"];

#[derive(Clone, Debug)]
enum Op {
    /// Writes `byte` to the keys whose bits are set in `keys`.
    Commit {
        branch: usize,
        keys: u8,
        byte: u8,
    },
    Advance {
        secs: u64,
    },
    /// A branch of `parent` as it was `back` seconds ago (latest if 0).
    Create {
        name: usize,
        parent: usize,
        back: u64,
    },
    /// `branch` restored in place to itself `back` seconds ago.
    Restore {
        branch: usize,
        back: u64,
        backup: bool,
    },
    Delete {
        branch: usize,
    },
    Detach {
        branch: usize,
    },
    /// `branch`'s own window, in seconds (the store's default if 0).
    Window {
        branch: usize,
        secs: u64,
    },
    /// A lease of `secs` seconds on `branch` as it was `back` seconds ago.
    Lease {
        branch: usize,
        back: u64,
        secs: u64,
    },
    Reopen,
    Gc,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..NAMES.len(), 1..64u8, any::<u8>())
            .prop_map(|(branch, keys, byte)| Op::Commit { branch, keys, byte }),
        4 => (1..30u64).prop_map(|secs| Op::Advance { secs }),
        2 => (1..NAMES.len(), 0..NAMES.len(), prop_oneof![Just(0u64), 1..120u64])
            .prop_map(|(name, parent, back)| Op::Create { name, parent, back }),
        2 => (0..NAMES.len(), 1..120u64, any::<bool>())
            .prop_map(|(branch, back, backup)| Op::Restore { branch, back, backup }),
        1 => (0..NAMES.len()).prop_map(|branch| Op::Delete { branch }),
        1 => (0..NAMES.len()).prop_map(|branch| Op::Detach { branch }),
        1 => (0..NAMES.len(), prop_oneof![Just(0u64), 5..90u64])
            .prop_map(|(branch, secs)| Op::Window { branch, secs }),
        2 => (0..NAMES.len(), 1..200u64, 30..300u64)
            .prop_map(|(branch, back, secs)| Op::Lease { branch, back, secs }),
        1 => Just(Op::Reopen),
        3 => Just(Op::Gc),
    ]
}

/// What a read answered: the first byte of each key's page, or the refusal.
type Seen = Result<Vec<Option<u8>>, Refusal>;

struct Run {
    dir: tempfile::TempDir,
    config: Config,
    clock: ManualClock,
    store: Option<Store>,
    /// Every time the store answered an operation at (commits, branch operations).
    times: Vec<Timestamp>,
    /// Every branch's parent as last listed.
    parents: BTreeMap<BranchId, Option<ParentRef>>,
    /// The leases taken: the branch's id (a restore moves its name to another branch,
    /// and the lease stays with the old one, under its backup name), LSN and end.
    leases: Vec<(BranchId, Lsn, Timestamp)>,
}

impl Run {
    fn new() -> Run {
        let dir = tempfile::tempdir().unwrap();
        let (mut config, clock) = engine_config(SyncMode::Never);
        config.pitr_window = WINDOW;
        config.gc_period = Duration::ZERO;
        let store = Store::create(dir.path(), config.clone()).unwrap();
        Run {
            dir,
            config,
            clock,
            store: Some(store),
            times: Vec::new(),
            leases: Vec::new(),
            parents: BTreeMap::new(),
        }
    }

    fn store(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    fn ago(&self, back: u64) -> At {
        match back {
            0 => At::Latest,
            back => At::Time(self.clock.now().saturating_sub(Duration::from_secs(back))),
        }
    }

    fn apply(&mut self, op: &Op) {
        let now = self.clock.now();
        // Refusals are fine: the property is about what GC keeps of what was accepted.
        let accepted = match op {
            Op::Commit { branch, keys, byte } => {
                let updates: Vec<(Key, Update)> = (0..KEYS)
                    .filter(|key| keys & (1 << key) != 0)
                    .map(|key| (Key::new(1, key), Update::Image(page_of(*byte))))
                    .collect();
                self.store().commit(NAMES[*branch], updates).is_ok()
            }
            Op::Advance { secs } => {
                self.clock.advance(Duration::from_secs(*secs));
                false
            }
            Op::Create { name, parent, back } => self
                .store()
                .create_branch(
                    NAMES[*name],
                    NAMES[*parent],
                    self.ago(*back),
                    BranchOptions::default(),
                )
                .is_ok(),
            Op::Restore {
                branch,
                back,
                backup,
            } => {
                let backup = match backup {
                    true => Backup::Default,
                    false => Backup::Skip,
                };
                let name = NAMES[*branch];
                self.store()
                    .restore_branch(name, name, self.ago(*back), backup)
                    .is_ok()
            }
            Op::Delete { branch } => self.store().delete_branch(NAMES[*branch]).is_ok(),
            Op::Detach { branch } => self.store().detach_branch(NAMES[*branch]).is_ok(),
            Op::Window { branch, secs } => {
                let window = (*secs > 0).then(|| Duration::from_secs(*secs));
                self.store().set_pitr_window(NAMES[*branch], window).is_ok()
            }
            Op::Lease { branch, back, secs } => {
                let name = NAMES[*branch];
                let time = now.saturating_sub(Duration::from_secs(*back));
                let leased = self.store().lsn_for_time(name, time).and_then(|answer| {
                    self.store()
                        .lease(name, answer.lsn, Duration::from_secs(*secs))
                });
                if let Ok(lease) = &leased {
                    let id = self.store().branch_info(name).unwrap().id;
                    self.leases.push((id, lease.lsn, lease.expires_at));
                }
                leased.is_ok()
            }
            Op::Reopen => {
                drop(self.store.take());
                let store = Store::open_with(self.dir.path(), self.config.clone()).unwrap();
                self.store = Some(store);
                false
            }
            Op::Gc => {
                let before = self.reads_in_windows();
                self.store().gc().unwrap();
                let after = self.reads_in_windows();
                for (place, seen) in &before {
                    assert_eq!(
                        after.get(place),
                        Some(seen),
                        "GC changed a read inside the window: {place:?}"
                    );
                }
                false
            }
        };
        if accepted {
            self.times.push(now);
        }
        for branch in self.store().list_branches() {
            self.parents.insert(branch.id, branch.parent);
        }
    }

    /// Every branch's pages at every time the store has seen within its window, at the
    /// window's start, and at every LSN leased on it until later than now.
    fn reads_in_windows(&self) -> BTreeMap<(String, String), Seen> {
        let store = self.store();
        let now = self.clock.now();
        let branches = store.list_branches();
        let mut reads = BTreeMap::new();
        for branch in &branches {
            let start = window_start(branch, now);
            let times = self.times.iter().copied().filter(|time| *time >= start);
            let promised = times
                .chain([start])
                .filter(|time| promised(store, (&branches, &self.parents), branch, *time, now))
                .map(At::Time);
            let leased = self
                .leases
                .iter()
                .filter(|(id, _, until)| *id == branch.id && *until > now)
                .map(|(_, lsn, _)| At::Lsn(*lsn));
            for at in promised.chain(leased) {
                let seen = (0..KEYS)
                    .map(|key| {
                        let page = store.get_page(&branch.name, Key::new(1, key), at);
                        page.map(|page| page.map(|page| page[0]))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|error| {
                        Refusal::of(&error).unwrap_or_else(|| panic!("{error} is not a refusal"))
                    });
                reads.insert((branch.name.clone(), format!("{at:?}")), seen);
            }
        }
        reads
    }
}

/// Where `branch`'s window starts at `now`.
fn window_start(branch: &BranchInfo, now: Timestamp) -> Timestamp {
    now.saturating_sub(branch.pitr_window.unwrap_or(WINDOW))
}

/// Whether GC promises `branch`'s state at `time` (inside its window): its own history
/// is its own window's; below its branch point a read sees its parent's history, which a
/// visible parent keeps for its own window (engine.md: the effective cutoff), and a
/// hidden old state for its children's. `parents`: every branch's parent as last listed
/// (a hidden one is listed no more).
fn promised(
    store: &Store,
    (branches, parents): (&[BranchInfo], &BTreeMap<BranchId, Option<ParentRef>>),
    branch: &BranchInfo,
    time: Timestamp,
    now: Timestamp,
) -> bool {
    let Ok(answer) = store.lsn_for_time(&branch.name, time) else {
        return true;
    };
    let mut parent = branch.parent.clone();
    while let Some(above) = parent {
        if answer.lsn >= above.lsn {
            return true;
        }
        match branches.iter().find(|listed| listed.id == above.id) {
            Some(visible) if time < window_start(visible, now) => return false,
            Some(visible) => parent = visible.parent.clone(),
            None => parent = parents.get(&above.id).cloned().flatten(),
        }
    }
    true
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn gc_changes_no_read_inside_a_branchs_window(ops in proptest::collection::vec(op(), 1..60)) {
        let mut run = Run::new();
        for op in &ops {
            run.apply(op);
        }
        run.apply(&Op::Gc);
    }
}
