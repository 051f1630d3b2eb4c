//! Timestamps to LSNs: which state of a branch a time means.
//!
//! A branch's visible history is its own commits, then its parent's up to the branch
//! point, recursively. Along it, LSNs increase and commit times never decrease (the store
//! assigns times in log order), so each ancestor's commits are binary-searched by time.

use pagefork_wal::Lsn;

use super::{Store, StoreInner};
use crate::branch::{LsnForTime, TimeKind};
use crate::catalog::{Branch, CommitPoint};
use crate::error::Result;
use crate::time::Timestamp;

impl Store {
    /// Which LSN shows `branch` as it was at `time`: the end of the last commit in its
    /// visible history at or before `time`, and how `time` relates to that history.
    /// Refused if that LSN is below the branch's GC cutoff, unless the time is before the
    /// history (`TimeKind::Past`: no state there to read).
    pub fn lsn_for_time(&self, branch: &str, time: Timestamp) -> Result<LsnForTime> {
        let target = self.inner.branch(branch)?;
        self.inner.available_lsn_for_time(&target, time)
    }

    /// The time of the last commit at or below `lsn` in `branch`'s visible history: the
    /// time of the state a read at `lsn` sees. `None` if there is none. (GC removes no
    /// commit point: see the known limits in docs/engine.md.)
    pub fn commit_time_at(&self, branch: &str, lsn: Lsn) -> Result<Option<Timestamp>> {
        let target = self.inner.branch(branch)?;
        Ok(commit_time_on(&target, lsn))
    }
}

/// `Store::commit_time_at` on a branch already looked up.
pub(super) fn commit_time_on(branch: &Branch, lsn: Lsn) -> Option<Timestamp> {
    branch.lineage(lsn).find_map(|(ancestor, upper)| {
        let state = ancestor.state.read();
        state.commits.last_up_to(upper).map(|commit| commit.time)
    })
}

impl StoreInner {
    pub(super) fn lsn_for_time_on(&self, branch: &Branch, time: Timestamp) -> LsnForTime {
        let head = branch.head();
        let mut found: Option<CommitPoint> = None;
        let mut later_commit_exists = false;
        let mut any_commit = false;
        let mut root_start = branch.start();
        for (ancestor, upper) in branch.lineage(head) {
            root_start = ancestor.start();
            let state = ancestor.state.read();
            let search = state.commits.search_time(upper, time);
            any_commit |= search.any;
            later_commit_exists |= search.later_exists;
            if search.found.is_some() {
                found = search.found;
                break;
            }
        }
        let (lsn, commit_time, kind) = match found {
            Some(commit) if later_commit_exists => {
                (commit.lsn, Some(commit.time), TimeKind::Present)
            }
            Some(commit) => (head, Some(commit.time), TimeKind::Future),
            // Past: the walk went to the root; its start is where the history starts.
            None if any_commit => (root_start, None, TimeKind::Past),
            None => (head, None, TimeKind::NoData),
        };
        LsnForTime {
            requested: time,
            lsn,
            commit_time,
            kind,
        }
    }

    /// The time of the first commit in `branch`'s visible history.
    pub(super) fn earliest_commit_time(&self, branch: &Branch) -> Option<Timestamp> {
        branch
            .lineage(branch.head())
            .filter_map(|(current, upper)| {
                current
                    .state
                    .read()
                    .commits
                    .first_up_to(upper)
                    .map(|first| first.time)
            })
            .last()
    }
}
