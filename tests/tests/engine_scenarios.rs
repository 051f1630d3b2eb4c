//! Neon's branching scenarios, on a store on disk, checked before and after reopening:
//! a key written at three LSNs with a branch at the middle one; inherited keys; branches
//! of branches at several LSNs; timestamps resolved to commits.

use std::time::Duration;

use bytes::Bytes;
use pagefork_engine::{At, BranchOptions, Expiry, Key, Lsn, Store, SyncMode, TimeKind, Update};
use pagefork_tests::{TEST_PAGE_SIZE, engine_config, page_of};

const K: Key = Key::new(1, 7);

fn image(byte: u8) -> Vec<(Key, Update)> {
    vec![(K, Update::Image(page_of(byte)))]
}

fn read(store: &Store, branch: &str, key: Key, at: At) -> Option<u8> {
    store.get_page(branch, key, at).unwrap().map(|page| {
        assert_eq!(page.len(), TEST_PAGE_SIZE);
        page[0]
    })
}

/// Runs `check` on the store, then again on the store reopened from disk.
fn check_and_reopen(store: Store, dir: &std::path::Path, check: impl Fn(&Store)) {
    check(&store);
    drop(store);
    let (config, _clock) = engine_config(SyncMode::Always);
    let reopened = Store::open_with(dir, config).unwrap();
    check(&reopened);
}

#[test]
fn a_key_written_at_three_lsns_with_a_branch_at_the_middle_one() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _clock) = engine_config(SyncMode::Always);
    let store = Store::create(dir.path(), config).unwrap();
    let l1 = store.commit("main", image(b'A')).unwrap().lsn;
    let l2 = store.commit("main", image(b'B')).unwrap().lsn;
    let l3 = store.commit("main", image(b'C')).unwrap().lsn;
    let child = store
        .create_branch("child", "main", At::Lsn(l2), BranchOptions::default())
        .unwrap();
    assert_eq!(child.parent.as_ref().unwrap().lsn, l2);
    assert_eq!(child.head, l2, "a new branch's head is its branch point");
    let l4 = store.commit("child", image(b'D')).unwrap().lsn;
    assert!(l1 < l2 && l2 < l3 && l3 < l4);

    check_and_reopen(store, dir.path(), |store| {
        for (lsn, expected) in [(l1, b'A'), (l2, b'B'), (l3, b'C')] {
            assert_eq!(
                read(store, "main", K, At::Lsn(lsn)),
                Some(expected),
                "main at {lsn}"
            );
        }
        assert_eq!(
            read(store, "main", K, At::Latest),
            Some(b'C'),
            "main never sees D"
        );
        assert_eq!(read(store, "child", K, At::Lsn(l1)), Some(b'A'));
        assert_eq!(read(store, "child", K, At::Lsn(l2)), Some(b'B'));
        assert_eq!(
            read(store, "child", K, At::Lsn(l3)),
            Some(b'B'),
            "child never sees C"
        );
        assert_eq!(read(store, "child", K, At::Lsn(l4)), Some(b'D'));
        assert_eq!(read(store, "child", K, At::Latest), Some(b'D'));
        // Before the first write the page does not exist on either branch.
        assert_eq!(read(store, "main", K, At::Lsn(Lsn(l1.0 - 8))), None);
        assert_eq!(read(store, "child", K, At::Lsn(Lsn(l1.0 - 8))), None);
    });
}

#[test]
fn inherited_keys_and_copy_on_write() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _clock) = engine_config(SyncMode::Always);
    let store = Store::create(dir.path(), config).unwrap();
    let updates = (0..10)
        .map(|block| (Key::new(2, block), Update::Image(page_of(block as u8))))
        .collect();
    store.commit("main", updates).unwrap();
    store
        .create_branch("dev", "main", At::Latest, BranchOptions::default())
        .unwrap();
    store
        .commit(
            "dev",
            vec![
                (Key::new(2, 3), Update::Drop),
                (
                    Key::new(2, 5),
                    Update::Patch {
                        offset: 100,
                        bytes: Bytes::from_static(b"xyz"),
                    },
                ),
                (Key::new(2, 10), Update::Image(page_of(99))),
            ],
        )
        .unwrap();

    check_and_reopen(store, dir.path(), |store| {
        for block in 0..10u32 {
            let key = Key::new(2, block);
            assert_eq!(
                read(store, "main", key, At::Latest),
                Some(block as u8),
                "main {key}"
            );
        }
        assert_eq!(read(store, "main", Key::new(2, 10), At::Latest), None);
        assert_eq!(
            read(store, "dev", Key::new(2, 3), At::Latest),
            None,
            "dropped on dev"
        );
        assert_eq!(read(store, "dev", Key::new(2, 10), At::Latest), Some(99));
        let patched = store
            .get_page("dev", Key::new(2, 5), At::Latest)
            .unwrap()
            .unwrap();
        assert_eq!(&patched[100..103], b"xyz");
        assert_eq!(patched[0], 5);
        let original = store
            .get_page("main", Key::new(2, 5), At::Latest)
            .unwrap()
            .unwrap();
        assert_eq!(
            &original[100..103],
            &[5, 5, 5],
            "main's page is untouched by dev's patch"
        );
        for block in [0u32, 1, 2, 4, 6, 7, 8, 9] {
            assert_eq!(
                read(store, "dev", Key::new(2, block), At::Latest),
                Some(block as u8)
            );
        }
    });
}

