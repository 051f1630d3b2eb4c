//! The tree's memory: the superblock, the inode table's pages and the directories read so
//! far, and `Txn`, which gathers one operation's page updates into one commit.
//!
//! Invariants: the cached pages are exactly what the branch holds at the tree's view, plus
//! the changes of the operation in progress (an operation checks everything it can refuse
//! before it changes memory, and a failed commit fails the whole tree, so memory never
//! runs ahead of the log in a tree that still answers).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::{Bytes, BytesMut};
use pagefork_engine::{At, Key, Lsn, Store, Update};

use super::FileTree;
use crate::error::{FsError, FsResult};
use crate::format::{
    self, DroppingRelation, FIRST_DATA_REL, INODE_BYTES, ROOT_INO, Superblock, TABLE_REL,
    decode_inode, encode_inode, inode_slot, inodes_per_page,
};
use crate::inode::{FileKind, FileTime, Inode};

/// How many pages one commit drops at most (about 600 KB of log, less if the store's
/// commits are smaller); a bigger drop goes in several commits.
const MAX_DROPS_PER_COMMIT: u32 = 1 << 16;
/// Patches an inode table page takes before it is logged whole again.
const TABLE_PATCHES_PER_IMAGE: u32 = 32;
/// Log bytes one update of a commit takes besides its data (key, tag, lengths).
const UPDATE_OVERHEAD_BYTES: u64 = 16;
/// Log bytes an operation's inode, directory and superblock updates may take besides
/// its data: a rename touches up to four inodes and three directory pages.
const METADATA_ALLOWANCE_PAGES: u64 = 8;

/// How many pages one commit can drop in a store whose commits take `max_commit_bytes`.
pub(crate) fn drops_per_commit(max_commit_bytes: u64) -> u32 {
    let fit = max_commit_bytes / (2 * UPDATE_OVERHEAD_BYTES);
    u32::try_from(fit)
        .unwrap_or(u32::MAX)
        .clamp(1, MAX_DROPS_PER_COMMIT)
}

/// The largest write that fits in one commit with its metadata, in whole pages, at most
/// 1 MiB.
pub(crate) fn max_write_bytes(max_commit_bytes: u64, page_size: usize) -> u32 {
    let page = page_size as u64 + UPDATE_OVERHEAD_BYTES;
    let pages = (max_commit_bytes / page).saturating_sub(METADATA_ALLOWANCE_PAGES + 1);
    let bytes = (pages * page_size as u64).min(1 << 20);
    u32::try_from(bytes).unwrap_or(1 << 20)
}

/// A directory's entries and which page holds each.
#[derive(Debug, Default)]
pub(crate) struct Dir {
    /// Name -> (inode, kind, page).
    pub(crate) entries: BTreeMap<Vec<u8>, (u32, FileKind, u32)>,
    /// Per page: the entries it holds (name -> (inode, kind), as in `entries`) and the
    /// bytes they take, so a page is encoded without looking each name up.
    pub(crate) pages: Vec<(DirPage, usize)>,
}

/// The entries of one directory page.
pub(crate) type DirPage = BTreeMap<Vec<u8>, (u32, FileKind)>;

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) superblock: Superblock,
    table: HashMap<u32, BytesMut>,
    pub(crate) dirs: HashMap<u32, Dir>,
    free_inos: BTreeSet<u32>,
    /// Linked nowhere, found when the tree was opened (freed then, if writable).
    pub(crate) orphans: BTreeSet<u32>,
    /// Files a big truncation left marked (`Inode::dropping_to`), found at open: a crash
    /// came before it finished, which a writable open does first.
    pub(crate) truncating: BTreeSet<u32>,
    lookups: HashMap<u32, u64>,
    /// Patches logged per inode table page since its last whole image.
    table_patches: HashMap<u32, u32>,
    /// The newest commit this tree logged.
    pub(crate) last_lsn: Option<Lsn>,
    pub(crate) failed: Option<String>,
    page_size: usize,
}

