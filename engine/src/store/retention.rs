//! Retention: which history each branch keeps readable, and what GC must keep besides.
//!
//! - Each branch has a PITR window (the store's `Config::pitr_window`, or its own). GC
//!   moves the branch's own *cutoff* up to the last commit at or before `now - window`
//!   (its head if nothing was committed since; never above the head, never down). A hidden
//!   old state or an expired branch is never read itself, so its cutoff goes to its
//!   head, or to the lowest cutoff among its children that read through it below their
//!   branch points (so their windows keep that history).
//! - The *effective* cutoff of a branch also takes its ancestors' below its branch point
//!   (`Branch::effective_cutoff`). A branch is *available* at LSN L, for reads, time
//!   lookups, branch points and leases, iff L is at or above its effective cutoff or an
//!   active lease or a process's hold (`Store::hold`) keeps (branch, L). Anything else is
//!   refused with `BelowGcCutoff`, naming the LSN (or time) and the cutoff.
//! - Leases (`Store::lease`) are WAL records, kept in the catalog while they last.
//!
//! Invariant: cutoffs move only under `branch_ops`, and branch creation, restore, reset
//! and leases resolve their LSN and log their record under it too, so no GC can move a
//! cutoff between a branch point being checked and the branch existing (Neon documents
//! its own version of this as racy).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pagefork_wal::Lsn;

use super::{Store, StoreInner};
use crate::branch::{At, BranchId, BranchInfo, Lease, LsnForTime, TimeKind};
use crate::catalog::{Branch, Catalog};
use crate::error::{EngineError, Result};
use crate::record::{BranchChange, Record};
use crate::time::Timestamp;

/// Why GC keeps a branch's state at an LSN below its cutoff.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum RetainReason {
    /// A child branches from this branch here (directly, or through descendants).
    BranchPoint {
        /// The child's name.
        child: String,
    },
    /// A lease holds it.
    Lease {
        /// The leased branch (this one or a descendant that reads through it).
        branch: String,
        /// When the lease ends.
        until: Timestamp,
    },
    /// A process using a branch holds it (`Store::hold`): a read-only mount shows it.
    Held {
        /// The held branch (this one or a descendant that reads through it).
        branch: String,
        /// Who holds it ("the mount at /mnt/dev").
        holder: String,
    },
}

/// An LSN below a branch's cutoff whose state GC keeps, and why.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RetainPoint {
    /// The LSN.
    pub lsn: Lsn,
    /// Why.
    pub reason: RetainReason,
}

impl Store {
    /// Sets how much history branch `name` keeps readable (`None`: the store's default).
    /// A longer window does not bring back what GC already collected: cutoffs never move
    /// down.
    pub fn set_pitr_window(&self, name: &str, window: Option<Duration>) -> Result<BranchInfo> {
        let inner = &self.inner;
        let _ops = inner.branch_ops.lock();
        let branch = inner.branch(name)?;
        // Stored in microseconds: a longer window would be kept shorter than answered.
        if let Some(window) = window.filter(|window| *window > crate::MAX_PITR_WINDOW) {
            return Err(EngineError::PitrWindowTooLong {
                branch: name.to_owned(),
                window,
            });
        }
        let record = Record::ChangeBranch {
            id: branch.id,
            change: BranchChange::PitrWindow(window),
        };
        let (lsn, time) = inner.log_record(&record)?;
        inner.apply(record, lsn, time)?;
        self.branch_info(name)
    }

    /// Keeps branch `name`'s state at `lsn` from GC for `duration` (a second lease on the
    /// same state extends it). The LSN must be available now: at most the head, at least
    /// the GC cutoff (or already leased), and at least the branch's start, as a branch
    /// point must be. Creating a branch there stays possible while the
    /// lease lasts.
    pub fn lease(&self, name: &str, lsn: Lsn, duration: Duration) -> Result<Lease> {
        let inner = &self.inner;
        let _ops = inner.branch_ops.lock();
        let branch = inner.branch(name)?;
        if duration.is_zero() {
            return Err(EngineError::EmptyLease {
                branch: name.to_owned(),
            });
        }
        // A lease keeps a point of the branch's own history to branch from (GC keeps
        // each branch's leased points in its own history): refused below its start.
        let start = branch.start();
        if lsn < start {
            return Err(EngineError::LsnBelowBranchStart {
                branch: name.to_owned(),
                lsn,
                start,
            });
        }
        let (_, lsn, _) = inner.resolve_branch_point(&branch, At::Lsn(lsn))?;
        let expires_at = inner.clock.now().saturating_add(duration);
        super::branches::check_expiry_representable(name, Some(expires_at))?;
        let record = Record::Lease {
            branch: branch.id,
            lsn,
            expires_at,
        };
        let (record_lsn, time) = inner.log_record(&record)?;
        inner.apply(record, record_lsn, time)?;
        let expires_at = inner
            .leases
            .lock()
            .get(&(branch.id, lsn))
            .copied()
            .expect("the lease was just applied");
        Ok(Lease {
            branch: name.to_owned(),
            lsn,
            expires_at,
        })
    }

