//! Layer files: immutable files of page versions of one branch, for a key range and an
//! LSN range (delta layers) or at one LSN (image layers). The byte layout is in `format`.
//!
//! Invariants: a layer is published once, crash-safely, and never modified; every block is
//! checked against its CRC32 before it is used, and damage is an error naming the file and
//! the offset, never data; an image layer covering a key proves the key's state at its LSN,
//! present or absent, so a read stops there.

mod cache;
mod encode;
mod format;
mod map;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use pagefork_wal::Lsn;
use parking_lot::{Mutex, RwLock};

pub(crate) use cache::LayerCache;
pub use cache::{
    LayerCacheConfig, LayerCacheStats, LayerSource, encode_marker, marker_path, read_outline,
};
pub(crate) use encode::encoding_memory;
pub(crate) use format::FORMAT_VERSION;
pub use format::{LayerKind, LayerRange};
pub use map::Level;
pub(crate) use map::{LayerMap, PersistedLayer};

use crate::error::{EngineError, Result};
use crate::fs::{
    Access, AlignedBuffer, DIRECT_IO_ALIGNMENT, DirSync, FileSystem, FsFile, MappedFile,
    StdFileSystem, publish_file_opened, publish_streamed,
};
use crate::key::Key;
use crate::update::{Depth, Update};

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

/// Writes a layer holding `versions` (sorted by key, then LSN) to `path`, crash-safely,
/// streaming it (one chunk of memory, whatever its size).
pub fn write_layer(
    fs: &dyn FileSystem,
    path: &Path,
    range: &LayerRange,
    versions: &[(Key, Lsn, Update)],
) -> Result<LayerSummary> {
    let encoded = publish_streamed(fs, path, |sink| encode::encode_to(range, versions, sink))
        .map_err(EngineError::io("publish layer", path))?;
    Ok(LayerSummary {
        range: *range,
        size: encoded.size,
        checksum: encoded.checksum,
        versions: versions.len() as u64,
    })
}

/// An open layer file: its range and index in memory, its blocks memory-mapped. A layer
/// opened with a [`LayerCache`] may be evicted (its blocks then only in the cache's source)
/// and is read back by the first read that needs a block.
pub struct LayerFile {
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
    range: LayerRange,
    index: Vec<format::IndexEntry>,
    index_offset: usize,
    size: u64,
    /// The mapped file; `None` while evicted.
    data: RwLock<Option<Mapped>>,
    /// With a layer cache: how to evict the layer and read it back.
    cached: Option<Cached>,
}

impl std::fmt::Debug for LayerFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerFile")
            .field("path", &self.path)
            .field("range", &self.range)
            .field("size", &self.size)
            .field("resident", &self.is_resident())
            .finish_non_exhaustive()
    }
}

/// Whether a read may read an evicted layer back.
#[derive(Clone, Copy)]
enum Fetch {
    ReadBack,
    ResidentOnly,
}

/// A mapped layer file: `bytes` is a view of `mapping`.
#[derive(Debug)]
struct Mapped {
    bytes: Bytes,
    mapping: MappedFile,
}

/// What a cached layer needs to be evicted and read back.
#[derive(Debug)]
struct Cached {
    cache: Arc<LayerCache>,
    /// The layer's name in the catalog (its file name) and its whole-file CRC32.
    name: String,
    checksum: u32,
    /// When a block was last read (`cache::now_micros`).
    last_used: AtomicU64,
    /// Held while the layer is downloaded or evicted.
    residency: Mutex<()>,
}

impl Cached {
    fn new(cache: &Arc<LayerCache>, name: &str, checksum: u32) -> Cached {
        Cached {
            cache: Arc::clone(cache),
            name: name.to_owned(),
            checksum,
            last_used: AtomicU64::new(cache::now_micros()),
            residency: Mutex::new(()),
        }
    }
}

/// Maps the file at `path` read-only.
fn map_file(fs: &dyn FileSystem, path: &Path) -> Result<Mapped> {
    let file = fs
        .open_read(path)
        .map_err(EngineError::io("open layer", path))?;
    map_open_file(file.as_ref()).map_err(EngineError::io("map layer", path))
}

