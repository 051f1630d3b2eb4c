//! The local layer cache of a store whose layer files are also kept elsewhere (remote
//! storage): which layer files are on local disk, evicting the least recently used ones
//! under a byte budget, and the [`LayerSource`] evicted ones come back from.
//!
//! Invariants it keeps:
//! - Only a layer its source holds (`LayerSource::holds`, asked at eviction time) is
//!   evicted, so every evicted layer can be read back.
//! - An evicted layer leaves a marker file `NAME.evicted` (size and CRC32 of the layer and
//!   its outline: header, index and footer; checksummed), published before the layer file
//!   is removed: the name stays taken until the catalog drops the layer, and opening the
//!   store knows the layer is evicted rather than lost, and opens it with no request to
//!   the source. The marker is removed only after a downloaded copy is published.
//! - Room is made before a download (`make_room`), and the resident bytes count the
//!   download from then on, so with every resident layer uploaded the cache exceeds its
//!   budget by at most the layers being downloaded at that moment (one per reading
//!   thread).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use bytes::{BufMut, Bytes};
use parking_lot::Mutex;

use super::LayerFile;
use super::format::{FOOTER_LEN, HEADER_LEN, decode_footer, decode_outline};
use crate::error::{EngineError, Result};
use crate::fs::{FileSystem, publish_file};

/// Where evicted layer files are read back from. Implemented by `pagefork-remote` over an
/// object store; a test can implement it over anything. Errors are messages naming what
/// failed (the object, the offset): the engine wraps them in [`EngineError::LayerFetch`].
pub trait LayerSource: Send + Sync + fmt::Debug {
    /// Whether the layer `name` whose whole file has CRC32 `checksum` can be read back.
    /// Only such layers are evicted.
    fn holds(&self, name: &str, checksum: u32) -> bool;

    /// The whole layer file. The engine checks its size and CRC32 against the catalog's
    /// before using a byte of it.
    fn read_all(&self, name: &str, checksum: u32) -> std::result::Result<Bytes, String>;
}

/// A store's layer cache settings (`Config::layer_cache`).
#[derive(Clone, Debug)]
pub struct LayerCacheConfig {
    /// Where evicted layers come back from.
    pub source: Arc<dyn LayerSource>,
    /// Bytes of layer files the store keeps on local disk; `None`: evict nothing on its
    /// own (layers already evicted are still read back, and `Store::evict_layers_to`
    /// evicts on request).
    pub budget_bytes: Option<u64>,
}

/// What the layer cache holds and has done since the store opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayerCacheStats {
    /// The budget, if any.
    pub budget_bytes: Option<u64>,
    /// Bytes of layer files on local disk (and being downloaded).
    pub resident_bytes: u64,
    /// Layer files on local disk.
    pub resident_layers: u64,
    /// Layers evicted (only in the source).
    pub evicted_layers: u64,
    /// Layer files downloaded since the store opened, and their bytes.
    pub downloads: u64,
    /// Bytes downloaded.
    pub downloaded_bytes: u64,
    /// Layer files evicted since the store opened.
    pub evictions: u64,
}

/// The cache of one store: shared by the store and each of its layer files.
pub(crate) struct LayerCache {
    pub(crate) source: Arc<dyn LayerSource>,
    budget: Option<u64>,
    /// Resident layer bytes, downloads in progress included.
    resident_bytes: AtomicU64,
    downloads: AtomicU64,
    downloaded_bytes: AtomicU64,
    evictions: AtomicU64,
    /// Every layer file of the store opened with this cache (dead ones pruned on walks).
    layers: Mutex<Vec<Weak<LayerFile>>>,
    /// One eviction walk at a time.
    evicting: Mutex<()>,
}

