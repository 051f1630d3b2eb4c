//! Lifecycle crash test: a child process commits, creates branches and resets, restores,
//! detaches and deletes them, and runs GC (explicitly, and in the background with a
//! 200 ms PITR window, so history is collected all the time), printing each
//! acknowledgement; we SIGKILL it at a random moment and reopen. Kills land in the middle
//! of GC rewrites, resets, restores and detaches (and of flushes and merges: the
//! thresholds are tiny).
//!
//! After every reopen: every acknowledged commit on `main` reads whole at its LSN, or is
//! refused below `main`'s GC cutoff (and only then); every branch whose round finished
//! shows exactly what was acknowledged last (its branch point, its own commit, the state a
//! reset or restore gave it, detached, or deleted); a branch whose round was cut short
//! shows one whole commit, and whatever recovery shows is what later reopens show; every
//! listed branch reads whole. Over the run GC must have removed versions and every kind of
//! operation must have been acknowledged.
//!
//! `PAGEFORK_CRASH_SEED` replays a run; `PAGEFORK_CRASH_KILLS` sets the kills (default 20).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use pagefork_engine::model::Refusal;
use pagefork_engine::{At, Backend, Key, Lsn, Store};
use pagefork_tests::{
    LIFECYCLE_CRASH_PAGES, TestRng, backends, crash_kills, lifecycle_crash_config,
    run_then_sigkill, seed_from_env, seq_of_payload,
};

/// What the acknowledgements say of one branch `w-ROUND`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Expected {
    round: u64,
    /// The commit it shows at its head.
    shows: u64,
    detached: bool,
    deleted: bool,
    /// The round that may still change it (its own, or the one deleting it) while that
    /// round has not finished; `None`: the above is exact.
    open_round: Option<u64>,
}

/// The commit `branch` shows at `at`, checking that all pages agree; `None` if it has no
/// pages.
fn whole_commit(store: &Store, branch: &str, at: At) -> Option<u64> {
    let seqs: Vec<Option<u64>> = (0..LIFECYCLE_CRASH_PAGES)
        .map(|block| {
            store
                .get_page(branch, Key::new(1, block), at)
                .unwrap_or_else(|error| panic!("{branch} at {at:?}: {error}"))
                .map(|page| seq_of_payload(&page).expect("an intact test page"))
        })
        .collect();
    assert!(
        seqs.windows(2).all(|pair| pair[0] == pair[1]),
        "{branch} at {at:?} shows a commit half: {seqs:?}"
    );
    seqs[0]
}

#[derive(Default)]
struct Acknowledged {
    commits: BTreeMap<u64, Lsn>,
    branches: BTreeMap<String, Expected>,
    gc_removed: u64,
    /// Acknowledged operations by kind.
    operations: BTreeMap<&'static str, u64>,
}

impl Acknowledged {
    fn take(&mut self, line: &str) {
        let words: Vec<&str> = line.split(' ').collect();
        let mut count = |kind| *self.operations.entry(kind).or_default() += 1;
        match words.as_slice() {
            ["commit", seq, lsn] => {
                let seq: u64 = seq.parse().unwrap();
                self.commits.insert(seq, lsn.parse().unwrap());
                // The round before this commit finished, with any delete it made.
                for expected in self.branches.values_mut() {
                    if expected.open_round.is_some_and(|round| round < seq) {
                        expected.open_round = None;
                    }
                }
            }
            ["branch", name, seq] => {
                count("branch");
                let round: u64 = seq.parse().unwrap();
                let expected = Expected {
                    round,
                    shows: round,
                    detached: false,
                    deleted: false,
                    open_round: Some(round),
                };
                self.branches.insert((*name).to_owned(), expected);
                // This round may delete the branch of 6 rounds ago.
                if let Some(old) = round
                    .checked_sub(24)
                    .and_then(|old| self.branches.get_mut(&format!("w-{old}")))
                {
                    old.open_round = Some(round);
                }
            }
            ["own" | "reset" | "restore", name, seq] => {
                count(match words[0] {
                    "own" => "own",
                    "reset" => "reset",
                    _ => "restore",
                });
                self.branch(name).shows = seq.parse().unwrap();
            }
            ["detached", name] => {
                count("detach");
                self.branch(name).detached = true;
            }
            ["deleted", name] => {
                count("delete");
                // Its creation may have been durable but cut short before it was
                // acknowledged.
                let round = name.trim_start_matches("w-").parse().unwrap();
                let expected = self.branches.entry((*name).to_owned()).or_insert(Expected {
                    round,
                    shows: round,
                    detached: false,
                    deleted: false,
                    open_round: None,
                });
                expected.deleted = true;
            }
            ["gc", removed] => {
                count("gc");
                self.gc_removed += removed.parse::<u64>().unwrap();
            }
            _ => panic!("unexpected line {line:?}"),
        }
    }

