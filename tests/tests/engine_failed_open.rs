//! A failed open changes nothing on disk (DESIGN.md invariant 8): for every kind of
//! damage a store can suffer (its catalog lost or damaged, a listed layer lost or cut, a
//! WAL segment lost, cut short or damaged in the middle, the log's start removed), opening
//! is refused with an error naming the damage, and the directory tree is byte for byte
//! what it was: no debris removed, no torn tail zeroed, no segment dropped. The damaged
//! store also carries what a successful open would have cleaned up (a torn tail, an
//! unlisted layer, a temporary segment), so a refusal that cleaned first is caught.
//!
//! And on success: files not named like the store's own are left alone, and a store that
//! never published a catalog opens from its whole log.

use std::path::{Path, PathBuf};

use pagefork_engine::{
    At, BranchOptions, Config, EngineError, Key, Lsn, Store, SyncMode, Update, WalError,
};
use pagefork_tests::{
    copy_tree, engine_config, manual_housekeeping, open_fails_changing_nothing, page_of,
    segment_files,
};

fn config() -> Config {
    manual_housekeeping(engine_config(SyncMode::Always).0)
}

fn layer_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("layers"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

/// A store with history in layers, a branch at an old LSN, a published catalog, a WAL of
/// several 64 KiB segments whose first ones were removed, and commits after the catalog.
fn base_store(dir: &Path) {
    let store = Store::create(dir, config()).unwrap();
    let mut early = Lsn(0);
    for commit in 0..400u32 {
        let lsn = store
            .commit(
                "main",
                vec![(
                    Key::new(1, commit % 40),
                    Update::Image(page_of(commit as u8)),
                )],
            )
            .unwrap()
            .lsn;
        if commit == 10 {
            early = lsn;
        }
        if commit % 100 == 99 {
            store.checkpoint().unwrap();
        }
    }
    store
        .create_branch("old", "main", At::Lsn(early), BranchOptions::default())
        .unwrap();
    store
        .commit("old", vec![(Key::new(2, 0), Update::Image(page_of(2)))])
        .unwrap();
    store.checkpoint().unwrap();
    for commit in 0..300u32 {
        store
            .commit(
                "old",
                vec![(Key::new(3, commit % 10), Update::Image(page_of(3)))],
            )
            .unwrap();
    }
    drop(store);
    assert!(
        segment_files(&dir.join("wal")).len() >= 3,
        "the log spans several segments"
    );
    assert!(
        !segment_files(&dir.join("wal"))[0].ends_with("0000000000000000.wal"),
        "checkpoints removed the log's first segment"
    );
}

/// What a successful open would clean up: a torn record after the log's end, an unlisted
/// layer file, a temporary segment of a creation a crash interrupted.
fn add_debris(dir: &Path) {
    let wal = dir.join("wal");
    let last = segment_files(&wal).pop().unwrap();
    let bytes = std::fs::read(&last).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    let torn_at = end.next_multiple_of(8);
    let mut torn = bytes.clone();
    torn[torn_at..torn_at + 40].fill(0xA5);
    std::fs::write(&last, torn).unwrap();
    std::fs::write(
        dir.join("layers").join(
            "00000000000000FF-0000000000000000-0000000000000000-0000000000000001-0000000000000002.l0",
        ),
        b"half a layer from a cycle that crashed",
    )
    .unwrap();
    std::fs::write(
        wal.join("0000000009000000.wal.tmp"),
        b"a segment being created",
    )
    .unwrap();
}

/// Builds the base store once per case in a fresh directory, damages it with `damage`,
/// and returns the error of an open that must fail and change nothing.
fn damaged(damage: impl FnOnce(&Path)) -> (EngineError, tempfile::TempDir) {
    let base = tempfile::tempdir().unwrap();
    base_store(base.path());
    let copy = tempfile::tempdir().unwrap();
    copy_tree(base.path(), copy.path());
    add_debris(copy.path());
    damage(copy.path());
    let error =
        open_fails_changing_nothing(copy.path(), || Store::open_with(copy.path(), config()));
    (error, copy)
}

#[test]
fn a_missing_catalog_beside_layers_is_refused_by_name_and_nothing_is_removed() {
    let (error, dir) = damaged(|dir| std::fs::remove_file(dir.join("catalog")).unwrap());
    assert!(
        matches!(&error, EngineError::CatalogMissing { catalog, layer_files, .. }
            if catalog == &dir.path().join("catalog") && *layer_files > 1),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("Restore the catalog or the segments"),
        "{error}"
    );
}

#[test]
fn a_damaged_catalog_is_refused_and_nothing_is_removed() {
    let (error, _dir) = damaged(|dir| {
        let path = dir.join("catalog");
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
    });
    assert!(matches!(&error, EngineError::CorruptFile { .. }), "{error}");
}

/// Found by a review: a catalog whose checksum holds but whose first branch has the id
/// `u64::MAX` panicked every command (`recover` too) with an overflow. It is damage,
/// named as such.
#[test]
fn regression_a_catalog_with_the_largest_branch_id_is_refused_not_a_panic() {
    let (error, _dir) = damaged(|dir| {
        let path = dir.join("catalog");
        let mut bytes = std::fs::read(&path).unwrap();
        // The first branch's id (the layout in engine/src/checkpoint.rs).
        bytes[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
        let body = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
    });
    assert!(
        matches!(&error, EngineError::CorruptFile { .. })
            && error
                .to_string()
                .contains("leaves no id for another branch"),
        "{error}"
    );
}

#[test]
fn a_missing_or_cut_listed_layer_is_refused_and_nothing_is_removed() {
    let (error, _dir) = damaged(|dir| std::fs::remove_file(&layer_files(dir)[0]).unwrap());
    assert!(error.to_string().contains("missing"), "{error}");
    let (error, _dir) = damaged(|dir| {
        let layer = &layer_files(dir)[0];
        let bytes = std::fs::read(layer).unwrap();
        std::fs::write(layer, &bytes[..bytes.len() - 1]).unwrap();
    });
    assert!(matches!(&error, EngineError::CorruptFile { .. }), "{error}");
}

#[test]
fn a_missing_last_wal_segment_is_refused_naming_it_and_the_lsns_lost() {
    let mut removed = PathBuf::new();
    let (error, _dir) = damaged(|dir| {
        removed = segment_files(&dir.join("wal")).pop().unwrap();
        std::fs::remove_file(&removed).unwrap();
    });
    match &error {
        EngineError::Wal(WalError::MissingSegment {
            path, lost_from, ..
        }) => {
            assert_eq!(path, &removed);
            assert!(error.to_string().contains(&lost_from.to_string()));
        }
        other => panic!("expected MissingSegment, got {other}"),
    }
}

#[test]
fn a_wal_segment_cut_mid_record_is_refused_and_nothing_is_changed() {
    let (error, _dir) = damaged(|dir| {
        let last = segment_files(&dir.join("wal")).pop().unwrap();
        let bytes = std::fs::read(&last).unwrap();
        std::fs::write(&last, &bytes[..bytes.len() / 3 + 5]).unwrap();
    });
    assert!(
        matches!(&error, EngineError::Wal(WalError::BadSegment { .. })),
        "{error}"
    );
}

#[test]
fn wal_damage_a_later_record_proves_durable_is_refused_and_nothing_is_changed() {
    let (error, _dir) = damaged(|dir| {
        let last = segment_files(&dir.join("wal")).pop().unwrap();
        let mut bytes = std::fs::read(&last).unwrap();
        // A byte inside the segment's first record's payload.
        bytes[24 + 24 + 3] ^= 0x40;
        std::fs::write(&last, bytes).unwrap();
    });
    assert!(
        matches!(&error, EngineError::Wal(WalError::CorruptedInMiddle { .. })),
        "{error}"
    );
}

#[test]
fn a_wal_whose_start_was_removed_is_refused_naming_the_gap() {
    let (error, _dir) = damaged(|dir| {
        let first = segment_files(&dir.join("wal")).remove(0);
        std::fs::remove_file(first).unwrap();
    });
    assert!(
        matches!(&error, EngineError::WalGap { replay_from, wal_start, .. } if replay_from < wal_start),
        "{error}"
    );
}

#[test]
fn a_damaged_store_metadata_file_is_refused_and_nothing_is_changed() {
    let (error, _dir) = damaged(|dir| {
        let path = dir.join("pagefork.meta");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[6] ^= 0x10;
        std::fs::write(&path, bytes).unwrap();
    });
    assert!(
        matches!(
            &error,
            EngineError::CorruptFile { .. } | EngineError::NotAStore { .. }
        ),
        "{error}"
    );
}

/// On success the debris goes (torn tail zeroed, unlisted layer and temporary segment
/// removed), and a file that is not the store's stays.
#[test]
fn a_successful_open_removes_only_the_stores_own_debris() {
    let dir = tempfile::tempdir().unwrap();
    base_store(dir.path());
    add_debris(dir.path());
    let readme = dir.path().join("layers").join("README.txt");
    std::fs::write(&readme, b"notes a user keeps beside the layers").unwrap();
    let notes = dir.path().join("wal").join("notes.txt");
    std::fs::write(&notes, b"and beside the log").unwrap();
    let store = Store::open_with(dir.path(), config()).unwrap();
    let tail = store
        .recovery()
        .unwrap()
        .dropped_tail
        .clone()
        .expect("the torn record is reported");
    assert_eq!(tail.bytes, 40);
    assert_eq!(tail.records, 0);
    drop(store);
    assert!(
        readme.exists() && notes.exists(),
        "files not the store's stay"
    );
    assert!(
        !dir.path()
            .join("wal")
            .join("0000000009000000.wal.tmp")
            .exists()
    );
    assert!(
        !layer_files(dir.path())
            .iter()
            .any(|path| path.to_string_lossy().contains("00000000000000FF-")),
        "the unlisted layer is debris"
    );
    let store = Store::open_with(dir.path(), config()).unwrap();
    assert!(store.recovery().unwrap().dropped_tail.is_none());
    assert_eq!(
        store.get_page("old", Key::new(2, 0), At::Latest).unwrap(),
        Some(page_of(2))
    );
}

/// A store that never published a catalog is replayed from its whole log, which still
/// starts at LSN 0: a layer file beside it is debris of a first cycle that crashed.
#[test]
fn a_store_that_never_published_a_catalog_opens_from_its_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), config()).unwrap();
    store
        .commit("main", vec![(Key::new(1, 0), Update::Image(page_of(9)))])
        .unwrap();
    drop(store);
    std::fs::create_dir_all(dir.path().join("layers")).unwrap();
    add_debris(dir.path());
    let store = Store::open_with(dir.path(), config()).unwrap();
    assert_eq!(
        store.get_page("main", Key::new(1, 0), At::Latest).unwrap(),
        Some(page_of(9))
    );
    assert!(layer_files(dir.path()).is_empty(), "debris removed");
}

