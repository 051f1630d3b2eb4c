//! `FileSystem`: every file operation of the log and the engine, behind one small trait,
//! so that a test (or a user's test) can substitute a file system that loses unsynced
//! writes on a simulated power cut, tears a write, fails the Nth operation or flips bits
//! (see [`crate::sim::SimFileSystem`]).
//!
//! Each method is one plain OS operation with no hidden fsync: what is durable is exactly
//! what a `sync_*` made durable. [`StdFileSystem`] is the operating system's.
//!
//! The one `unsafe` of the crate is here: [`FsFile::map_read_only`] (an `unsafe fn`: the
//! caller promises the file no longer changes) maps a file with memmap2. Its callers only
//! map files that no longer change: sealed WAL
//! segments (every byte written; the writer only writes past them; recovery, the one other
//! writer, runs before any map exists; segments are unlinked, never truncated) and
//! published layer files (immutable, unlinked, never truncated), while the store's
//! directory lock keeps other pagefork processes out. What no memory-mapped reader can
//! defend against is another program editing the file; every byte read through a map is
//! still checked against its checksum before use.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

mod direct;

pub use direct::{AlignedBuffer, DIRECT_IO_ALIGNMENT};

/// An open file: positioned reads and writes, length, fsync, and a read-only map.
pub trait FsFile: Send + Sync + fmt::Debug {
    /// Fills `buf` from `offset`; an error if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `bytes` at `offset` (not durable until a sync).
    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()>;
    /// `write_all_at` through the page cache, even on a file open for direct I/O: for a
    /// small write, which a direct write would make wait for the disk.
    fn write_all_at_cached(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.write_all_at(bytes, offset)
    }
    /// Sets the length: cuts the file, or extends it with zeros.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Extends the file to `len` bytes of zeros with its blocks allocated, without writing
    /// them (`fallocate`): later writes need no allocation, though an fsync after writing
    /// a block for the first time also records that it is written. `Unsupported` where the
    /// file system cannot; the default extends the file as `set_len` does.
    fn allocate(&self, len: u64) -> io::Result<()> {
        if len > self.size()? {
            self.set_len(len)?;
        }
        Ok(())
    }
    /// The current length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Makes the content and length durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Whether reads and writes aligned to [`DIRECT_IO_ALIGNMENT`] (buffer, offset and
    /// length) bypass the page cache (see [`FileSystem::create_direct`]).
    fn is_direct(&self) -> bool {
        false
    }
    /// The whole file as read-only bytes that stay valid while any slice of them lives,
    /// read as `access` says.
    ///
    /// # Safety
    ///
    /// The file must not change or shrink while the mapping or any slice of it lives
    /// (a memory-mapped file that changes under a `&[u8]` is undefined behaviour): only
    /// for files that no longer change, such as sealed WAL segments and published layers.
    #[allow(unsafe_code)]
    unsafe fn map_read_only(&self, access: Access) -> io::Result<MappedFile>;
}

/// How a mapped file will be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Front to back (the kernel reads ahead).
    Sequential,
    /// Single pages here and there (no read-ahead).
    Random,
}

/// A file mapped read-only, or, on a file system without maps, read into memory.
#[derive(Clone, Debug)]
pub struct MappedFile {
    bytes: Bytes,
    /// The map behind `bytes`, if it is one.
    map: Option<Arc<memmap2::Mmap>>,
}

/// Lets `Bytes` slices share a map.
#[derive(Debug)]
struct SharedMap(Arc<memmap2::Mmap>);

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl MappedFile {
    /// Bytes read into memory, standing in for a map.
    pub fn from_bytes(bytes: Bytes) -> MappedFile {
        MappedFile { bytes, map: None }
    }

    fn from_map(map: memmap2::Mmap) -> MappedFile {
        let map = Arc::new(map);
        MappedFile {
            bytes: Bytes::from_owner(SharedMap(Arc::clone(&map))),
            map: Some(map),
        }
    }

    /// The whole file; slices of it share the mapping.
    pub fn bytes(&self) -> Bytes {
        self.bytes.clone()
    }

    /// Asks the kernel to start reading bytes `range` of the file into its page cache
    /// (`MADV_WILLNEED`), so the reads that follow find them there: one large read instead
    /// of a fault per page. A hint: nothing for bytes in memory, and a refusal is only
    /// logged.
    pub fn will_need(&self, range: std::ops::Range<usize>) {
        if let Some(map) = &self.map
            && range.start < range.end
            && range.end <= map.len()
            && let Err(error) = map.advise_range(
                memmap2::Advice::WillNeed,
                range.start,
                range.end - range.start,
            )
        {
            tracing::debug!(%error, "madvise(WILLNEED) on a mapping failed");
        }
    }

    /// Drops the mapping's resident pages from the process (they stay in the kernel's page
    /// cache, and the next read maps them again), so pages read once do not count in the
    /// process's RSS for as long as the file stays mapped. Nothing for bytes in memory.
    #[allow(unsafe_code)]
    pub fn release_resident_pages(&self) {
        if let Some(map) = &self.map {
            // SAFETY: the mapping is shared and read-only, of a file nobody modifies (see
            // the module documentation): after MADV_DONTNEED the next access faults the
            // same bytes back in from the file, so every live slice keeps reading exactly
            // what it read before. The hint's danger is for private or writable mappings,
            // whose modified pages it would discard; this mapping has none.
            if let Err(error) = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) }
            {
                tracing::debug!(%error, "madvise(DONTNEED) on a mapping failed");
            }
        }
    }
}

