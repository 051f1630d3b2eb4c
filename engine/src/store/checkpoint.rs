//! The catalog on disk: publishing it (the last step of every housekeeping cycle) and
//! restoring from it on open.
//!
//! A catalog is an exact cut: its branch table is taken holding `branch_ops` and every
//! branch's `commit_lock`, so no operation is between logging its record and applying
//! it, and the WAL is fsynced before the file is published, so the catalog never covers
//! a record the log could lose. Order on disk: layer files are published first (by the
//! cycle), then the catalog (which makes them live), then unlisted layer files are
//! removed, then the WAL segments below every branch's `flushed` LSN. A crash anywhere
//! leaves either the old catalog with the whole WAL after it, or the new one; layer files
//! written for a catalog that never got published are debris, removed once an open has
//! accepted the whole store (never before: a failed open changes nothing).
//!
//! Every catalog published can be opened (DESIGN.md invariant 7): its replay start, the
//! lowest `flushed` of any branch, is checked against the oldest WAL record kept before
//! the file is written (`CatalogCut::of`), and WAL removal stops at that start.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use pagefork_wal::{Lsn, Wal, layout};

use super::StoreInner;
use crate::branch::BranchId;
use crate::catalog::Branch;
use crate::checkpoint::{BranchImage, CATALOG_FILE_NAME, Checkpoint, LayerEntry};
use crate::commits::{self, CommitRun, CommitsCut};
use crate::error::{EngineError, Result};
use crate::fs::{FileSystem, TEMPORARY_SUFFIX};
use crate::layer::{
    LayerCache, LayerFile, LayerMap, LayerRange, Level, PersistedLayer, marker_path,
};

/// Directory of the layer files inside a store.
pub(super) const LAYERS_DIR_NAME: &str = "layers";
/// Directory of the commit runs inside a store (see `commits`).
pub(super) const COMMITS_DIR_NAME: &str = "commits";

/// The name of a layer file: branch, key range, LSN range, and level, all in hex, then
/// `-N` for the `generation`-th file of that range (from 2: GC rewrites a range in place,
/// and a file the catalog lists is never overwritten).
pub(super) fn layer_file_name(range: &LayerRange, level: Level, generation: u32) -> String {
    let suffix = match level {
        Level::L0 => "l0",
        Level::L1 => "l1",
        Level::Image => "image",
    };
    let generation = match generation {
        0 | 1 => String::new(),
        n => format!("-{n}"),
    };
    format!(
        "{:016X}-{:08X}{:08X}-{:08X}{:08X}-{:016X}-{:016X}{generation}.{suffix}",
        range.branch.0,
        range.key_start.rel,
        range.key_start.block,
        range.key_last.rel,
        range.key_last.block,
        range.lsn_start.0,
        range.lsn_end.0,
    )
}

/// Where replay starts and what the catalog covers.
#[derive(Clone, Copy, Debug)]
pub(super) struct CatalogCut {
    /// Branch operations and commit points up to here are in the catalog.
    pub(super) covered: Lsn,
    /// The lowest `flushed` of any branch: page versions above it may be only in the WAL.
    pub(super) replay_from: Lsn,
}

impl CatalogCut {
    /// The cut of `checkpoint` (the catalog file at `path`), refused with
    /// `EngineError::WalGap` if replay would have to start below the oldest record `wal`
    /// still holds (invariant 7: every published catalog can be opened).
    fn of(checkpoint: &Checkpoint, path: &Path, wal: &Wal) -> Result<CatalogCut> {
        let (replay_from, held_by) = checkpoint.replay_from();
        let wal_end = wal.written_lsn();
        if checkpoint.covered > wal_end {
            return Err(EngineError::WalBehindCatalog {
                catalog: path.to_owned(),
                wal_dir: wal.dir().to_owned(),
                covered: checkpoint.covered,
                wal_end,
            });
        }
        let wal_start = wal.oldest_lsn();
        // Replay starts after the record ending at `replay_from`; the oldest segment's
        // first record may end right there or later, so its header start is what counts.
        if wal_start.0 - layout::SEGMENT_HEADER_LEN > replay_from.0 {
            return Err(EngineError::WalGap {
                catalog: path.to_owned(),
                wal_dir: wal.dir().to_owned(),
                replay_from,
                held_by: match held_by {
                    Some(branch) => {
                        format!("the flushed LSN of branch {} {:?}", branch.id, branch.name)
                    }
                    None => "the catalog's cut".to_owned(),
                },
                wal_start,
            });
        }
        Ok(CatalogCut {
            covered: checkpoint.covered,
            replay_from,
        })
    }
}

