//! Configuration of a log: segment size, durability and recovery policy.

use std::time::Duration;

use crate::error::{Result, WalError};
use crate::format::{MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE};

/// Default segment size: 16 MiB, as Postgres.
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

/// When an append is acknowledged relative to fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Every append returns only after its record is fsynced. Appenders that arrive while
    /// an fsync is running share the next one, but nobody waits for company.
    Always,
    /// Group commit: the appender that leads a flush lingers up to `max_delay` so more
    /// appenders can join its fsync, then fsyncs once for all of them. Every append still
    /// returns only after its record is fsynced.
    Group {
        /// How long a flush leader waits for more records before it fsyncs.
        max_delay: Duration,
    },
    /// **Unsafe for data you care about.** Appends are written to the operating system
    /// before they return (so they survive the process being killed) but never fsynced, so
    /// a power loss or kernel crash can lose any of them. For tests and benchmarks.
    Never,
}

/// What `open` does when it finds a bad record followed by valid ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Refuse to open, naming the segment, offset and LSN of the damage. The default.
    #[default]
    Strict,
    /// Keep the log up to the last good record before the damage and discard everything
    /// after it, like RocksDB's `kPointInTimeRecovery`. Never silent: the recovery report
    /// says what was discarded and a warning is logged.
    SalvageToLastGood,
}

/// How to create or open a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalConfig {
    /// Segment size in bytes: a power of two from 4 KiB to 1 GiB. Used when the log is
    /// created; `open` uses the size recorded in the existing segments.
    pub segment_size: u64,
    /// Durability of appends.
    pub sync_mode: SyncMode,
    /// Policy for corruption found by `open`.
    pub recovery_mode: RecoveryMode,
}

impl Default for WalConfig {
    fn default() -> WalConfig {
        WalConfig {
            segment_size: DEFAULT_SEGMENT_SIZE,
            sync_mode: SyncMode::Always,
            recovery_mode: RecoveryMode::Strict,
        }
    }
}

impl WalConfig {
    pub(crate) fn validate_segment_size(segment_size: u64) -> Result<()> {
        if !segment_size.is_power_of_two()
            || !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment_size)
        {
            return Err(WalError::InvalidConfig(format!(
                "segment size {segment_size} must be a power of two from {MIN_SEGMENT_SIZE} to {MAX_SEGMENT_SIZE} bytes"
            )));
        }
        Ok(())
    }
}