/// A held lock on a path; released when dropped.
pub trait FsLock: Send + Sync + fmt::Debug {}

/// The file operations pagefork needs.
pub trait FileSystem: Send + Sync + fmt::Debug {
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Opens an existing file for reading only (writes through it fail).
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.open(path)
    }
    /// Creates `path` (truncating it if it exists) for reading and writing. The new
    /// directory entry is durable only after `sync_dir` of its directory.
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// `create`, for a file written once front to back and read back rarely (a layer, a
    /// WAL segment): reads and writes aligned to [`DIRECT_IO_ALIGNMENT`] may bypass the
    /// page cache. Every request reads and writes the same bytes as on a file from
    /// `create`.
    fn create_direct(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.create(path)
    }
    /// `open`, for a file written front to back and read back rarely: as `create_direct`.
    fn open_direct(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.open(path)
    }
    /// `open_read`, for a file read once front to back: as `create_direct`.
    fn open_read_direct(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.open_read(path)
    }
    /// The whole content of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Creates or truncates `path` and writes `bytes` to it, without fsync.
    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// fsyncs a file by path.
    fn sync_file(&self, path: &Path) -> io::Result<()>;
    /// Renames a file, replacing `to` if it exists (durable after `sync_dir`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file (durable after `sync_dir`).
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// fsyncs a directory, making creations, renames and removals in it durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory and its missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of a directory, in no particular order.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>>;
    /// Whether something exists at `path`.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Whether `path` is a directory.
    fn is_dir(&self, path: &Path) -> io::Result<bool>;
    /// Takes an exclusive lock on `path` (created if missing), or `None` if someone else
    /// holds it.
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn FsLock>>>;

    /// A random number from the file system's own seed, for a simulated file system whose
    /// runs must replay bit for bit (a new log's salt comes from here then); `None` (the
    /// default): use the operating system's randomness.
    fn seeded_random(&self) -> Option<u64> {
        None
    }

    /// Whether this is the operating system's own file system, which code doing its own
    /// file I/O (RocksDB) can share: `false` unless an implementation says so.
    fn is_operating_system(&self) -> bool {
        false
    }
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFileSystem;

/// A file of [`StdFileSystem`]: buffered, or open for direct I/O as well.
#[derive(Debug)]
pub struct StdFile(StdFileKind);

#[derive(Debug)]
enum StdFileKind {
    Buffered(std::fs::File),
    Direct(direct::DirectFile),
}

impl StdFile {
    fn buffered(file: std::fs::File) -> Box<dyn FsFile> {
        Box::new(StdFile(StdFileKind::Buffered(file)))
    }

    fn direct(file: direct::DirectFile) -> Box<dyn FsFile> {
        Box::new(StdFile(StdFileKind::Direct(file)))
    }

    /// The buffered descriptor.
    fn file(&self) -> &std::fs::File {
        match &self.0 {
            StdFileKind::Buffered(file) => file,
            StdFileKind::Direct(file) => file.buffered(),
        }
    }
}

