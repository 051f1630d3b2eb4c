//! The reference model: a deliberately naive implementation of the store's semantics,
//! small enough to check by eye, for use as an oracle in property tests (ours and yours).
//!
//! Each branch keeps its list of commits. A read at LSN L replays the branch's commits at
//! or below L on top of its parent's state at min(L, branch point), recursively. Nothing is
//! cached or indexed. The model does not hand out LSNs or times: feed it the ones the store
//! answered with, and compare what the store reads and refuses with what the model says.
//!
//! The lifecycle: a reset or restore gives the name to a new branch and keeps the old one
//! under a backup name or hidden (while it has children). A detach copies into the branch
//! every commit it saw through its ancestors and makes it a root with the same cutoff. Expiry follows the time given
//! to [`Model::set_now`] (keep it equal to the store clock's, and run the store's
//! `sweep_expired` after moving its clock): an expired branch is refused everywhere, kept
//! while an unexpired descendant needs it, and otherwise gone.
//!
//! GC: call [`Model::gc`] when the store's `gc` ran (with the same clock). The model keeps
//! every commit, but refuses what the store must refuse: anything below a branch's
//! cutoff that no lease holds (`Refusal::BelowGcCutoff`).
//!
//! ```
//! use bytes::Bytes;
//! use pagefork_engine::model::Model;
//! use pagefork_engine::{At, Config, Key, Store, Update};
//! # fn main() -> Result<(), pagefork_engine::EngineError> {
//! let store = Store::in_memory(Config::default())?;
//! let main = store.branch_info("main")?;
//! let mut model = Model::new(store.page_size(), "main", main.created_lsn, main.created);
//! let updates = vec![(Key::new(1, 0), Update::Image(Bytes::from(vec![9u8; 8192])))];
//! assert_eq!(model.check_commit("main", &updates), Ok(()));
//! let commit = store.commit("main", updates.clone())?;
//! model.commit("main", updates, commit.lsn, commit.time);
//! let page = store.get_page("main", Key::new(1, 0), At::Latest)?;
//! assert_eq!(page.map(|page| page.to_vec()), model.page("main", Key::new(1, 0), commit.lsn));
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use pagefork_wal::Lsn;

use crate::branch::{
    At, Backup, BranchOptions, Expiry, LsnForTime, TimeKind, validate_branch_name,
};
use crate::error::EngineError;
use crate::key::Key;
use crate::store::{DEFAULT_PITR_WINDOW, default_backup_name};
use crate::time::Timestamp;
use crate::update::Update;

/// The kind of refusal an operation must get. Compare with [`Refusal::of`] a store error.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Refusal {
    /// No live branch by that name.
    UnknownBranch,
    /// The name is taken.
    BranchExists,
    /// The name breaks the rule.
    InvalidBranchName,
    /// A commit without updates.
    EmptyCommit,
    /// A key twice in one commit.
    DuplicateKey,
    /// An image that is not one page.
    ImageSize,
    /// A patch past the page end.
    PatchOutOfBounds,
    /// A patch on a page that does not exist.
    PatchOnMissingPage,
    /// An LSN past the head.
    LsnPastHead,
    /// A branch point below the parent's start.
    LsnBelowBranchStart,
    /// A time before the history.
    TimeBeforeHistory,
    /// A delete of a branch with children.
    HasChildren,
    /// A delete of (or an expiry on) the store's last branch that never expires.
    LastBranch,
    /// The branch has expired.
    BranchExpired,
    /// The branch is protected.
    Protected,
    /// An expiry on a protected branch.
    ExpiryOnProtected,
    /// An expiry time already past.
    ExpiryInPast,
    /// An expiry (of a branch or a lease) past the latest time a store can hold.
    ExpiryTooLate,
    /// A PITR window longer than a store can hold.
    PitrWindowTooLong,
    /// A reset of a root.
    NoParent,
    /// An LSN (or the LSN a time resolves to) below the branch's GC cutoff, not leased.
    BelowGcCutoff,
    /// A lease of no length.
    EmptyLease,
}

