//! pagefork-files: a directory tree on a pagefork branch, so a branch can hold what
//! ordinary programs keep in files (a SQLite or Postgres database) and every branch
//! operation (branch at an LSN or a time, diff, reset, restore, GC) covers the whole tree.
//!
//! Each file's bytes are the pages of one data relation; directories, names, sizes,
//! modes, owners, times and symlink targets are pages too (see `format` and
//! docs/formats.md). Every change is one commit, logged without waiting for its fsync;
//! `FileTree::sync` waits. The API speaks inode numbers as FUSE does, so the FUSE
//! adapter in `pagefork-pageserver` is a thin translation, and this crate is tested
//! without FUSE.
//!
//! ```
//! use pagefork_engine::{Config, Store};
//! use pagefork_files::{FileTree, Owner, TreeOptions};
//! # fn main() -> Result<(), pagefork_files::FsError> {
//! let store = Store::in_memory(Config::default())?;
//! let tree = FileTree::open(store, "main", TreeOptions::default())?;
//! let owner = Owner { mode: 0o644, uid: 0, gid: 0 };
//! let file = tree.create_file(tree.root(), b"hello.txt", owner)?;
//! tree.write(file.ino, 0, b"hello")?;
//! tree.sync()?;
//! assert_eq!(tree.read(file.ino, 0, 100)?, b"hello");
//! # Ok(()) }
//! ```

#![cfg_attr(test, allow(clippy::indexing_slicing, clippy::unwrap_used))]

mod diff;
mod error;
mod format;
mod inode;
mod tree;

pub use diff::{Difference, FileChange, TreeDiff, diff_trees};
pub use error::{FsError, FsResult};
pub use format::{FIRST_DATA_REL, NAME_MAX, ROOT_INO, TABLE_REL};
pub use inode::{Attributes, FileKind, FileTime, SetAttributes};
pub use tree::{DirListing, FileTree, Owner, TreeOptions, TreeStats, TreeView, Written};
