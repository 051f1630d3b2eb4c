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
    let started = std::time::Instant::now();
    let error = FileTree::open(store, "main", read_only()).err().unwrap();
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
    // The side it was found on is named (found by a review: it was not).
    assert!(
        matches!(&error, FsError::Corrupt { what, .. }
            if what.contains(&format!("of the tree of branch \"main\" at LSN {}", pages.to_lsn))),
        "{error}"
    );
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
    // Directory b's parent (byte 36 of its slot) becomes c.
    rewrite_inode_field(&store, b, 36, u32::try_from(c).unwrap());
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

/// Rewrites the u32 at byte `field` of inode `ino`'s slot on `main`, CRC made right
/// (formats.md: inode n at byte (n % per_page) * 128 of table block 1 + n / per_page,
/// its link count at byte 16, its data relation at 20, its parent at 36, its CRC at 124).
fn rewrite_inode_field(store: &Store, ino: u64, field: usize, value: u32) {
    let per_page = 8192 / 128;
    let key = Key::new(TABLE_REL, 1 + u32::try_from(ino).unwrap() / per_page);
    let mut table = store
        .get_page("main", key, At::Latest)
        .unwrap()
        .unwrap()
        .to_vec();
    let slot = usize::try_from(ino % u64::from(per_page)).unwrap() * 128;
    table[slot + field..slot + field + 4].copy_from_slice(&value.to_le_bytes());
    let crc = crc32fast::hash(&table[slot..slot + 124]);
    table[slot + 124..slot + 128].copy_from_slice(&crc.to_le_bytes());
    store
        .commit("main", vec![(key, Update::Image(table.into()))])
        .unwrap();
}

/// The data relation of inode `ino` on `main`.
fn inode_rel(store: &Store, ino: u64) -> u32 {
    let per_page = 8192 / 128;
    let key = Key::new(TABLE_REL, 1 + u32::try_from(ino).unwrap() / per_page);
    let table = store.get_page("main", key, At::Latest).unwrap().unwrap();
    let slot = usize::try_from(ino % u64::from(per_page)).unwrap() * 128;
    u32::from_le_bytes(table[slot + 20..slot + 24].try_into().unwrap())
}

/// A tree with directory `d` holding file `d/f` of 8 KiB, synced; their inode numbers.
fn tree_with_a_file(store: &Store) -> (u64, u64) {
    let tree = FileTree::open(store.clone(), "main", TreeOptions::default()).unwrap();
    let d = tree.make_directory(tree.root(), b"d", OWNER).unwrap();
    let f = tree.create_file(d.ino, b"f", OWNER).unwrap();
    tree.write(f.ino, 0, &[7u8; 8192]).unwrap();
    tree.sync().unwrap();
    (d.ino, f.ino)
}

/// Opens `main` writable expecting damage whose message holds `words`, and checks the
/// refused open changed nothing.
fn assert_open_refused(store: &Store, words: &str) {
    let head = store.branch_info("main").unwrap().head;
    let error = FileTree::open(store.clone(), "main", TreeOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(&error, FsError::Corrupt { .. }) && error.to_string().contains(words),
        "{error}"
    );
    assert_eq!(store.branch_info("main").unwrap().head, head);
}

/// Found by a decoder review: a linked file whose link count reads 0 was freed as an
/// orphan (its data dropped) by the next writable open. It is damage, and the open that
/// finds it changes nothing.
#[test]
fn regression_a_linked_inode_without_links_is_damage_not_an_orphan() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), Config::default()).unwrap();
    let (_, f) = tree_with_a_file(&store);
    rewrite_inode_field(&store, f, 16, 0);
    assert_open_refused(&store, &format!("inode {f}: no links, yet directory"));
    let tree = FileTree::open(store, "main", read_only()).unwrap();
    assert_eq!(tree.read(f, 0, 8192).unwrap(), vec![7u8; 8192]);
}

/// See `regression_a_linked_inode_without_links_is_damage_not_an_orphan`: a root whose
/// link count reads 0 would have been freed, and the whole tree with it.
#[test]
fn regression_a_root_without_links_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), Config::default()).unwrap();
    let root = {
        tree_with_a_file(&store);
        FileTree::open(store.clone(), "main", TreeOptions::default())
            .unwrap()
            .root()
    };
    rewrite_inode_field(&store, root, 16, 0);
    assert_open_refused(&store, "the root is a directory with 0 links");
}

