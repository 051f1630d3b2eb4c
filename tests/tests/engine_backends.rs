//! The backend a store keeps flushed page versions in (`Config::backend`): recorded when
//! the store is created, used by `Store::open`, and checked by `Store::open_with`; a
//! backend this build lacks, an in-memory store or a simulated disk with RocksDB are clear
//! refusals that change nothing. With `--features rocksdb`, a RocksDB store's versions
//! live in `versions/` and none in `layers/`, and what a crash left in RocksDB past the
//! catalog is trimmed when it opens.

use std::sync::Arc;

use pagefork_engine::sim::SimFileSystem;
use pagefork_engine::{At, Backend, Config, EngineError, Key, Store, Update};
use pagefork_tests::{TEST_PAGE_SIZE, backends, page_of};

fn config(backend: Backend) -> Config {
    Config {
        page_size: TEST_PAGE_SIZE,
        backend,
        ..Config::default()
    }
}

fn commit(store: &Store, byte: u8) -> pagefork_engine::Lsn {
    store
        .commit("main", vec![(Key::new(1, 0), Update::Image(page_of(byte)))])
        .unwrap()
        .lsn
}

#[test]
fn a_store_keeps_its_backend_and_open_with_refuses_another() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path(), config(backend)).unwrap();
        assert_eq!(store.backend(), backend);
        let lsn = commit(&store, 3);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.backend(), backend, "Store::open uses the store's own");
        assert_eq!(
            store
                .get_page("main", Key::new(1, 0), At::Lsn(lsn))
                .unwrap(),
            Some(page_of(3))
        );
        drop(store);
        for other in Backend::ALL.into_iter().filter(|other| *other != backend) {
            let error = Store::open_with(dir.path(), config(other)).unwrap_err();
            assert!(matches!(error, EngineError::InvalidConfig(_)), "{error}");
            let message = error.to_string();
            if other.is_built() {
                assert!(
                    message.contains(&format!(
                        "keeps its page versions in {backend}, the configuration says {other}"
                    )),
                    "{message}"
                );
            } else {
                assert!(message.contains("not in this build"), "{message}");
            }
        }
        // The refusals changed nothing.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.backend(), backend);
        assert_eq!(
            store.get_page("main", Key::new(1, 0), At::Latest).unwrap(),
            Some(page_of(3))
        );
    }
}

#[test]
fn rocksdb_is_refused_in_memory_and_on_a_simulated_disk() {
    let error = Store::in_memory(config(Backend::RocksDb)).unwrap_err();
    assert!(
        error.to_string().contains("needs a store on disk"),
        "{error}"
    );
    let sim = Config {
        fs: Arc::new(SimFileSystem::new(1)),
        housekeeping_thread: false,
        memory_budget_bytes: u64::MAX,
        ..config(Backend::RocksDb)
    };
    let error = Store::create("/store", sim).unwrap_err();
    let message = error.to_string();
    if Backend::RocksDb.is_built() {
        assert!(
            message.contains("needs the operating system's file system"),
            "{message}"
        );
    } else {
        assert!(message.contains("not in this build"), "{message}");
    }
}

/// A store whose metadata says RocksDB, opened by a build without the feature: a clear
/// error naming the directory and the feature, and the store untouched.
#[cfg(not(feature = "rocksdb"))]
#[test]
fn a_rocksdb_store_in_a_build_without_the_feature_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::create(dir.path(), config(Backend::Native)).unwrap());
    // The metadata file as a RocksDB store's: version 2, the page size, backend code 1.
    let meta_path = dir.path().join("pagefork.meta");
    let mut meta = b"PFSTORE\0".to_vec();
    meta.extend_from_slice(&2u32.to_le_bytes());
    meta.extend_from_slice(&(TEST_PAGE_SIZE as u32).to_le_bytes());
    meta.extend_from_slice(&1u32.to_le_bytes());
    let crc = crc32fast::hash(&meta);
    meta.extend_from_slice(&crc.to_le_bytes());
    std::fs::write(&meta_path, &meta).unwrap();
    let listing = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = listing(dir.path());
    let error = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            error,
            EngineError::BackendNotBuilt {
                backend: Backend::RocksDb,
                ..
            }
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&dir.path().display().to_string())
            && message.contains("the `rocksdb` cargo feature"),
        "{message}"
    );
    assert_eq!(listing(dir.path()), before);
    assert_eq!(std::fs::read(&meta_path).unwrap(), meta);
}

