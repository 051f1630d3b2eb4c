//! Every refusal: the error is the right one and names what was wrong, and nothing
//! changed: not the branches, not their heads, not a page, and (after reopening) not the
//! log.

use std::time::Duration;

use bytes::Bytes;
use pagefork_engine::{
    At, BRANCH_NAME_RULE, Backup, BranchInfo, BranchOptions, EngineError, Expiry, Key, Lsn,
    MAX_PITR_WINDOW, Store, SyncMode, Timestamp, Update,
};
use pagefork_tests::{TEST_PAGE_SIZE, engine_config, page_of};

const K: Key = Key::new(1, 1);

/// Everything observable: each branch's info and its page `K` at every LSN up to its head.
fn snapshot(store: &Store) -> Vec<(BranchInfo, Option<Bytes>)> {
    store
        .list_branches()
        .into_iter()
        .map(|info| {
            let page = store.get_page(&info.name, K, At::Latest).unwrap();
            (info, page)
        })
        .collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    first: Lsn,
}

/// main: K written at `first` and then patched; child from main at `first`.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = engine_config(SyncMode::Always);
    let store = Store::create(dir.path(), config).unwrap();
    let first = store
        .commit("main", vec![(K, Update::Image(page_of(1)))])
        .unwrap()
        .lsn;
    clock.advance(Duration::from_secs(10));
    store
        .commit(
            "main",
            vec![(
                K,
                Update::Patch {
                    offset: 0,
                    bytes: Bytes::from_static(b"p"),
                },
            )],
        )
        .unwrap();
    store
        .create_branch("child", "main", At::Lsn(first), BranchOptions::default())
        .unwrap();
    Fixture {
        _dir: dir,
        store,
        first,
    }
}

/// Runs `refused`, checks its error with `expect`, and checks nothing changed, also after
/// reopening the store.
fn assert_refused(
    fixture: Fixture,
    refused: impl Fn(&Store) -> Result<(), EngineError>,
    expect: impl Fn(&EngineError) -> bool,
) {
    let before = snapshot(&fixture.store);
    let error = refused(&fixture.store).expect_err("must be refused");
    assert!(expect(&error), "unexpected error: {error:?}");
    assert_eq!(
        snapshot(&fixture.store),
        before,
        "a refusal changed the store"
    );
    let dir = fixture.store.dir().unwrap().to_owned();
    drop(fixture.store);
    let (config, _clock) = engine_config(SyncMode::Always);
    let reopened = Store::open_with(&dir, config).unwrap();
    assert_eq!(snapshot(&reopened), before, "a refusal reached the log");
}

fn commit(updates: Vec<(Key, Update)>) -> impl Fn(&Store) -> Result<(), EngineError> {
    move |store| store.commit("main", updates.clone()).map(drop)
}

#[test]
fn empty_commit() {
    assert_refused(
        fixture(),
        commit(vec![]),
        |e| matches!(e, EngineError::EmptyCommit { branch } if branch == "main"),
    );
}

#[test]
fn duplicate_key() {
    let updates = vec![(K, Update::Image(page_of(2))), (K, Update::Drop)];
    assert_refused(
        fixture(),
        commit(updates),
        |e| matches!(e, EngineError::DuplicateKey { key, .. } if *key == K),
    );
}

#[test]
fn image_not_one_page() {
    for len in [0, 1, TEST_PAGE_SIZE - 1, TEST_PAGE_SIZE + 1] {
        let updates = vec![(K, Update::Image(Bytes::from(vec![0u8; len])))];
        assert_refused(
            fixture(),
            commit(updates),
            |e| matches!(e, EngineError::ImageSize { key, len: got, page_size } if *key == K && *got == len && *page_size == TEST_PAGE_SIZE),
        );
    }
}

#[test]
fn patch_out_of_bounds() {
    for (offset, len) in [
        (TEST_PAGE_SIZE as u32, 1),
        (TEST_PAGE_SIZE as u32 - 1, 2),
        (u32::MAX, 1),
    ] {
        let updates = vec![(
            K,
            Update::Patch {
                offset,
                bytes: Bytes::from(vec![0u8; len]),
            },
        )];
        assert_refused(
            fixture(),
            commit(updates),
            |e| matches!(e, EngineError::PatchOutOfBounds { offset: got, .. } if *got == offset),
        );
    }
}

