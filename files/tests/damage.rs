//! A tree whose pages lie is refused as damage, quickly and in bounded memory: anything
//! that can write pages to a branch (the page API) can write a tree's.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use pagefork_engine::{At, BranchOptions, Config, Key, Store, Update};
use pagefork_files::{
    FIRST_DATA_REL, FileTree, FsError, Owner, TABLE_REL, TreeOptions, diff_trees,
};

/// Who makes the directories and files of these trees.
const OWNER: Owner = Owner {
    mode: 0o755,
    uid: 0,
    gid: 0,
};

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
    // (The most a superblock may claim, half of what a u32 holds: more is refused first.)
    superblock[20..24].copy_from_slice(&(u32::MAX / 2).to_le_bytes());
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

/// The data relation holding `name`'s entry in one of the first directories made, with
/// the entry's byte offset in its page 0 (formats.md: entries from byte 8, each an inode
/// u32, a kind u8, a name length u8 and the name).
fn entry_in_page(store: &Store, name: &[u8]) -> (Key, Vec<u8>, usize) {
    for rel in FIRST_DATA_REL..FIRST_DATA_REL + 8 {
        let key = Key::new(rel, 0);
        let Some(page) = store.get_page("main", key, At::Latest).unwrap() else {
            continue;
        };
        let mut at = 8;
        let count = usize::from(u16::from_le_bytes([page[2], page[3]]));
        for _ in 0..count {
            let len = usize::from(page[at + 5]);
            if &page[at + 6..at + 6 + len] == name {
                return (key, page.to_vec(), at);
            }
            at += 6 + len;
        }
    }
    panic!("no entry {name:?}");
}

/// `page`, a directory page, with its CRC (of bytes 0..4 and 8..) made right, committed.
fn put_dir_page(store: &Store, key: Key, mut page: Vec<u8>) {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&page[..4]);
    hasher.update(&page[8..]);
    let crc = hasher.finalize();
    page[4..8].copy_from_slice(&crc.to_le_bytes());
    store
        .commit("main", vec![(key, Update::Image(page.into()))])
        .unwrap();
}

/// Found by a review: a directory entry naming the directory it is in made `--files`
/// diffs list paths without end, and two directories each the other's parent hung every
/// rename into them. Both are damage, said at once.
#[test]
fn regression_directories_that_loop_are_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), Config::default()).unwrap();
    {
        let tree = FileTree::open(store.clone(), "main", TreeOptions::default()).unwrap();
        let a = tree.make_directory(tree.root(), b"a", OWNER).unwrap();
        tree.create_file(a.ino, b"x", OWNER).unwrap();
        tree.sync().unwrap();
    }
    store
        .create_branch("before", "main", At::Latest, BranchOptions::default())
        .unwrap();
    // `a/x` becomes an entry naming `a` itself, as a directory.
    let (key, mut page, at) = entry_in_page(&store, b"x");
    let a_ino = {
        let (_, root_page, root_at) = entry_in_page(&store, b"a");
        u32::from_le_bytes(root_page[root_at..root_at + 4].try_into().unwrap())
    };
    page[at..at + 4].copy_from_slice(&a_ino.to_le_bytes());
    page[at + 4] = 2;
    put_dir_page(&store, key, page);
    let started = std::time::Instant::now();
    let pages = store
        .diff("before", At::Latest, "main", At::Latest)
        .unwrap();
    let error = diff_trees(&store, "before", "main", &pages).unwrap_err();
    assert!(matches!(&error, FsError::Corrupt { .. }), "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// See `regression_directories_that_loop_are_damage`: two directories each the other's
/// parent (their inode slots rewritten, CRCs right) make a rename into them damage.
#[test]
fn regression_a_loop_of_parent_directories_is_damage_to_a_rename() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), Config::default()).unwrap();
    let (b, c) = {
        let tree = FileTree::open(store.clone(), "main", TreeOptions::default()).unwrap();
        let b = tree.make_directory(tree.root(), b"b", OWNER).unwrap();
        let c = tree.make_directory(b.ino, b"c", OWNER).unwrap();
        tree.make_directory(tree.root(), b"d", OWNER).unwrap();
        tree.sync().unwrap();
        (b.ino, c.ino)
    };
    // Directory b's parent becomes c (formats.md: inode n at byte (n % per_page) * 128
    // of table block 1 + n / per_page; its parent at byte 36, its CRC at 124).
    let per_page = 8192 / 128;
    let key = Key::new(TABLE_REL, 1 + u32::try_from(b).unwrap() / per_page);
    let mut table = store
        .get_page("main", key, At::Latest)
        .unwrap()
        .unwrap()
        .to_vec();
    let slot = usize::try_from(b % u64::from(per_page)).unwrap() * 128;
    table[slot + 36..slot + 40].copy_from_slice(&u32::try_from(c).unwrap().to_le_bytes());
    let crc = crc32fast::hash(&table[slot..slot + 124]);
    table[slot + 124..slot + 128].copy_from_slice(&crc.to_le_bytes());
    store
        .commit("main", vec![(key, Update::Image(table.into()))])
        .unwrap();
    let tree = FileTree::open(store, "main", TreeOptions::default()).unwrap();
    let started = std::time::Instant::now();
    let error = tree
        .rename(tree.root(), b"d", c, b"d", false)
        .err()
        .unwrap();
    assert!(
        matches!(&error, FsError::Corrupt { detail, .. } if detail.contains("loops")),
        "{error}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