impl fmt::Debug for LayerCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayerCache")
            .field("budget", &self.budget)
            .field(
                "resident_bytes",
                &self.resident_bytes.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

impl LayerCache {
    pub(crate) fn new(config: &LayerCacheConfig) -> Arc<LayerCache> {
        Arc::new(LayerCache {
            source: Arc::clone(&config.source),
            budget: config.budget_bytes,
            resident_bytes: AtomicU64::new(0),
            downloads: AtomicU64::new(0),
            downloaded_bytes: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            layers: Mutex::new(Vec::new()),
            evicting: Mutex::new(()),
        })
    }

    /// Starts tracking `layer` (opened with this cache). Layers dropped since are pruned
    /// now and then, so the list stays proportional to the live ones.
    pub(crate) fn register(&self, layer: &Arc<LayerFile>) {
        let mut layers = self.layers.lock();
        if layers.len() >= 64 && layers.len().is_power_of_two() {
            layers.retain(|layer| layer.strong_count() > 0);
        }
        layers.push(Arc::downgrade(layer));
    }

    pub(crate) fn add_resident(&self, bytes: u64) {
        self.resident_bytes.fetch_add(bytes, Ordering::SeqCst);
    }

    pub(crate) fn remove_resident(&self, bytes: u64) {
        let _ = self
            .resident_bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_sub(bytes))
            });
    }

    pub(crate) fn note_download(&self, bytes: u64) {
        self.downloads.fetch_add(1, Ordering::Relaxed);
        self.downloaded_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn note_eviction(&self) {
        self.evictions.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether resident layers exceed the budget.
    pub(crate) fn over_budget(&self) -> bool {
        self.budget
            .is_some_and(|budget| self.resident_bytes.load(Ordering::Relaxed) > budget)
    }

    fn live_layers(&self) -> Vec<Arc<LayerFile>> {
        let mut layers = self.layers.lock();
        layers.retain(|layer| layer.strong_count() > 0);
        layers.iter().filter_map(Weak::upgrade).collect()
    }

    /// Before a download of `incoming` bytes: evicts least recently used layers until the
    /// download fits the budget (nothing without one).
    pub(crate) fn make_room(&self, incoming: u64, downloading: &LayerFile) -> Result<()> {
        if let Some(budget) = self.budget {
            self.evict_down_to(budget.saturating_sub(incoming), Some(downloading))?;
        }
        Ok(())
    }

    /// Evicts least recently used layers the source holds until resident bytes are at most
    /// `target` or nothing more can go (layers not uploaded yet, layers busy downloading
    /// or evicting). Returns how many were evicted.
    pub(crate) fn evict_down_to(&self, target: u64, skip: Option<&LayerFile>) -> Result<u64> {
        if self.resident_bytes.load(Ordering::SeqCst) <= target {
            return Ok(0);
        }
        let _walk = self.evicting.lock();
        let mut candidates: Vec<(u64, Arc<LayerFile>)> = self
            .live_layers()
            .into_iter()
            .filter(|layer| skip.is_none_or(|skip| !std::ptr::eq(Arc::as_ptr(layer), skip)))
            .filter_map(|layer| layer.last_used_if_resident().map(|used| (used, layer)))
            .collect();
        candidates.sort_by_key(|(used, _)| *used);
        let mut evicted = 0;
        for (_, layer) in candidates {
            if self.resident_bytes.load(Ordering::SeqCst) <= target {
                break;
            }
            if layer.try_evict()? {
                evicted += 1;
            }
        }
        Ok(evicted)
    }

    pub(crate) fn stats(&self) -> LayerCacheStats {
        let mut stats = LayerCacheStats {
            budget_bytes: self.budget,
            resident_bytes: self.resident_bytes.load(Ordering::SeqCst),
            downloads: self.downloads.load(Ordering::Relaxed),
            downloaded_bytes: self.downloaded_bytes.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            ..LayerCacheStats::default()
        };
        for layer in self.live_layers() {
            if layer.is_resident() {
                stats.resident_layers += 1;
            } else {
                stats.evicted_layers += 1;
            }
        }
        stats
    }
}

/// Microseconds since the first use in this process: when a layer was last read.
pub(crate) fn now_micros() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

const MARKER_MAGIC: [u8; 8] = *b"PFEVICT\0";
const MARKER_VERSION: u32 = 1;
/// Magic, version, layer size, layer CRC32, outline length.
const MARKER_HEADER_LEN: usize = 28;

/// The marker file of an evicted layer at `layer_path`: `NAME.evicted`.
pub fn marker_path(layer_path: &Path) -> PathBuf {
    let mut name = layer_path.file_name().unwrap_or_default().to_os_string();
    name.push(".evicted");
    layer_path.with_file_name(name)
}

/// The marker's bytes: what opening the store needs of an evicted layer, so it opens with
/// no request to the source.
/// ```text
///  0 8 magic "PFEVICT\0"   8 4 format version (1)   12 8 layer size
/// 20 4 layer CRC32        24 4 outline length n
/// 28 n the layer's outline: its header, then everything from its index to its end
/// 28+n 4 CRC32 of bytes 0..28+n
/// ```
/// A store copied elsewhere can be rebuilt with its layers evicted by writing these
/// markers instead of the layer files (`pagefork attach --lazy`; `read_outline` reads an
/// outline from a copy).
pub fn encode_marker(size: u64, checksum: u32, outline: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MARKER_HEADER_LEN + outline.len() + 4);
    out.put_slice(&MARKER_MAGIC);
    out.put_u32_le(MARKER_VERSION);
    out.put_u64_le(size);
    out.put_u32_le(checksum);
    out.put_u32_le(u32::try_from(outline.len()).unwrap_or(u32::MAX));
    out.put_slice(outline);
    let crc = crc32fast::hash(&out);
    out.put_u32_le(crc);
    out
}

