//! `set_attributes` commits what changes and nothing else: the kernel's writeback cache
//! writes back times it got from the tree after every rename and unlink, and a commit for
//! each would double what those cost.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use pagefork_engine::{Config, Store};
use pagefork_files::{FileTime, FileTree, Owner, SetAttributes, TreeOptions};

fn tree(dir: &std::path::Path) -> FileTree {
    let store = Store::create(dir, Config::default()).unwrap();
    FileTree::open(store, "main", TreeOptions::default()).unwrap()
}

const OWNER: Owner = Owner {
    mode: 0o644,
    uid: 0,
    gid: 0,
};

#[test]
fn restating_a_files_times_commits_nothing_and_changing_them_commits() {
    let dir = tempfile::tempdir().unwrap();
    let tree = tree(dir.path());
    let made = tree.create_file(tree.root(), b"f", OWNER).unwrap();
    let before = tree.last_lsn();

    let same = SetAttributes {
        mtime: Some(made.mtime),
        atime: Some(made.atime),
        ..SetAttributes::default()
    };
    let answer = tree.set_attributes(made.ino, same).unwrap();
    assert_eq!(tree.last_lsn(), before, "the same times: no commit");
    assert_eq!((answer.mtime, answer.atime), (made.mtime, made.atime));

    let later = FileTime {
        secs: made.mtime.secs + 10,
        nanos: 5,
    };
    let moved = SetAttributes {
        mtime: Some(later),
        ..SetAttributes::default()
    };
    let answer = tree.set_attributes(made.ino, moved).unwrap();
    assert!(tree.last_lsn() > before, "a new mtime is committed");
    assert_eq!(answer.mtime, later);
    assert_eq!(tree.attributes(made.ino).unwrap().mtime, later);
}

#[test]
fn a_chmod_or_chown_to_what_is_there_still_commits() {
    let dir = tempfile::tempdir().unwrap();
    let tree = tree(dir.path());
    let made = tree.create_file(tree.root(), b"f", OWNER).unwrap();
    for changes in [
        SetAttributes {
            mode: Some(0o644),
            ..SetAttributes::default()
        },
        SetAttributes {
            uid: Some(0),
            gid: Some(0),
            ..SetAttributes::default()
        },
        SetAttributes {
            size: Some(0),
            ..SetAttributes::default()
        },
    ] {
        let before = tree.last_lsn();
        tree.set_attributes(made.ino, changes).unwrap();
        assert!(
            tree.last_lsn() > before,
            "{changes:?} moves the change time"
        );
    }
}

#[test]
fn an_unlinked_files_restated_times_commit_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tree = tree(dir.path());
    let made = tree.create_file(tree.root(), b"f", OWNER).unwrap();
    tree.unlink(tree.root(), b"f").unwrap();
    let before = tree.last_lsn();
    let same = SetAttributes {
        mtime: Some(made.mtime),
        ..SetAttributes::default()
    };
    tree.set_attributes(made.ino, same).unwrap();
    assert_eq!(tree.last_lsn(), before);
    tree.forget(made.ino, 1).unwrap();
    assert!(
        tree.last_lsn() > before,
        "the last reference frees the inode"
    );
}

/// With `kernel_keeps_times` (a writable FUSE mount's writeback cache), a write leaves the
/// modification and change times to the kernel, which sets both with `set_attributes`.
#[test]
fn a_tree_whose_kernel_keeps_times_stores_the_kernels() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), Config::default()).unwrap();
    let options = TreeOptions {
        kernel_keeps_times: true,
        ..TreeOptions::default()
    };
    let tree = FileTree::open(store, "main", options).unwrap();
    let made = tree.create_file(tree.root(), b"f", OWNER).unwrap();
    tree.write(made.ino, 0, b"written").unwrap();
    let after_write = tree.attributes(made.ino).unwrap();
    assert_eq!(
        (after_write.mtime, after_write.ctime),
        (made.mtime, made.ctime)
    );
    let kernels = FileTime {
        secs: made.mtime.secs + 3,
        nanos: 948_033_558,
    };
    let set = SetAttributes {
        mtime: Some(kernels),
        ctime: Some(kernels),
        ..SetAttributes::default()
    };
    tree.set_attributes(made.ino, set).unwrap();
    let stored = tree.attributes(made.ino).unwrap();
    assert_eq!((stored.mtime, stored.ctime), (kernels, kernels));
    // Restated, the same times commit nothing.
    let before = tree.last_lsn();
    tree.set_attributes(made.ino, set).unwrap();
    assert_eq!(tree.last_lsn(), before);
}

/// Found by a review of the inode decoder's new check: a time with nanoseconds past a
/// second was written as given, leaving a tree every later open called damaged. It is
/// refused, and nothing is committed.
#[test]
fn a_time_past_a_second_of_nanoseconds_is_refused_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tree = tree(dir.path());
    let made = tree.create_file(tree.root(), b"f", OWNER).unwrap();
    let before = tree.last_lsn();
    let bad = SetAttributes {
        mtime: Some(FileTime {
            secs: 7,
            nanos: 2_000_000_000,
        }),
        ..SetAttributes::default()
    };
    let error = tree.set_attributes(made.ino, bad).unwrap_err();
    assert!(
        error.to_string().contains("2000000000 nanoseconds"),
        "{error}"
    );
    assert_eq!(tree.last_lsn(), before);
    assert_eq!(tree.attributes(made.ino).unwrap().mtime, made.mtime);
}
