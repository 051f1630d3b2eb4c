//! The branch lifecycle beyond create and delete: rename, protection, expiry (and the
//! sweep that deletes expired branches), reset to the parent, restore in place, and the
//! branch-graph history.
//!
//! Reset and restore never rewrite history: the name moves to a new branch (a new id,
//! pointing at the new parent and branch point, so nothing is copied) in one
//! `ReplaceBranch` record, and the old branch keeps its history under a backup name, or
//! hidden while its children need it. Children of the old state keep theirs.
//!
//! Every operation here takes `branch_ops` (so branch operations are serialized), checks,
//! then logs one record and applies it; a refusal changes nothing.

use super::{Store, StoreInner};
use crate::branch::{
    At, Backup, BranchInfo, BranchOptions, Expiry, LsnForTime, validate_branch_name,
};
use crate::catalog::Branch;
use crate::error::{EngineError, Result};
use crate::history::HistoryEntry;
use crate::record::{BranchChange, CreateBranch, Record, ReplaceReason};
use crate::time::Timestamp;

/// What a restore did.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Restored {
    /// The branch as it is now (a new id; `created_at_time` says what a time snapped to).
    pub branch: BranchInfo,
    /// The name of the branch that keeps the previous state, unless the backup was skipped.
    pub backup: Option<String>,
}

impl Store {
    /// Renames branch `name` to `new_name`. Its id, history and children stay.
    pub fn rename_branch(&self, name: &str, new_name: &str) -> Result<BranchInfo> {
        let inner = &self.inner;
        validate_branch_name(new_name)?;
        let _ops = inner.branch_ops.lock();
        inner.sweep_expired_locked()?;
        let branch = inner.branch(name)?;
        inner.check_name_free(new_name)?;
        let change = BranchChange::Rename(new_name.to_owned());
        inner.change_locked(&branch, change)?;
        self.branch_info(new_name)
    }

    /// Protects or unprotects branch `name`. A protected branch cannot be deleted, reset or
    /// restored, and cannot have an expiry.
    pub fn set_protected(&self, name: &str, protected: bool) -> Result<BranchInfo> {
        let inner = &self.inner;
        let _ops = inner.branch_ops.lock();
        let branch = inner.branch(name)?;
        if protected && branch.options().expiry != Expiry::Never {
            return Err(EngineError::ExpiryOnProtected {
                branch: name.to_owned(),
            });
        }
        inner.change_locked(&branch, BranchChange::Protected(protected))?;
        self.branch_info(name)
    }

    /// Changes when branch `name` expires. A TTL counts from now. Refused for a protected
    /// branch, an expired one, and a time already past.
    pub fn set_expiry(&self, name: &str, expiry: Expiry) -> Result<BranchInfo> {
        let inner = &self.inner;
        let _ops = inner.branch_ops.lock();
        let branch = inner.branch(name)?;
        let options = BranchOptions {
            expiry,
            protected: branch.options().protected,
        };
        inner.check_new_expiry(name, options)?;
        if expiry != Expiry::Never {
            inner.check_not_last_lasting(&branch)?;
        }
        let absolute = match expiry.expires_at(inner.clock.now()) {
            Some(time) => Expiry::At(time),
            None => Expiry::Never,
        };
        inner.change_locked(&branch, BranchChange::Expiry(absolute))?;
        self.branch_info(name)
    }

    /// Resets branch `name` to its parent's latest state, dropping its own changes. Its
    /// children keep what they see (the old state stays, hidden, while they need it).
    /// Refused for a protected branch and a root.
    pub fn reset_branch(&self, name: &str) -> Result<BranchInfo> {
        let inner = &self.inner;
        let _ops = inner.branch_ops.lock();
        inner.sweep_expired_locked()?;
        let branch = inner.branch(name)?;
        inner.check_replaceable(&branch, "resetting")?;
        let Some((parent, _)) = branch.parent() else {
            return Err(EngineError::NoParent {
                branch: name.to_owned(),
            });
        };
        inner.check_not_expired(&parent)?;
        let parent_head = parent.head();
        inner.replace_locked(
            &branch,
            ReplaceReason::Reset,
            None,
            (&parent, parent_head, None),
        )?;
        self.branch_info(name)
    }

    /// Restores branch `name` in place to the state of `source` (itself or another branch)
    /// `at` an LSN, a time (snapped to the last commit at or before it, as for branch
    /// creation) or its latest state. The previous state is kept as `backup` says (by
    /// default as `NAME_old_<time>`), so restoring from the backup undoes the restore.
    /// Refused for a protected branch; refusals change nothing.
    pub fn restore_branch(
        &self,
        name: &str,
        source: &str,
        at: At,
        backup: Backup,
    ) -> Result<Restored> {
        let inner = &self.inner;
        let _ops = inner.branch_ops.lock();
        inner.sweep_expired_locked()?;
        let branch = inner.branch(name)?;
        inner.check_replaceable(&branch, "restoring")?;
        let source = inner.branch(source)?;
        let (owner, branch_point, answer) = inner.resolve_branch_point(&source, at)?;
        let backup = match backup {
            Backup::Skip => None,
            Backup::Named(backup) => {
                validate_branch_name(&backup)?;
                inner.check_name_free(&backup)?;
                Some(backup)
            }
            Backup::Default => Some(inner.default_backup_name(name)?),
        };
        inner.replace_locked(
            &branch,
            ReplaceReason::Restore,
            backup.clone(),
            (&owner, branch_point, answer),
        )?;
        Ok(Restored {
            branch: self.branch_info(name)?,
            backup,
        })
    }

