//! The engine's file I/O: the [`FileSystem`] trait of `pagefork-wal` (so the log and the
//! engine's own files, the store metadata, catalog and layers, go through one
//! implementation a test can substitute), and `publish_file`, the one way a file is
//! published: temporary name, write, fsync, rename, fsync the directory.

use std::path::{Path, PathBuf};

pub use pagefork_wal::fs::{
    Access, FileSystem, FsFile, FsLock, MappedFile, StdFileSystem, create_dir_all_durably,
};

/// Publishes `bytes` at `path` crash-safely: written under a temporary name, fsynced,
/// renamed into place, and the directory fsynced. After a crash the file is either absent
/// (or its old version) or complete.
pub fn publish_file(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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
