//! Branch operations: create (O(1): a record and a pointer, no page is copied), delete,
//! list, describe; and how a name finds its branch, expiry included.
//!
//! Expiry is enforced where a name is looked up: an expired branch is never read, written
//! or branched from, whether or not the sweep (`lifecycle`) has deleted it yet. One the
//! sweep would delete (no unexpired descendant needs it) is not listed either, so what
//! users see does not depend on when the sweep runs.

use std::num::NonZeroUsize;
use std::sync::Arc;

use pagefork_wal::Lsn;

use super::{Store, StoreInner};
use crate::branch::{At, BranchInfo, BranchOptions, Expiry, LsnForTime, validate_branch_name};
use crate::catalog::Branch;
use crate::error::{EngineError, Result};
use crate::record::{CreateBranch, Record};
use crate::time::Timestamp;

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
        inner.check_new_expiry(name, options)?;
        // An expired branch that nothing needs gives up its name now.
        inner.sweep_expired_locked()?;
        if inner.catalog.read().by_name(name).is_some() {
            return Err(EngineError::BranchExists {
                name: name.to_owned(),
            });
        }
        let parent = inner.branch(parent)?;
        // Held (a mount works on it), an expired branch still answers its holder's reads
        // and commits, but nothing new is branched from it: the child would keep it past
        // its expiry for good (found by a review).
        if let Some(expired_at) = parent.expires_at()
            && !parent.hidden()
            && parent.expired(inner.clock.now())
        {
            return Err(EngineError::BranchExpired {
                name: parent.name(),
                expired_at,
            });
        }
        let (owner, branch_point, created_at_time) = inner.resolve_branch_point(&parent, at)?;
        // A TTL counts from the clock as it is, as every other expiry does: the record's
        // time is held from going backwards, so after a clock that stepped back it could
        // lie far ahead (a review's branch asked to live an hour lived for weeks).
        let options = BranchOptions {
            expiry: match options.expiry {
                Expiry::Ttl(ttl) => Expiry::At(inner.clock.now().saturating_add(ttl)),
                other => other,
            },
            ..options
        };
        let record = Record::CreateBranch(CreateBranch {
            id: inner.catalog.read().next_id(),
            name: name.to_owned(),
            parent: Some((owner.id, branch_point)),
            options,
            created_at_time,
        });
        let (lsn, time) = inner.log_record(&record)?;
        inner.apply(record, lsn, time)?;
        self.branch_info(name)
    }

    /// Refuses what [`Store::create_branch`] would refuse of a new branch's name and
    /// options alone (an invalid name, an expiry on a protected branch, one already past
    /// or later than a store can hold), without writing anything: for a caller with work
    /// to do before the create that a refused create should not have caused.
    pub fn check_new_branch(&self, name: &str, options: BranchOptions) -> Result<()> {
        validate_branch_name(name)?;
        self.inner.check_new_expiry(name, options)
    }

    /// Deletes branch `name`. Refused while it has children, while it is protected, and for
    /// the store's last visible branch that never expires.
    pub fn delete_branch(&self, name: &str) -> Result<()> {
        let inner = &self.inner;
        let _ops = inner.branch_ops.lock();
        inner.sweep_expired_locked()?;
        let branch = inner.branch(name)?;
        if branch.options().protected {
            return Err(EngineError::Protected {
                branch: name.to_owned(),
                operation: "deleting",
            });
        }
        inner.check_no_children(&branch)?;
        inner.check_not_last_lasting(&branch)?;
        inner.delete_locked(&branch)?;
        // Its parent may be an expired branch that was kept only for it.
        inner.sweep_expired_locked()?;
        Ok(())
    }

    /// Every branch, sorted by name: live ones, and expired ones still kept for their
    /// descendants (with `kept_for` saying which).
    pub fn list_branches(&self) -> Vec<BranchInfo> {
        self.list_branches_page(&BranchFilter::default(), None, NonZeroUsize::MAX)
            .branches
    }

    /// How many branches [`Store::list_branches`] lists, without building their infos.
    pub fn branch_count(&self) -> usize {
        let now = self.inner.clock.now();
        let catalog = self.inner.catalog.read();
        catalog
            .visible()
            .filter(|branch| {
                !self.inner.expired_unheld(branch, now)
                    || !self.inner.kept_for(&catalog, branch, now).is_empty()
            })
            .count()
    }

    /// One page of [`Store::list_branches`]: at most `limit` branches that `filter`
    /// keeps, in name order, after the name `after` (exclusive). Costs what the page
    /// holds, not what the store holds (but a `parent` filter looks at every branch's
    /// parent).
    pub fn list_branches_page(
        &self,
        filter: &BranchFilter,
        after: Option<&str>,
        limit: NonZeroUsize,
    ) -> BranchPage {
        use std::ops::Bound;
        let inner = &self.inner;
        let now = inner.clock.now();
        let catalog = inner.catalog.read();
        let prefix = filter.name_prefix.as_deref().unwrap_or_default();
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut branches = Vec::new();
        let mut more = false;
        for branch in catalog.visible_from(start) {
            if !branch.name().starts_with(prefix) {
                break;
            }
            // The parent filter first: it needs no info built.
            // The branch the name now names: a hidden old state keeps the name it had (a
            // review found a reset branch's name listing its old state's children).
            if let Some(wanted) = filter.parent.as_deref()
                && branch
                    .parent()
                    .is_none_or(|(parent, _)| parent.hidden() || parent.name() != wanted)
            {
                continue;
            }
            let info = if inner.expired_unheld(branch, now) {
                let kept_for = inner.kept_for(&catalog, branch, now);
                if kept_for.is_empty() {
                    continue;
                }
                branch.info(kept_for)
            } else {
                branch.info(Vec::new())
            };
            if branches.len() == limit.get() {
                more = true;
                break;
            }
            branches.push(info);
        }
        let next_after = if more {
            branches.last().map(|info| info.name.clone())
        } else {
            None
        };
        BranchPage {
            branches,
            next_after,
        }
    }

    /// What the store knows about branch `name`; for an expired branch still kept, which
    /// descendants keep it.
    pub fn branch_info(&self, name: &str) -> Result<BranchInfo> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let catalog = inner.catalog.read();
        let branch = catalog
            .by_name(name)
            .ok_or_else(|| EngineError::UnknownBranch {
                name: name.to_owned(),
            })?;
        match branch.expires_at() {
            Some(expired_at) if inner.expired_unheld(branch, now) => {
                let kept_for = inner.kept_for(&catalog, branch, now);
                if kept_for.is_empty() {
                    return Err(EngineError::BranchExpired {
                        name: name.to_owned(),
                        expired_at,
                    });
                }
                Ok(branch.info(kept_for))
            }
            _ => Ok(branch.info(Vec::new())),
        }
    }
}

