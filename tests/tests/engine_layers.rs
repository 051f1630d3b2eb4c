//! The store's layer files: versions move into them at checkpoints and are read back from
//! them; an unlisted file is crash debris and is removed on open; a listed file that is
//! missing, resized or damaged is an error naming it, never wrong data; a deleted branch's
//! layers are removed at the next checkpoint.

use std::path::{Path, PathBuf};

use pagefork_engine::{At, BranchOptions, EngineError, Key, Store, SyncMode, Update};
use pagefork_tests::{
    engine_config, manual_housekeeping, open_fails_changing_nothing, page_of, sorted_files,
};

fn layer_files(dir: &Path) -> Vec<PathBuf> {
    sorted_files(&dir.join("layers"))
}

/// A store whose pages 0..8 of relation 1 on `main` live in layer files, plus one open
/// version; automatic checkpoints are off so the test decides when layers are written.
fn store_with_layers(dir: &Path) -> Store {
    let (config, _clock) = engine_config(SyncMode::Always);
    let store = Store::create(dir, manual_housekeeping(config)).unwrap();
    for block in 0..8u32 {
        store
            .commit(
                "main",
                vec![(Key::new(1, block), Update::Image(page_of(block as u8)))],
            )
            .unwrap();
    }
    store.checkpoint().unwrap();
    store
        .commit("main", vec![(Key::new(1, 0), Update::Image(page_of(100)))])
        .unwrap();
    store.checkpoint().unwrap();
    store
}

fn reopen(dir: &Path) -> Result<Store, EngineError> {
    let (config, _clock) = engine_config(SyncMode::Always);
    Store::open_with(dir, manual_housekeeping(config))
}

#[test]
fn versions_live_in_layer_files_and_read_back_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_layers(dir.path());
    assert_eq!(
        layer_files(dir.path()).len(),
        2,
        "one delta layer per checkpoint with new versions"
    );
    drop(store);
    let store = reopen(dir.path()).unwrap();
    assert_eq!(
        store
            .get_page("main", Key::new(1, 0), At::Latest)
            .unwrap()
            .unwrap()[0],
        100
    );
    for block in 1..8u32 {
        assert_eq!(
            store
                .get_page("main", Key::new(1, block), At::Latest)
                .unwrap()
                .unwrap()[0],
            block as u8
        );
    }
}

#[test]
fn an_unlisted_layer_file_is_debris_and_is_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_layers(dir.path()));
    let debris = dir.path().join("layers").join(
        "00000000000000FF-0000000000000000-0000000000000000-0000000000000001-0000000000000002.l0",
    );
    std::fs::write(&debris, b"half a layer from a checkpoint that crashed").unwrap();
    let store = reopen(dir.path()).unwrap();
    assert!(!debris.exists(), "debris removed");
    assert_eq!(layer_files(dir.path()).len(), 2);
    assert_eq!(
        store
            .get_page("main", Key::new(1, 3), At::Latest)
            .unwrap()
            .unwrap()[0],
        3
    );
}

#[test]
fn a_missing_or_resized_listed_layer_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_layers(dir.path()));
    let layer = layer_files(dir.path()).remove(0);
    let bytes = std::fs::read(&layer).unwrap();

    std::fs::remove_file(&layer).unwrap();
    let error = open_fails_changing_nothing(dir.path(), || reopen(dir.path()));
    assert!(
        matches!(&error, EngineError::CorruptFile { path, .. } if path == &layer)
            && error.to_string().contains("missing"),
        "{error}"
    );

    std::fs::write(&layer, &bytes[..bytes.len() - 1]).unwrap();
    let error = open_fails_changing_nothing(dir.path(), || reopen(dir.path()));
    assert!(
        matches!(&error, EngineError::CorruptFile { path, .. } if path == &layer),
        "{error}"
    );

    std::fs::write(&layer, &bytes).unwrap();
    assert!(reopen(dir.path()).is_ok(), "restored, it opens again");
}

#[test]
fn a_damaged_block_is_an_error_naming_file_and_offset_never_wrong_data() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_layers(dir.path()));
    // The first checkpoint's layer, with pages 0..8 (the largest file).
    let layer = layer_files(dir.path())
        .into_iter()
        .max_by_key(|path| std::fs::metadata(path).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&layer).unwrap();
    // Inside the second data block, page 1's only version: each block is a 28-byte block
    // header, the 512-byte page and a 4-byte CRC, after the 64-byte file header. (The first
    // block is page 0's old image, which latest reads do not need: page 0 is newer above.)
    let second_block = 64 + (28 + 512 + 4);
    bytes[second_block + 28 + 10] ^= 0xFF;
    std::fs::write(&layer, &bytes).unwrap();
    let store = reopen(dir.path()).unwrap();
    let mut errors = 0;
    for block in 0..8u32 {
        match store.get_page("main", Key::new(1, block), At::Latest) {
            Ok(page) => {
                let expected = if block == 0 { 100 } else { block as u8 };
                assert_eq!(
                    page.unwrap()[0],
                    expected,
                    "block {block}: a read that succeeds is right"
                );
            }
            Err(EngineError::CorruptFile { path, offset, .. }) => {
                assert_eq!(path, layer);
                assert_eq!((block, offset), (1, second_block as u64));
                errors += 1;
            }
            Err(other) => panic!("block {block}: unexpected error {other}"),
        }
    }
    assert_eq!(errors, 1, "exactly the damaged version is refused");
}

#[test]
fn a_deleted_branchs_layers_are_removed_at_the_next_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_layers(dir.path());
    store
        .create_branch("dev", "main", At::Latest, BranchOptions::default())
        .unwrap();
    store
        .commit("dev", vec![(Key::new(5, 5), Update::Image(page_of(5)))])
        .unwrap();
    store.checkpoint().unwrap();
    assert_eq!(layer_files(dir.path()).len(), 3);
    store.delete_branch("dev").unwrap();
    store.checkpoint().unwrap();
    assert_eq!(layer_files(dir.path()).len(), 2, "dev's layer is gone");
    drop(store);
    let store = reopen(dir.path()).unwrap();
    assert!(store.branch_info("dev").is_err());
    assert_eq!(
        store
            .get_page("main", Key::new(1, 2), At::Latest)
            .unwrap()
            .unwrap()[0],
        2
    );
}
