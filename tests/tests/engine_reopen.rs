//! Every catalog that is published can be opened (DESIGN.md invariant 7): the LSN replay
//! must start from is never below the start of the retained WAL, whatever branch
//! operations ran between two catalogs.
//!
//! Named regressions of issue 18: a branch created at an LSN (or a time) below the oldest
//! retained WAL segment started with its `flushed` LSN at its branch point, and a flush of
//! a branch with nothing unflushed set `flushed` to its head (its branch point, for a new
//! branch); any catalog published before that branch's next flush recorded the low value,
//! and the store never opened again. These run at the default segment size (16 MiB) with
//! 8 KiB pages, as users do.

use bytes::Bytes;
use pagefork_engine::{At, BranchOptions, Config, Key, Lsn, Store, SyncMode, Update};
use pagefork_tests::manual_housekeeping;

const PAGE_SIZE: usize = 8192;

fn page(tag: u64) -> Bytes {
    let mut bytes = vec![0u8; PAGE_SIZE];
    for chunk in bytes.chunks_exact_mut(8) {
        chunk.copy_from_slice(&tag.to_le_bytes());
    }
    Bytes::from(bytes)
}

/// A store at the default segment size whose housekeeping runs only when asked.
fn config() -> Config {
    manual_housekeeping(Config {
        page_size: PAGE_SIZE,
        sync_mode: SyncMode::Never,
        housekeeping_thread: false,
        ..Config::default()
    })
}

/// Commits one page at a time on main until the WAL has passed `segments` segments;
/// returns the LSN of the 6th commit (EARLY in the issue).
fn fill_main(store: &Store, segments: u64) -> Lsn {
    let segment_size = Config::default().wal_segment_size;
    let mut early = Lsn(0);
    let mut commit = 0u64;
    loop {
        let key = Key::new(1, u32::try_from(commit % 50).unwrap());
        let lsn = store
            .commit("main", vec![(key, Update::Image(page(commit)))])
            .unwrap()
            .lsn;
        commit += 1;
        if commit == 6 {
            early = lsn;
        }
        if lsn.0 > segments * segment_size {
            return early;
        }
    }
}

fn wal_start(store: &Store) -> Lsn {
    store
        .files(false)
        .unwrap()
        .wal
        .expect("a store on disk has a WAL")
        .oldest
}

/// The commands: a branch at an LSN the retained WAL no longer holds, a commit
/// on it, then a catalog published by a detach of another branch.
#[test]
fn a_branch_below_the_retained_wal_written_then_a_detach_publishes_an_openable_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), config()).unwrap();
    let early = fill_main(&store, 1);
    store.checkpoint().unwrap();
    assert!(
        wal_start(&store) > early,
        "the checkpoint removed the first segment"
    );
    store
        .create_branch("old", "main", At::Lsn(early), BranchOptions::default())
        .unwrap();
    let written = store
        .commit("old", vec![(Key::new(7, 7), Update::Image(page(7)))])
        .unwrap()
        .lsn;
    store
        .create_branch("d", "main", At::Latest, BranchOptions::default())
        .unwrap();
    store.detach_branch("d").unwrap();
    drop(store);

    let store = Store::open_with(dir.path(), config()).unwrap();
    assert_eq!(
        store.get_page("old", Key::new(7, 7), At::Latest).unwrap(),
        Some(page(7))
    );
    assert_eq!(
        store
            .get_page("old", Key::new(7, 7), At::Lsn(written))
            .unwrap(),
        Some(page(7))
    );
    assert_eq!(
        store.get_page("old", Key::new(1, 5), At::Latest).unwrap(),
        Some(page(5)),
        "old shows main as it was at EARLY"
    );
}

/// A quiet branch: created below the retained WAL, flushed while it had nothing
/// unflushed (which set `flushed` to its head, the branch point), written, then a catalog
/// published without flushing it.
#[test]
fn a_quiet_branch_flushed_before_its_first_commit_keeps_the_catalog_openable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), config()).unwrap();
    let early = fill_main(&store, 1);
    store.checkpoint().unwrap();
    store
        .create_branch("quiet", "main", At::Lsn(early), BranchOptions::default())
        .unwrap();
    store.checkpoint().unwrap();
    store
        .commit("quiet", vec![(Key::new(2, 0), Update::Image(page(2)))])
        .unwrap();
    store
        .create_branch("d", "main", At::Latest, BranchOptions::default())
        .unwrap();
    store.detach_branch("d").unwrap();
    drop(store);
    let store = Store::open_with(dir.path(), config()).unwrap();
    assert_eq!(
        store.get_page("quiet", Key::new(2, 0), At::Latest).unwrap(),
        Some(page(2))
    );
}

/// A branch at a time, created after a checkpoint removed the WAL at that time, then
/// replayed from the WAL on the next open (so it is built by replay, not by the live
/// path), written, and a catalog published by GC.
#[test]
fn a_branch_at_a_time_replayed_after_reopen_keeps_the_catalog_openable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), config()).unwrap();
    let early = fill_main(&store, 2);
    let time = store.commit_time_at("main", early).unwrap().unwrap();
    store.checkpoint().unwrap();
    assert!(wal_start(&store) > early);
    store
        .create_branch("pitr", "main", At::Time(time), BranchOptions::default())
        .unwrap();
    drop(store);
    let store = Store::open_with(dir.path(), config()).unwrap();
    store
        .commit("pitr", vec![(Key::new(3, 0), Update::Image(page(3)))])
        .unwrap();
    store.gc().unwrap();
    store
        .create_branch("d", "main", At::Latest, BranchOptions::default())
        .unwrap();
    store.detach_branch("d").unwrap();
    drop(store);
    let store = Store::open_with(dir.path(), config()).unwrap();
    assert_eq!(
        store.get_page("pitr", Key::new(3, 0), At::Latest).unwrap(),
        Some(page(3))
    );
}
