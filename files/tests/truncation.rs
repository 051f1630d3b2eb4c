//! A truncation too big for one commit is still one operation: every LSN shows the file
//! whole before it or whole after it, and a branch taken while the pages above the new
//! size were still being dropped grows the file back with zeros, never with them.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use pagefork_engine::{At, BranchOptions, Config, Lsn, Store};
use pagefork_files::{FileTree, Owner, ROOT_INO, SetAttributes, TreeOptions};

const PAGE_SIZE: usize = 512;

fn byte_at(offset: u64) -> u8 {
    (offset % 251) as u8 + 1
}

fn head(store: &Store, branch: &str) -> Lsn {
    store.branch_info(branch).unwrap().head
}

fn size_of(tree: &FileTree, name: &[u8]) -> u64 {
    let found = tree.lookup(u64::from(ROOT_INO), name).unwrap();
    tree.forget(found.ino, 1).unwrap();
    found.size
}

fn resize(tree: &FileTree, ino: u64, size: u64) {
    let changes = SetAttributes {
        size: Some(size),
        ..SetAttributes::default()
    };
    tree.set_attributes(ino, changes).unwrap();
}

/// A store of small commits (a commit drops a few thousand pages at most) whose tree holds
/// one file, `f`, not held open, of `commits` times the pages one commit can drop (each
/// drop costs more than 16 bytes): the store's directory, the store, the tree, the file's
/// inode and its size.
fn store_with_a_big_file(commits: u64) -> (tempfile::TempDir, Store, FileTree, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        page_size: PAGE_SIZE,
        wal_segment_size: 256 << 10,
        ..Config::default()
    };
    let store = Store::create(dir.path(), config).unwrap();
    let tree = FileTree::open(store.clone(), "main", TreeOptions::default()).unwrap();
    let owner = Owner {
        mode: 0o644,
        uid: 0,
        gid: 0,
    };
    let ino = tree
        .create_file(u64::from(ROOT_INO), b"f", owner)
        .unwrap()
        .ino;
    // Not held open (a create takes a reference, as the kernel's lookup does).
    tree.forget(ino, 1).unwrap();
    let size = store.max_commit_bytes() / 16 * commits * PAGE_SIZE as u64;
    let chunk = u64::from(tree.max_write());
    let mut at = 0;
    while at < size {
        let len = chunk.min(size - at);
        let data: Vec<u8> = (at..at + len).map(byte_at).collect();
        tree.write(ino, at, &data).unwrap();
        at += len;
    }
    (dir, store, tree, ino, size)
}

/// Found by a review: the pages above the new size went first, in commits that each
/// showed a smaller file, so a branch, a past view or a power cut could show a size
/// nobody asked for.
#[test]
fn a_truncation_of_more_pages_than_a_commit_drops_is_one_commit() {
    // Four times the pages one commit can drop.
    let (_dir, store, tree, ino, old_size) = store_with_a_big_file(4);
    let new_size = 100 * PAGE_SIZE as u64 + 17;
    let before = head(&store, "main");
    resize(&tree, ino, new_size);
    let after = head(&store, "main");
    tree.sync().unwrap();
    assert_eq!(size_of(&tree, b"f"), new_size);

    let (mut views, mut branches, mut truncated) = (0, 0, 0);
    let step = ((after.0 - before.0) / 60).max(1);
    for lsn in (before.0..=after.0).step_by(usize::try_from(step).unwrap()) {
        let at = At::Lsn(Lsn(lsn));
        let options = TreeOptions {
            read_only: true,
            at,
            ..TreeOptions::default()
        };
        let view = FileTree::open(store.clone(), "main", options).unwrap();
        let size = size_of(&view, b"f");
        assert!(
            size == old_size || size == new_size,
            "at {lsn:#x} the file has {size} bytes, neither {old_size} nor {new_size}"
        );
        views += 1;
        if size != new_size {
            continue;
        }
        truncated += 1;
        if truncated % 6 != 1 {
            continue;
        }
        // A branch here may hold pages above the new size not dropped yet: opened for
        // writing, it drops them before anything else, and the file grows with zeros.
        let name = format!("at-{lsn:x}");
        store
            .create_branch(&name, "main", at, BranchOptions::default())
            .unwrap();
        let branch = FileTree::open(store.clone(), &name, TreeOptions::default()).unwrap();
        // A write at the old end grows it back, and raises the extent over every block
        // the truncation dropped.
        branch.write(ino, old_size - 1, &[0]).unwrap();
        let kept = branch
            .read(ino, 0, u32::try_from(new_size).unwrap())
            .unwrap();
        assert!(
            kept.iter()
                .enumerate()
                .all(|(offset, &byte)| byte == byte_at(offset as u64))
        );
        // A sample of the pages above the new size, each of which held data.
        let pages = (old_size - new_size) / PAGE_SIZE as u64;
        for page in (0..pages).step_by(usize::try_from(pages / 97).unwrap().max(1)) {
            let offset = new_size + page * PAGE_SIZE as u64;
            let grown = branch.read(ino, offset, PAGE_SIZE as u32).unwrap();
            assert!(
                grown.iter().all(|&byte| byte == 0),
                "branch at {lsn:#x}: a dropped page came back at byte {offset}"
            );
        }
        branches += 1;
    }
    assert!(
        views > 30 && branches > 0 && truncated > 0,
        "{views} {branches}"
    );
}