#[test]
fn patch_on_a_missing_or_dropped_page() {
    let missing = Key::new(9, 9);
    let updates = vec![(
        missing,
        Update::Patch {
            offset: 0,
            bytes: Bytes::from_static(b"x"),
        },
    )];
    assert_refused(
        fixture(),
        commit(updates),
        |e| matches!(e, EngineError::PatchOnMissingPage { key, branch } if *key == missing && branch == "main"),
    );
    let fixture = fixture();
    fixture
        .store
        .commit("main", vec![(K, Update::Drop)])
        .unwrap();
    let updates = vec![(
        K,
        Update::Patch {
            offset: 0,
            bytes: Bytes::from_static(b"x"),
        },
    )];
    assert_refused(fixture, commit(updates), |e| {
        matches!(e, EngineError::PatchOnMissingPage { .. })
    });
}

#[test]
fn commit_to_an_unknown_branch() {
    assert_refused(
        fixture(),
        |store| store.commit("nope", vec![(K, Update::Drop)]).map(drop),
        |e| matches!(e, EngineError::UnknownBranch { name } if name == "nope"),
    );
}

#[test]
fn commit_larger_than_one_record() {
    let updates: Vec<(Key, Update)> = (0..40_000)
        .map(|block| (Key::new(3, block), Update::Image(page_of(0))))
        .collect();
    assert_refused(
        fixture(),
        commit(updates),
        |e| matches!(e, EngineError::CommitTooLarge { len, max, .. } if len > max),
    );
}

#[test]
fn read_past_the_head_names_both_lsns() {
    let fixture = fixture();
    let head = fixture.store.branch_info("child").unwrap().head;
    let past = Lsn(head.0 + 8);
    let error = fixture
        .store
        .get_page("child", K, At::Lsn(past))
        .unwrap_err();
    assert!(
        matches!(&error, EngineError::LsnPastHead { lsn, head: h, .. } if *lsn == past && *h == head)
    );
    let message = error.to_string();
    assert!(
        message.contains(&past.to_string()) && message.contains(&head.to_string()),
        "{message}"
    );
}

#[test]
fn bad_branch_names_state_the_rule() {
    // Empty, `.` and `..` parts: found by a review, `..` was reachable over HTTP only as
    // `%2E%2E`.
    for bad in [
        "",
        "has space",
        &"x".repeat(64),
        "ümlaut",
        ".",
        "..",
        "feature/..",
        "./x",
        "a//b",
        "a/",
    ] {
        let name = bad.to_owned();
        assert_refused(
            fixture(),
            move |store| {
                store
                    .create_branch(&name, "main", At::Latest, BranchOptions::default())
                    .map(drop)
            },
            |e| {
                matches!(e, EngineError::InvalidBranchName { .. })
                    && e.to_string().contains(BRANCH_NAME_RULE)
            },
        );
    }
}

#[test]
fn taken_name_and_unknown_parent() {
    assert_refused(
        fixture(),
        |store| {
            store
                .create_branch("child", "main", At::Latest, BranchOptions::default())
                .map(drop)
        },
        |e| matches!(e, EngineError::BranchExists { name } if name == "child"),
    );
    assert_refused(
        fixture(),
        |store| {
            store
                .create_branch("new", "ghost", At::Latest, BranchOptions::default())
                .map(drop)
        },
        |e| matches!(e, EngineError::UnknownBranch { name } if name == "ghost"),
    );
}

#[test]
fn branch_point_past_the_parents_head_names_both_lsns() {
    let fixture = fixture();
    let head = fixture.store.branch_info("main").unwrap().head;
    let past = Lsn(head.0 + 8);
    assert_refused(
        fixture,
        move |store| {
            store
                .create_branch("new", "main", At::Lsn(past), BranchOptions::default())
                .map(drop)
        },
        move |e| matches!(e, EngineError::LsnPastHead { lsn, head: h, .. } if *lsn == past && *h == head),
    );
}

