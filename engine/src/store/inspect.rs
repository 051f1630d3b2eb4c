//! Describing the store for people: its WAL records (`pagefork inspect wal`, like
//! pg_waldump) and its files (`pagefork inspect store`). Read-only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pagefork_wal::Lsn;

use super::Store;
use crate::branch::BranchId;
use crate::catalog::Branch;
use crate::checkpoint::CATALOG_FILE_NAME;
use crate::error::{EngineError, Result};
use crate::fs::FileSystem;
use crate::layer::{LayerRange, Level};
use crate::log::Log;
use crate::record::{BranchChange, Record};
use crate::time::Timestamp;
use crate::update::Update;

/// One WAL record, described.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalEntry {
    /// Where the record starts.
    pub start: Lsn,
    /// Its LSN (its end).
    pub end: Lsn,
    /// Its time.
    pub time: Timestamp,
    /// `commit`, `create-branch` or `delete-branch`.
    pub kind: &'static str,
    /// What it does, in words.
    pub description: String,
}

impl Store {
    /// The WAL records from `from` (a record boundary; the oldest kept record if `None`),
    /// at most `limit` of them, described. An in-memory store has no WAL and returns none.
    pub fn wal_entries(&self, from: Option<Lsn>, limit: usize) -> Result<Vec<WalEntry>> {
        let Log::Wal(wal) = &self.inner.log else {
            return Ok(Vec::new());
        };
        let mut entries = Vec::new();
        for record in wal
            .read_from(from.unwrap_or_else(|| wal.oldest_lsn()))?
            .take(limit)
        {
            let record = record?;
            let lsn = record.end;
            let (decoded, time) = Record::decode(record.kind, record.payload)
                .map_err(|reason| EngineError::CorruptRecord { lsn, reason })?;
            let (kind, description) = describe(&decoded);
            entries.push(WalEntry {
                start: record.start,
                end: record.end,
                time,
                kind,
                description,
            });
        }
        Ok(entries)
    }
}

fn describe(record: &Record) -> (&'static str, String) {
    match record {
        Record::Commit { branch, updates } => {
            let count = |wanted: fn(&Update) -> bool| {
                updates.iter().filter(|(_, update)| wanted(update)).count()
            };
            let images = count(|update| matches!(update, Update::Image(_)));
            let patches = count(|update| matches!(update, Update::Patch { .. }));
            let drops = count(|update| matches!(update, Update::Drop));
            (
                "commit",
                format!(
                    "branch {branch}: {} updates ({images} images, {patches} patches, {drops} drops)",
                    updates.len()
                ),
            )
        }
        Record::CreateBranch(create) => {
            let from = match create.parent {
                Some((parent, lsn)) => format!(" from {parent} at {lsn}"),
                None => " (root)".to_owned(),
            };
            (
                "create-branch",
                format!("{:?} {}{from}", create.name, create.id),
            )
        }
        Record::DeleteBranch { id } => ("delete-branch", format!("branch {id}")),
        Record::ChangeBranch { id, change } => (
            "change-branch",
            match change {
                BranchChange::Rename(name) => format!("branch {id}: rename to {name:?}"),
                BranchChange::Expiry(expiry) => format!("branch {id}: expiry {expiry:?}"),
                BranchChange::Protected(protected) => {
                    format!("branch {id}: protected {protected}")
                }
                BranchChange::PitrWindow(window) => format!("branch {id}: PITR window {window:?}"),
            },
        ),
        Record::ReplaceBranch {
            old,
            reason,
            backup,
            new,
        } => {
            let from = match new.parent {
                Some((parent, lsn)) => format!("{parent} at {lsn}"),
                None => "nothing".to_owned(),
            };
            let kept = match backup {
                Some(name) => format!("kept as {name:?}"),
                None => "hidden".to_owned(),
            };
            (
                "replace-branch",
                format!(
                    "{reason:?} {:?}: {} from {from} takes the name; {old} {kept}",
                    new.name, new.id
                ),
            )
        }
        Record::Lease {
            branch,
            lsn,
            expires_at,
        } => (
            "lease",
            format!("branch {branch}: keeps {lsn} until {expires_at}"),
        ),
        Record::DetachBranch { id, points } => (
            "detach-branch",
            format!(
                "branch {id}: copies what it reads through its ancestors from {} up, keeps {} older states",
                points.last().copied().unwrap_or_default(),
                points.len().saturating_sub(1)
            ),
        ),
    }
}

