//! Replay: rebuilding the in-memory state from the WAL on open.
//!
//! Without a catalog every record is applied, in log order, through `apply`, the same path
//! live operations use. With one, replay starts at the lowest LSN any branch has not
//! flushed: a record the catalog covers only puts back the page versions its branch had
//! not flushed (its branch operation and commit point are in the catalog already), and a
//! record after it is applied whole. A record that does not decode, or contradicts the
//! history built so far, stops the open with an error naming its LSN: the store never
//! guesses.

use bytes::Bytes;
use pagefork_wal::{Lsn, Wal};

use super::StoreInner;
use super::checkpoint::CatalogCut;
use crate::error::{EngineError, Result};
use crate::record::Record;

impl StoreInner {
    /// Replays the WAL after `cut` (everything, without a catalog).
    pub(super) fn replay(&self, wal: &Wal, cut: Option<CatalogCut>) -> Result<()> {
        let mut last_time = self.sequencer.lock();
        let mut records = 0u64;
        let start = cut.map_or(Lsn(0), |cut| cut.replay_from);
        for record in wal.read_from(wal.oldest_lsn())? {
            let record = record?;
            let lsn = record.end;
            if lsn <= start {
                continue;
            }
            let payload: Bytes = record.payload;
            let (decoded, time) = Record::decode(record.kind, payload)
                .map_err(|reason| EngineError::CorruptRecord { lsn, reason })?;
            if let Some(cut) = cut
                && lsn <= cut.covered
            {
                self.restore_unflushed(decoded, lsn)?;
                continue;
            }
            if time < *last_time {
                return Err(EngineError::CorruptRecord {
                    lsn,
                    reason: format!("time {time} is before the previous record's {}", *last_time),
                });
            }
            let starts_the_store =
                matches!(&decoded, Record::CreateBranch(create) if create.parent.is_none());
            if cut.is_none() && records == 0 && !starts_the_store {
                return Err(EngineError::CorruptRecord {
                    lsn,
                    reason: "the first record of a store must create its root branch".to_owned(),
                });
            }
            self.apply(decoded, lsn, time)?;
            *last_time = time;
            records += 1;
        }
        if cut.is_none() && records == 0 {
            return Err(EngineError::CorruptRecord {
                lsn: wal.oldest_lsn(),
                reason: "the WAL holds no records: the root branch was never created".to_owned(),
            });
        }
        tracing::debug!(records, "replayed the WAL");
        Ok(())
    }

    /// A record the catalog covers: puts back the page versions of a commit its branch
    /// had not flushed. Branch operations, and commits on branches deleted before the
    /// catalog, are in the catalog already.
    fn restore_unflushed(&self, record: Record, lsn: Lsn) -> Result<()> {
        let Record::Commit { branch, updates } = record else {
            return Ok(());
        };
        let Some(target) = self.catalog.read().by_id(branch).cloned() else {
            if branch >= self.catalog.read().next_id() {
                return Err(EngineError::CorruptRecord {
                    lsn,
                    reason: format!("commit on {branch}, which the catalog never knew"),
                });
            }
            return Ok(());
        };
        let mut state = target.state.write();
        if lsn <= state.flushed {
            return Ok(());
        }
        if !state.commits.contains(lsn) {
            return Err(EngineError::CorruptRecord {
                lsn,
                reason: format!(
                    "commit on {branch} that the catalog does not list among its commits"
                ),
            });
        }
        self.insert_versions(&target, &mut state, updates, lsn);
        Ok(())
    }
}
