//! `diff_trees`: a page diff between two branch states, told as files: which paths were
//! added, removed or changed (with their sizes), found by walking both trees and matching
//! every file's data relation against the relations whose pages differ.
//!
//! A file counts as changed when its kind, size or data relation differs, or when a page
//! of its relation differs between the two states; a change of mode, owner or times alone
//! does not count. A state whose branch holds no tree is an empty tree.
//!
//! Paths are matched as the bytes they are, and told escaped (see [`escape_path`]): two
//! names alike once made UTF-8 are still two files (a review found one of two such files
//! missing from a diff, and a change to the other unreported).

use std::collections::{BTreeMap, BTreeSet};

use pagefork_engine::{At, PageDiff, Store};

use crate::error::{FsError, FsResult};
use crate::inode::FileKind;
use crate::tree::{FileTree, TreeOptions};

/// One file that differs.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FileChange {
    /// Its path from the root, `/`-separated, escaped as [`escape_path`] does.
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
                path: escape_path(path),
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
                        path: escape_path(path),
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
                path: escape_path(path),
                kind,
                bytes,
                previous_bytes: None,
            });
        }
    }
    Ok(diff)
}

/// `path` as text that names it alone: printable UTF-8 as it is, a backslash as `\\`,
/// and every other byte (control characters such as a newline, bytes that are not UTF-8)
/// as `\xNN`.
pub(crate) fn escape_path(path: &[u8]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(path.len());
    for chunk in path.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => text.push_str("\\\\"),
                c if c.is_control() => {
                    for byte in c.encode_utf8(&mut [0; 4]).bytes() {
                        let _ = write!(text, "\\x{byte:02x}");
                    }
                }
                c => text.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(text, "\\x{byte:02x}");
        }
    }
    text
}

/// Every path of `branch`'s tree at `lsn` (none if it holds no tree), as bytes.
fn walk(
    store: &Store,
    branch: &str,
    lsn: pagefork_engine::Lsn,
) -> FsResult<BTreeMap<Vec<u8>, Entry>> {
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
    let mut pending = vec![(tree.root(), Vec::new())];
    while let Some((dir, prefix)) = pending.pop() {
        for entry in tree.read_dir(dir)? {
            let mut path = prefix.clone();
            path.push(b'/');
            path.extend_from_slice(&entry.name);
            let (size, rel) = tree.size_and_relation(entry.ino)?;
            if entry.kind == FileKind::Directory {
                pending.push((entry.ino, path.clone()));
            }
            found.insert(path, (entry.kind, size, rel));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::escape_path;

    #[test]
    fn an_escaped_path_names_its_bytes_alone() {
        assert_eq!(escape_path(b"/db/base/16384"), "/db/base/16384");
        assert_eq!(escape_path("/caf\u{e9}".as_bytes()), "/caf\u{e9}");
        assert_eq!(escape_path(b"/a\\b"), "/a\\\\b");
        assert_eq!(escape_path(b"/evil\n  + fake"), "/evil\\x0a  + fake");
        assert_eq!(escape_path(b"/\xfex"), "/\\xfex");
        assert_ne!(escape_path(b"/\xfex"), escape_path(b"/\xffx"));
        // A backslash followed by "xfe" is not the byte 0xfe.
        assert_ne!(escape_path(b"/\\xfe"), escape_path(b"/\xfe"));
    }
}
