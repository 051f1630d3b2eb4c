//! `SimFileSystem`: an in-memory, fault-injecting [`FileSystem`] for tests (the WAL's, the
//! engine's, and users' own) that can simulate what a process kill cannot: a power cut.
//!
//! It keeps, for every file, the bytes that are durable (as of its last `sync_data` or
//! `sync_file`) beside the bytes written since, and for every directory entry (file or
//! directory) whether it is durable (as of the last `sync_dir` of its directory) beside
//! what exists now. [`SimFileSystem::crash`] is the power cut: every directory goes back
//! to its durable entries (an entry whose directory itself was not durable goes with it),
//! every file to its durable bytes, and, if asked, some unsynced bytes land too: either
//! the last unsynced write of each file is torn ([`SimFileSystem::tear_writes`]: some whole
//! blocks of it land, the next block holds zeros or garbage, the rest is lost), or any
//! subset of each file's unsynced blocks lands, as a disk writing dirty pages back in any
//! order leaves them ([`SimFileSystem::reorder_writeback`]). Handles opened before a crash
//! fail afterwards, as a dead process's would.
//!
//! Faults: the Nth operation of a kind (write, sync, rename, read, create, remove) can
//! fail once or from then on, and the Nth read can return one flipped bit. Every choice
//! the file system makes (which blocks of a torn write land, which bit flips, garbage
//! bytes) comes from its seed, so a run replays bit for bit.
//!
//! Paths: `/` always exists and is durable; everything else is created through the trait.
//! Files and directories are plain maps from path to node; a rename moves one file.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::fs::{Access, FileSystem, FsFile, FsLock, MappedFile};

/// The kinds of operation a fault can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// `write_all_at`, `set_len`, `write`.
    Write,
    /// `sync_data`, `sync_file`, `sync_dir`.
    Sync,
    /// `rename`.
    Rename,
    /// `read_exact_at`, `read`, `map_read_only`.
    Read,
    /// `create`, `open`, `create_dir_all`.
    Create,
    /// `remove_file`, `remove_dir_all`.
    Remove,
}

impl OpKind {
    /// Every kind, for loops over them.
    pub const ALL: [OpKind; 6] = [
        OpKind::Write,
        OpKind::Sync,
        OpKind::Rename,
        OpKind::Read,
        OpKind::Create,
        OpKind::Remove,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// What an injected fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The Nth operation of the kind fails; later ones succeed.
    FailOnce,
    /// The Nth operation of the kind and every later one fail.
    FailFromThenOn,
    /// The Nth read returns its bytes with one bit flipped (reads only).
    FlipBit,
}

/// What fills the torn block of a torn write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TornFill {
    /// Zeros, as a sector that was never written.
    Zeros,
    /// Seeded random bytes, as a sector caught mid-write.
    Garbage,
}

/// Which unsynced bytes a crash lets reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writeback {
    /// None.
    Nothing,
    /// Whole blocks of each file's last unsynced write from its start, then one torn block.
    TornLastWrite { block: usize, fill: TornFill },
    /// Each unsynced block of each file independently: whole, not at all, or torn.
    AnyBlocks { block: usize, fill: TornFill },
}

#[derive(Clone, Copy, Debug)]
struct FaultRule {
    kind: OpKind,
    nth: u64,
    fault: Fault,
}

/// A directory entry: a file (its inode) or a directory (an id fresh at each creation, so
/// a directory removed and made again is a different one).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    File(u64),
    Dir(u64),
}

#[derive(Clone, Debug, Default)]
struct FileData {
    durable: Vec<u8>,
    current: Vec<u8>,
    /// The last write since the last sync: offset and length.
    last_unsynced_write: Option<(u64, usize)>,
}

#[derive(Debug)]
struct State {
    rng: u64,
    /// Bumped by each crash: handles of an earlier generation are dead.
    generation: u64,
    /// What exists now, and what a crash would leave.
    current: BTreeMap<PathBuf, Node>,
    durable: BTreeMap<PathBuf, Node>,
    files: BTreeMap<u64, FileData>,
    next_inode: u64,
    locks: BTreeMap<PathBuf, u64>,
    counts: [u64; OpKind::ALL.len()],
    rules: Vec<FaultRule>,
    writeback: Writeback,
    crashes: u64,
    /// Operations left before the power goes off (every later one fails until `crash`).
    power_left: Option<u64>,
    /// Whether files from `create_direct` and `open_direct` say they take direct I/O.
    direct_io: bool,
    /// Writes to such files that were not whole aligned blocks from an aligned buffer.
    unaligned_direct_writes: u64,
}