    /// The active leases of visible branches, by branch name then LSN.
    pub fn leases(&self) -> Vec<Lease> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let catalog = inner.catalog.read();
        let mut leases: Vec<Lease> = inner
            .leases
            .lock()
            .iter()
            .filter(|(_, until)| **until > now)
            .filter_map(|((id, lsn), until)| {
                let branch = catalog.by_id(*id).filter(|branch| !branch.hidden())?;
                Some(Lease {
                    branch: branch.name(),
                    lsn: *lsn,
                    expires_at: *until,
                })
            })
            .collect();
        leases.sort_by(|a, b| (&a.branch, a.lsn).cmp(&(&b.branch, b.lsn)));
        leases
    }
}

impl StoreInner {
    /// Refuses `lsn` on `branch` if it is below the branch's effective cutoff and no active
    /// lease holds it. `time` is the time the request named, if it named one.
    pub(super) fn check_available(
        &self,
        branch: &Branch,
        lsn: Lsn,
        time: Option<Timestamp>,
    ) -> Result<()> {
        if branch.at_or_above_cutoff(lsn)
            || self.leased(branch.id, lsn)
            || self.holds.keeps(branch.id, lsn)
        {
            return Ok(());
        }
        Err(EngineError::BelowGcCutoff {
            branch: branch.name(),
            lsn,
            time,
            cutoff: branch.effective_cutoff(),
        })
    }

    fn leased(&self, branch: BranchId, lsn: Lsn) -> bool {
        let now = self.clock.now();
        self.leases
            .lock()
            .get(&(branch, lsn))
            .is_some_and(|until| *until > now)
    }

    /// `lsn_for_time` with availability: an answer below the cutoff is refused, but for a
    /// time before the history (`Past`), which is an answer whatever GC did (a review
    /// found it answered before a GC and refused as below the cutoff after one).
    pub(super) fn available_lsn_for_time(
        &self,
        branch: &Branch,
        time: Timestamp,
    ) -> Result<LsnForTime> {
        let answer = self.lsn_for_time_on(branch, time);
        if answer.kind != TimeKind::Past {
            self.check_available(branch, answer.lsn, Some(time))?;
        }
        Ok(answer)
    }

