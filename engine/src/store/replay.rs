//! Replay: rebuilding the in-memory state from the WAL on open.
//!
//! Records are decoded and applied in log order through `apply`, the same path live
//! operations use. A record that does not decode, or contradicts the history built so far,
//! stops the open with an error naming its LSN: the store never guesses.

use bytes::Bytes;
use pagefork_wal::Wal;

use super::StoreInner;
use crate::error::{EngineError, Result};
use crate::record::Record;

impl StoreInner {
    pub(super) fn replay(&self, wal: &Wal) -> Result<()> {
        let mut last_time = self.sequencer.lock();
        let mut records = 0u64;
        for record in wal.read_from(wal.oldest_lsn())? {
            let record = record?;
            let lsn = record.end;
            let payload: Bytes = record.payload;
            let (decoded, time) = Record::decode(record.kind, payload)
                .map_err(|reason| EngineError::CorruptRecord { lsn, reason })?;
            if time < *last_time {
                return Err(EngineError::CorruptRecord {
                    lsn,
                    reason: format!("time {time} is before the previous record's {}", *last_time),
                });
            }
            if records == 0
                && !matches!(&decoded, Record::CreateBranch(create) if create.parent.is_none())
            {
                return Err(EngineError::CorruptRecord {
                    lsn,
                    reason: "the first record of a store must create its root branch".to_owned(),
                });
            }
            self.apply(decoded, lsn, time)?;
            *last_time = time;
            records += 1;
        }
        if records == 0 {
            return Err(EngineError::CorruptRecord {
                lsn: wal.oldest_lsn(),
                reason: "the WAL holds no records: the root branch was never created".to_owned(),
            });
        }
        tracing::debug!(records, "replayed the WAL");
        Ok(())
    }
}
