//! Checkpoints: flushing every branch's open layer into a delta layer file, publishing the
//! catalog that lists the layers, and restoring from it on open.
//!
//! A checkpoint is an exact cut: it is taken holding `branch_ops` and every branch's
//! `commit_lock`, so no operation is between logging its record and applying it, and the
//! WAL is fsynced first, so the catalog never covers a record the log could lose. Order on
//! disk: layer files are published first, then the catalog (which makes them live), then
//! unlisted layer files are removed, then covered WAL segments. A crash anywhere leaves
//! either the old catalog with the whole WAL after it, or the new one; layer files written
//! for a catalog that never got published are debris, removed on open.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use pagefork_wal::{Lsn, Wal, layout};

use super::{Store, StoreInner};
use crate::catalog::{Branch, PersistedLayer};
use crate::checkpoint::{BranchImage, CATALOG_FILE_NAME, Checkpoint, LayerEntry};
use crate::error::{EngineError, Result};
use crate::layer::{LayerFile, LayerKind, LayerRange, write_layer};
use crate::log::Log;
use crate::versions::PageVersions;

/// Directory of the layer files inside a store.
pub(super) const LAYERS_DIR_NAME: &str = "layers";

impl Store {
    /// Writes every branch's unflushed versions to layer files, publishes the catalog, and
    /// removes the WAL segments it covers, so the next `open` replays only what came after.
    /// Returns the LSN it covers. Blocks commits and branch operations while it runs (the
    /// store also runs it by itself every `Config::checkpoint_after_bytes` of WAL). An
    /// in-memory store has nothing to write and returns its current end.
    pub fn checkpoint(&self) -> Result<Lsn> {
        self.inner.checkpoint()
    }
}

fn layer_file_name(branch: &Branch, lsn_start: Lsn, lsn_end: Lsn) -> String {
    format!(
        "{:016X}-{:016X}-{:016X}.delta",
        branch.id.0, lsn_start.0, lsn_end.0
    )
}

impl StoreInner {
    pub(super) fn checkpoint(&self) -> Result<Lsn> {
        let _ops = self.branch_ops.lock();
        let mut branches: Vec<Arc<Branch>> = self.catalog.read().branches().cloned().collect();
        branches.sort_by_key(|branch| branch.id);
        let _commits: Vec<_> = branches
            .iter()
            .map(|branch| branch.commit_lock.lock())
            .collect();
        let (Log::Wal(wal), Some(dir)) = (&self.log, &self.dir) else {
            return Ok(branches
                .iter()
                .map(|branch| branch.head())
                .max()
                .unwrap_or_default());
        };
        let covered = wal.sync()?;
        let layers_dir = dir.join(LAYERS_DIR_NAME);
        self.fs
            .create_dir_all(&layers_dir)
            .map_err(EngineError::io("create directory", &layers_dir))?;
        for branch in &branches {
            self.flush_open_layer(branch, &layers_dir)?;
        }
        let checkpoint = Checkpoint {
            covered,
            last_time: *self.sequencer.lock(),
            next_id: self.catalog.read().next_id(),
            branches: branches.iter().map(|branch| branch_image(branch)).collect(),
        };
        let path = dir.join(CATALOG_FILE_NAME);
        crate::fs::publish_file(self.fs.as_ref(), &path, &checkpoint.encode())
            .map_err(EngineError::io("publish catalog", &path))?;
        remove_unlisted_layers(&layers_dir, &checkpoint.layer_names())?;
        self.bytes_since_checkpoint
            .store(0, std::sync::atomic::Ordering::Relaxed);
        let removed = wal.truncate_before(covered)?;
        tracing::info!(%covered, removed_segments = removed, "checkpoint written");
        Ok(covered)
    }

