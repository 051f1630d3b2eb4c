//! Commits: check every update against the branch's current state, log one record, apply,
//! then (for `commit`) wait until the record is durable.
//!
//! Invariants: a branch's commits are logged and applied in one order (under its commit
//! lock), so its versions appear in LSN order; the lock is not held while waiting for
//! durability, so concurrent commits to one branch share fsyncs; a commit is visible to
//! readers once applied, and acknowledged by `commit` only once durable. A catalog never
//! covers a record that is not durable (`publish_catalog` syncs the log first), and the
//! log is a prefix after a crash, so a commit that survives brings every earlier one.

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
    ///
    /// Readers may see the commit before it is durable (it is applied, then waited for).
    /// If the wait fails with an I/O error, the store is poisoned and this returns the
    /// error: the commit stays readable until the store is reopened and may then be gone,
    /// and nothing logged later is ever acknowledged.
    pub fn commit(&self, branch: &str, updates: Vec<(Key, Update)>) -> Result<Commit> {
        let commit = self.commit_deferred(branch, updates)?;
        self.wait_durable(commit.lsn)?;
        Ok(commit)
    }

    /// [`Store::commit`] without waiting for durability: the commit is logged and applied
    /// (every reader sees it) when this returns, and durable once [`Store::wait_durable`]
    /// with its LSN (or a later one) returns. After a crash before that, it may be lost,
    /// but only with every commit logged after it: never out of order, never torn.
    ///
    /// It does no log I/O: call [`Store::write_behind`] after it, outside any lock of
    /// your own, so a writer that never waits sends the log steady batches.
    pub fn commit_deferred(&self, branch: &str, updates: Vec<(Key, Update)>) -> Result<Commit> {
        self.inner.wait_for_memory()?;
        self.commit_locked(branch, updates)
    }

    /// Writes deferred commits to the log (not fsynced) once a megabyte of them (or a
    /// sixteenth of a WAL segment) is waiting and no other write is under way; returns at
    /// once otherwise. Commits reach the log in steady batches instead of piling up in
    /// memory until the next wait, and the log makes its next segment ahead as it goes.
    /// It does I/O (a megabyte written, now and then a segment made): call it outside
    /// your own locks. A failure poisons the store, as a failed wait does.
    pub fn write_behind(&self) -> Result<()> {
        let inner = &self.inner;
        inner.check_poisoned()?;
        inner.poison_on_io_error(inner.log.write_behind())
    }

    /// Returns once every commit and branch operation logged up to `lsn` is durable. An
    /// I/O error poisons the store: no later wait succeeds after a failed one.
    pub fn wait_durable(&self, lsn: pagefork_wal::Lsn) -> Result<()> {
        self.inner.wait_logged(lsn)
    }

    /// Makes everything logged so far durable, commits not yet waited for included (a
    /// file tree's, which wait only for the log's files until their program fsyncs), and
    /// returns the LSN that now covers them. A copy of the store taken next (a sync to
    /// object storage) holds every commit acknowledged before this call.
    pub fn make_logged_durable(&self) -> Result<pagefork_wal::Lsn> {
        let end = self.inner.log.appended_end();
        self.inner.wait_logged(end)?;
        Ok(end)
    }

    /// Returns once every commit and branch operation logged up to `lsn` is written to the
    /// log's files, without waiting for an fsync: it then outlives this process (a kill),
    /// though not a power cut, which may still lose it with everything logged after it.
    /// An I/O error poisons the store, as a failed [`Store::wait_durable`] does.
    pub fn wait_written(&self, lsn: pagefork_wal::Lsn) -> Result<()> {
        self.inner.wait_log_written(lsn)
    }

    /// The most bytes one commit's log record may take: the page data plus about 10 bytes
    /// per update and a few dozen for the record (set by the WAL segment size). Larger
    /// commits are refused with `CommitTooLarge`.
    pub fn max_commit_bytes(&self) -> u64 {
        self.inner.log.max_payload_len()
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
        let (lsn, time) = inner
            .log_record_deferred(&record)
            .map_err(|error| match error {
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
