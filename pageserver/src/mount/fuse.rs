//! The FUSE adapter: the kernel's requests translated to `FileTree` calls, nothing more.
//!
//! Every answer comes from the tree (the kernel is told so with attribute and entry
//! lifetimes; a mount is its branch's only writer, so what the kernel caches stays true).
//! `fsync` and `fsyncdir` wait until everything the tree logged is durable: never ENOSYS,
//! which the kernel would turn into a silent success. A failed commit fails the tree, and
//! every later request answers EIO until the branch is mounted again.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, Notifier, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};
use pagefork_files::{
    Attributes, DirListing, FileKind, FileTime, FileTree, FsError, FsResult, Owner, SetAttributes,
    Written,
};
use parking_lot::Mutex;

use super::writeback::OpenWriters;

/// How long the kernel may trust an answer: the tree changes only through this mount.
const TTL: Duration = Duration::from_secs(60);
const SET_GROUP_ID: u32 = 0o2000;
/// The answer to every extended-attribute request. ENOSYS, not EOPNOTSUPP: on ENOSYS the
/// kernel stops sending them and answers EOPNOTSUPP to programs itself; on EOPNOTSUPP it
/// would ask again before every write (for `security.capability`), a round trip each.
const NO_XATTRS: Errno = Errno::ENOSYS;

/// A directory's entries as `opendir` saw them: inode, type, name.
type Listing = Arc<Vec<(u64, FileType, Vec<u8>)>>;

/// A `FileTree` as a FUSE file system.
pub(crate) struct FuseAdapter {
    tree: Arc<FileTree>,
    /// Whether the kernel keeps writes in its page cache (`FUSE_WRITEBACK_CACHE`).
    writeback_cache: bool,
    /// Open directories: the listing taken at each `readdir` from offset 0 (none before
    /// the first), so offsets stay valid while names come and go (each unchanged name is
    /// listed exactly once) and a scan from the start sees every change before it.
    listings: Mutex<HashMap<u64, Option<Listing>>>,
    next_handle: AtomicU64,
    /// Where the store lives: `statfs` reports that disk's space.
    store_dir: Option<std::path::PathBuf>,
    /// Files open for writing (see `writeback`).
    writers: Arc<OpenWriters>,
    /// The session's notifier, set once the session exists (before it serves anything).
    notifier: Arc<OnceLock<Notifier>>,
}

impl FuseAdapter {
    pub(crate) fn new(
        tree: Arc<FileTree>,
        writeback_cache: bool,
        writers: Arc<OpenWriters>,
        notifier: Arc<OnceLock<Notifier>>,
    ) -> FuseAdapter {
        let store_dir = tree.store().dir().map(std::path::Path::to_path_buf);
        FuseAdapter {
            tree,
            writeback_cache,
            writers,
            notifier,
            listings: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            store_dir,
        }
    }

    /// Directory `ino`'s entries as they are now, `.` and `..` first.
    fn listing(&self, ino: INodeNo) -> FsResult<Listing> {
        let entries = self.tree.read_dir(ino.0)?;
        let parent = self.tree.parent_of(ino.0)?;
        let mut listing = vec![
            (ino.0, FileType::Directory, b".".to_vec()),
            (parent, FileType::Directory, b"..".to_vec()),
        ];
        listing.extend(
            entries
                .into_iter()
                .map(|DirListing { name, ino, kind }| (ino, file_type(kind), name)),
        );
        Ok(Arc::new(listing))
    }

    /// Has the kernel ask for `ino`'s attributes again, keeping its cached pages (offset
    /// -1): with the writeback cache it keeps a file's size itself, but its `blocks` is
    /// ours, and stayed what it was at the create, 0, for as long as the attributes were
    /// cached (a review found `du` at 0 and `tar -S` archiving a fsynced file as holes).
    /// Only the attributes are dropped, so this may run on a worker thread.
    fn forget_cached_attributes(&self, ino: INodeNo) {
        if let Some(notifier) = self.notifier.get()
            && let Err(error) = notifier.inval_inode(ino, -1, 0)
        {
            tracing::debug!(%error, ino = ino.0, "cannot have the kernel drop cached attributes");
        }
    }

    fn attr(&self, attributes: &Attributes) -> FileAttr {
        FileAttr {
            ino: INodeNo(attributes.ino),
            size: attributes.size,
            blocks: attributes.blocks,
            atime: attributes.atime.to_system_time(),
            mtime: attributes.mtime.to_system_time(),
            ctime: attributes.ctime.to_system_time(),
            crtime: attributes.crtime.to_system_time(),
            kind: file_type(attributes.kind),
            perm: u16::try_from(attributes.mode).unwrap_or(0),
            nlink: attributes.nlink,
            uid: attributes.uid,
            gid: attributes.gid,
            rdev: attributes.rdev,
            blksize: u32::try_from(self.tree.page_size()).unwrap_or(8192),
            flags: 0,
        }
    }

