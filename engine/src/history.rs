//! The branch-graph history: every branch operation (create, delete, rename, expiry and
//! protection changes, reset, restore, removal of an old state nothing needs) as a log of
//! entries with its LSN and time.
//!
//! Each entry is made by `apply` from the WAL record of the operation, so live operations
//! and replay produce the same log; the catalog carries the entries it covers, so the log
//! survives the removal of the WAL segments that held the records.

use std::fmt;

use pagefork_wal::Lsn;

use crate::branch::BranchId;
use crate::time::Timestamp;

/// What a branch operation did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HistoryOperation {
    /// A branch was created.
    Create,
    /// A branch was deleted (by a user or by the expiry sweep).
    Delete,
    /// A branch was renamed.
    Rename,
    /// A branch's expiry was changed.
    SetExpiry,
    /// A branch was protected.
    Protect,
    /// A branch was unprotected.
    Unprotect,
    /// A branch was reset to its parent's latest state.
    Reset,
    /// A branch was restored to a state of itself or another branch.
    Restore,
    /// An old state of a branch, kept only for its children, was removed with its last
    /// child.
    RemoveOldState,
    /// A branch's PITR window was set or cleared (the store's default applies).
    SetPitrWindow,
    /// A lease was taken on a branch's state at an LSN.
    Lease,
    /// A branch was given copies of what it read through its ancestors and cut from its
    /// parent.
    Detach,
}

impl HistoryOperation {
    pub(crate) fn code(self) -> u8 {
        match self {
            HistoryOperation::Create => 1,
            HistoryOperation::Delete => 2,
            HistoryOperation::Rename => 3,
            HistoryOperation::SetExpiry => 4,
            HistoryOperation::Protect => 5,
            HistoryOperation::Unprotect => 6,
            HistoryOperation::Reset => 7,
            HistoryOperation::Restore => 8,
            HistoryOperation::RemoveOldState => 9,
            HistoryOperation::SetPitrWindow => 10,
            HistoryOperation::Lease => 11,
            HistoryOperation::Detach => 12,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<HistoryOperation> {
        Some(match code {
            1 => HistoryOperation::Create,
            2 => HistoryOperation::Delete,
            3 => HistoryOperation::Rename,
            4 => HistoryOperation::SetExpiry,
            5 => HistoryOperation::Protect,
            6 => HistoryOperation::Unprotect,
            7 => HistoryOperation::Reset,
            8 => HistoryOperation::Restore,
            9 => HistoryOperation::RemoveOldState,
            10 => HistoryOperation::SetPitrWindow,
            11 => HistoryOperation::Lease,
            12 => HistoryOperation::Detach,
            _ => return None,
        })
    }
}

impl fmt::Display for HistoryOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HistoryOperation::Create => "create",
            HistoryOperation::Delete => "delete",
            HistoryOperation::Rename => "rename",
            HistoryOperation::SetExpiry => "set-expiry",
            HistoryOperation::Protect => "protect",
            HistoryOperation::Unprotect => "unprotect",
            HistoryOperation::Reset => "reset",
            HistoryOperation::Restore => "restore",
            HistoryOperation::RemoveOldState => "remove-old-state",
            HistoryOperation::SetPitrWindow => "set-pitr-window",
            HistoryOperation::Lease => "lease",
            HistoryOperation::Detach => "detach",
        })
    }
}

/// One branch operation in the history.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct HistoryEntry {
    /// The LSN of the operation's WAL record.
    pub lsn: Lsn,
    /// When it happened (store clock).
    pub time: Timestamp,
    /// What it did.
    pub operation: HistoryOperation,
    /// The id of the branch it acted on (for reset and restore, the branch that now
    /// carries the name).
    pub branch_id: BranchId,
    /// The branch's name at the time.
    pub branch: String,
    /// The rest, in words: parent and branch point, new name, expiry, backup, ...
    pub details: String,
}
