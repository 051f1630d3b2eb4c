//! The only `unsafe` in the log: mapping a sealed segment file read-only.
//!
//! # Why mapping is sound here
//!
//! `memmap2::Mmap::map` is unsafe because the mapped bytes must not change while any
//! reference into them is alive, or Rust's aliasing rules break (and the file must not be
//! truncated, or touching the map faults). The log only maps *sealed* segments, and for a
//! sealed segment that holds:
//!
//! - Every byte of it has already been written, and the writer only writes at positions at
//!   or past the written end of the log, which lies in a later segment, so this process
//!   never writes to a sealed segment again. Recovery, the one other writer (it zeroes a
//!   torn tail), runs inside `open` before any reader or mapping exists.
//! - No other process writes to it: the log holds an exclusive lock on its directory for
//!   as long as it is open.
//! - Segments are removed by unlinking, never by truncating, and unlinking keeps the pages
//!   of an existing mapping valid until the last `Bytes` slice into it is dropped.
//!
//! What it cannot defend against is another program ignoring the lock and editing the file;
//! that is outside what any memory-mapped reader can promise, and every record read through
//! the map is still checked against its CRC before it is returned.

#![allow(unsafe_code)]

use std::fs::File;
use std::path::Path;

use bytes::Bytes;

use crate::error::{Result, WalError};

/// Maps a sealed segment file read-only and returns its bytes. Slices of the result share
/// the one mapping, which is unmapped when the last of them is dropped.
pub(crate) fn map_read_only(file: &File, path: &Path) -> Result<Bytes> {
    // SAFETY: `file` is a sealed segment: see the module documentation for why its bytes
    // do not change and it is not truncated while this mapping is alive.
    let map = unsafe { memmap2::Mmap::map(file) }.map_err(WalError::io("mmap segment", path))?;
    Ok(Bytes::from_owner(map))
}