    fn answer_attr(&self, result: Result<Attributes, FsError>, reply: ReplyAttr) {
        match result {
            Ok(attributes) => reply.attr(&TTL, &self.attr(&attributes)),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn entry(&self, result: Result<Attributes, FsError>, reply: ReplyEntry) {
        match result {
            Ok(attributes) => reply.entry(&TTL, &self.attr(&attributes), Generation(0)),
            Err(error) => reply.error(errno(&error)),
        }
    }

    /// The owner of a new inode in `parent`: the caller, with the directory's group if it
    /// is set-group-ID (and a new directory inherits the bit).
    fn owner(&self, request: &Request, parent: INodeNo, mode: u32, umask: u32, dir: bool) -> Owner {
        let mut owner = Owner {
            mode: mode & !umask & 0o7777,
            uid: request.uid(),
            gid: request.gid(),
        };
        if let Ok(parent) = self.tree.attributes(parent.0)
            && parent.mode & SET_GROUP_ID != 0
        {
            owner.gid = parent.gid;
            if dir {
                owner.mode |= SET_GROUP_ID;
            }
        }
        owner
    }
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Directory => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
    }
}

/// The errno a refusal or failure answers.
pub(crate) fn errno(error: &FsError) -> Errno {
    match error {
        FsError::NoInode { .. } | FsError::NotFound { .. } => Errno::ENOENT,
        FsError::Exists { .. } => Errno::EEXIST,
        FsError::NotDirectory { .. } => Errno::ENOTDIR,
        FsError::IsDirectory { .. } => Errno::EISDIR,
        FsError::NotEmpty { .. } => Errno::ENOTEMPTY,
        FsError::NameTooLong { .. } => Errno::ENAMETOOLONG,
        FsError::NotSymlink { .. }
        | FsError::InvalidName { .. }
        | FsError::IntoOwnSubtree { .. }
        | FsError::InvalidArgument { .. } => Errno::EINVAL,
        FsError::FileTooLarge { .. } => Errno::EFBIG,
        FsError::NoSpace { .. } => Errno::ENOSPC,
        FsError::ReadOnly => Errno::EROFS,
        FsError::NotSupported { .. } => Errno::EOPNOTSUPP,
        FsError::Failed { .. } => {
            // The failure itself was logged when it happened; every request after it
            // answers EIO until the branch is mounted again, and would flood the log
            // with the same line (thousands a second under a database).
            tracing::debug!("{error}");
            Errno::EIO
        }
        other => {
            tracing::error!("{other}");
            Errno::EIO
        }
    }
}

/// The attributes of a negative entry: inode 0, nothing else read.
fn absent() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}

/// Answers an operation that returns bytes.
fn answer_data(result: Result<Vec<u8>, FsError>, reply: ReplyData) {
    match result {
        Ok(bytes) => reply.data(&bytes),
        Err(error) => reply.error(errno(&error)),
    }
}

/// Answers an operation that returns nothing.
fn answer(result: Result<(), FsError>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(error) => reply.error(errno(&error)),
    }
}

fn file_time(time: TimeOrNow) -> FileTime {
    match time {
        TimeOrNow::SpecificTime(time) => kernel_time(time),
        TimeOrNow::Now => FileTime::from_system_time(SystemTime::now()),
    }
}

