//! Reads: what each read takes (layers visited, ancestors descended), the page cache's hits
//! and bound, and that a cached answer is the answer: the state at an LSN never changes.

use pagefork_engine::{At, BranchOptions, Key, Store, SyncMode, Update};
use pagefork_tests::{TEST_PAGE_SIZE, engine_config, manual_housekeeping, page_of};

const K: Key = Key::new(1, 1);

#[test]
fn a_read_reports_layers_and_ancestors_and_the_cache_answers_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _clock) = engine_config(SyncMode::Always);
    let store = Store::create(dir.path(), manual_housekeeping(config)).unwrap();
    store
        .commit("main", vec![(K, Update::Image(page_of(1)))])
        .unwrap();
    store.checkpoint().unwrap(); // main: one layer file, empty open versions
    let mut parent = "main".to_owned();
    for depth in 1..=3 {
        let name = format!("depth-{depth}");
        store
            .create_branch(&name, &parent, At::Latest, BranchOptions::default())
            .unwrap();
        parent = name;
    }
    let (page, trace) = store.get_page_traced("depth-3", K, At::Latest).unwrap();
    assert_eq!(page.unwrap()[0], 1);
    assert!(!trace.cache_hit);
    assert_eq!(trace.ancestors_descended, 3);
    // The three branches never wrote K (they wrote nothing), so their key bounds skip them
    // without a look; main's open layer and its one layer file are consulted.
    assert_eq!(trace.layers_visited, 2);
    let (again, trace) = store.get_page_traced("depth-3", K, At::Latest).unwrap();
    assert_eq!(again.unwrap()[0], 1);
    assert!(trace.cache_hit);
    assert_eq!((trace.layers_visited, trace.ancestors_descended), (0, 0));
    let stats = store.stats();
    assert_eq!(
        (stats.page_reads, stats.cache_hits, stats.cache_misses),
        (2, 1, 1)
    );
    assert_eq!((stats.layers_visited, stats.ancestors_descended), (2, 3));
    assert!(stats.cache_bytes >= TEST_PAGE_SIZE as u64);
}

#[test]
fn a_cached_answer_stays_right_as_the_branch_moves_on() {
    let (config, _clock) = engine_config(SyncMode::Never);
    let store = Store::in_memory(config).unwrap();
    let first = store
        .commit("main", vec![(K, Update::Image(page_of(1)))])
        .unwrap();
    assert_eq!(
        store.get_page("main", K, At::Latest).unwrap().unwrap()[0],
        1
    );
    store
        .commit("main", vec![(K, Update::Image(page_of(2)))])
        .unwrap();
    store.commit("main", vec![(K, Update::Drop)]).unwrap();
    assert_eq!(
        store.get_page("main", K, At::Latest).unwrap(),
        None,
        "latest moved on"
    );
    let (old, trace) = store
        .get_page_traced("main", K, At::Lsn(first.lsn))
        .unwrap();
    assert!(trace.cache_hit, "the first read was at the same LSN");
    assert_eq!(old.unwrap()[0], 1, "and the state there has not changed");
}

#[test]
fn the_cache_stays_within_its_bound_and_can_be_off() {
    let (mut config, _clock) = engine_config(SyncMode::Never);
    config.page_cache_bytes = 4 * TEST_PAGE_SIZE as u64;
    let store = Store::in_memory(config.clone()).unwrap();
    let updates = (0..64)
        .map(|block| (Key::new(2, block), Update::Image(page_of(block as u8))))
        .collect();
    store.commit("main", updates).unwrap();
    for block in 0..64 {
        let page = store
            .get_page("main", Key::new(2, block), At::Latest)
            .unwrap()
            .unwrap();
        assert_eq!(page[0], block as u8);
    }
    assert!(store.stats().cache_bytes <= 4 * TEST_PAGE_SIZE as u64);

    config.page_cache_bytes = 0;
    let store = Store::in_memory(config).unwrap();
    store
        .commit("main", vec![(K, Update::Image(page_of(1)))])
        .unwrap();
    for _ in 0..3 {
        store.get_page("main", K, At::Latest).unwrap();
    }
    assert_eq!(store.stats().cache_hits, 0);
    assert_eq!(store.stats().cache_bytes, 0);
}

