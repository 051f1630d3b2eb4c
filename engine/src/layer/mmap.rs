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

use bytes::Bytes;

/// Maps a published layer file read-only.
pub(crate) fn map_layer(file: &File) -> std::io::Result<Bytes> {
    if file.metadata()?.len() == 0 {
        // An empty file cannot be mapped; it is damaged anyway and the caller says so.
        return Ok(Bytes::new());
    }
    // SAFETY: `file` is a published layer: see the module documentation for why its bytes
    // do not change and it is not truncated while this mapping is alive.
    let map = unsafe { memmap2::Mmap::map(file) }?;
    Ok(Bytes::from_owner(map))
}
