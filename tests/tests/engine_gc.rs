//! Retention and GC on real stores: the PITR window and cutoffs, refusals below a cutoff
//! (reads, times, branch points) naming the cutoff, leases, the parent that keeps only
//! what a long-lived child needs (the bloat case Neon documents, measured in layer bytes),
//! in-memory GC, and cutoffs, windows and leases surviving reopen.

use std::time::Duration;

use pagefork_engine::model::Refusal;
use pagefork_engine::{
    At, Backup, BranchOptions, Config, EngineError, Expiry, Key, Lsn, ManualClock, RetainReason,
    Store, SyncMode, Update,
};
use pagefork_tests::{engine_config, page_of};

const PAGES: u32 = 64;
const WINDOW: Duration = Duration::from_secs(60);

fn config() -> (Config, ManualClock) {
    let (mut config, clock) = engine_config(SyncMode::Never);
    config.pitr_window = WINDOW;
    config.gc_period = Duration::ZERO;
    (config, clock)
}

/// Rewrites every page of the base with `byte`, one commit per 8 pages.
fn rewrite_all(store: &Store, branch: &str, byte: u8) -> Lsn {
    let mut last = Lsn(0);
    for first in (0..PAGES).step_by(8) {
        let updates = (first..first + 8)
            .map(|block| (Key::new(1, block), Update::Image(page_of(byte))))
            .collect();
        last = store.commit(branch, updates).unwrap().lsn;
    }
    last
}

fn byte_at(store: &Store, branch: &str, block: u32, at: At) -> Option<u8> {
    store
        .get_page(branch, Key::new(1, block), at)
        .unwrap()
        .map(|page| page[0])
}

fn layer_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir.join("layers"))
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum()
}

fn refusal<T: std::fmt::Debug>(result: Result<T, EngineError>) -> (Refusal, String) {
    let error = result.expect_err("the operation must be refused");
    let refusal = Refusal::of(&error).unwrap_or_else(|| panic!("{error} is not a refusal"));
    (refusal, error.to_string())
}

/// The bloat case: a parent rewritten many times before and after a long-lived child's
/// branch point keeps, below its cutoff, one version per page for the child and the
/// window's base, not its whole history.
#[test]
fn a_parent_keeps_only_the_childs_branch_point_below_its_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = config();
    let store = Store::create(dir.path(), config.clone()).unwrap();
    // A second between rounds, so each round has its own commit time.
    for round in 0..10 {
        rewrite_all(&store, "main", round);
        clock.advance(Duration::from_secs(1));
    }
    let point = store
        .create_branch("child", "main", At::Latest, BranchOptions::default())
        .unwrap()
        .parent
        .unwrap()
        .lsn;
    for round in 10..20 {
        rewrite_all(&store, "main", round);
        clock.advance(Duration::from_secs(1));
    }
    store.checkpoint().unwrap();
    let before = layer_bytes(dir.path());
    clock.advance(WINDOW * 2);
    let last = rewrite_all(&store, "main", 20);
    let report = store.gc().unwrap();
    let after = layer_bytes(dir.path());
    let base = u64::from(PAGES) * page_of(0).len() as u64;
    println!(
        "bloat case: {} rewrites of a {} KiB base; layers {} KiB before GC, {} KiB after ({:.1}x the base)",
        21,
        base / 1024,
        before / 1024,
        after / 1024,
        after as f64 / base as f64
    );
    // Kept: the child's branch point (10th version), the cutoff's base (20th), the
    // window's one rewrite and, if compaction wrote one, an image at the top: at most 4
    // bases, plus the per-version file overhead that is large beside 512-byte pages. The
    // 21 versions before GC were 20 bases or more.
    assert!(
        after * 4 < before,
        "{after} bytes after GC, {before} before"
    );
    assert!(
        after < base * 6,
        "{after} bytes after GC for a base of {base}"
    );
    let main = report.branches.iter().find(|gc| gc.name == "main").unwrap();
    assert!(main.versions_removed > 0 && report.bytes_removed > 0);
    assert!(main.retained.iter().any(|retained| retained.lsn == point
        && retained.reason
            == RetainReason::BranchPoint {
                child: "child".to_owned()
            }));
    // Everything the child and the window need still reads right, on disk and reopened.
    check_after_gc(&store, point, main.cutoff, last);
    drop(store);
    let store = Store::open_with(dir.path(), config).unwrap();
    check_after_gc(&store, point, main.cutoff, last);
}