/// The time the kernel sent, from fuser's `SystemTime` of it. For a time before 1970
/// fuser (0.18) computes `epoch - (-secs s + nsec ns)` where the kernel's fields `(secs,
/// nsec)` mean `secs s + nsec ns`: 1969-12-31T23:59:58.25 (secs -2, nsec 0.25 s) arrives
/// as 23:59:57.75. The fields are recovered exactly: how far before the epoch fuser's
/// time is gives `-secs` whole seconds and `nsec` nanoseconds. `mount_basics` checks
/// such times round trip through a remount (and fails if fuser ever fixes this).
fn kernel_time(time: SystemTime) -> FileTime {
    match SystemTime::UNIX_EPOCH.duration_since(time) {
        Ok(before) if !before.is_zero() => FileTime {
            secs: i64::try_from(before.as_secs()).map_or(i64::MIN, |secs| -secs),
            nanos: before.subsec_nanos(),
        },
        _ => FileTime::from_system_time(time),
    }
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _request: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Directory operations in parallel (the tree orders them under its own lock), and
        // requests of up to one commit's worth (1 MiB) instead of the kernel's 128 KiB.
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        let _ = config.add_capabilities(InitFlags::FUSE_BIG_WRITES | InitFlags::FUSE_MAX_PAGES);
        let _ = config.set_max_write(self.tree.max_write());
        let _ = config.set_max_readahead(self.tree.max_write());
        if self.writeback_cache {
            // The kernel gathers writes in its page cache and sends them in runs (on
            // fsync, close, syncfs, or after its dirty expiry), keeping sizes and times of
            // files meanwhile: safe because the mount is its branch's only writer.
            // docs/mounts.md says what a branch taken meanwhile sees.
            let _ = config.add_capabilities(InitFlags::FUSE_WRITEBACK_CACHE);
        }
        Ok(())
    }

    fn lookup(&self, _request: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.tree.lookup(parent.0, name.as_bytes()) {
            // A name that is not there: inode 0 with an entry lifetime, which the kernel
            // keeps as a negative entry (ENOENT it would ask again every time; Postgres
            // looks for a dozen files that are not there at every start). Only a request
            // through this mount can make the name, and the kernel drops the entry then.
            Err(FsError::NotFound { .. }) => {
                reply.entry_with_ttls(&Duration::ZERO, &TTL, &absent(), Generation(0));
            }
            found => self.entry(found, reply),
        }
    }

    fn forget(&self, _request: &Request, ino: INodeNo, lookups: u64) {
        match self.tree.forget(ino.0, lookups) {
            Ok(()) => {}
            // Said once already, when the tree failed; the kernel forgets every inode.
            Err(error @ FsError::Failed { .. }) => {
                tracing::debug!("forgetting inode {}: {error}", ino.0);
            }
            Err(error) => tracing::error!("forgetting inode {}: {error}", ino.0),
        }
    }

    fn getattr(&self, _request: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.answer_attr(self.tree.attributes(ino.0), reply);
    }

    fn setattr(
        &self,
        _request: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let changes = SetAttributes {
            mode: mode.map(|mode| mode & 0o7777),
            uid,
            gid,
            size,
            atime: atime.map(file_time),
            mtime: mtime.map(file_time),
            ctime: ctime.map(kernel_time),
        };
        self.answer_attr(self.tree.set_attributes(ino.0, changes), reply);
    }

    fn readlink(&self, _request: &Request, ino: INodeNo, reply: ReplyData) {
        answer_data(self.tree.read_link(ino.0), reply);
    }

    fn mknod(
        &self,
        request: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        const FILE_TYPE_MASK: u32 = 0o170_000;
        let kind = match mode & FILE_TYPE_MASK {
            0 | 0o100_000 => None,
            0o010_000 => Some(FileKind::Fifo),
            0o140_000 => Some(FileKind::Socket),
            0o020_000 => Some(FileKind::CharDevice),
            0o060_000 => Some(FileKind::BlockDevice),
            _ => return reply.error(Errno::EINVAL),
        };
        let owner = self.owner(request, parent, mode, umask, false);
        let name = name.as_bytes();
        let made = match kind {
            None => self.tree.create_file(parent.0, name, owner),
            Some(kind) => self.tree.make_node(parent.0, name, kind, owner, rdev),
        };
        self.entry(made, reply);
    }

    fn mkdir(
        &self,
        request: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let owner = self.owner(request, parent, mode, umask, true);
        self.entry(
            self.tree.make_directory(parent.0, name.as_bytes(), owner),
            reply,
        );
    }

    fn unlink(&self, _request: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        answer(self.tree.unlink(parent.0, name.as_bytes()), reply)
    }

    fn rmdir(&self, _request: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        answer(self.tree.remove_directory(parent.0, name.as_bytes()), reply)
    }

    fn symlink(
        &self,
        request: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        let owner = self.owner(request, parent, 0o777, 0, false);
        let made = self.tree.symlink(
            parent.0,
            link_name.as_bytes(),
            target.as_os_str().as_bytes(),
            owner.uid,
            owner.gid,
        );
        self.entry(made, reply);
    }

    fn rename(
        &self,
        _request: &Request,
        parent: INodeNo,
        name: &OsStr,
        new_parent: INodeNo,
        new_name: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            // RENAME_EXCHANGE and RENAME_WHITEOUT are not offered.
            return reply.error(Errno::EINVAL);
        }
        let renamed = self.tree.rename(
            parent.0,
            name.as_bytes(),
            new_parent.0,
            new_name.as_bytes(),
            no_replace,
        );
        answer(renamed, reply);
    }

    fn link(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _new_parent: INodeNo,
        _new_name: &OsStr,
        reply: ReplyEntry,
    ) {
        // No hard links: a file has one name.
        reply.error(Errno::EPERM);
    }

    fn open(&self, _request: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.tree.attributes(ino.0) {
            Ok(attributes) if attributes.kind == FileKind::Directory => reply.error(Errno::EISDIR),
            // The kernel may keep a file's cached pages across opens: only this mount
            // writes the branch.
            Ok(_) => reply.opened(
                FileHandle(self.writers.opened(ino.0, flags)),
                FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn release(
        &self,
        _request: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.writers.released(ino.0, fh.0);
        reply.ok();
    }

    fn read(
        &self,
        _request: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        answer_data(self.tree.read(ino.0, offset, size), reply);
    }

    fn write(
        &self,
        _request: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.tree.write(ino.0, offset, data) {
            Ok(Written { bytes, grew }) => {
                reply.written(bytes);
                if grew {
                    self.forget_cached_attributes(ino);
                }
            }
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn flush(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Writes are applied when they arrive; `close` has nothing to add. ENOSYS tells
        // the kernel so once: it stops sending FLUSH, a round trip every `close` waited
        // for. It still writes a file's dirty pages back at `close` before it looks (so
        // a write error still surfaces there), and answers `close` with 0.
        reply.error(Errno::ENOSYS);
    }

    fn fsync(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        answer(self.tree.sync(), reply)
    }

    fn opendir(&self, _request: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // A directory (its parent found), listed at the first `readdir`: the kernel asks
        // for none when it has the listing cached.
        match self.tree.parent_of(ino.0) {
            Ok(_) => {
                let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
                self.listings.lock().insert(handle, None);
                // The kernel may keep the listing it read, across opens, until the
                // directory changes: only this mount changes it, and the kernel drops its
                // copy at every change it passes on (a scan of a directory listed before
                // is then no round trip; Postgres scans every database's directory
                // several times as it starts).
                reply.opened(
                    FileHandle(handle),
                    FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
                );
            }
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn readdir(
        &self,
        _request: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(taken) = self.listings.lock().get(&fh.0).cloned() else {
            return reply.error(Errno::EBADF);
        };
        // A scan from the start lists the directory as it is now, not as it was at the
        // open: the kernel notes the directory's version before it asks, and keeps what
        // this answers as the directory's listing until the next change (found by a
        // review: a listing taken at the open of a handle read after a create had every
        // later listing miss the new name). A failed tree answers as for everything else.
        let listing = match (offset, taken, self.tree.check_usable()) {
            (_, _, Err(error)) => return reply.error(errno(&error)),
            (1.., Some(listing), Ok(())) => listing,
            (_, _, Ok(())) => match self.listing(ino) {
                Ok(fresh) => {
                    self.listings.lock().insert(fh.0, Some(Arc::clone(&fresh)));
                    fresh
                }
                Err(error) => return reply.error(errno(&error)),
            },
        };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (index, (ino, kind, name)) in listing.iter().enumerate().skip(skip) {
            if reply.add(
                INodeNo(*ino),
                index as u64 + 1,
                *kind,
                OsStr::from_bytes(name),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _request: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.listings.lock().remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        answer(self.tree.sync(), reply)
    }

    fn statfs(&self, _request: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let page_size = self.tree.page_size() as u64;
        // A failed tree answers EIO here too, as the mount promises for everything.
        let inodes = match self.tree.stats() {
            Ok(stats) => stats.inodes,
            Err(error) => return reply.error(errno(&error)),
        };
        let (total, free) = self
            .store_dir
            .as_deref()
            .and_then(|dir| super::disk_space(dir).ok())
            .unwrap_or((1 << 40, 1 << 40));
        let files = u64::from(u32::MAX / 2);
        reply.statfs(
            total / page_size,
            free / page_size,
            free / page_size,
            files,
            files.saturating_sub(inodes),
            u32::try_from(page_size).unwrap_or(8192),
            255,
            u32::try_from(page_size).unwrap_or(8192),
        );
    }

    fn setxattr(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(NO_XATTRS);
    }

    fn getxattr(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(NO_XATTRS);
    }

    fn listxattr(&self, _request: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(NO_XATTRS);
    }

    fn removexattr(&self, _request: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(NO_XATTRS);
    }

    fn create(
        &self,
        request: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let owner = self.owner(request, parent, mode, umask, false);
        match self.tree.create_file(parent.0, name.as_bytes(), owner) {
            Ok(attributes) => reply.created(
                &TTL,
                &self.attr(&attributes),
                Generation(0),
                FileHandle(self.writers.opened(attributes.ino, OpenFlags(flags))),
                FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn fallocate(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        // Pages are allocated when written; the C library writes zeros instead.
        reply.error(Errno::EOPNOTSUPP);
    }
}
