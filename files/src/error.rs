//! `FsError`: why a file tree operation was refused or failed, naming what was wrong.
//!
//! Refusals (a missing name, a non-empty directory, ...) change nothing: each is found
//! before the operation changes the tree's memory (reads that may fail, such as which
//! pages a freed file holds, come first too). A `Failed` error means the store refused or
//! failed a commit the tree had already decided on, or an operation failed after it had
//! changed the tree's memory: the tree then refuses everything until it is opened again,
//! so no later operation can succeed on top of one that may be lost, or carry part of it
//! (the store itself is poisoned by an I/O error).

use pagefork_engine::EngineError;

/// Result of a file tree operation.
pub type FsResult<T> = std::result::Result<T, FsError>;

/// Why a file tree operation did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// No inode with this number is linked (or held open).
    #[error("no inode {ino}")]
    NoInode {
        /// The inode number asked for.
        ino: u64,
    },
    /// The directory has no entry of that name.
    #[error("no entry {name:?} in directory {parent}")]
    NotFound {
        /// The directory's inode number.
        parent: u64,
        /// The name looked up.
        name: String,
    },
    /// The name is taken.
    #[error("{name:?} already exists in directory {parent}")]
    Exists {
        /// The directory's inode number.
        parent: u64,
        /// The name.
        name: String,
    },
    /// A directory was needed.
    #[error("inode {ino} is not a directory")]
    NotDirectory {
        /// The inode number.
        ino: u64,
    },
    /// Something other than a directory was needed.
    #[error("inode {ino} is a directory")]
    IsDirectory {
        /// The inode number.
        ino: u64,
    },
    /// A symlink was needed.
    #[error("inode {ino} is not a symbolic link")]
    NotSymlink {
        /// The inode number.
        ino: u64,
    },
    /// The directory still has entries.
    #[error("directory {ino} is not empty")]
    NotEmpty {
        /// The inode number.
        ino: u64,
    },
    /// A name of more than 255 bytes.
    #[error("a name of {len} bytes is longer than 255")]
    NameTooLong {
        /// Its length.
        len: usize,
    },
    /// A name a directory cannot hold: empty, `.`, `..`, or with `/` or NUL.
    #[error("{name:?} is not a valid file name")]
    InvalidName {
        /// The name (lossily as UTF-8).
        name: String,
    },
    /// A directory cannot move into itself or below itself.
    #[error("directory {ino} cannot move into its own subtree")]
    IntoOwnSubtree {
        /// The directory's inode number.
        ino: u64,
    },
    /// A value out of range (a mode above 0o7777, a symlink target of 0 or over 4095 bytes).
    #[error("invalid argument: {what}")]
    InvalidArgument {
        /// What was wrong.
        what: String,
    },
    /// The file would pass the largest size a data relation holds.
    #[error("a size of {size} bytes is past the largest file, {max} bytes")]
    FileTooLarge {
        /// The size asked for.
        size: u64,
        /// The largest size.
        max: u64,
    },
    /// Inode numbers or data relations are used up.
    #[error("no free {what} left in this tree")]
    NoSpace {
        /// What ran out.
        what: &'static str,
    },
    /// The tree is open read-only (at an LSN or a time, or by request).
    #[error("this tree is read-only")]
    ReadOnly,
    /// What the tree does not do (hard links, extended attributes, device files).
    #[error("not supported: {what}")]
    NotSupported {
        /// What was asked.
        what: &'static str,
    },
    /// The branch holds no file tree (nothing at the superblock's key) in the state
    /// asked for: at its latest state, or at an earlier LSN, before its tree was made.
    #[error(
        "branch {branch:?} holds no file tree{}",
        match lsn {
            Some(lsn) => format!(" at LSN {lsn}: its tree was made later, or never (a writable mount makes one)"),
            None => " (nothing at the superblock's key)".to_owned(),
        }
    )]
    NotATree {
        /// The branch.
        branch: String,
        /// The LSN of the state asked for, if not the latest.
        lsn: Option<pagefork_engine::Lsn>,
    },
    /// The branch holds a page at the superblock's key that is not a superblock: pages
    /// written through the page API in the relations a file tree reserves, not a tree.
    #[error(
        "branch {branch:?} holds no file tree: its page at the superblock's key ({key}) is not a superblock (pages written through the page API in the relations a file tree reserves, {} and up)",
        crate::format::TABLE_REL
    )]
    OtherData {
        /// The branch.
        branch: String,
        /// The superblock's key.
        key: pagefork_engine::Key,
    },
    /// Bytes of the tree that do not decode: never served as data.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// Which structure (superblock, inode N, directory N page B).
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The store refused or failed: after a failed commit the tree refuses everything
    /// until it is opened again.
    #[error(transparent)]
    Store(#[from] EngineError),
    /// An earlier commit failed; reopen the tree (remount).
    #[error("an earlier operation failed ({cause}); the tree must be opened again")]
    Failed {
        /// The first failure.
        cause: String,
    },
}
