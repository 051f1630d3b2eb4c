//! pagefork-wal: the write-ahead log every pagefork write goes through.
//!
//! A log is a directory of fixed-size segment files named by their start LSN. Records are
//! opaque payloads with a one-byte kind chosen by the caller, framed with CRC32 checksums
//! that also bind each frame to its position and to the log (so stale bytes from an earlier
//! use of the file space are never replayed), 8-byte aligned, and never split across
//! segments. The byte layout is documented in the `format` module and in the README.
//!
//! Guarantees:
//! - `append` returns strictly increasing LSNs to any number of concurrent threads.
//! - With [`SyncMode::Always`] or [`SyncMode::Group`] an acknowledged record survives a
//!   crash; concurrent appenders share fsyncs (group commit).
//! - `open` recovers: a torn or zeroed tail is cut off and reported, and so are records a
//!   power cut kept after a lost, never-fsynced one (each frame records how far the log
//!   was fsynced when it was written); a damaged record that a later frame proves was
//!   fsynced is corruption and `open` refuses, naming segment, offset and LSN.
//! - Every byte read back is checked against its CRC; damage is an error, never data.
//! - After a failed write or fsync the log is poisoned and refuses appends until reopened.
//!
//! ```
//! use pagefork_wal::{Wal, WalConfig, SyncMode};
//! # fn main() -> Result<(), pagefork_wal::WalError> {
//! let dir = tempfile::tempdir().expect("temp dir");
//! let wal = Wal::create(dir.path(), WalConfig { sync_mode: SyncMode::Always, ..WalConfig::default() })?;
//! let (start, end) = wal.append(7, b"hello")?;
//! drop(wal);
//! let (wal, report) = Wal::open(dir.path(), WalConfig::default())?;
//! assert_eq!(report.end, end);
//! let record = wal.read_from(start)?.next().expect("one record")?;
//! assert_eq!((record.kind, &record.payload[..]), (7, &b"hello"[..]));
//! # Ok(()) }
//! ```

#![cfg_attr(test, allow(clippy::indexing_slicing, clippy::unwrap_used))]

mod config;
mod error;
mod format;
pub mod fs;
mod log;
mod lsn;
mod reader;
mod recovery;
mod segment;
pub mod sim;

pub use config::{DEFAULT_SEGMENT_SIZE, RecoveryMode, SyncMode, WalConfig};
pub use error::{Result, WalError};
pub use log::{SegmentFile, WRITE_BEHIND_BYTES, Wal, WalStats};
pub use lsn::{Lsn, ParseLsnError};
pub use reader::{WalReader, WalRecord};
pub use recovery::{DroppedTail, RecoveryReport};

/// Byte layout constants, for tools and tests that inspect or damage log files on purpose.
pub mod layout {
    pub use crate::format::{
        FORMAT_VERSION, FRAME_ALIGNMENT, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN,
    };

    /// The file name of the segment starting at `start`.
    pub fn segment_file_name(start: crate::Lsn) -> String {
        crate::segment::segment_file_name(start)
    }

    /// Bytes a record with a payload of `payload_len` bytes occupies in the log.
    pub fn record_len(payload_len: u64) -> u64 {
        crate::format::frame_len(payload_len)
    }
}
