//! `apply`: the one way the in-memory state changes, for live operations and for replay
//! alike (a detach's live path applies the copies it prepared before logging through the
//! same `detach` code replay uses). Each record kind has its effect here, and each branch
//! operation leaves an entry in the branch-graph history.
//!
//! Invariants it keeps:
//! - A record that contradicts the state (a commit on an unknown branch or below a head, a
//!   name taken twice, a delete of a branch with children) is refused naming its LSN: the
//!   live path checked it before logging, so only a damaged or foreign log gets here.
//! - A hidden branch (an old state replaced without a backup) lives exactly as long as it
//!   has children: the record that removes its last child removes it too, and so on up.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use pagefork_wal::Lsn;

use super::StoreInner;
use crate::branch::{BranchId, Expiry};
use crate::catalog::{Branch, BranchState, Catalog, CommitPoint};
use crate::error::{EngineError, Result};
use crate::history::{HistoryEntry, HistoryOperation};
use crate::key::Key;
use crate::layer::LayerMap;
use crate::record::{BranchChange, CreateBranch, Record, ReplaceReason};
use crate::time::Timestamp;
use crate::update::Update;
use crate::versions::PageVersions;

impl StoreInner {
    /// Applies a logged record to the in-memory state: the one way state changes, live
    /// or in replay. Fails only on records that contradict the history (replay of a
    /// damaged or foreign log), naming the LSN.
    pub(super) fn apply(&self, record: Record, lsn: Lsn, time: Timestamp) -> Result<()> {
        let corrupt = |reason: String| EngineError::CorruptRecord { lsn, reason };
        let history = |operation, branch: &Branch, details: String| HistoryEntry {
            lsn,
            time,
            operation,
            branch_id: branch.id,
            branch: branch.name(),
            details,
        };
        let mut entries = Vec::new();
        match record {
            Record::Commit { branch, updates } => {
                let target = self
                    .catalog
                    .read()
                    .by_id(branch)
                    .cloned()
                    .ok_or_else(|| corrupt(format!("commit on unknown branch {branch}")))?;
                let mut state = target.state.write();
                let commit = CommitPoint { lsn, time };
                if !state.follows(commit) {
                    return Err(corrupt(format!(
                        "commit at or below the head {} of {branch}, or earlier than its last commit",
                        state.head
                    )));
                }
                self.insert_versions(&target, &mut state, updates, lsn);
                state.record_commit(commit);
                let open_bytes = state.open.bytes();
                drop(state);
                self.housekeeping_if_due(open_bytes);
            }
            Record::CreateBranch(create) => {
                let mut catalog = self.catalog.write();
                let branch = new_branch(&catalog, create, time, lsn).map_err(corrupt)?;
                entries.push(history(
                    HistoryOperation::Create,
                    &branch,
                    describe_origin(&branch),
                ));
                catalog.insert(branch);
            }
            Record::DeleteBranch { id } => {
                let mut catalog = self.catalog.write();
                let branch = visible_by_id(&catalog, id)
                    .ok_or_else(|| corrupt(format!("delete of unknown branch {id}")))?;
                if !catalog.children_of(id).is_empty() {
                    return Err(corrupt(format!("delete of {id}, which has children")));
                }
                // A branch deleted past its expiry says so: most are the sweep's (one that
                // expired while an endpoint or mount held it goes when the hold ends).
                let details = match branch.expires_at() {
                    Some(expired_at) if expired_at <= time => format!("expired at {expired_at}"),
                    _ => String::new(),
                };
                entries.push(history(HistoryOperation::Delete, &branch, details));
                self.remove_branch(&mut catalog, &branch);
                self.remove_unneeded_old_states(&mut catalog, &branch, &mut entries, lsn, time);
            }
            Record::ChangeBranch { id, change } => {
                let mut catalog = self.catalog.write();
                let branch = visible_by_id(&catalog, id)
                    .ok_or_else(|| corrupt(format!("change of unknown branch {id}")))?;
                // The entry names the branch as it was called before the change: a rename
                // reads "rename a to b" (it read "rename b to b").
                let name_before = branch.name();
                let (operation, details) = match change {
                    BranchChange::Rename(name) => {
                        if catalog.by_name(&name).is_some() {
                            return Err(corrupt(format!("rename to {name:?}, which is taken")));
                        }
                        let details = format!("to {name:?}");
                        catalog.rename(id, name);
                        (HistoryOperation::Rename, details)
                    }
                    BranchChange::Expiry(expiry) => {
                        if matches!(expiry, Expiry::Ttl(_)) {
                            return Err(corrupt("an expiry change holds a TTL".to_owned()));
                        }
                        branch.meta.write().options.expiry = expiry;
                        catalog.note_expiry(branch.expires_at());
                        (HistoryOperation::SetExpiry, describe_expiry(expiry))
                    }
                    BranchChange::Protected(protected) => {
                        branch.meta.write().options.protected = protected;
                        let operation = if protected {
                            HistoryOperation::Protect
                        } else {
                            HistoryOperation::Unprotect
                        };
                        (operation, String::new())
                    }
                    BranchChange::PitrWindow(window) => {
                        branch.meta.write().pitr_window = window;
                        let details = match window {
                            Some(window) => {
                                format!("keeps {}", humantime::format_duration(window))
                            }
                            None => "the store's default".to_owned(),
                        };
                        (HistoryOperation::SetPitrWindow, details)
                    }
                };
                entries.push(HistoryEntry {
                    branch: name_before,
                    ..history(operation, &branch, details)
                });
            }
            Record::ReplaceBranch {
                old,
                reason,
                backup,
                new,
            } => {
                let mut catalog = self.catalog.write();
                let old = visible_by_id(&catalog, old)
                    .ok_or_else(|| corrupt(format!("replace of unknown branch {old}")))?;
                if new.name != old.name() {
                    return Err(corrupt(format!(
                        "replace gives {:?}'s name to a branch named {:?}",
                        old.name(),
                        new.name
                    )));
                }
                let backup_details = match &backup {
                    Some(name) if catalog.by_name(name).is_some() => {
                        return Err(corrupt(format!("backup name {name:?} is taken")));
                    }
                    Some(name) => {
                        catalog.rename(old.id, name.clone());
                        // A backup is an ordinary branch: nothing protects it.
                        old.meta.write().options.protected = false;
                        format!("; the previous state is branch {name:?} ({})", old.id)
                    }
                    None => {
                        catalog.hide(old.id);
                        // A lease keeps a state to branch from, and nothing branches from
                        // a hidden state: kept, its leases would hold history no one can
                        // list, end or use (found by a review).
                        self.leases.lock().retain(|(id, _), _| *id != old.id);
                        format!("; the previous state ({}) is not kept as a branch", old.id)
                    }
                };
                let branch = new_branch(&catalog, new, time, lsn).map_err(corrupt)?;
                // The name keeps its PITR window as it keeps its expiry (a review found a
                // reset or restore silently giving it the store's default).
                branch.meta.write().pitr_window = old.pitr_window();
                let operation = match reason {
                    ReplaceReason::Reset => HistoryOperation::Reset,
                    ReplaceReason::Restore => HistoryOperation::Restore,
                };
                let details = describe_origin(&branch) + &backup_details;
                entries.push(history(operation, &branch, details));
                catalog.insert(branch);
                if old.hidden() && catalog.children_of(old.id).is_empty() {
                    entries.push(history(
                        HistoryOperation::RemoveOldState,
                        &old,
                        "nothing branches from it".to_owned(),
                    ));
                    self.remove_branch(&mut catalog, &old);
                    self.remove_unneeded_old_states(&mut catalog, &old, &mut entries, lsn, time);
                }
            }
            Record::Lease {
                branch,
                lsn: leased,
                expires_at,
            } => {
                let catalog = self.catalog.read();
                let target = visible_by_id(&catalog, branch)
                    .ok_or_else(|| corrupt(format!("lease on unknown branch {branch}")))?;
                if leased > target.head() {
                    return Err(corrupt(format!(
                        "lease at {leased}, past the head of {branch}"
                    )));
                }
                let mut leases = self.leases.lock();
                let until = leases.entry((branch, leased)).or_insert(expires_at);
                *until = (*until).max(expires_at);
                entries.push(history(
                    HistoryOperation::Lease,
                    &target,
                    format!("keeps {leased} until {}", *until),
                ));
            }
            Record::DetachBranch { id, points } => {
                let branch = visible_by_id(&self.catalog.read(), id)
                    .ok_or_else(|| corrupt(format!("detach of unknown branch {id}")))?;
                self.replay_detach(&branch, &points, lsn, time)?;
            }
        }
        self.history.lock().extend(entries);
        Ok(())
    }