    /// Deletes every expired branch that no unexpired descendant needs (leaves first);
    /// returns their names. The background thread of a store on disk runs this about once
    /// a second and `open` runs it; an in-memory store runs it when branches are created
    /// or renamed, or when called. Expired branches are refused everywhere before the
    /// sweep deletes them.
    pub fn sweep_expired(&self) -> Result<Vec<String>> {
        let _ops = self.inner.branch_ops.lock();
        self.inner.sweep_expired_locked()
    }

    /// The branch-graph history: every branch operation since the store was created,
    /// oldest first. It survives checkpoints and the removal of old WAL segments.
    pub fn history(&self) -> Vec<HistoryEntry> {
        self.inner.history.lock().clone()
    }
}

impl StoreInner {
    /// Sweeps if any branch has expired (the background thread's check).
    pub(super) fn sweep_expired_if_any(&self) -> Result<()> {
        if self.catalog.read().may_have_expired(self.clock.now()) {
            let _ops = self.branch_ops.lock();
            self.sweep_expired_locked()?;
        }
        Ok(())
    }

    /// See `Store::sweep_expired`; the caller holds `branch_ops`.
    pub(super) fn sweep_expired_locked(&self) -> Result<Vec<String>> {
        let mut swept = Vec::new();
        loop {
            // A clock past the year 9999 expires nothing (it would expire everything).
            let Ok(now) = self.now_in_range() else {
                return Ok(swept);
            };
            let victim = {
                let catalog = self.catalog.read();
                if !catalog.may_have_expired(now) {
                    return Ok(swept);
                }
                catalog
                    .visible()
                    .find(|branch| {
                        self.expired_unheld(branch, now)
                            && catalog.children_of(branch.id).is_empty()
                    })
                    .cloned()
            };
            let Some(victim) = victim else {
                // What is left expires later, or is kept for its descendants or for a
                // process holding it (deleted by a sweep after the hold ends).
                self.catalog.write().refresh_earliest_expiry();
                return Ok(swept);
            };
            tracing::info!(branch = %victim.name(), expired_at = ?victim.expires_at(), "deleting an expired branch");
            swept.push(victim.name());
            self.delete_locked(&victim)?;
        }
    }

    fn check_name_free(&self, name: &str) -> Result<()> {
        if self.catalog.read().by_name(name).is_some() {
            return Err(EngineError::BranchExists {
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    fn check_replaceable(&self, branch: &Branch, operation: &'static str) -> Result<()> {
        if branch.options().protected {
            return Err(EngineError::Protected {
                branch: branch.name(),
                operation,
            });
        }
        Ok(())
    }

    /// See [`default_backup_name`].
    fn default_backup_name(&self, name: &str) -> Result<String> {
        // A clock past year 9999 names nothing (and its time cannot be written).
        let now = self.now_in_range()?;
        let catalog = self.catalog.read();
        let backup =
            default_backup_name(name, now, |candidate| catalog.by_name(candidate).is_some());
        // Refused naming the default and the way around it (a review found "invalid
        // branch name" for a name the user never gave).
        validate_branch_name(&backup).map_err(|_| EngineError::DefaultBackupNameInvalid {
            branch: name.to_owned(),
            backup: backup.clone(),
            rule: crate::BRANCH_NAME_RULE,
        })?;
        Ok(backup)
    }

    fn change_locked(&self, branch: &Branch, change: BranchChange) -> Result<()> {
        let record = Record::ChangeBranch {
            id: branch.id,
            change,
        };
        let (lsn, time) = self.log_record(&record)?;
        self.apply(record, lsn, time)
    }

    /// Gives `branch`'s name to a new branch of `source` at `branch_point`; the old one
    /// takes `backup` as its name, or is hidden. The new branch keeps the old one's
    /// expiry time and protection (unprotected, as checked).
    fn replace_locked(
        &self,
        branch: &Branch,
        reason: ReplaceReason,
        backup: Option<String>,
        (source, branch_point, answer): (&Branch, pagefork_wal::Lsn, Option<LsnForTime>),
    ) -> Result<()> {
        // No commit on the branch may be between its checks and its record.
        let commit = branch.commit_lock.lock();
        let expiry = match branch.expires_at() {
            Some(time) => Expiry::At(time),
            None => Expiry::Never,
        };
        let record = Record::ReplaceBranch {
            old: branch.id,
            reason,
            backup,
            new: CreateBranch {
                id: self.catalog.read().next_id(),
                name: branch.name(),
                parent: Some((source.id, branch_point)),
                options: BranchOptions {
                    expiry,
                    protected: false,
                },
                created_at_time: answer,
            },
        };
        let (lsn, time) = self.log_record(&record)?;
        self.apply(record, lsn, time)?;
        drop(commit);
        // The old parent may be an expired branch that was kept only for this one.
        self.sweep_expired_locked()?;
        Ok(())
    }
}

/// The name a restore gives the previous state by default: `NAME_old_<UTC time to the
/// second>` (`main_old_20261122T101530Z`), with `_2`, `_3`, ... if that is `taken`. It may
/// break the naming rule (a long name); the restore then refuses it by name.
pub fn default_backup_name(name: &str, now: Timestamp, taken: impl Fn(&str) -> bool) -> String {
    let time = humantime::format_rfc3339_seconds(now.to_system_time())
        .to_string()
        .replace(['-', ':'], "");
    let base = format!("{name}_old_{time}");
    (1..)
        .map(|n| match n {
            1 => base.clone(),
            n => format!("{base}_{n}"),
        })
        .find(|candidate| !taken(candidate))
        .expect("some suffix is free")
}
