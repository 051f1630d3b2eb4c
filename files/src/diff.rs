//! `diff_trees`: a page diff between two branch states, told as files: which paths were
//! added, removed or changed (with their sizes), found by walking both trees and matching
//! every file's data relation against the relations whose pages differ.
//!
//! A path in both states counts as changed when its kind, size, permission bits, owner or
//! group, modification time or device number differs (not its link count, nor its inode
//! number: a path replaced by another file with the same contents and attributes is no
//! change), or its contents do: its data relation, or a page of it, differs between the two
//! states. Each change says which of these differ ([`Difference`]). A directory's contents
//! are its entries, told as paths of their own; a change of them changes its
//! modification time. Access and change times are not compared: reads do not set the
//! one, and every other change sets the other. A state whose branch holds no tree is an
//! empty tree.
//!
//! Paths are matched as the bytes they are, and told escaped (see [`escape_path`]): two
//! names alike once made UTF-8 are still two files (a review found one of two such files
//! missing from a diff, and a change to the other unreported).

use std::collections::{BTreeMap, BTreeSet};

use pagefork_engine::{At, PageDiff, Store};

use crate::error::{FsError, FsResult};
use crate::inode::{FileKind, Inode};
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
    /// What differs, for a changed file (empty for one added or removed), in the order
    /// of [`Difference`].
    pub differences: Vec<Difference>,
}

/// One thing that differs about a path in both states.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Difference {
    /// What it is (a file replaced by a directory of the same name).
    Kind,
    /// Its bytes (a file's data, a symlink's target): its pages differ.
    Content,
    /// Its size.
    Size,
    /// Its permission bits (with set-user-ID, set-group-ID and sticky).
    Mode,
    /// Its owner or group.
    Owner,
    /// Its modification time.
    Mtime,
    /// The device a device node stands for.
    Device,
}

impl Difference {
    /// Its name in a diff's answer.
    pub fn name(self) -> &'static str {
        match self {
            Difference::Kind => "kind",
            Difference::Content => "content",
            Difference::Size => "size",
            Difference::Mode => "mode",
            Difference::Owner => "owner",
            Difference::Mtime => "mtime",
            Difference::Device => "device",
        }
    }
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

/// The file-level view of `pages`, the diff of `from` (at `pages.from_lsn`) and `to` (at
/// `pages.to_lsn`).
pub fn diff_trees(store: &Store, from: &str, to: &str, pages: &PageDiff) -> FsResult<TreeDiff> {
    let before = walk(store, from, pages.from_lsn)?;
    let after = walk(store, to, pages.to_lsn)?;
    let touched: BTreeSet<u32> = pages.by_relation().into_keys().collect();
    let mut diff = TreeDiff::default();
    for (path, inode) in &after {
        let (kind, bytes) = (inode.kind, inode.size);
        match before.get(path) {
            None => diff.added.push(FileChange {
                path: escape_path(path),
                kind,
                bytes,
                previous_bytes: None,
                differences: Vec::new(),
            }),
            Some(old) => {
                let differences = differences(old, inode, &touched);
                if !differences.is_empty() {
                    diff.changed.push(FileChange {
                        path: escape_path(path),
                        kind,
                        bytes,
                        previous_bytes: Some(old.size),
                        differences,
                    });
                }
            }
        }
    }
    for (path, inode) in &before {
        if !after.contains_key(path) {
            diff.removed.push(FileChange {
                path: escape_path(path),
                kind: inode.kind,
                bytes: inode.size,
                previous_bytes: None,
                differences: Vec::new(),
            });
        }
    }
    Ok(diff)
}

/// What differs between `old` and `new`, one path's inodes in the two states; `touched`:
/// the relations with a page that differs.
fn differences(old: &Inode, new: &Inode, touched: &BTreeSet<u32>) -> Vec<Difference> {
    let content =
        old.rel != new.rel || (new.kind != FileKind::Directory && touched.contains(&new.rel));
    [
        (Difference::Kind, old.kind != new.kind),
        (Difference::Content, content),
        (Difference::Size, old.size != new.size),
        (Difference::Mode, old.mode != new.mode),
        (Difference::Owner, (old.uid, old.gid) != (new.uid, new.gid)),
        (Difference::Mtime, old.mtime != new.mtime),
        (Difference::Device, old.rdev != new.rdev),
    ]
    .into_iter()
    .filter_map(|(difference, differs)| differs.then_some(difference))
    .collect()
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

/// Every path of `branch`'s tree at `lsn`, the root's `/` included (none if it holds no
/// tree), as bytes, with its inode.
fn walk(
    store: &Store,
    branch: &str,
    lsn: pagefork_engine::Lsn,
) -> FsResult<BTreeMap<Vec<u8>, Inode>> {
    // Damage names the side it was found on (a review's diff said "corrupt inode 5" of
    // one of two branches, at no LSN).
    walk_tree(store, branch, lsn).map_err(|error| match error {
        FsError::Corrupt { what, detail } => FsError::Corrupt {
            what: format!("{what} of the tree of branch {branch:?} at LSN {lsn}"),
            detail,
        },
        other => other,
    })
}

fn walk_tree(
    store: &Store,
    branch: &str,
    lsn: pagefork_engine::Lsn,
) -> FsResult<BTreeMap<Vec<u8>, Inode>> {
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
    // The root is a path too: its mode, owner and times change like any directory's (a
    // review found a chmod, chown or touch of the root missing from every diff).
    let mut found = BTreeMap::from([(b"/".to_vec(), tree.inode(tree.root())?)]);
    let mut pending = vec![(tree.root(), Vec::new())];
    // A directory has one name, so each is visited once: one named twice, or inside
    // itself, is damage (a review's crafted entry naming its own directory had the walk
    // list paths without end).
    let mut visited = BTreeSet::from([tree.root()]);
    while let Some((dir, prefix)) = pending.pop() {
        for entry in tree.read_dir(dir)? {
            let mut path = prefix.clone();
            path.push(b'/');
            path.extend_from_slice(&entry.name);
            // (Reading the directory checked that the entry's kind is its inode's.)
            let inode = tree.inode(entry.ino)?;
            if entry.kind == FileKind::Directory {
                if !visited.insert(entry.ino) {
                    return Err(FsError::Corrupt {
                        what: format!("directory {}", entry.ino),
                        detail: format!(
                            "named twice, or inside itself (at {})",
                            escape_path(&path)
                        ),
                    });
                }
                pending.push((entry.ino, path.clone()));
            }
            found.insert(path, inode);
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