/// Maps an open layer file read-only.
fn map_open_file(file: &dyn FsFile) -> std::io::Result<Mapped> {
    // SAFETY: a layer is mapped once it is whole and fsynced, and never written again nor
    // truncated: it is written under a temporary name, fsynced and renamed into place;
    // compaction, GC and eviction only add new files and unlink old ones (unlinking keeps
    // a mapping valid); the store's directory lock keeps other pagefork processes out.
    #[allow(unsafe_code)]
    let mapping = unsafe { file.map_read_only(Access::Random) }?;
    Ok(Mapped {
        bytes: mapping.bytes(),
        mapping,
    })
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
        let mapped = map_file(fs.as_ref(), path)?;
        let bytes = &mapped.bytes;
        // What is read below (the whole file for its checksum, or the index and footer),
        // asked for in one read rather than a fault per page: a layer written with direct
        // I/O is not in the page cache.
        let read_first = match expected {
            Some(_) => 0,
            None => format::index_offset(bytes).min(bytes.len()),
        };
        mapped.mapping.will_need(read_first..bytes.len());
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
            if crc32fast::hash(bytes) != checksum {
                return Err(corrupt(
                    0,
                    "whole-file checksum differs from the catalog's".to_owned(),
                ));
            }
        }
        let (range, index) =
            format::decode_layout(bytes).map_err(|error| corrupt(error.offset, error.reason))?;
        let index_offset = format::index_offset(bytes);
        // The index is on the heap now; the pages read to check it need not stay mapped.
        mapped.mapping.release_resident_pages();
        Ok(LayerFile {
            fs,
            path: path.to_owned(),
            range,
            index,
            index_offset,
            size: bytes.len() as u64,
            data: RwLock::new(Some(mapped)),
            cached: None,
        })
    }

    /// Opens the layer `name` (of `size` bytes, CRC32 `checksum`, as the catalog lists it)
    /// at `path` under `cache`: the local file if there is one, otherwise, when its
    /// eviction marker says it was evicted, from the outline the marker holds (its blocks
    /// are read back from the cache's source by the first read that needs one).
    /// `Ok(None)`: neither file nor marker.
    pub(crate) fn open_cached(
        fs: Arc<dyn FileSystem>,
        path: &Path,
        name: &str,
        size: u64,
        checksum: u32,
        cache: &Arc<LayerCache>,
    ) -> Result<Option<Arc<LayerFile>>> {
        if fs.exists(path).map_err(EngineError::io("stat", path))? {
            return LayerFile::open_new(fs, path, name, checksum, Some(cache)).map(Some);
        }
        let Some(outline) = cache::read_marker(fs.as_ref(), path, size, checksum)? else {
            return Ok(None);
        };
        let layer =
            LayerFile::open_evicted(fs, path, size, &outline, Cached::new(cache, name, checksum))?;
        let layer = Arc::new(layer);
        cache.register(&layer);
        Ok(Some(layer))
    }

    /// `open_on` for a layer on disk (one just written, or listed and not evicted), tracked
    /// by `cache` if there is one.
    pub(crate) fn open_new(
        fs: Arc<dyn FileSystem>,
        path: &Path,
        name: &str,
        checksum: u32,
        cache: Option<&Arc<LayerCache>>,
    ) -> Result<Arc<LayerFile>> {
        let mut layer = LayerFile::open_on(fs, path, None)?;
        let Some(cache) = cache else {
            return Ok(Arc::new(layer));
        };
        layer.cached = Some(Cached::new(cache, name, checksum));
        cache.add_resident(layer.size);
        let layer = Arc::new(layer);
        cache.register(&layer);
        Ok(layer)
    }

    /// An evicted layer, from its outline (header, then index and footer).
    fn open_evicted(
        fs: Arc<dyn FileSystem>,
        path: &Path,
        size: u64,
        outline: &[u8],
        cached: Cached,
    ) -> Result<LayerFile> {
        let marker = cache::marker_path(path);
        let corrupt = |offset: u64, reason: String| EngineError::CorruptFile {
            path: marker.clone(),
            offset,
            reason: format!("{reason} (in the outline of the evicted layer it marks)"),
        };
        let outline = format::decode_outline(outline, size)
            .map_err(|error| corrupt(error.offset, error.reason))?;
        Ok(LayerFile {
            fs,
            path: path.to_owned(),
            range: outline.range,
            index: outline.index,
            index_offset: outline.index_offset as usize,
            size,
            data: RwLock::new(None),
            cached: Some(cached),
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
        self.size
    }

    /// Whether the file is on local disk (not evicted).
    pub fn is_resident(&self) -> bool {
        self.data.read().is_some()
    }

    /// The file's bytes, read back from the layer cache's source first if evicted.
    fn bytes(&self) -> Result<Bytes> {
        match self.resident_bytes() {
            Some(bytes) => Ok(bytes),
            None => self.read_back(),
        }
    }

    /// The file's bytes if it is resident (not evicted).
    fn resident_bytes(&self) -> Option<Bytes> {
        let data = self.data.read();
        let mapped = data.as_ref()?;
        if let Some(cached) = &self.cached {
            cached
                .last_used
                .store(cache::now_micros(), Ordering::Relaxed);
        }
        Some(mapped.bytes.clone())
    }

    /// Downloads an evicted layer, checks it against the catalog's size and CRC32 and the
    /// index in memory, publishes it crash-safely at its path, and maps it.
    fn read_back(&self) -> Result<Bytes> {
        let Some(cached) = &self.cached else {
            return Err(EngineError::InvariantViolated {
                action: "read a layer",
                rule: "a layer without a layer cache is never evicted",
                detail: self.path.display().to_string(),
            });
        };
        let _residency = cached.residency.lock();
        if let Some(mapped) = &*self.data.read() {
            return Ok(mapped.bytes.clone());
        }
        let cache = &cached.cache;
        cache.make_room(self.size, self)?;
        cache.add_resident(self.size);
        let mapped = self
            .download(cached)
            .inspect_err(|_| cache.remove_resident(self.size))?;
        cache.note_download(self.size);
        cached
            .last_used
            .store(cache::now_micros(), Ordering::Relaxed);
        let bytes = mapped.bytes.clone();
        *self.data.write() = Some(mapped);
        Ok(bytes)
    }

    fn download(&self, cached: &Cached) -> Result<Mapped> {
        let bytes = cached
            .cache
            .source
            .read_all(&cached.name, cached.checksum)
            .map_err(|reason| EngineError::LayerFetch {
                name: cached.name.clone(),
                reason,
            })?;
        let corrupt = |offset: u64, reason: String| EngineError::CorruptFile {
            path: self.path.clone(),
            offset,
            reason: format!("{reason} (in the copy read back from the layer cache's source)"),
        };
        if bytes.len() as u64 != self.size {
            return Err(corrupt(
                0,
                format!("{} bytes, the catalog says {}", bytes.len(), self.size),
            ));
        }
        if crc32fast::hash(&bytes) != cached.checksum {
            return Err(corrupt(
                0,
                "whole-file checksum differs from the catalog's".to_owned(),
            ));
        }
        let (range, index) =
            format::decode_layout(&bytes).map_err(|error| corrupt(error.offset, error.reason))?;
        if range != self.range || index != self.index {
            return Err(corrupt(
                0,
                "its header or index differs from the one read when the store opened".to_owned(),
            ));
        }
        // Mapped before it takes its name: a catalog published meanwhile that no longer
        // lists the layer may remove the file as soon as it is there.
        let fs = self.fs.as_ref();
        let mapped = publish_file_opened(fs, &self.path, &bytes, DirSync::Now, |temp| {
            map_open_file(fs.open_read(temp)?.as_ref())
        })
        .map_err(EngineError::io("publish layer read back", &self.path))?;
        let marker = cache::marker_path(&self.path);
        match self.fs.remove_file(&marker) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(EngineError::io("remove eviction marker", &marker)(error)),
        }
        Ok(mapped)
    }

    /// When the layer was last read, if it is resident and may be evicted.
    fn last_used_if_resident(&self) -> Option<u64> {
        let cached = self.cached.as_ref()?;
        self.is_resident()
            .then(|| cached.last_used.load(Ordering::Relaxed))
    }

    /// Evicts the layer if it is resident, not busy, and its source holds it: publishes
    /// its eviction marker, drops the mapping (reads in progress keep theirs) and removes
    /// the file. Returns whether it was evicted.
    pub(crate) fn try_evict(&self) -> Result<bool> {
        let Some(cached) = &self.cached else {
            return Ok(false);
        };
        let Some(_residency) = cached.residency.try_lock() else {
            return Ok(false);
        };
        if !self.is_resident() || !cached.cache.source.holds(&cached.name, cached.checksum) {
            return Ok(false);
        }
        let outline = self.outline()?;
        cache::write_marker(
            self.fs.as_ref(),
            &self.path,
            self.size,
            cached.checksum,
            &outline,
        )?;
        *self.data.write() = None;
        match self.fs.remove_file(&self.path) {
            Ok(()) => {}
            // A catalog that no longer lists the layer removed it already.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(EngineError::io("remove evicted layer", &self.path)(error)),
        }
        cached.cache.remove_resident(self.size);
        cached.cache.note_eviction();
        Ok(true)
    }

    /// The header, then everything from the index on, of a resident layer.
    fn outline(&self) -> Result<Vec<u8>> {
        let bytes = self.bytes()?;
        let mut outline = bytes.get(..format::HEADER_LEN).unwrap_or_default().to_vec();
        outline.extend_from_slice(bytes.get(self.index_offset..).unwrap_or_default());
        Ok(outline)
    }

    fn decode(&self, bytes: &Bytes, entry: &format::IndexEntry) -> Result<Update> {
        format::decode_block(bytes, entry, self.index_offset).map_err(|error| {
            EngineError::CorruptFile {
                path: self.path.clone(),
                offset: error.offset,
                reason: error.reason,
            }
        })
    }

    /// Appends to `out` the versions of `key` at or below `lsn`, newest first, as far back
    /// as `depth` says; returns whether the walk can stop here. For an image layer
    /// covering `key` at or below `lsn`, that is always true: the key's image, or
    /// `Update::Drop` when the layer proves the page did not exist.
    pub fn collect_versions(
        &self,
        key: Key,
        lsn: Lsn,
        depth: Depth,
        out: &mut Vec<Update>,
    ) -> Result<bool> {
        self.collect_versions_from(key, lsn, depth, out, Fetch::ReadBack)
            .map(|collected| collected.unwrap_or(false))
    }

    /// [`LayerFile::collect_versions`] without reading an evicted layer back: `None` (and
    /// nothing appended) when the versions are needed and the layer is evicted. A reader
    /// holding a lock others wait for asks this first (a download may take minutes).
    pub(crate) fn collect_resident_versions(
        &self,
        key: Key,
        lsn: Lsn,
        depth: Depth,
        out: &mut Vec<Update>,
    ) -> Result<Option<bool>> {
        self.collect_versions_from(key, lsn, depth, out, Fetch::ResidentOnly)
    }

    fn collect_versions_from(
        &self,
        key: Key,
        lsn: Lsn,
        depth: Depth,
        out: &mut Vec<Update>,
        fetch: Fetch,
    ) -> Result<Option<bool>> {
        if !self.range.covers_key(key) || lsn < self.range.lsn_start {
            return Ok(Some(false));
        }
        let first = self.index.partition_point(|entry| entry.key < key);
        let end = self
            .index
            .partition_point(|entry| (entry.key, entry.lsn) <= (key, lsn));
        let entries = self.index.get(first..end).unwrap_or_default();
        let bytes = || match fetch {
            Fetch::ReadBack => self.bytes().map(Some),
            Fetch::ResidentOnly => Ok(self.resident_bytes()),
        };
        if self.range.kind == LayerKind::Image {
            match entries.first() {
                Some(entry) => {
                    let Some(bytes) = bytes()? else {
                        return Ok(None);
                    };
                    out.push(self.decode(&bytes, entry)?);
                }
                None => out.push(Update::Drop),
            }
            return Ok(Some(true));
        }
        if entries.is_empty() {
            return Ok(Some(false));
        }
        let Some(bytes) = bytes()? else {
            return Ok(None);
        };
        for entry in entries.iter().rev() {
            let update = self.decode(&bytes, entry)?;
            let enough = depth.stops_at(&update);
            out.push(update);
            if enough {
                return Ok(Some(true));
            }
        }
        Ok(Some(false))
    }

    /// Whether the layer's ranges meet keys `first..=last` at or below `lsn`.
    pub(crate) fn may_hold_range(&self, first: Key, last: Key, lsn: Lsn) -> bool {
        lsn >= self.range.lsn_start && last >= self.range.key_start && first <= self.range.key_last
    }

    /// Starts reading into the page cache the block of the newest version at or below
    /// `lsn` of each key in `first..=last` not in `found`, and adds those keys to `found`
    /// (a hint, nothing if the layer holds none, lies above `lsn`, or is evicted). Older
    /// versions are not read ahead: a read stops at the newest whole page, and a mount
    /// writes whole pages. Neighbouring keys' blocks are neighbours in the file, so a range
    /// read becomes one large read per run of wanted blocks.
    pub(crate) fn prefetch_newest(
        &self,
        first: Key,
        last: Key,
        lsn: Lsn,
        found: &mut std::collections::BTreeSet<Key>,
    ) {
        self.with_index_span(first, last, lsn, |mapping, start, end| {
            self.prefetch_newest_in(mapping, start, end, lsn, found);
        });
    }

    /// Runs `hint` with the mapping and the index positions `start..end` of the keys in
    /// `first..=last`, if the layer may hold them at `lsn` and is mapped.
    fn with_index_span(
        &self,
        first: Key,
        last: Key,
        lsn: Lsn,
        hint: impl FnOnce(&MappedFile, usize, usize),
    ) {
        if !self.may_hold_range(first, last, lsn) {
            return;
        }
        let data = self.data.read();
        let Some(mapped) = &*data else {
            return;
        };
        let start = self.index.partition_point(|entry| entry.key < first);
        let end = self.index.partition_point(|entry| entry.key <= last);
        hint(&mapped.mapping, start, end);
    }

    /// `prefetch_newest` over the index positions `start..end`.
    fn prefetch_newest_in(
        &self,
        mapping: &MappedFile,
        start: usize,
        end: usize,
        lsn: Lsn,
        found: &mut std::collections::BTreeSet<Key>,
    ) {
        // Runs of wanted blocks, merged across gaps of up to 64 KiB.
        let mut run: Option<(u64, u64)> = None;
        let will_need = |from: u64, to: u64| {
            if let (Ok(from), Ok(to)) = (usize::try_from(from), usize::try_from(to)) {
                mapping.will_need(from..to);
            }
        };
        for position in start..end {
            let (Some(entry), next) = (self.index.get(position), self.index.get(position + 1))
            else {
                break;
            };
            // The key's newest version at or below `lsn` is its last such entry.
            let newest_for_key =
                entry.lsn <= lsn && next.is_none_or(|next| next.key != entry.key || next.lsn > lsn);
            if !newest_for_key || !found.insert(entry.key) {
                continue;
            }
            // A block ends where the next one starts (the last, where the index does).
            let to = next.map_or(self.index_offset as u64, |next| next.offset);
            let from = entry.offset;
            run = match run {
                Some((run_from, run_to)) if from <= run_to + (64 << 10) => Some((run_from, to)),
                Some((run_from, run_to)) => {
                    will_need(run_from, run_to);
                    Some((from, to))
                }
                None => Some((from, to)),
            };
        }
        if let Some((from, to)) = run {
            will_need(from, to);
        }
    }

    /// Asks the kernel to read every block of versions of keys in `first..=last`, all of
    /// them: a page rebuilt from patches needs the older ones too. One span per file.
    pub(crate) fn prefetch_all_versions(&self, first: Key, last: Key, lsn: Lsn) {
        self.with_index_span(first, last, lsn, |mapping, start, end| {
            let Some(from) = self.index.get(start).map(|entry| entry.offset) else {
                return;
            };
            // The span ends where the next key's first block starts, or where the index
            // does.
            let to = self
                .index
                .get(end)
                .map_or(self.index_offset as u64, |next| next.offset);
            if let (Ok(from), Ok(to)) = (usize::try_from(from), usize::try_from(to))
                && from < to
            {
                mapping.will_need(from..to);
            }
        });
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

    /// Every version, in (key, LSN) order, each block checked, read through positioned
    /// file reads of 1 MiB (direct where the file system allows) rather than the mapping:
    /// compaction streams whole layers through this, and pages read once should neither
    /// stay resident in the process (they would count in its RSS for as long as the
    /// layer stays mapped) nor take page-cache memory.
    pub(crate) fn read_sequentially(self: &Arc<Self>) -> Result<SequentialVersions> {
        let file = self.open_local()?;
        let reader = ChunkReader::new(file, self.index_offset as u64, self.size)
            .map_err(EngineError::io("read layer", &self.path))?;
        Ok(SequentialVersions {
            layer: Arc::clone(self),
            reader,
            next: 0,
        })
    }

    /// The local file open for reading front to back (direct where the file system
    /// allows), read back first if evicted (an eviction right after is harmless: an open
    /// file outlives its name).
    fn open_local(&self) -> Result<Box<dyn FsFile>> {
        let mut attempts = 0;
        loop {
            self.bytes()?;
            match self.fs.open_read_direct(&self.path) {
                Ok(file) => return Ok(file),
                Err(error)
                    if error.kind() == std::io::ErrorKind::NotFound
                        && self.cached.is_some()
                        && attempts < 3 =>
                {
                    attempts += 1;
                }
                Err(error) => return Err(EngineError::io("open layer", &self.path)(error)),
            }
        }
    }

    /// Every version, in (key, LSN) order, each block checked.
    pub fn versions(&self) -> Result<Vec<(Key, Lsn, Update)>> {
        let bytes = self.bytes()?;
        self.index
            .iter()
            .map(|entry| Ok((entry.key, entry.lsn, self.decode(&bytes, entry)?)))
            .collect()
    }

    /// The CRC32 of the whole file.
    pub fn checksum(&self) -> Result<u32> {
        Ok(crc32fast::hash(&self.bytes()?))
    }
}

impl Drop for LayerFile {
    fn drop(&mut self) {
        if let Some(cached) = &self.cached
            && self.data.get_mut().is_some()
        {
            cached.cache.remove_resident(self.size);
        }
    }
}

/// The versions of a layer in (key, LSN) order, read in large positioned reads (see
/// `LayerFile::read_sequentially`).
#[derive(Debug)]
pub(crate) struct SequentialVersions {
    layer: Arc<LayerFile>,
    reader: ChunkReader,
    /// Index of the next entry.
    next: usize,
}

/// Reads a file's data section front to back in large positioned reads, direct where
/// the file system allows it (a layer is read whole once, by the compaction that replaces
/// it: its pages need not take memory in the page cache).
#[derive(Debug)]
struct ChunkReader {
    file: Box<dyn FsFile>,
    /// Where the readable part ends (the layer's index starts there).
    end: u64,
    /// The file's size: reads are rounded to whole aligned blocks up to there.
    size: u64,
    buffer: AlignedBuffer,
    /// How many bytes of `buffer` hold the file's bytes from `buffer_start`.
    buffered: usize,
    /// File offset of `buffer[0]`.
    buffer_start: u64,
}

impl ChunkReader {
    const CHUNK: usize = 1 << 20;

    fn new(file: Box<dyn FsFile>, end: u64, size: u64) -> std::io::Result<ChunkReader> {
        Ok(ChunkReader {
            file,
            end,
            size,
            buffer: AlignedBuffer::new(Self::CHUNK)?,
            buffered: 0,
            buffer_start: 0,
        })
    }

    /// Fills `out` with the bytes at `offset` (all before `end`).
    fn read_exact_at(&mut self, out: &mut [u8], offset: u64) -> std::io::Result<()> {
        let wanted_end = offset + out.len() as u64;
        let buffered_end = self.buffer_start + self.buffered as u64;
        if offset < self.buffer_start || wanted_end > buffered_end {
            if wanted_end > self.end || self.end > self.size {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "read past the layer's data",
                ));
            }
            // From the aligned block holding `offset`, a whole buffer (grown for a block
            // larger than it), or up to the file's end.
            let start = offset - offset % DIRECT_IO_ALIGNMENT as u64;
            let needed = (wanted_end - start) as usize;
            if needed > self.buffer.len() {
                self.buffer = AlignedBuffer::new(needed.next_multiple_of(DIRECT_IO_ALIGNMENT))?;
            }
            let len = (self.buffer.len() as u64).min(self.size - start) as usize;
            let target = self
                .buffer
                .get_mut(..len)
                .ok_or_else(|| std::io::Error::other("layer read buffer out of range"))?;
            self.file.read_exact_at(target, start)?;
            self.buffer_start = start;
            self.buffered = len;
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