    fn branch(&mut self, name: &str) -> &mut Expected {
        self.branches
            .get_mut(name)
            .unwrap_or_else(|| panic!("{name} acknowledged before its creation"))
    }
}

fn check(store: &Store, acked: &mut Acknowledged, context: &str) {
    let main = store.branch_info("main").unwrap();
    for (seq, lsn) in &acked.commits {
        match store.get_page("main", Key::new(1, 0), At::Lsn(*lsn)) {
            Ok(_) => assert_eq!(
                whole_commit(store, "main", At::Lsn(*lsn)),
                Some(*seq),
                "{context}: acknowledged commit {seq} at {lsn}"
            ),
            Err(error) => {
                assert_eq!(Refusal::of(&error), Some(Refusal::BelowGcCutoff), "{error}");
                assert!(*lsn < main.gc_cutoff, "{context}: {error}");
            }
        }
    }
    if let Some((last, _)) = acked.commits.last_key_value() {
        let head = whole_commit(store, "main", At::Latest);
        assert!(
            head >= Some(*last),
            "{context}: the head is behind commit {last}"
        );
    }
    for (name, expected) in &mut acked.branches {
        let info = store.branch_info(name);
        if expected.open_round.is_none() {
            if expected.deleted {
                assert!(info.is_err(), "{context}: deleted {name} is back");
                continue;
            }
            let info = info.unwrap_or_else(|error| panic!("{context}: {name} lost: {error}"));
            assert_eq!(
                whole_commit(store, name, At::Latest),
                Some(expected.shows),
                "{context}: {name} ({expected:?})"
            );
            if expected.detached {
                assert_eq!(info.parent, None, "{context}: {name} is attached again");
            }
        } else {
            // Cut short: whatever recovery shows, later reopens must show too.
            match info {
                Err(_) => expected.deleted = true,
                Ok(info) => {
                    expected.shows = whole_commit(store, name, At::Latest)
                        .unwrap_or_else(|| panic!("{context}: {name} shows no pages"));
                    expected.detached = info.parent.is_none();
                }
            }
            expected.open_round = None;
        }
    }
    for info in store.list_branches() {
        whole_commit(store, &info.name, At::Latest);
    }
}

#[test]
fn gc_resets_restores_and_detaches_survive_sigkill() {
    for backend in backends() {
        sigkill_runs(backend);
    }
}

/// The kills, on a store with `backend`.
fn sigkill_runs(backend: Backend) {
    let seed = seed_from_env("PAGEFORK_CRASH_SEED");
    let kills = crash_kills(20);
    println!(
        "lifecycle crash test ({backend}) seed {seed} ({kills} kills): rerun with PAGEFORK_CRASH_SEED={seed}"
    );
    let mut rng = TestRng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acked = Acknowledged::default();
    for kill in 0..kills {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lifecycle-crash-child"));
        command
            .arg(dir.path())
            .arg(rng.next_u64().to_string())
            .arg(backend.name());
        let lines = run_then_sigkill(command, Duration::from_millis(rng.in_range(20..400)));
        for line in &lines {
            acked.take(line);
        }
        let context = format!("kill {kill} (seed {seed})");
        let store = Store::open_with(dir.path(), lifecycle_crash_config(backend))
            .unwrap_or_else(|error| panic!("{context}: reopen failed: {error}"));
        check(&store, &mut acked, &context);
    }
    println!(
        "{backend}: {kills} kills: {} commits, operations {:?}, GC removed {} versions; nothing lost",
        acked.commits.len(),
        acked.operations,
        acked.gc_removed
    );
    for kind in ["reset", "restore", "detach", "delete", "gc"] {
        assert!(
            acked.operations.get(kind).is_some_and(|count| *count > 0),
            "no {kind} was acknowledged: {:?}",
            acked.operations
        );
    }
    assert!(acked.gc_removed > 0, "GC removed nothing");
}