/// What a store's directory holds (`pagefork inspect store`): its formats, the catalog,
/// the WAL, and each branch's layer files, each checked against its checksums if asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreFiles {
    /// The directory (`None` in memory).
    pub dir: Option<PathBuf>,
    /// The page size.
    pub page_size: usize,
    /// Format versions this build writes: the store's meta file, its catalog, its layers.
    pub formats: FormatVersions,
    /// The LSN the published catalog covers: replay on open starts there.
    pub catalog_covers: Lsn,
    /// Size of the catalog file in bytes.
    pub catalog_bytes: u64,
    /// The WAL, for a store on disk.
    pub wal: Option<WalFiles>,
    /// Every branch, hidden old states too, in id order.
    pub branches: Vec<BranchFiles>,
}

/// The on-disk format versions (each file also carries its own and is refused if it
/// differs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FormatVersions {
    /// `pagefork.meta` (1 for a native store, 2 for RocksDB: the version it is written in).
    pub meta: u32,
    /// `catalog`.
    pub catalog: u32,
    /// Layer files.
    pub layer: u32,
    /// Commit runs.
    pub commit_run: u32,
    /// WAL segments.
    pub wal: u32,
}

/// The WAL's segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalFiles {
    /// Segment size in bytes.
    pub segment_size: u64,
    /// Segment files kept.
    pub segments: usize,
    /// Bytes they take.
    pub bytes: u64,
    /// The oldest record kept starts here.
    pub oldest: Lsn,
    /// Every record ending at or below this is fsynced.
    pub durable: Lsn,
}

/// One branch's files and memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchFiles {
    /// Its id.
    pub id: BranchId,
    /// Its name (for a hidden old state, the name it had).
    pub name: String,
    /// A hidden old state, kept for its children.
    pub hidden: bool,
    /// Its head.
    pub head: Lsn,
    /// Every own version at or below this is in its layer files.
    pub flushed: Lsn,
    /// Bytes of versions in its open and frozen layers (replayed from the WAL on open).
    pub unflushed_bytes: u64,
    /// Its layer files.
    pub layers: Vec<LayerFileSummary>,
    /// How many commit points it holds (PITR searches them).
    pub commit_points: u64,
    /// The files holding its older commit points, oldest first (the newer ones are in
    /// memory until the next catalog).
    pub commit_runs: Vec<CommitRunSummary>,
}

/// One file of a branch's commit points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitRunSummary {
    /// File name inside `commits/`.
    pub name: String,
    /// How many commit points it holds.
    pub points: u64,
    /// Its size.
    pub bytes: u64,
}

/// One layer file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerFileSummary {
    /// File name inside `layers/`.
    pub name: String,
    /// Its level.
    pub level: Level,
    /// Its key and LSN ranges.
    pub range: LayerRange,
    /// Page versions it holds.
    pub versions: usize,
    /// Its size in bytes.
    pub bytes: u64,
    /// Whether the file is on local disk (false: evicted, in the layer cache's source).
    pub resident: bool,
    /// `None` if not checked; `Some(Ok(()))` if every block matched its checksum;
    /// `Some(Err(what))` naming the damage.
    pub check: Option<Result<(), String>>,
}

impl Store {
    /// Reads every listed layer file on local disk in full against its checksums; the
    /// first damage found is the error.
    pub(super) fn check_local_layers(&self) -> Result<()> {
        let branches: Vec<Arc<Branch>> = self.inner.catalog.read().branches().cloned().collect();
        for branch in branches {
            let layers = branch.state.read().layers.clone();
            for layer in layers.iter().filter(|layer| layer.file.is_resident()) {
                layer.file.versions().map(drop)?;
            }
        }
        Ok(())
    }