/// A 64-bit inode number as the tree's 32-bit one.
pub(crate) fn ino32(ino: u64) -> FsResult<u32> {
    u32::try_from(ino)
        .ok()
        .filter(|&ino| ino >= ROOT_INO)
        .ok_or(FsError::NoInode { ino })
}

impl State {
    /// Reads the superblock and the whole inode table, creating an empty tree on a
    /// writable branch that has none.
    pub(crate) fn load(
        store: &Store,
        branch: &str,
        at: At,
        page_size: usize,
        now: FileTime,
    ) -> FsResult<State> {
        let superblock = match store.get_page(branch, format::superblock_key(), at)? {
            // Pages the page API wrote at the tree's reserved key: another kind of data,
            // refused as no tree (a review got a 500 "corrupt superblock" for it).
            Some(page) if !Superblock::has_magic(&page) => {
                return Err(FsError::OtherData {
                    branch: branch.to_owned(),
                    key: format::superblock_key(),
                });
            }
            Some(page) => Superblock::decode(&page)?,
            None if at == At::Latest => format_tree(store, branch, page_size, now)?,
            None => {
                return Err(FsError::NotATree {
                    branch: branch.to_owned(),
                    lsn: match at {
                        At::Lsn(lsn) => Some(lsn),
                        At::Latest | At::Time(_) => None,
                    },
                });
            }
        };
        if superblock.page_size as usize != page_size {
            return Err(FsError::Corrupt {
                what: "superblock".to_owned(),
                detail: format!(
                    "page size {}, the store's is {page_size}",
                    superblock.page_size
                ),
            });
        }
        let mut state = State {
            superblock,
            table: HashMap::new(),
            dirs: HashMap::new(),
            free_inos: BTreeSet::new(),
            orphans: BTreeSet::new(),
            truncating: BTreeSet::new(),
            lookups: HashMap::new(),
            table_patches: HashMap::new(),
            last_lsn: None,
            failed: None,
            page_size,
        };
        let per_page = inodes_per_page(page_size);
        let last_block = (superblock.inode_high_water - 1) / per_page + 1;
        // Which inode holds each data relation: relations are handed out once, in order,
        // so one held twice, or one not yet handed out, is damage (a write to either
        // would change another file, or a file still to come).
        let mut rel_owners = HashMap::new();
        for block in 1..=last_block {
            // Inodes are handed out in order and each one's slot is written, so every
            // table page up to the high-water mark exists: a missing one is damage (a
            // review's superblock claiming 2^32 inodes had the open allocate a zeroed
            // page for each, without end).
            let page = match store.get_page(branch, Key::new(TABLE_REL, block), at)? {
                Some(page) => BytesMut::from(&page[..]),
                None => {
                    return Err(FsError::Corrupt {
                        what: "superblock".to_owned(),
                        detail: format!(
                            "inode high-water mark {} needs inode table page {block}, which \
                             does not exist",
                            superblock.inode_high_water
                        ),
                    });
                }
            };
            let first = ((block - 1) * per_page).max(ROOT_INO);
            let end = (block * per_page).min(superblock.inode_high_water);
            for ino in first..end {
                let (_, offset) = inode_slot(ino, page_size);
                match decode_inode(ino, page.get(offset..offset + INODE_BYTES).unwrap_or(&[]))? {
                    None => {
                        state.free_inos.insert(ino);
                    }
                    Some(inode) => {
                        check_rel(&superblock, &mut rel_owners, ino, inode.rel)?;
                        check_file_size(&inode, ino, page_size)?;
                        if inode.nlink == 0 {
                            state.orphans.insert(ino);
                        }
                        if inode.dropping_to != 0 {
                            state.truncating.insert(ino);
                        }
                    }
                }
            }
            state.table.insert(block, page);
        }
        let root = state.inode(ROOT_INO)?;
        // The root is never unlinked: a link count below a directory's 2 would have a
        // writable open free it as an orphan, and the whole tree with it.
        if root.kind != FileKind::Directory || root.nlink < 2 {
            return Err(FsError::Corrupt {
                what: format!("inode {ROOT_INO}"),
                detail: format!(
                    "the root is a {} with {} links, not a directory with at least 2",
                    root.kind.name(),
                    root.nlink
                ),
            });
        }
        Ok(state)
    }