impl State {
    fn next_random(&mut self) -> u64 {
        // splitmix64: small, fast, and every seed gives a different stream.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Counts an operation and applies the fault rules: `Err` for an injected failure,
    /// `Ok(true)` if the operation (a read) must flip a bit.
    fn check(&mut self, kind: OpKind, what: &Path) -> io::Result<bool> {
        if let Some(left) = self.power_left {
            if left == 0 {
                return Err(io::Error::other(format!(
                    "sim: the power is off ({kind:?} on {})",
                    what.display()
                )));
            }
            self.power_left = Some(left - 1);
        }
        let count = {
            let slot = self
                .counts
                .get_mut(kind.index())
                .expect("every kind has a counter");
            *slot += 1;
            *slot
        };
        let mut flip = false;
        for rule in self.rules.iter().filter(|rule| rule.kind == kind) {
            match rule.fault {
                Fault::FailOnce if count == rule.nth => {
                    return Err(injected(kind, count, what));
                }
                Fault::FailFromThenOn if count >= rule.nth => {
                    return Err(injected(kind, count, what));
                }
                Fault::FlipBit if count == rule.nth => flip = true,
                _ => {}
            }
        }
        Ok(flip)
    }

    fn exists(&self, path: &Path) -> bool {
        is_root(path) || self.current.contains_key(path)
    }

    fn is_dir(&self, path: &Path) -> bool {
        is_root(path) || matches!(self.current.get(path), Some(Node::Dir(_)))
    }

    fn require_parent(&self, path: &Path) -> io::Result<()> {
        let parent = parent_of(path);
        if self.is_dir(&parent) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("sim: no directory {}", parent.display()),
            ))
        }
    }

    fn inode(&self, path: &Path) -> io::Result<u64> {
        match self.current.get(path) {
            Some(Node::File(inode)) => Ok(*inode),
            Some(Node::Dir(_)) => Err(io::Error::other(format!(
                "sim: {} is a directory",
                path.display()
            ))),
            None => Err(not_found(path)),
        }
    }

    fn file(&mut self, inode: u64) -> &mut FileData {
        self.files.entry(inode).or_default()
    }

    /// Creates or truncates the file at `path`; returns its inode.
    fn create_file(&mut self, path: &Path) -> io::Result<u64> {
        self.require_parent(path)?;
        if let Ok(inode) = self.inode(path) {
            let file = self.file(inode);
            file.current.clear();
            file.last_unsynced_write = None;
            return Ok(inode);
        }
        if self.is_dir(path) {
            return Err(io::Error::other(format!(
                "sim: {} is a directory",
                path.display()
            )));
        }
        let inode = self.next_inode;
        self.next_inode += 1;
        self.files.insert(inode, FileData::default());
        self.current.insert(path.to_owned(), Node::File(inode));
        Ok(inode)
    }

    fn write_at(&mut self, inode: u64, bytes: &[u8], offset: u64) {
        let file = self.file(inode);
        let start = offset as usize;
        let end = start + bytes.len();
        if file.current.len() < end {
            file.current.resize(end, 0);
        }
        if let Some(target) = file.current.get_mut(start..end) {
            target.copy_from_slice(bytes);
        }
        file.last_unsynced_write = Some((offset, bytes.len()));
    }

    fn sync(&mut self, inode: u64) {
        let file = self.file(inode);
        file.durable = file.current.clone();
        file.last_unsynced_write = None;
    }

    /// The power cut (see the module documentation).
    fn crash(&mut self) {
        let durable = self.durable.clone();
        self.current = durable
            .iter()
            .filter(|(path, _)| ancestors_durable(&durable, path))
            .map(|(path, node)| (path.clone(), node.clone()))
            .collect();
        self.durable = self.current.clone();
        let inodes: Vec<u64> = self.files.keys().copied().collect();
        for inode in inodes {
            if let Writeback::AnyBlocks { block, fill } = self.writeback {
                let landed = self.any_unsynced_blocks(inode, block, fill);
                let file = self.file(inode);
                file.current = landed.clone();
                file.durable = landed;
                file.last_unsynced_write = None;
                continue;
            }
            let torn = self.torn_write(inode);
            let file = self.file(inode);
            file.current = file.durable.clone();
            if let Some((offset, bytes)) = torn {
                let start = offset as usize;
                let end = start + bytes.len();
                if file.current.len() < end {
                    file.current.resize(end, 0);
                }
                if let Some(target) = file.current.get_mut(start..end) {
                    target.copy_from_slice(&bytes);
                }
                file.durable = file.current.clone();
            }
            file.last_unsynced_write = None;
        }
        self.generation += 1;
        self.locks.clear();
        self.crashes += 1;
        self.power_left = None;
    }

    /// What of a file's last unsynced write reaches the disk in a crash: whole blocks
    /// from its start, then one torn block; `None` if tearing is off or nothing lands.
    fn torn_write(&mut self, inode: u64) -> Option<(u64, Vec<u8>)> {
        let Writeback::TornLastWrite { block, fill } = self.writeback else {
            return None;
        };
        let (offset, len) = self.files.get(&inode)?.last_unsynced_write?;
        let blocks = len.div_ceil(block.max(1));
        let landed = (self.next_random() % (blocks as u64 + 1)) as usize;
        let whole = (landed * block).min(len);
        let torn = (whole + block).min(len);
        let file = self.files.get(&inode)?;
        let written = file.current.get(offset as usize..)?;
        let mut bytes = written.get(..whole)?.to_vec();
        // Bytes the write did not change (a block written again with the bytes it held,
        // as the WAL's direct writes do) survive in the torn block: the "powersafe
        // overwrite" property disks keep (see `any_unsynced_blocks`).
        let unchanged: Vec<Option<u8>> = (whole..torn)
            .map(|at| {
                let new = *written.get(at)?;
                let old = *file.durable.get(offset as usize + at)?;
                (new == old).then_some(new)
            })
            .collect();
        for kept in unchanged {
            bytes.push(match (kept, fill) {
                (Some(byte), _) => byte,
                (None, TornFill::Zeros) => 0,
                (None, TornFill::Garbage) => self.next_random() as u8,
            });
        }
        (!bytes.is_empty()).then_some((offset, bytes))
    }

    /// What a crash leaves of a file when the disk wrote its dirty blocks back in any
    /// order: its length is the durable or the current one, and each block that differs
    /// from the durable bytes lands whole, not at all, or torn (a prefix of the new bytes,
    /// then `fill` in place of the other changed bytes), each choice independent. Bytes no
    /// write changed since the last sync are never damaged, even in a torn block: the
    /// "powersafe overwrite" property SQLite also assumes of disks.
    fn any_unsynced_blocks(&mut self, inode: u64, block: usize, fill: TornFill) -> Vec<u8> {
        let (durable, current) = match self.files.get(&inode) {
            Some(file) => (file.durable.clone(), file.current.clone()),
            None => return Vec::new(),
        };
        let len = if durable.len() == current.len() || self.next_random().is_multiple_of(2) {
            current.len()
        } else {
            durable.len()
        };
        let mut landed = durable;
        landed.resize(len, 0);
        for start in (0..len).step_by(block) {
            let end = (start + block).min(len);
            let mut new_bytes = current
                .get(start..end.min(current.len()))
                .unwrap_or(&[])
                .to_vec();
            new_bytes.resize(end - start, 0);
            let Some(target) = landed.get_mut(start..end) else {
                continue;
            };
            if *target == new_bytes[..] {
                continue;
            }
            match self.next_random() % 3 {
                0 => {}
                1 => target.copy_from_slice(&new_bytes),
                _ => {
                    let prefix = (self.next_random() % (end - start) as u64) as usize;
                    for (at, new_byte) in new_bytes.iter().enumerate() {
                        let Some(slot) = target.get_mut(at) else {
                            continue;
                        };
                        if at < prefix {
                            *slot = *new_byte;
                        } else if *slot != *new_byte {
                            *slot = match fill {
                                TornFill::Zeros => 0,
                                TornFill::Garbage => self.next_random() as u8,
                            };
                        }
                    }
                }
            }
        }
        landed
    }
}

