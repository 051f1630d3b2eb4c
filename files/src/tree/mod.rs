//! `FileTree`: a directory tree on one branch, operated by inode number as FUSE does.
//!
//! Every operation that changes the tree builds all of its page updates (inode slots,
//! directory pages, file data, the superblock) and logs them as one commit, so a crash or
//! a branch point between two operations shows the first whole and the second not at all.
//! Commits are logged without waiting for their fsync; `sync` waits for everything the
//! tree logged. A tree open for writing must be its branch's only writer: it caches the
//! inode table and directories in memory (one lock guards them, and commits are logged
//! under it, so memory and log agree on the order of operations). After a commit fails
//! the tree refuses every operation (`FsError::Failed`) until it is opened again. An open
//! tree holds its branch (`Store::hold`): the expiry sweep leaves it, and GC keeps the state
//! a read-only tree shows.

mod data;
mod names;
mod state;

use std::sync::Arc;

use pagefork_engine::{At, BranchHold, Clock, Key, Lsn, LsnForTime, Store, SystemClock};
use parking_lot::Mutex;

use crate::error::{FsError, FsResult};
use crate::format::{ROOT_INO, TABLE_REL};
use crate::inode::{Attributes, FileKind, FileTime, Inode};
use state::State;

pub use data::Written;
pub use names::{DirListing, Owner};

/// How to open a tree.
#[derive(Clone, Debug)]
pub struct TreeOptions {
    /// Refuse every change (implied by `at` other than `At::Latest`).
    pub read_only: bool,
    /// Which state to show: the head (writable, or read-only as of opening), an LSN or a
    /// time (snapped to the last commit at or before it), read-only.
    pub at: At,
    /// Where "now" comes from for file times.
    pub clock: Arc<dyn Clock>,
    /// Who uses the tree, as GC's report names the state it keeps for it ("the mount at
    /// /mnt/dev"): an open tree holds its branch (see `Store::hold`).
    pub holder: String,
    /// Writes leave a file's mtime and ctime as they are: the kernel keeps them, as it
    /// does with FUSE's writeback cache, and sets them with `set_attributes` when it hands
    /// them over, so what is stored is what `stat` showed (a review found every written
    /// file's times changed by a remount, or on a branch).
    pub kernel_keeps_times: bool,
}

impl Default for TreeOptions {
    fn default() -> TreeOptions {
        TreeOptions {
            read_only: false,
            at: At::Latest,
            clock: Arc::new(SystemClock),
            holder: "an open file tree".to_owned(),
            kernel_keeps_times: false,
        }
    }
}

/// Which state of the branch an open tree shows.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum TreeView {
    /// The head, changed by this tree.
    Writable,
    /// The branch as of `lsn`, read-only; `time` says how a requested time snapped.
    ReadOnly {
        /// The LSN every read uses.
        lsn: Lsn,
        /// The time asked for and what it resolved to, if one was asked for.
        time: Option<LsnForTime>,
    },
}

/// Counts for `statfs`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TreeStats {
    /// Inodes in use (linked or held open).
    pub inodes: u64,
    /// The page size: the tree's block size.
    pub page_size: u32,
}

/// A file tree on a branch. `Send + Sync`: operations may come from many threads.
#[derive(Debug)]
pub struct FileTree {
    store: Store,
    branch: String,
    view: TreeView,
    page_size: usize,
    /// The largest `write`: what one commit holds with its metadata.
    max_write: u32,
    /// How many pages one commit drops at most.
    drops_per_commit: u32,
    clock: Arc<dyn Clock>,
    /// See `TreeOptions::kernel_keeps_times`.
    kernel_keeps_times: bool,
    state: Mutex<State>,
    /// Keeps the branch from the expiry sweep (a branch that expires while mounted is
    /// deleted once unmounted) and a read-only view's state from GC, while the tree is open.
    _hold: BranchHold,
}