    pub(crate) fn inodes_in_use(&self) -> u64 {
        u64::from(self.superblock.inode_high_water - ROOT_INO) - self.free_inos.len() as u64
    }

    /// Inode `ino`, which must be in use.
    pub(crate) fn inode(&self, ino: u32) -> FsResult<Inode> {
        let missing = FsError::NoInode {
            ino: u64::from(ino),
        };
        if ino < ROOT_INO || ino >= self.superblock.inode_high_water {
            return Err(missing);
        }
        let (block, offset) = inode_slot(ino, self.page_size);
        let Some(page) = self.table.get(&block) else {
            return Err(missing);
        };
        decode_inode(ino, page.get(offset..offset + INODE_BYTES).unwrap_or(&[]))?.ok_or(missing)
    }

    /// A directory's inode, refusing other kinds.
    pub(crate) fn dir_inode(&self, ino: u32) -> FsResult<Inode> {
        let inode = self.inode(ino)?;
        if inode.kind != FileKind::Directory {
            return Err(FsError::NotDirectory {
                ino: u64::from(ino),
            });
        }
        Ok(inode)
    }

    /// More than the inodes the tree can hold: its inode high-water mark.
    pub(crate) fn inode_count_bound(&self) -> u32 {
        self.superblock.inode_high_water
    }

    /// Directory `ino`'s entries, read from its pages the first time.
    pub(crate) fn dir(&mut self, tree: &FileTree, ino: u32) -> FsResult<&mut Dir> {
        if !self.dirs.contains_key(&ino) {
            let inode = self.dir_inode(ino)?;
            let corrupt = |detail: String| FsError::Corrupt {
                what: format!("inode {ino}"),
                detail,
            };
            let page_size = self.page_size as u64;
            let pages = u32::try_from(inode.size / page_size)
                .ok()
                .filter(|_| inode.size % page_size == 0)
                .ok_or_else(|| corrupt(format!("a directory of {} bytes", inode.size)))?;
            let mut dir = Dir::default();
            for block in 0..pages {
                // A directory grows a page at a time, each written with the entry that
                // needed it, and keeps its pages once emptied: a missing one is damage
                // (a review's directory of 2^32 pages had an open list empty pages
                // without end).
                let entries = match tree.read_page(inode.rel, block)? {
                    Some(page) => format::decode_dir_page(ino, block, &page)?,
                    None => {
                        return Err(corrupt(format!(
                            "a directory of {} bytes whose page {block} does not exist",
                            inode.size
                        )));
                    }
                };
                let mut names = DirPage::new();
                let mut used = format::DIR_PAGE_HEADER;
                for entry in entries {
                    self.check_entry(ino, block, entry.ino, entry.kind)?;
                    used += format::dir_entry_len(&entry.name);
                    names.insert(entry.name.clone(), (entry.ino, entry.kind));
                    let previous = dir
                        .entries
                        .insert(entry.name, (entry.ino, entry.kind, block));
                    if previous.is_some() {
                        return Err(FsError::Corrupt {
                            what: format!("directory {ino} page {block}"),
                            detail: "a name listed twice".to_owned(),
                        });
                    }
                }
                dir.pages.push((names, used));
            }
            self.dirs.insert(ino, dir);
        }
        Ok(self.dirs.get_mut(&ino).expect("inserted above"))
    }