#[test]
fn a_branch_of_a_branch_at_several_lsns() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _clock) = engine_config(SyncMode::Always);
    let store = Store::create(dir.path(), config).unwrap();
    let main: Vec<Lsn> = (0..4)
        .map(|i| store.commit("main", image(10 + i)).unwrap().lsn)
        .collect();
    let b1 = store
        .create_branch("b1", "main", At::Lsn(main[1]), BranchOptions::default())
        .unwrap();
    let b1_commits: Vec<Lsn> = (0..3)
        .map(|i| store.commit("b1", image(20 + i)).unwrap().lsn)
        .collect();
    // Grandchildren at b1's branch point, between its commits, and at its head.
    let at_start = store
        .create_branch("b1-start", "b1", At::Lsn(b1.head), BranchOptions::default())
        .unwrap();
    let at_middle = store
        .create_branch(
            "b1-middle",
            "b1",
            At::Lsn(b1_commits[1]),
            BranchOptions::default(),
        )
        .unwrap();
    let at_head = store
        .create_branch("b1-head", "b1", At::Latest, BranchOptions::default())
        .unwrap();
    assert_eq!(at_start.parent.unwrap().lsn, main[1]);
    assert_eq!(at_middle.parent.unwrap().lsn, b1_commits[1]);
    assert_eq!(at_head.parent.unwrap().lsn, b1_commits[2]);
    store.commit("b1-middle", image(30)).unwrap();

    check_and_reopen(store, dir.path(), |store| {
        assert_eq!(read(store, "b1-start", K, At::Latest), Some(11));
        assert_eq!(
            read(store, "b1-middle", K, At::Lsn(b1_commits[1])),
            Some(21)
        );
        assert_eq!(
            read(store, "b1-middle", K, At::Lsn(b1_commits[0])),
            Some(20)
        );
        assert_eq!(
            read(store, "b1-middle", K, At::Lsn(main[0])),
            Some(10),
            "through b1 to main"
        );
        assert_eq!(read(store, "b1-middle", K, At::Latest), Some(30));
        assert_eq!(read(store, "b1-head", K, At::Latest), Some(22));
        assert_eq!(
            read(store, "b1", K, At::Latest),
            Some(22),
            "b1 never sees b1-middle's write"
        );
        assert_eq!(read(store, "main", K, At::Latest), Some(13));
        let names: Vec<String> = store.list_branches().into_iter().map(|b| b.name).collect();
        assert_eq!(names, ["b1", "b1-head", "b1-middle", "b1-start", "main"]);
    });
}

#[test]
fn times_resolve_to_the_last_commit_at_or_before_them() {
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = engine_config(SyncMode::Always);
    let start = pagefork_engine::Clock::now(&clock);
    let store = Store::create(dir.path(), config).unwrap();
    let nodata = store.lsn_for_time("main", start).unwrap();
    assert_eq!(nodata.kind, TimeKind::NoData);
    let mut commits = Vec::new();
    for (i, byte) in [b'A', b'B', b'C'].into_iter().enumerate() {
        clock.set(start.saturating_add(Duration::from_secs(10 * (i as u64 + 1))));
        commits.push(store.commit("main", image(byte)).unwrap());
    }
    let at = |secs: u64| start.saturating_add(Duration::from_secs(secs));
    assert_eq!(commits[0].time, at(10));

    // A clock that steps back is clamped: times never decrease along the log.
    clock.set(at(5));
    let clamped = store.commit("main", image(b'D')).unwrap();
    assert_eq!(clamped.time, at(30));

    check_and_reopen(store, dir.path(), |store| {
        let past = store.lsn_for_time("main", at(9)).unwrap();
        assert_eq!((past.kind, past.commit_time), (TimeKind::Past, None));
        let present = store.lsn_for_time("main", at(15)).unwrap();
        assert_eq!(present.kind, TimeKind::Present);
        assert_eq!(
            (present.lsn, present.commit_time),
            (commits[0].lsn, Some(at(10)))
        );
        assert_eq!(present.snapped_back(), Some(Duration::from_secs(5)));
        let exact = store.lsn_for_time("main", at(20)).unwrap();
        assert_eq!((exact.kind, exact.lsn), (TimeKind::Present, commits[1].lsn));
        // Two commits share time 30: the answer is the last of them, which is the head.
        let future = store.lsn_for_time("main", at(30)).unwrap();
        assert_eq!((future.kind, future.lsn), (TimeKind::Future, clamped.lsn));
        assert_eq!(read(store, "main", K, At::Time(at(15))), Some(b'A'));
        assert_eq!(read(store, "main", K, At::Time(at(29))), Some(b'B'));
        assert_eq!(read(store, "main", K, At::Time(at(1000))), Some(b'D'));
        let error = store.get_page("main", K, At::Time(at(9))).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(&at(9).to_string()) && message.contains(&at(10).to_string()),
            "{message}"
        );
    });
}