impl FileTree {
    /// Opens the tree on `branch`. A writable open of a branch that holds no tree yet
    /// creates an empty one (root directory 0o755, owned by root) in one durable commit;
    /// a read-only open of such a branch is refused (`NotATree`).
    pub fn open(store: Store, branch: &str, options: TreeOptions) -> FsResult<FileTree> {
        let info = store.branch_info(branch)?;
        let view = match options.at {
            At::Latest if !options.read_only => TreeView::Writable,
            At::Latest => TreeView::ReadOnly {
                lsn: info.head,
                time: None,
            },
            At::Lsn(lsn) => {
                // Checks the LSN against the branch (refusals name it) before anything else.
                store.get_page(branch, crate::format::superblock_key(), At::Lsn(lsn))?;
                TreeView::ReadOnly { lsn, time: None }
            }
            At::Time(time) => {
                // A time before the branch's history is refused as a read there is.
                store.get_page(branch, crate::format::superblock_key(), At::Time(time))?;
                let resolved = store.lsn_for_time(branch, time)?;
                TreeView::ReadOnly {
                    lsn: resolved.lsn,
                    time: Some(resolved),
                }
            }
        };
        let held_lsn = match &view {
            TreeView::Writable => None,
            TreeView::ReadOnly { lsn, .. } => Some(*lsn),
        };
        let hold = store.hold(branch, held_lsn, &options.holder)?;
        let page_size = store.page_size();
        let read_at = match &view {
            TreeView::Writable => At::Latest,
            TreeView::ReadOnly { lsn, .. } => At::Lsn(*lsn),
        };
        // Loading reads the whole inode table, whose pages every commit patches: have the
        // disk read all their versions at once rather than fault them in one by one (a
        // store's new layer files are written past the kernel's cache, so on the first
        // branch after a load every block is a fault: 90 of them at 64 MiB).
        store.prefetch_history(
            branch,
            Key::new(TABLE_REL, 0),
            Key::new(TABLE_REL, u32::MAX),
            read_at,
        )?;
        let now = FileTime::from_timestamp(options.clock.now());
        let mut state = State::load(&store, branch, read_at, page_size, now)?;
        if view == TreeView::Writable && state.last_lsn.is_none() {
            // A `sync` covers what the branch held when the tree was opened (a tree
            // opened again in the same process, before the last one's writes were synced).
            state.last_lsn = Some(info.head);
        }
        let max_commit_bytes = store.max_commit_bytes();
        let tree = FileTree {
            max_write: state::max_write_bytes(max_commit_bytes, page_size),
            drops_per_commit: state::drops_per_commit(max_commit_bytes),
            store,
            branch: branch.to_owned(),
            view,
            page_size,
            clock: options.clock,
            kernel_keeps_times: options.kernel_keeps_times,
            state: Mutex::new(state),
            _hold: hold,
        };
        if tree.view == TreeView::Writable {
            tree.finish_dropping(&mut *tree.lock()?, None)?;
            tree.finish_truncations()?;
            tree.free_orphans()?;
        }
        Ok(tree)
    }

    /// The branch the tree is on.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The store the tree is in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Which state of the branch it shows.
    pub fn view(&self) -> &TreeView {
        &self.view
    }

    /// The page size: every file's block size.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The largest `write` (at most 1 MiB): what one commit holds with its metadata, so
    /// that no write is ever torn by a crash.
    pub fn max_write(&self) -> u32 {
        self.max_write
    }

    /// The LSN of the newest change this tree made: a writable tree starts from its
    /// branch's head when it was opened (`None` for a read-only view).
    pub fn last_lsn(&self) -> Option<Lsn> {
        self.state.lock().last_lsn
    }

    /// The root directory's inode number.
    pub fn root(&self) -> u64 {
        u64::from(ROOT_INO)
    }

    /// The largest file size: a data relation holds `u32::MAX` pages.
    pub fn max_file_size(&self) -> u64 {
        u64::from(u32::MAX) * self.page_size as u64
    }

    /// An inode's attributes.
    pub fn attributes(&self, ino: u64) -> FsResult<Attributes> {
        let state = self.lock()?;
        let ino = state::ino32(ino)?;
        let inode = state.inode(ino)?;
        Ok(inode.attributes(ino, self.page_size))
    }

    /// An inode as stored, data relation included (for diffs).
    pub(crate) fn inode(&self, ino: u64) -> FsResult<Inode> {
        let state = self.lock()?;
        state.inode(state::ino32(ino)?)
    }

    /// Refused as every other operation is once the tree has failed (see `sync`): for the
    /// answers that read nothing of it, such as a listing already taken.
    pub fn check_usable(&self) -> FsResult<()> {
        self.lock().map(drop)
    }

    /// Counts for `statfs`.
    pub fn stats(&self) -> FsResult<TreeStats> {
        let state = self.lock()?;
        Ok(TreeStats {
            inodes: state.inodes_in_use(),
            page_size: u32::try_from(self.page_size).unwrap_or(u32::MAX),
        })
    }

    /// Returns once every change this tree has made, and everything its branch held when
    /// it was opened, is durable. A failure poisons the store: no later `sync` succeeds
    /// after a failed one.
    pub fn sync(&self) -> FsResult<()> {
        self.wait_for_last_commit(Store::wait_durable)
    }

    /// Returns once every change this tree has made is written to the store's log: it
    /// outlives this process, and a power cut keeps it if a later `sync` returned. A
    /// failure poisons the store, as a failed `sync` does.
    pub(crate) fn wait_written(&self) -> FsResult<()> {
        self.wait_for_last_commit(Store::wait_written)
    }

