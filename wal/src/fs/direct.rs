//! Direct I/O (`O_DIRECT`) for files written front to back and rarely read back: layer
//! files, written by flushes and compaction and read whole by compaction, and WAL
//! segments, read back when a store opens (and by `inspect`).
//!
//! Written through the kernel's page cache, every byte of such a file takes a fresh page
//! of memory that nothing reads again soon: a layer is read back at most once, by the
//! compaction that replaces it, a page a mount's reader wants is already in the kernel's
//! cache of the mounted file, and the log is read back after a crash. Allocating and filling those pages was most of a
//! sequential write's cost through a mount on the benchmark machine (a virtual machine
//! whose host backs guest memory on first touch). With direct I/O the bytes go from the
//! process's buffer to the disk.
//!
//! A [`DirectFile`] is the file open twice, buffered and with `O_DIRECT` (when the file
//! system allows it: tmpfs before Linux 6.6 does not): a read or write whose buffer,
//! offset and length are multiples of [`DIRECT_IO_ALIGNMENT`] goes direct, and whatever
//! is not aligned (the tail of a request) goes through the buffered descriptor, so every
//! request is correct whatever its alignment, and only aligned ones are faster. Linux
//! keeps the two coherent: a direct read writes back dirty cached pages of its range
//! first, and a direct write drops them. `fsync` covers both.
//!
//! Invariant kept: nothing here changes what a read returns or what an fsync makes
//! durable; a direct request the kernel refuses (EINVAL: an alignment the device does not
//! accept) is done buffered, and the file stops trying direct I/O.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// The alignment of buffer addresses, file offsets and lengths that direct I/O needs:
/// 4 KiB, the logical block size of every disk we run on (and a multiple of 512).
pub const DIRECT_IO_ALIGNMENT: usize = 4096;

/// A buffer aligned for direct I/O: anonymous memory, which starts on a page boundary.
#[derive(Debug)]
pub struct AlignedBuffer(memmap2::MmapMut);