#[test]
fn the_commit_time_of_a_state_and_the_end_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = engine_config(SyncMode::Always);
    let store = Store::create(dir.path(), manual_housekeeping(config)).unwrap();
    let created = store.branch_info("main").unwrap().head;
    assert_eq!(store.commit_time_at("main", created).unwrap(), None);
    let first = store
        .commit("main", vec![(K, Update::Image(page_of(1)))])
        .unwrap();
    clock.advance(std::time::Duration::from_secs(5));
    let second = store
        .commit("main", vec![(K, Update::Image(page_of(2)))])
        .unwrap();
    assert!(second.time > first.time);
    assert_eq!(store.stats().wal_end, second.lsn);
    assert_eq!(
        store.commit_time_at("main", first.lsn).unwrap(),
        Some(first.time)
    );
    // Between the two commits the state is the first one's.
    assert_eq!(
        store
            .commit_time_at("main", pagefork_engine::Lsn(second.lsn.0 - 1))
            .unwrap(),
        Some(first.time)
    );
    assert_eq!(
        store.commit_time_at("main", second.lsn).unwrap(),
        Some(second.time)
    );
    // A branch with no commits of its own sees its parent's, up to its branch point.
    store
        .create_branch("dev", "main", At::Lsn(first.lsn), BranchOptions::default())
        .unwrap();
    let dev_head = store.branch_info("dev").unwrap().head;
    assert_eq!(
        store.commit_time_at("dev", dev_head).unwrap(),
        Some(first.time)
    );
    // The branch creation is a record too: the log's end moved past the last commit.
    assert!(store.stats().wal_end > second.lsn);
    assert!(store.commit_time_at("ghost", second.lsn).is_err());
}

#[test]
fn prefetches_are_only_hints_and_refuse_what_a_read_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _clock) = engine_config(SyncMode::Always);
    let store = Store::create(dir.path(), manual_housekeeping(config)).unwrap();
    let pages = |byte: u8| {
        (0..64)
            .map(|block| (Key::new(7, block), Update::Image(page_of(byte))))
            .collect::<Vec<_>>()
    };
    let first = store.commit("main", pages(1)).unwrap();
    store.checkpoint().unwrap();
    store
        .create_branch("child", "main", At::Latest, BranchOptions::default())
        .unwrap();
    store.commit("child", pages(2)).unwrap();
    store.checkpoint().unwrap();
    let reads = store.stats().page_reads;
    let (from, to) = (Key::new(7, 0), Key::new(7, 63));
    for at in [At::Latest, At::Lsn(first.lsn)] {
        store.prefetch("main", from, to, at).unwrap();
        store.prefetch_history("main", from, to, at).unwrap();
    }
    store.prefetch("child", from, to, At::Latest).unwrap();
    store
        .prefetch_history("child", from, to, At::Latest)
        .unwrap();
    assert_eq!(store.stats().page_reads, reads, "a prefetch reads no page");
    for block in [0, 31, 63] {
        let key = Key::new(7, block);
        assert_eq!(
            store.get_page("child", key, At::Latest).unwrap().unwrap()[0],
            2
        );
        assert_eq!(
            store.get_page("main", key, At::Latest).unwrap().unwrap()[0],
            1
        );
    }
    assert!(matches!(
        store.prefetch("nobody", from, to, At::Latest),
        Err(pagefork_engine::EngineError::UnknownBranch { .. })
    ));
    assert!(matches!(
        store.prefetch_history("nobody", from, to, At::Latest),
        Err(pagefork_engine::EngineError::UnknownBranch { .. })
    ));
    let past = pagefork_engine::Lsn(store.branch_info("main").unwrap().head.0 + 1);
    assert!(matches!(
        store.prefetch("main", from, to, At::Lsn(past)),
        Err(pagefork_engine::EngineError::LsnPastHead { .. })
    ));
    assert!(matches!(
        store.prefetch_history("main", from, to, At::Lsn(past)),
        Err(pagefork_engine::EngineError::LsnPastHead { .. })
    ));
}

#[test]
fn a_traced_read_names_the_commit_time_of_the_state_it_read() {
    let (config, clock) = engine_config(SyncMode::Never);
    let store = Store::in_memory(config).unwrap();
    let first = store
        .commit("main", vec![(K, Update::Image(page_of(1)))])
        .unwrap();
    clock.advance(std::time::Duration::from_secs(1));
    let second = store
        .commit("main", vec![(K, Update::Image(page_of(2)))])
        .unwrap();
    store
        .create_branch(
            "child",
            "main",
            At::Lsn(first.lsn),
            BranchOptions::default(),
        )
        .unwrap();
    clock.advance(std::time::Duration::from_secs(1));
    let own = store
        .commit("child", vec![(K, Update::Image(page_of(3)))])
        .unwrap();
    let traced = |branch: &str, at: At| {
        let (page, trace) = store.get_page_traced(branch, K, at).unwrap();
        assert_eq!(
            trace.commit_time,
            store.commit_time_at(branch, trace.lsn).unwrap(),
            "{branch} at {at:?}: the trace and commit_time_at agree"
        );
        (page.unwrap()[0], trace.commit_time)
    };
    assert_eq!(traced("child", At::Latest), (3, Some(own.time)));
    // Below its branch point a read goes to the parent, and so does the time.
    assert_eq!(traced("child", At::Lsn(first.lsn)), (1, Some(first.time)));
    let between = first
        .time
        .saturating_add(std::time::Duration::from_millis(500));
    assert_eq!(traced("main", At::Time(between)), (1, Some(first.time)));
    assert_eq!(traced("main", At::Latest), (2, Some(second.time)));
    // Reset: the branch's history is now its parent's latest, and so is the time read.
    store.reset_branch("child").unwrap();
    assert_eq!(traced("child", At::Latest), (2, Some(second.time)));
}
