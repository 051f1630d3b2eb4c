//! The engine's file I/O: the [`FileSystem`] trait of `pagefork-wal` (so the log and the
//! engine's own files, the store metadata, catalog and layers, go through one
//! implementation a test can substitute), and `publish_file` (or `publish_streamed` for a
//! file written in pieces), the one way a file is published: temporary name, write,
//! fsync, rename, fsync the directory.

use std::path::{Path, PathBuf};

pub use pagefork_wal::fs::{
    Access, FileSystem, FsFile, FsLock, MappedFile, StdFileSystem, create_dir_all_durably,
};

/// Publishes `bytes` at `path` crash-safely: written under a temporary name, fsynced,
/// renamed into place, and the directory fsynced. After a crash the file is either absent
/// (or its old version) or complete.
pub fn publish_file(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    publish_with(fs, path, |temp| {
        fs.write(temp, bytes)?;
        fs.sync_file(temp)
    })
}

/// Publishes the bytes `fill` hands to its sink, in order, at `path`, crash-safely as
/// [`publish_file`] does, without ever holding the whole file: each piece is written
/// when it is handed over. Returns what `fill` returns; an error from `fill` or a write
/// publishes nothing.
pub(crate) fn publish_streamed<T>(
    fs: &dyn FileSystem,
    path: &Path,
    fill: impl FnOnce(&mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    publish_with(fs, path, |temp| {
        let file = fs.create(temp)?;
        let mut at = 0u64;
        let filled = fill(&mut |piece| {
            file.write_all_at(piece, at)?;
            at += piece.len() as u64;
            Ok(())
        })?;
        file.sync_data()?;
        Ok(filled)
    })
}

/// `write_durably` fills and fsyncs a temporary file beside `path`, which is then renamed
/// into place and its directory fsynced.
fn publish_with<T>(
    fs: &dyn FileSystem,
    path: &Path,
    write_durably: impl FnOnce(&Path) -> std::io::Result<T>,
) -> std::io::Result<T> {
    let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
    temp_name.push(".tmp");
    let temp = path.with_file_name(temp_name);
    let written = write_durably(&temp)?;
    fs.rename(&temp, path)?;
    let dir = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    fs.sync_dir(&dir)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streamed_publish_writes_every_piece_in_order_or_nothing_under_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer");
        let error = publish_streamed(&StdFileSystem, &path, |sink| {
            sink(b"first piece")?;
            Err::<(), _>(std::io::Error::other("fill failed"))
        })
        .unwrap_err();
        assert_eq!(error.to_string(), "fill failed");
        assert!(
            !path.exists(),
            "a failed publish leaves nothing under the name"
        );
        let pieces = publish_streamed(&StdFileSystem, &path, |sink| {
            sink(b"one ")?;
            sink(b"two")?;
            Ok(2)
        })
        .unwrap();
        assert_eq!(pieces, 2);
        assert_eq!(std::fs::read(&path).unwrap(), b"one two");
        assert!(!dir.path().join("layer.tmp").exists());
    }
}
