//! The catalog of live branches and each branch's in-memory state.
//!
//! Invariants it keeps:
//! - A branch holds its parent by `Arc` with the branch point; a parent cannot be deleted
//!   while it has children, so the chain of ancestors is always complete. The link is only
//!   ever cut by a detach, after the branch holds copies of everything it read through it
//!   (the `Arc` stays; a deleted branch's state is emptied, so it holds no memory or file).
//! - A branch's head only moves forward; its commit points are in LSN order and their times
//!   never decrease (the store assigns times in log order).
//! - Names are unique among visible branches; ids are never reused. A branch replaced by a
//!   reset or restore without a backup is *hidden*: it has no name in the catalog and is
//!   kept only while it has children (their history runs through it); the record that
//!   removes its last child removes it too.
//! - Ids follow creation order, so a parent's id is below its children's (the catalog is
//!   written parents first by sorting on id).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use pagefork_wal::Lsn;
use parking_lot::{Mutex, RwLock};

use crate::branch::{BranchId, BranchInfo, BranchOptions, LsnForTime, ParentRef};
pub(crate) use crate::commits::CommitPoint;
use crate::commits::CommitPoints;
use crate::key::Key;
use crate::layer::LayerMap;
use crate::time::Timestamp;
use crate::versions::PageVersions;

/// What changes as a branch lives.
///
/// A branch's versions live in three places, newest first: the open layer (commits land
/// there), at most one frozen layer (being written to a layer file by the housekeeper),
/// and the published layer files. Every version in a newer place is newer than every
/// version in an older one.
#[derive(Debug)]
pub(crate) struct BranchState {
    /// Last own commit, or the branch's start if it has none.
    pub(crate) head: Lsn,
    /// The open layer: versions not yet frozen.
    pub(crate) open: PageVersions,
    /// The frozen layer and the head when it was frozen.
    pub(crate) frozen: Option<(Arc<PageVersions>, Lsn)>,
    /// Published layer files holding the older versions.
    pub(crate) layers: LayerMap,
    /// Every own version at or below this LSN is in `layers` (the WAL before it is not
    /// needed for this branch's pages). Starts at the branch's creation record (it has no
    /// own version below it) and only moves forward (`advance_flushed`): the catalog's
    /// replay start is the lowest `flushed`, and the WAL below the last published one may
    /// be gone, so lowering it could publish a catalog that cannot be opened.
    pub(crate) flushed: Lsn,
    /// Own commits, in LSN order (and a detached branch's copies of its old ancestors').
    pub(crate) commits: CommitPoints,
    /// Set when the branch is deleted; an operation that found the branch before the delete
    /// checks this under the branch's locks.
    pub(crate) deleted: bool,
}

impl BranchState {
    /// Whether `commit` can come next: above the head, and not earlier than the last
    /// commit's time. (Callers restoring state from disk check this and report damage;
    /// `record_commit` relies on it.)
    pub(crate) fn follows(&self, commit: CommitPoint) -> bool {
        commit.lsn > self.head
            && self
                .commits
                .last()
                .is_none_or(|last| commit.time >= last.time)
    }

    /// Bytes of memory held by the open and frozen layers.
    pub(crate) fn memory_bytes(&self) -> u64 {
        self.open.bytes() + self.frozen.as_ref().map_or(0, |(frozen, _)| frozen.bytes())
    }

    /// Moves `flushed` up to `lsn` (never down; see `flushed`).
    pub(crate) fn advance_flushed(&mut self, lsn: Lsn) {
        self.flushed = self.flushed.max(lsn);
    }

    pub(crate) fn record_commit(&mut self, commit: CommitPoint) {
        assert!(
            self.follows(commit),
            "a branch's head only moves forward and its commit times never decrease"
        );
        self.commits.push(commit);
        self.head = commit.lsn;
    }
}

/// The smallest and largest key a branch holds versions of (empty: min > max).
#[derive(Debug)]
pub(crate) struct KeyBounds {
    min: AtomicU64,
    max: AtomicU64,
}

impl Default for KeyBounds {
    fn default() -> KeyBounds {
        KeyBounds {
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
        }
    }
}