impl Refusal {
    /// The refusal a store error stands for, or `None` for errors that are failures, not
    /// refusals (I/O, corruption).
    pub fn of(error: &EngineError) -> Option<Refusal> {
        Some(match error {
            EngineError::UnknownBranch { .. } => Refusal::UnknownBranch,
            EngineError::BranchExists { .. } => Refusal::BranchExists,
            EngineError::InvalidBranchName { .. }
            | EngineError::DefaultBackupNameInvalid { .. } => Refusal::InvalidBranchName,
            EngineError::EmptyCommit { .. } => Refusal::EmptyCommit,
            EngineError::DuplicateKey { .. } => Refusal::DuplicateKey,
            EngineError::ImageSize { .. } => Refusal::ImageSize,
            EngineError::PatchOutOfBounds { .. } => Refusal::PatchOutOfBounds,
            EngineError::PatchOnMissingPage { .. } => Refusal::PatchOnMissingPage,
            EngineError::LsnPastHead { .. } => Refusal::LsnPastHead,
            EngineError::LsnBelowBranchStart { .. } => Refusal::LsnBelowBranchStart,
            EngineError::TimeBeforeHistory { .. } => Refusal::TimeBeforeHistory,
            EngineError::HasChildren { .. } => Refusal::HasChildren,
            EngineError::LastBranch { .. } => Refusal::LastBranch,
            EngineError::BranchExpired { .. } => Refusal::BranchExpired,
            EngineError::Protected { .. } => Refusal::Protected,
            EngineError::ExpiryOnProtected { .. } => Refusal::ExpiryOnProtected,
            EngineError::ExpiryInPast { .. } => Refusal::ExpiryInPast,
            EngineError::ExpiryTooLate { .. } => Refusal::ExpiryTooLate,
            EngineError::PitrWindowTooLong { .. } => Refusal::PitrWindowTooLong,
            EngineError::NoParent { .. } => Refusal::NoParent,
            EngineError::BelowGcCutoff { .. } => Refusal::BelowGcCutoff,
            EngineError::EmptyLease { .. } => Refusal::EmptyLease,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug)]
struct ModelCommit {
    lsn: Lsn,
    time: Timestamp,
    updates: Vec<(Key, Update)>,
}

#[derive(Clone, Debug)]
struct ModelBranch {
    name: String,
    /// Replaced without a backup: no name, kept while it has children.
    hidden: bool,
    parent: Option<(usize, Lsn)>,
    created_lsn: Lsn,
    expires_at: Option<Timestamp>,
    protected: bool,
    /// Its own PITR window, if set.
    pitr_window: Option<Duration>,
    /// Its own GC cutoff, as the last `gc` left it.
    cutoff: Lsn,
    /// Set by a detach: where its history starts (its old root's start) and its old
    /// branch point (its head until it commits).
    detached: Option<(Lsn, Lsn)>,
    commits: Vec<ModelCommit>,
}

/// Which pages differ between two states, as [`crate::PageDiff`] lists them.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ModelDiff {
    /// Pages only the second state has.
    pub added: Vec<Key>,
    /// Pages only the first state has.
    pub removed: Vec<Key>,
    /// Pages both have, with different bytes.
    pub changed: Vec<Key>,
}

/// The naive model of a store (see the module docs).
#[derive(Clone, Debug)]
pub struct Model {
    page_size: usize,
    now: Timestamp,
    /// Live branches (hidden ones too) by creation order.
    branches: BTreeMap<usize, ModelBranch>,
    next_id: usize,
    /// The store's default PITR window.
    pitr_window: Duration,
    /// (branch id, LSN) -> until.
    leases: BTreeMap<(usize, Lsn), Timestamp>,
}

impl Model {
    /// A model of a new store whose root branch `root` was created at `root_created_lsn`,
    /// at time `now`.
    pub fn new(page_size: usize, root: &str, root_created_lsn: Lsn, now: Timestamp) -> Model {
        Model {
            page_size,
            now,
            branches: BTreeMap::from([(
                0,
                ModelBranch {
                    name: root.to_owned(),
                    hidden: false,
                    parent: None,
                    created_lsn: root_created_lsn,
                    expires_at: None,
                    protected: false,
                    pitr_window: None,
                    cutoff: Lsn(0),
                    detached: None,
                    commits: Vec::new(),
                },
            )]),
            next_id: 1,
            pitr_window: DEFAULT_PITR_WINDOW,
            leases: BTreeMap::new(),
        }
    }

    /// The model of a store whose `Config::pitr_window` is `window`.
    pub fn with_pitr_window(mut self, window: Duration) -> Model {
        self.pitr_window = window;
        self
    }

    /// Moves the model's clock (keep it equal to the store clock), and removes the
    /// expired branches nothing needs, as the store's sweep does.
    pub fn set_now(&mut self, now: Timestamp) {
        self.now = now;
        self.sweep();
    }

    /// Removes expired branches that no unexpired descendant needs (the store sweeps
    /// after a clock move, and before and after every delete, reset and restore).
    fn sweep(&mut self) {
        loop {
            let gone = self.live_ids().find(|id| {
                let branch = self.branch(*id);
                self.expired_id(*id) && !branch.hidden && self.children(*id).is_empty()
            });
            match gone {
                Some(id) => self.remove(id),
                None => return,
            }
        }
    }

