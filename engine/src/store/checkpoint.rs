//! Taking a checkpoint and restoring from one (see `crate::checkpoint` for the file).
//!
//! A checkpoint is an exact cut: it is taken holding `branch_ops` and every branch's
//! `commit_lock`, so no operation is between logging its record and applying it, and the
//! WAL is fsynced first, so the checkpoint never covers a record the log could lose.

use std::sync::Arc;

use bytes::Bytes;
use pagefork_wal::{Lsn, Wal, layout};

use super::{Store, StoreInner};
use crate::catalog::Branch;
use crate::checkpoint::{BranchImage, CHECKPOINT_FILE_NAME, Checkpoint};
use crate::error::{EngineError, Result};
use crate::fs::publish_file;
use crate::log::Log;

impl Store {
    /// Writes the whole state to the checkpoint file and removes the WAL segments it
    /// covers, so the next `open` replays only what comes after. Returns the LSN it
    /// covers. Blocks commits and branch operations while it writes. An in-memory store has
    /// nothing to write and returns its current end.
    pub fn checkpoint(&self) -> Result<Lsn> {
        let inner = &self.inner;
        let _ops = inner.branch_ops.lock();
        let mut branches: Vec<Arc<Branch>> = inner.catalog.read().branches().cloned().collect();
        branches.sort_by_key(|branch| branch.id);
        let _commits: Vec<_> = branches
            .iter()
            .map(|branch| branch.commit_lock.lock())
            .collect();
        let (Log::Wal(wal), Some(dir)) = (&inner.log, &inner.dir) else {
            return Ok(branches
                .iter()
                .map(|branch| branch.head())
                .max()
                .unwrap_or_default());
        };
        let covered = wal.sync()?;
        let checkpoint = Checkpoint {
            covered,
            last_time: *inner.sequencer.lock(),
            next_id: inner.catalog.read().next_id(),
            branches: branches.iter().map(|branch| branch_image(branch)).collect(),
        };
        let path = dir.join(CHECKPOINT_FILE_NAME);
        publish_file(inner.fs.as_ref(), &path, &checkpoint.encode())
            .map_err(EngineError::io("publish checkpoint", &path))?;
        let removed = wal.truncate_before(covered)?;
        tracing::info!(%covered, removed_segments = removed, "checkpoint written");
        Ok(covered)
    }
}

fn branch_image(branch: &Branch) -> BranchImage {
    let state = branch.state.read();
    BranchImage {
        id: branch.id,
        name: branch.name.clone(),
        parent: branch
            .parent
            .as_ref()
            .map(|(parent, lsn)| (parent.id, *lsn)),
        created: branch.created,
        created_lsn: branch.created_lsn,
        options: branch.options,
        created_at_time: branch.created_at_time,
        head: state.head,
        commits: state.commits.clone(),
        pages: state
            .versions
            .iter()
            .map(|(key, versions)| {
                (
                    *key,
                    versions
                        .iter()
                        .map(|(lsn, update)| (*lsn, update.clone()))
                        .collect(),
                )
            })
            .collect(),
    }
}

impl StoreInner {
    /// Loads the checkpoint file if there is one; returns the LSN it covers.
    pub(super) fn restore_checkpoint(
        &self,
        dir: &std::path::Path,
        wal: &Wal,
    ) -> Result<Option<Lsn>> {
        let path = dir.join(CHECKPOINT_FILE_NAME);
        if !self
            .fs
            .exists(&path)
            .map_err(EngineError::io("stat", &path))?
        {
            return Ok(None);
        }
        let bytes = self
            .fs
            .read(&path)
            .map_err(EngineError::io("read", &path))?;
        let checkpoint = Checkpoint::decode(Bytes::from(bytes), &path)?;
        let oldest_segment_start = wal.oldest_lsn().0 - layout::SEGMENT_HEADER_LEN;
        if oldest_segment_start > checkpoint.covered.0 {
            return Err(EngineError::CorruptFile {
                path,
                offset: 12,
                reason: format!(
                    "the checkpoint covers up to {} but the WAL starts at {}: records in between are missing",
                    checkpoint.covered,
                    wal.oldest_lsn()
                ),
            });
        }
        let corrupt = |reason: String| EngineError::CorruptFile {
            path: path.clone(),
            offset: 0,
            reason,
        };
        let mut catalog = self.catalog.write();
        for image in checkpoint.branches {
            let parent = match image.parent {
                None => None,
                Some((parent_id, branch_point)) => {
                    let parent = catalog.by_id(parent_id).cloned().ok_or_else(|| {
                        corrupt(format!(
                            "branch {} names unknown parent {parent_id}",
                            image.id
                        ))
                    })?;
                    Some((parent, branch_point))
                }
            };
            let branch = Branch::new(
                image.id,
                image.name,
                parent,
                image.created,
                image.created_lsn,
                image.options,
                image.created_at_time,
            );
            {
                let mut state = branch.state.write();
                for commit in image.commits {
                    state.record_commit(commit);
                }
                if state.head != image.head {
                    return Err(corrupt(format!(
                        "branch {} head {} disagrees with its commits",
                        image.id, image.head
                    )));
                }
                for (key, versions) in image.pages {
                    for (lsn, update) in versions {
                        state.versions.insert(key, lsn, update);
                    }
                }
            }
            if catalog.by_name(&branch.name).is_some() || branch.id < catalog.next_id() {
                return Err(corrupt(format!(
                    "branch {} ({:?}) appears twice",
                    branch.id, branch.name
                )));
            }
            catalog.insert(Arc::new(branch));
        }
        catalog.reserve_ids_below(checkpoint.next_id);
        *self.sequencer.lock() = checkpoint.last_time;
        Ok(Some(checkpoint.covered))
    }
}