#[test]
fn a_branch_created_at_a_time_says_what_it_snapped_to() {
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = engine_config(SyncMode::Always);
    let start = pagefork_engine::Clock::now(&clock);
    let store = Store::create(dir.path(), config).unwrap();
    let at = |secs: u64| start.saturating_add(Duration::from_secs(secs));
    clock.set(at(100));
    let before_wipe = store.commit("main", image(b'E')).unwrap();
    clock.set(at(160));
    store.commit("main", vec![(K, Update::Drop)]).unwrap();
    clock.set(at(200));
    let options = BranchOptions {
        expiry: Expiry::Ttl(Duration::from_secs(3600)),
        protected: false,
    };
    let recovered = store
        .create_branch("recovered", "main", At::Time(at(150)), options)
        .unwrap();
    let answer = recovered.created_at_time.unwrap();
    assert_eq!(
        (answer.kind, answer.lsn),
        (TimeKind::Present, before_wipe.lsn)
    );
    assert_eq!(answer.commit_time, Some(at(100)));
    assert_eq!(answer.snapped_back(), Some(Duration::from_secs(50)));
    assert_eq!(recovered.parent.as_ref().unwrap().lsn, before_wipe.lsn);
    assert_eq!(recovered.expires_at, Some(at(3800)));

    check_and_reopen(store, dir.path(), |store| {
        assert_eq!(read(store, "recovered", K, At::Latest), Some(b'E'));
        assert_eq!(read(store, "main", K, At::Latest), None);
        assert_eq!(store.branch_info("recovered").unwrap(), recovered);
    });
}

#[test]
fn a_checkpoint_shortens_replay_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = engine_config(SyncMode::Always);
    let config = pagefork_tests::manual_housekeeping(config); // only the checkpoint below
    let store = Store::create(dir.path(), config.clone()).unwrap();
    // Enough commits to fill several 64 KiB WAL segments.
    let commits: Vec<_> = (0..200u8)
        .map(|byte| {
            clock.advance(Duration::from_secs(1));
            store.commit("main", image(byte)).unwrap()
        })
        .collect();
    let hundredth = commits[99];
    store
        .create_branch("gone", "main", At::Latest, BranchOptions::default())
        .unwrap();
    let gone_id = store.branch_info("gone").unwrap().id;
    store.delete_branch("gone").unwrap();
    store
        .create_branch("dev", "main", At::Latest, BranchOptions::default())
        .unwrap();
    let wal_dir = dir.path().join("wal");
    let segments = |dir: &std::path::Path| pagefork_tests::segment_files(dir).len();
    let before = segments(&wal_dir);
    let covered = store.checkpoint().unwrap();
    assert!(
        segments(&wal_dir) < before,
        "covered WAL segments are removed"
    );
    assert_eq!(covered, store.branch_info("dev").unwrap().created_lsn);
    let after = store.commit("dev", image(b'Z')).unwrap();
    let everything = |store: &Store| {
        (
            store.list_branches(),
            read(store, "main", K, At::Latest),
            read(store, "main", K, At::Lsn(hundredth.lsn)),
            read(store, "dev", K, At::Latest),
        )
    };
    let expected = everything(&store);
    assert_eq!(
        (expected.1, expected.2, expected.3),
        (Some(199), Some(99), Some(b'Z'))
    );
    drop(store);
    let reopened = Store::open_with(dir.path(), config.clone()).unwrap();
    assert_eq!(everything(&reopened), expected);
    assert_eq!(reopened.branch_info("dev").unwrap().head, after.lsn);
    // Ids of deleted branches are not reused, even though the checkpoint forgot the branch.
    let new = reopened
        .create_branch("new", "main", At::Latest, BranchOptions::default())
        .unwrap();
    assert!(new.id > gone_id);
    // The history before the checkpoint still answers time lookups and reads.
    let answer = reopened.lsn_for_time("main", commits[50].time).unwrap();
    assert_eq!(answer.lsn, commits[50].lsn);
}

/// Regression (found by `engine_crash`, seed 1795311007229242080): after a checkpoint had
/// removed the WAL segment holding the root branch's creation, replay still demanded that
/// the first record it read create the root, and the store could not be opened.
#[test]
fn regression_reopen_after_a_checkpoint_removed_the_root_record() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _clock) = engine_config(SyncMode::Always);
    let store = Store::create(dir.path(), config.clone()).unwrap();
    for byte in 0..150u8 {
        store.commit("main", image(byte)).unwrap();
    }
    store.checkpoint().unwrap();
    let oldest = pagefork_tests::segment_files(&dir.path().join("wal"));
    assert!(
        !oldest
            .iter()
            .any(|path| path.ends_with("0000000000000000.wal")),
        "the first segment, with the root's creation, is gone"
    );
    let last = store.commit("main", image(b'L')).unwrap();
    drop(store);
    let reopened = Store::open_with(dir.path(), config).unwrap();
    assert_eq!(reopened.branch_info("main").unwrap().head, last.lsn);
    assert_eq!(read(&reopened, "main", K, At::Latest), Some(b'L'));
}
