//! Names: lookups, listings, and every operation that adds, removes or moves a name
//! (create, mkdir, symlink, mknod, unlink, rmdir, rename), each one commit.
//!
//! Invariants: a directory lists each name once; an inode is linked from at most one
//! entry (no hard links), a directory from its `parent`; a directory never moves into its
//! own subtree; an inode whose last name goes is freed in the same commit unless it is
//! still referenced (open), and then when its last reference goes.
//!
//! A change of names is in the store's log when it returns: written to its files, not
//! fsynced, so it outlives a kill of the process that made it (SQLite commits a
//! transaction by deleting its rollback journal and never syncs the directory: a killed
//! mount must not bring the journal back) and a power cut keeps it only if an fsync came
//! after it, as on a local file system without `dirsync`. The log keeps order: what a
//! power cut leaves is every change up to some point, never a later one without an
//! earlier one.

use std::collections::BTreeMap;

use bytes::Bytes;
use pagefork_engine::{Key, Update};

use super::FileTree;
use super::state::{State, Txn, ino32};
use crate::error::{FsError, FsResult};
use crate::format::SYMLINK_MAX;
use crate::format::{DIR_PAGE_HEADER, ROOT_INO, check_name, dir_entry_len};
use crate::inode::{Attributes, FileKind, FileTime, Inode};

/// One entry of a directory listing (without `.` and `..`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DirListing {
    /// The name.
    pub name: Vec<u8>,
    /// Its inode number.
    pub ino: u64,
    /// What it is.
    pub kind: FileKind,
}

/// Who owns a new inode and its permission bits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Owner {
    /// Permission bits, at most 0o7777.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The inodes one operation changes, written back together.
struct Changed<'a> {
    state: &'a mut State,
    inodes: BTreeMap<u32, Inode>,
}

impl<'a> Changed<'a> {
    fn new(state: &'a mut State) -> Changed<'a> {
        Changed {
            state,
            inodes: BTreeMap::new(),
        }
    }

    fn get(&mut self, ino: u32) -> FsResult<&mut Inode> {
        if !self.inodes.contains_key(&ino) {
            let inode = self.state.inode(ino)?;
            self.inodes.insert(ino, inode);
        }
        Ok(self.inodes.get_mut(&ino).expect("inserted above"))
    }

    fn write(self, txn: &mut Txn) -> &'a mut State {
        for (ino, inode) in &self.inodes {
            self.state.put_inode(txn, *ino, Some(inode));
        }
        self.state
    }
}

