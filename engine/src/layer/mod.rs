//! Layer files: immutable files of page versions of one branch, for a key range and an
//! LSN range (delta layers) or at one LSN (image layers). The byte layout is in `format`.
//!
//! Invariants: a layer is published once, crash-safely, and never modified; every block is
//! checked against its CRC32 before it is used, and damage is an error naming the file and
//! the offset, never data; an image layer covering a key proves the key's state at its LSN,
//! present or absent, so a read stops there.

mod format;
mod map;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use pagefork_wal::Lsn;

pub(crate) use format::{FORMAT_VERSION, encoded_len};
pub use format::{LayerKind, LayerRange};
pub use map::Level;
pub(crate) use map::{LayerMap, PersistedLayer};

use crate::error::{EngineError, Result};
use crate::fs::{Access, FileSystem, FsFile, MappedFile, StdFileSystem, publish_file};
use crate::key::Key;
use crate::update::Update;

/// What the catalog records about a published layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerSummary {
    /// The layer's ranges.
    pub range: LayerRange,
    /// File size in bytes.
    pub size: u64,
    /// CRC32 of the whole file.
    pub checksum: u32,
    /// Page versions it holds.
    pub versions: u64,
}

/// Writes a layer holding `versions` (sorted by key, then LSN) to `path`, crash-safely.
pub fn write_layer(
    fs: &dyn FileSystem,
    path: &Path,
    range: &LayerRange,
    versions: &[(Key, Lsn, Update)],
) -> Result<LayerSummary> {
    let bytes = format::encode(range, versions);
    publish_file(fs, path, &bytes).map_err(EngineError::io("publish layer", path))?;
    Ok(LayerSummary {
        range: *range,
        size: bytes.len() as u64,
        checksum: crc32fast::hash(&bytes),
        versions: versions.len() as u64,
    })
}

/// An open, memory-mapped layer file.
#[derive(Debug)]
pub struct LayerFile {
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
    bytes: Bytes,
    /// The mapping `bytes` is a view of, for read-ahead hints.
    mapping: MappedFile,
    range: LayerRange,
    index: Vec<format::IndexEntry>,
    index_offset: usize,
}

impl LayerFile {
    /// Opens and maps a layer, checking its header, footer and index. With `expected`
    /// (size and whole-file CRC32, as the catalog records them) the file must match it.
    pub fn open(path: &Path, expected: Option<(u64, u32)>) -> Result<LayerFile> {
        LayerFile::open_on(Arc::new(StdFileSystem), path, expected)
    }

    /// `open`, on the file system `fs`.
    pub fn open_on(
        fs: Arc<dyn FileSystem>,
        path: &Path,
        expected: Option<(u64, u32)>,
    ) -> Result<LayerFile> {
        let file = fs
            .open_read(path)
            .map_err(EngineError::io("open layer", path))?;
        // SAFETY: a published layer is never written again and never truncated: it is
        // written whole under a temporary name, fsynced and renamed into place; compaction
        // and GC only add new files and unlink old ones (unlinking keeps a mapping valid);
        // the store's directory lock keeps other pagefork processes out.
        #[allow(unsafe_code)]
        let mapped = unsafe { file.map_read_only(Access::Random) };
        let mapping = mapped.map_err(EngineError::io("map layer", path))?;
        let bytes = mapping.bytes();
        let corrupt = |offset: u64, reason: String| EngineError::CorruptFile {
            path: path.to_owned(),
            offset,
            reason,
        };
        if let Some((size, checksum)) = expected {
            if bytes.len() as u64 != size {
                return Err(corrupt(
                    0,
                    format!("{} bytes, the catalog says {size}", bytes.len()),
                ));
            }
            if crc32fast::hash(&bytes) != checksum {
                return Err(corrupt(
                    0,
                    "whole-file checksum differs from the catalog's".to_owned(),
                ));
            }
        }
        let (range, index) =
            format::decode_layout(&bytes).map_err(|error| corrupt(error.offset, error.reason))?;
        let index_offset = format::index_offset(&bytes);
        // The index is on the heap now; the pages read to check it need not stay mapped.
        mapping.release_resident_pages();
        Ok(LayerFile {
            fs,
            path: path.to_owned(),
            bytes,
            mapping,
            range,
            index,
            index_offset,
        })
    }

