//! Store-level tests of the RocksDB backend that need to reach inside the store: what
//! opening does with versions the catalog does not cover.

use bytes::Bytes;
use pagefork_wal::Lsn;

use super::{Config, Store};
use crate::backend::Backend;
use crate::branch::At;
use crate::key::Key;
use crate::update::Update;

fn page(byte: u8) -> Bytes {
    Bytes::from(vec![byte; 512])
}

fn config() -> Config {
    Config {
        page_size: 512,
        backend: Backend::RocksDb,
        ..Config::default()
    }
}

/// A flush whose catalog was never published (a crash between the two) leaves versions in
/// RocksDB above the branch's `flushed`; if their WAL records were lost too, new commits
/// reuse those LSNs. Opening trims them, so once `flushed` passes their LSNs no read finds
/// them.
#[test]
fn opening_trims_versions_above_what_the_catalog_covers() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Key::new(1, 0), Key::new(1, 1));
    let store = Store::create(dir.path(), config()).unwrap();
    store
        .commit("main", vec![(a, Update::Image(page(1)))])
        .unwrap();
    store.checkpoint().unwrap();
    let main = store.inner.branch("main").unwrap();
    let head = store.branch_info("main").unwrap().head;
    let stale = Lsn(head.0 + 64);
    let db = store.inner.version_db.clone().unwrap();
    db.put_versions(main.id, &[(a, stale, Update::Image(page(0xEE)))])
        .unwrap();
    db.persist().unwrap();
    drop((db, main, store));

    let store = Store::open(dir.path()).unwrap();
    while store.branch_info("main").unwrap().head <= stale {
        store
            .commit("main", vec![(b, Update::Image(page(2)))])
            .unwrap();
    }
    store.checkpoint().unwrap();
    assert_eq!(
        store.get_page("main", a, At::Latest).unwrap(),
        Some(page(1))
    );
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.get_page("main", a, At::Latest).unwrap(),
        Some(page(1))
    );
}

/// The versions of a branch the catalog does not list (deleted before a crash, or created
/// after the catalog) are removed when the store opens, and after the catalog that drops
/// a deleted branch is published.
#[test]
fn versions_of_branches_the_catalog_does_not_list_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::new(2, 0);
    let store = Store::create(dir.path(), config()).unwrap();
    store
        .commit("main", vec![(key, Update::Image(page(1)))])
        .unwrap();
    store
        .create_branch("dev", "main", At::Latest, Default::default())
        .unwrap();
    store
        .commit("dev", vec![(key, Update::Image(page(2)))])
        .unwrap();
    store.checkpoint().unwrap();
    let dev = store.inner.branch("dev").unwrap().id;
    let db = store.inner.version_db.clone().unwrap();
    assert!(db.branch_ids().unwrap().contains(&dev));
    store.delete_branch("dev").unwrap();
    store.checkpoint().unwrap();
    assert!(
        !db.branch_ids().unwrap().contains(&dev),
        "removed after the catalog"
    );
    let ghost = crate::branch::BranchId(dev.0 + 100);
    db.put_versions(ghost, &[(key, Lsn(8), Update::Image(page(9)))])
        .unwrap();
    db.persist().unwrap();
    drop((db, store));
    let store = Store::open(dir.path()).unwrap();
    let db = store.inner.version_db.clone().unwrap();
    assert!(
        !db.branch_ids().unwrap().contains(&ghost),
        "removed on open"
    );
    assert_eq!(
        store.get_page("main", key, At::Latest).unwrap(),
        Some(page(1))
    );
}