impl StoreInner {
    /// The live branch named `name`: refused if there is none or it has expired.
    pub(super) fn branch(&self, name: &str) -> Result<Arc<Branch>> {
        let branch = self.catalog.read().by_name(name).cloned().ok_or_else(|| {
            EngineError::UnknownBranch {
                name: name.to_owned(),
            }
        })?;
        self.check_not_expired(&branch)?;
        Ok(branch)
    }

    /// Refuses an expired branch (hidden ones never expire: they hold history only).
    pub(super) fn check_not_expired(&self, branch: &Branch) -> Result<()> {
        match branch.expires_at() {
            Some(expired_at)
                if !branch.hidden() && self.expired_unheld(branch, self.clock.now()) =>
            {
                Err(EngineError::BranchExpired {
                    name: branch.name(),
                    expired_at,
                })
            }
            _ => Ok(()),
        }
    }

    /// Refuses options a new branch cannot have: an expiry on a protected branch, an
    /// expiry time already past, or one later than a store can hold.
    pub(super) fn check_new_expiry(&self, name: &str, options: BranchOptions) -> Result<()> {
        if options.protected && options.expiry != Expiry::Never {
            return Err(EngineError::ExpiryOnProtected {
                branch: name.to_owned(),
            });
        }
        let now = self.clock.now();
        if let Some(expires_at) = options.expiry.expires_at(now)
            && expires_at <= now
        {
            return Err(EngineError::ExpiryInPast {
                branch: name.to_owned(),
                expires_at,
                now,
            });
        }
        check_expiry_representable(name, options.expiry.expires_at(now))
    }