fn check_after_gc(store: &Store, point: Lsn, cutoff: Lsn, last: Lsn) {
    for block in 0..PAGES {
        assert_eq!(byte_at(store, "child", block, At::Latest), Some(9));
        assert_eq!(byte_at(store, "main", block, At::Latest), Some(20));
        assert_eq!(byte_at(store, "main", block, At::Lsn(cutoff)), Some(19));
    }
    // Below the cutoff, main refuses: reads, branch points, times; the error names the
    // LSN (or time) and the cutoff.
    let (kind, message) = refusal(store.get_page("main", Key::new(1, 0), At::Lsn(point)));
    assert_eq!(kind, Refusal::BelowGcCutoff);
    assert!(message.contains(&point.to_string()) && message.contains(&cutoff.to_string()));
    let (kind, _) =
        refusal(store.create_branch("late", "main", At::Lsn(point), BranchOptions::default()));
    assert_eq!(kind, Refusal::BelowGcCutoff);
    let noted = store.branch_info("child").unwrap().created;
    let (kind, message) = refusal(store.lsn_for_time("main", noted));
    assert_eq!(kind, Refusal::BelowGcCutoff);
    assert!(message.contains(&noted.to_string()), "{message}");
    let (kind, _) =
        refusal(store.create_branch("late", "main", At::Time(noted), BranchOptions::default()));
    assert_eq!(kind, Refusal::BelowGcCutoff);
    assert_eq!(store.branch_info("main").unwrap().gc_cutoff, cutoff);
    assert!(cutoff < last);
    // Below the child's own start a branch point is main's state there, refused as a
    // read of the child there is: below the child's cutoff, its branch point, since main
    // kept nothing older. A lease there is refused as below the child's start: it keeps a
    // point of the branch's own history.
    let below = Lsn(point.0 / 2);
    let (kind, message) =
        refusal(store.create_branch("early", "child", At::Lsn(below), BranchOptions::default()));
    assert_eq!(kind, Refusal::BelowGcCutoff, "{message}");
    assert!(message.contains(&point.to_string()), "{message}");
    let (kind, read) = refusal(store.get_page("child", Key::new(1, 0), At::Lsn(below)));
    assert_eq!((kind, read), (Refusal::BelowGcCutoff, message));
    let (kind, _) = refusal(store.lease("child", below, Duration::from_secs(60)));
    assert_eq!(kind, Refusal::LsnBelowBranchStart);
}