/// A store that lost its `pagefork.meta` is not overwritten by a create (found by a
/// review: `init` wiped its log), and opening it says to restore the file; the debris of
/// a create that stopped before its metadata (its marker, a log) is still cleared.
#[test]
fn regression_a_create_refuses_a_store_that_lost_its_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), config()).unwrap();
    store
        .commit("main", vec![(Key::new(1, 0), Update::Image(page_of(7)))])
        .unwrap();
    store.checkpoint().unwrap();
    drop(store);
    assert!(!dir.path().join("pagefork.creating").exists());
    std::fs::remove_file(dir.path().join("pagefork.meta")).unwrap();
    // A stale marker beside a catalog does not make the store debris either (open and
    // create decide alike; the review of this fix found open calling it no store).
    std::fs::write(dir.path().join("pagefork.creating"), b"").unwrap();
    let before = pagefork_tests::tree_snapshot(dir.path());
    let refused = Store::create(dir.path(), config()).unwrap_err();
    assert!(
        matches!(refused, EngineError::StoreFilesWithoutMeta { .. }),
        "{refused}"
    );
    assert!(refused.to_string().contains("wal"), "{refused}");
    let opened = Store::open_with(dir.path(), config()).unwrap_err();
    assert!(
        matches!(opened, EngineError::MetaMissing { .. }),
        "{opened}"
    );
    assert!(
        opened.to_string().contains("restore pagefork.meta"),
        "{opened}"
    );
    assert_eq!(pagefork_tests::tree_snapshot(dir.path()), before);

    // A create that stopped before its metadata: the marker and a log, cleared.
    let stopped = tempfile::tempdir().unwrap();
    std::fs::write(stopped.path().join("pagefork.creating"), b"").unwrap();
    std::fs::create_dir(stopped.path().join("wal")).unwrap();
    std::fs::write(stopped.path().join("wal/0000000000000000.wal"), b"half").unwrap();
    let store = Store::create(stopped.path(), config()).unwrap();
    assert_eq!(
        store.get_page("main", Key::new(1, 0), At::Latest).unwrap(),
        None
    );
    drop(store);
    assert!(!stopped.path().join("pagefork.creating").exists());
    Store::open_with(stopped.path(), config()).unwrap();
}

/// A create marker beside published metadata (a crash right after the create) is
/// removed by the next open, so it can never make a later create take the store's log
/// for debris (found by a review).
#[test]
fn regression_a_stale_create_marker_is_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::create(dir.path(), config()).unwrap());
    std::fs::write(dir.path().join("pagefork.creating"), b"").unwrap();
    drop(Store::open_with(dir.path(), config()).unwrap());
    assert!(!dir.path().join("pagefork.creating").exists());
}