impl FileTree {
    /// Looks `name` up in directory `parent`, taking a reference to what it finds.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<Attributes> {
        let mut state = self.lock()?;
        let parent = ino32(parent)?;
        let (ino, _) = entry(&mut state, self, parent, name)?;
        let inode = state.inode(ino)?;
        state.retain(ino);
        Ok(inode.attributes(ino, self.page_size))
    }

    /// Directory `ino`'s entries in name order (without `.` and `..`).
    pub fn read_dir(&self, ino: u64) -> FsResult<Vec<DirListing>> {
        let mut state = self.lock()?;
        let dir = state.dir(self, ino32(ino)?)?;
        Ok(dir
            .entries
            .iter()
            .map(|(name, &(ino, kind, _))| DirListing {
                name: name.clone(),
                ino: u64::from(ino),
                kind,
            })
            .collect())
    }

    /// The directory holding directory `ino` (the root's is the root).
    pub fn parent_of(&self, ino: u64) -> FsResult<u64> {
        let state = self.lock()?;
        Ok(u64::from(state.dir_inode(ino32(ino)?)?.parent))
    }

    /// Creates an empty regular file.
    pub fn create_file(&self, parent: u64, name: &[u8], owner: Owner) -> FsResult<Attributes> {
        self.create(parent, name, owner, FileKind::File, &[])
    }

    /// Waits until a change of names (or of size, mode or owner) is in the log's files
    /// (see the module's comment).
    pub(crate) fn written<T>(&self, result: FsResult<T>) -> FsResult<T> {
        let value = result?;
        self.wait_written()?;
        Ok(value)
    }

    /// Creates an empty directory.
    pub fn make_directory(&self, parent: u64, name: &[u8], owner: Owner) -> FsResult<Attributes> {
        self.create(parent, name, owner, FileKind::Directory, &[])
    }

    /// Creates a symbolic link to `target` (1 to 4095 bytes), mode 0o777.
    pub fn symlink(
        &self,
        parent: u64,
        name: &[u8],
        target: &[u8],
        uid: u32,
        gid: u32,
    ) -> FsResult<Attributes> {
        if target.is_empty() || target.len() > SYMLINK_MAX || target.contains(&0) {
            return Err(FsError::InvalidArgument {
                what: format!("a symlink target of {} bytes", target.len()),
            });
        }
        let owner = Owner {
            mode: 0o777,
            uid,
            gid,
        };
        self.create(parent, name, owner, FileKind::Symlink, target)
    }

    /// Creates a special file: a FIFO, a socket, or a device node standing for device
    /// `rdev` (0 for the others). A regular file, directory or symlink is refused: they
    /// have calls of their own.
    pub fn make_node(
        &self,
        parent: u64,
        name: &[u8],
        kind: FileKind,
        owner: Owner,
        rdev: u32,
    ) -> FsResult<Attributes> {
        let device = matches!(kind, FileKind::CharDevice | FileKind::BlockDevice);
        if !matches!(kind, FileKind::Fifo | FileKind::Socket) && !device {
            return Err(FsError::InvalidArgument {
                what: format!("make_node of a {kind:?} (it is made by its own call)"),
            });
        }
        let rdev = if device { rdev } else { 0 };
        self.written(self.create_logged(parent, name, owner, (kind, rdev), &[]))
    }

    /// A symbolic link's target.
    pub fn read_link(&self, ino: u64) -> FsResult<Vec<u8>> {
        let (ino, inode) = {
            let state = self.lock()?;
            let ino = ino32(ino)?;
            (ino, state.inode(ino)?)
        };
        if inode.kind != FileKind::Symlink {
            return Err(FsError::NotSymlink {
                ino: u64::from(ino),
            });
        }
        self.read_bytes(&inode, 0, inode.size)
    }

    fn create(
        &self,
        parent: u64,
        name: &[u8],
        owner: Owner,
        kind: FileKind,
        data: &[u8],
    ) -> FsResult<Attributes> {
        self.written(self.create_logged(parent, name, owner, (kind, 0), data))
    }

    /// Creates inode `kind` (with its device number) named `name`, holding `data`.
    fn create_logged(
        &self,
        parent: u64,
        name: &[u8],
        owner: Owner,
        (kind, rdev): (FileKind, u32),
        data: &[u8],
    ) -> FsResult<Attributes> {
        check_name(name)?;
        check_mode(owner.mode)?;
        let mut state = self.lock_writable()?;
        let parent = ino32(parent)?;
        if state.dir(self, parent)?.entries.contains_key(name) {
            return Err(exists(parent, name));
        }
        if state.inode(parent)?.nlink == 0 {
            return Err(FsError::NotFound {
                parent: u64::from(parent),
                name: "(directory removed)".to_owned(),
            });
        }
        state.check_room()?;
        if kind == FileKind::Directory {
            // Refused before anything changes (checked again where the count is set).
            subdirectory_added(parent, state.inode(parent)?.nlink)?;
        }
        let now = self.now();
        self.changing(&mut state, |state| {
            let mut txn = Txn::default();
            let ino = state.allocate_ino(&mut txn)?;
            let rel = state.allocate_rel(&mut txn);
            let page_size = self.page_size;
            let pages = data.len().div_ceil(page_size);
            for (block, chunk) in data.chunks(page_size).enumerate() {
                let mut page = vec![0u8; page_size];
                page.get_mut(..chunk.len())
                    .expect("a chunk is at most a page")
                    .copy_from_slice(chunk);
                let block = u32::try_from(block).expect("a symlink has few pages");
                txn.pages
                    .insert(Key::new(rel, block), Update::Image(Bytes::from(page)));
            }
            let inode = Inode {
                kind,
                mode: owner.mode,
                uid: owner.uid,
                gid: owner.gid,
                nlink: if kind == FileKind::Directory { 2 } else { 1 },
                rel,
                size: data.len() as u64,
                extent_blocks: u32::try_from(pages).expect("a symlink has few pages"),
                parent: if kind == FileKind::Directory {
                    parent
                } else {
                    0
                },
                rdev,
                dropping_to: 0,
                atime: now,
                mtime: now,
                ctime: now,
                crtime: now,
            };
            let mut changed = Changed::new(state);
            changed.inodes.insert(ino, inode);
            let parent_inode = changed.get(parent)?;
            touch(parent_inode, now);
            if kind == FileKind::Directory {
                parent_inode.nlink = subdirectory_added(parent, parent_inode.nlink)?;
            }
            let state = changed.write(&mut txn);
            self.insert_entry(state, &mut txn, parent, name, ino, kind)?;
            self.commit(state, txn)?;
            state.retain(ino);
            Ok(inode.attributes(ino, page_size))
        })
    }

    /// Removes the name of a file, symlink or special file.
    pub fn unlink(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.written(self.remove(parent, name, false))
    }

    /// Removes an empty directory.
    pub fn remove_directory(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.written(self.remove(parent, name, true))
    }

    fn remove(&self, parent: u64, name: &[u8], directory: bool) -> FsResult<()> {
        let mut state = self.lock_writable()?;
        let parent = ino32(parent)?;
        let (ino, kind) = entry(&mut state, self, parent, name)?;
        self.check_removable(&mut state, directory, ino, kind)?;
        let freed = self.freed_by_unlink(&state, ino)?;
        let now = self.now();
        let mut txn = Txn::default();
        let mut changed = Changed::new(&mut state);
        touch(changed.get(parent)?, now);
        unlink_inode(&mut changed, parent, ino, now)?;
        let state = changed.write(&mut txn);
        self.changing(state, |state| {
            self.remove_entry(state, &mut txn, parent, name)?;
            self.finish_unlink(state, txn, ino, freed)
        })
    }

    /// Moves `name` in `parent` to `new_name` in `new_parent`, replacing what is there
    /// (unless `no_replace`): a file replaces a file or symlink, a directory an empty
    /// directory. Renaming a name onto itself, or onto another name of the same inode,
    /// does nothing.
    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
        no_replace: bool,
    ) -> FsResult<()> {
        self.written(self.rename_logged(parent, name, new_parent, new_name, no_replace))
    }

    fn rename_logged(
        &self,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
        no_replace: bool,
    ) -> FsResult<()> {
        check_name(new_name)?;
        let mut state = self.lock_writable()?;
        let (parent, new_parent) = (ino32(parent)?, ino32(new_parent)?);
        let (ino, kind) = entry(&mut state, self, parent, name)?;
        state.dir_inode(new_parent)?;
        if kind == FileKind::Directory && is_within(&state, new_parent, ino)? {
            return Err(FsError::IntoOwnSubtree {
                ino: u64::from(ino),
            });
        }
        let target = state.dir(self, new_parent)?.entries.get(new_name).copied();
        if let Some((target, target_kind, _)) = target {
            if target == ino {
                return Ok(());
            }
            if target_kind == FileKind::Directory && is_within(&state, parent, target)? {
                // The target holds the source, so it is not empty (Linux says so first).
                return Err(FsError::NotEmpty {
                    ino: u64::from(target),
                });
            }
            if no_replace {
                return Err(exists(new_parent, new_name));
            }
            self.check_removable(&mut state, kind == FileKind::Directory, target, target_kind)?;
        }
        let freed = match target {
            Some((target, _, _)) => self.freed_by_unlink(&state, target)?,
            None => None,
        };
        let now = self.now();
        let mut txn = Txn::default();
        let mut changed = Changed::new(&mut state);
        touch(changed.get(parent)?, now);
        touch(changed.get(new_parent)?, now);
        let replaced = match target {
            Some((target, _, _)) => {
                unlink_inode(&mut changed, new_parent, target, now)?;
                Some(target)
            }
            None => None,
        };
        let moved = changed.get(ino)?;
        moved.ctime = now;
        if kind == FileKind::Directory && parent != new_parent {
            moved.parent = new_parent;
            let from = changed.get(parent)?;
            from.nlink = subdirectory_removed(parent, from.nlink)?;
            let to = changed.get(new_parent)?;
            to.nlink = subdirectory_added(new_parent, to.nlink)?;
        }
        let state = changed.write(&mut txn);
        self.changing(state, |state| {
            if replaced.is_some() {
                self.remove_entry(state, &mut txn, new_parent, new_name)?;
            }
            self.remove_entry(state, &mut txn, parent, name)?;
            self.insert_entry(state, &mut txn, new_parent, new_name, ino, kind)?;
            match replaced {
                Some(target) => self.finish_unlink(state, txn, target, freed),
                None => self.commit(state, txn),
            }
        })
    }

    /// Refuses to remove (or replace) inode `ino` of `kind` where a directory is
    /// `wanted` (or not): the wrong kind, or a directory that is not empty.
    fn check_removable(
        &self,
        state: &mut State,
        wanted_directory: bool,
        ino: u32,
        kind: FileKind,
    ) -> FsResult<()> {
        let ino64 = u64::from(ino);
        match (wanted_directory, kind == FileKind::Directory) {
            (false, true) => Err(FsError::IsDirectory { ino: ino64 }),
            (true, false) => Err(FsError::NotDirectory { ino: ino64 }),
            (true, true) if !state.dir(self, ino)?.entries.is_empty() => {
                Err(FsError::NotEmpty { ino: ino64 })
            }
            _ => Ok(()),
        }
    }

    /// What taking inode `ino`'s last name frees, read before the operation changes
    /// anything (a failed read then changes nothing): nothing if it stays referenced (an
    /// open file, freed at its last `forget`), else its data relation and the blocks of it
    /// that may hold a page.
    fn freed_by_unlink(&self, state: &State, ino: u32) -> FsResult<Option<(u32, Vec<u32>)>> {
        if state.is_referenced(ino) {
            return Ok(None);
        }
        self.pages_to_free(state, ino).map(Some)
    }

    /// Commits an operation that took inode `ino`'s last name, freeing the inode and the
    /// pages `freed` names in the same commit when nothing references it.
    fn finish_unlink(
        &self,
        state: &mut State,
        txn: Txn,
        ino: u32,
        freed: Option<(u32, Vec<u32>)>,
    ) -> FsResult<()> {
        match freed {
            Some((rel, blocks)) => self.free_inode_in(state, txn, ino, rel, &blocks),
            None => self.commit(state, txn),
        }
    }

    /// Runs `change`, the part of an operation after it has changed the tree's memory
    /// (inode table pages, directories) and before its commit is logged. An error there
    /// leaves memory ahead of the log, which a later commit would carry along in part: so
    /// the tree fails, and refuses everything until it is opened again (found by a review:
    /// a read failing in the middle of an unlink left the name gone from memory only, for
    /// the next commit of that directory to log).
    pub(crate) fn changing<T>(
        &self,
        state: &mut State,
        change: impl FnOnce(&mut State) -> FsResult<T>,
    ) -> FsResult<T> {
        let result = change(state);
        if let Err(error) = &result {
            state.fail(error);
        }
        result
    }

    fn insert_entry(
        &self,
        state: &mut State,
        txn: &mut Txn,
        dir_ino: u32,
        name: &[u8],
        ino: u32,
        kind: FileKind,
    ) -> FsResult<()> {
        let page_size = self.page_size;
        let len = dir_entry_len(name);
        let dir = state.dir(self, dir_ino)?;
        let room = dir
            .pages
            .iter()
            .position(|(_, used)| used + len <= page_size);
        let page = match room {
            Some(page) => page,
            None => {
                dir.pages.push((Default::default(), DIR_PAGE_HEADER));
                dir.pages.len() - 1
            }
        };
        let grew = room.is_none();
        let (names, used) = dir.pages.get_mut(page).expect("chosen or pushed above");
        names.insert(name.to_vec(), (ino, kind));
        *used += len;
        let page = u32::try_from(page).map_err(|_| FsError::NoSpace {
            what: "directory pages",
        })?;
        dir.entries.insert(name.to_vec(), (ino, kind, page));
        if grew {
            let mut inode = state.inode(dir_ino)?;
            inode.size += page_size as u64;
            inode.extent_blocks = page + 1;
            state.put_inode(txn, dir_ino, Some(&inode));
        }
        self.stage_dir_page(state, txn, dir_ino, page)
    }

    fn remove_entry(
        &self,
        state: &mut State,
        txn: &mut Txn,
        dir_ino: u32,
        name: &[u8],
    ) -> FsResult<()> {
        let dir = state.dir(self, dir_ino)?;
        let (_, _, page) = dir.entries.remove(name).ok_or_else(|| FsError::Corrupt {
            what: format!("directory {dir_ino}"),
            detail: "an entry vanished during an operation".to_owned(),
        })?;
        if let Some((names, used)) = dir.pages.get_mut(page as usize) {
            names.remove(name);
            *used -= dir_entry_len(name);
        }
        self.stage_dir_page(state, txn, dir_ino, page)
    }

    fn stage_dir_page(
        &self,
        state: &mut State,
        txn: &mut Txn,
        dir_ino: u32,
        page: u32,
    ) -> FsResult<()> {
        let rel = state.inode(dir_ino)?.rel;
        let dir = state.dir(self, dir_ino)?;
        let entries = dir.pages.get(page as usize).map(|(entries, _)| entries);
        let entries = entries
            .into_iter()
            .flatten()
            .map(|(name, &(ino, kind))| (name.as_slice(), ino, kind));
        let image = crate::format::encode_dir_page(entries, self.page_size);
        txn.pages.insert(Key::new(rel, page), Update::Image(image));
        Ok(())
    }
}