/// Removes the WAL segments the catalog just published (whose cut is `published`) no
/// longer needs: those wholly below its replay start, never more. Asserts afterwards that
/// the log still starts at or below that replay start.
fn remove_wal_before(wal: &Wal, published: &CatalogCut) -> Result<usize> {
    let removed = wal.truncate_before(published.replay_from)?;
    assert!(
        wal.oldest_lsn().0 - layout::SEGMENT_HEADER_LEN <= published.replay_from.0,
        "WAL removal went past the published catalog's replay start {}",
        published.replay_from
    );
    Ok(removed)
}

impl StoreInner {
    /// The LSN the last published catalog covers.
    pub(super) fn catalog_covered(&self) -> Lsn {
        Lsn(self.catalog_covered.load(Ordering::Acquire))
    }

    /// Publishes the catalog (branches as of now, their layers), removes layer files it
    /// does not list, and the WAL no branch needs. The caller holds `housekeeping`.
    pub(super) fn publish_catalog(&self, wal: &Wal, dir: &Path, layers_dir: &Path) -> Result<Lsn> {
        let mut branches: Vec<Arc<Branch>>;
        let (mut checkpoint, cuts) = {
            let _ops = self.branch_ops.lock();
            branches = self.catalog.read().branches().cloned().collect();
            branches.sort_by_key(|branch| branch.id);
            let _commits: Vec<_> = branches
                .iter()
                .map(|branch| branch.commit_lock.lock())
                .collect();
            // Nothing is between logging and applying: everything appended is applied
            // (commits apply before they are durable; the log is synced below, before the
            // catalog is written).
            let covered = wal.appended_lsn();
            for branch in &branches {
                let mut state = branch.state.write();
                if state.open.is_empty() && state.frozen.is_none() {
                    // Every own version is in layer files and none is in flight, so the
                    // branch needs no WAL up to here: an idle branch must not hold the WAL
                    // down at its branch point forever.
                    state.advance_flushed(covered);
                }
            }
            self.bytes_since_checkpoint.store(0, Ordering::Relaxed);
            let (images, cuts): (Vec<BranchImage>, Vec<CommitsCut>) =
                branches.iter().map(|branch| branch_image(branch)).unzip();
            let checkpoint = Checkpoint {
                covered,
                last_time: *self.sequencer.lock(),
                next_id: self.catalog.read().next_id(),
                branches: images,
                history: self.history.lock().clone(),
                leases: self
                    .leases
                    .lock()
                    .iter()
                    .map(|((branch, lsn), until)| (*branch, *lsn, *until))
                    .collect(),
            };
            (checkpoint, cuts)
        };
        // Everything the catalog covers is durable before it says so.
        wal.sync()?;
        // Invariant 7, checked before publishing: the catalog can be opened, because the
        // WAL its replay needs is all still there.
        let path = dir.join(CATALOG_FILE_NAME);
        let cut = CatalogCut::of(&checkpoint, &path, wal).map_err(|gap| {
            EngineError::InvariantViolated {
                action: "publish the catalog",
                rule: "every published catalog can be opened (DESIGN.md invariant 7)",
                detail: gap.to_string(),
            }
        })?;
        if let Some(db) = &self.version_db {
            // Every version at or below a branch's `flushed` was written before the
            // snapshot above: durable before the catalog that says so.
            db.persist()?;
        }
        let commits_dir = dir.join(COMMITS_DIR_NAME);
        let runs = self.write_commit_runs(&commits_dir, &branches, &cuts, &mut checkpoint)?;
        crate::fs::publish_file(self.fs.as_ref(), &path, &checkpoint.encode())
            .map_err(EngineError::io("publish catalog", &path))?;
        for ((branch, cut), persisted) in branches.iter().zip(&cuts).zip(&runs) {
            branch.state.write().commits.persisted(cut, persisted);
        }
        let covered = checkpoint.covered;
        self.catalog_covered.store(covered.0, Ordering::Release);
        self.housekeeping_counters
            .catalogs_published
            .fetch_add(1, Ordering::Relaxed);
        // The files of the state last handed out for copying stay until the copy moves on
        // (see `published`): its layers are kept as if listed, and the WAL from its replay
        // start.
        let (kept, removable_wal) = {
            let pin = self.pin.lock();
            let mut kept = checkpoint.listed_files();
            kept.extend(pin.layers.iter().cloned());
            let removable = CatalogCut {
                replay_from: pin
                    .wal_from
                    .map_or(cut.replay_from, |from| from.min(cut.replay_from)),
                ..cut
            };
            (kept, removable)
        };
        for files_dir in [layers_dir, &commits_dir] {
            remove_unlisted_layers(self.fs.as_ref(), files_dir, &kept, Publishes::InProgress)?;
        }
        self.remove_unlisted_versions(&checkpoint.branch_ids())?;
        let removed = remove_wal_before(wal, &removable_wal)?;
        tracing::debug!(%covered, replay_from = %cut.replay_from, removed_segments = removed, "catalog published");
        Ok(covered)
    }