    /// Waits with `wait` for the tree's last commit (nothing if it made none).
    fn wait_for_last_commit(
        &self,
        wait: fn(&Store, Lsn) -> pagefork_engine::Result<()>,
    ) -> FsResult<()> {
        let lsn = self.lock()?.last_lsn;
        let Some(lsn) = lsn else { return Ok(()) };
        wait(&self.store, lsn).map_err(|error| {
            self.state.lock().fail(&error);
            FsError::Store(error)
        })
    }

    /// Takes `count` references to `ino` back (the kernel's lookup count, which every
    /// `lookup`, `create`, `make_directory` and `symlink` answer adds one to). An unlinked
    /// inode is removed when its last reference goes.
    pub fn forget(&self, ino: u64, count: u64) -> FsResult<()> {
        let mut state = self.lock()?;
        let Ok(ino) = state::ino32(ino) else {
            return Ok(());
        };
        if !state.release(ino, count) || self.view != TreeView::Writable {
            return Ok(());
        }
        match state.inode(ino) {
            Ok(inode) if inode.nlink == 0 => self.free_inode(&mut state, ino),
            _ => Ok(()),
        }
    }

    pub(crate) fn lock(&self) -> FsResult<parking_lot::MutexGuard<'_, State>> {
        let state = self.state.lock();
        if let Some(cause) = &state.failed {
            return Err(FsError::Failed {
                cause: cause.clone(),
            });
        }
        Ok(state)
    }

    fn lock_writable(&self) -> FsResult<parking_lot::MutexGuard<'_, State>> {
        if self.view != TreeView::Writable {
            return Err(FsError::ReadOnly);
        }
        self.lock()
    }

    pub(crate) fn read_at(&self) -> At {
        match &self.view {
            TreeView::Writable => At::Latest,
            TreeView::ReadOnly { lsn, .. } => At::Lsn(*lsn),
        }
    }

    fn now(&self) -> FileTime {
        FileTime::from_timestamp(self.clock.now())
    }

    /// An orphan (an inode without links) that a directory names, with that directory and
    /// the name, found by reading every directory.
    fn linked_orphan(&self, state: &mut State) -> FsResult<Option<(u32, u32, Vec<u8>)>> {
        let mut unvisited = vec![ROOT_INO];
        let mut visited = std::collections::HashSet::new();
        while let Some(dir_ino) = unvisited.pop() {
            if !visited.insert(dir_ino) {
                return Err(FsError::Corrupt {
                    what: format!("directory {dir_ino}"),
                    detail: "named twice, or inside itself".to_owned(),
                });
            }
            let entries: Vec<_> = (state.dir(self, dir_ino)?.entries.iter())
                .map(|(name, &(ino, kind, _))| (name.clone(), ino, kind))
                .collect();
            for (name, ino, kind) in entries {
                if state.orphans.contains(&ino) {
                    return Ok(Some((ino, dir_ino, name)));
                }
                if kind == FileKind::Directory {
                    unvisited.push(ino);
                }
            }
        }
        Ok(None)
    }

    /// Finishes the truncations a crash cut short (before anything can write the files).
    fn finish_truncations(&self) -> FsResult<()> {
        let mut state = self.lock()?;
        for ino in state.truncating.split_off(&0) {
            self.finish_truncation(&mut state, ino)?;
        }
        Ok(())
    }

    /// Frees inodes left unlinked but open by a crash or an unclean unmount.
    fn free_orphans(&self) -> FsResult<()> {
        let mut state = self.lock()?;
        if state.orphans.is_empty() {
            return Ok(());
        }
        // An inode with no links that a directory names is damage, not an orphan:
        // freeing it would lose a linked file. Orphans are rare (a crash with unlinked
        // files open), so looking through every directory for them is affordable. Other
        // damage that look finds leaves the orphans where they are (space, not data) and
        // the tree open, as it would be without orphans: the damage is said when what
        // holds it is read.
        match self.linked_orphan(&mut state) {
            Ok(None) => {}
            Ok(Some((ino, dir, name))) => {
                return Err(FsError::Corrupt {
                    what: format!("inode {ino}"),
                    detail: format!(
                        "no links, yet directory {dir} names it {}",
                        String::from_utf8_lossy(&name)
                    ),
                });
            }
            Err(error @ FsError::Corrupt { .. }) => {
                tracing::warn!(branch = %self.branch, %error, "unlinked files left open by a crash are kept: the tree is damaged");
                return Ok(());
            }
            Err(error) => return Err(error),
        }
        for ino in state.orphans.split_off(&0) {
            self.free_inode(&mut state, ino)?;
        }
        Ok(())
    }
}