/// How much of a layer's end `read_outline` asks for first: the footer and, for a layer of
/// up to about 10,000 page versions, its whole index.
const OUTLINE_TAIL_GUESS: u64 = 256 * 1024;

/// A layer's outline (its header, then its index and footer), checked, read from a copy of
/// the layer of `size` bytes through `read` (bytes of a range): its last 256 KiB (the
/// footer, and usually the whole index), the rest of the index if it is longer, and the
/// header: two requests for most layers, one for a small one. Errors name the offset.
pub fn read_outline(
    size: u64,
    read: &mut dyn FnMut(Range<u64>) -> std::result::Result<Bytes, String>,
) -> std::result::Result<Vec<u8>, String> {
    if size < (HEADER_LEN + FOOTER_LEN) as u64 {
        return Err(format!(
            "{size} bytes is shorter than a layer's header and footer"
        ));
    }
    let at =
        |error: super::format::FormatError| format!("offset {}: {}", error.offset, error.reason);
    let suffix_start = size - size.min(OUTLINE_TAIL_GUESS);
    let suffix = read(suffix_start..size)?;
    if suffix.len() as u64 != size - suffix_start {
        return Err(format!(
            "{} bytes came back for bytes {suffix_start}..{size}",
            suffix.len()
        ));
    }
    let footer_at = suffix.len().saturating_sub(FOOTER_LEN);
    let footer = decode_footer(suffix.get(footer_at..).unwrap_or_default(), size).map_err(at)?;
    let tail = match footer.index_offset.checked_sub(suffix_start) {
        Some(skip) => suffix.slice(skip as usize..),
        None => read(footer.index_offset..size)?,
    };
    let header = if suffix_start == 0 {
        suffix.slice(..HEADER_LEN)
    } else {
        read(0..HEADER_LEN as u64)?
    };
    let mut outline = header.to_vec();
    outline.extend_from_slice(&tail);
    decode_outline(&outline, size).map_err(at)?;
    Ok(outline)
}

/// Publishes the marker of an evicted layer (crash-safely, before the layer is removed).
pub(crate) fn write_marker(
    fs: &dyn FileSystem,
    layer_path: &Path,
    size: u64,
    checksum: u32,
    outline: &[u8],
) -> Result<()> {
    let path = marker_path(layer_path);
    publish_file(fs, &path, &encode_marker(size, checksum, outline))
        .map_err(EngineError::io("publish eviction marker", &path))
}

/// The outline the marker of the layer at `layer_path` holds, if there is a marker; checks
/// that it is for a layer of `size` bytes with CRC32 `checksum`.
pub(crate) fn read_marker(
    fs: &dyn FileSystem,
    layer_path: &Path,
    size: u64,
    checksum: u32,
) -> Result<Option<Vec<u8>>> {
    let path = marker_path(layer_path);
    if !fs.exists(&path).map_err(EngineError::io("stat", &path))? {
        return Ok(None);
    }
    let bytes = fs.read(&path).map_err(EngineError::io("read", &path))?;
    let corrupt = |offset: usize, reason: String| EngineError::CorruptFile {
        path: path.clone(),
        offset: offset as u64,
        reason,
    };
    if bytes.len() < MARKER_HEADER_LEN + 4 || bytes.get(..8) != Some(&MARKER_MAGIC[..]) {
        return Err(corrupt(0, "not an eviction marker".to_owned()));
    }
    let crc_at = bytes.len() - 4;
    let crc = crc32fast::hash(bytes.get(..crc_at).unwrap_or_default());
    if bytes.get(crc_at..) != Some(&crc.to_le_bytes()[..]) {
        return Err(corrupt(
            crc_at,
            "eviction marker checksum mismatch".to_owned(),
        ));
    }
    let field = |at: usize, len: usize| bytes.get(at..at + len).unwrap_or_default();
    if field(8, 4) != MARKER_VERSION.to_le_bytes() {
        return Err(corrupt(8, "unsupported eviction marker version".to_owned()));
    }
    if field(12, 8) != size.to_le_bytes() || field(20, 4) != checksum.to_le_bytes() {
        return Err(corrupt(
            12,
            format!(
                "the marker is for another layer than the catalog's ({size} bytes, CRC32 {checksum:08x})"
            ),
        ));
    }
    let outline_len = u32::from_le_bytes(field(24, 4).try_into().unwrap_or_default()) as usize;
    if MARKER_HEADER_LEN + outline_len != crc_at {
        return Err(corrupt(
            24,
            format!("an outline of {outline_len} bytes does not fit the marker"),
        ));
    }
    Ok(Some(field(MARKER_HEADER_LEN, outline_len).to_vec()))
}

