//! The engine's file I/O: the [`FileSystem`] trait of `pagefork-wal` (so the log and the
//! engine's own files, the store metadata, catalog and layers, go through one
//! implementation a test can substitute), and `publish_file` (or `publish_streamed` for a
//! file written in pieces), the one way a file is published: temporary name, write,
//! fsync, rename, fsync the directory. A streamed file is written with direct I/O where
//! the file system allows it (see `pagefork_wal::fs::FileSystem::create_direct`): its
//! pieces are gathered into aligned blocks of [`STAGING_BYTES`].

use std::path::{Path, PathBuf};

pub use pagefork_wal::fs::{
    Access, FileSystem, FsFile, FsLock, MappedFile, StdFileSystem, create_dir_all_durably,
};
pub(crate) use pagefork_wal::fs::{AlignedBuffer, DIRECT_IO_ALIGNMENT};

/// The suffix of a file's name while it is being published: such a file belongs to a
/// publish in progress until the store next opens, when it is debris.
pub(crate) const TEMPORARY_SUFFIX: &str = ".tmp";

/// How many bytes a streamed publish gathers before each write: large enough that a
/// direct write is one efficient request, small enough to be one chunk of memory.
pub(crate) const STAGING_BYTES: usize = 1 << 20;

/// Publishes `bytes` at `path` crash-safely: written under a temporary name, fsynced,
/// renamed into place, and the directory fsynced. After a crash the file is either absent
/// (or its old version) or complete.
pub fn publish_file(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    publish_file_opened(fs, path, bytes, DirSync::Now, |_| Ok(()))
}

/// [`publish_file`], handing the written and fsynced file to `open` under its temporary
/// name before it is renamed into place, so what `open` returns (a mapping, say) is of
/// these bytes whatever happens to `path` afterwards: a file may be removed as soon as it
/// is published if no catalog lists it. With [`DirSync::ByCaller`] the directory is not
/// fsynced: the caller fsyncs it once for a batch of files.
pub(crate) fn publish_file_opened<T>(
    fs: &dyn FileSystem,
    path: &Path,
    bytes: &[u8],
    dir_sync: DirSync,
    open: impl FnOnce(&Path) -> std::io::Result<T>,
) -> std::io::Result<T> {
    publish_with(fs, path, dir_sync, |temp| {
        fs.write(temp, bytes)?;
        fs.sync_file(temp)?;
        open(temp)
    })
}

/// Whether a publish fsyncs the directory it renamed into.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum DirSync {
    /// At once: the file's name is durable when the publish returns.
    Now,
    /// The caller does, once for a batch of files, after the last one and before
    /// anything relies on their names being durable.
    ByCaller,
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
    publish_with(fs, path, DirSync::Now, |temp| {
        let file = fs.create_direct(temp)?;
        let mut staging = Staging {
            file: file.as_ref(),
            buffer: AlignedBuffer::new(STAGING_BYTES)?,
            filled: 0,
            written: 0,
        };
        let filled = fill(&mut |piece| staging.put(piece))?;
        staging.write_out()?;
        file.sync_data()?;
        Ok(filled)
    })
}

/// Gathers a streamed file's pieces into whole aligned blocks, so every write but the
/// last can go direct.
struct Staging<'a> {
    file: &'a dyn FsFile,
    buffer: AlignedBuffer,
    /// Bytes of `buffer` holding data not yet written.
    filled: usize,
    /// Bytes of the file already written (a multiple of the buffer's size).
    written: u64,
}

impl Staging<'_> {
    fn put(&mut self, mut piece: &[u8]) -> std::io::Result<()> {
        while !piece.is_empty() {
            let room = self.buffer.len() - self.filled;
            let (now, later) = piece.split_at(room.min(piece.len()));
            let end = self.filled + now.len();
            let target = self
                .buffer
                .get_mut(self.filled..end)
                .ok_or_else(|| std::io::Error::other("staging buffer out of range"))?;
            target.copy_from_slice(now);
            self.filled = end;
            if self.filled == self.buffer.len() {
                self.write_out()?;
            }
            piece = later;
        }
        Ok(())
    }

    /// Writes what the buffer holds at the file's end and empties it.
    fn write_out(&mut self) -> std::io::Result<()> {
        let data = self
            .buffer
            .get(..self.filled)
            .ok_or_else(|| std::io::Error::other("staging buffer out of range"))?;
        self.file.write_all_at(data, self.written)?;
        self.written += self.filled as u64;
        self.filled = 0;
        Ok(())
    }
}

/// `write_durably` fills and fsyncs a temporary file beside `path` (its name and
/// [`TEMPORARY_SUFFIX`]), which is then renamed into place and its directory fsynced
/// (unless `dir_sync` leaves that to the caller). A failed publish removes its temporary
/// file (if it can), so a running store leaves no debris of it.
fn publish_with<T>(
    fs: &dyn FileSystem,
    path: &Path,
    dir_sync: DirSync,
    write_durably: impl FnOnce(&Path) -> std::io::Result<T>,
) -> std::io::Result<T> {
    let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
    temp_name.push(TEMPORARY_SUFFIX);
    let temp = path.with_file_name(temp_name);
    let written = write_durably(&temp)
        .and_then(|written| fs.rename(&temp, path).map(|()| written))
        .inspect_err(|_| {
            // Best effort: what is left is debris the next open removes.
            let _ = fs.remove_file(&temp);
        })?;
    if dir_sync == DirSync::Now {
        let dir = path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        fs.sync_dir(&dir)?;
    }
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

    #[test]
    fn a_streamed_publish_of_pieces_across_staging_blocks_keeps_every_byte() {
        // On the disk (a tmpfs may refuse direct I/O), pieces of odd sizes that straddle the
        // staging blocks, and a last block that is not a multiple of the alignment.
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let path = dir.path().join("layer");
        let total = 2 * STAGING_BYTES + 3 * DIRECT_IO_ALIGNMENT + 123;
        let bytes: Vec<u8> = (0..total).map(|i| (i % 253) as u8).collect();
        publish_streamed(&StdFileSystem, &path, |sink| {
            let mut rest = &bytes[..];
            let mut size = 1;
            while !rest.is_empty() {
                let (piece, later) = rest.split_at(size.min(rest.len()));
                sink(piece)?;
                rest = later;
                size = size * 3 + 1000;
            }
            Ok(())
        })
        .unwrap();
        assert!(
            StdFileSystem
                .create_direct(&dir.path().join("probe"))
                .unwrap()
                .is_direct()
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }
}
