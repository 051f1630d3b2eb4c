//! File data: reads, writes and attribute changes (truncation among them).
//!
//! Invariants: a file's bytes at or beyond its size read as zeros, whatever its pages
//! held (a truncation zeroes the rest of its last page and drops the pages after it in
//! the same commit); a hole (a page never written) reads as zeros; a write changes the
//! pages it covers and the file's size and times in one commit.

use bytes::{Bytes, BytesMut};
use pagefork_engine::{Key, Update};

use super::FileTree;
use super::names::check_mode;
use super::state::{Txn, ino32};
use crate::error::{FsError, FsResult};
use crate::inode::{Attributes, FileKind, Inode, SetAttributes};

/// Reads at least this large are taken for a sequential reader's.
const SEQUENTIAL_READ_BYTES: u64 = 256 << 10;
/// How far past such a read the engine is asked to start reading from disk.
const READ_AHEAD_BYTES: u64 = 4 << 20;

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Bytes written: all that were given.
    pub bytes: u32,
    /// Whether the file's `blocks` grew (a page past its stored ones): a kernel caching
    /// the file's attributes must be told to ask again. A write within its pages (most
    /// overwrites) leaves it false.
    pub grew: bool,
}

impl FileTree {
    /// Up to `len` bytes of file `ino` from `offset` (fewer at the end of the file).
    pub fn read(&self, ino: u64, offset: u64, len: u32) -> FsResult<Vec<u8>> {
        let (ino, inode) = {
            let state = self.lock()?;
            let ino = ino32(ino)?;
            (ino, state.inode(ino)?)
        };
        match inode.kind {
            FileKind::File => self.read_bytes(&inode, offset, u64::from(len)),
            FileKind::Directory => Err(FsError::IsDirectory {
                ino: u64::from(ino),
            }),
            FileKind::Symlink => Err(FsError::InvalidArgument {
                what: format!("inode {ino} is a symlink: read its target"),
            }),
            special => Err(FsError::InvalidArgument {
                what: format!("inode {ino} is a {special:?}: the kernel serves its data"),
            }),
        }
    }

