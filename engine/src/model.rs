//! The reference model: a deliberately naive implementation of the store's semantics,
//! small enough to check by eye, for use as an oracle in property tests (ours and yours).
//!
//! Each branch keeps its list of commits. A read at LSN L replays the branch's commits at
//! or below L on top of its parent's state at min(L, branch point), recursively. Nothing is
//! cached or indexed. The model does not hand out LSNs or times: feed it the ones the store
//! answered with, and compare what the store reads and refuses with what the model says.
//!
//! ```
//! use bytes::Bytes;
//! use pagefork_engine::model::Model;
//! use pagefork_engine::{At, Config, Key, Store, Update};
//! # fn main() -> Result<(), pagefork_engine::EngineError> {
//! let store = Store::in_memory(Config::default())?;
//! let main = store.branch_info("main")?;
//! let mut model = Model::new(store.page_size(), "main", main.created_lsn);
//! let updates = vec![(Key::new(1, 0), Update::Image(Bytes::from(vec![9u8; 8192])))];
//! assert_eq!(model.check_commit("main", &updates), Ok(()));
//! let commit = store.commit("main", updates.clone())?;
//! model.commit("main", updates, commit.lsn, commit.time);
//! let page = store.get_page("main", Key::new(1, 0), At::Latest)?;
//! assert_eq!(page.map(|page| page.to_vec()), model.page("main", Key::new(1, 0), commit.lsn));
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet};

use pagefork_wal::Lsn;

use crate::branch::{At, LsnForTime, TimeKind, validate_branch_name};
use crate::error::EngineError;
use crate::key::Key;
use crate::time::Timestamp;
use crate::update::Update;

/// The kind of refusal an operation must get. Compare with [`Refusal::of`] a store error.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
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
}