    /// After a detach cut `child` from `parent`: removes `parent` if it is a hidden old
    /// state that nothing branches from any more, and its hidden ancestors likewise.
    pub(super) fn remove_old_state_if_unneeded(
        &self,
        parent: &Arc<Branch>,
        child: &Branch,
        lsn: Lsn,
        time: Timestamp,
    ) {
        let mut catalog = self.catalog.write();
        if !parent.hidden() || !catalog.children_of(parent.id).is_empty() {
            return;
        }
        let mut entries = vec![HistoryEntry {
            lsn,
            time,
            operation: HistoryOperation::RemoveOldState,
            branch_id: parent.id,
            branch: parent.name(),
            details: format!("its last child {} detached from it", child.id),
        }];
        self.remove_branch(&mut catalog, parent);
        self.remove_unneeded_old_states(&mut catalog, parent, &mut entries, lsn, time);
        drop(catalog);
        self.history.lock().extend(entries);
    }

    /// Takes `branch` out of the catalog; its memory leaves the gauge and the next catalog
    /// no longer lists its layers, which removes them.
    fn remove_branch(&self, catalog: &mut Catalog, branch: &Branch) {
        catalog.remove(branch.id);
        self.leases.lock().retain(|(id, _), _| *id != branch.id);
        let mut state = branch.state.write();
        state.deleted = true;
        self.memory
            .fetch_sub(state.memory_bytes(), Ordering::Relaxed);
        self.open_memory
            .fetch_sub(state.open.bytes(), Ordering::Relaxed);
        // Nothing reads it any more (a detached child, which still holds it, has copies
        // of what it read through it): free its versions and its layer files' maps now.
        state.open = PageVersions::default();
        state.frozen = None;
        state.layers = LayerMap::default();
        drop(state);
        self.request_housekeeping();
    }