fn is_root(path: &Path) -> bool {
    path == Path::new("/")
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

fn ancestors_durable(durable: &BTreeMap<PathBuf, Node>, path: &Path) -> bool {
    path.ancestors()
        .skip(1)
        .filter(|ancestor| !ancestor.as_os_str().is_empty() && !is_root(ancestor))
        .all(|ancestor| matches!(durable.get(ancestor), Some(Node::Dir(_))))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("sim: no file {}", path.display()),
    )
}

fn injected(kind: OpKind, count: u64, path: &Path) -> io::Error {
    io::Error::other(format!(
        "sim: injected failure of {kind:?} operation #{count} ({})",
        path.display()
    ))
}

/// An in-memory file system that simulates power cuts and I/O faults. Clones share it.
#[derive(Clone, Debug)]
pub struct SimFileSystem {
    state: Arc<Mutex<State>>,
}

impl SimFileSystem {
    /// An empty file system (only `/`), its choices drawn from `seed`.
    pub fn new(seed: u64) -> SimFileSystem {
        SimFileSystem {
            state: Arc::new(Mutex::new(State {
                rng: seed,
                generation: 0,
                current: BTreeMap::new(),
                durable: BTreeMap::new(),
                files: BTreeMap::new(),
                next_inode: 1,
                locks: BTreeMap::new(),
                counts: [0; OpKind::ALL.len()],
                rules: Vec::new(),
                writeback: Writeback::Nothing,
                crashes: 0,
                power_left: None,
                direct_io: false,
                unaligned_direct_writes: 0,
            })),
        }
    }