    /// The layer's ranges.
    pub fn range(&self) -> &LayerRange {
        &self.range
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of page versions.
    pub fn version_count(&self) -> usize {
        self.index.len()
    }

    /// File size in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn decode(&self, entry: &format::IndexEntry) -> Result<Update> {
        format::decode_block(&self.bytes, entry, self.index_offset).map_err(|error| {
            EngineError::CorruptFile {
                path: self.path.clone(),
                offset: error.offset,
                reason: error.reason,
            }
        })
    }

    /// Appends to `out` the versions of `key` at or below `lsn`, newest first, stopping at
    /// the first initializing one; returns whether the walk can stop here. For an image
    /// layer covering `key` at or below `lsn`, that is always true: the key's image, or
    /// `Update::Drop` when the layer proves the page did not exist.
    pub fn collect_versions(&self, key: Key, lsn: Lsn, out: &mut Vec<Update>) -> Result<bool> {
        if !self.range.covers_key(key) || lsn < self.range.lsn_start {
            return Ok(false);
        }
        let first = self.index.partition_point(|entry| entry.key < key);
        let end = self
            .index
            .partition_point(|entry| (entry.key, entry.lsn) <= (key, lsn));
        if self.range.kind == LayerKind::Image {
            match self
                .index
                .get(first..end)
                .and_then(|entries| entries.first())
            {
                Some(entry) => out.push(self.decode(entry)?),
                None => out.push(Update::Drop),
            }
            return Ok(true);
        }
        for entry in self.index.get(first..end).unwrap_or_default().iter().rev() {
            let update = self.decode(entry)?;
            let initializing = update.is_initializing();
            out.push(update);
            if initializing {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Starts reading the blocks of keys `first..=last` into the page cache (a hint,
    /// nothing if the layer holds none or lies above `lsn`): the blocks of neighbouring
    /// keys are neighbours in the file, so a range read becomes one large read.
    pub(crate) fn prefetch(&self, first: Key, last: Key, lsn: Lsn) {
        if lsn < self.range.lsn_start || last < self.range.key_start || first > self.range.key_last
        {
            return;
        }
        let start = self.index.partition_point(|entry| entry.key < first);
        let end = self.index.partition_point(|entry| entry.key <= last);
        let Some(from) = self.index.get(start) else {
            return;
        };
        let to = self
            .index
            .get(end)
            .map_or(self.index_offset as u64, |entry| entry.offset);
        if let (Ok(from), Ok(to)) = (usize::try_from(from.offset), usize::try_from(to)) {
            self.mapping.will_need(from..to);
        }
    }

    /// Keys in `first..=last` with a version at or below `lsn`, in order.
    pub(crate) fn keys_in(&self, first: Key, last: Key, lsn: Lsn) -> Vec<Key> {
        let start = self.index.partition_point(|entry| entry.key < first);
        let mut keys: Vec<Key> = self
            .index
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take_while(|entry| entry.key <= last)
            .filter(|entry| entry.lsn <= lsn)
            .map(|entry| entry.key)
            .collect();
        keys.dedup();
        keys
    }

    /// How many versions of keys in `first..=last` the layer holds (off the index alone).
    pub(crate) fn versions_in(&self, first: Key, last: Key) -> usize {
        let start = self.index.partition_point(|entry| entry.key < first);
        let end = self.index.partition_point(|entry| entry.key <= last);
        end.saturating_sub(start)
    }

    /// The (key, LSN) of every version, in order (read off the index alone).
    pub(crate) fn version_index(&self) -> impl Iterator<Item = (Key, Lsn)> + '_ {
        self.index.iter().map(|entry| (entry.key, entry.lsn))
    }

    /// Keys with a version above `after` and at or below `up_to`, in order (read off the
    /// index alone).
    pub(crate) fn keys_written(&self, after: Lsn, up_to: Lsn) -> Vec<Key> {
        let mut keys: Vec<Key> = self
            .index
            .iter()
            .filter(|entry| after < entry.lsn && entry.lsn <= up_to)
            .map(|entry| entry.key)
            .collect();
        keys.dedup();
        keys
    }

    /// Every version, in (key, LSN) order, each block checked, read through buffered file
    /// reads rather than the mapping: compaction streams whole layers through this, and
    /// pages read once should not stay resident in the process (they would count in its
    /// RSS for as long as the layer stays mapped).
    pub(crate) fn read_sequentially(self: &Arc<Self>) -> Result<SequentialVersions> {
        let file = self
            .fs
            .open_read(&self.path)
            .map_err(EngineError::io("open layer", &self.path))?;
        Ok(SequentialVersions {
            layer: Arc::clone(self),
            reader: ChunkReader::new(file, self.index_offset as u64),
            next: 0,
        })
    }

    /// Every version, in (key, LSN) order, each block checked.
    pub fn versions(&self) -> Result<Vec<(Key, Lsn, Update)>> {
        self.index
            .iter()
            .map(|entry| Ok((entry.key, entry.lsn, self.decode(entry)?)))
            .collect()
    }

    /// The CRC32 of the whole file.
    pub fn checksum(&self) -> u32 {
        crc32fast::hash(&self.bytes)
    }
}

/// The versions of a layer in (key, LSN) order, read with buffered I/O (see
/// `LayerFile::read_sequentially`).
#[derive(Debug)]
pub(crate) struct SequentialVersions {
    layer: Arc<LayerFile>,
    reader: ChunkReader,
    /// Index of the next entry.
    next: usize,
}

/// Reads a file's data section front to back in large positioned reads.
#[derive(Debug)]
struct ChunkReader {
    file: Box<dyn FsFile>,
    /// Where the readable part ends (the layer's index starts there).
    end: u64,
    buffer: Vec<u8>,
    /// File offset of `buffer[0]`.
    buffer_start: u64,
}

impl ChunkReader {
    const CHUNK: u64 = 256 * 1024;

    fn new(file: Box<dyn FsFile>, end: u64) -> ChunkReader {
        ChunkReader {
            file,
            end,
            buffer: Vec::new(),
            buffer_start: 0,
        }
    }

    /// Fills `out` with the bytes at `offset` (all before `end`).
    fn read_exact_at(&mut self, out: &mut [u8], offset: u64) -> std::io::Result<()> {
        let wanted_end = offset + out.len() as u64;
        let buffered_end = self.buffer_start + self.buffer.len() as u64;
        if offset < self.buffer_start || wanted_end > buffered_end {
            if wanted_end > self.end {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "read past the layer's data",
                ));
            }
            let len = (self.end - offset).min(Self::CHUNK.max(out.len() as u64));
            self.buffer.resize(len as usize, 0);
            self.file.read_exact_at(&mut self.buffer, offset)?;
            self.buffer_start = offset;
        }
        let start = (offset - self.buffer_start) as usize;
        let source = self
            .buffer
            .get(start..start + out.len())
            .ok_or_else(|| std::io::Error::other("layer read buffer out of range"))?;
        out.copy_from_slice(source);
        Ok(())
    }
}

impl SequentialVersions {
    fn read_entry(&mut self, entry: format::IndexEntry) -> Result<Update> {
        let path = &self.layer.path;
        let io = |error| EngineError::io("read layer", path)(error);
        let mut header = [0u8; format::BLOCK_LEN_OFFSET + 4];
        self.reader
            .read_exact_at(&mut header, entry.offset)
            .map_err(io)?;
        let mut len = [0u8; 4];
        len.copy_from_slice(header.get(format::BLOCK_LEN_OFFSET..).unwrap_or_default());
        let len = u32::from_le_bytes(len) as usize;
        let data_end = self.layer.index_offset as u64;
        let block_len = format::BLOCK_FRAMING_LEN + len;
        if entry.offset + block_len as u64 > data_end {
            return Err(EngineError::CorruptFile {
                path: path.clone(),
                offset: entry.offset,
                reason: "data block runs past the data".to_owned(),
            });
        }
        let mut block = vec![0u8; block_len];
        block
            .get_mut(..header.len())
            .unwrap_or_default()
            .copy_from_slice(&header);
        self.reader
            .read_exact_at(
                block.get_mut(header.len()..).unwrap_or_default(),
                entry.offset + header.len() as u64,
            )
            .map_err(io)?;
        format::decode_block_at(Bytes::from(block), &entry).map_err(|error| {
            EngineError::CorruptFile {
                path: path.clone(),
                offset: error.offset,
                reason: error.reason,
            }
        })
    }
}

impl Iterator for SequentialVersions {
    type Item = Result<(Key, Lsn, Update)>;

    fn next(&mut self) -> Option<Self::Item> {
        let entry = *self.layer.index.get(self.next)?;
        self.next += 1;
        Some(
            self.read_entry(entry)
                .map(|update| (entry.key, entry.lsn, update)),
        )
    }
}