/// A lease keeps a state past its window; a branch can be created there while it lasts,
/// and not after it ends and GC ran.
#[test]
fn a_lease_keeps_a_state_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = config();
    let store = Store::create(dir.path(), config).unwrap();
    let leased = rewrite_all(&store, "main", 1);
    let lease = store.lease("main", leased, WINDOW * 3).unwrap();
    assert_eq!(lease.lsn, leased);
    assert_eq!(store.leases(), vec![lease.clone()]);
    rewrite_all(&store, "main", 2);
    clock.advance(WINDOW * 2);
    rewrite_all(&store, "main", 3);
    let report = store.gc().unwrap();
    let main = report.branches.iter().find(|gc| gc.name == "main").unwrap();
    assert!(main.cutoff > leased);
    assert!(
        main.retained.iter().any(|retained| retained.lsn == leased
            && matches!(retained.reason, RetainReason::Lease { .. }))
    );
    assert_eq!(byte_at(&store, "main", 5, At::Lsn(leased)), Some(1));
    store
        .create_branch("kept", "main", At::Lsn(leased), BranchOptions::default())
        .unwrap();
    assert_eq!(byte_at(&store, "kept", 5, At::Latest), Some(1));
    // One LSN past the lease is below the cutoff and not leased.
    let (kind, _) = refusal(store.get_page("main", Key::new(1, 5), At::Lsn(Lsn(leased.0 + 1))));
    assert_eq!(kind, Refusal::BelowGcCutoff);
    let (kind, _) = refusal(store.lease("main", Lsn(leased.0 + 1), WINDOW));
    assert_eq!(kind, Refusal::BelowGcCutoff);
    let (kind, _) = refusal(store.lease("main", leased, Duration::ZERO));
    assert_eq!(kind, Refusal::EmptyLease);
    clock.advance(WINDOW * 2);
    store.gc().unwrap();
    assert!(store.leases().is_empty());
    let (kind, _) = refusal(store.create_branch(
        "too-late",
        "main",
        At::Lsn(leased),
        BranchOptions::default(),
    ));
    assert_eq!(kind, Refusal::BelowGcCutoff);
    // The branch made under the lease keeps its own branch point.
    assert_eq!(byte_at(&store, "kept", 5, At::Latest), Some(1));
}

/// A hidden old state (a restore without a backup) and an expired parent kept for its
/// child are read by nobody themselves, but their children read through them below their
/// branch points: GC keeps that history for the children's windows. Found by a review:
/// their cutoffs went to their heads, and the next GC took every state before the
/// restore point from `main`'s seven-day window ("outside the PITR window").
#[test]
fn regression_gc_keeps_what_children_read_through_a_hidden_or_expired_parent() {
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = config();
    let store = Store::create(dir.path(), config).unwrap();
    let first = rewrite_all(&store, "main", 1);
    clock.advance(Duration::from_secs(1));
    rewrite_all(&store, "main", 2);
    let restore_point = rewrite_all(&store, "main", 3);
    rewrite_all(&store, "main", 4);
    store
        .restore_branch("main", "main", At::Lsn(restore_point), Backup::Skip)
        .unwrap();
    // An expired parent with a child.
    let options = BranchOptions {
        expiry: Expiry::Ttl(WINDOW / 2),
        protected: false,
    };
    store
        .create_branch("dev", "main", At::Latest, options)
        .unwrap();
    let dev_first = rewrite_all(&store, "dev", 5);
    rewrite_all(&store, "dev", 6);
    store
        .create_branch("dev-child", "dev", At::Latest, BranchOptions::default())
        .unwrap();
    clock.advance(WINDOW * 3 / 4);
    for _ in 0..2 {
        let report = store.gc().unwrap();
        assert!(
            report
                .branches
                .iter()
                .any(|gc| gc.name == "main" && gc.cutoff < first),
            "{report:?}"
        );
        // Inside every window: the states before the restore point and before dev's
        // expiry read as they were.
        assert_eq!(byte_at(&store, "main", 5, At::Lsn(first)), Some(1));
        assert_eq!(byte_at(&store, "dev-child", 5, At::Lsn(dev_first)), Some(5));
        assert_eq!(byte_at(&store, "dev-child", 5, At::Lsn(first)), Some(1));
    }
    // Past the windows, the history goes as for any branch.
    clock.advance(WINDOW * 2);
    rewrite_all(&store, "main", 7);
    store.gc().unwrap();
    let (kind, _) = refusal(store.get_page("main", Key::new(1, 5), At::Lsn(first)));
    assert_eq!(kind, Refusal::BelowGcCutoff);
}