impl KeyBounds {
    /// Widens the bounds to take in `first..=last`. Called before the versions become
    /// visible, so a reader that sees a version also sees bounds covering it.
    pub(crate) fn widen(&self, first: Key, last: Key) {
        self.min.fetch_min(first.packed(), Ordering::AcqRel);
        self.max.fetch_max(last.packed(), Ordering::AcqRel);
    }

    /// Whether the branch may hold versions of `key`.
    pub(crate) fn may_hold(&self, key: Key) -> bool {
        let key = key.packed();
        self.min.load(Ordering::Acquire) <= key && key <= self.max.load(Ordering::Acquire)
    }
}

/// What a branch operation can change about a branch without touching its history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BranchMeta {
    /// Its name (for a hidden branch, the name it had when it was replaced).
    pub(crate) name: String,
    pub(crate) options: BranchOptions,
    /// Replaced by a reset or a restore without a backup; kept while it has children.
    pub(crate) hidden: bool,
    /// Its own PITR window; `None`: the store's default.
    pub(crate) pitr_window: Option<Duration>,
}

/// A live (or just deleted) branch.
#[derive(Debug)]
pub(crate) struct Branch {
    pub(crate) id: BranchId,
    /// Parent and branch point; `None` for a root. Set at creation; a detach sets
    /// `detached` instead of clearing it, so the read path follows it without a lock.
    parent: Option<(Arc<Branch>, Lsn)>,
    /// Cut from its parent by a detach: `parent` no longer counts. Only ever set.
    detached: AtomicBool,
    /// Where its own history starts (see `start`).
    start: AtomicU64,
    pub(crate) created: Timestamp,
    pub(crate) created_lsn: Lsn,
    pub(crate) created_at_time: Option<LsnForTime>,
    /// Name, options, hidden flag. A leaf lock: held only to copy or change these fields,
    /// never while taking another lock.
    pub(crate) meta: RwLock<BranchMeta>,
    /// Bounds of every key the branch holds versions of (open, frozen or in layers), as
    /// `Key::packed`: a read of a key outside them skips the branch without locking it.
    /// Only ever widened.
    pub(crate) key_bounds: KeyBounds,
    /// Its own GC cutoff (see `effective_cutoff`). Only moves forward; set by GC before
    /// it removes anything below it, so a read that re-checks it after reading knows
    /// whether what it read could have been collected under it.
    gc_cutoff: AtomicU64,
    /// Held through a whole commit (check, log, apply), so commits on one branch apply in
    /// LSN order and a delete cannot slip between a commit's check and its record.
    pub(crate) commit_lock: Mutex<()>,
    pub(crate) state: RwLock<BranchState>,
}

impl Branch {
    pub(crate) fn new(
        id: BranchId,
        name: String,
        parent: Option<(Arc<Branch>, Lsn)>,
        created: Timestamp,
        created_lsn: Lsn,
        options: BranchOptions,
        created_at_time: Option<LsnForTime>,
    ) -> Branch {
        let start = parent.as_ref().map_or(created_lsn, |(_, lsn)| *lsn);
        Branch {
            id,
            parent,
            detached: AtomicBool::new(false),
            start: AtomicU64::new(start.0),
            created,
            created_lsn,
            created_at_time,
            meta: RwLock::new(BranchMeta {
                name,
                options,
                hidden: false,
                pitr_window: None,
            }),
            key_bounds: KeyBounds::default(),
            gc_cutoff: AtomicU64::new(0),
            commit_lock: Mutex::new(()),
            state: RwLock::new(BranchState {
                head: start,
                open: PageVersions::default(),
                frozen: None,
                layers: LayerMap::default(),
                // No own version is older than the record that created the branch. Not its
                // start: a branch point can lie below the WAL that is still kept.
                flushed: created_lsn,
                commits: CommitPoints::default(),
                deleted: false,
            }),
        }
    }