/// Found by a review: an unlink or a truncation to zero of a file with more pages than
/// one commit drops let its relation go in one commit and dropped the rest after it; a
/// crash in between kept those pages for good, since nothing named them any more. The
/// superblock now names the relation until its pages are dropped, and a writable open
/// finishes the drops: a branch taken in between, opened for writing, holds none of them.
#[test]
fn the_pages_of_a_big_file_let_go_are_dropped_even_after_a_crash_between() {
    for unlink in [true, false] {
        let (_dir, store, tree, ino, size) = store_with_a_big_file(3);
        // The first file's relation: the root holds the first one handed out.
        let rel = pagefork_files::FIRST_DATA_REL + 1;
        let last_block = u32::try_from(size / PAGE_SIZE as u64 - 1).unwrap();
        assert!(
            store
                .get_page(
                    "main",
                    pagefork_engine::Key::new(rel, last_block),
                    At::Latest
                )
                .unwrap()
                .is_some(),
            "the file's relation"
        );
        let before = head(&store, "main");
        match unlink {
            true => tree.unlink(u64::from(ROOT_INO), b"f").unwrap(),
            false => resize(&tree, ino, 0),
        }
        let after = head(&store, "main");
        tree.sync().unwrap();
        let page_at = |branch: &str, at: At| {
            store
                .get_page(branch, pagefork_engine::Key::new(rel, last_block), at)
                .unwrap()
        };
        assert!(page_at("main", At::Latest).is_none(), "unlink {unlink}");
        let mut between = 0;
        let step = ((after.0 - before.0) / 12).max(1);
        for lsn in (before.0..=after.0).step_by(usize::try_from(step).unwrap()) {
            let at = At::Lsn(Lsn(lsn));
            if page_at("main", at).is_none() {
                continue;
            }
            // The relation is let go but its last page not dropped yet: a crash here
            // would have kept it. A branch here, opened for writing, drops it.
            let options = TreeOptions {
                read_only: true,
                at,
                ..TreeOptions::default()
            };
            let view = FileTree::open(store.clone(), "main", options).unwrap();
            let listed = view.lookup(u64::from(ROOT_INO), b"f");
            let gone = match unlink {
                true => listed.is_err(),
                false => listed.unwrap().size == 0,
            };
            if !gone {
                continue;
            }
            between += 1;
            let name = format!("at-{lsn:x}");
            store
                .create_branch(&name, "main", at, BranchOptions::default())
                .unwrap();
            assert!(page_at(&name, At::Latest).is_some());
            drop(FileTree::open(store.clone(), &name, TreeOptions::default()).unwrap());
            assert!(
                page_at(&name, At::Latest).is_none(),
                "unlink {unlink}: the branch at {lsn:#x} kept the pages of a file let go"
            );
        }
        assert!(between > 0, "unlink {unlink}: no LSN between");
    }
}