    /// What the store's files are, with every layer file read and checked against its
    /// checksums if `verify` (that reads every layer in full). Once an evicted layer cannot
    /// be read back, the other evicted layers are not tried (each would wait as long) and
    /// their checks say so; resident layers are still checked.
    pub fn files(&self, verify: bool) -> Result<StoreFiles> {
        let inner = &self.inner;
        let wal = match (&inner.log, &inner.dir) {
            (Log::Wal(wal), Some(_)) => {
                let (mut segments, mut bytes) = (0, 0);
                let dir = wal.dir();
                let names = inner
                    .fs
                    .list_dir(dir)
                    .map_err(EngineError::io("list", dir))?;
                for name in names {
                    let path = dir.join(name);
                    if path.extension().is_some_and(|ext| ext == "wal") {
                        segments += 1;
                        bytes += file_size(inner.fs.as_ref(), &path)?;
                    }
                }
                Some(WalFiles {
                    segment_size: wal.segment_size(),
                    segments,
                    bytes,
                    oldest: wal.oldest_lsn(),
                    durable: wal.durable_lsn(),
                })
            }
            _ => None,
        };
        let catalog_bytes = match &inner.dir {
            Some(dir) => {
                let path = dir.join(CATALOG_FILE_NAME);
                // A store never checkpointed has no catalog yet.
                if inner
                    .fs
                    .exists(&path)
                    .map_err(EngineError::io("stat", &path))?
                {
                    file_size(inner.fs.as_ref(), &path)?
                } else {
                    0
                }
            }
            None => 0,
        };
        let mut branches = Vec::new();
        // The first evicted layer that could not be read back, if any.
        let mut fetch_failed: Option<String> = None;
        let mut listed: Vec<Arc<Branch>> = inner.catalog.read().branches().cloned().collect();
        listed.sort_by_key(|branch| branch.id);
        for branch in listed {
            let state = branch.state.read();
            let frozen = state
                .frozen
                .as_ref()
                .map_or(0, |(frozen, _)| frozen.bytes());
            let mut layers = Vec::new();
            for layer in state.layers.iter() {
                let check = match (verify, &fetch_failed) {
                    (false, _) => None,
                    // Once one evicted layer could not be read back, the others are not
                    // tried: each would wait as long (a review's stalled server kept
                    // `inspect store` waiting minutes per layer).
                    (true, Some(first)) if !layer.file.is_resident() => Some(Err(format!(
                        "evicted, not read back: reading back {first} failed first"
                    ))),
                    (true, _) => Some(layer.file.versions().map(drop).map_err(|error| {
                        if matches!(error, EngineError::LayerFetch { .. }) {
                            fetch_failed = Some(layer.name.clone());
                        }
                        error.to_string()
                    })),
                };
                layers.push(LayerFileSummary {
                    name: layer.name.clone(),
                    level: layer.level,
                    range: *layer.file.range(),
                    versions: layer.file.version_count(),
                    bytes: layer.size,
                    resident: layer.file.is_resident(),
                    check,
                });
            }
            branches.push(BranchFiles {
                id: branch.id,
                name: branch.name(),
                hidden: branch.hidden(),
                head: state.head,
                flushed: state.flushed,
                unflushed_bytes: state.open.bytes() + frozen,
                layers,
                commit_points: state.commits.len() as u64,
                commit_runs: state
                    .commits
                    .runs()
                    .map(|(entry, points)| CommitRunSummary {
                        name: entry.name.clone(),
                        points: points as u64,
                        bytes: entry.size,
                    })
                    .collect(),
            });
        }
        Ok(StoreFiles {
            dir: inner.dir.clone(),
            page_size: inner.page_size,
            formats: FormatVersions {
                meta: crate::meta::format_version(self.backend()),
                catalog: crate::checkpoint::FORMAT_VERSION,
                layer: crate::layer::FORMAT_VERSION,
                commit_run: crate::commits::FORMAT_VERSION,
                wal: pagefork_wal::layout::FORMAT_VERSION,
            },
            catalog_covers: inner.catalog_covered(),
            catalog_bytes,
            wal,
            branches,
        })
    }
}

fn file_size(fs: &dyn FileSystem, path: &Path) -> Result<u64> {
    fs.open_read(path)
        .and_then(|file| file.size())
        .map_err(EngineError::io("stat", path))
}