    /// Checks that an entry of directory `dir`'s page `block` names an inode in use, of
    /// the kind it says, and not the root: renames and unlinks go by the entry's kind,
    /// and a wrong one would have them unlink a directory's children with it, or keep a
    /// file as if it were a directory.
    fn check_entry(&self, dir: u32, block: u32, ino: u32, kind: FileKind) -> FsResult<()> {
        let problem = if ino == ROOT_INO {
            Some("the root".to_owned())
        } else {
            match self.inode(ino) {
                Err(FsError::NoInode { .. }) => Some(format!("inode {ino}, which is not in use")),
                Err(error) => return Err(error),
                Ok(inode) if inode.kind != kind => Some(format!(
                    "inode {ino} as a {}, which is a {}",
                    kind.name(),
                    inode.kind.name()
                )),
                Ok(_) => None,
            }
        };
        match problem {
            Some(problem) => Err(FsError::Corrupt {
                what: format!("directory {dir} page {block}"),
                detail: format!("an entry names {problem}"),
            }),
            None => Ok(()),
        }
    }

    /// Writes `inode` into its slot (memory only; `txn` remembers to log it).
    pub(crate) fn put_inode(&mut self, txn: &mut Txn, ino: u32, inode: Option<&Inode>) {
        let (block, offset) = inode_slot(ino, self.page_size);
        let page_size = self.page_size;
        let page = self
            .table
            .entry(block)
            .or_insert_with(|| BytesMut::zeroed(page_size));
        let slot = inode.map_or([0u8; INODE_BYTES], encode_inode);
        page.get_mut(offset..offset + INODE_BYTES)
            .expect("a slot is within its page")
            .copy_from_slice(&slot);
        let range = txn
            .table
            .entry(block)
            .or_insert((offset, offset + INODE_BYTES));
        range.0 = range.0.min(offset);
        range.1 = range.1.max(offset + INODE_BYTES);
    }

    /// A free inode number (not yet marked used: `put_inode` does that).
    pub(crate) fn allocate_ino(&mut self, txn: &mut Txn) -> FsResult<u32> {
        if let Some(ino) = self.free_inos.pop_first() {
            return Ok(ino);
        }
        let ino = self.superblock.inode_high_water;
        if ino >= u32::MAX / 2 {
            return Err(FsError::NoSpace {
                what: "inode numbers",
            });
        }
        let (block, _) = inode_slot(ino, self.page_size);
        if !self.table.contains_key(&block) {
            txn.new_table_pages.insert(block);
        }
        self.superblock.inode_high_water = ino + 1;
        txn.superblock = true;
        Ok(ino)
    }

    /// Checks that a data relation and an inode number can be handed out.
    pub(crate) fn check_room(&self) -> FsResult<()> {
        if self.superblock.next_rel == u32::MAX {
            return Err(FsError::NoSpace {
                what: "data relations",
            });
        }
        if self.free_inos.is_empty() && self.superblock.inode_high_water >= u32::MAX / 2 {
            return Err(FsError::NoSpace {
                what: "inode numbers",
            });
        }
        Ok(())
    }

    /// A data relation never used on this branch (after `check_room`).
    pub(crate) fn allocate_rel(&mut self, txn: &mut Txn) -> u32 {
        let rel = self.superblock.next_rel;
        assert!(
            (FIRST_DATA_REL..u32::MAX).contains(&rel),
            "checked by check_room"
        );
        self.superblock.next_rel = rel + 1;
        txn.superblock = true;
        rel
    }

    pub(crate) fn retain(&mut self, ino: u32) {
        *self.lookups.entry(ino).or_default() += 1;
    }

    /// Takes references back; true when none are left.
    pub(crate) fn release(&mut self, ino: u32, count: u64) -> bool {
        let Some(held) = self.lookups.get_mut(&ino) else {
            return true;
        };
        *held = held.saturating_sub(count);
        if *held == 0 {
            self.lookups.remove(&ino);
            return true;
        }
        false
    }

