//! The read path: resolve what `at` means on a branch, then rebuild the page from the
//! branch's versions and, below its branch point, its ancestors' (Neon's read rule: a read
//! at LSN L on B sees B's versions at or below L, then B's parent at min(L, branch point)).

use std::sync::Arc;

use bytes::Bytes;
use pagefork_wal::Lsn;

use super::{Store, StoreInner};
use crate::branch::{At, TimeKind};
use crate::catalog::Branch;
use crate::error::{EngineError, Result};
use crate::key::Key;
use crate::time::Timestamp;
use crate::update::{Update, reconstruct};

impl Store {
    /// The page `key` of `branch` as it was `at`: `None` if it was never written or was
    /// dropped. An LSN past the branch's head and a time before its history are errors.
    pub fn get_page(&self, branch: &str, key: Key, at: At) -> Result<Option<Bytes>> {
        let inner = &self.inner;
        let target = inner.branch(branch)?;
        let lsn = inner.resolve(&target, at)?;
        inner.read_page(&target, key, lsn)
    }
}

/// Appends `branch`'s own versions of `key` at or below `lsn`, newest first: the open
/// layer, then its layer files newest first. Returns whether an initializing version (or
/// an image layer's proof) was found, so the walk can stop.
fn collect_from_branch(branch: &Branch, key: Key, lsn: Lsn, out: &mut Vec<Update>) -> Result<bool> {
    let state = branch.state.read();
    if state.versions.collect_versions(key, lsn, out) {
        return Ok(true);
    }
    for layer in state.layers.iter().rev() {
        if layer.file.collect_versions(key, lsn, out)? {
            return Ok(true);
        }
    }
    Ok(false)
}

impl StoreInner {
    /// The LSN that `at` means on `branch`.
    pub(super) fn resolve(&self, branch: &Branch, at: At) -> Result<Lsn> {
        let head = branch.head();
        match at {
            At::Latest => Ok(head),
            At::Lsn(lsn) if lsn > head => Err(EngineError::LsnPastHead {
                branch: branch.name.clone(),
                lsn,
                head,
            }),
            At::Lsn(lsn) => Ok(lsn),
            At::Time(time) => {
                let answer = self.lsn_for_time_on(branch, time);
                match answer.kind {
                    TimeKind::Past => Err(self.time_before_history(branch, time)),
                    TimeKind::Present | TimeKind::Future | TimeKind::NoData => Ok(answer.lsn),
                }
            }
        }
    }

    /// The refusal of a read or branch at `time`, which is before `branch`'s history.
    pub(super) fn time_before_history(&self, branch: &Branch, time: Timestamp) -> EngineError {
        EngineError::TimeBeforeHistory {
            branch: branch.name.clone(),
            requested: time,
            earliest: self.earliest_commit_time(branch).unwrap_or(time),
        }
    }

    /// Rebuilds `key` as `branch` sees it at `lsn`.
    pub(super) fn read_page(
        &self,
        branch: &Arc<Branch>,
        key: Key,
        lsn: Lsn,
    ) -> Result<Option<Bytes>> {
        let mut versions = Vec::new();
        let mut current = Arc::clone(branch);
        let mut lsn = lsn;
        loop {
            if collect_from_branch(&current, key, lsn, &mut versions)? {
                break;
            }
            match &current.parent {
                Some((parent, branch_point)) => {
                    lsn = lsn.min(*branch_point);
                    current = Arc::clone(parent);
                }
                None => break,
            }
        }
        reconstruct(key, &versions, self.page_size).map_err(|error| EngineError::CorruptRecord {
            lsn,
            reason: format!(
                "cannot rebuild {} on branch {:?}: {}",
                error.key, branch.name, error.reason
            ),
        })
    }

    pub(super) fn page_exists(&self, branch: &Arc<Branch>, key: Key, lsn: Lsn) -> Result<bool> {
        Ok(self.read_page(branch, key, lsn)?.is_some())
    }
}