/// Takes `ino`'s name away in directory `parent` (both already in `changed`).
fn unlink_inode(changed: &mut Changed<'_>, parent: u32, ino: u32, now: FileTime) -> FsResult<()> {
    let inode = changed.get(ino)?;
    inode.ctime = now;
    inode.nlink = 0;
    if inode.kind == FileKind::Directory {
        let inode = changed.get(parent)?;
        inode.nlink = subdirectory_removed(parent, inode.nlink)?;
    }
    Ok(())
}

/// Directory `dir`'s link count once a subdirectory joins it. Counts are 2 plus the
/// subdirectories, so one past what a u32 holds, or one that would fall below 2, is
/// damage (a review's crafted counts overflowed the arithmetic and panicked the mount).
fn subdirectory_added(dir: u32, nlink: u32) -> FsResult<u32> {
    nlink
        .checked_add(1)
        .ok_or_else(|| bad_link_count(dir, nlink))
}

/// See [`subdirectory_added`].
fn subdirectory_removed(dir: u32, nlink: u32) -> FsResult<u32> {
    nlink
        .checked_sub(1)
        .filter(|&nlink| nlink >= 2)
        .ok_or_else(|| bad_link_count(dir, nlink))
}

fn bad_link_count(dir: u32, nlink: u32) -> FsError {
    FsError::Corrupt {
        what: format!("directory {dir}"),
        detail: format!("a link count of {nlink} for the subdirectories it holds"),
    }
}

