//! The local layer cache of a store whose layer files are also kept elsewhere (remote
//! storage): which layer files are on local disk, evicting the least recently used ones
//! under a byte budget, and the [`LayerSource`] evicted ones come back from.
//!
//! Invariants it keeps:
//! - Only a layer its source holds (`LayerSource::holds`, asked at eviction time) is
//!   evicted, so every evicted layer can be read back.
//! - An evicted layer leaves a marker file `NAME.evicted` (size and CRC32 of the layer,
//!   checksummed), published before the layer file is removed: the name stays taken until
//!   the catalog drops the layer, and opening the store knows the layer is evicted rather
//!   than lost. The marker is removed only after a downloaded copy is published.
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
use crate::error::{EngineError, Result};
use crate::fs::{FileSystem, publish_file};

/// Where evicted layer files are read back from. Implemented by `pagefork-remote` over an
/// object store; a test can implement it over anything. Errors are messages naming what
/// failed (the object, the offset): the engine wraps them in [`EngineError::LayerFetch`].
pub trait LayerSource: Send + Sync + fmt::Debug {
    /// Whether the layer `name` whose whole file has CRC32 `checksum` can be read back.
    /// Only such layers are evicted.
    fn holds(&self, name: &str, checksum: u32) -> bool;

    /// Bytes `range` of the layer (its header, footer and index, read when a store opens
    /// with the layer evicted).
    fn read_range(
        &self,
        name: &str,
        checksum: u32,
        range: Range<u64>,
    ) -> std::result::Result<Bytes, String>;

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

    /// Starts tracking `layer` (opened with this cache).
    pub(crate) fn register(&self, layer: &Arc<LayerFile>) {
        self.layers.lock().push(Arc::downgrade(layer));
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
const MARKER_LEN: usize = 28;

/// The marker file of an evicted layer at `layer_path`: `NAME.evicted`.
pub fn marker_path(layer_path: &Path) -> PathBuf {
    let mut name = layer_path.file_name().unwrap_or_default().to_os_string();
    name.push(".evicted");
    layer_path.with_file_name(name)
}

/// The marker's bytes:
/// ```text
///  0 8 magic "PFEVICT\0"   8 4 format version (1)   12 8 layer size
/// 20 4 layer CRC32        24 4 CRC32 of bytes 0..24
/// ```
///
/// A store copied elsewhere can be rebuilt with its layers evicted by writing these
/// markers instead of the layer files (`pagefork attach --lazy`).
pub fn encode_marker(size: u64, checksum: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(MARKER_LEN);
    out.put_slice(&MARKER_MAGIC);
    out.put_u32_le(MARKER_VERSION);
    out.put_u64_le(size);
    out.put_u32_le(checksum);
    let crc = crc32fast::hash(&out);
    out.put_u32_le(crc);
    out
}

/// Publishes the marker of an evicted layer (crash-safely, before the layer is removed).
pub(crate) fn write_marker(
    fs: &dyn FileSystem,
    layer_path: &Path,
    size: u64,
    checksum: u32,
) -> Result<()> {
    let path = marker_path(layer_path);
    publish_file(fs, &path, &encode_marker(size, checksum))
        .map_err(EngineError::io("publish eviction marker", &path))
}

/// Reads the marker of the layer at `layer_path`, if there is one, and checks that it is
/// for a layer of `size` bytes with CRC32 `checksum`.
pub(crate) fn check_marker(
    fs: &dyn FileSystem,
    layer_path: &Path,
    size: u64,
    checksum: u32,
) -> Result<bool> {
    let path = marker_path(layer_path);
    if !fs.exists(&path).map_err(EngineError::io("stat", &path))? {
        return Ok(false);
    }
    let bytes = fs.read(&path).map_err(EngineError::io("read", &path))?;
    let corrupt = |offset: u64, reason: String| EngineError::CorruptFile {
        path: path.clone(),
        offset,
        reason,
    };
    if bytes.len() != MARKER_LEN || bytes.get(..8) != Some(&MARKER_MAGIC[..]) {
        return Err(corrupt(0, "not an eviction marker".to_owned()));
    }
    let crc = crc32fast::hash(bytes.get(..24).unwrap_or_default());
    if bytes.get(24..28) != Some(&crc.to_le_bytes()[..]) {
        return Err(corrupt(24, "eviction marker checksum mismatch".to_owned()));
    }
    if bytes.get(8..12) != Some(&MARKER_VERSION.to_le_bytes()[..]) {
        return Err(corrupt(8, "unsupported eviction marker version".to_owned()));
    }
    if bytes.get(..) != Some(&encode_marker(size, checksum)[..]) {
        return Err(corrupt(
            12,
            format!(
                "the marker is for another layer than the catalog's ({size} bytes, CRC32 {checksum:08x})"
            ),
        ));
    }
    Ok(true)
}