/// A RocksDB store keeps flushed versions in `versions/` (no layer files), and reads
/// every commit back at its LSN after a reopen.
#[cfg(feature = "rocksdb")]
#[test]
fn rocksdb_keeps_versions_in_its_database_and_reopens_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), config(Backend::RocksDb)).unwrap();
    let key = Key::new(1, 0);
    let mut lsns = Vec::new();
    for byte in 0..20u8 {
        let update = if byte % 5 == 0 {
            Update::Image(page_of(byte))
        } else {
            Update::Patch {
                offset: u32::from(byte),
                bytes: bytes::Bytes::from(vec![byte; 3]),
            }
        };
        lsns.push(store.commit("main", vec![(key, update)]).unwrap().lsn);
        if byte % 7 == 0 {
            store.checkpoint().unwrap();
        }
    }
    let expected: Vec<_> = lsns
        .iter()
        .map(|lsn| store.get_page("main", key, At::Lsn(*lsn)).unwrap())
        .collect();
    store.checkpoint().unwrap();
    let stats = store.stats();
    assert!(stats.flushes > 0 && stats.rocksdb_bytes > 0, "{stats:?}");
    assert_eq!(
        (stats.layers_l0, stats.layers_l1, stats.layers_image),
        (0, 0, 0)
    );
    drop(store);
    assert!(dir.path().join("versions").is_dir());
    let layers = dir.path().join("layers");
    assert!(
        !layers.exists() || std::fs::read_dir(&layers).unwrap().next().is_none(),
        "no layer files with RocksDB"
    );
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.stats().memory_bytes, 0, "nothing to replay");
    for (lsn, page) in lsns.iter().zip(&expected) {
        assert_eq!(
            &store.get_page("main", key, At::Lsn(*lsn)).unwrap(),
            page,
            "at {lsn}"
        );
    }
}

/// `Store::keys_in` lists the keys of a range that have versions the branch's head can
/// see, its own and its parent's below the branch point, whichever backend holds them
/// (in memory, flushed, or in RocksDB), at the cost of those versions: a range of 2^32
/// blocks with three pages in it answers three keys.
#[test]
fn keys_in_lists_the_keys_with_versions_in_a_range_on_every_backend() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path(), config(backend)).unwrap();
        let put = |branch: &str, block: u32, update: Update| {
            store
                .commit(branch, vec![(Key::new(7, block), update)])
                .unwrap();
        };
        put("main", 3, Update::Image(page_of(1)));
        put("main", 1 << 30, Update::Image(page_of(2)));
        store.checkpoint().unwrap();
        store
            .create_branch(
                "child",
                "main",
                At::Latest,
                pagefork_engine::BranchOptions::default(),
            )
            .unwrap();
        put("main", 9, Update::Image(page_of(3)));
        put("child", u32::MAX, Update::Image(page_of(4)));
        put("child", 3, Update::Drop);
        put("child", 5, Update::Image(page_of(5)));
        let blocks = |branch: &str, first: u32, last: u32| -> Vec<u32> {
            store
                .keys_in(branch, Key::new(7, first), Key::new(7, last))
                .unwrap()
                .into_iter()
                .map(|key| key.block)
                .collect()
        };
        assert_eq!(
            blocks("child", 0, u32::MAX),
            [3, 5, 1 << 30, u32::MAX],
            "{backend}: main's 9 came after the branch point; a dropped key is listed"
        );
        assert_eq!(blocks("main", 0, u32::MAX), [3, 9, 1 << 30], "{backend}");
        assert_eq!(blocks("main", 4, 1 << 30), [9, 1 << 30], "{backend}");
        assert!(blocks("main", 10, 1000).is_empty(), "{backend}");
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let keys = store
            .keys_in("child", Key::new(7, 0), Key::new(7, u32::MAX))
            .unwrap();
        assert_eq!(keys.len(), 4, "{backend}: after a reopen too");
    }
}
