//! `FileSystem`: the engine's file I/O, behind a small trait so tests can substitute an
//! implementation that loses unsynced writes or fails the Nth operation.
//!
//! The engine's own files (the store metadata, later the catalog and layers) go through
//! it, and `publish_file` is the one way a file is published: temporary name, write, fsync,
//! rename, fsync the directory. (The WAL still does its I/O with `std::fs` directly;
//! bringing it behind this trait is part of the fault-injection work.)

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// File operations the engine needs, each a plain OS operation with no hidden fsync.
pub trait FileSystem: Send + Sync + fmt::Debug {
    /// The whole content of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Creates or truncates `path` and writes `bytes` to it, without fsync.
    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// fsyncs a file.
    fn sync_file(&self, path: &Path) -> io::Result<()>;
    /// Renames a file, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// fsyncs a directory, making creations, renames and removals in it durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory and its missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Whether something exists at `path`.
    fn exists(&self, path: &Path) -> io::Result<bool>;
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFileSystem;

impl FileSystem for StdFileSystem {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
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

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }
}

/// Publishes `bytes` at `path` crash-safely: written under a temporary name, fsynced,
/// renamed into place, and the directory fsynced. After a crash the file is either absent
/// (or its old version) or complete.
pub fn publish_file(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
    temp_name.push(".tmp");
    let temp = path.with_file_name(temp_name);
    fs.write(&temp, bytes)?;
    fs.sync_file(&temp)?;
    fs.rename(&temp, path)?;
    let dir = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    fs.sync_dir(&dir)
}