    /// Writes the commit points each branch gained since the last catalog (`cuts`, in the
    /// order of `branches`) into a run file in `commits_dir`, merged with its newest runs
    /// now and then, and lists each branch's runs in its image in `checkpoint`: the catalog
    /// lists files, not points, so it does not grow with the number of commits. The new
    /// runs' names are durable when it returns. Returns each branch's runs.
    fn write_commit_runs(
        &self,
        commits_dir: &Path,
        branches: &[Arc<Branch>],
        cuts: &[CommitsCut],
        checkpoint: &mut Checkpoint,
    ) -> Result<Vec<Vec<Arc<CommitRun>>>> {
        let fs = self.fs.as_ref();
        let any_new = cuts.iter().any(CommitsCut::has_tail);
        if any_new
            && !fs
                .is_dir(commits_dir)
                .map_err(EngineError::io("stat", commits_dir))?
        {
            crate::fs::create_dir_all_durably(fs, commits_dir)
                .map_err(EngineError::io("create directory", commits_dir))?;
        }
        let mut runs = Vec::with_capacity(cuts.len());
        for ((branch, cut), image) in branches.iter().zip(cuts).zip(&mut checkpoint.branches) {
            let persisted = commits::persist_cut(fs, commits_dir, branch.id, cut)?;
            image.commit_runs = persisted.iter().map(|run| run.entry().clone()).collect();
            image.commits = Vec::new();
            runs.push(persisted);
        }
        if any_new {
            // The new runs' names, durable before the catalog that lists them.
            fs.sync_dir(commits_dir)
                .map_err(EngineError::io("fsync directory", commits_dir))?;
        }
        Ok(runs)
    }

    /// Makes the catalog `open` found durable, with the layer files it lists, before
    /// anything is removed on its word: after an I/O error (a failed directory fsync, say)
    /// the catalog a reopen reads may be visible without being durable, and removing the
    /// layers the durable one still lists would lose them at the next power cut.
    fn make_catalog_durable(&self, dir: &Path, catalog: &Path) -> Result<()> {
        for files_dir in [LAYERS_DIR_NAME, COMMITS_DIR_NAME].map(|name| dir.join(name)) {
            if self
                .fs
                .is_dir(&files_dir)
                .map_err(EngineError::io("stat", &files_dir))?
            {
                self.fs
                    .sync_dir(&files_dir)
                    .map_err(EngineError::io("fsync directory", &files_dir))?;
            }
        }
        self.fs
            .sync_file(catalog)
            .map_err(EngineError::io("fsync", catalog))?;
        self.fs
            .sync_dir(dir)
            .map_err(EngineError::io("fsync directory", dir))
    }