/// Found by a decoder review: two inodes holding one data relation, or one holding a
/// relation not handed out yet, had a write to one file change another (or a file still
/// to be created). Both are damage at open.
#[test]
fn regression_data_relations_held_twice_or_not_handed_out_are_damage() {
    for past_the_last in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path(), Config::default()).unwrap();
        let (d, f) = tree_with_a_file(&store);
        let f_rel = inode_rel(&store, f);
        if past_the_last {
            rewrite_inode_field(&store, f, 20, f_rel + 1000);
            assert_open_refused(&store, "at or above the next one to hand out");
        } else {
            rewrite_inode_field(&store, d, 20, f_rel);
            assert_open_refused(&store, &format!("data relation {f_rel}, which inode"));
        }
    }
}

/// Found by a decoder review: renames and unlinks went by a directory entry's kind, so
/// an entry calling a directory a file had an unlink drop the directory with its
/// children still in it, and an entry naming a free inode listed a file that is not
/// there. Both are damage when the directory is read.
#[test]
fn regression_an_entry_naming_a_free_inode_or_the_wrong_kind_is_damage() {
    // The root's entry `d` (a directory) says it is a file.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), Config::default()).unwrap();
    let (d, _) = tree_with_a_file(&store);
    let (key, mut page, at) = entry_in_page(&store, b"d");
    page[at + 4] = 1;
    put_dir_page(&store, key, page);
    let tree = FileTree::open(store.clone(), "main", TreeOptions::default()).unwrap();
    let error = tree.unlink(tree.root(), b"d").unwrap_err();
    assert!(
        error
            .to_string()
            .contains("as a file, which is a directory"),
        "{error}"
    );
    assert!(tree.attributes(d).is_ok());
    // The entry names an inode past every one in use.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), Config::default()).unwrap();
    tree_with_a_file(&store);
    let (key, mut page, at) = entry_in_page(&store, b"d");
    page[at..at + 4].copy_from_slice(&1000u32.to_le_bytes());
    put_dir_page(&store, key, page);
    let tree = FileTree::open(store, "main", TreeOptions::default()).unwrap();
    let error = tree.read_dir(tree.root()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("inode 1000, which is not in use"),
        "{error}"
    );
}

/// Found by a review: a file whose size reads 2^64-1 was listed so by `diff --files`, a
/// size no write can make (a data relation holds u32::MAX pages). It is damage at open.
#[test]
fn regression_a_file_larger_than_its_relation_holds_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), Config::default()).unwrap();
    let (_, f) = tree_with_a_file(&store);
    // The size, a u64 at byte 24, as two u32 halves.
    rewrite_inode_field(&store, f, 24, u32::MAX);
    rewrite_inode_field(&store, f, 28, u32::MAX);
    let error = FileTree::open(store, "main", read_only()).err().unwrap();
    assert!(
        error
            .to_string()
            .contains("a file of 18446744073709551615 bytes, more than its data relation holds"),
        "{error}"
    );
}

/// Found by a review of the check above: damage in one directory had every writable open
/// of a tree with orphans (files a crash left unlinked but open) refused, where the same
/// tree without orphans opens. The orphans stay (space, not data) and the tree opens; the
/// damage is said when the damaged directory is read.
#[test]
fn damage_elsewhere_keeps_orphans_and_the_tree_opens() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), Config::default()).unwrap();
    let (d, f) = tree_with_a_file(&store);
    {
        let tree = FileTree::open(store.clone(), "main", TreeOptions::default()).unwrap();
        tree.make_directory(tree.root(), b"other", OWNER).unwrap();
        // Open (looked up) when unlinked, then the process goes: an orphan.
        tree.lookup(d, b"f").unwrap();
        tree.unlink(d, b"f").unwrap();
        tree.sync().unwrap();
    }
    // The root's entry `other` (a directory) says it is a file.
    let (key, mut page, at) = entry_in_page(&store, b"other");
    page[at + 4] = 1;
    put_dir_page(&store, key, page);
    let tree = FileTree::open(store, "main", TreeOptions::default()).unwrap();
    assert_eq!(tree.attributes(f).unwrap().nlink, 0, "the orphan was kept");
    assert_eq!(tree.read(f, 0, 8192).unwrap(), vec![7u8; 8192]);
    let error = tree.read_dir(tree.root()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("as a file, which is a directory"),
        "{error}"
    );
}

/// Options for a read-only view of the latest state.
fn read_only() -> TreeOptions {
    TreeOptions {
        read_only: true,
        ..TreeOptions::default()
    }
}
