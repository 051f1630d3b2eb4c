//! Commits: check every update against the branch's current state, log one record, apply.

use std::collections::BTreeSet;
use std::sync::Arc;

use pagefork_wal::WalError;

use super::{Store, StoreInner};
use crate::branch::Commit;
use crate::catalog::Branch;
use crate::error::{EngineError, Result};
use crate::key::Key;
use crate::record::Record;
use crate::update::Update;

impl Store {
    /// Commits `updates` to `branch` as one atomic WAL record and returns its LSN and
    /// time. Refused, changing nothing: an empty commit, a key twice, an image that is not
    /// one page, a patch out of bounds or on a page that does not exist, an unknown branch,
    /// a commit larger than one WAL record. Waits first while unflushed versions fill the
    /// memory budget (`Config::memory_budget_bytes`).
    pub fn commit(&self, branch: &str, updates: Vec<(Key, Update)>) -> Result<Commit> {
        self.inner.wait_for_memory()?;
        self.commit_locked(branch, updates)
    }

    fn commit_locked(&self, branch: &str, updates: Vec<(Key, Update)>) -> Result<Commit> {
        let inner = &self.inner;
        let target = inner.branch(branch)?;
        let _commit = target.commit_lock.lock();
        // A delete, rename, reset or restore may have taken the name from this branch
        // between the lookup and the lock: the name must still lead here.
        if inner.branch(branch)?.id != target.id {
            return Err(EngineError::UnknownBranch {
                name: branch.to_owned(),
            });
        }
        inner.check_updates(&target, &updates)?;
        let record = Record::Commit {
            branch: target.id,
            updates,
        };
        let (lsn, time) = inner.log_record(&record).map_err(|error| match error {
            EngineError::Wal(WalError::RecordTooLarge { len, max, .. }) => {
                EngineError::CommitTooLarge {
                    branch: branch.to_owned(),
                    len,
                    max,
                }
            }
            other => other,
        })?;
        inner.apply(record, lsn, time)?;
        Ok(Commit { lsn, time })
    }
}

impl StoreInner {
    fn check_updates(&self, branch: &Arc<Branch>, updates: &[(Key, Update)]) -> Result<()> {
        let name = || branch.name();
        if updates.is_empty() {
            return Err(EngineError::EmptyCommit { branch: name() });
        }
        let head = branch.head();
        let mut seen = BTreeSet::new();
        for (key, update) in updates {
            if !seen.insert(*key) {
                return Err(EngineError::DuplicateKey {
                    branch: name(),
                    key: *key,
                });
            }
            match update {
                Update::Image(image) if image.len() != self.page_size => {
                    return Err(EngineError::ImageSize {
                        key: *key,
                        len: image.len(),
                        page_size: self.page_size,
                    });
                }
                Update::Patch { offset, bytes } => {
                    let end = (*offset as usize).checked_add(bytes.len());
                    if end.is_none_or(|end| end > self.page_size) {
                        return Err(EngineError::PatchOutOfBounds {
                            key: *key,
                            offset: *offset,
                            len: bytes.len(),
                            page_size: self.page_size,
                        });
                    }
                    if !self.page_exists(branch, *key, head)? {
                        return Err(EngineError::PatchOnMissingPage {
                            branch: name(),
                            key: *key,
                        });
                    }
                }
                Update::Image(_) | Update::Drop => {}
            }
        }
        Ok(())
    }
}
