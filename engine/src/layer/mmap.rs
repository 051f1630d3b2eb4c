//! The only `unsafe` in the engine: mapping a published layer file read-only.
//!
//! # Why mapping is sound here
//!
//! `memmap2::Mmap::map` is unsafe because the mapped bytes must not change (and the file
//! must not shrink) while references into them are alive. Layer files guarantee that:
//!
//! - A layer is written whole under a temporary name, fsynced and renamed into place
//!   (`publish_file`); only published layers are mapped, and nothing ever opens a published
//!   layer for writing again: layers are immutable, and compaction and GC only add new files
//!   and remove old ones.
//! - Removal is by unlinking, which keeps an existing mapping valid until the last `Bytes`
//!   slice into it is dropped; no code path truncates a layer.
//! - The store's directory belongs to one open store at a time (its WAL holds a lock).
//!
//! Another program editing the file behind the store's back is outside what any mapped
//! reader can promise; even then every block is checked against its CRC32 before use.

#![allow(unsafe_code)]

use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{Advice, Mmap, UncheckedAdvice};

/// A published layer file mapped read-only.
#[derive(Debug, Clone)]
pub(crate) struct LayerMapping {
    map: Option<Arc<Mmap>>,
}

/// Lets `Bytes` share the mapping.
struct SharedMap(Arc<Mmap>);

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl LayerMapping {
    /// Maps a published layer file read-only.
    pub(crate) fn new(file: &File) -> std::io::Result<LayerMapping> {
        if file.metadata()?.len() == 0 {
            // An empty file cannot be mapped; it is damaged anyway and the caller says so.
            return Ok(LayerMapping { map: None });
        }
        // SAFETY: `file` is a published layer: see the module documentation for why its
        // bytes do not change and it is not truncated while this mapping is alive.
        let map = unsafe { Mmap::map(file) }?;
        // Reads pick single pages out of a layer: without this hint the kernel maps whole
        // read-ahead windows, which count in the process's RSS while the layer is mapped.
        map.advise(Advice::Random)?;
        Ok(LayerMapping {
            map: Some(Arc::new(map)),
        })
    }

    /// The whole file, as zero-copy `Bytes`.
    pub(crate) fn bytes(&self) -> Bytes {
        self.map.as_ref().map_or_else(Bytes::new, |map| {
            Bytes::from_owner(SharedMap(Arc::clone(map)))
        })
    }

    /// Drops the mapping's resident pages from the process (they stay in the kernel's page
    /// cache, and the next read maps them again), so pages read once, such as the index
    /// on open, do not count in the process's RSS for as long as the layer is open.
    pub(crate) fn release_resident_pages(&self) {
        if let Some(map) = &self.map {
            // SAFETY: the mapping is shared and read-only, of a file nobody modifies (see
            // the module documentation): after MADV_DONTNEED the next access faults the
            // same bytes back in from the file, so every live slice keeps reading exactly
            // what it read before. The hint's danger is for private or writable mappings,
            // whose modified pages it would discard; this mapping has none.
            if let Err(error) = unsafe { map.unchecked_advise(UncheckedAdvice::DontNeed) } {
                tracing::debug!(%error, "madvise(DONTNEED) on a layer mapping failed");
            }
        }
    }
}