#[derive(Debug)]
struct StdLock(#[allow(dead_code)] std::fs::File);

impl FsLock for StdLock {}

impl FsFile for StdFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match &self.0 {
            StdFileKind::Buffered(file) => FileExt::read_exact_at(file, buf, offset),
            StdFileKind::Direct(file) => file.read_exact_at(buf, offset),
        }
    }

    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        match &self.0 {
            StdFileKind::Buffered(file) => FileExt::write_all_at(file, bytes, offset),
            StdFileKind::Direct(file) => file.write_all_at(bytes, offset),
        }
    }

    fn write_all_at_cached(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self.file(), bytes, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file().set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let len = i64::try_from(len).map_err(|_| io::Error::other("length past i64"))?;
        match nix::fcntl::fallocate(self.file(), nix::fcntl::FallocateFlags::empty(), 0, len) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EOPNOTSUPP) => Err(io::ErrorKind::Unsupported.into()),
            Err(errno) => Err(errno.into()),
        }
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.file().metadata()?.len())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file().sync_data()
    }

    fn is_direct(&self) -> bool {
        match &self.0 {
            StdFileKind::Buffered(_) => false,
            StdFileKind::Direct(file) => file.is_direct(),
        }
    }

    #[allow(unsafe_code)]
    unsafe fn map_read_only(&self, access: Access) -> io::Result<MappedFile> {
        if self.size()? == 0 {
            // An empty file cannot be mapped.
            return Ok(MappedFile::from_bytes(Bytes::new()));
        }
        // SAFETY: the caller promises the file no longer changes and is never truncated
        // while the map lives (this method's contract; see the module documentation).
        let map = unsafe { memmap2::Mmap::map(self.file()) }?;
        if access == Access::Random {
            // Reads pick single pages: without this hint the kernel maps whole read-ahead
            // windows, which count in the process's RSS while the file is mapped.
            map.advise(memmap2::Advice::Random)?;
        }
        Ok(MappedFile::from_map(map))
    }
}

/// Opens `path` for reading, refusing anything but a regular file: a FIFO put where a
/// store's file belongs would block every open forever, a directory would fail later
/// with an error that does not say why (found by a review). Opened without blocking, so
/// the check runs before any read can wait.
fn open_regular(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    let what = if kind.is_file() {
        return Ok(file);
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a device"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what}, not a regular file"),
    ))
}

impl FileSystem for StdFileSystem {
    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        Ok(StdFile::buffered(file))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        Ok(StdFile::buffered(open_regular(path)?))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        Ok(StdFile::buffered(create_or_truncate(path)?))
    }

    fn create_direct(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let file = create_or_truncate(path)?;
        // The second descriptor opens the file the first just created (or truncated).
        let mut direct = std::fs::OpenOptions::new();
        direct.read(true).write(true);
        Ok(StdFile::direct(direct::DirectFile::open(
            file, path, direct,
        )?))
    }

    fn open_direct(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let mut direct = std::fs::OpenOptions::new();
        direct.read(true).write(true);
        Ok(StdFile::direct(direct::DirectFile::open(
            file, path, direct,
        )?))
    }

    fn open_read_direct(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let file = std::fs::File::open(path)?;
        let mut direct = std::fs::OpenOptions::new();
        direct.read(true);
        Ok(StdFile::direct(direct::DirectFile::open(
            file, path, direct,
        )?))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut open_regular(path)?, &mut bytes)?;
        Ok(bytes)
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        std::fs::write(path, bytes)
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        std::fs::read_dir(path)?
            .map(|entry| entry.map(|entry| entry.file_name()))
            .collect()
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn is_dir(&self, path: &Path) -> io::Result<bool> {
        Ok(path.is_dir())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn FsLock>>> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(StdLock(file)))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(error)) => Err(error),
        }
    }

    fn is_operating_system(&self) -> bool {
        true
    }
}

/// Opens `path` for reading and writing, created empty or truncated.
fn create_or_truncate(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

/// Creates `dir` and its missing parents so that they survive a power cut: the parent of
/// every directory it creates is fsynced, top down, and so is `dir`'s own parent (an
/// existing, empty `dir` may be new too, made by the caller).
pub fn create_dir_all_durably(fs: &dyn FileSystem, dir: &Path) -> io::Result<()> {
    let parent_of = |path: &Path| {
        path.parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .map(Path::to_path_buf)
    };
    let mut to_sync: Vec<std::path::PathBuf> = parent_of(dir).into_iter().collect();
    for ancestor in dir
        .ancestors()
        .skip(1)
        .filter(|path| !path.as_os_str().is_empty())
    {
        if fs.exists(ancestor)? {
            break;
        }
        to_sync.extend(parent_of(ancestor));
    }
    fs.create_dir_all(dir)?;
    // Top down: a directory's entry is durable before the entries inside it are.
    for parent in to_sync.iter().rev() {
        fs.sync_dir(parent)?;
    }
    Ok(())
}