/// A restore without a backup hides the old state, which nothing can branch from: its
/// leases go with it, also after a reopen replays the restore. Found by a review: the
/// lease vanished from `leases()` but kept its state from GC until it ended, and the GC
/// report named it after the new branch.
#[test]
fn regression_a_hidden_state_keeps_no_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = config();
    let store = Store::create(dir.path(), config.clone()).unwrap();
    let leased = rewrite_all(&store, "main", 1);
    let restore_point = rewrite_all(&store, "main", 2);
    store.lease("main", leased, WINDOW * 10).unwrap();
    store
        .restore_branch("main", "main", At::Lsn(restore_point), Backup::Skip)
        .unwrap();
    assert_eq!(store.leases(), Vec::new());
    clock.advance(WINDOW * 2);
    rewrite_all(&store, "main", 3);
    let leased_points = |report: &pagefork_engine::GcReport| {
        report
            .branches
            .iter()
            .flat_map(|gc| &gc.retained)
            .filter(|point| matches!(point.reason, RetainReason::Lease { .. }))
            .count()
    };
    assert_eq!(leased_points(&store.gc().unwrap()), 0);
    drop(store);
    let store = Store::open_with(dir.path(), config).unwrap();
    assert_eq!(store.leases(), Vec::new());
    assert_eq!(leased_points(&store.gc().unwrap()), 0);
}

/// A time before the history is an answer (`Past`) before and after GC alike; a review
/// found it refused as below the cutoff once GC had run.
#[test]
fn regression_a_time_before_the_history_is_past_after_gc() {
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = config();
    let store = Store::create(dir.path(), config).unwrap();
    rewrite_all(&store, "main", 1);
    let before_history = pagefork_engine::Timestamp(1);
    let past = store.lsn_for_time("main", before_history).unwrap();
    assert_eq!(past.kind, pagefork_engine::TimeKind::Past);
    clock.advance(WINDOW * 2);
    rewrite_all(&store, "main", 2);
    store.gc().unwrap();
    assert_eq!(store.lsn_for_time("main", before_history).unwrap(), past);
    // A read there is refused as before the history, as it was.
    let (kind, _) = refusal(store.get_page("main", Key::new(1, 0), At::Time(before_history)));
    assert_eq!(kind, Refusal::TimeBeforeHistory);
}

/// A branch's own window overrides the store's; cutoffs never move back, and they,
/// the windows and the leases survive reopen.
#[test]
fn windows_cutoffs_and_leases_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = config();
    let store = Store::create(dir.path(), config.clone()).unwrap();
    let first = rewrite_all(&store, "main", 1);
    store
        .create_branch("long", "main", At::Latest, BranchOptions::default())
        .unwrap();
    let info = store.set_pitr_window("long", Some(WINDOW * 100)).unwrap();
    assert_eq!(info.pitr_window, Some(WINDOW * 100));
    let long_first = rewrite_all(&store, "long", 2);
    rewrite_all(&store, "main", 3);
    let lease = store.lease("main", first, WINDOW * 10).unwrap();
    clock.advance(WINDOW * 2);
    rewrite_all(&store, "main", 4);
    rewrite_all(&store, "long", 5);
    store.gc().unwrap();
    let main_cutoff = store.branch_info("main").unwrap().gc_cutoff;
    assert!(main_cutoff > first);
    // "long" keeps its whole history: its own window is longer.
    assert_eq!(byte_at(&store, "long", 0, At::Lsn(long_first)), Some(2));
    drop(store);
    let store = Store::open_with(dir.path(), config.clone()).unwrap();
    assert_eq!(store.branch_info("main").unwrap().gc_cutoff, main_cutoff);
    assert_eq!(
        store.branch_info("long").unwrap().pitr_window,
        Some(WINDOW * 100)
    );
    assert_eq!(store.leases(), vec![lease]);
    assert_eq!(byte_at(&store, "main", 0, At::Lsn(first)), Some(1));
    assert_eq!(byte_at(&store, "long", 0, At::Lsn(long_first)), Some(2));
    // A longer window later does not bring back what GC collected.
    store.set_pitr_window("main", Some(WINDOW * 1000)).unwrap();
    store.gc().unwrap();
    assert_eq!(store.branch_info("main").unwrap().gc_cutoff, main_cutoff);
}