    /// From now on a crash tears each file's last unsynced write at `block` bytes,
    /// filling the torn block with `fill`.
    pub fn tear_writes(&self, block: usize, fill: TornFill) {
        self.state.lock().writeback = Writeback::TornLastWrite {
            block: block.max(1),
            fill,
        };
    }

    /// From now on a crash keeps any subset of each file's unsynced `block`-byte blocks:
    /// each block written since the file's last sync independently reaches the disk whole,
    /// not at all, or torn (a prefix, then `fill`), as a disk writing dirty pages back in
    /// any order would leave it. Replaces [`SimFileSystem::tear_writes`].
    pub fn reorder_writeback(&self, block: usize, fill: TornFill) {
        self.state.lock().writeback = Writeback::AnyBlocks {
            block: block.max(1),
            fill,
        };
    }

    /// From now on files opened with `create_direct` or `open_direct` say they take direct
    /// I/O ([`FsFile::is_direct`]), so code that writes such files in whole blocks (the
    /// WAL) runs that path here. Their bytes behave as every other file's; writes to them
    /// that are not whole blocks of [`crate::fs::DIRECT_IO_ALIGNMENT`] from an aligned
    /// buffer are counted ([`SimFileSystem::unaligned_direct_writes`]).
    pub fn direct_io(&self) {
        self.state.lock().direct_io = true;
    }

    /// Writes to direct files (see [`SimFileSystem::direct_io`]) that the operating
    /// system could not have done direct: not aligned in offset, length or buffer.
    pub fn unaligned_direct_writes(&self) -> u64 {
        self.state.lock().unaligned_direct_writes
    }

    /// The power cut: only what was made durable survives (see the module docs).
    pub fn crash(&self) {
        self.state.lock().crash();
    }

    /// The power goes off after `operations` more operations (of any kind): every later
    /// one fails, as the disk of a machine losing power stops taking writes, until
    /// [`SimFileSystem::crash`] completes the power cut. For crashing in the middle of an
    /// operation of the code under test.
    pub fn cut_power_after(&self, operations: u64) {
        self.state.lock().power_left = Some(operations);
    }

    /// Injects `fault` at the `nth` (counting from 1, over the file system's life)
    /// operation of `kind`.
    pub fn inject(&self, kind: OpKind, nth: u64, fault: Fault) {
        self.state.lock().rules.push(FaultRule { kind, nth, fault });
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        self.state.lock().rules.clear();
    }

    /// Operations of `kind` so far.
    pub fn op_count(&self, kind: OpKind) -> u64 {
        self.state
            .lock()
            .counts
            .get(kind.index())
            .copied()
            .unwrap_or(0)
    }

    /// Crashes simulated so far.
    pub fn crashes(&self) -> u64 {
        self.state.lock().crashes
    }