/// Below the root's start (0/1) a branch point is refused as a read there is, naming
/// both LSNs (below the parent's own start it is an ancestor's state: see
/// `regression_a_branch_point_by_time_below_the_branchs_start_is_the_ancestors_state`).
#[test]
fn branch_point_below_the_roots_start_names_both_lsns() {
    let fixture = fixture();
    let root_start = fixture.store.branch_info("main").unwrap().created_lsn;
    let below = Lsn(1);
    assert_refused(
        fixture,
        move |store| {
            store
                .create_branch("new", "child", At::Lsn(below), BranchOptions::default())
                .map(drop)
        },
        move |e| {
            matches!(e, EngineError::LsnBelowBranchStart { lsn, start, branch } if *lsn == below && *start == root_start && branch == "child")
                && e.to_string().contains(&below.to_string())
                && e.to_string().contains(&root_start.to_string())
        },
    );
}

/// `use_child` of `child` at an LSN below its start (`first`, its branch point), and at
/// 0/1, below its root's: refused naming both LSNs and `child`'s start.
fn refused_below_childs_start(
    use_child: impl Fn(&Store, Lsn) -> Result<(), EngineError> + Copy + 'static,
) {
    for below in [Lsn(fixture().first.0 - 8), Lsn(1)] {
        let fixture = fixture();
        let first = fixture.first;
        assert_refused(
            fixture,
            move |store| use_child(store, below),
            move |e| {
                matches!(e, EngineError::LsnBelowBranchStart { lsn, start, branch } if *lsn == below && *start == first && branch == "child")
                    && e.to_string().contains(&below.to_string())
                    && e.to_string().contains(&first.to_string())
            },
        );
    }
}

/// Issue 19: a lease at 0/0, 0/1 or below a branch's start was accepted and logged.
#[test]
fn lease_below_the_branchs_start_or_at_lsn_zero() {
    for lsn in [Lsn(0), Lsn(1)] {
        assert_refused(
            fixture(),
            move |store| store.lease("main", lsn, Duration::from_secs(60)).map(drop),
            move |e| matches!(e, EngineError::LsnBelowBranchStart { lsn: asked, .. } if *asked == lsn),
        );
    }
    // `child` branches from main at `first`: a lease below that is main's business, and
    // the refusal names `first`, also below the root's start.
    refused_below_childs_start(|store, below| {
        store
            .lease("child", below, Duration::from_secs(60))
            .map(drop)
    });
}

/// Issue 19: a read at LSN 0/0 answered "no such page" instead of a refusal. A read may
/// reach below a branch point into its ancestors' history, but not below the root's start.
#[test]
fn read_at_lsn_zero_is_refused_but_below_a_branch_point_reads_the_ancestor() {
    let fixture = fixture();
    let first = fixture.first;
    let below = Lsn(first.0 - 8);
    let inherited = fixture.store.get_page("child", K, At::Lsn(first)).unwrap();
    assert_eq!(inherited, Some(page_of(1)));
    let root_start = fixture.store.branch_info("main").unwrap().created_lsn;
    for lsn in [Lsn(0), Lsn(1), Lsn(root_start.0 - 1)] {
        let error = fixture
            .store
            .get_page("child", K, At::Lsn(lsn))
            .unwrap_err();
        assert!(
            matches!(&error, EngineError::LsnBelowBranchStart { lsn: asked, start, .. } if *asked == lsn && *start == root_start),
            "{error:?}"
        );
    }
    assert!(below >= root_start);
    assert_eq!(
        fixture.store.get_page("child", K, At::Lsn(below)).unwrap(),
        None
    );
}