    /// Bytes `offset..offset + len` of `inode`'s data, cut at its size.
    pub(crate) fn read_bytes(&self, inode: &Inode, offset: u64, len: u64) -> FsResult<Vec<u8>> {
        let end = offset.saturating_add(len).min(inode.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let page_size = self.page_size as u64;
        let (first, last) = (offset / page_size, (end - 1) / page_size);
        // A large read is the kernel's read-ahead of a sequential reader: read ahead of
        // it too, so the disk is busy while the pages asked for are decoded and sent.
        let ahead = match end - offset >= SEQUENTIAL_READ_BYTES {
            true => READ_AHEAD_BYTES / page_size,
            false => 0,
        };
        let stored_end = u64::from(inode.extent_blocks).min(last + 1 + ahead);
        if stored_end > first {
            // Have the engine start reading every stored page's block from disk at once:
            // several pages in one read, and a single page's block (two or three pages of
            // a layer file) in one read rather than a fault per page. Against a FUSE round
            // trip, the hint costs nothing when the blocks are cached already.
            let block = |block: u64| u32::try_from(block).expect("below the extent, a u32");
            let (from, to) = (
                Key::new(inode.rel, block(first)),
                Key::new(inode.rel, block(stored_end - 1)),
            );
            self.store
                .prefetch(&self.branch, from, to, self.read_at())?;
        }
        let mut out = Vec::with_capacity(usize::try_from(end - offset).unwrap_or(0));
        let mut at = offset;
        while at < end {
            let block = at / page_size;
            let in_page = (at % page_size) as usize;
            let take = (page_size - at % page_size).min(end - at) as usize;
            let page = match u32::try_from(block) {
                Ok(block) if block < inode.extent_blocks => self.read_page(inode.rel, block)?,
                _ => None,
            };
            match page {
                Some(page) => {
                    let bytes =
                        page.get(in_page..in_page + take)
                            .ok_or_else(|| FsError::Corrupt {
                                what: format!("page {block} of relation {}", inode.rel),
                                detail: format!("{} bytes", page.len()),
                            })?;
                    out.extend_from_slice(bytes);
                }
                None => out.resize(out.len() + take, 0),
            }
            at += take as u64;
        }
        Ok(out)
    }

    /// Writes `data` at `offset` of file `ino`, extending it (with a hole, if `offset` is
    /// past its end) as needed. Returns the bytes written (all of them), and whether the
    /// file's `blocks` grew.
    pub fn write(&self, ino: u64, offset: u64, data: &[u8]) -> FsResult<Written> {
        let written = u32::try_from(data.len())
            .ok()
            .filter(|&len| len <= self.max_write)
            .ok_or_else(|| FsError::InvalidArgument {
                what: format!(
                    "a write of {} bytes (one write takes at most {} bytes, one commit)",
                    data.len(),
                    self.max_write
                ),
            })?;
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&end| end <= self.max_file_size())
            .ok_or(FsError::FileTooLarge {
                size: offset.saturating_add(data.len() as u64),
                max: self.max_file_size(),
            })?;
        // The pages the write covers whole are copied before the tree's lock is taken,
        // so concurrent writers copy at once rather than one after another.
        let whole = self.whole_pages(offset, data);
        let mut state = self.lock_writable()?;
        let ino = ino32(ino)?;
        let mut inode = state.inode(ino)?;
        check_file(ino, &inode)?;
        if data.is_empty() {
            return Ok(Written {
                bytes: 0,
                grew: false,
            });
        }
        if inode.dropping_to != 0 {
            // Its pages above the extent would be read as the file's once it grew.
            return Err(FsError::Corrupt {
                what: format!("inode {ino}"),
                detail: "a truncation not finished before a write".to_owned(),
            });
        }
        let pages_before = inode.pages(self.page_size);
        let page_size = self.page_size as u64;
        let mut txn = Txn::default();
        // Whether a page the write covers in part holds anything is decided by the file
        // as it was, before the pages below raise its extent.
        let stored_blocks = inode.extent_blocks;
        for (block, page) in whole {
            txn.pages
                .insert(Key::new(inode.rel, block), Update::Image(page));
            inode.extent_blocks = inode.extent_blocks.max(block + 1);
        }
        // The pages it covers in part: merged into what each page holds (read anyway to
        // know whether it exists), so reads never replay chains of patches.
        let mut at = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let block = u32::try_from(at / page_size).expect("checked against the largest file");
            let in_page = (at % page_size) as usize;
            let take = (self.page_size - in_page).min(rest.len());
            let (chunk, after) = rest.split_at(take);
            if take < self.page_size {
                let existing = match block < stored_blocks {
                    true => self.read_page(inode.rel, block)?,
                    false => None,
                };
                let mut page = match existing {
                    Some(page) if page.len() == self.page_size => BytesMut::from(&page[..]),
                    _ => BytesMut::zeroed(self.page_size),
                };
                page.get_mut(in_page..in_page + take)
                    .expect("the chunk is within the page")
                    .copy_from_slice(chunk);
                txn.pages
                    .insert(Key::new(inode.rel, block), Update::Image(page.freeze()));
                inode.extent_blocks = inode.extent_blocks.max(block + 1);
            }
            at += take as u64;
            rest = after;
        }
        inode.size = inode.size.max(end);
        if !self.kernel_keeps_times {
            let now = self.now();
            inode.mtime = now;
            inode.ctime = now;
        }
        let grew = inode.pages(self.page_size) != pages_before;
        state.put_inode(&mut txn, ino, Some(&inode));
        self.commit(&mut state, txn)?;
        drop(state);
        // Outside the tree's lock: the log write it may do (and, every 16 MiB, the next
        // segment made and fsynced) does not hold up every other request of the mount.
        if let Err(error) = self.store.write_behind() {
            self.state.lock().fail(&error);
            return Err(FsError::Store(error));
        }
        Ok(Written {
            bytes: written,
            grew,
        })
    }

    /// The pages a write of `data` at `offset` covers whole, by block: one copy of them,
    /// which the pages share.
    fn whole_pages(&self, offset: u64, data: &[u8]) -> Vec<(u32, Bytes)> {
        let page_size = self.page_size as u64;
        let end = offset + data.len() as u64;
        let first = offset.div_ceil(page_size);
        let last = end / page_size;
        if first >= last {
            return Vec::new();
        }
        let skip = usize::try_from(first * page_size - offset).expect("within the write");
        let len = usize::try_from((last - first) * page_size).expect("within the write");
        let copy = Bytes::copy_from_slice(
            data.get(skip..skip + len)
                .expect("whole pages lie within the write"),
        );
        (first..last)
            .zip((0..len).step_by(self.page_size))
            .map(|(block, start)| {
                let block = u32::try_from(block).expect("checked against the largest file");
                (block, copy.slice(start..start + self.page_size))
            })
            .collect()
    }

    /// Changes an inode's attributes in one commit (its ctime becomes now). A new size
    /// truncates or extends a file with zeros; a truncation that drops more pages than
    /// one commit holds (65,536 with the default WAL segments) drops them in further
    /// commits after that one, which nothing reads (see `finish_truncation`).
    ///
    /// A change of size, mode or owner is in the log's files when it returns, as a change
    /// of names is (found by a review: a truncate that had returned was lost with a killed
    /// mount; SQLite with `journal_mode=TRUNCATE` and `synchronous=NORMAL` commits by
    /// truncating its journal). Times alone, which the kernel sends as it writes back,
    /// are not waited for.
    pub fn set_attributes(&self, ino: u64, changes: SetAttributes) -> FsResult<Attributes> {
        let waits_for_the_log = changes.size.is_some()
            || changes.mode.is_some()
            || changes.uid.is_some()
            || changes.gid.is_some();
        let result = self.set_attributes_logged(ino, changes);
        match waits_for_the_log {
            true => self.written(result),
            false => result,
        }
    }

    /// `set_attributes`, logged without waiting.
    fn set_attributes_logged(&self, ino: u64, changes: SetAttributes) -> FsResult<Attributes> {
        if let Some(mode) = changes.mode {
            check_mode(mode)?;
        }
        // A time the decoder would call damage is never written (a review found one call
        // could leave a tree no open accepts).
        for time in [changes.atime, changes.mtime, changes.ctime]
            .into_iter()
            .flatten()
        {
            if time.nanos >= 1_000_000_000 {
                return Err(FsError::InvalidArgument {
                    what: format!(
                        "a time of {} nanoseconds past a second (at most 999,999,999)",
                        time.nanos
                    ),
                });
            }
        }
        let mut state = self.lock_writable()?;
        let ino = ino32(ino)?;
        let mut inode = state.inode(ino)?;
        if let Some(size) = changes.size {
            check_file(ino, &inode)?;
            if size > self.max_file_size() {
                return Err(FsError::FileTooLarge {
                    size,
                    max: self.max_file_size(),
                });
            }
        }
        if changes.only_restate_times(&inode) {
            // The kernel writing back times it already had from us (after a rename or an
            // unlink, with the writeback cache): nothing to commit.
            return Ok(inode.attributes(ino, self.page_size));
        }
        let now = self.now();
        let mut txn = Txn::default();
        let mut later = None;
        if let Some(size) = changes.size {
            later = self.resize(&mut state, &mut txn, &mut inode, size)?;
            inode.mtime = now;
        }
        inode.mode = changes.mode.unwrap_or(inode.mode);
        inode.uid = changes.uid.unwrap_or(inode.uid);
        inode.gid = changes.gid.unwrap_or(inode.gid);
        inode.atime = changes.atime.unwrap_or(inode.atime);
        inode.mtime = changes.mtime.unwrap_or(inode.mtime);
        inode.ctime = changes.ctime.unwrap_or(now);
        state.put_inode(&mut txn, ino, Some(&inode));
        self.commit(&mut state, txn)?;
        if let Some(blocks) = later {
            self.finish_dropping(&mut state, Some(&blocks))?;
        }
        if inode.dropping_to != 0 {
            // Until it is finished nothing else may change the file: a failure fails the
            // tree, and the next writable open finishes it.
            self.changing(&mut state, |state| self.finish_truncation(state, ino))?;
        }
        Ok(inode.attributes(ino, self.page_size))
    }

    /// Drops the pages a big truncation of file `ino` left above its extent, in commits
    /// of their own (nothing reads them), then clears its mark in one more.
    pub(crate) fn finish_truncation(
        &self,
        state: &mut super::state::State,
        ino: u32,
    ) -> FsResult<()> {
        let mut inode = state.inode(ino)?;
        if inode.dropping_to == 0 {
            return Ok(());
        }
        let blocks = self.stored_blocks(inode.rel, inode.extent_blocks, inode.dropping_to)?;
        self.drop_pages_later(state, inode.rel, &blocks)?;
        inode.dropping_to = 0;
        let mut txn = Txn::default();
        state.put_inode(&mut txn, ino, Some(&inode));
        self.commit(state, txn)
    }

    /// Sets `inode`'s size to `size`, adding what it takes to `txn`. Returns the pages of a
    /// relation the file no longer uses, to drop after the commit.
    fn resize(
        &self,
        state: &mut super::state::State,
        txn: &mut Txn,
        inode: &mut Inode,
        size: u64,
    ) -> FsResult<Option<Vec<u32>>> {
        if size >= inode.size {
            inode.size = size;
            return Ok(None);
        }
        let page_size = self.page_size as u64;
        let keep_blocks = u32::try_from(size.div_ceil(page_size)).expect("checked size");
        // (A mark left by an earlier truncation is finished before anything else can
        // resize the file; covered all the same.)
        let blocks = self.stored_blocks(inode.rel, keep_blocks, inode.stored_end())?;
        let too_many = blocks.len() > self.drops_per_commit as usize;
        if size == 0 && too_many {
            // Too many pages for one commit: the file moves to a fresh relation at once
            // and the old one's pages go afterwards (nothing can read them meanwhile).
            state.check_room()?;
            super::state::check_nothing_dropping(state)?;
            super::state::record_dropping(state, txn, inode.rel, &blocks);
            let later = Some(blocks);
            inode.rel = state.allocate_rel(txn);
            inode.extent_blocks = 0;
            inode.dropping_to = 0;
            inode.size = 0;
            return Ok(later);
        }
        if too_many {
            // The file takes its new size in this one commit, marked as dropping the pages
            // above it, which `finish_truncation` drops after it (found by a review: the
            // pages went first, in commits that each showed a smaller file, so a branch,
            // a past view or a power cut could see a size nobody asked for).
            inode.dropping_to = inode.stored_end();
        } else {
            self.drop_pages(txn, inode.rel, &blocks);
            inode.dropping_to = 0;
        }
        let tail = (size % page_size) as usize;
        let last = keep_blocks.wrapping_sub(1);
        if tail != 0 && last < inode.extent_blocks && self.read_page(inode.rel, last)?.is_some() {
            txn.pages.insert(
                Key::new(inode.rel, last),
                Update::Patch {
                    offset: u32::try_from(tail).expect("within a page"),
                    bytes: Bytes::from(vec![0u8; self.page_size - tail]),
                },
            );
        }
        inode.extent_blocks = inode.extent_blocks.min(keep_blocks);
        inode.size = size;
        Ok(None)
    }
}

fn check_file(ino: u32, inode: &Inode) -> FsResult<()> {
    match inode.kind {
        FileKind::File => Ok(()),
        FileKind::Directory => Err(FsError::IsDirectory {
            ino: u64::from(ino),
        }),
        other => Err(FsError::InvalidArgument {
            what: format!("inode {ino} is a {other:?}, not a regular file"),
        }),
    }
}