fn entry(
    state: &mut State,
    tree: &FileTree,
    parent: u32,
    name: &[u8],
) -> FsResult<(u32, FileKind)> {
    if name.len() > crate::format::NAME_MAX {
        // No entry can hold it: say so, as Linux file systems do, rather than "not found".
        check_name(name)?;
    }
    let (ino, kind, _) =
        *state
            .dir(tree, parent)?
            .entries
            .get(name)
            .ok_or_else(|| FsError::NotFound {
                parent: u64::from(parent),
                name: String::from_utf8_lossy(name).into_owned(),
            })?;
    Ok((ino, kind))
}

/// Whether directory `dir` is `ancestor` or lies below it. A chain of parents longer
/// than the tree has inodes loops, which only damage makes (a review's crafted pair of
/// directories, each the other's parent, hung every rename into them).
fn is_within(state: &State, mut dir: u32, ancestor: u32) -> FsResult<bool> {
    let start = dir;
    for _ in 0..=state.inode_count_bound() {
        if dir == ancestor {
            return Ok(true);
        }
        if dir == ROOT_INO {
            return Ok(false);
        }
        dir = state.dir_inode(dir)?.parent;
    }
    Err(FsError::Corrupt {
        what: format!("directory {start}"),
        detail: "its chain of parent directories loops".to_owned(),
    })
}