/// Issue 19: an 8,000-year TTL was stored, and every view of the branch then failed.
#[test]
fn expiries_past_year_9999_are_refused_naming_the_limit() {
    let eight_thousand_years = Duration::from_secs(8_000 * 365 * 24 * 3600);
    let too_late = |e: &EngineError| {
        matches!(e, EngineError::ExpiryTooLate { latest, .. } if *latest == Timestamp::MAX)
            && e.to_string().contains("9999-12-31T23:59:59.999999Z")
    };
    let far = BranchOptions {
        expiry: Expiry::Ttl(eight_thousand_years),
        protected: false,
    };
    assert_refused(
        fixture(),
        move |store| {
            store
                .create_branch("far", "main", At::Latest, far)
                .map(drop)
        },
        too_late,
    );
    assert_refused(
        fixture(),
        move |store| {
            store
                .set_expiry("child", Expiry::Ttl(eight_thousand_years))
                .map(drop)
        },
        too_late,
    );
    assert_refused(
        fixture(),
        move |store| {
            store
                .set_expiry("child", Expiry::At(Timestamp(u64::MAX)))
                .map(drop)
        },
        too_late,
    );
    assert_refused(
        fixture(),
        move |store| {
            let head = store.branch_info("main")?.head;
            store.lease("main", head, eight_thousand_years).map(drop)
        },
        too_late,
    );
    // The limit itself is a time a store can hold, and shows.
    let fixture = fixture();
    let info = fixture
        .store
        .set_expiry("child", Expiry::At(Timestamp::MAX))
        .unwrap();
    assert_eq!(info.expires_at, Some(Timestamp::MAX));
    assert_eq!(
        info.expires_at.unwrap().to_string(),
        "9999-12-31T23:59:59.999999Z"
    );
}

#[test]
fn branch_at_a_time_before_the_history_gives_the_earliest_time() {
    let fixture = fixture();
    let earliest = fixture
        .store
        .lsn_for_time("main", pagefork_engine::Timestamp(u64::MAX))
        .unwrap()
        .commit_time;
    assert!(earliest.is_some());
    let first_commit_time = {
        let answer = fixture
            .store
            .lsn_for_time("main", pagefork_engine::Timestamp(0))
            .unwrap();
        assert_eq!(answer.kind, pagefork_engine::TimeKind::Past);
        answer.requested
    };
    assert_refused(
        fixture,
        move |store| {
            store
                .create_branch(
                    "new",
                    "main",
                    At::Time(first_commit_time),
                    BranchOptions::default(),
                )
                .map(drop)
        },
        |e| matches!(e, EngineError::TimeBeforeHistory { requested, earliest, .. } if *requested < *earliest),
    );
}

#[test]
fn delete_with_children_or_unknown() {
    assert_refused(
        fixture(),
        |store| store.delete_branch("main"),
        |e| matches!(e, EngineError::HasChildren { branch, children } if branch == "main" && children == "child"),
    );
    assert_refused(
        fixture(),
        |store| store.delete_branch("ghost"),
        |e| matches!(e, EngineError::UnknownBranch { .. }),
    );
}

#[test]
fn opening_with_another_page_size_or_no_store_is_refused() {
    let fixture = fixture();
    let dir = fixture.store.dir().unwrap().to_owned();
    drop(fixture.store);
    let (mut config, _clock) = engine_config(SyncMode::Always);
    config.page_size = 8192;
    let error = Store::open_with(&dir, config).unwrap_err();
    assert!(matches!(error, EngineError::InvalidConfig(_)), "{error}");
    let empty = tempfile::tempdir().unwrap();
    let error = Store::open(empty.path()).unwrap_err();
    assert!(matches!(error, EngineError::NotAStore { .. }), "{error}");
    let (config, _clock) = engine_config(SyncMode::Always);
    let error = Store::create(&dir, config).unwrap_err();
    assert!(matches!(error, EngineError::StoreExists { .. }), "{error}");
}

/// A window longer than a store keeps (u64 microseconds) was once answered as set and
/// kept about 584,542 years long: refused now, with the branch and the window named. The
/// longest it keeps is kept exactly, across a reopen.
#[test]
fn regression_a_pitr_window_longer_than_a_store_keeps_is_refused_not_shortened() {
    let too_long = MAX_PITR_WINDOW + Duration::from_micros(1);
    assert_refused(
        fixture(),
        move |store| store.set_pitr_window("child", Some(too_long)).map(drop),
        |error| {
            matches!(error, EngineError::PitrWindowTooLong { branch, window }
                if branch == "child" && *window == too_long)
        },
    );
    let fixture = fixture();
    let info = fixture
        .store
        .set_pitr_window("child", Some(MAX_PITR_WINDOW))
        .unwrap();
    assert_eq!(info.pitr_window, Some(MAX_PITR_WINDOW));
    let dir = fixture.store.dir().unwrap().to_owned();
    drop(fixture.store);
    let (config, _clock) = engine_config(SyncMode::Always);
    let reopened = Store::open_with(&dir, config).unwrap();
    assert_eq!(
        reopened.branch_info("child").unwrap().pitr_window,
        Some(MAX_PITR_WINDOW)
    );
}