    /// A handle on the existing file at `path`, open for direct I/O if `direct` and the
    /// file system simulates it.
    fn open_handle(&self, path: &Path, direct: bool) -> io::Result<Box<dyn FsFile>> {
        let mut state = self.state.lock();
        state.check(OpKind::Create, path)?;
        let inode = state.inode(path)?;
        Ok(self.handle(inode, path, &state, direct))
    }

    /// `open_handle` on a file created (or truncated) at `path`.
    fn create_handle(&self, path: &Path, direct: bool) -> io::Result<Box<dyn FsFile>> {
        let mut state = self.state.lock();
        state.check(OpKind::Create, path)?;
        let inode = state.create_file(path)?;
        Ok(self.handle(inode, path, &state, direct))
    }

    fn handle(&self, inode: u64, path: &Path, state: &State, direct: bool) -> Box<dyn FsFile> {
        Box::new(SimFile {
            fs: self.clone(),
            inode,
            path: path.to_owned(),
            generation: state.generation,
            direct: direct && state.direct_io,
        })
    }
}

/// A file of a [`SimFileSystem`].
#[derive(Debug)]
struct SimFile {
    fs: SimFileSystem,
    inode: u64,
    path: PathBuf,
    generation: u64,
    /// Opened for direct I/O while the file system simulates it.
    direct: bool,
}

impl SimFile {
    /// The state, if this handle outlived no crash.
    fn live(&self) -> io::Result<parking_lot::MutexGuard<'_, State>> {
        let state = self.fs.state.lock();
        if state.generation != self.generation {
            return Err(io::Error::other(format!(
                "sim: {} was opened before a crash",
                self.path.display()
            )));
        }
        Ok(state)
    }
}

fn flip_one_bit(state: &mut State, bytes: &mut [u8]) {
    if bytes.is_empty() {
        return;
    }
    let bit = state.next_random() % (bytes.len() as u64 * 8);
    if let Some(byte) = bytes.get_mut((bit / 8) as usize) {
        *byte ^= 1 << (bit % 8);
    }
}

impl FsFile for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut state = self.live()?;
        let flip = state.check(OpKind::Read, &self.path)?;
        let data = &state.file(self.inode).current;
        let start = offset as usize;
        let source = data.get(start..start + buf.len()).ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "sim: read past the end")
        })?;
        buf.copy_from_slice(source);
        if flip {
            flip_one_bit(&mut state, buf);
        }
        Ok(())
    }

    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.live()?;
        state.check(OpKind::Write, &self.path)?;
        let block = crate::fs::DIRECT_IO_ALIGNMENT;
        let aligned = (bytes.as_ptr() as usize).is_multiple_of(block)
            && offset.is_multiple_of(block as u64)
            && bytes.len().is_multiple_of(block);
        if self.direct && !aligned {
            state.unaligned_direct_writes += 1;
        }
        state.write_at(self.inode, bytes, offset);
        Ok(())
    }

    fn is_direct(&self) -> bool {
        self.direct
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.live()?;
        state.check(OpKind::Write, &self.path)?;
        let file = state.file(self.inode);
        file.current.resize(len as usize, 0);
        file.last_unsynced_write = None;
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        let mut state = self.live()?;
        Ok(state.file(self.inode).current.len() as u64)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.live()?;
        state.check(OpKind::Sync, &self.path)?;
        state.sync(self.inode);
        Ok(())
    }

    // Unsafe only by the trait's contract: these bytes are a copy.
    #[allow(unsafe_code)]
    unsafe fn map_read_only(&self, _access: Access) -> io::Result<MappedFile> {
        let mut state = self.live()?;
        let flip = state.check(OpKind::Read, &self.path)?;
        let mut bytes = state.file(self.inode).current.clone();
        if flip {
            flip_one_bit(&mut state, &mut bytes);
        }
        Ok(MappedFile::from_bytes(Bytes::from(bytes)))
    }
}

#[derive(Debug)]
struct SimLock {
    fs: SimFileSystem,
    path: PathBuf,
    generation: u64,
}

impl FsLock for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self.fs.state.lock();
        if state.locks.get(&self.path) == Some(&self.generation) {
            state.locks.remove(&self.path);
        }
    }
}