impl AlignedBuffer {
    /// A zeroed buffer of `len` bytes (at least one byte is allocated).
    pub fn new(len: usize) -> io::Result<AlignedBuffer> {
        Ok(AlignedBuffer(memmap2::MmapMut::map_anon(len.max(1))?))
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds no bytes (never: see `new`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::ops::Deref for AlignedBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for AlignedBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

/// A file open buffered and, where the file system allows, with `O_DIRECT` too.
#[derive(Debug)]
pub(super) struct DirectFile {
    buffered: File,
    direct: Option<File>,
    /// Cleared when the kernel refused a direct request: the rest go buffered.
    direct_works: AtomicBool,
}

impl DirectFile {
    /// Wraps `buffered` (already open, created or truncated as the caller needs) with a
    /// second, direct descriptor of the same file opened with `options`.
    pub(super) fn open(
        buffered: File,
        path: &Path,
        mut options: std::fs::OpenOptions,
    ) -> io::Result<DirectFile> {
        let direct = match options.custom_flags(libc::O_DIRECT).open(path) {
            Ok(file) => Some(file),
            // Some file systems (tmpfs before Linux 6.6) refuse O_DIRECT: all goes buffered.
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => None,
            Err(error) => return Err(error),
        };
        Ok(DirectFile {
            buffered,
            direct,
            direct_works: AtomicBool::new(true),
        })
    }

    pub(super) fn buffered(&self) -> &File {
        &self.buffered
    }

    /// Whether aligned requests go direct.
    pub(super) fn is_direct(&self) -> bool {
        self.direct.is_some() && self.direct_works.load(Ordering::Relaxed)
    }

    /// The direct descriptor and how many leading bytes of a request at `address` and
    /// `offset` of `len` bytes it can take (0: none).
    fn direct_part(&self, address: usize, offset: u64, len: usize) -> Option<(&File, usize)> {
        let direct = self.direct.as_ref().filter(|_| self.is_direct())?;
        let aligned = address.is_multiple_of(DIRECT_IO_ALIGNMENT)
            && offset.is_multiple_of(DIRECT_IO_ALIGNMENT as u64)
            && len >= DIRECT_IO_ALIGNMENT;
        aligned.then(|| (direct, len - len % DIRECT_IO_ALIGNMENT))
    }

    /// Turns a refusal of direct I/O into "do it buffered".
    fn refused(&self, error: &io::Error) -> bool {
        let refused = error.raw_os_error() == Some(libc::EINVAL);
        if refused {
            self.direct_works.store(false, Ordering::Relaxed);
            tracing::debug!(%error, "direct I/O refused; the file goes on buffered");
        }
        refused
    }

    pub(super) fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let (head, tail) = match self.direct_part(buf.as_ptr() as usize, offset, buf.len()) {
            Some((direct, len)) => {
                let (head, tail) = buf.split_at_mut(len);
                match direct.read_exact_at(head, offset) {
                    Ok(()) => (len, tail),
                    Err(error) if self.refused(&error) => (0, buf),
                    Err(error) => return Err(error),
                }
            }
            None => (0, buf),
        };
        self.buffered.read_exact_at(tail, offset + head as u64)
    }

    pub(super) fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        let (head, tail) = match self.direct_part(bytes.as_ptr() as usize, offset, bytes.len()) {
            Some((direct, len)) => {
                let (head, tail) = bytes.split_at(len);
                match direct.write_all_at(head, offset) {
                    Ok(()) => (len, tail),
                    Err(error) if self.refused(&error) => (0, bytes),
                    Err(error) => return Err(error),
                }
            }
            None => (0, bytes),
        };
        self.buffered.write_all_at(tail, offset + head as u64)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::fs::{FileSystem, StdFileSystem};

    /// A directory on the disk the tests run from (not a tmpfs, which may refuse O_DIRECT).
    fn disk_dir() -> tempfile::TempDir {
        tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap()
    }

    #[test]
    fn aligned_and_unaligned_requests_read_back_what_was_written() {
        let dir = disk_dir();
        let path = dir.path().join("layer");
        let file = StdFileSystem.create_direct(&path).unwrap();
        assert!(
            file.is_direct(),
            "a file on the disk is open for direct I/O"
        );
        let pattern: Vec<u8> = (0..3 * DIRECT_IO_ALIGNMENT + 777)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        // One request split: its aligned head direct, its 777-byte tail buffered; then an
        // unaligned request (all buffered) over part of it, then a direct overwrite of
        // blocks the buffered write left dirty in the page cache.
        let mut aligned = AlignedBuffer::new(pattern.len()).unwrap();
        aligned.copy_from_slice(&pattern);
        file.write_all_at(&aligned, 0).unwrap();
        file.write_all_at(&pattern[100..5000], 100).unwrap();
        let mut first_blocks = AlignedBuffer::new(2 * DIRECT_IO_ALIGNMENT).unwrap();
        first_blocks.copy_from_slice(&pattern[..2 * DIRECT_IO_ALIGNMENT]);
        file.write_all_at(&first_blocks, 0).unwrap();
        file.sync_data().unwrap();

        let reader = StdFileSystem.open_read_direct(&path).unwrap();
        assert!(reader.is_direct());
        let mut whole = AlignedBuffer::new(pattern.len()).unwrap();
        reader
            .read_exact_at(&mut whole[..pattern.len()], 0)
            .unwrap();
        assert_eq!(&whole[..pattern.len()], &pattern[..]);
        // Odd offsets and lengths, and an aligned read that ends in the unaligned tail.
        for (offset, len) in [(1, 5000), (4095, 4097), (4096, 8192 + 700), (12288, 777)] {
            let mut out = AlignedBuffer::new(len).unwrap();
            reader
                .read_exact_at(&mut out[..len], offset as u64)
                .unwrap();
            assert_eq!(&out[..len], &pattern[offset..offset + len], "at {offset}");
        }
        let mut past = AlignedBuffer::new(2 * DIRECT_IO_ALIGNMENT).unwrap();
        let error = reader
            .read_exact_at(&mut past, 3 * DIRECT_IO_ALIGNMENT as u64)
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(std::fs::read(&path).unwrap(), pattern);
    }

    #[test]
    fn a_direct_read_sees_bytes_still_dirty_in_the_page_cache() {
        let dir = disk_dir();
        let path = dir.path().join("file");
        std::fs::write(&path, vec![1u8; 2 * DIRECT_IO_ALIGNMENT]).unwrap();
        let writer = StdFileSystem.open(&path).unwrap();
        writer.write_all_at(&[9u8; 10], 5).unwrap();
        let direct = StdFileSystem.open_read_direct(&path).unwrap();
        assert!(direct.is_direct());
        let mut out = AlignedBuffer::new(DIRECT_IO_ALIGNMENT).unwrap();
        direct.read_exact_at(&mut out, 0).unwrap();
        assert_eq!(&out[..5], &[1u8; 5]);
        assert_eq!(&out[5..15], &[9u8; 10]);
        assert_eq!(&out[15..], &[1u8; DIRECT_IO_ALIGNMENT - 15][..]);
    }
}