    /// Loads the catalog if there is one (branches and their layers) and returns where
    /// replay starts and the layer files it lists; a listed layer that is missing, of the wrong size, or overlapping
    /// another is an error naming it. Removes nothing: layer files no branch lists are
    /// removed once the whole store was accepted (`remove_layer_debris`). (With RocksDB,
    /// versions the catalog never published are trimmed once the catalog is accepted:
    /// they are debris by definition, and replay must not read them.)
    pub(super) fn restore_checkpoint(
        &self,
        dir: &Path,
        wal: &Wal,
    ) -> Result<Option<(CatalogCut, BTreeSet<String>)>> {
        let path = dir.join(CATALOG_FILE_NAME);
        let layers_dir = dir.join(LAYERS_DIR_NAME);
        if !self
            .fs
            .exists(&path)
            .map_err(EngineError::io("stat", &path))?
        {
            // Without a catalog, replay starts at the store's first record: the log must
            // still begin at LSN 0. Otherwise the catalog was lost, and with it the only
            // account of the history before the log and of the layers holding it.
            if wal.oldest_lsn() != Lsn(layout::SEGMENT_HEADER_LEN) {
                return Err(EngineError::CatalogMissing {
                    catalog: path,
                    wal_start: wal.oldest_lsn(),
                    layer_files: store_layer_files(self.fs.as_ref(), &layers_dir)?.len(),
                });
            }
            if self.version_db.is_some() {
                // Versions flushed before any catalog was published: never listed, and
                // replay writes them again.
                self.remove_unlisted_versions(&BTreeSet::new())?;
            }
            return Ok(None);
        }
        let bytes = self
            .fs
            .read(&path)
            .map_err(EngineError::io("read", &path))?;
        let checkpoint = Checkpoint::decode(Bytes::from(bytes), &path)?;
        self.make_catalog_durable(dir, &path)?;
        let commits_dir = dir.join(COMMITS_DIR_NAME);
        let cut = CatalogCut::of(&checkpoint, &path, wal)?;
        let checkpoint_layers = checkpoint.listed_files();
        let corrupt = |reason: String| EngineError::CorruptFile {
            path: path.clone(),
            offset: 0,
            reason,
        };
        let mut catalog = self.catalog.write();
        let mut unpublished: Vec<(BranchId, Option<Lsn>, Lsn)> = Vec::new();
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
            if image.flushed > checkpoint.covered {
                return Err(corrupt(format!(
                    "branch {} says it flushed up to {}, past the catalog's {}",
                    image.id, image.flushed, checkpoint.covered
                )));
            }
            let mut layers = LayerMap::default();
            for entry in &image.layers {
                let layer =
                    open_listed_layer(&self.fs, self.layer_cache.as_ref(), &layers_dir, entry)?;
                if let Some(other) = layers.conflict_with(&layer) {
                    return Err(corrupt(format!(
                        "layers {} and {other} of branch {} overlap",
                        entry.name, image.id
                    )));
                }
                layers.insert(layer);
            }

            let branch = Branch::new(
                image.id,
                image.name,
                parent,
                image.created,
                image.created_lsn,
                image.options,
                image.created_at_time,
            );
            // Only a detached branch (a root now) starts elsewhere: at its old root's start,
            // below its creation.
            let detached = image.start != branch.start();
            if detached && (image.parent.is_some() || image.start > image.created_lsn) {
                return Err(corrupt(format!(
                    "branch {} starts at {}, which is neither its branch point nor an old root's start",
                    image.id, image.start
                )));
            }
            let branch = if detached {
                branch.with_start(image.start)
            } else {
                branch
            };
            {
                let mut meta = branch.meta.write();
                meta.hidden = image.hidden;
                meta.pitr_window = image.pitr_window;
            }
            if image.gc_cutoff > image.head {
                return Err(corrupt(format!(
                    "branch {} has GC cutoff {} above its head {}",
                    image.id, image.gc_cutoff, image.head
                )));
            }
            branch.advance_cutoff(image.gc_cutoff);
            for layer in layers.iter() {
                let range = layer.file.range();
                branch.key_bounds.widen(range.key_start, range.key_last);
            }
            if self.version_db.is_some() {
                if !image.layers.is_empty() {
                    return Err(corrupt(format!(
                        "branch {} lists layer files in a store whose versions are in RocksDB",
                        image.id
                    )));
                }
                // What a flush or detach wrote after this catalog was never published:
                // versions above `flushed`, and copies below an attached branch's point.
                // Trimmed once the whole catalog is accepted.
                let floor = image.parent.map(|(_, branch_point)| branch_point);
                unpublished.push((image.id, floor, image.flushed));
            }
            crate::catalog::check_branch_id(branch.id).map_err(corrupt)?;
            let mut runs = Vec::with_capacity(image.commit_runs.len());
            for entry in &image.commit_runs {
                runs.push(CommitRun::open(
                    self.fs.as_ref(),
                    &commits_dir,
                    entry,
                    image.id,
                )?);
            }
            {
                let mut state = branch.state.write();
                let start = state.head;
                state
                    .commits
                    .restore_runs(runs, start)
                    .map_err(|reason| corrupt(format!("branch {}: {reason}", image.id)))?;
                if let Some(last) = state.commits.last() {
                    state.head = last.lsn;
                }
                for commit in image.commits {
                    if !state.follows(commit) {
                        return Err(corrupt(format!(
                            "branch {} lists commit {} out of order",
                            image.id, commit.lsn
                        )));
                    }
                    state.record_commit(commit);
                }
                // A detached branch's head may be its old branch point, above the last
                // commit it copied.
                if image.head < state.head || (image.head > state.head && !detached) {
                    return Err(corrupt(format!(
                        "branch {} head {} disagrees with its commits",
                        image.id, image.head
                    )));
                }
                state.head = image.head;
                state.layers = layers;
                state.flushed = image.flushed;
            }
            if (!branch.hidden() && catalog.by_name(&branch.name()).is_some())
                || branch.id < catalog.next_id()
            {
                return Err(corrupt(format!(
                    "branch {} ({:?}) appears twice",
                    branch.id,
                    branch.name()
                )));
            }
            catalog.insert(Arc::new(branch));
        }
        // A hidden branch is kept only for its children.
        if let Some(orphan) = catalog
            .branches()
            .find(|branch| branch.hidden() && catalog.children_of(branch.id).is_empty())
        {
            return Err(corrupt(format!(
                "branch {} is an old state kept for its children, but has none",
                orphan.id
            )));
        }
        catalog.reserve_ids_below(checkpoint.next_id);
        *self.history.lock() = checkpoint.history;
        let mut leases = self.leases.lock();
        for (branch, lsn, until) in checkpoint.leases {
            let Some(leased) = catalog.by_id(branch) else {
                return Err(corrupt(format!(
                    "a lease at {lsn} names branch {branch}, which the catalog does not list"
                )));
            };
            // Hiding a branch ends its leases; a catalog an older build published may
            // still hold some (found by a review).
            if !leased.hidden() {
                leases.insert((branch, lsn), until);
            }
        }
        drop(leases);
        if let Some(db) = &self.version_db {
            for (id, floor, flushed) in unpublished {
                let trimmed = db.trim(id, floor, flushed)?;
                if trimmed > 0 {
                    tracing::info!(branch = %id, versions = trimmed, "removed unpublished page versions from RocksDB");
                }
                if let (Some(branch), Some((first, last))) = (catalog.by_id(id), db.key_bounds(id)?)
                {
                    branch.key_bounds.widen(first, last);
                }
            }
        }
        let listed: BTreeSet<BranchId> = catalog.branches().map(|branch| branch.id).collect();
        self.remove_unlisted_versions(&listed)?;
        *self.sequencer.lock() = checkpoint.last_time;
        self.catalog_covered
            .store(checkpoint.covered.0, Ordering::Release);
        Ok(Some((cut, checkpoint_layers)))
    }
}