    /// Refuses to delete, or give an expiry to, the store's last visible branch that never
    /// expires: without one, the store could end with no branch to branch from or write
    /// to, for good (a review found a store left so by deleting main, and then by main's
    /// expiry).
    pub(super) fn check_not_last_lasting(&self, branch: &Branch) -> Result<()> {
        let lasting = |candidate: &Branch| candidate.expires_at().is_none();
        let another = self
            .catalog
            .read()
            .visible()
            .any(|other| other.id != branch.id && lasting(other));
        match lasting(branch) && !another {
            true => Err(EngineError::LastBranch {
                branch: branch.name(),
            }),
            false => Ok(()),
        }
    }

    /// Refuses to remove `branch` while anything branches from it.
    pub(super) fn check_no_children(&self, branch: &Branch) -> Result<()> {
        let children = self.catalog.read().child_names(branch.id);
        if children.is_empty() {
            return Ok(());
        }
        Err(EngineError::HasChildren {
            branch: branch.name(),
            children: children.join(", "),
        })
    }

    /// Logs and applies the delete of `branch`, checked by the caller, who holds
    /// `branch_ops`.
    pub(super) fn delete_locked(&self, branch: &Branch) -> Result<()> {
        // No commit on the branch may be between its checks and its record.
        let _commit = branch.commit_lock.lock();
        let record = Record::DeleteBranch { id: branch.id };
        let (lsn, time) = self.log_record(&record)?;
        self.apply(record, lsn, time)
    }

    /// The branch point `at` means on `parent`: the branch whose own history holds it,
    /// the LSN, and the time answer if `at` is a time. Below `parent`'s own start (its
    /// branch point) that branch is the ancestor whose history the LSN is in, where a read
    /// of `parent` at that LSN looks: `parent` as it was at a time before a restore in
    /// place is its old state's (a review found such a restore refused, with a hidden old
    /// state that no one could name, while reads there answered). Refused where a read
    /// of `parent` would be: below its root's start, past its head, below its cutoff.
    pub(super) fn resolve_branch_point(
        &self,
        parent: &Arc<Branch>,
        at: At,
    ) -> Result<(Arc<Branch>, Lsn, Option<LsnForTime>)> {
        let (lsn, answer) = self.resolve_unchecked(parent, at)?;
        self.check_available(parent, lsn, super::read::requested_time(at))?;
        let mut owner = Arc::clone(parent);
        while lsn < owner.start() {
            let Some((ancestor, _)) = owner.parent() else {
                return Err(EngineError::LsnBelowBranchStart {
                    branch: parent.name(),
                    lsn,
                    start: parent.history_start(),
                });
            };
            owner = ancestor;
        }
        // Nothing new is branched from an expired branch, an ancestor included: the child
        // would keep it past its expiry for good (a review of this rule's first version).
        if let Some(expired_at) = owner.expires_at()
            && owner.id != parent.id
            && !owner.hidden()
            && owner.expired(self.clock.now())
        {
            return Err(EngineError::BranchExpired {
                name: owner.name(),
                expired_at,
            });
        }
        Ok((owner, lsn, answer))
    }
}

/// Refuses an expiry of branch `name` (or of a lease on it) later than a store can hold:
/// past [`Timestamp::MAX`], no time could display or parse it.
pub(super) fn check_expiry_representable(name: &str, expires_at: Option<Timestamp>) -> Result<()> {
    match expires_at {
        Some(time) if time > Timestamp::MAX => Err(EngineError::ExpiryTooLate {
            branch: name.to_owned(),
            latest: Timestamp::MAX,
        }),
        _ => Ok(()),
    }
}

/// Which branches a listing shows (see [`Store::list_branches_page`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BranchFilter {
    /// Only names that start with this.
    pub name_prefix: Option<String>,
    /// Only children of the branch with this name.
    pub parent: Option<String>,
}

/// A page of a branch listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchPage {
    /// The branches, in name order.
    pub branches: Vec<BranchInfo>,
    /// The name to list after for the next page; `None` if this is the last one.
    pub next_after: Option<String>,
}