    fn live_ids(&self) -> impl Iterator<Item = usize> + '_ {
        self.branches.keys().copied()
    }

    fn branch(&self, id: usize) -> &ModelBranch {
        self.branches.get(&id).expect("a live branch")
    }

    fn branch_mut(&mut self, id: usize) -> &mut ModelBranch {
        self.branches.get_mut(&id).expect("a live branch")
    }

    fn add(&mut self, branch: ModelBranch) {
        self.branches.insert(self.next_id, branch);
        self.next_id += 1;
    }

    fn expired_id(&self, id: usize) -> bool {
        let branch = self.branch(id);
        !branch.hidden && branch.expires_at.is_some_and(|at| at <= self.now)
    }

    fn children(&self, id: usize) -> Vec<usize> {
        self.live_ids()
            .filter(|child| {
                self.branch(*child)
                    .parent
                    .is_some_and(|(parent, _)| parent == id)
            })
            .collect()
    }

    /// Removes `id`, then its hidden ancestors left without children.
    fn remove(&mut self, id: usize) {
        let parent = self.branch(id).parent;
        self.branches.remove(&id);
        self.leases.retain(|(branch, _), _| *branch != id);
        if let Some((parent, _)) = parent
            && self.branch(parent).hidden
            && self.children(parent).is_empty()
        {
            self.remove(parent);
        }
    }

