//! The kernel's writeback cache on a writable mount, and how to empty it on demand.
//!
//! With `FUSE_WRITEBACK_CACHE` a `write` lands in the kernel's page cache and reaches the
//! tree later, in runs: at `fsync`/`fdatasync` (which still return only once it is
//! durable), at `close`, or when the kernel's flusher gets to it. Until then a branch
//! taken at latest would not see it. `syncfs` cannot help: Linux does not wait for a FUSE
//! server's writeback in `sync`/`syncfs`. So the adapter counts the files open for
//! writing here, and `write_back` asks the kernel to invalidate each one's cached pages:
//! the kernel first writes every dirty page back through the mount and waits for the
//! answers, so when `write_back` returns, every write that finished before it has been
//! committed to the branch.
//!
//! Invariant: an inode is in `OpenWriters` from the `open`/`create` that could write it to
//! its matching `release` (a file closed has had its dirty pages written back by the
//! kernel's `flush`, before `release`).

use std::collections::HashMap;
use std::path::Path;

use fuser::{INodeNo, Notifier, OpenAccMode, OpenFlags};
use parking_lot::Mutex;

/// Inodes open for writing through the mount, with how many handles each.
#[derive(Debug, Default)]
pub(crate) struct OpenWriters {
    handles: Mutex<HashMap<u64, u64>>,
}

/// The file handle of an open that may write (released handles say which they were).
pub(crate) const WRITER_HANDLE: u64 = 1;
/// The file handle of a read-only open.
pub(crate) const READER_HANDLE: u64 = 0;

impl OpenWriters {
    /// Counts an open of `ino` with `flags`; returns the handle to give the kernel.
    pub(crate) fn opened(&self, ino: u64, flags: OpenFlags) -> u64 {
        if flags.acc_mode() == OpenAccMode::O_RDONLY {
            return READER_HANDLE;
        }
        *self.handles.lock().entry(ino).or_default() += 1;
        WRITER_HANDLE
    }

    /// Counts the release of a handle `opened` gave.
    pub(crate) fn released(&self, ino: u64, handle: u64) {
        if handle != WRITER_HANDLE {
            return;
        }
        let mut handles = self.handles.lock();
        if let Some(count) = handles.get_mut(&ino) {
            *count -= 1;
            if *count == 0 {
                handles.remove(&ino);
            }
        }
    }

    fn inodes(&self) -> Vec<u64> {
        self.handles.lock().keys().copied().collect()
    }
}

/// Makes the kernel write back every dirty page of the files open for writing, waiting
/// for the tree to take each. Must not run on one of the mount's own worker threads (the
/// kernel waits for them to answer the writes).
///
/// First a `syncfs` of the mount at `dir` has the kernel start writing back every dirty
/// file in runs of contiguous pages (up to 1 MiB a request, several requests in flight);
/// it does not wait for the answers. The invalidation then waits for those and writes
/// back what is still dirty, but one page per request: on its own it took 13.6 s for
/// what a Postgres autovacuum had left dirty after a 1 GiB load (every page of the
/// table), a round trip and a commit for each 4 KiB.
pub(crate) fn write_back(
    writers: &OpenWriters,
    notifier: &Notifier,
    dir: &Path,
) -> std::io::Result<()> {
    let inodes = writers.inodes();
    if inodes.is_empty() {
        return Ok(());
    }
    let root = std::fs::File::open(dir)?;
    nix::unistd::syncfs(&root)?;
    for ino in inodes {
        // Offset 0, length 0: the whole file. An inode the kernel has forgotten answers
        // ENOENT, which the notifier already takes for success.
        notifier.inval_inode(INodeNo(ino), 0, 0)?;
    }
    Ok(())
}