impl Refusal {
    /// The refusal a store error stands for, or `None` for errors that are failures, not
    /// refusals (I/O, corruption).
    pub fn of(error: &EngineError) -> Option<Refusal> {
        Some(match error {
            EngineError::UnknownBranch { .. } => Refusal::UnknownBranch,
            EngineError::BranchExists { .. } => Refusal::BranchExists,
            EngineError::InvalidBranchName { .. } => Refusal::InvalidBranchName,
            EngineError::EmptyCommit { .. } => Refusal::EmptyCommit,
            EngineError::DuplicateKey { .. } => Refusal::DuplicateKey,
            EngineError::ImageSize { .. } => Refusal::ImageSize,
            EngineError::PatchOutOfBounds { .. } => Refusal::PatchOutOfBounds,
            EngineError::PatchOnMissingPage { .. } => Refusal::PatchOnMissingPage,
            EngineError::LsnPastHead { .. } => Refusal::LsnPastHead,
            EngineError::LsnBelowBranchStart { .. } => Refusal::LsnBelowBranchStart,
            EngineError::TimeBeforeHistory { .. } => Refusal::TimeBeforeHistory,
            EngineError::HasChildren { .. } => Refusal::HasChildren,
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
    parent: Option<(String, Lsn)>,
    created_lsn: Lsn,
    commits: Vec<ModelCommit>,
}

/// The naive model of a store (see the module docs).
#[derive(Clone, Debug)]
pub struct Model {
    page_size: usize,
    branches: BTreeMap<String, ModelBranch>,
}

impl Model {
    /// A model of a new store whose root branch `root` was created at `root_created_lsn`.
    pub fn new(page_size: usize, root: &str, root_created_lsn: Lsn) -> Model {
        let mut branches = BTreeMap::new();
        branches.insert(
            root.to_owned(),
            ModelBranch {
                parent: None,
                created_lsn: root_created_lsn,
                commits: Vec::new(),
            },
        );
        Model {
            page_size,
            branches,
        }
    }

    /// Names of the live branches, sorted.
    pub fn branch_names(&self) -> Vec<String> {
        self.branches.keys().cloned().collect()
    }

    fn get(&self, branch: &str) -> Result<&ModelBranch, Refusal> {
        self.branches.get(branch).ok_or(Refusal::UnknownBranch)
    }

    /// Where a branch's own history starts: its branch point, or its creation for a root.
    pub fn start(&self, branch: &str) -> Result<Lsn, Refusal> {
        let model = self.get(branch)?;
        Ok(model
            .parent
            .as_ref()
            .map_or(model.created_lsn, |(_, lsn)| *lsn))
    }

    /// A branch's head: its last commit, or its start if it has none.
    pub fn head(&self, branch: &str) -> Result<Lsn, Refusal> {
        let start = self.start(branch)?;
        Ok(self
            .get(branch)?
            .commits
            .last()
            .map_or(start, |commit| commit.lsn))
    }

    /// Every page of `branch` at `lsn`, rebuilt from scratch.
    pub fn pages(&self, branch: &str, lsn: Lsn) -> BTreeMap<Key, Vec<u8>> {
        let Ok(model) = self.get(branch) else {
            return BTreeMap::new();
        };
        let mut pages = match &model.parent {
            Some((parent, branch_point)) => self.pages(parent, lsn.min(*branch_point)),
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

    /// Page `key` of `branch` at `lsn`.
    pub fn page(&self, branch: &str, key: Key, lsn: Lsn) -> Option<Vec<u8>> {
        self.pages(branch, lsn).remove(&key)
    }

    /// Whether the store must refuse this commit, and why.
    pub fn check_commit(&self, branch: &str, updates: &[(Key, Update)]) -> Result<(), Refusal> {
        let head = self.head(branch)?;
        if updates.is_empty() {
            return Err(Refusal::EmptyCommit);
        }
        let pages = self.pages(branch, head);
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
        let model = self.branches.get_mut(branch).expect("checked above");
        model.commits.push(ModelCommit { lsn, time, updates });
    }

    fn visible_commits(&self, branch: &str, upper: Lsn, out: &mut Vec<(Lsn, Timestamp)>) {
        let Ok(model) = self.get(branch) else { return };
        if let Some((parent, branch_point)) = &model.parent {
            self.visible_commits(parent, upper.min(*branch_point), out);
        }
        out.extend(
            model
                .commits
                .iter()
                .filter(|commit| commit.lsn <= upper)
                .map(|commit| (commit.lsn, commit.time)),
        );
    }

    fn root_start(&self, branch: &str) -> Result<Lsn, Refusal> {
        match &self.get(branch)?.parent {
            Some((parent, _)) => self.root_start(parent),
            None => self.start(branch),
        }
    }

    /// Which LSN shows `branch` as it was at `time` (see [`crate::Store::lsn_for_time`]).
    pub fn lsn_for_time(&self, branch: &str, time: Timestamp) -> Result<LsnForTime, Refusal> {
        let head = self.head(branch)?;
        let mut visible = Vec::new();
        self.visible_commits(branch, head, &mut visible);
        let last_at_or_before = visible
            .iter()
            .enumerate()
            .rev()
            .find(|(_, (_, commit_time))| *commit_time <= time);
        let (lsn, commit_time, kind) = match last_at_or_before {
            _ if visible.is_empty() => (head, None, TimeKind::NoData),
            None => (self.root_start(branch)?, None, TimeKind::Past),
            Some((index, (_, commit_time))) if index + 1 == visible.len() => {
                (head, Some(*commit_time), TimeKind::Future)
            }
            Some((_, (lsn, commit_time))) => (*lsn, Some(*commit_time), TimeKind::Present),
        };
        Ok(LsnForTime {
            requested: time,
            lsn,
            commit_time,
            kind,
        })
    }

    /// The LSN `at` means on `branch`, or the refusal.
    pub fn resolve(&self, branch: &str, at: At) -> Result<Lsn, Refusal> {
        let head = self.head(branch)?;
        match at {
            At::Latest => Ok(head),
            At::Lsn(lsn) if lsn > head => Err(Refusal::LsnPastHead),
            At::Lsn(lsn) => Ok(lsn),
            At::Time(time) => {
                let answer = self.lsn_for_time(branch, time)?;
                match answer.kind {
                    TimeKind::Past => Err(Refusal::TimeBeforeHistory),
                    _ => Ok(answer.lsn),
                }
            }
        }
    }

    /// The branch point a new branch `name` from `parent` at `at` gets, or the refusal.
    pub fn check_create_branch(&self, name: &str, parent: &str, at: At) -> Result<Lsn, Refusal> {
        validate_branch_name(name).map_err(|_| Refusal::InvalidBranchName)?;
        if self.branches.contains_key(name) {
            return Err(Refusal::BranchExists);
        }
        let lsn = self.resolve(parent, at)?;
        if lsn < self.start(parent)? {
            return Err(Refusal::LsnBelowBranchStart);
        }
        Ok(lsn)
    }

    /// Records a branch the store created, with the branch point and creation LSN it
    /// answered.
    pub fn create_branch(&mut self, name: &str, parent: &str, branch_point: Lsn, created_lsn: Lsn) {
        assert!(
            self.branches.contains_key(parent),
            "unknown parent {parent}"
        );
        assert!(!self.branches.contains_key(name), "branch {name} exists");
        self.branches.insert(
            name.to_owned(),
            ModelBranch {
                parent: Some((parent.to_owned(), branch_point)),
                created_lsn,
                commits: Vec::new(),
            },
        );
    }

    /// Whether the store must refuse deleting `branch`, and why.
    pub fn check_delete_branch(&self, branch: &str) -> Result<(), Refusal> {
        self.get(branch)?;
        let has_children = self.branches.values().any(|model| {
            model
                .parent
                .as_ref()
                .is_some_and(|(parent, _)| parent == branch)
        });
        if has_children {
            Err(Refusal::HasChildren)
        } else {
            Ok(())
        }
    }

    /// Records a delete the store accepted.
    pub fn delete_branch(&mut self, branch: &str) {
        assert_eq!(self.check_delete_branch(branch), Ok(()));
        self.branches.remove(branch);
    }
}
