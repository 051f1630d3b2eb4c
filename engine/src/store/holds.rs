//! Holds: what a process using a branch (a mount, an endpoint) keeps from the store's own
//! housekeeping while it uses it. Unlike a lease, a hold is never logged: it lives as long
//! as the [`BranchHold`] that the caller keeps, and no longer than the process.
//!
//! Invariants it keeps: a branch whose expiry passes while it is held does not expire
//! until the last hold on it ends (it stays readable and writable, and the expiry sweep
//! leaves it; the next sweep after that deletes it); a state held at an LSN stays
//! available for reads and is kept by GC (a retain point, `RetainReason::Held`); a hold is
//! taken under `branch_ops` after the branch and LSN are checked, so no sweep or GC can
//! come between the check and the hold.

use std::collections::BTreeMap;
use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};

use pagefork_wal::Lsn;

use super::{Store, StoreInner};
use crate::branch::{At, BranchId};
use crate::catalog::{Branch, Catalog};
use crate::error::Result;
use crate::time::Timestamp;

/// Who holds what, by hold number.
#[derive(Debug, Default)]
pub(super) struct Holds {
    next: AtomicU64,
    held: parking_lot::Mutex<BTreeMap<u64, Held>>,
}

/// One hold.
#[derive(Debug, Clone)]
pub(super) struct Held {
    pub(super) branch: BranchId,
    /// The state kept from GC, if any (a writable user reads at the head).
    pub(super) lsn: Option<Lsn>,
    /// Who holds it, for GC's report ("the mount at /mnt/dev").
    pub(super) holder: String,
}

impl Holds {
    /// Whether any hold is on `branch`.
    pub(super) fn on_branch(&self, branch: BranchId) -> bool {
        self.held.lock().values().any(|held| held.branch == branch)
    }

    /// Whether a hold keeps `branch` at `lsn`.
    pub(super) fn keeps(&self, branch: BranchId, lsn: Lsn) -> bool {
        self.held
            .lock()
            .values()
            .any(|held| held.branch == branch && held.lsn == Some(lsn))
    }

    /// Every hold that keeps a state.
    pub(super) fn kept_states(&self) -> Vec<Held> {
        self.held
            .lock()
            .values()
            .filter(|held| held.lsn.is_some())
            .cloned()
            .collect()
    }
}

/// Keeps a branch from the expiry sweep, and its state at an LSN from GC, until dropped.
#[derive(Debug)]
#[must_use = "the hold ends when it is dropped"]
pub struct BranchHold {
    store: Weak<StoreInner>,
    number: u64,
}

impl Drop for BranchHold {
    fn drop(&mut self) {
        if let Some(inner) = self.store.upgrade() {
            inner.holds.held.lock().remove(&self.number);
        }
    }
}

impl StoreInner {
    /// Whether `branch` has expired by `now` and is not held: a branch whose expiry passes
    /// while a process holds it stays readable and writable until the last hold ends.
    pub(super) fn expired_unheld(&self, branch: &Branch, now: Timestamp) -> bool {
        branch.expired(now) && !self.holds.on_branch(branch.id)
    }

    /// The visible descendants an expired branch is kept for, holds counted: a held child
    /// has not expired (`Catalog::live_descendants`).
    pub(super) fn kept_for(
        &self,
        catalog: &Catalog,
        branch: &Branch,
        now: Timestamp,
    ) -> Vec<String> {
        catalog.live_descendants(branch.id, |child| self.expired_unheld(child, now))
    }
}

impl Store {
    /// Holds branch `name` for `holder` (a description, such as "the mount at /mnt/dev")
    /// until the returned hold is dropped: the expiry sweep leaves it, and if `lsn` is
    /// given, its state there stays readable and GC keeps it. `lsn` must be readable now
    /// (at or above the GC cutoff, or leased or held): refused with `BelowGcCutoff`
    /// otherwise.
    pub fn hold(&self, name: &str, lsn: Option<Lsn>, holder: &str) -> Result<BranchHold> {
        let inner = &self.inner;
        let _ops = inner.branch_ops.lock();
        let branch = inner.branch(name)?;
        if let Some(lsn) = lsn {
            inner.resolve(&branch, At::Lsn(lsn))?;
        }
        let number = inner.holds.next.fetch_add(1, Ordering::Relaxed);
        inner.holds.held.lock().insert(
            number,
            Held {
                branch: branch.id,
                lsn,
                holder: holder.to_owned(),
            },
        );
        Ok(BranchHold {
            store: std::sync::Arc::downgrade(&self.inner),
            number,
        })
    }
}