    /// A branch restored from a catalog whose own history starts at `start` rather than at
    /// its branch point or creation: a detached branch (it holds copies of what it read
    /// through its old ancestors, down to their root's start).
    pub(crate) fn with_start(self, start: Lsn) -> Branch {
        self.start.store(start.0, Ordering::Release);
        {
            let mut state = self.state.write();
            assert!(
                state.commits.is_empty(),
                "the start is set before any commit"
            );
            state.head = start;
        }
        self
    }

    /// Where the branch's own history starts: its branch point, for a root the LSN of its
    /// creation, for a detached branch its old root's start.
    pub(crate) fn start(&self) -> Lsn {
        Lsn(self.start.load(Ordering::Acquire))
    }

    /// Where the history it can read starts: its root's start (a read below its branch
    /// point sees its ancestors' history; nothing is below the root's start).
    pub(crate) fn history_start(&self) -> Lsn {
        match self.parent_ref() {
            Some((parent, _)) => parent.history_start(),
            None => self.start(),
        }
    }

    /// Its parent and branch point; `None` for a root or a detached branch.
    pub(crate) fn parent(&self) -> Option<(Arc<Branch>, Lsn)> {
        self.parent_ref()
            .map(|(parent, branch_point)| (Arc::clone(parent), branch_point))
    }

    fn parent_ref(&self) -> Option<(&Arc<Branch>, Lsn)> {
        if self.detached.load(Ordering::Acquire) {
            return None;
        }
        self.parent
            .as_ref()
            .map(|(parent, branch_point)| (parent, *branch_point))
    }

    /// Cuts the link to the parent: the branch now holds, as its own versions and commit
    /// points, everything it read through it, and its history starts at `start`. Only
    /// `apply` calls this, for a detach record.
    pub(crate) fn cut_parent(&self, start: Lsn) {
        self.start.store(start.0, Ordering::Release);
        self.detached.store(true, Ordering::Release);
    }

    /// The branches a read at `lsn` on this branch looks at, each with the LSN it sees
    /// there: this branch at `lsn`, then its parent at `min(lsn, branch point)`, and so on
    /// to the root (Neon's read rule).
    pub(crate) fn lineage(&self, lsn: Lsn) -> impl Iterator<Item = (&Branch, Lsn)> {
        std::iter::successors(Some((self, lsn)), |(branch, lsn)| {
            branch
                .parent_ref()
                .map(|(parent, branch_point)| (parent.as_ref(), (*lsn).min(branch_point)))
        })
    }

    pub(crate) fn head(&self) -> Lsn {
        self.state.read().head
    }

    /// Its own GC cutoff, as GC last set it (0 before any GC).
    pub(crate) fn own_cutoff(&self) -> Lsn {
        Lsn(self.gc_cutoff.load(Ordering::Acquire))
    }

    /// Moves its own cutoff up to `cutoff` (never down). Only GC and restoring a catalog
    /// call this.
    pub(crate) fn advance_cutoff(&self, cutoff: Lsn) {
        self.gc_cutoff.fetch_max(cutoff.0, Ordering::AcqRel);
    }

    /// The oldest LSN the branch can be read at (leases aside): its own cutoff, and below
    /// its branch point its parent's, recursively: `max(own, min(branch point,
    /// parent's effective cutoff))`. A read at L >= branch point needs the parent only at
    /// the branch point, which the parent keeps for it; one below needs the parent's
    /// history at L.
    pub(crate) fn effective_cutoff(&self) -> Lsn {
        let own = self.own_cutoff();
        match self.parent_ref() {
            None => own,
            Some((parent, branch_point)) => own.max(branch_point.min(parent.effective_cutoff())),
        }
    }

    /// Whether `lsn` is at or above `effective_cutoff()`, walking the ancestry only for an
    /// LSN below the branch point (a read at the head costs two loads, whatever the depth).
    pub(crate) fn at_or_above_cutoff(&self, lsn: Lsn) -> bool {
        lsn >= self.own_cutoff()
            && match self.parent_ref() {
                None => true,
                Some((parent, branch_point)) => {
                    lsn >= branch_point || lsn >= parent.effective_cutoff()
                }
            }
    }