    pub(crate) fn is_referenced(&self, ino: u32) -> bool {
        self.lookups.contains_key(&ino)
    }

    pub(crate) fn mark_free(&mut self, ino: u32) {
        self.free_inos.insert(ino);
        self.dirs.remove(&ino);
    }

    pub(crate) fn fail(&mut self, error: &dyn std::fmt::Display) {
        if self.failed.is_none() {
            self.failed = Some(error.to_string());
        }
    }

    /// How inode table page `block` is logged: a patch of the changed range, or, for a
    /// new page and after every `TABLE_PATCHES_PER_IMAGE` patches, the whole page, so no
    /// read of it replays a long chain.
    fn table_update(&mut self, txn: &Txn, block: u32, range: (usize, usize)) -> Update {
        let patches = self.table_patches.entry(block).or_default();
        let whole = txn.new_table_pages.contains(&block) || *patches >= TABLE_PATCHES_PER_IMAGE;
        *patches = if whole { 0 } else { *patches + 1 };
        let page = self
            .table
            .get(&block)
            .expect("a changed table page is cached");
        if whole {
            Update::Image(Bytes::copy_from_slice(page))
        } else {
            Update::Patch {
                offset: u32::try_from(range.0).expect("within a page"),
                bytes: Bytes::copy_from_slice(
                    page.get(range.0..range.1)
                        .expect("a changed range is within its page"),
                ),
            }
        }
    }
}

/// One operation's changes, logged by `FileTree::commit` as one record.
#[derive(Debug, Default)]
pub(crate) struct Txn {
    /// Data and directory pages (and drops).
    pub(crate) pages: BTreeMap<Key, Update>,
    /// Changed byte ranges of inode table pages.
    table: BTreeMap<u32, (usize, usize)>,
    new_table_pages: BTreeSet<u32>,
    superblock: bool,
}

impl FileTree {
    /// Logs `txn` as one commit (not waiting for durability). A failure fails the tree.
    pub(crate) fn commit(&self, state: &mut State, mut txn: Txn) -> FsResult<()> {
        let mut updates: Vec<(Key, Update)> = std::mem::take(&mut txn.pages).into_iter().collect();
        for (&block, &range) in &txn.table {
            let key = Key::new(TABLE_REL, block);
            let update = state.table_update(&txn, block, range);
            updates.push((key, update));
        }
        if txn.superblock {
            // Whole, so the page never carries a chain of patches (one per create).
            let page = state.superblock.encode(self.page_size);
            updates.push((format::superblock_key(), Update::Image(page)));
        }
        if updates.is_empty() {
            return Ok(());
        }
        match self.store.commit_deferred(&self.branch, updates) {
            Ok(commit) => {
                state.last_lsn = Some(commit.lsn);
                Ok(())
            }
            Err(error) => {
                state.fail(&error);
                Err(FsError::Store(error))
            }
        }
    }

    /// Page `block` of data relation `rel` at the tree's view.
    pub(crate) fn read_page(&self, rel: u32, block: u32) -> FsResult<Option<Bytes>> {
        Ok(self
            .store
            .get_page(&self.branch, Key::new(rel, block), self.read_at())?)
    }

    /// Removes inode `ino` and its data, now or, for a big file, over several commits
    /// after the one that frees the inode (the pages are unreachable from then on: a data
    /// relation is never handed out twice).
    pub(crate) fn free_inode(&self, state: &mut State, ino: u32) -> FsResult<()> {
        let (rel, blocks) = self.pages_to_free(state, ino)?;
        self.free_inode_in(state, Txn::default(), ino, rel, &blocks)
    }

    /// What freeing inode `ino` lets go: its data relation and the blocks of it that may
    /// hold a page. Read, and the superblock checked (`check_nothing_dropping`), before
    /// anything changes in memory: a failure then changes nothing.
    pub(crate) fn pages_to_free(&self, state: &State, ino: u32) -> FsResult<(u32, Vec<u32>)> {
        let inode = state.inode(ino)?;
        check_nothing_dropping(state)?;
        let blocks = self.stored_blocks(inode.rel, 0, inode.stored_end())?;
        Ok((inode.rel, blocks))
    }

