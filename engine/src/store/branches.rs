//! Branch operations: create (O(1): a record and a pointer, no page is copied), delete,
//! list, describe.

use pagefork_wal::Lsn;

use super::{Store, StoreInner};
use crate::branch::{At, BranchInfo, BranchOptions, LsnForTime, TimeKind, validate_branch_name};
use crate::catalog::Branch;
use crate::error::{EngineError, Result};
use crate::record::{CreateBranch, Record};

impl Store {
    /// Creates branch `name` from `parent` as it is `at`. Copies nothing, whatever the
    /// data size. Refused, changing nothing: a bad or taken name, an unknown parent, an
    /// LSN past the parent's head or below its start, a time before its history.
    pub fn create_branch(
        &self,
        name: &str,
        parent: &str,
        at: At,
        options: BranchOptions,
    ) -> Result<BranchInfo> {
        let inner = &self.inner;
        validate_branch_name(name)?;
        let _ops = inner.branch_ops.lock();
        if inner.catalog.read().by_name(name).is_some() {
            return Err(EngineError::BranchExists {
                name: name.to_owned(),
            });
        }
        let parent = inner.branch(parent)?;
        let (branch_point, created_at_time) = inner.resolve_branch_point(&parent, at)?;
        let record = Record::CreateBranch(CreateBranch {
            id: inner.catalog.read().next_id(),
            name: name.to_owned(),
            parent: Some((parent.id, branch_point)),
            options,
            created_at_time,
        });
        let (lsn, time) = inner.log_record(&record)?;
        inner.apply(record, lsn, time)?;
        self.branch_info(name)
    }

    /// Deletes branch `name`. Refused while it has children.
    pub fn delete_branch(&self, name: &str) -> Result<()> {
        let inner = &self.inner;
        let _ops = inner.branch_ops.lock();
        let branch = inner.branch(name)?;
        let children = inner.catalog.read().children_of(branch.id);
        if !children.is_empty() {
            return Err(EngineError::HasChildren {
                branch: name.to_owned(),
                children: children.join(", "),
            });
        }
        // No commit on the branch may be between its checks and its record.
        let _commit = branch.commit_lock.lock();
        let record = Record::DeleteBranch { id: branch.id };
        let (lsn, time) = inner.log_record(&record)?;
        inner.apply(record, lsn, time)
    }

    /// Every live branch, sorted by name.
    pub fn list_branches(&self) -> Vec<BranchInfo> {
        self.inner
            .catalog
            .read()
            .branches()
            .map(|branch| branch.info())
            .collect()
    }

    /// What the store knows about branch `name`.
    pub fn branch_info(&self, name: &str) -> Result<BranchInfo> {
        Ok(self.inner.branch(name)?.info())
    }
}

impl StoreInner {
    /// The branch point `at` means on `parent`, and the time answer if `at` is a time.
    fn resolve_branch_point(&self, parent: &Branch, at: At) -> Result<(Lsn, Option<LsnForTime>)> {
        let (lsn, answer) = match at {
            At::Time(time) => {
                let answer = self.lsn_for_time_on(parent, time);
                if answer.kind == TimeKind::Past {
                    return Err(self.time_before_history(parent, time));
                }
                (answer.lsn, Some(answer))
            }
            At::Latest | At::Lsn(_) => (self.resolve(parent, at)?, None),
        };
        let start = parent.start();
        if lsn < start {
            return Err(EngineError::LsnBelowBranchStart {
                parent: parent.name.clone(),
                lsn,
                start,
            });
        }
        Ok((lsn, answer))
    }
}