/// `branch` as a catalog lists it, with what the catalog's cut takes of its commit points
/// (the image lists them once the cut's tail is written as a run).
fn branch_image(branch: &Branch) -> (BranchImage, CommitsCut) {
    let state = branch.state.read();
    let image = BranchImage {
        id: branch.id,
        name: branch.name(),
        parent: branch.parent().map(|(parent, lsn)| (parent.id, lsn)),
        created: branch.created,
        created_lsn: branch.created_lsn,
        options: branch.options(),
        created_at_time: branch.created_at_time,
        hidden: branch.hidden(),
        pitr_window: branch.pitr_window(),
        gc_cutoff: branch.own_cutoff(),
        start: branch.start(),
        head: state.head,
        flushed: state.flushed,
        commit_runs: Vec::new(),
        commits: Vec::new(),
        layers: state
            .layers
            .iter()
            .map(|layer| LayerEntry {
                name: layer.name.clone(),
                size: layer.size,
                checksum: layer.checksum,
                level: layer.level,
            })
            .collect(),
    };
    (image, state.commits.cut())
}

/// Opens a layer the catalog lists, refusing a missing one or one of another size by name.
/// (Every block is checked against its CRC32 when read; the whole-file checksum is kept for
/// `pagefork inspect` and is not recomputed on open, so opening stays fast.) With a layer
/// cache, an evicted layer opens from its source.
fn open_listed_layer(
    fs: &Arc<dyn FileSystem>,
    layer_cache: Option<&Arc<LayerCache>>,
    layers_dir: &Path,
    entry: &LayerEntry,
) -> Result<PersistedLayer> {
    let path = layers_dir.join(&entry.name);
    let opened = match layer_cache {
        Some(cache) => LayerFile::open_cached(
            Arc::clone(fs),
            &path,
            &entry.name,
            entry.size,
            entry.checksum,
            cache,
        )?,
        None if fs.exists(&path).map_err(EngineError::io("stat", &path))? => {
            Some(Arc::new(LayerFile::open_on(Arc::clone(fs), &path, None)?))
        }
        None => None,
    };
    let Some(file) = opened else {
        let evicted = marker_path(&path);
        let reason = if fs
            .exists(&evicted)
            .map_err(EngineError::io("stat", &evicted))?
        {
            "the catalog lists this layer file; it was evicted to remote storage, and the store was opened without a layer cache to read it back from (open it with its remote location)"
        } else {
            "the catalog lists this layer file but it is missing"
        };
        return Err(EngineError::CorruptFile {
            path,
            offset: 0,
            reason: reason.to_owned(),
        });
    };
    if file.size() != entry.size {
        return Err(EngineError::CorruptFile {
            path,
            offset: 0,
            reason: format!("{} bytes, the catalog says {}", file.size(), entry.size),
        });
    }
    if (entry.level == Level::Image) != (file.range().kind == crate::layer::LayerKind::Image) {
        return Err(EngineError::CorruptFile {
            path,
            offset: 12,
            reason: format!(
                "the catalog lists it as {:?}, the file is a {:?} layer",
                entry.level,
                file.range().kind
            ),
        });
    }
    Ok(PersistedLayer {
        file,
        name: entry.name.clone(),
        size: entry.size,
        checksum: entry.checksum,
        level: entry.level,
    })
}

