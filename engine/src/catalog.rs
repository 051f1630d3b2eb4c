//! The catalog of live branches and each branch's in-memory state.
//!
//! Invariants it keeps:
//! - A branch holds its parent by `Arc` with the branch point; a parent cannot be deleted
//!   while it has children, so the chain of ancestors is always complete.
//! - A branch's head only moves forward; its commit points are in LSN order and their times
//!   never decrease (the store assigns times in log order).
//! - Names are unique among live branches; ids are never reused.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pagefork_wal::Lsn;
use parking_lot::{Mutex, RwLock};

use crate::branch::{BranchId, BranchInfo, BranchOptions, LsnForTime, ParentRef};
use crate::key::Key;
use crate::layer::LayerMap;
use crate::time::Timestamp;
use crate::versions::PageVersions;

/// The LSN and time of one commit on a branch.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct CommitPoint {
    pub(crate) lsn: Lsn,
    pub(crate) time: Timestamp,
}

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
    /// needed for this branch's pages).
    pub(crate) flushed: Lsn,
    /// Own commits, in LSN order.
    pub(crate) commits: Vec<CommitPoint>,
    /// Set when the branch is deleted; an operation that found the branch before the delete
    /// checks this under the branch's locks.
    pub(crate) deleted: bool,
}

impl BranchState {
    /// Own commits at or below `lsn`.
    pub(crate) fn commits_up_to(&self, lsn: Lsn) -> &[CommitPoint] {
        let end = self.commits.partition_point(|commit| commit.lsn <= lsn);
        self.commits.get(..end).unwrap_or_default()
    }

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

/// A live (or just deleted) branch.
#[derive(Debug)]
pub(crate) struct Branch {
    pub(crate) id: BranchId,
    pub(crate) name: String,
    pub(crate) parent: Option<(Arc<Branch>, Lsn)>,
    pub(crate) created: Timestamp,
    pub(crate) created_lsn: Lsn,
    pub(crate) options: BranchOptions,
    pub(crate) created_at_time: Option<LsnForTime>,
    /// Bounds of every key the branch holds versions of (open, frozen or in layers), as
    /// `Key::packed`: a read of a key outside them skips the branch without locking it.
    /// Only ever widened.
    pub(crate) key_bounds: KeyBounds,
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
            name,
            parent,
            created,
            created_lsn,
            options,
            created_at_time,
            key_bounds: KeyBounds::default(),
            commit_lock: Mutex::new(()),
            state: RwLock::new(BranchState {
                head: start,
                open: PageVersions::default(),
                frozen: None,
                layers: LayerMap::default(),
                flushed: start,
                commits: Vec::new(),
                deleted: false,
            }),
        }
    }

    /// Where the branch's own history starts: its branch point, or for a root the LSN of
    /// its creation.
    pub(crate) fn start(&self) -> Lsn {
        self.parent
            .as_ref()
            .map_or(self.created_lsn, |(_, branch_point)| *branch_point)
    }

    /// The branches a read at `lsn` on this branch looks at, each with the LSN it sees
    /// there: this branch at `lsn`, then its parent at `min(lsn, branch point)`, and so on
    /// to the root (Neon's read rule).
    pub(crate) fn lineage(&self, lsn: Lsn) -> impl Iterator<Item = (&Branch, Lsn)> {
        std::iter::successors(Some((self, lsn)), |(branch, lsn)| {
            branch
                .parent
                .as_ref()
                .map(|(parent, branch_point)| (parent.as_ref(), (*lsn).min(*branch_point)))
        })
    }

    pub(crate) fn head(&self) -> Lsn {
        self.state.read().head
    }

    pub(crate) fn info(&self) -> BranchInfo {
        BranchInfo {
            id: self.id,
            name: self.name.clone(),
            parent: self.parent.as_ref().map(|(parent, lsn)| ParentRef {
                id: parent.id,
                name: parent.name.clone(),
                lsn: *lsn,
            }),
            head: self.head(),
            created: self.created,
            created_lsn: self.created_lsn,
            expiry: self.options.expiry,
            expires_at: self.options.expiry.expires_at(self.created),
            protected: self.options.protected,
            created_at_time: self.created_at_time,
        }
    }
}

/// Live branches by name and id.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    by_name: BTreeMap<String, Arc<Branch>>,
    by_id: HashMap<BranchId, Arc<Branch>>,
    next_id: u64,
}

impl Catalog {
    pub(crate) fn by_name(&self, name: &str) -> Option<&Arc<Branch>> {
        self.by_name.get(name)
    }

    pub(crate) fn by_id(&self, id: BranchId) -> Option<&Arc<Branch>> {
        self.by_id.get(&id)
    }

    pub(crate) fn next_id(&self) -> BranchId {
        BranchId(self.next_id.max(1))
    }

    pub(crate) fn branches(&self) -> impl Iterator<Item = &Arc<Branch>> {
        self.by_name.values()
    }

    /// Names of the live children of `id`.
    pub(crate) fn children_of(&self, id: BranchId) -> Vec<String> {
        self.by_name
            .values()
            .filter(|branch| {
                branch
                    .parent
                    .as_ref()
                    .is_some_and(|(parent, _)| parent.id == id)
            })
            .map(|branch| branch.name.clone())
            .collect()
    }

    pub(crate) fn insert(&mut self, branch: Arc<Branch>) {
        assert!(
            !self.by_name.contains_key(&branch.name),
            "branch names are unique"
        );
        assert!(
            branch.id.0 >= self.next_id.max(1),
            "branch ids are never reused"
        );
        self.next_id = branch.id.0 + 1;
        self.by_id.insert(branch.id, Arc::clone(&branch));
        self.by_name.insert(branch.name.clone(), branch);
    }

    /// Makes sure no id below `next` is handed out again (ids of deleted branches, known
    /// from a checkpoint).
    pub(crate) fn reserve_ids_below(&mut self, next: BranchId) {
        self.next_id = self.next_id.max(next.0);
    }

    pub(crate) fn remove(&mut self, id: BranchId) -> Option<Arc<Branch>> {
        let branch = self.by_id.remove(&id)?;
        self.by_name.remove(&branch.name);
        Some(branch)
    }
}
