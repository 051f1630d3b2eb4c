//! Inodes: what the tree keeps about each file, directory, symlink and special file
//! (FIFO, socket, device), and the public `Attributes` view of it.
//!
//! Invariants kept by the tree (checked where they are relied on): a file's bytes at and
//! beyond `size` read as zeros, and no page of its data relation lies at or beyond
//! `extent_blocks` (but below `dropping_to`, while a big truncation drops them, before
//! anything else can change the file); a directory's `size` is its page count times the
//! page size; `nlink` is 1 for a linked file, symlink or special file, 2 plus its
//! subdirectories for a directory, and 0 only for an unlinked inode something still holds
//! open.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pagefork_engine::Timestamp;

/// What an inode is.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link; its target is its data.
    Symlink,
    /// A named pipe (its data never reaches the tree: the kernel keeps it).
    Fifo,
    /// A Unix domain socket's name.
    Socket,
    /// A character device node (`rdev` says which device).
    CharDevice,
    /// A block device node (`rdev` says which device).
    BlockDevice,
}

impl FileKind {
    /// What it is, in words: "file", "directory", "symlink", "fifo", "socket",
    /// "character device", "block device".
    pub fn name(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symlink",
            FileKind::Fifo => "fifo",
            FileKind::Socket => "socket",
            FileKind::CharDevice => "character device",
            FileKind::BlockDevice => "block device",
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            FileKind::File => 1,
            FileKind::Directory => 2,
            FileKind::Symlink => 3,
            FileKind::Fifo => 4,
            FileKind::Socket => 5,
            FileKind::CharDevice => 6,
            FileKind::BlockDevice => 7,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<FileKind> {
        match code {
            1 => Some(FileKind::File),
            2 => Some(FileKind::Directory),
            3 => Some(FileKind::Symlink),
            4 => Some(FileKind::Fifo),
            5 => Some(FileKind::Socket),
            6 => Some(FileKind::CharDevice),
            7 => Some(FileKind::BlockDevice),
            _ => None,
        }
    }
}

/// A file time: seconds and nanoseconds since the Unix epoch (seconds may be negative).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default, Hash)]
pub struct FileTime {
    /// Whole seconds since the epoch.
    pub secs: i64,
    /// Nanoseconds within the second, below 1,000,000,000.
    pub nanos: u32,
}

impl FileTime {
    /// The time of an engine timestamp.
    pub fn from_timestamp(time: Timestamp) -> FileTime {
        let micros = time.as_micros();
        FileTime {
            secs: i64::try_from(micros / 1_000_000).unwrap_or(i64::MAX),
            nanos: u32::try_from(micros % 1_000_000).unwrap_or(0) * 1000,
        }
    }

    /// The time as a `SystemTime` (saturating at what `SystemTime` holds).
    pub fn to_system_time(self) -> SystemTime {
        let whole = Duration::from_secs(self.secs.unsigned_abs());
        let seconds = if self.secs >= 0 {
            UNIX_EPOCH.checked_add(whole)
        } else {
            UNIX_EPOCH.checked_sub(whole)
        };
        seconds
            .and_then(|time| time.checked_add(Duration::from_nanos(u64::from(self.nanos))))
            .unwrap_or(UNIX_EPOCH)
    }

    /// The time of a `SystemTime`.
    pub fn from_system_time(time: SystemTime) -> FileTime {
        match time.duration_since(UNIX_EPOCH) {
            Ok(after) => FileTime {
                secs: i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
                nanos: after.subsec_nanos(),
            },
            Err(before) => {
                let before = before.duration();
                let secs = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
                if before.subsec_nanos() == 0 {
                    FileTime {
                        secs: -secs,
                        nanos: 0,
                    }
                } else {
                    FileTime {
                        secs: -secs - 1,
                        nanos: 1_000_000_000 - before.subsec_nanos(),
                    }
                }
            }
        }
    }
}

/// An inode as stored in the table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Inode {
    pub(crate) kind: FileKind,
    /// Permission bits (including set-user-ID, set-group-ID and sticky): at most 0o7777.
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) nlink: u32,
    /// The data relation: file bytes, directory entries or the symlink's target.
    pub(crate) rel: u32,
    pub(crate) size: u64,
    /// Pages of `rel` may exist below this block, none at or above it (but below
    /// `dropping_to`).
    pub(crate) extent_blocks: u32,
    /// A truncation of a file too big for one commit, not finished: pages of `rel` from
    /// `extent_blocks` up to this block may still exist (never read: reads stop at the
    /// extent), and are dropped before the file can change again, or when the tree is
    /// next opened for writing after a crash. 0 when none.
    pub(crate) dropping_to: u32,
    /// A directory's parent directory (the root's is itself); 0 for other kinds.
    pub(crate) parent: u32,
    /// A device node's device number (0 for other kinds).
    pub(crate) rdev: u32,
    pub(crate) atime: FileTime,
    pub(crate) mtime: FileTime,
    pub(crate) ctime: FileTime,
    pub(crate) crtime: FileTime,
}

