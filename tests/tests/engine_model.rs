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
//! Flush and compaction thresholds are tiny (a layer file every few versions, a merge
//! every two L0 files, an image over every merge's output), so the background
//! housekeeper runs all through every case; the suite checks that flushes, merges and
//! images happened. WAL segments are 4 KiB and bursts of commits write several, so
//! catalogs remove WAL in most cases; quiet branches (one commit, then left alone) are
//! created mostly at the oldest points still readable, below the oldest WAL kept, while
//! housekeep steps (the background cycle, run at a chosen point) and the background thread
//! publish catalogs around them, and crashes follow such publishes (issue 18: a catalog
//! that did not open again). The suite checks that those states were reached, and fails
//! on any error that is not the refusal the model expects, and on any background
//! housekeeping failure.
//!
//! Cases: 1,000 by default; `PAGEFORK_MODEL_CASES=N` runs N.

mod model;

use std::sync::atomic::{AtomicUsize, Ordering};

use model::*;
use pagefork_tests::backends;
use proptest::prelude::*;

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

/// Runs the operations against a store with each backend this build has (one body for
/// both: `--features rocksdb` adds RocksDB); returns how many commits and branch
/// creations were accepted, which must be the same for every backend.
fn run(ops: &[Op]) -> Result<usize, TestCaseError> {
    let mut accepted: Option<usize> = None;
    for backend in backends() {
        let mut harness = Harness::new(backend);
        for op in ops {
            harness
                .step(op)
                .map_err(|error| TestCaseError::fail(format!("{backend} backend: {error}")))?;
        }
        harness.count_housekeeping();
        if let Some(other) = accepted {
            prop_assert_eq!(
                other,
                harness.accepted,
                "the backends accepted different operations"
            );
        }
        accepted = Some(harness.accepted);
    }
    Ok(accepted.unwrap_or_default())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    // Not a #[test] itself: the test below runs it and then checks the accept rate.
    fn store_agrees_with_model(ops in prop::collection::vec(op(), 1..40)) {
        let accepted = run(&ops)?;
        let attempted: usize = ops
            .iter()
            .map(|op| match op {
                Op::Commit { .. } | Op::CreateBranch { .. } | Op::Reset { .. } | Op::Restore { .. } => 1,
                Op::QuietBranch { .. } => 2,
                Op::Burst { commits, .. } => usize::from(*commits),
                _ => 0,
            })
            .sum();
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
    let (flushes, merges, images, moves) = (
        FLUSHES.load(Ordering::Relaxed),
        MERGES.load(Ordering::Relaxed),
        IMAGES.load(Ordering::Relaxed),
        MOVES.load(Ordering::Relaxed),
    );
    let cases = cases() as usize;
    println!(
        "{cases} cases: {flushes} flushes, {merges} L0 merges ({moves} files moved), {images} image layers"
    );
    assert!(
        flushes >= cases && merges >= cases / 2 && images >= cases / 2 && moves >= cases / 4,
        "housekeeping too rare to test: {flushes} flushes, {merges} merges, {moves} moves, {images} images in {cases} cases"
    );
    if backends().contains(&pagefork_engine::Backend::RocksDb) {
        let rocksdb_flushes = ROCKSDB_FLUSHES.load(Ordering::Relaxed);
        println!("{cases} cases on RocksDB: {rocksdb_flushes} flushes");
        assert!(
            rocksdb_flushes >= cases,
            "RocksDB flushes too rare: {rocksdb_flushes}"
        );
    }
    let (removed, refused) = (
        GC_VERSIONS_REMOVED.load(Ordering::Relaxed),
        BELOW_CUTOFF_REFUSALS.load(Ordering::Relaxed),
    );
    println!("GC removed {removed} page versions; {refused} reads were refused below a cutoff");
    assert!(
        removed >= cases / 10 && refused >= cases / 10,
        "GC too idle to test: {removed} versions removed, {refused} reads below a cutoff in {cases} cases"
    );
    if backends().contains(&pagefork_engine::Backend::RocksDb) {
        let removed = ROCKSDB_GC_VERSIONS_REMOVED.load(Ordering::Relaxed);
        println!("GC removed {removed} page versions from RocksDB");
        assert!(
            removed >= cases / 10,
            "RocksDB GC too idle to test: {removed}"
        );
    }
    check_coverage([50, 25, 30, 4, 1]);
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

/// A lease of `secs` on `main`'s head.
fn lease_on_main(secs: u64) -> Op {
    Op::Lease {
        branch: BranchPick::Live(0),
        at: AtChoice::Latest,
        secs,
    }
}

/// The clock `secs` forward.
fn clock_forward(secs: u64) -> Op {
    Op::Clock {
        forward_secs: secs,
        back: false,
    }
}

/// The clock 5 s back.
fn clock_back() -> Op {
    Op::Clock {
        forward_secs: 0,
        back: true,
    }
}

/// Found by the suite: GC forgets an expired lease; when the clock then steps back before
/// the lease's end, the model must not count it active again (the history may be gone).
#[test]
fn regression_gc_forgets_an_expired_lease_even_if_the_clock_steps_back() {
    run(&[
        lease_on_main(15),
        Op::Commit {
            branch: BranchPick::Live(0),
            updates: vec![(0, UpdateChoice::Drop)],
        },
        clock_forward(15),
        Op::Gc,
        clock_back(),
        Op::Gc,
    ])
    .unwrap();
}

/// What GC forgot stays forgotten: an expired lease is gone after a crash or a reopen
/// that follows the GC, even when the clock then steps back before the lease's end (GC's
/// catalog publish carries the forgetting; replaying the lease's WAL record must not
/// bring it back).
#[test]
fn gc_forgets_an_expired_lease_for_good_across_a_crash_or_reopen() {
    for crash in [Op::Crash, Op::Reopen] {
        for compact in [false, true] {
            let mut ops = vec![
                lease_on_main(15),
                Op::Commit {
                    branch: BranchPick::Live(0),
                    updates: vec![(0, UpdateChoice::Image(1))],
                },
            ];
            if compact {
                ops.push(Op::Compact);
            }
            ops.extend([
                Op::Commit {
                    branch: BranchPick::Live(0),
                    updates: vec![(0, UpdateChoice::Image(2))],
                },
                clock_forward(15),
                Op::Gc,
                crash.clone(),
                clock_back(),
                Op::Gc,
            ]);
            run(&ops).unwrap();
        }
    }
}

/// Found by the suite (CI, 2026-12-05): housekeeping that wrote images computed the retain
/// points and, doing so, forgot an expired lease; the clock then stepped back before the
/// lease's end, and GC took what the model still counted as leased. Only GC forgets an
/// expired lease.
#[test]
fn regression_only_gc_forgets_an_expired_lease_not_housekeeping() {
    run(&[
        Op::Lease {
            branch: BranchPick::Live(0),
            at: AtChoice::Time(0),
            secs: 11,
        },
        Op::Commit {
            branch: BranchPick::Live(0),
            updates: vec![(0, UpdateChoice::Image(0))],
        },
        clock_forward(15),
        Op::Commit {
            branch: BranchPick::Live(0),
            updates: vec![(0, UpdateChoice::Image(1))],
        },
        Op::Compact,
        Op::Commit {
            branch: BranchPick::Live(0),
            updates: vec![(0, UpdateChoice::Image(2))],
        },
        Op::Compact,
        clock_back(),
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

/// Found by the suite once its keys spanned two relations (with GC planted back to take
/// only the deltas starting at or below its cutoff): a GC whose rewrite spans a
/// compaction's generation must also take the files compaction moved into it, or its
/// output overlaps them in keys and LSNs.
#[test]
fn regression_gc_takes_the_moved_files_its_rewrite_spans() {
    run(&[
        Op::Burst {
            branch: BranchPick::Live(3574272569469860512),
            commits: 6,
            pages: 3,
            byte: 89,
            then: AfterBurst::Nothing,
        },
        Op::Read {
            branch: BranchPick::Live(3151540423340388701),
            key: 0,
            at: AtChoice::Lsn {
                index: 10515768755639347162,
                delta: -1,
            },
        },
        Op::Diff {
            from: BranchPick::Live(16283305812558795565),
            from_at: AtChoice::Time(52),
            to: BranchPick::Live(13226898819047470443),
            to_at: AtChoice::Lsn {
                index: 15394196789328672597,
                delta: 0,
            },
        },
        Op::QuietBranch {
            name: 0,
            parent: BranchPick::Live(2062461581074494258),
            at: AtChoice::Time(18),
            update: (0, UpdateChoice::Drop),
        },
        Op::Rename {
            branch: BranchPick::Live(13964218204262141616),
            name: 5,
        },
        Op::QuietBranch {
            name: 4,
            parent: BranchPick::Live(13200677921016689126),
            at: AtChoice::Oldest(0),
            update: (
                1,
                UpdateChoice::Patch {
                    offset: 470,
                    len: 5,
                    byte: 177,
                },
            ),
        },
        Op::Clock {
            forward_secs: 13,
            back: false,
        },
        Op::Crash,
        Op::Commit {
            branch: BranchPick::Pool(4),
            updates: vec![
                (0, UpdateChoice::Image(109)),
                (
                    3,
                    UpdateChoice::Patch {
                        offset: 374,
                        len: 4,
                        byte: 54,
                    },
                ),
            ],
        },
        Op::Burst {
            branch: BranchPick::Live(15768797306336556540),
            commits: 5,
            pages: 2,
            byte: 96,
            then: AfterBurst::Housekeep,
        },
        Op::Housekeep,
        Op::LsnForTime {
            branch: BranchPick::Live(5521705501620659254),
            secs: 42,
        },
        Op::Protect {
            branch: BranchPick::Live(15227941373500907712),
            protected: false,
        },
        Op::Reopen,
        Op::Burst {
            branch: BranchPick::Live(13612848103723845751),
            commits: 3,
            pages: 3,
            byte: 221,
            then: AfterBurst::Housekeep,
        },
        Op::QuietBranch {
            name: 0,
            parent: BranchPick::Live(11188606173532801528),
            at: AtChoice::Oldest(0),
            update: (1, UpdateChoice::Image(103)),
        },
        Op::Gc,
        Op::LsnForTime {
            branch: BranchPick::Pool(3),
            secs: 146,
        },
        Op::Commit {
            branch: BranchPick::Live(17275537854827392504),
            updates: vec![
                (
                    0,
                    UpdateChoice::Patch {
                        offset: 146,
                        len: 2,
                        byte: 24,
                    },
                ),
                (1, UpdateChoice::Image(45)),
                (3, UpdateChoice::Image(247)),
            ],
        },
        Op::Housekeep,
        Op::SetPitrWindow {
            branch: BranchPick::Live(11995318276272211940),
            secs: None,
        },
    ])
    .unwrap();
}

/// Issue 18's first cause, as the suite found it once it wrote enough WAL to remove some:
/// a branch created at a point below the oldest WAL kept, with one commit left unflushed
/// while `main`'s flush publishes a catalog. That catalog must still open (a new
/// branch's `flushed` starts at its creation record, not its branch point).
#[test]
fn regression_issue_18_a_quiet_branch_below_the_oldest_wal_survives_a_background_publish() {
    run(&issue_18_quiet_branch_below_the_wal()).unwrap();
}

/// Issue 18's second cause: an idle branch whose last commit lies below the oldest WAL
/// kept goes through a housekeeping cycle with nothing due (which must not lower its
/// `flushed` to its head), then gets one commit that stays unflushed while `main`'s flush
/// publishes a catalog; the store must open what was published.
#[test]
fn regression_issue_18_an_idle_branch_written_again_survives_a_background_publish() {
    run(&issue_18_idle_branch_written_again()).unwrap();
}
