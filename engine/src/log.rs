//! `Log`: where the store's records go: the WAL for stores on disk, or a counter that
//! hands out the same kind of LSNs for in-memory stores (same semantics, no files).

use pagefork_wal::{DEFAULT_SEGMENT_SIZE, Lsn, Wal, WalError, layout};
use parking_lot::Mutex;

use crate::error::Result;

/// The first LSN a log hands out, as the WAL does (its first segment header is 40 bytes).
const FIRST_RECORD_START: Lsn = Lsn(layout::SEGMENT_HEADER_LEN);

#[derive(Debug)]
pub(crate) enum Log {
    Wal(Wal),
    /// In-memory: the start of the next record.
    Memory(Mutex<Lsn>),
}

impl Log {
    pub(crate) fn memory() -> Log {
        Log::Memory(Mutex::new(FIRST_RECORD_START))
    }

    /// The largest record payload accepted (the in-memory log refuses what a default WAL
    /// would).
    pub(crate) fn max_payload_len(&self) -> u64 {
        match self {
            Log::Wal(wal) => wal.max_payload_len(),
            Log::Memory(_) => {
                DEFAULT_SEGMENT_SIZE - layout::SEGMENT_HEADER_LEN - layout::FRAME_HEADER_LEN
            }
        }
    }

    /// Fixes the position in the log of a record of `len` payload bytes, which
    /// `write_payload` appends in place (see `Wal::append_deferred_in_place`), and returns
    /// its LSN (its end), without waiting for durability.
    pub(crate) fn append_deferred_in_place(
        &self,
        kind: u8,
        len: usize,
        write_payload: impl FnOnce(&mut Vec<u8>),
    ) -> Result<Lsn> {
        match self {
            Log::Wal(wal) => Ok(wal
                .append_deferred_in_place(kind, len as u64, write_payload)?
                .1),
            Log::Memory(next) => {
                let max = self.max_payload_len();
                if len as u64 > max {
                    return Err(WalError::RecordTooLarge {
                        len: len as u64,
                        max,
                        segment_size: DEFAULT_SEGMENT_SIZE,
                    }
                    .into());
                }
                let mut next = next.lock();
                let end = Lsn(next.0 + layout::record_len(len as u64));
                *next = end;
                Ok(end)
            }
        }
    }

    /// Writes records appended and not yet written once enough of them are pending (see
    /// `Wal::write_behind`); nothing in memory. Outside every store lock: it does I/O.
    pub(crate) fn write_behind(&self) -> Result<()> {
        match self {
            Log::Wal(wal) => Ok(wal.write_behind()?),
            Log::Memory(_) => Ok(()),
        }
    }

    /// The end of the last record written to the log's files (an LSN is a byte
    /// position): every byte the store wrote there lies below it. Records appended and
    /// still queued (deferred commits') may lie above it: `appended_end` covers them.
    pub(crate) fn end(&self) -> Lsn {
        match self {
            Log::Wal(wal) => wal.written_lsn(),
            Log::Memory(next) => *next.lock(),
        }
    }

    /// The end of the last record appended: given its position, whether written to the
    /// log's files yet or still queued (a deferred commit's).
    pub(crate) fn appended_end(&self) -> Lsn {
        match self {
            Log::Wal(wal) => wal.appended_lsn(),
            Log::Memory(next) => *next.lock(),
        }
    }

    /// What the WAL did since it was opened (nothing, in memory).
    pub(crate) fn stats(&self) -> pagefork_wal::WalStats {
        match self {
            Log::Wal(wal) => wal.stats(),
            Log::Memory(_) => pagefork_wal::WalStats::default(),
        }
    }

    /// Returns once the record ending at `end` is as durable as the store promises.
    pub(crate) fn flush_to(&self, end: Lsn) -> Result<()> {
        match self {
            Log::Wal(wal) => Ok(wal.flush_to(end)?),
            Log::Memory(_) => Ok(()),
        }
    }

    /// Returns once the record ending at `end` is written to the operating system (it
    /// outlives the process, not a power cut); nothing to do in memory.
    pub(crate) fn write_to(&self, end: Lsn) -> Result<()> {
        match self {
            Log::Wal(wal) => Ok(wal.write_to(end)?),
            Log::Memory(_) => Ok(()),
        }
    }
}