/// In memory, GC prunes the open layer the same way; every read the window allows
/// answers as before.
#[test]
fn gc_in_memory_prunes_versions_and_keeps_reads() {
    let (config, clock) = config();
    let store = Store::in_memory(config).unwrap();
    let key = Key::new(1, 3);
    store
        .commit("main", vec![(key, Update::Image(page_of(1)))])
        .unwrap();
    let mut lsns = Vec::new();
    for byte in 2..40u8 {
        let patch = Update::Patch {
            offset: u32::from(byte),
            bytes: bytes::Bytes::from(vec![byte]),
        };
        lsns.push(store.commit("main", vec![(key, patch)]).unwrap().lsn);
    }
    let child_point = lsns[10];
    store
        .create_branch(
            "child",
            "main",
            At::Lsn(child_point),
            BranchOptions::default(),
        )
        .unwrap();
    let expected_child = store.get_page("child", key, At::Latest).unwrap();
    let expected_main = store.get_page("main", key, At::Latest).unwrap();
    let memory_before = store.stats().memory_bytes;
    clock.advance(WINDOW * 2);
    let report = store.gc().unwrap();
    assert!(report.versions_removed >= 30, "{report:?}");
    assert!(store.stats().memory_bytes < memory_before);
    assert_eq!(
        store.get_page("child", key, At::Latest).unwrap(),
        expected_child
    );
    assert_eq!(
        store.get_page("main", key, At::Latest).unwrap(),
        expected_main
    );
    let (kind, _) = refusal(store.get_page("main", key, At::Lsn(child_point)));
    assert_eq!(kind, Refusal::BelowGcCutoff);
}

/// Every layer file by name, with its bytes.
fn layer_files(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir.join("layers"))
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(entry.path()).unwrap())
        })
        .collect()
}

/// Found by the lifecycle crash test: a second GC rewrote the first one's output over the
/// same key and LSN range under the same file name, replacing a file the published
/// catalog listed; a crash before the next catalog left a store that would not open.
/// Now a new layer file never takes an existing file's name.
#[test]
fn regression_gc_never_overwrites_a_listed_layer_file() {
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = config();
    let store = Store::create(dir.path(), config).unwrap();
    // Two pages: each rewrite fits one output file over the same key and LSN range.
    for round in 0..8 {
        let updates = (0..2)
            .map(|block| (Key::new(1, block), Update::Image(page_of(round))))
            .collect();
        store.commit("main", updates).unwrap();
        clock.advance(Duration::from_secs(1));
    }
    store.checkpoint().unwrap();
    clock.advance(WINDOW - Duration::from_secs(5));
    let first = store.gc().unwrap();
    clock.advance(Duration::from_secs(3));
    let before = layer_files(dir.path());
    let second = store.gc().unwrap();
    assert!(
        first.versions_removed > 0 && second.versions_removed > 0 && second.layers_written > 0,
        "both runs rewrote layers: {first:?} {second:?}"
    );
    for (name, bytes) in layer_files(dir.path()) {
        if let Some(old) = before.get(&name) {
            assert!(*old == bytes, "layer file {name} was overwritten in place");
        }
    }
    for block in 0..2 {
        assert_eq!(byte_at(&store, "main", block, At::Latest), Some(7));
    }
}