fn exists(parent: u32, name: &[u8]) -> FsError {
    FsError::Exists {
        parent: u64::from(parent),
        name: String::from_utf8_lossy(name).into_owned(),
    }
}

fn touch(inode: &mut Inode, now: FileTime) {
    inode.mtime = now;
    inode.ctime = now;
}

pub(crate) fn check_mode(mode: u32) -> FsResult<()> {
    if mode > 0o7777 {
        return Err(FsError::InvalidArgument {
            what: format!("mode {mode:#o} (permission bits are at most 0o7777)"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use pagefork_engine::{Config, Store};

    use super::{FileTree, Owner, Txn};
    use crate::error::FsError;
    use crate::tree::TreeOptions;

    const OWNER: Owner = Owner {
        mode: 0o644,
        uid: 0,
        gid: 0,
    };

    /// An error after an operation changed the tree's memory fails the tree: nothing is
    /// accepted until it is opened again, and the store holds none of the operation.
    #[test]
    fn an_error_after_memory_changed_fails_the_tree() {
        let store = Store::in_memory(Config::default()).unwrap();
        let tree = FileTree::open(store.clone(), "main", TreeOptions::default()).unwrap();
        let root = tree.root();
        tree.create_file(root, b"before", OWNER).unwrap();
        let head = store.branch_info("main").unwrap().head;
        let refused = tree.changing(&mut tree.lock().unwrap(), |state| {
            // An inode number handed out in memory only, as a create does first.
            state.allocate_ino(&mut Txn::default())?;
            Err::<(), _>(FsError::NoSpace { what: "a test" })
        });
        assert!(matches!(refused, Err(FsError::NoSpace { .. })));
        let after = tree.create_file(root, b"after", OWNER).unwrap_err();
        assert!(matches!(after, FsError::Failed { .. }), "{after}");
        assert_eq!(store.branch_info("main").unwrap().head, head);
        drop(tree);
        let reopened = FileTree::open(store, "main", TreeOptions::default()).unwrap();
        reopened.lookup(root, b"before").unwrap();
        reopened.create_file(root, b"after", OWNER).unwrap();
    }
}