impl StoreInner {
    /// With the RocksDB backend, removes the versions of every branch `listed` does not
    /// name (deleted, or created after the last catalog and replayed from the WAL anew).
    /// The caller holds `housekeeping` or is opening the store: only a flush or a detach
    /// writes versions, and both run under that lock, so a branch created since the
    /// catalog's snapshot has none yet.
    fn remove_unlisted_versions(&self, listed: &BTreeSet<BranchId>) -> Result<()> {
        let Some(db) = &self.version_db else {
            return Ok(());
        };
        for id in db.branch_ids()? {
            if !listed.contains(&id) {
                db.remove_branch(id)?;
            }
        }
        Ok(())
    }

    /// The last step of a successful open: removes the layer files and commit runs neither
    /// the catalog on disk (`catalog_layers`) lists nor a branch holds now (debris of
    /// flushes, compactions, detaches and commit runs whose catalog was never published). A
    /// file the catalog lists stays even if replay dropped it: until the next catalog is
    /// published, the one on disk must still open.
    pub(super) fn remove_layer_debris(
        &self,
        dir: &Path,
        catalog_layers: BTreeSet<String>,
    ) -> Result<()> {
        let mut keep: BTreeSet<String> = self
            .catalog
            .read()
            .branches()
            .flat_map(|branch| {
                let state = branch.state.read();
                state
                    .layers
                    .iter()
                    .map(|layer| layer.name.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        keep.extend(catalog_layers);
        for files_dir in [LAYERS_DIR_NAME, COMMITS_DIR_NAME] {
            remove_unlisted_layers(
                self.fs.as_ref(),
                &dir.join(files_dir),
                &keep,
                Publishes::Interrupted,
            )?;
        }
        Ok(())
    }
}

/// What the temporary files of publishes found in the layers directory are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Publishes {
    /// The store is running: a layer read back or an eviction marker may be being
    /// published beside housekeeping right now, so temporary files stay.
    InProgress,
    /// The store is opening: nothing else runs, so a temporary file is debris of a
    /// publish a crash interrupted.
    Interrupted,
}

/// Whether `name` is one the store gives its layer files (see `layer_file_name`), their
/// eviction markers (`NAME.evicted`), its commit runs (`commits::run_file_name`), or the
/// temporary name of any of them while being published. Other files are left alone.
fn is_store_layer_file_name(name: &str) -> bool {
    let name = name.strip_suffix(TEMPORARY_SUFFIX).unwrap_or(name);
    let name = name.strip_suffix(".evicted").unwrap_or(name);
    let Some((stem, suffix)) = name.rsplit_once('.') else {
        return false;
    };
    let fields = match suffix {
        "l0" | "l1" | "image" => 5,
        commits::RUN_SUFFIX => 3,
        _ => return false,
    };
    let mut parts = stem.split('-');
    let fields_ok = (0..fields).all(|_| {
        parts
            .next()
            .is_some_and(|part| part.len() == 16 && part.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    let generation_ok = match parts.next() {
        None => true,
        Some(generation) => {
            !generation.is_empty() && generation.bytes().all(|b| b.is_ascii_digit())
        }
    };
    fields_ok && generation_ok && parts.next().is_none()
}

/// The files in `layers_dir` named like the store's layer files (none if it is missing).
fn store_layer_files(fs: &dyn FileSystem, layers_dir: &Path) -> Result<Vec<String>> {
    let names = match fs.list_dir(layers_dir) {
        Ok(names) => names,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(EngineError::io("read directory", layers_dir)(error)),
    };
    Ok(names
        .into_iter()
        .filter_map(|name| name.to_str().map(str::to_owned))
        .filter(|name| is_store_layer_file_name(name))
        .collect())
}

/// Removes the layer files (and eviction markers) in `layers_dir` that `listed` does not
/// name: layers of deleted branches, and debris of cycles a crash interrupted; temporary
/// files too if `publishes` were interrupted. Files not named like the store's layer files
/// are left alone.
fn remove_unlisted_layers(
    fs: &dyn FileSystem,
    layers_dir: &Path,
    listed: &BTreeSet<String>,
    publishes: Publishes,
) -> Result<()> {
    let mut removed = Vec::new();
    for name in store_layer_files(fs, layers_dir)? {
        let temporary = name.ends_with(TEMPORARY_SUFFIX);
        if temporary && publishes == Publishes::InProgress {
            continue;
        }
        if temporary || !listed.contains(name.strip_suffix(".evicted").unwrap_or(&name)) {
            let path: PathBuf = layers_dir.join(&name);
            fs.remove_file(&path)
                .map_err(EngineError::io("remove unlisted layer", &path))?;
            removed.push(name);
        }
    }
    if !removed.is_empty() {
        fs.sync_dir(layers_dir)
            .map_err(EngineError::io("fsync directory", layers_dir))?;
        tracing::info!(?removed, "removed layer files the catalog does not list");
    }
    Ok(())
}