    /// Frees inode `ino` in `txn`'s commit, with the drops of `blocks` of its relation
    /// `rel` that one commit holds and the rest recorded as being dropped, then drops the
    /// rest (see [`FileTree::pages_to_free`]).
    pub(crate) fn free_inode_in(
        &self,
        state: &mut State,
        mut txn: Txn,
        ino: u32,
        rel: u32,
        blocks: &[u32],
    ) -> FsResult<()> {
        state.put_inode(&mut txn, ino, None);
        let later = self.drop_pages(&mut txn, rel, blocks);
        record_dropping(state, &mut txn, rel, later);
        self.commit(state, txn)?;
        state.mark_free(ino);
        self.finish_dropping(state, Some(later))
    }

    /// Drops the pages of the relation the superblock says is being dropped (`blocks`, or
    /// those the store has in its range), then clears it in one more commit.
    pub(crate) fn finish_dropping(
        &self,
        state: &mut State,
        blocks: Option<&[u32]>,
    ) -> FsResult<()> {
        let Some(dropping) = state.superblock.dropping else {
            return Ok(());
        };
        let found;
        let blocks = match blocks {
            Some(blocks) => blocks,
            None => {
                found = self.stored_blocks(dropping.rel, dropping.from, dropping.to)?;
                &found
            }
        };
        self.drop_pages_later(state, dropping.rel, blocks)?;
        state.superblock.dropping = None;
        let txn = Txn {
            superblock: true,
            ..Txn::default()
        };
        self.commit(state, txn)
    }

    /// The blocks of `rel` in `from..to` that may hold a page, ascending: all of them for
    /// a range one commit drops, otherwise those the store has a version of (a sparse
    /// file written at a far offset is dropped at the cost of its pages, not of its size:
    /// a drop per block of a file written at 1 TiB took minutes and tens of gigabytes).
    pub(crate) fn stored_blocks(&self, rel: u32, from: u32, to: u32) -> FsResult<Vec<u32>> {
        if to <= from {
            return Ok(Vec::new());
        }
        if to - from <= self.drops_per_commit {
            return Ok((from..to).collect());
        }
        let keys = self
            .store
            .keys_in(&self.branch, Key::new(rel, from), Key::new(rel, to - 1))?;
        Ok(keys.into_iter().map(|key| key.block).collect())
    }

    /// Adds drops of the first of `blocks` (of `rel`) to `txn`, up to the limit of one
    /// commit; returns the blocks left over.
    pub(crate) fn drop_pages<'a>(&self, txn: &mut Txn, rel: u32, blocks: &'a [u32]) -> &'a [u32] {
        let now = blocks.len().min(self.drops_per_commit as usize);
        let (dropped, rest) = blocks.split_at(now);
        for &block in dropped {
            txn.pages.insert(Key::new(rel, block), Update::Drop);
        }
        rest
    }

    /// Drops pages nothing can see any more, in commits of their own.
    pub(crate) fn drop_pages_later(
        &self,
        state: &mut State,
        rel: u32,
        mut blocks: &[u32],
    ) -> FsResult<()> {
        while !blocks.is_empty() {
            let mut txn = Txn::default();
            blocks = self.drop_pages(&mut txn, rel, blocks);
            self.commit(state, txn)?;
        }
        Ok(())
    }
}

/// Refuses to let a relation go while another is still being dropped: each operation
/// finishes its own before it returns (or fails the tree), and a writable open finishes
/// one a crash left, so this is damage.
pub(crate) fn check_nothing_dropping(state: &State) -> FsResult<()> {
    match state.superblock.dropping {
        None => Ok(()),
        Some(dropping) => Err(FsError::Corrupt {
            what: "superblock".to_owned(),
            detail: format!(
                "relation {} is still being dropped as another is let go",
                dropping.rel
            ),
        }),
    }
}