    /// After `removed` left the catalog: removes its hidden ancestors that no longer have
    /// children, nearest first.
    fn remove_unneeded_old_states(
        &self,
        catalog: &mut Catalog,
        removed: &Branch,
        entries: &mut Vec<HistoryEntry>,
        lsn: Lsn,
        time: Timestamp,
    ) {
        let mut next = removed.parent().map(|(parent, _)| parent);
        while let Some(parent) = next {
            if !parent.hidden() || !catalog.children_of(parent.id).is_empty() {
                break;
            }
            entries.push(HistoryEntry {
                lsn,
                time,
                operation: HistoryOperation::RemoveOldState,
                branch_id: parent.id,
                branch: parent.name(),
                details: format!("its last child {} is gone", removed.id),
            });
            self.remove_branch(catalog, &parent);
            next = parent.parent().map(|(grand, _)| grand);
        }
    }

    /// Adds a commit's versions to the branch's open layer and the memory gauge.
    pub(super) fn insert_versions(
        &self,
        branch: &Branch,
        state: &mut BranchState,
        updates: Vec<(Key, Update)>,
        lsn: Lsn,
    ) {
        let before = state.open.bytes();
        for (key, _) in &updates {
            branch.key_bounds.widen(*key, *key);
        }
        for (key, update) in updates {
            state.open.insert(key, lsn, update);
        }
        let added = state.open.bytes() - before;
        self.memory.fetch_add(added, Ordering::Relaxed);
        self.open_memory.fetch_add(added, Ordering::Relaxed);
    }
}

/// The visible branch with id `id`: a record naming a hidden or unknown one is damage.
fn visible_by_id(catalog: &Catalog, id: BranchId) -> Option<Arc<Branch>> {
    catalog.by_id(id).filter(|branch| !branch.hidden()).cloned()
}

/// The branch a create or replace record makes, checked against the catalog.
fn new_branch(
    catalog: &Catalog,
    create: CreateBranch,
    time: Timestamp,
    lsn: Lsn,
) -> std::result::Result<Arc<Branch>, String> {
    if catalog.by_name(&create.name).is_some() {
        return Err(format!("branch {:?} created twice", create.name));
    }
    crate::catalog::check_branch_id(create.id)?;
    if create.id < catalog.next_id() {
        return Err(format!("branch id {} reused", create.id));
    }
    let parent = match create.parent {
        None => None,
        Some((parent_id, branch_point)) => {
            let parent = catalog
                .by_id(parent_id)
                .cloned()
                .ok_or_else(|| format!("parent {parent_id} does not exist"))?;
            Some((parent, branch_point))
        }
    };
    Ok(Arc::new(Branch::new(
        create.id,
        create.name,
        parent,
        time,
        lsn,
        create.options,
        create.created_at_time,
    )))
}

fn describe_origin(branch: &Branch) -> String {
    match branch.parent() {
        None => format!("root {}", branch.id),
        Some((parent, branch_point)) => format!(
            "{} from {:?} ({}) at {branch_point}",
            branch.id,
            parent.name(),
            parent.id
        ),
    }
}

fn describe_expiry(expiry: Expiry) -> String {
    match expiry {
        Expiry::At(time) => format!("expires at {time}"),
        Expiry::Never | Expiry::Ttl(_) => "never expires".to_owned(),
    }
}