    /// Moves every branch's cutoff forward as of `now` (see the module docs). The caller
    /// holds `branch_ops`.
    pub(super) fn advance_cutoffs(&self, now: Timestamp) {
        let branches: Vec<Arc<Branch>> = self.catalog.read().branches().cloned().collect();
        let mut children: BTreeMap<BranchId, Vec<(Arc<Branch>, Lsn)>> = BTreeMap::new();
        for branch in &branches {
            if let Some((parent, point)) = branch.parent() {
                children
                    .entry(parent.id)
                    .or_default()
                    .push((Arc::clone(branch), point));
            }
        }
        let mut cutoffs = BTreeMap::new();
        for branch in &branches {
            let cutoff = self.cutoff_after_gc(branch, now, &children, &mut cutoffs);
            branch.advance_cutoff(cutoff);
        }
        self.cutoff_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// `branch`'s own cutoff once GC moves it at `now` (memoized in `cutoffs`): where it
    /// is, or its target if that is higher.
    fn cutoff_after_gc(
        &self,
        branch: &Branch,
        now: Timestamp,
        children: &BTreeMap<BranchId, Vec<(Arc<Branch>, Lsn)>>,
        cutoffs: &mut BTreeMap<BranchId, Lsn>,
    ) -> Lsn {
        if let Some(cutoff) = cutoffs.get(&branch.id) {
            return *cutoff;
        }
        let target = match self.keeps_window(branch, now) {
            true => self.window_cutoff_target(branch, now),
            // Read by nobody itself, but its children read through it below their branch
            // points, down to their own cutoffs (found by a review: a hidden old state's
            // or an expired parent's cutoff went to its head, and took that history from
            // its children's PITR windows at the next GC).
            false => {
                let mut target = branch.head();
                for (child, point) in children.get(&branch.id).into_iter().flatten() {
                    let child_cutoff = self.cutoff_after_gc(child, now, children, cutoffs);
                    if child_cutoff < *point {
                        target = target.min(child_cutoff);
                    }
                }
                target
            }
        };
        let cutoff = branch.own_cutoff().max(target.min(branch.head()));
        cutoffs.insert(branch.id, cutoff);
        cutoff
    }

    /// Where a branch that keeps a window (`keeps_window`) should have its own cutoff at
    /// `now`, before taking the maximum with where it is: the last commit at or before
    /// `now - window`.
    fn window_cutoff_target(&self, branch: &Branch, now: Timestamp) -> Lsn {
        let head = branch.head();
        let window = branch.pitr_window().unwrap_or(self.pitr_window);
        let answer = self.lsn_for_time_on(branch, now.saturating_sub(window));
        let target = match answer.kind {
            TimeKind::Present => answer.lsn,
            TimeKind::Future | TimeKind::NoData => head,
            TimeKind::Past => Lsn(0),
        };
        target.min(head)
    }

    /// Every branch's retain points: where its children branch from it, and where active
    /// leases (on it, or on descendants reading through it) hold it, each propagated up
    /// the ancestry as a read there would go. Expired leases hold nothing but are kept:
    /// only GC forgets them (`forget_expired_leases`), so a clock stepping back between
    /// two housekeeping cycles sees the same leases the model does. The caller holds
    /// `branch_ops`, so no branch or lease appears meanwhile.
    pub(super) fn retain_points(
        &self,
        catalog: &Catalog,
        now: Timestamp,
    ) -> BTreeMap<BranchId, Vec<RetainPoint>> {
        let mut points: BTreeMap<BranchId, Vec<RetainPoint>> = BTreeMap::new();
        let mut add = |from: &Branch, lsn: Lsn, reason: RetainReason| {
            for (ancestor, seen) in from.lineage(lsn) {
                points.entry(ancestor.id).or_default().push(RetainPoint {
                    lsn: seen,
                    reason: reason.clone(),
                });
            }
        };
        for child in catalog.branches() {
            if let Some((parent, branch_point)) = child.parent() {
                let reason = RetainReason::BranchPoint {
                    child: child.name(),
                };
                add(&parent, branch_point, reason);
            }
        }
        let leases = self.leases.lock();
        for ((id, lsn), until) in leases.iter().filter(|(_, until)| **until > now) {
            if let Some(branch) = catalog.by_id(*id) {
                let reason = RetainReason::Lease {
                    branch: branch.name(),
                    until: *until,
                };
                add(branch, *lsn, reason);
            }
        }
        for held in self.holds.kept_states() {
            if let (Some(branch), Some(lsn)) = (catalog.by_id(held.branch), held.lsn) {
                let reason = RetainReason::Held {
                    branch: branch.name(),
                    holder: held.holder,
                };
                add(branch, lsn, reason);
            }
        }
        for list in points.values_mut() {
            list.sort_by_key(|point| point.lsn);
        }
        points
    }

    /// GC's first step: forgets the leases expired at `now` and those of branches gone
    /// from `catalog`. A forgotten lease stays forgotten if the clock steps back.
    pub(super) fn forget_expired_leases(&self, catalog: &Catalog, now: Timestamp) {
        self.leases
            .lock()
            .retain(|(id, _), until| *until > now && catalog.by_id(*id).is_some());
    }
}

impl StoreInner {
    /// Whether `branch` keeps a readable PITR window: not a hidden old state, not expired
    /// (a held branch has not expired: see `holds`).
    pub(super) fn keeps_window(&self, branch: &Branch, now: Timestamp) -> bool {
        !branch.hidden() && !self.expired_unheld(branch, now)
    }
}