    /// Names of the branches listed (live, and expired ones kept for descendants), sorted.
    pub fn branch_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .live_ids()
            .filter(|id| !self.branch(*id).hidden)
            .map(|id| self.branch(id).name.clone())
            .collect();
        names.sort();
        names
    }

    /// Whether listed branch `name` has expired (and is kept only for its descendants).
    pub fn expired(&self, name: &str) -> bool {
        self.find(name).is_ok_and(|id| self.expired_id(id))
    }

    /// The id of the listed branch named `name` (expired or not).
    fn find(&self, name: &str) -> Result<usize, Refusal> {
        self.live_ids()
            .find(|id| !self.branch(*id).hidden && self.branch(*id).name == name)
            .ok_or(Refusal::UnknownBranch)
    }

    /// The id of branch `name` if operations may use it: it exists and has not expired.
    fn usable(&self, name: &str) -> Result<usize, Refusal> {
        let id = self.find(name)?;
        if self.expired_id(id) {
            return Err(Refusal::BranchExpired);
        }
        Ok(id)
    }

    fn start_of(&self, id: usize) -> Lsn {
        let branch = self.branch(id);
        match (branch.parent, branch.detached) {
            (Some((_, branch_point)), _) => branch_point,
            (None, Some((start, _))) => start,
            (None, None) => branch.created_lsn,
        }
    }

    /// Where the history a read of branch `id` can reach starts: its root's start.
    fn history_start_of(&self, id: usize) -> Lsn {
        match self.branch(id).parent {
            Some((parent, _)) => self.history_start_of(parent),
            None => self.start_of(id),
        }
    }

    fn head_of(&self, id: usize) -> Lsn {
        let branch = self.branch(id);
        let floor = branch
            .detached
            .map_or(self.start_of(id), |(_, branch_point)| branch_point);
        branch
            .commits
            .last()
            .map_or(floor, |commit| commit.lsn.max(floor))
    }

    /// Where a branch's own history starts: its branch point, or its creation for a root.
    pub fn start(&self, branch: &str) -> Result<Lsn, Refusal> {
        Ok(self.start_of(self.find(branch)?))
    }

    /// A branch's head: its last commit, or its start if it has none.
    pub fn head(&self, branch: &str) -> Result<Lsn, Refusal> {
        Ok(self.head_of(self.find(branch)?))
    }

    /// Listed branch `branch`'s expiry, protection and own PITR window (`None`: the
    /// store's), as `BranchInfo` shows them.
    pub fn settings(
        &self,
        branch: &str,
    ) -> Result<(Option<Timestamp>, bool, Option<Duration>), Refusal> {
        let model = self.branch(self.find(branch)?);
        Ok((model.expires_at, model.protected, model.pitr_window))
    }

    fn pages_of(&self, id: usize, lsn: Lsn) -> BTreeMap<Key, Vec<u8>> {
        let model = self.branch(id);
        let mut pages = match model.parent {
            Some((parent, branch_point)) => self.pages_of(parent, lsn.min(branch_point)),
            None => BTreeMap::new(),
        };
        for commit in model.commits.iter().filter(|commit| commit.lsn <= lsn) {
            for (key, update) in &commit.updates {
                match update {
                    Update::Image(image) => {
                        pages.insert(*key, image.to_vec());
                    }
                    Update::Patch { offset, bytes } => {
                        let page = pages.get_mut(key).expect("patches only on existing pages");
                        let start = *offset as usize;
                        page.get_mut(start..start + bytes.len())
                            .expect("patches within the page")
                            .copy_from_slice(bytes);
                    }
                    Update::Drop => {
                        pages.remove(key);
                    }
                }
            }
        }
        pages
    }

    /// Every page of `branch` at `lsn`, rebuilt from scratch.
    pub fn pages(&self, branch: &str, lsn: Lsn) -> BTreeMap<Key, Vec<u8>> {
        self.find(branch)
            .map(|id| self.pages_of(id, lsn))
            .unwrap_or_default()
    }

    /// Page `key` of `branch` at `lsn`.
    pub fn page(&self, branch: &str, key: Key, lsn: Lsn) -> Option<Vec<u8>> {
        self.pages(branch, lsn).remove(&key)
    }

    /// Whether the store must refuse this commit, and why.
    pub fn check_commit(&self, branch: &str, updates: &[(Key, Update)]) -> Result<(), Refusal> {
        let id = self.usable(branch)?;
        if updates.is_empty() {
            return Err(Refusal::EmptyCommit);
        }
        let pages = self.pages_of(id, self.head_of(id));
        let mut seen = BTreeSet::new();
        for (key, update) in updates {
            if !seen.insert(*key) {
                return Err(Refusal::DuplicateKey);
            }
            match update {
                Update::Image(image) if image.len() != self.page_size => {
                    return Err(Refusal::ImageSize);
                }
                Update::Patch { offset, bytes } => {
                    if *offset as usize + bytes.len() > self.page_size {
                        return Err(Refusal::PatchOutOfBounds);
                    }
                    if !pages.contains_key(key) {
                        return Err(Refusal::PatchOnMissingPage);
                    }
                }
                Update::Image(_) | Update::Drop => {}
            }
        }
        Ok(())
    }

    /// Records a commit the store accepted, with the LSN and time it answered.
    pub fn commit(&mut self, branch: &str, updates: Vec<(Key, Update)>, lsn: Lsn, time: Timestamp) {
        assert_eq!(
            self.check_commit(branch, &updates),
            Ok(()),
            "the model would refuse this commit"
        );
        let id = self.usable(branch).expect("checked above");
        self.branch_mut(id)
            .commits
            .push(ModelCommit { lsn, time, updates });
    }

    /// Appends the commits branch `id` shows at or below `upper`, its ancestors' first.
    fn visible_commits<'a>(&'a self, id: usize, upper: Lsn, out: &mut Vec<&'a ModelCommit>) {
        let model = self.branch(id);
        if let Some((parent, branch_point)) = model.parent {
            self.visible_commits(parent, upper.min(branch_point), out);
        }
        out.extend(model.commits.iter().filter(|commit| commit.lsn <= upper));
    }

    fn root_start(&self, id: usize) -> Lsn {
        match self.branch(id).parent {
            Some((parent, _)) => self.root_start(parent),
            None => self.start_of(id),
        }
    }

    fn lsn_for_time_of(&self, id: usize, time: Timestamp) -> LsnForTime {
        let head = self.head_of(id);
        let mut commits = Vec::new();
        self.visible_commits(id, head, &mut commits);
        let visible: Vec<(Lsn, Timestamp)> = commits
            .iter()
            .map(|commit| (commit.lsn, commit.time))
            .collect();
        let last_at_or_before = visible
            .iter()
            .enumerate()
            .rev()
            .find(|(_, (_, commit_time))| *commit_time <= time);
        let (lsn, commit_time, kind) = match last_at_or_before {
            _ if visible.is_empty() => (head, None, TimeKind::NoData),
            None => (self.root_start(id), None, TimeKind::Past),
            Some((index, (_, commit_time))) if index + 1 == visible.len() => {
                (head, Some(*commit_time), TimeKind::Future)
            }
            Some((_, (lsn, commit_time))) => (*lsn, Some(*commit_time), TimeKind::Present),
        };
        LsnForTime {
            requested: time,
            lsn,
            commit_time,
            kind,
        }
    }

    /// Which LSN shows `branch` as it was at `time` (see [`crate::Store::lsn_for_time`]).
    pub fn lsn_for_time(&self, branch: &str, time: Timestamp) -> Result<LsnForTime, Refusal> {
        let id = self.usable(branch)?;
        let answer = self.lsn_for_time_of(id, time);
        // A time before the history is an answer, whatever GC did.
        if answer.kind != TimeKind::Past {
            self.check_available(id, answer.lsn)?;
        }
        Ok(answer)
    }

    fn resolve_of(&self, id: usize, at: At) -> Result<Lsn, Refusal> {
        let lsn = self.resolve_unchecked_of(id, at)?;
        self.check_available(id, lsn)?;
        Ok(lsn)
    }

    /// `resolve_of` without the GC check (see `branch_point`).
    fn resolve_unchecked_of(&self, id: usize, at: At) -> Result<Lsn, Refusal> {
        let head = self.head_of(id);
        let lsn = match at {
            At::Latest => head,
            At::Lsn(lsn) if lsn > head => return Err(Refusal::LsnPastHead),
            At::Lsn(lsn) if lsn < self.history_start_of(id) => {
                return Err(Refusal::LsnBelowBranchStart);
            }
            At::Lsn(lsn) => lsn,
            At::Time(time) => match self.lsn_for_time_of(id, time) {
                answer if answer.kind == TimeKind::Past => {
                    return Err(Refusal::TimeBeforeHistory);
                }
                answer => answer.lsn,
            },
        };
        Ok(lsn)
    }

    /// The oldest LSN branch `id` can be read at besides leases: its own cutoff, and
    /// below its branch point its parent's (see `Store::gc`).
    fn effective_cutoff(&self, id: usize) -> Lsn {
        let branch = self.branch(id);
        match branch.parent {
            None => branch.cutoff,
            Some((parent, point)) => branch.cutoff.max(point.min(self.effective_cutoff(parent))),
        }
    }

    /// A branch's GC cutoff (effective: its ancestors' below its branch point count).
    pub fn cutoff(&self, branch: &str) -> Result<Lsn, Refusal> {
        Ok(self.effective_cutoff(self.find(branch)?))
    }

    fn check_available(&self, id: usize, lsn: Lsn) -> Result<(), Refusal> {
        let leased = self
            .leases
            .get(&(id, lsn))
            .is_some_and(|until| *until > self.now);
        if lsn >= self.effective_cutoff(id) || leased {
            Ok(())
        } else {
            Err(Refusal::BelowGcCutoff)
        }
    }

    /// Whether the store must refuse setting `branch`'s PITR window to `window`.
    pub fn check_set_pitr_window(
        &self,
        branch: &str,
        window: Option<Duration>,
    ) -> Result<(), Refusal> {
        self.usable(branch)?;
        match window {
            Some(window) if window > crate::MAX_PITR_WINDOW => Err(Refusal::PitrWindowTooLong),
            _ => Ok(()),
        }
    }

    /// Records a PITR window change the store accepted.
    pub fn set_pitr_window(&mut self, branch: &str, window: Option<Duration>) {
        let id = self.usable(branch).expect("an accepted change");
        self.branch_mut(id).pitr_window = window;
    }

    /// When a lease on `branch` at `lsn` for `duration` taken now would end, or the refusal.
    pub fn check_lease(
        &self,
        branch: &str,
        lsn: Lsn,
        duration: Duration,
    ) -> Result<Timestamp, Refusal> {
        let id = self.usable(branch)?;
        if duration.is_zero() {
            return Err(Refusal::EmptyLease);
        }
        // A lease keeps a point of the branch's own history.
        if lsn < self.start_of(id) {
            return Err(Refusal::LsnBelowBranchStart);
        }
        self.branch_point(id, At::Lsn(lsn))?;
        let until = self.now.saturating_add(duration);
        if until > Timestamp::MAX {
            return Err(Refusal::ExpiryTooLate);
        }
        Ok(self
            .leases
            .get(&(id, lsn))
            .map_or(until, |old| (*old).max(until)))
    }

    /// Records a lease the store granted.
    pub fn lease(&mut self, branch: &str, lsn: Lsn, duration: Duration) {
        let until = self
            .check_lease(branch, lsn, duration)
            .expect("an accepted lease");
        let id = self.usable(branch).expect("checked above");
        self.leases.insert((id, lsn), until);
    }

    /// What a GC run does to what can be read: every branch's own cutoff moves up to the
    /// last commit at or before `now - window` (its head if none is later), never down.
    /// A hidden or expired branch's goes to its head, or to the lowest cutoff a child
    /// keeps below its branch point (the child reads it there). Expired leases are
    /// dropped.
    pub fn gc(&mut self) {
        // An expired lease is forgotten, even if the clock later steps back before its end.
        let now = self.now;
        self.leases.retain(|_, until| *until > now);
        let ids: Vec<usize> = self.live_ids().collect();
        let mut cutoffs = BTreeMap::new();
        let moved: Vec<(usize, Lsn)> = ids
            .into_iter()
            .map(|id| (id, self.cutoff_after_gc(id, &mut cutoffs)))
            .collect();
        for (id, cutoff) in moved {
            self.branch_mut(id).cutoff = cutoff;
        }
    }

    /// Branch `id`'s own cutoff after this GC (memoized in `cutoffs`).
    fn cutoff_after_gc(&self, id: usize, cutoffs: &mut BTreeMap<usize, Lsn>) -> Lsn {
        if let Some(cutoff) = cutoffs.get(&id) {
            return *cutoff;
        }
        let head = self.head_of(id);
        let branch = self.branch(id);
        let target = if branch.hidden || self.expired_id(id) {
            // Read by nobody itself, but its children read through it below their
            // branch points, down to their own cutoffs (found by a review: their PITR
            // windows lost that history at the next GC).
            let mut target = head;
            for child in self.children(id) {
                let (_, point) = self.branch(child).parent.expect("a child has a parent");
                let child_cutoff = self.cutoff_after_gc(child, cutoffs);
                if child_cutoff < point {
                    target = target.min(child_cutoff);
                }
            }
            target
        } else {
            let window = branch.pitr_window.unwrap_or(self.pitr_window);
            let answer = self.lsn_for_time_of(id, self.now.saturating_sub(window));
            match answer.kind {
                TimeKind::Present => answer.lsn,
                TimeKind::Future | TimeKind::NoData => head,
                TimeKind::Past => Lsn(0),
            }
        };
        let cutoff = self.branch(id).cutoff.max(target.min(head));
        cutoffs.insert(id, cutoff);
        cutoff
    }

    /// The LSN `at` means on `branch`, or the refusal.
    pub fn resolve(&self, branch: &str, at: At) -> Result<Lsn, Refusal> {
        self.resolve_of(self.usable(branch)?, at)
    }

    /// The branch point `at` means on `parent` for a new branch, or the refusal: refused
    /// where a read of `parent` would be, as the store does.
    fn branch_point(&self, parent: usize, at: At) -> Result<Lsn, Refusal> {
        let lsn = self.resolve_unchecked_of(parent, at)?;
        self.check_available(parent, lsn)?;
        // An expired ancestor gets no new child, as an expired parent does not.
        if self.expired_id(self.owner_of(parent, lsn)) {
            return Err(Refusal::BranchExpired);
        }
        Ok(lsn)
    }

    /// The branch whose own history holds `branch`'s state at `lsn` (at or above its
    /// root's start): `branch` itself, or below its start the ancestor a read looks in. A
    /// branch created from `branch` at `lsn` is that one's child, as in the store.
    fn owner_of(&self, branch: usize, lsn: Lsn) -> usize {
        let mut owner = branch;
        while lsn < self.start_of(owner) {
            match self.branch(owner).parent {
                Some((parent, _)) => owner = parent,
                None => break,
            }
        }
        owner
    }

    fn check_expiry(&self, options: BranchOptions) -> Result<(), Refusal> {
        if options.protected && options.expiry != Expiry::Never {
            return Err(Refusal::ExpiryOnProtected);
        }
        match options.expiry.expires_at(self.now) {
            Some(at) if at <= self.now => Err(Refusal::ExpiryInPast),
            Some(at) if at > Timestamp::MAX => Err(Refusal::ExpiryTooLate),
            _ => Ok(()),
        }
    }

    fn check_name_free(&self, name: &str) -> Result<(), Refusal> {
        match self.find(name) {
            Ok(_) => Err(Refusal::BranchExists),
            Err(_) => Ok(()),
        }
    }

    /// The branch point a new branch `name` from `parent` at `at` gets, or the refusal.
    pub fn check_create_branch(
        &self,
        name: &str,
        parent: &str,
        at: At,
        options: BranchOptions,
    ) -> Result<Lsn, Refusal> {
        validate_branch_name(name).map_err(|_| Refusal::InvalidBranchName)?;
        self.check_expiry(options)?;
        self.check_name_free(name)?;
        self.branch_point(self.usable(parent)?, at)
    }

    /// Records a branch the store created, with the branch point and creation LSN it
    /// answered. Its expiry is the model's own: a TTL counts from the model's clock (the
    /// time the store answered is held from going backwards; taking it mirrored a store
    /// whose TTLs counted from it, found by a review).
    pub fn create_branch(
        &mut self,
        name: &str,
        parent: &str,
        branch_point: Lsn,
        created_lsn: Lsn,
        options: BranchOptions,
    ) {
        let parent = self.usable(parent).expect("a usable parent");
        assert_eq!(self.check_name_free(name), Ok(()), "branch {name} exists");
        let parent = self.owner_of(parent, branch_point);
        self.add(ModelBranch {
            name: name.to_owned(),
            hidden: false,
            parent: Some((parent, branch_point)),
            created_lsn,
            expires_at: options.expiry.expires_at(self.now),
            protected: options.protected,
            pitr_window: None,
            cutoff: Lsn(0),
            detached: None,
            commits: Vec::new(),
        });
    }

    /// Whether the store must refuse deleting `branch`, and why.
    pub fn check_delete_branch(&self, branch: &str) -> Result<(), Refusal> {
        let id = self.usable(branch)?;
        if self.branch(id).protected {
            return Err(Refusal::Protected);
        }
        if !self.children(id).is_empty() {
            return Err(Refusal::HasChildren);
        }
        self.check_not_last_lasting(id)
    }

    /// The store's last visible branch that never expires is not deleted, nor given an
    /// expiry (see `Store::delete_branch`).
    fn check_not_last_lasting(&self, id: usize) -> Result<(), Refusal> {
        let lasting = |id: usize| {
            let branch = self.branch(id);
            !branch.hidden && branch.expires_at.is_none()
        };
        let another = self.live_ids().any(|other| other != id && lasting(other));
        match lasting(id) && !another {
            true => Err(Refusal::LastBranch),
            false => Ok(()),
        }
    }

    /// Records a delete the store accepted.
    pub fn delete_branch(&mut self, branch: &str) {
        assert_eq!(self.check_delete_branch(branch), Ok(()));
        let id = self.usable(branch).expect("checked above");
        self.remove(id);
        self.sweep();
    }

    /// Whether the store must refuse renaming `branch` to `new_name`.
    pub fn check_rename(&self, branch: &str, new_name: &str) -> Result<(), Refusal> {
        validate_branch_name(new_name).map_err(|_| Refusal::InvalidBranchName)?;
        self.usable(branch)?;
        self.check_name_free(new_name)
    }

    /// Records a rename the store accepted.
    pub fn rename(&mut self, branch: &str, new_name: &str) {
        assert_eq!(self.check_rename(branch, new_name), Ok(()));
        let id = self.usable(branch).expect("checked above");
        self.branch_mut(id).name = new_name.to_owned();
    }

    /// Whether the store must refuse protecting (or unprotecting) `branch`.
    pub fn check_set_protected(&self, branch: &str, protected: bool) -> Result<(), Refusal> {
        let id = self.usable(branch)?;
        if protected && self.branch(id).expires_at.is_some() {
            return Err(Refusal::ExpiryOnProtected);
        }
        Ok(())
    }

    /// Records a protection change the store accepted.
    pub fn set_protected(&mut self, branch: &str, protected: bool) {
        assert_eq!(self.check_set_protected(branch, protected), Ok(()));
        let id = self.usable(branch).expect("checked above");
        self.branch_mut(id).protected = protected;
    }

    /// When `branch` would expire with `expiry` set now, or the refusal.
    pub fn check_set_expiry(
        &self,
        branch: &str,
        expiry: Expiry,
    ) -> Result<Option<Timestamp>, Refusal> {
        let id = self.usable(branch)?;
        self.check_expiry(BranchOptions {
            expiry,
            protected: self.branch(id).protected,
        })?;
        if expiry != Expiry::Never {
            self.check_not_last_lasting(id)?;
        }
        Ok(expiry.expires_at(self.now))
    }

    /// Records an expiry change the store accepted.
    pub fn set_expiry(&mut self, branch: &str, expiry: Expiry) {
        let expires_at = self
            .check_set_expiry(branch, expiry)
            .expect("an accepted change");
        let id = self.usable(branch).expect("checked above");
        self.branch_mut(id).expires_at = expires_at;
    }

    /// The branch point a reset of `branch` takes (its parent's head), or the refusal.
    pub fn check_reset(&self, branch: &str) -> Result<Lsn, Refusal> {
        let id = self.usable(branch)?;
        if self.branch(id).protected {
            return Err(Refusal::Protected);
        }
        let Some((parent, _)) = self.branch(id).parent else {
            return Err(Refusal::NoParent);
        };
        if self.expired_id(parent) {
            return Err(Refusal::BranchExpired);
        }
        Ok(self.head_of(parent))
    }

    /// Records a reset the store accepted, with the LSN of its record.
    pub fn reset(&mut self, branch: &str, created_lsn: Lsn) {
        let branch_point = self.check_reset(branch).expect("an accepted reset");
        let id = self.usable(branch).expect("checked above");
        let parent = self.branch(id).parent.map(|(parent, _)| parent);
        self.replace(
            id,
            None,
            parent.expect("checked above"),
            branch_point,
            created_lsn,
        );
        self.sweep();
    }

    /// The branch point and backup name a restore of `branch` from `source` at `at` gets,
    /// or the refusal.
    pub fn check_restore(
        &self,
        branch: &str,
        source: &str,
        at: At,
        backup: &Backup,
    ) -> Result<(Lsn, Option<String>), Refusal> {
        let id = self.usable(branch)?;
        if self.branch(id).protected {
            return Err(Refusal::Protected);
        }
        let branch_point = self.branch_point(self.usable(source)?, at)?;
        let backup = match backup {
            Backup::Skip => None,
            Backup::Named(name) => {
                validate_branch_name(name).map_err(|_| Refusal::InvalidBranchName)?;
                self.check_name_free(name)?;
                Some(name.clone())
            }
            Backup::Default => {
                let name = default_backup_name(branch, self.now, |name| self.find(name).is_ok());
                validate_branch_name(&name).map_err(|_| Refusal::InvalidBranchName)?;
                Some(name)
            }
        };
        Ok((branch_point, backup))
    }

    /// Records a restore the store accepted, with the LSN of its record.
    pub fn restore(
        &mut self,
        branch: &str,
        source: &str,
        at: At,
        backup: &Backup,
        created_lsn: Lsn,
    ) {
        let (branch_point, backup) = self
            .check_restore(branch, source, at, backup)
            .expect("an accepted restore");
        let id = self.usable(branch).expect("checked above");
        let source = self.owner_of(self.usable(source).expect("checked above"), branch_point);
        self.replace(id, backup, source, branch_point, created_lsn);
        self.sweep();
    }

    /// Whether the store must refuse detaching `branch`.
    pub fn check_detach(&self, branch: &str) -> Result<(), Refusal> {
        let id = self.usable(branch)?;
        match self.branch(id).parent {
            Some(_) => Ok(()),
            None => Err(Refusal::NoParent),
        }
    }

    /// Records a detach the store accepted: the branch takes copies of every commit it
    /// saw through its ancestors, keeps its cutoff, and becomes a root; a hidden parent
    /// left without children goes, and so do expired ones kept only for it.
    pub fn detach(&mut self, branch: &str) {
        self.check_detach(branch).expect("an accepted detach");
        let id = self.usable(branch).expect("checked above");
        let Some((parent, branch_point)) = self.branch(id).parent else {
            unreachable!("checked above");
        };
        let cutoff = self.effective_cutoff(id);
        let start = self.root_start(id);
        let mut seen = Vec::new();
        self.visible_commits(parent, branch_point, &mut seen);
        let mut inherited: Vec<ModelCommit> = seen.into_iter().cloned().collect();
        let detached = self.branch_mut(id);
        inherited.append(&mut detached.commits);
        detached.commits = inherited;
        detached.parent = None;
        detached.detached = Some((start, branch_point));
        detached.cutoff = cutoff;
        if self.branch(parent).hidden && self.children(parent).is_empty() {
            self.remove(parent);
        }
        self.sweep();
    }

    /// The name of `old` moves to a new branch of `source` at `branch_point`; `old` takes
    /// `backup` or is hidden (and removed if nothing branches from it).
    fn replace(
        &mut self,
        old: usize,
        backup: Option<String>,
        source: usize,
        branch_point: Lsn,
        created_lsn: Lsn,
    ) {
        let old_branch = self.branch(old).clone();
        self.add(ModelBranch {
            name: old_branch.name.clone(),
            hidden: false,
            parent: Some((source, branch_point)),
            created_lsn,
            expires_at: old_branch.expires_at,
            protected: false,
            pitr_window: old_branch.pitr_window,
            cutoff: Lsn(0),
            detached: None,
            commits: Vec::new(),
        });
        let kept = self.branch_mut(old);
        kept.protected = false;
        match backup {
            Some(name) => kept.name = name,
            None => {
                kept.hidden = true;
                // Nothing branches from a hidden state: its leases go.
                self.leases.retain(|(branch, _), _| *branch != old);
                if self.children(old).is_empty() {
                    self.remove(old);
                }
            }
        }
    }

    /// The pages that differ between `from` at `from_lsn` and `to` at `to_lsn`.
    pub fn diff(&self, from: &str, from_lsn: Lsn, to: &str, to_lsn: Lsn) -> ModelDiff {
        let before = self.pages(from, from_lsn);
        let after = self.pages(to, to_lsn);
        let mut diff = ModelDiff::default();
        for (key, page) in &after {
            match before.get(key) {
                None => diff.added.push(*key),
                Some(old) if old != page => diff.changed.push(*key),
                Some(_) => {}
            }
        }
        diff.removed = before
            .keys()
            .filter(|key| !after.contains_key(key))
            .copied()
            .collect();
        diff
    }
}