#[cfg(test)]
mod tests {
    use pagefork_wal::Lsn;

    use super::*;
    use crate::branch::BranchId;
    use crate::key::Key;
    use crate::layer::{LayerKind, LayerRange, format};
    use crate::update::Update;

    /// A delta layer of `count` patches of `len` bytes, and its outline cut from it whole.
    fn layer_of(count: u32, len: usize) -> (Vec<u8>, Vec<u8>) {
        let versions: Vec<_> = (0..count)
            .map(|block| {
                let update = Update::Patch {
                    offset: 0,
                    bytes: Bytes::from(vec![b'x'; len]),
                };
                (Key::new(1, block), Lsn(100), update)
            })
            .collect();
        let range = LayerRange {
            kind: LayerKind::Delta,
            branch: BranchId(1),
            key_start: Key::new(1, 0),
            key_last: Key::new(1, count - 1),
            lsn_start: Lsn(100),
            lsn_end: Lsn(101),
        };
        let bytes = super::super::encode::encode(&range, &versions);
        let index_offset = format::index_offset(&bytes);
        let mut outline = bytes[..HEADER_LEN].to_vec();
        outline.extend_from_slice(&bytes[index_offset..]);
        (bytes, outline)
    }

    fn layer(count: u32) -> (Vec<u8>, Vec<u8>) {
        layer_of(count, 1)
    }

    fn outline_and_requests(bytes: &[u8]) -> (std::result::Result<Vec<u8>, String>, usize) {
        let mut requests = 0;
        let mut read = |range: Range<u64>| {
            requests += 1;
            Ok(Bytes::copy_from_slice(
                &bytes[range.start as usize..range.end as usize],
            ))
        };
        let outline = read_outline(bytes.len() as u64, &mut read);
        (outline, requests)
    }

    #[test]
    fn an_outline_takes_one_request_for_a_small_layer_two_for_a_large_one_three_for_a_long_index() {
        let (small, expected) = layer(100);
        assert_eq!(outline_and_requests(&small), (Ok(expected), 1));
        // A large layer whose index fits the first read: that read and the header.
        let (large, expected) = layer_of(100, 4096);
        assert!(large.len() as u64 > OUTLINE_TAIL_GUESS);
        assert_eq!(outline_and_requests(&large), (Ok(expected), 2));
        let (mid, expected) = layer(12_000);
        assert!(mid.len() as u64 > OUTLINE_TAIL_GUESS);
        let (outline, requests) = outline_and_requests(&mid);
        assert_eq!(outline, Ok(expected));
        // 12,000 index entries (288,000 bytes) do not fit the first 256 KiB read.
        assert_eq!(requests, 3);
    }

    #[test]
    fn a_damaged_outline_is_an_error_naming_the_offset() {
        let (mut bytes, _) = layer(100);
        let index_offset = format::index_offset(&bytes);
        bytes[index_offset + 10] ^= 1;
        let (outline, _) = outline_and_requests(&bytes);
        let error = outline.unwrap_err();
        assert!(error.contains("index checksum"), "{error}");
        assert!(error.starts_with("offset "), "{error}");
    }

    #[test]
    fn a_marker_round_trips_and_names_its_damage() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let fs = crate::fs::StdFileSystem;
        let path = dir.path().join("layer.l0");
        let (bytes, outline) = layer(10);
        let checksum = crc32fast::hash(&bytes);
        write_marker(&fs, &path, bytes.len() as u64, checksum, &outline).expect("written");
        let read = read_marker(&fs, &path, bytes.len() as u64, checksum).expect("read");
        assert_eq!(read, Some(outline));
        let other = read_marker(&fs, &path, bytes.len() as u64, checksum ^ 1);
        assert!(matches!(
            other,
            Err(EngineError::CorruptFile { offset: 12, .. })
        ));
        assert_eq!(
            read_marker(&fs, &dir.path().join("none"), 1, 1).expect("no marker"),
            None
        );
    }
}
