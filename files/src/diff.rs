//! `diff_trees`: a page diff between two branch states, told as files: which paths were
//! added, removed or changed (with their sizes), found by walking both trees and matching
//! every file's data relation against the relations whose pages differ.
//!
//! A file counts as changed when its kind, size or data relation differs, or when a page
//! of its relation differs between the two states; a change of mode, owner or times alone
//! does not count. A state whose branch holds no tree is an empty tree.

use std::collections::{BTreeMap, BTreeSet};

use pagefork_engine::{At, PageDiff, Store};

use crate::error::{FsError, FsResult};
use crate::inode::FileKind;
use crate::tree::{FileTree, TreeOptions};

/// One file that differs.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FileChange {
    /// Its path from the root, `/`-separated (names lossily as UTF-8).
    pub path: String,
    /// What it is (in the second state, or the first if removed).
    pub kind: FileKind,
    /// Its size in the second state (the first, if removed).
    pub bytes: u64,
    /// Its size in the first state, for a changed file.
    pub previous_bytes: Option<u64>,
}

/// Files added, removed and changed from one state to another, each in path order.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct TreeDiff {
    /// Only in the second state.
    pub added: Vec<FileChange>,
    /// Only in the first state.
    pub removed: Vec<FileChange>,
    /// In both, with different contents.
    pub changed: Vec<FileChange>,
}

/// What a walk found at a path: kind, size, data relation.
type Entry = (FileKind, u64, u32);

/// The file-level view of `pages`, the diff of `from` (at `pages.from_lsn`) and `to` (at
/// `pages.to_lsn`).
pub fn diff_trees(store: &Store, from: &str, to: &str, pages: &PageDiff) -> FsResult<TreeDiff> {
    let before = walk(store, from, pages.from_lsn)?;
    let after = walk(store, to, pages.to_lsn)?;
    let touched: BTreeSet<u32> = pages.by_relation().into_keys().collect();
    let mut diff = TreeDiff::default();
    for (path, &(kind, bytes, rel)) in &after {
        match before.get(path) {
            None => diff.added.push(FileChange {
                path: path.clone(),
                kind,
                bytes,
                previous_bytes: None,
            }),
            Some(&(old_kind, old_bytes, old_rel)) => {
                let differs = old_kind != kind
                    || old_bytes != bytes
                    || old_rel != rel
                    || (kind != FileKind::Directory && touched.contains(&rel));
                if differs {
                    diff.changed.push(FileChange {
                        path: path.clone(),
                        kind,
                        bytes,
                        previous_bytes: Some(old_bytes),
                    });
                }
            }
        }
    }
    for (path, &(kind, bytes, _)) in &before {
        if !after.contains_key(path) {
            diff.removed.push(FileChange {
                path: path.clone(),
                kind,
                bytes,
                previous_bytes: None,
            });
        }
    }
    Ok(diff)
}

/// Every path of `branch`'s tree at `lsn` (none if it holds no tree).
fn walk(
    store: &Store,
    branch: &str,
    lsn: pagefork_engine::Lsn,
) -> FsResult<BTreeMap<String, Entry>> {
    let options = TreeOptions {
        read_only: true,
        at: At::Lsn(lsn),
        ..TreeOptions::default()
    };
    let tree = match FileTree::open(store.clone(), branch, options) {
        Ok(tree) => tree,
        Err(FsError::NotATree { .. }) => return Ok(BTreeMap::new()),
        Err(error) => return Err(error),
    };
    let mut found = BTreeMap::new();
    let mut pending = vec![(tree.root(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        for entry in tree.read_dir(dir)? {
            let path = format!("{prefix}/{}", String::from_utf8_lossy(&entry.name));
            let (size, rel) = tree.size_and_relation(entry.ino)?;
            if entry.kind == FileKind::Directory {
                pending.push((entry.ino, path.clone()));
            }
            found.insert(path, (entry.kind, size, rel));
        }
    }
    Ok(found)
}