    /// Its own PITR window, if it overrides the store's.
    pub(crate) fn pitr_window(&self) -> Option<Duration> {
        self.meta.read().pitr_window
    }

    /// Its current name.
    pub(crate) fn name(&self) -> String {
        self.meta.read().name.clone()
    }

    pub(crate) fn options(&self) -> BranchOptions {
        self.meta.read().options
    }

    pub(crate) fn hidden(&self) -> bool {
        self.meta.read().hidden
    }

    /// When it expires, if ever.
    pub(crate) fn expires_at(&self) -> Option<Timestamp> {
        self.options().expiry.expires_at(self.created)
    }

    /// Whether it has expired by `now`.
    pub(crate) fn expired(&self, now: Timestamp) -> bool {
        self.expires_at().is_some_and(|at| at <= now)
    }

    /// What the store says about it; `kept_for` names the live descendants an expired
    /// branch is kept for.
    pub(crate) fn info(&self, kept_for: Vec<String>) -> BranchInfo {
        let meta = self.meta.read().clone();
        BranchInfo {
            id: self.id,
            name: meta.name,
            parent: self.parent().map(|(parent, lsn)| ParentRef {
                id: parent.id,
                name: parent.name(),
                hidden: parent.hidden(),
                lsn,
            }),
            head: self.head(),
            created: self.created,
            created_lsn: self.created_lsn,
            expiry: meta.options.expiry,
            expires_at: meta.options.expiry.expires_at(self.created),
            protected: meta.options.protected,
            created_at_time: self.created_at_time,
            kept_for,
            pitr_window: meta.pitr_window,
            gc_cutoff: self.effective_cutoff(),
        }
    }
}

/// Live branches: visible ones by name, all (hidden too) by id.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    by_name: BTreeMap<String, Arc<Branch>>,
    by_id: BTreeMap<BranchId, Arc<Branch>>,
    next_id: u64,
    /// No visible branch expires before this (a lower bound, so the expiry sweep can skip
    /// its scan of every branch); `None`: no branch has an expiry.
    earliest_expiry: Option<Timestamp>,
}

/// Refuses the branch id `u64::MAX`, which only damage can make: no id would be left for
/// the next branch (a review's catalog with it panicked every command, `recover` too).
pub(crate) fn check_branch_id(id: BranchId) -> std::result::Result<(), String> {
    match id.0 {
        u64::MAX => Err(format!(
            "branch id {} leaves no id for another branch",
            id.0
        )),
        _ => Ok(()),
    }
}

impl Catalog {
    pub(crate) fn by_name(&self, name: &str) -> Option<&Arc<Branch>> {
        self.by_name.get(name)
    }

    pub(crate) fn by_id(&self, id: BranchId) -> Option<&Arc<Branch>> {
        self.by_id.get(&id)
    }

    /// Whether some visible branch may have expired by `now` (if not, the sweep has
    /// nothing to do).
    pub(crate) fn may_have_expired(&self, now: Timestamp) -> bool {
        self.earliest_expiry.is_some_and(|earliest| earliest <= now)
    }

    /// Takes in a branch's new expiry time.
    pub(crate) fn note_expiry(&mut self, expires_at: Option<Timestamp>) {
        if let Some(at) = expires_at {
            self.earliest_expiry = Some(self.earliest_expiry.map_or(at, |old| old.min(at)));
        }
    }

    /// Recomputes the earliest expiry of the visible branches (after a sweep).
    pub(crate) fn refresh_earliest_expiry(&mut self) {
        self.earliest_expiry = self
            .by_name
            .values()
            .filter_map(|branch| branch.expires_at())
            .min();
    }

    pub(crate) fn next_id(&self) -> BranchId {
        BranchId(self.next_id.max(1))
    }

    /// Every live branch, hidden ones too, parents before children (by id).
    pub(crate) fn branches(&self) -> impl Iterator<Item = &Arc<Branch>> {
        self.by_id.values()
    }

    /// The branches users see, by name.
    pub(crate) fn visible(&self) -> impl Iterator<Item = &Arc<Branch>> {
        self.by_name.values()
    }