/// What a mount holds (`Store::hold`): a branch whose expiry passes while it is held stays
/// readable and writable and is not swept until the hold ends; a held state stays readable
/// and GC keeps it, naming the holder. Found by a review: an expiring branch was deleted
/// under its mount's writer, and GC removed what a read-only mount at an LSN showed.
#[test]
fn regression_a_held_branch_outlives_its_expiry_and_a_held_state_outlives_gc() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, clock) = config();
    // No background sweep: each refusal below is the one the call meets.
    config.housekeeping_thread = false;
    config.memory_budget_bytes = u64::MAX;
    let store = Store::create(dir.path(), config).unwrap();
    let shown = rewrite_all(&store, "main", 1);
    let ttl = BranchOptions {
        expiry: pagefork_engine::Expiry::Ttl(Duration::from_secs(10)),
        protected: false,
    };
    store
        .create_branch("preview", "main", At::Latest, ttl)
        .unwrap();
    rewrite_all(&store, "preview", 7);
    store
        .create_branch("short", "main", At::Latest, ttl)
        .unwrap();
    let mounted = store.hold("preview", None, "the mount at /m").unwrap();
    // An expired parent is kept, and listed, for a held child that expired too.
    store
        .create_branch("parent", "main", At::Latest, ttl)
        .unwrap();
    store
        .create_branch("kid", "parent", At::Latest, ttl)
        .unwrap();
    let kid = store.hold("kid", None, "the mount at /k").unwrap();
    let read_only = store.hold("main", Some(shown), "the mount at /ro").unwrap();
    // Refusals: past the head, and (below) under the cutoff or on an expired branch.
    let (kind, _) = refusal(store.hold("main", Some(Lsn(u64::MAX)), "x"));
    assert_eq!(kind, Refusal::LsnPastHead);

    rewrite_all(&store, "main", 2);
    clock.advance(WINDOW * 2);
    rewrite_all(&store, "main", 3);
    // An expired branch nobody held cannot be held.
    let (kind, _) = refusal(store.hold("short", None, "x"));
    assert_eq!(kind, Refusal::BranchExpired);
    assert_eq!(store.sweep_expired().unwrap(), ["short"], "held: not swept");
    assert_eq!(byte_at(&store, "preview", 5, At::Latest), Some(7));
    rewrite_all(&store, "preview", 8);
    assert_eq!(byte_at(&store, "preview", 5, At::Latest), Some(8));
    // Nothing new is branched from a held branch that expired: the child would keep it
    // for good (a review branched from one under a running endpoint).
    let (kind, _) = refusal(store.create_branch(
        "from-expired",
        "preview",
        At::Latest,
        BranchOptions::default(),
    ));
    assert_eq!(kind, Refusal::BranchExpired);
    assert!(
        store
            .list_branches()
            .iter()
            .any(|info| info.name == "preview")
    );
    assert_eq!(store.branch_info("parent").unwrap().kept_for, ["kid"]);
    assert!(
        store
            .list_branches()
            .iter()
            .any(|info| info.name == "parent")
    );

    let report = store.gc().unwrap();
    let main = report.branches.iter().find(|gc| gc.name == "main").unwrap();
    assert!(main.cutoff > shown, "the window moved past the held state");
    assert!(main.retained.iter().any(|retained| retained.lsn == shown
        && retained.reason
            == RetainReason::Held {
                branch: "main".to_owned(),
                holder: "the mount at /ro".to_owned(),
            }));
    assert_eq!(byte_at(&store, "main", 5, At::Lsn(shown)), Some(1));
    let (kind, _) = refusal(store.hold("main", Some(Lsn(shown.0 + 1)), "x"));
    assert_eq!(kind, Refusal::BelowGcCutoff);

    drop(mounted);
    assert_eq!(store.sweep_expired().unwrap(), ["preview"]);
    let (kind, _) = refusal(store.hold("preview", None, "x"));
    assert_eq!(kind, Refusal::UnknownBranch);
    drop(kid);
    assert_eq!(store.sweep_expired().unwrap(), ["kid", "parent"]);
    drop(read_only);
    store.gc().unwrap();
    let (kind, _) = refusal(store.get_page("main", Key::new(1, 5), At::Lsn(shown)));
    assert_eq!(kind, Refusal::BelowGcCutoff);
}