    /// Writes the branch's open layer to a delta layer file and swaps it for an empty one.
    /// The caller holds the branch's commit lock.
    fn flush_open_layer(&self, branch: &Branch, layers_dir: &Path) -> Result<()> {
        let versions: Vec<_> = {
            let state = branch.state.read();
            if state.versions.is_empty() {
                return Ok(());
            }
            state
                .versions
                .iter()
                .flat_map(|(key, versions)| {
                    versions
                        .iter()
                        .map(|(lsn, update)| (*key, *lsn, update.clone()))
                })
                .collect()
        };
        let lsn_start = versions
            .iter()
            .map(|(_, lsn, _)| *lsn)
            .min()
            .unwrap_or_default();
        let lsn_last = versions
            .iter()
            .map(|(_, lsn, _)| *lsn)
            .max()
            .unwrap_or_default();
        let range = LayerRange {
            kind: LayerKind::Delta,
            branch: branch.id,
            key_start: versions
                .first()
                .map_or(crate::key::Key::new(0, 0), |(key, _, _)| *key),
            key_last: versions
                .last()
                .map_or(crate::key::Key::new(0, 0), |(key, _, _)| *key),
            lsn_start,
            lsn_end: Lsn(lsn_last.0 + 1),
        };
        let name = layer_file_name(branch, range.lsn_start, range.lsn_end);
        let path = layers_dir.join(&name);
        let summary = write_layer(self.fs.as_ref(), &path, &range, &versions)?;
        let file = Arc::new(LayerFile::open(&path, None)?);
        let mut state = branch.state.write();
        if let Some(newest) = state.layers.last() {
            assert!(
                newest.file.range().lsn_end <= range.lsn_start,
                "a new layer holds only versions newer than the branch's existing layers"
            );
        }
        state.layers.push(PersistedLayer {
            file,
            name,
            size: summary.size,
            checksum: summary.checksum,
        });
        state.versions = PageVersions::default();
        Ok(())
    }

    /// Loads the catalog if there is one (branches and their layers) and returns the LSN it
    /// covers. Removes layer files the catalog does not list; a listed layer that is
    /// missing or of the wrong size is an error naming it.
    pub(super) fn restore_checkpoint(&self, dir: &Path, wal: &Wal) -> Result<Option<Lsn>> {
        let path = dir.join(CATALOG_FILE_NAME);
        let layers_dir = dir.join(LAYERS_DIR_NAME);
        if !self
            .fs
            .exists(&path)
            .map_err(EngineError::io("stat", &path))?
        {
            remove_unlisted_layers(&layers_dir, &BTreeSet::new())?;
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
                    "the catalog covers up to {} but the WAL starts at {}: records in between are missing",
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
        remove_unlisted_layers(&layers_dir, &checkpoint.layer_names())?;
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
            let layers = image
                .layers
                .iter()
                .map(|entry| open_listed_layer(&layers_dir, entry))
                .collect::<Result<Vec<_>>>()?;
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
                    if !state.follows(commit) {
                        return Err(corrupt(format!(
                            "branch {} lists commit {} out of order",
                            image.id, commit.lsn
                        )));
                    }
                    state.record_commit(commit);
                }
                if state.head != image.head {
                    return Err(corrupt(format!(
                        "branch {} head {} disagrees with its commits",
                        image.id, image.head
                    )));
                }
                state.layers = layers;
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
        layers: state
            .layers
            .iter()
            .map(|layer| LayerEntry {
                name: layer.name.clone(),
                size: layer.size,
                checksum: layer.checksum,
            })
            .collect(),
    }
}

/// Opens a layer the catalog lists, refusing a missing one or one of another size by name.
/// (Every block is checked against its CRC32 when read; the whole-file checksum is kept for
/// `pagefork inspect` and is not recomputed on open, so opening stays fast.)
fn open_listed_layer(layers_dir: &Path, entry: &LayerEntry) -> Result<PersistedLayer> {
    let path = layers_dir.join(&entry.name);
    if !path.exists() {
        return Err(EngineError::CorruptFile {
            path,
            offset: 0,
            reason: "the catalog lists this layer file but it is missing".to_owned(),
        });
    }
    let file = LayerFile::open(&path, None)?;
    if file.size() != entry.size {
        return Err(EngineError::CorruptFile {
            path,
            offset: 0,
            reason: format!("{} bytes, the catalog says {}", file.size(), entry.size),
        });
    }
    Ok(PersistedLayer {
        file: Arc::new(file),
        name: entry.name.clone(),
        size: entry.size,
        checksum: entry.checksum,
    })
}

/// Removes files in the layers directory that `listed` does not name: layers of deleted
/// branches, and debris of checkpoints a crash interrupted.
fn remove_unlisted_layers(layers_dir: &Path, listed: &BTreeSet<String>) -> Result<()> {
    let entries = match std::fs::read_dir(layers_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(EngineError::io("read directory", layers_dir)(error)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(EngineError::io("read directory", layers_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !listed.contains(&name) {
            let path: PathBuf = entry.path();
            std::fs::remove_file(&path).map_err(EngineError::io("remove unlisted layer", &path))?;
            removed.push(name);
        }
    }
    if !removed.is_empty() {
        std::fs::File::open(layers_dir)
            .and_then(|handle| handle.sync_all())
            .map_err(EngineError::io("fsync directory", layers_dir))?;
        tracing::info!(?removed, "removed layer files the catalog does not list");
    }
    Ok(())
}