/// Records in the superblock, in `txn`'s commit, that relation `rel` is let go with the
/// pages `rest` still to drop after it (nothing if none are): a crash before they are
/// dropped leaves them to the next writable open, not to be kept for good. The caller
/// checked `check_nothing_dropping` before changing anything.
pub(crate) fn record_dropping(state: &mut State, txn: &mut Txn, rel: u32, rest: &[u32]) {
    let (Some(&first), Some(&last)) = (rest.first(), rest.last()) else {
        return;
    };
    debug_assert!(state.superblock.dropping.is_none(), "checked by the caller");
    state.superblock.dropping = Some(DroppingRelation {
        rel,
        from: first,
        to: last.saturating_add(1),
    });
    txn.superblock = true;
}

/// Records that inode `ino` holds data relation `rel`, refusing a relation the superblock
/// has not handed out yet or one another inode holds.
fn check_rel(
    superblock: &Superblock,
    owners: &mut HashMap<u32, u32>,
    ino: u32,
    rel: u32,
) -> FsResult<()> {
    let problem = if rel >= superblock.next_rel {
        Some(format!(
            "data relation {rel}, at or above the next one to hand out ({})",
            superblock.next_rel
        ))
    } else {
        owners
            .insert(rel, ino)
            .map(|other| format!("data relation {rel}, which inode {other} holds too"))
    };
    match problem {
        Some(detail) => Err(FsError::Corrupt {
            what: format!("inode {ino}"),
            detail,
        }),
        None => Ok(()),
    }
}

/// Refuses a file larger than its data relation can hold (`u32::MAX` pages): listings
/// and diffs would show a size no write could have made.
fn check_file_size(inode: &Inode, ino: u32, page_size: usize) -> FsResult<()> {
    let most = u64::from(u32::MAX) * page_size as u64;
    if inode.kind == FileKind::File && inode.size > most {
        return Err(FsError::Corrupt {
            what: format!("inode {ino}"),
            detail: format!(
                "a file of {} bytes, more than its data relation holds ({most})",
                inode.size
            ),
        });
    }
    Ok(())
}

/// Writes an empty tree (the superblock and a root directory) in one durable commit.
fn format_tree(
    store: &Store,
    branch: &str,
    page_size: usize,
    now: FileTime,
) -> FsResult<Superblock> {
    if page_size < 512 {
        return Err(FsError::InvalidArgument {
            what: format!("a page size of {page_size} bytes (a tree needs 512 or more)"),
        });
    }
    let superblock = Superblock {
        page_size: u32::try_from(page_size).expect("page sizes fit u32"),
        next_rel: FIRST_DATA_REL + 1,
        inode_high_water: ROOT_INO + 1,
        dropping: None,
    };
    let root = Inode {
        kind: FileKind::Directory,
        mode: 0o755,
        uid: 0,
        gid: 0,
        nlink: 2,
        rel: FIRST_DATA_REL,
        size: 0,
        extent_blocks: 0,
        parent: ROOT_INO,
        rdev: 0,
        dropping_to: 0,
        atime: now,
        mtime: now,
        ctime: now,
        crtime: now,
    };
    let (block, offset) = inode_slot(ROOT_INO, page_size);
    let mut table = BytesMut::zeroed(page_size);
    table
        .get_mut(offset..offset + INODE_BYTES)
        .expect("a slot is within its page")
        .copy_from_slice(&encode_inode(&root));
    store.commit(
        branch,
        vec![
            (
                format::superblock_key(),
                Update::Image(superblock.encode(page_size)),
            ),
            (Key::new(TABLE_REL, block), Update::Image(table.freeze())),
        ],
    )?;
    Ok(superblock)
}
