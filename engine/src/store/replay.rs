//! Replay: rebuilding the in-memory state from the WAL on open.
//!
//! Records after the checkpoint (if any) are decoded and applied in log order through
//! `apply`, the same path live operations use. A record that does not decode, or contradicts the history built so far,
//! stops the open with an error naming its LSN: the store never guesses.

use bytes::Bytes;
use pagefork_wal::{Lsn, Wal};

use super::StoreInner;
use crate::error::{EngineError, Result};
use crate::record::Record;

impl StoreInner {
    /// Replays the records ending after `covered` (everything, without a checkpoint).
    pub(super) fn replay(&self, wal: &Wal, covered: Option<Lsn>) -> Result<()> {
        let mut last_time = self.sequencer.lock();
        let mut records = 0u64;
        for record in wal.read_from(wal.oldest_lsn())? {
            let record = record?;
            let lsn = record.end;
            if covered.is_some_and(|covered| lsn <= covered) {
                continue;
            }
            let payload: Bytes = record.payload;
            let (decoded, time) = Record::decode(record.kind, payload)
                .map_err(|reason| EngineError::CorruptRecord { lsn, reason })?;
            if time < *last_time {
                return Err(EngineError::CorruptRecord {
                    lsn,
                    reason: format!("time {time} is before the previous record's {}", *last_time),
                });
            }
            let starts_the_store =
                matches!(&decoded, Record::CreateBranch(create) if create.parent.is_none());
            if covered.is_none() && records == 0 && !starts_the_store {
                return Err(EngineError::CorruptRecord {
                    lsn,
                    reason: "the first record of a store must create its root branch".to_owned(),
                });
            }
            self.apply(decoded, lsn, time)?;
            *last_time = time;
            records += 1;
        }
        if covered.is_none() && records == 0 {
            return Err(EngineError::CorruptRecord {
                lsn: wal.oldest_lsn(),
                reason: "the WAL holds no records: the root branch was never created".to_owned(),
            });
        }
        tracing::debug!(records, "replayed the WAL");
        Ok(())
    }
}