/// A branch point asked for by time on a child, before the child's own branch point, is
/// the state of the child's ancestor there, as a read of the child at that time is: the
/// new branch is that ancestor's child, and says which time it snapped to. It was refused
/// (first as an LSN the request never named, then naming the time), and after a restore
/// without a backup the ancestor to use instead was hidden.
#[test]
fn regression_a_branch_point_by_time_below_the_branchs_start_is_the_ancestors_state() {
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = engine_config(SyncMode::Always);
    let store = Store::create(dir.path(), config).unwrap();
    let first = store
        .commit("main", vec![(K, Update::Image(page_of(1)))])
        .unwrap();
    clock.advance(Duration::from_secs(10));
    let second = store
        .commit("main", vec![(K, Update::Image(page_of(2)))])
        .unwrap();
    store
        .create_branch(
            "child",
            "main",
            At::Lsn(second.lsn),
            BranchOptions::default(),
        )
        .unwrap();
    let between = first.time.saturating_add(Duration::from_secs(5));
    let made = store
        .create_branch("x", "child", At::Time(between), BranchOptions::default())
        .unwrap();
    let parent = made.parent.unwrap();
    assert_eq!((parent.name.as_str(), parent.lsn), ("main", first.lsn));
    let answer = made.created_at_time.unwrap();
    assert_eq!((answer.requested, answer.lsn), (between, first.lsn));
    let read = |branch: &str| store.get_page(branch, K, At::Latest).unwrap();
    assert_eq!(read("x"), Some(page_of(1)));
    assert_eq!(
        store.get_page("child", K, At::Time(between)).unwrap(),
        Some(page_of(1))
    );
    // A restore from there too.
    let restored = store
        .restore_branch("main", "child", At::Time(between), Backup::Skip)
        .unwrap();
    assert_eq!(restored.branch.parent.unwrap().lsn, first.lsn);
    assert_eq!(read("main"), Some(page_of(1)));
}