impl FileSystem for SimFileSystem {
    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.open_handle(path, false)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.create_handle(path, false)
    }

    fn create_direct(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.create_handle(path, true)
    }

    fn open_direct(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.open_handle(path, true)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut state = self.state.lock();
        let flip = state.check(OpKind::Read, path)?;
        let inode = state.inode(path)?;
        let mut bytes = state.file(inode).current.clone();
        if flip {
            flip_one_bit(&mut state, &mut bytes);
        }
        Ok(bytes)
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.state.lock();
        state.check(OpKind::Write, path)?;
        let inode = state.create_file(path)?;
        state.write_at(inode, bytes, 0);
        Ok(())
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.check(OpKind::Sync, path)?;
        let inode = state.inode(path)?;
        state.sync(inode);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.check(OpKind::Rename, from)?;
        let inode = state.inode(from)?;
        state.require_parent(to)?;
        if state.is_dir(to) {
            return Err(io::Error::other(format!(
                "sim: {} is a directory",
                to.display()
            )));
        }
        state.current.remove(from);
        state.current.insert(to.to_owned(), Node::File(inode));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.check(OpKind::Remove, path)?;
        state.inode(path)?;
        state.current.remove(path);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.check(OpKind::Sync, path)?;
        if !state.is_dir(path) {
            return Err(not_found(path));
        }
        let children = |map: &BTreeMap<PathBuf, Node>| -> Vec<PathBuf> {
            map.keys()
                .filter(|child| parent_of(child) == path)
                .cloned()
                .collect()
        };
        for gone in children(&state.durable) {
            // A directory whose durable entry goes (removed, or removed and made again)
            // takes its durable contents along: the old directory is gone.
            if let Some(Node::Dir(id)) = state.durable.get(&gone).cloned()
                && state.current.get(&gone) != Some(&Node::Dir(id))
            {
                state
                    .durable
                    .retain(|entry, _| !entry.starts_with(&gone) || *entry == gone);
            }
            state.durable.remove(&gone);
        }
        for child in children(&state.current) {
            if let Some(node) = state.current.get(&child).cloned() {
                state.durable.insert(child, node);
            }
        }
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.check(OpKind::Create, path)?;
        let mut missing: Vec<PathBuf> = path
            .ancestors()
            .filter(|dir| !dir.as_os_str().is_empty() && !state.exists(dir))
            .map(Path::to_path_buf)
            .collect();
        missing.reverse();
        for dir in &missing {
            if !state.is_dir(&parent_of(dir)) {
                return Err(io::Error::other(format!(
                    "sim: {} is not a directory",
                    parent_of(dir).display()
                )));
            }
            let id = state.next_inode;
            state.next_inode += 1;
            state.current.insert(dir.clone(), Node::Dir(id));
        }
        if state.is_dir(path) {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "sim: {} is a file",
                path.display()
            )))
        }
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.check(OpKind::Remove, path)?;
        if !state.is_dir(path) || is_root(path) {
            return Err(not_found(path));
        }
        state.current.retain(|entry, _| !entry.starts_with(path));
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let state = self.state.lock();
        if !state.is_dir(path) {
            return Err(not_found(path));
        }
        Ok(state
            .current
            .keys()
            .filter(|child| parent_of(child) == path)
            .filter_map(|child| child.file_name().map(OsString::from))
            .collect())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        Ok(self.state.lock().exists(path))
    }

    fn is_dir(&self, path: &Path) -> io::Result<bool> {
        Ok(self.state.lock().is_dir(path))
    }

    fn seeded_random(&self) -> Option<u64> {
        Some(self.state.lock().next_random())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn FsLock>>> {
        let mut state = self.state.lock();
        if !state.exists(path) {
            state.create_file(path)?;
        }
        if state.locks.contains_key(path) {
            return Ok(None);
        }
        let generation = state.generation;
        state.locks.insert(path.to_owned(), generation);
        Ok(Some(Box::new(SimLock {
            fs: self.clone(),
            path: path.to_owned(),
            generation,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs_with_dir() -> SimFileSystem {
        let fs = SimFileSystem::new(7);
        fs.create_dir_all(Path::new("/d")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        fs
    }

    #[test]
    fn a_crash_keeps_exactly_what_was_synced() {
        let fs = fs_with_dir();
        let file = fs.create(Path::new("/d/a")).unwrap();
        file.write_all_at(b"hello", 0).unwrap();
        file.sync_data().unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        file.write_all_at(b"HELLO world", 0).unwrap();
        fs.write(Path::new("/d/b"), b"unsynced entry").unwrap();
        fs.sync_file(Path::new("/d/b")).unwrap(); // data synced, entry not
        fs.crash();
        assert_eq!(fs.read(Path::new("/d/a")).unwrap(), b"hello");
        assert!(!fs.exists(Path::new("/d/b")).unwrap());
        // The old handle is dead.
        assert!(file.write_all_at(b"x", 0).is_err());
    }

    #[test]
    fn a_rename_without_a_directory_sync_is_lost() {
        let fs = fs_with_dir();
        fs.write(Path::new("/d/t"), b"new").unwrap();
        fs.sync_file(Path::new("/d/t")).unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        fs.rename(Path::new("/d/t"), Path::new("/d/f")).unwrap();
        fs.crash();
        assert!(fs.exists(Path::new("/d/t")).unwrap());
        assert!(!fs.exists(Path::new("/d/f")).unwrap());
        fs.rename(Path::new("/d/t"), Path::new("/d/f")).unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        fs.crash();
        assert_eq!(fs.read(Path::new("/d/f")).unwrap(), b"new");
    }

    #[test]
    fn a_directory_not_made_durable_takes_its_files_along() {
        let fs = SimFileSystem::new(1);
        fs.create_dir_all(Path::new("/x/y")).unwrap();
        fs.write(Path::new("/x/y/f"), b"data").unwrap();
        fs.sync_file(Path::new("/x/y/f")).unwrap();
        fs.sync_dir(Path::new("/x/y")).unwrap();
        fs.sync_dir(Path::new("/x")).unwrap(); // "/" never synced: /x is not durable
        fs.crash();
        assert!(!fs.exists(Path::new("/x")).unwrap());
        assert!(!fs.exists(Path::new("/x/y/f")).unwrap());
    }

    #[test]
    fn a_directory_removed_and_made_again_is_empty_after_a_crash() {
        let fs = fs_with_dir();
        fs.create_dir_all(Path::new("/d/sub")).unwrap();
        fs.write(Path::new("/d/sub/old"), b"old").unwrap();
        fs.sync_file(Path::new("/d/sub/old")).unwrap();
        fs.sync_dir(Path::new("/d/sub")).unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        fs.remove_dir_all(Path::new("/d/sub")).unwrap();
        fs.create_dir_all(Path::new("/d/sub")).unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        fs.crash();
        assert!(fs.is_dir(Path::new("/d/sub")).unwrap());
        assert!(fs.list_dir(Path::new("/d/sub")).unwrap().is_empty());
        // And a directory cannot be made under a file.
        fs.write(Path::new("/d/file"), b"x").unwrap();
        assert!(fs.create_dir_all(Path::new("/d/file/sub")).is_err());
    }

    #[test]
    fn a_torn_write_lands_whole_blocks_then_one_torn_block() {
        for fill in [TornFill::Zeros, TornFill::Garbage] {
            let mut seen_lengths = std::collections::BTreeSet::new();
            for seed in 0..64 {
                let fs = SimFileSystem::new(seed);
                fs.create_dir_all(Path::new("/d")).unwrap();
                fs.sync_dir(Path::new("/")).unwrap();
                let file = fs.create(Path::new("/d/f")).unwrap();
                file.set_len(64).unwrap();
                file.sync_data().unwrap();
                fs.sync_dir(Path::new("/d")).unwrap();
                fs.tear_writes(8, fill);
                file.write_all_at(&[0xAA; 40], 8).unwrap();
                fs.crash();
                let after = fs.read(Path::new("/d/f")).unwrap();
                assert_eq!(after.len(), 64);
                let landed = after.iter().skip(8).take_while(|&&b| b == 0xAA).count();
                // Everything before the write and after the torn block is untouched.
                let torn_end = (8 + landed + 8).min(48);
                assert!(after[..8].iter().all(|&b| b == 0));
                assert!(after[torn_end..].iter().all(|&b| b == 0), "{after:?}");
                if fill == TornFill::Zeros {
                    assert_eq!(landed % 8, 0);
                }
                seen_lengths.insert(landed / 8);
            }
            assert!(seen_lengths.len() >= 4, "{seen_lengths:?}");
        }
    }

    #[test]
    fn reordered_writeback_keeps_any_subset_of_unsynced_blocks_and_every_synced_byte() {
        let mut outcomes = std::collections::BTreeSet::new();
        for seed in 0..400 {
            let fs = fs_with_dir();
            let file = fs.create(Path::new("/d/f")).unwrap();
            file.write_all_at(&[1; 32], 0).unwrap();
            file.sync_data().unwrap();
            fs.sync_dir(Path::new("/d")).unwrap();
            fs.state.lock().rng = seed;
            fs.reorder_writeback(8, TornFill::Zeros);
            // Two separate writes, the second one first in the file: any block of either
            // may land, whatever the order they were written in.
            file.write_all_at(&[3; 16], 16).unwrap();
            file.write_all_at(&[2; 8], 0).unwrap();
            fs.crash();
            let after = fs.read(Path::new("/d/f")).unwrap();
            assert_eq!(after.len(), 32);
            // Block 1 was synced and never rewritten: always there.
            assert_eq!(after[8..16], [1; 8]);
            let block_state = |range: std::ops::Range<usize>, new: u8| {
                let bytes = &after[range];
                if bytes.iter().all(|&b| b == new) {
                    'n'
                } else if bytes.iter().all(|&b| b == 1) {
                    'o'
                } else {
                    assert!(bytes.iter().all(|&b| b == new || b == 0), "{bytes:?}");
                    't'
                }
            };
            outcomes.insert([
                block_state(0..8, 2),
                block_state(16..24, 3),
                block_state(24..32, 3),
            ]);
        }
        // Later blocks land without earlier ones and the other way round.
        assert!(outcomes.contains(&['o', 'n', 'n']), "{outcomes:?}");
        assert!(outcomes.contains(&['n', 'o', 'o']), "{outcomes:?}");
        assert!(outcomes.contains(&['o', 'o', 'n']), "{outcomes:?}");
        assert_eq!(outcomes.len(), 27, "every combination: {outcomes:?}");
    }

    #[test]
    fn faults_fire_on_the_nth_operation_once_or_from_then_on() {
        let fs = fs_with_dir();
        let file = fs.create(Path::new("/d/f")).unwrap();
        let before = fs.op_count(OpKind::Write);
        fs.inject(OpKind::Write, before + 2, Fault::FailOnce);
        file.write_all_at(b"1", 0).unwrap();
        assert!(file.write_all_at(b"2", 0).is_err());
        file.write_all_at(b"3", 0).unwrap();
        let syncs = fs.op_count(OpKind::Sync);
        fs.inject(OpKind::Sync, syncs + 1, Fault::FailFromThenOn);
        assert!(file.sync_data().is_err());
        assert!(fs.sync_dir(Path::new("/d")).is_err());
        fs.clear_faults();
        file.sync_data().unwrap();
        let reads = fs.op_count(OpKind::Read);
        fs.inject(OpKind::Read, reads + 1, Fault::FlipBit);
        let flipped = fs.read(Path::new("/d/f")).unwrap();
        assert_eq!((flipped[0] ^ b'3').count_ones(), 1);
        assert_eq!(fs.read(Path::new("/d/f")).unwrap(), b"3");
    }

    #[test]
    fn after_the_power_goes_off_nothing_reaches_the_disk() {
        let fs = fs_with_dir();
        let file = fs.create(Path::new("/d/f")).unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        fs.cut_power_after(2);
        file.write_all_at(b"ab", 0).unwrap();
        file.sync_data().unwrap();
        assert!(file.write_all_at(b"cd", 2).is_err());
        assert!(fs.sync_dir(Path::new("/d")).is_err());
        fs.crash();
        assert_eq!(fs.read(Path::new("/d/f")).unwrap(), b"ab");
    }

    #[test]
    fn locks_exclude_until_dropped_or_crashed() {
        let fs = fs_with_dir();
        let lock = fs.try_lock(Path::new("/d/LOCK")).unwrap();
        assert!(lock.is_some());
        assert!(fs.try_lock(Path::new("/d/LOCK")).unwrap().is_none());
        drop(lock);
        let again = fs.try_lock(Path::new("/d/LOCK")).unwrap();
        assert!(again.is_some());
        fs.crash();
        let after_crash = fs.try_lock(Path::new("/d/LOCK")).unwrap();
        assert!(after_crash.is_some(), "a crash releases every lock");
        drop(again); // a lock from before the crash releases nothing now
        assert!(fs.try_lock(Path::new("/d/LOCK")).unwrap().is_none());
    }
}
