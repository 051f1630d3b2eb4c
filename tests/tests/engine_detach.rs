//! Detach on real stores: a detached branch reads as before at every LSN and time it
//! allows (through layer files, patches on inherited pages and GC), its parent can then
//! be deleted and collected, and all of it survives reopen; refusals name the branch.

use std::time::Duration;

use pagefork_engine::model::Refusal;
use pagefork_engine::{
    At, BranchOptions, Clock, Config, HistoryOperation, Key, Lsn, ManualClock, Store, SyncMode,
    Update,
};
use pagefork_tests::{engine_config, page_of};

const PAGES: u32 = 48;

fn config() -> (Config, ManualClock) {
    let (mut config, clock) = engine_config(SyncMode::Never);
    config.pitr_window = Duration::from_secs(3600);
    config.gc_period = Duration::ZERO;
    (config, clock)
}

/// Writes every `stride`-th page with `byte` as images, and patches the others' first
/// bytes where they exist; one commit.
fn round(store: &Store, branch: &str, byte: u8, stride: u32) -> Lsn {
    let updates = (0..PAGES)
        .map(|block| {
            let key = Key::new(1, block);
            let update = if block % stride == 0
                || store.get_page(branch, key, At::Latest).unwrap().is_none()
            {
                Update::Image(page_of(byte))
            } else {
                Update::Patch {
                    offset: 1,
                    bytes: bytes::Bytes::from(vec![byte; 3]),
                }
            };
            (key, update)
        })
        .collect();
    store.commit(branch, updates).unwrap().lsn
}

/// Every page of `branch` at each of `ats`.
fn snapshot(store: &Store, branch: &str, ats: &[At]) -> Vec<Option<Vec<u8>>> {
    ats.iter()
        .flat_map(|at| {
            (0..PAGES).map(move |block| {
                store
                    .get_page(branch, Key::new(1, block), *at)
                    .unwrap()
                    .map(|page| page.to_vec())
            })
        })
        .collect()
}

#[test]
fn a_detached_branch_reads_as_before_and_outlives_its_parent() {
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = config();
    let store = Store::create(dir.path(), config.clone()).unwrap();
    let mut lsns = Vec::new();
    let mut times = Vec::new();
    for byte in 1..=4 {
        lsns.push(round(&store, "main", byte, 3));
        times.push(clock.now());
        clock.advance(Duration::from_secs(1));
        if byte == 2 {
            // Half the history in layer files, half in memory.
            store.checkpoint().unwrap();
        }
    }
    let mid = store
        .create_branch("mid", "main", At::Lsn(lsns[2]), BranchOptions::default())
        .unwrap();
    lsns.push(round(&store, "mid", 20, 4));
    clock.advance(Duration::from_secs(1));
    let child = store
        .create_branch("child", "mid", At::Latest, BranchOptions::default())
        .unwrap();
    lsns.push(round(&store, "main", 30, 2));
    lsns.push(round(&store, "child", 40, 5));
    times.push(clock.now());
    clock.advance(Duration::from_secs(1));
    lsns.push(round(&store, "child", 41, 7));
    let ats: Vec<At> = lsns
        .iter()
        .filter(|lsn| **lsn <= store.branch_info("child").unwrap().head)
        .map(|lsn| At::Lsn(*lsn))
        .chain(times.iter().map(|time| At::Time(*time)))
        .chain([At::Latest])
        .collect();
    let before = snapshot(&store, "child", &ats);
    let answers: Vec<_> = times
        .iter()
        .map(|time| store.lsn_for_time("child", *time).unwrap())
        .collect();
    let refusal = store.delete_branch("mid").unwrap_err();
    assert_eq!(Refusal::of(&refusal), Some(Refusal::HasChildren));

    let detached = store.detach_branch("child").unwrap();
    assert_eq!(detached.parent, None);
    assert_eq!(detached.head, child.head.max(lsns[lsns.len() - 1]));
    assert_eq!(snapshot(&store, "child", &ats), before);
    let entry = store.history().pop().unwrap();
    assert_eq!(entry.operation, HistoryOperation::Detach);
    assert!(entry.details.contains("\"mid\""), "{}", entry.details);

    // The ancestors can go now, and GC collects their history.
    store.delete_branch("mid").unwrap();
    store.gc().unwrap();
    assert_eq!(snapshot(&store, "child", &ats), before);
    for (time, answer) in times.iter().zip(&answers) {
        assert_eq!(store.lsn_for_time("child", *time).unwrap(), *answer);
    }
    drop(store);

    let store = Store::open_with(dir.path(), config).unwrap();
    assert_eq!(store.branch_info("child").unwrap().parent, None);
    assert_eq!(snapshot(&store, "child", &ats), before);
    // Its own history goes on.
    round(&store, "child", 50, 2);
    assert!(store.branch_info("mid").is_err());
    assert_eq!(mid.parent.unwrap().name, "main");
}

#[test]
fn a_detach_keeps_the_cutoff_and_what_children_need_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, clock) = config();
    config.pitr_window = Duration::from_secs(5);
    let store = Store::create(dir.path(), config).unwrap();
    let first = round(&store, "main", 1, 2);
    clock.advance(Duration::from_secs(1));
    store
        .create_branch("parent", "main", At::Latest, BranchOptions::default())
        .unwrap();
    let early = round(&store, "parent", 2, 3);
    clock.advance(Duration::from_secs(1));
    // A grandchild branching below where the parent's cutoff will be.
    store
        .create_branch(
            "grandchild",
            "parent",
            At::Lsn(early),
            BranchOptions::default(),
        )
        .unwrap();
    clock.advance(Duration::from_secs(1));
    round(&store, "parent", 3, 4);
    clock.advance(Duration::from_secs(10));
    round(&store, "parent", 4, 5);
    store.gc().unwrap();
    let cutoff = store.branch_info("parent").unwrap().gc_cutoff;
    assert!(
        cutoff > early,
        "the window moved the cutoff past the grandchild's point"
    );
    let grandchild_pages = snapshot(&store, "grandchild", &[At::Latest]);

    let detached = store.detach_branch("parent").unwrap();
    assert_eq!(detached.gc_cutoff, cutoff, "a detach keeps the cutoff");
    let refused = store
        .get_page("parent", Key::new(1, 0), At::Lsn(first))
        .unwrap_err();
    assert_eq!(Refusal::of(&refused), Some(Refusal::BelowGcCutoff));
    store.delete_branch("main").unwrap();
    store.gc().unwrap();
    assert_eq!(
        snapshot(&store, "grandchild", &[At::Latest]),
        grandchild_pages
    );

    let refused = store.detach_branch("parent").unwrap_err();
    assert_eq!(Refusal::of(&refused), Some(Refusal::NoParent));
    assert!(refused.to_string().contains("parent"), "{refused}");
    let unknown = store.detach_branch("nope").unwrap_err();
    assert_eq!(Refusal::of(&unknown), Some(Refusal::UnknownBranch));
}

#[test]
fn an_in_memory_detach_reads_as_before() {
    let (config, clock) = config();
    let store = Store::in_memory(config).unwrap();
    round(&store, "main", 1, 2);
    clock.advance(Duration::from_secs(1));
    let point = round(&store, "main", 2, 3);
    store
        .create_branch("child", "main", At::Latest, BranchOptions::default())
        .unwrap();
    round(&store, "child", 3, 4);
    round(&store, "main", 4, 5);
    let ats = [At::Lsn(point), At::Latest];
    let before = snapshot(&store, "child", &ats);
    store.detach_branch("child").unwrap();
    store.delete_branch("main").unwrap();
    assert_eq!(snapshot(&store, "child", &ats), before);
}
