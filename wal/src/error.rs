//! `WalError`: every way the log can refuse or fail, each naming what was wrong.

use std::path::PathBuf;

use crate::lsn::Lsn;

/// An error from the write-ahead log. Each variant names the file, offset or LSN involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// An operating-system call failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done, e.g. "fsync".
        operation: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A record payload is larger than this log accepts.
    #[error(
        "record payload of {len} bytes exceeds the maximum of {max} bytes for {segment_size}-byte segments"
    )]
    RecordTooLarge {
        /// The payload length offered.
        len: u64,
        /// The largest payload accepted.
        max: u64,
        /// The log's segment size, which sets the maximum.
        segment_size: u64,
    },

    /// An fsync or write failed earlier; the log refuses all appends until it is reopened.
    #[error("the log is poisoned and refuses appends until reopened: {cause}")]
    Poisoned {
        /// What failed first.
        cause: String,
    },

    /// The directory does not hold a log.
    #[error("no write-ahead log in {dir}: no segment files found")]
    NotFound {
        /// The directory searched.
        dir: PathBuf,
    },

    /// `create` was called on a directory that already holds a log.
    #[error("a write-ahead log already exists in {dir}")]
    AlreadyExists {
        /// The directory.
        dir: PathBuf,
    },

    /// Another `Wal` (in this or another process) has the directory open.
    #[error("the write-ahead log in {dir} is locked by another open log")]
    Locked {
        /// The directory.
        dir: PathBuf,
    },

    /// A configuration value is out of range.
    #[error("invalid WAL configuration: {0}")]
    InvalidConfig(String),

    /// The last segment ends with a segment-end frame, which is written only after the next
    /// segment was created, but the next segment is missing: records from `lost_from` on
    /// are gone (how many cannot be known).
    #[error(
        "WAL segment {path} is missing: {after} ends with a segment-end frame that promises it; records from {lost_from} on are lost (the log kept up to {kept_end})"
    )]
    MissingSegment {
        /// The missing segment's file.
        path: PathBuf,
        /// The segment that promises it.
        after: PathBuf,
        /// The first LSN the missing segment would hold.
        lost_from: Lsn,
        /// The end of the last record the log still holds.
        kept_end: Lsn,
    },

    /// An append to a log opened with `Wal::open_for_recovery_on` before
    /// `Wal::complete_recovery`.
    #[error(
        "the write-ahead log in {dir} is still being recovered: complete the recovery before appending"
    )]
    RecoveryPending {
        /// The log's directory.
        dir: PathBuf,
    },

    /// A segment file's header is damaged or does not belong to this log.
    #[error("WAL segment {path} is damaged at offset {offset}: {problem}")]
    BadSegment {
        /// The segment file.
        path: PathBuf,
        /// Byte offset in the file.
        offset: u64,
        /// What is wrong with it.
        problem: String,
    },

    /// A bad record is followed by a valid record written after the bad one had been
    /// fsynced: the damage is not what a power cut leaves.
    #[error(
        "WAL corrupted in the middle: bad record at LSN {lsn} (segment {path}, offset {offset}), \
         but the valid record at LSN {next_valid} was written after the log was fsynced \
         through {synced_through}"
    )]
    CorruptedInMiddle {
        /// Start LSN of the first bad record.
        lsn: Lsn,
        /// The segment file holding it.
        path: PathBuf,
        /// Byte offset of the bad record in that file.
        offset: u64,
        /// Start LSN of the valid record found after it.
        next_valid: Lsn,
        /// What that record says was durable when it was written: past `lsn`.
        synced_through: Lsn,
    },

    /// A record read back does not match its checksum.
    #[error("WAL record at LSN {lsn} (segment {path}, offset {offset}) fails its checksum")]
    ChecksumMismatch {
        /// Start LSN of the record.
        lsn: Lsn,
        /// The segment file.
        path: PathBuf,
        /// Byte offset in that file.
        offset: u64,
    },

    /// A read asked for an LSN that is not the start of a record.
    #[error("LSN {lsn} is not a record boundary in the WAL")]
    NotRecordBoundary {
        /// The LSN asked for.
        lsn: Lsn,
    },

    /// A read asked for an LSN whose segment has been truncated away.
    #[error("LSN {lsn} was truncated away: the WAL now starts at {oldest}")]
    Truncated {
        /// The LSN asked for.
        lsn: Lsn,
        /// The oldest LSN still in the log.
        oldest: Lsn,
    },

    /// A payload written in place was not as long as announced (a bug in the caller);
    /// nothing was appended.
    #[error(
        "a payload written in place was {written} bytes, not the {len} announced: nothing appended"
    )]
    PayloadLength {
        /// The length announced.
        len: u64,
        /// The bytes written.
        written: u64,
    },

    /// A read asked for an LSN past what has been written.
    #[error("LSN {lsn} is past the end of the WAL at {end}")]
    PastEnd {
        /// The LSN asked for.
        lsn: Lsn,
        /// The end of the written log.
        end: Lsn,
    },
}

impl WalError {
    pub(crate) fn io(
        operation: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> WalError {
        let path = path.into();
        move |source| WalError::Io {
            operation,
            path,
            source,
        }
    }
}

/// Result type of the log.
pub type Result<T, E = WalError> = std::result::Result<T, E>;