/// A clock past the latest time a store can hold stamps nothing (found by a review: one
/// glitch stamped a commit past year 9999, and every later commit took that time); once
/// it reads right again, commits go on with its time.
#[test]
fn regression_a_clock_past_year_9999_logs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = engine_config(SyncMode::Always);
    let store = Store::create(dir.path(), config).unwrap();
    store
        .create_branch(
            "expiring",
            "main",
            At::Latest,
            BranchOptions {
                expiry: Expiry::Ttl(Duration::from_secs(3600)),
                protected: false,
            },
        )
        .unwrap();
    store
        .create_branch("lasting", "main", At::Latest, BranchOptions::default())
        .unwrap();
    let right = pagefork_engine::Clock::now(&clock);
    let head = store.branch_info("main").unwrap().head;
    clock.set(Timestamp(Timestamp::MAX.0 + 1));
    let refused = store
        .commit("main", vec![(K, Update::Image(page_of(3)))])
        .unwrap_err();
    assert!(
        matches!(refused, EngineError::ClockPastLatest { .. }),
        "{refused}"
    );
    assert!(
        store
            .create_branch("later", "main", At::Latest, BranchOptions::default())
            .is_err()
    );
    assert_eq!(store.branch_info("main").unwrap().head, head);
    // Nor does GC move cutoffs, or the sweep expire branches, at that time (the review
    // then found GC moving every cutoff to its head for good).
    let cutoff = store.branch_info("main").unwrap().gc_cutoff;
    assert!(matches!(
        store.gc().unwrap_err(),
        EngineError::ClockPastLatest { .. }
    ));
    assert_eq!(store.branch_info("main").unwrap().gc_cutoff, cutoff);
    assert!(store.sweep_expired().unwrap().is_empty());
    // Nor do a restore (whose default backup name cannot be written: it panicked), a
    // detach (which wrote its layers first) or a create (which made its files first).
    let files = pagefork_tests::tree_snapshot(dir.path());
    for refused in [
        store
            .restore_branch(
                "lasting",
                "main",
                At::Latest,
                pagefork_engine::Backup::Default,
            )
            .map(drop),
        store.detach_branch("lasting").map(drop),
    ] {
        assert!(
            matches!(refused, Err(EngineError::ClockPastLatest { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(pagefork_tests::tree_snapshot(dir.path()), files);
    let elsewhere = tempfile::tempdir().unwrap();
    let (mut past, _) = engine_config(SyncMode::Always);
    past.clock = std::sync::Arc::new(pagefork_engine::ManualClock::new(Timestamp(
        Timestamp::MAX.0 + 1,
    )));
    let refused = Store::create(elsewhere.path().join("new"), past).map(drop);
    assert!(
        matches!(refused, Err(EngineError::ClockPastLatest { .. })),
        "{refused:?}"
    );
    assert!(!elsewhere.path().join("new").exists());
    clock.set(right);
    let committed = store
        .commit("main", vec![(K, Update::Image(page_of(3)))])
        .unwrap();
    assert!(committed.time <= Timestamp::MAX && committed.time >= right);
    assert!(store.branch_info("expiring").is_ok());
}

/// The store's last usable branch cannot be deleted (found by a review: deleting main,
/// alone, left a store nothing could be branched from or written to again). Another
/// branch, even one that has only just been made, lets it go.
#[test]
fn regression_the_last_branch_is_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _clock) = engine_config(SyncMode::Always);
    let store = Store::create(dir.path(), config).unwrap();
    let refused = store.delete_branch("main").unwrap_err();
    assert!(
        matches!(refused, EngineError::LastBranch { .. }),
        "{refused}"
    );
    assert_eq!(store.list_branches().len(), 1);
    store
        .create_branch("next", "main", At::Latest, BranchOptions::default())
        .unwrap();
    store.detach_branch("next").unwrap();
    store.delete_branch("main").unwrap();
    let refused = store.delete_branch("next").unwrap_err();
    assert!(
        matches!(refused, EngineError::LastBranch { .. }),
        "{refused}"
    );
    // Nor may it expire: the sweep would delete it as surely (found by the review of
    // this fix). A branch that expires does not count as another.
    let ttl = BranchOptions {
        expiry: Expiry::Ttl(Duration::from_secs(60)),
        protected: false,
    };
    store
        .create_branch("brief", "next", At::Latest, ttl)
        .unwrap();
    let refused = store
        .set_expiry("next", Expiry::Ttl(Duration::from_secs(60)))
        .unwrap_err();
    assert!(
        matches!(refused, EngineError::LastBranch { .. }),
        "{refused}"
    );
    store.set_expiry("next", Expiry::Never).unwrap();
    store.delete_branch("brief").unwrap();
    assert_eq!(store.list_branches().len(), 1);
}

/// A restore whose default backup name would be too long says so and how to go on, not
/// "invalid branch name" for a name the user never gave (found by a review).
#[test]
fn regression_a_default_backup_name_too_long_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _clock) = engine_config(SyncMode::Always);
    let store = Store::create(dir.path(), config).unwrap();
    let long = "k".repeat(43);
    store
        .create_branch(&long, "main", At::Latest, BranchOptions::default())
        .unwrap();
    let refused = store
        .restore_branch(&long, &long, At::Latest, pagefork_engine::Backup::Default)
        .unwrap_err();
    let message = refused.to_string();
    assert!(
        matches!(refused, EngineError::DefaultBackupNameInvalid { .. })
            && message.contains("--backup-name")
            && message.contains(&format!("{long}_old_")),
        "{message}"
    );
    store
        .restore_branch(&long, &long, At::Latest, pagefork_engine::Backup::Skip)
        .unwrap();
}
