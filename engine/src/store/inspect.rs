//! Describing the store's WAL for people (`pagefork inspect wal`, like pg_waldump).

use pagefork_wal::Lsn;

use super::Store;
use crate::error::{EngineError, Result};
use crate::log::Log;
use crate::record::{BranchChange, Record};
use crate::time::Timestamp;
use crate::update::Update;

/// One WAL record, described.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalEntry {
    /// Where the record starts.
    pub start: Lsn,
    /// Its LSN (its end).
    pub end: Lsn,
    /// Its time.
    pub time: Timestamp,
    /// `commit`, `create-branch` or `delete-branch`.
    pub kind: &'static str,
    /// What it does, in words.
    pub description: String,
}

impl Store {
    /// The WAL records from `from` (a record boundary; the oldest kept record if `None`),
    /// at most `limit` of them, described. An in-memory store has no WAL and returns none.
    pub fn wal_entries(&self, from: Option<Lsn>, limit: usize) -> Result<Vec<WalEntry>> {
        let Log::Wal(wal) = &self.inner.log else {
            return Ok(Vec::new());
        };
        let mut entries = Vec::new();
        for record in wal
            .read_from(from.unwrap_or_else(|| wal.oldest_lsn()))?
            .take(limit)
        {
            let record = record?;
            let lsn = record.end;
            let (decoded, time) = Record::decode(record.kind, record.payload)
                .map_err(|reason| EngineError::CorruptRecord { lsn, reason })?;
            let (kind, description) = describe(&decoded);
            entries.push(WalEntry {
                start: record.start,
                end: record.end,
                time,
                kind,
                description,
            });
        }
        Ok(entries)
    }
}

fn describe(record: &Record) -> (&'static str, String) {
    match record {
        Record::Commit { branch, updates } => {
            let count = |wanted: fn(&Update) -> bool| {
                updates.iter().filter(|(_, update)| wanted(update)).count()
            };
            let images = count(|update| matches!(update, Update::Image(_)));
            let patches = count(|update| matches!(update, Update::Patch { .. }));
            let drops = count(|update| matches!(update, Update::Drop));
            (
                "commit",
                format!(
                    "branch {branch}: {} updates ({images} images, {patches} patches, {drops} drops)",
                    updates.len()
                ),
            )
        }
        Record::CreateBranch(create) => {
            let from = match create.parent {
                Some((parent, lsn)) => format!(" from {parent} at {lsn}"),
                None => " (root)".to_owned(),
            };
            (
                "create-branch",
                format!("{:?} {}{from}", create.name, create.id),
            )
        }
        Record::DeleteBranch { id } => ("delete-branch", format!("branch {id}")),
        Record::ChangeBranch { id, change } => (
            "change-branch",
            match change {
                BranchChange::Rename(name) => format!("branch {id}: rename to {name:?}"),
                BranchChange::Expiry(expiry) => format!("branch {id}: expiry {expiry:?}"),
                BranchChange::Protected(protected) => {
                    format!("branch {id}: protected {protected}")
                }
                BranchChange::PitrWindow(window) => format!("branch {id}: PITR window {window:?}"),
            },
        ),
        Record::ReplaceBranch {
            old,
            reason,
            backup,
            new,
        } => {
            let from = match new.parent {
                Some((parent, lsn)) => format!("{parent} at {lsn}"),
                None => "nothing".to_owned(),
            };
            let kept = match backup {
                Some(name) => format!("kept as {name:?}"),
                None => "hidden".to_owned(),
            };
            (
                "replace-branch",
                format!(
                    "{reason:?} {:?}: {} from {from} takes the name; {old} {kept}",
                    new.name, new.id
                ),
            )
        }
        Record::Lease {
            branch,
            lsn,
            expires_at,
        } => (
            "lease",
            format!("branch {branch}: keeps {lsn} until {expires_at}"),
        ),
        Record::DetachBranch { id, points } => (
            "detach-branch",
            format!(
                "branch {id}: copies what it reads through its ancestors from {} up, keeps {} older states",
                points.last().copied().unwrap_or_default(),
                points.len().saturating_sub(1)
            ),
        ),
    }
}
