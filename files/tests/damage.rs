//! A tree whose pages lie is refused as damage, quickly and in bounded memory: anything
//! that can write pages to a branch (the page API) can write a tree's.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use pagefork_engine::{At, Config, Key, Store, Update};
use pagefork_files::{FileTree, FsError, TABLE_REL, TreeOptions};

/// Found by a review: a superblock claiming 2^32 inodes had every open (a mount, a file
/// diff) allocate a zeroed page for each table page it does not have, without end. A
/// missing table page below the high-water mark is damage, named as such.
#[test]
fn regression_a_superblock_claiming_more_inodes_than_its_table_holds_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), Config::default()).unwrap();
    drop(FileTree::open(store.clone(), "main", TreeOptions::default()).unwrap());
    let key = Key::new(TABLE_REL, 0);
    let mut superblock = store
        .get_page("main", key, At::Latest)
        .unwrap()
        .unwrap()
        .to_vec();
    // The inode high-water mark, then the CRC of the bytes before it (formats.md).
    superblock[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
    let crc = crc32fast::hash(&superblock[..24]);
    superblock[24..28].copy_from_slice(&crc.to_le_bytes());
    store
        .commit("main", vec![(key, Update::Image(superblock.into()))])
        .unwrap();
    let read_only = TreeOptions {
        read_only: true,
        ..TreeOptions::default()
    };
    let started = std::time::Instant::now();
    let error = FileTree::open(store, "main", read_only).err().unwrap();
    assert!(
        matches!(&error, FsError::Corrupt { what, detail }
            if what == "superblock" && detail.contains("inode table page 2")),
        "{error}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