/// What `stat` shows of an inode.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Attributes {
    /// The inode number (the root is 1).
    pub ino: u64,
    /// What it is.
    pub kind: FileKind,
    /// Permission bits, at most 0o7777.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Links: 0 once unlinked while still open.
    pub nlink: u32,
    /// Bytes (a directory: its pages' bytes; a symlink: its target's length).
    pub size: u64,
    /// 512-byte blocks its data may take (pages at or below its size).
    pub blocks: u64,
    /// The device a device node stands for (0 for other kinds).
    pub rdev: u32,
    /// Last access (set only when asked: the tree does not track reads).
    pub atime: FileTime,
    /// Last change of the data.
    pub mtime: FileTime,
    /// Last change of the inode.
    pub ctime: FileTime,
    /// Creation.
    pub crtime: FileTime,
}

impl Inode {
    /// The block below which pages of its data relation may exist: its extent, or the
    /// end of what an unfinished truncation still drops.
    pub(crate) fn stored_end(&self) -> u32 {
        self.extent_blocks.max(self.dropping_to)
    }

    /// The pages its data may take: those at or below its size, up to its extent (what
    /// `blocks` counts).
    pub(crate) fn pages(&self, page_size: usize) -> u64 {
        self.size
            .div_ceil(page_size as u64)
            .min(u64::from(self.extent_blocks))
    }

    pub(crate) fn attributes(&self, ino: u32, page_size: usize) -> Attributes {
        let pages = self.pages(page_size);
        let page_size = page_size as u64;
        Attributes {
            ino: u64::from(ino),
            kind: self.kind,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            nlink: self.nlink,
            size: self.size,
            blocks: pages * (page_size / 512),
            rdev: self.rdev,
            atime: self.atime,
            mtime: self.mtime,
            ctime: self.ctime,
            crtime: self.crtime,
        }
    }
}

/// Which attributes a `set_attributes` changes (`None`: leave alone).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct SetAttributes {
    /// New permission bits (at most 0o7777).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size: truncates or extends with zeros.
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<FileTime>,
    /// New modification time.
    pub mtime: Option<FileTime>,
    /// New change time (the kernel's, with FUSE's writeback cache); now if not given.
    pub ctime: Option<FileTime>,
}

impl SetAttributes {
    /// Whether these changes set times, and only times, that `inode` already has: what
    /// the kernel's writeback cache sends when it writes back the times it got from us
    /// (after a rename or an unlink). A `chmod`, `chown` or `truncate` always counts as a
    /// change, since it moves the change time even where it sets what is there.
    pub(crate) fn only_restate_times(&self, inode: &Inode) -> bool {
        self.mode.is_none()
            && self.uid.is_none()
            && self.gid.is_none()
            && self.size.is_none()
            && (self.atime.is_some() || self.mtime.is_some() || self.ctime.is_some())
            && self.atime.is_none_or(|atime| atime == inode.atime)
            && self.mtime.is_none_or(|mtime| mtime == inode.mtime)
            && self.ctime.is_none_or(|ctime| ctime == inode.ctime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_before_the_epoch_round_trip() {
        for time in [
            FileTime {
                secs: -1,
                nanos: 500,
            },
            FileTime { secs: 0, nanos: 0 },
            FileTime { secs: -7, nanos: 0 },
            FileTime {
                secs: 1_700_000_000,
                nanos: 999_999_999,
            },
        ] {
            assert_eq!(FileTime::from_system_time(time.to_system_time()), time);
        }
    }
}