    /// Visible branches in name order, from `start` on.
    pub(crate) fn visible_from(
        &self,
        start: std::ops::Bound<&str>,
    ) -> impl Iterator<Item = &Arc<Branch>> {
        self.by_name
            .range::<str, _>((start, std::ops::Bound::Unbounded))
            .map(|(_, branch)| branch)
    }

    /// The live children of `id`, hidden ones too.
    pub(crate) fn children_of(&self, id: BranchId) -> Vec<Arc<Branch>> {
        self.by_id
            .values()
            .filter(|branch| {
                branch
                    .parent_ref()
                    .is_some_and(|(parent, _)| parent.id == id)
            })
            .cloned()
            .collect()
    }

    /// Names of the children of `id` for an error: hidden ones say so.
    pub(crate) fn child_names(&self, id: BranchId) -> Vec<String> {
        self.children_of(id)
            .iter()
            .map(|child| {
                let meta = child.meta.read();
                if meta.hidden {
                    format!("{} (an old state kept for its own children)", meta.name)
                } else {
                    meta.name.clone()
                }
            })
            .collect()
    }

    /// The visible, unexpired descendants an expired branch is kept for (hidden
    /// descendants are looked through); empty if nothing needs it. `expired` says whether
    /// a branch has expired (the store's answer counts holds).
    pub(crate) fn live_descendants(
        &self,
        id: BranchId,
        expired: impl Fn(&Branch) -> bool,
    ) -> Vec<String> {
        let mut live = Vec::new();
        let mut pending = self.children_of(id);
        while let Some(child) = pending.pop() {
            let meta = child.meta.read().clone();
            if !meta.hidden && !expired(&child) {
                live.push(meta.name);
            } else {
                pending.extend(self.children_of(child.id));
            }
        }
        live.sort();
        live
    }

    pub(crate) fn insert(&mut self, branch: Arc<Branch>) {
        let meta = branch.meta.read().clone();
        assert!(
            meta.hidden || !self.by_name.contains_key(&meta.name),
            "branch names are unique"
        );
        assert!(
            branch.id.0 >= self.next_id.max(1),
            "branch ids are never reused"
        );
        if let Some((parent, _)) = branch.parent() {
            assert!(parent.id < branch.id, "a parent is older than its children");
        }
        // Saturating: the decoders refuse the id `u64::MAX` (`check_branch_id`).
        self.next_id = branch.id.0.saturating_add(1);
        if !meta.hidden {
            self.note_expiry(branch.expires_at());
        }
        self.by_id.insert(branch.id, Arc::clone(&branch));
        if !meta.hidden {
            self.by_name.insert(meta.name, branch);
        }
    }

    /// Gives visible branch `id` a new name.
    pub(crate) fn rename(&mut self, id: BranchId, name: String) {
        let branch = self.by_id.get(&id).expect("renamed branch exists").clone();
        let mut meta = branch.meta.write();
        assert!(!meta.hidden, "a hidden branch has no name to change");
        assert!(!self.by_name.contains_key(&name), "branch names are unique");
        self.by_name.remove(&meta.name);
        meta.name.clone_from(&name);
        drop(meta);
        self.by_name.insert(name, branch);
    }

    /// Hides visible branch `id`: it loses its place among the names.
    pub(crate) fn hide(&mut self, id: BranchId) {
        let branch = self.by_id.get(&id).expect("hidden branch exists").clone();
        let mut meta = branch.meta.write();
        self.by_name.remove(&meta.name);
        meta.hidden = true;
        meta.options.protected = false;
    }

    /// Makes sure no id below `next` is handed out again (ids of deleted branches, known
    /// from a checkpoint).
    pub(crate) fn reserve_ids_below(&mut self, next: BranchId) {
        self.next_id = self.next_id.max(next.0);
    }

    pub(crate) fn remove(&mut self, id: BranchId) -> Option<Arc<Branch>> {
        let branch = self.by_id.remove(&id)?;
        let meta = branch.meta.read();
        if !meta.hidden {
            self.by_name.remove(&meta.name);
        }
        drop(meta);
        Some(branch)
    }
}
