//! The published state of a store on disk, for a copy of it elsewhere (remote storage):
//! the last published catalog, the layer files it lists, and the WAL from its replay start
//! to the durable end. Those files, put in an empty directory, open as this store did at
//! that durable end.
//!
//! A copy is taken file by file while the store goes on, so the files of the state handed
//! out must stay until the copier says it is done: the store keeps one *pin* (the last
//! state handed out), and a catalog published meanwhile neither removes a pinned layer
//! file nor WAL at or after the pinned replay start. Pinning a newer state releases the
//! older one; files only it held go at the next catalog publish, like any unlisted layer.
//!
//! Invariants it keeps:
//! - The state is an exact cut: taken under the housekeeping lock, so no catalog is
//!   published between reading the catalog file and listing its files.
//! - Every file named is on disk until the pin moves on: layer files are immutable once
//!   published, and WAL bytes below the durable end are never rewritten.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use bytes::Bytes;
use pagefork_wal::{Lsn, SegmentFile};

use super::Store;
use super::checkpoint::{COMMITS_DIR_NAME, LAYERS_DIR_NAME};
use crate::backend::Backend;
use crate::checkpoint::{CATALOG_FILE_NAME, Checkpoint};
use crate::error::{EngineError, Result};
use crate::log::Log;
use crate::meta::META_FILE_NAME;

/// What a copy of the store needs, as of one instant (see the module docs).
#[derive(Clone, Debug)]
pub struct PublishedFiles {
    /// The WAL's identity ([`pagefork_wal::Wal::log_id`]): a copy of this store keeps it.
    pub log_id: u64,
    /// The store's metadata file.
    pub meta: PathBuf,
    /// The last published catalog's bytes; `None` before the first one (replay then starts
    /// at the log's first record).
    pub catalog: Option<Bytes>,
    /// Replay of the WAL starts after the record ending here.
    pub replay_from: Lsn,
    /// The files the catalog lists: layer files, and commit runs (named `*.commits`; a
    /// copy puts them where [`StorePaths::listed_file`] says, and needs them whole, see
    /// [`PublishedLayer::is_commit_run`]).
    pub layers: Vec<PublishedLayer>,
    /// Segment size of the WAL.
    pub segment_size: u64,
    /// The WAL segments from the one holding `replay_from` on; of the last, only the bytes
    /// below `wal_end` are part of this state.
    pub wal: Vec<SegmentFile>,
    /// Every record ending at or below this LSN is durable and in `wal`: a copy opens with
    /// exactly the commits up to here.
    pub wal_end: Lsn,
}

/// One layer file of [`PublishedFiles`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedLayer {
    /// Its file name (unique in the store's `layers/` directory).
    pub name: String,
    /// Where it is.
    pub path: PathBuf,
    /// Its length in bytes.
    pub size: u64,
    /// CRC32 of the whole file (for a layer, as the catalog holds it; a commit run's
    /// catalog entry holds its own trailing CRC32, from which this follows).
    pub checksum: u32,
}

impl PublishedLayer {
    /// Whether the file is a run of commit points rather than a layer of page versions:
    /// an open reads every run whole, so a copy that fetches layers lazily fetches runs
    /// at once.
    pub fn is_commit_run(name: &str) -> bool {
        name.ends_with(&format!(".{}", crate::commits::RUN_SUFFIX))
    }
}

impl PublishedFiles {
    /// How many bytes of the segment file starting at `start` belong to this state: the
    /// whole segment if it ends at or below `wal_end`, else the bytes below `wal_end`.
    pub fn segment_len(&self, start: Lsn) -> u64 {
        self.wal_end
            .0
            .saturating_sub(start.0)
            .min(self.segment_size)
    }
}

/// Where each file of [`PublishedFiles`] goes in a store directory: what a copy writes to
/// make a store that opens (the metadata file last: a directory with it holds a complete
/// store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorePaths {
    dir: PathBuf,
}

impl StorePaths {
    /// The paths of a store in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> StorePaths {
        StorePaths { dir: dir.into() }
    }

    /// The metadata file.
    pub fn meta(&self) -> PathBuf {
        self.dir.join(META_FILE_NAME)
    }

    /// The catalog.
    pub fn catalog(&self) -> PathBuf {
        self.dir.join(CATALOG_FILE_NAME)
    }

    /// The directory of the layer files.
    pub fn layers_dir(&self) -> PathBuf {
        self.dir.join(LAYERS_DIR_NAME)
    }

    /// The directory of the commit runs.
    pub fn commits_dir(&self) -> PathBuf {
        self.dir.join(COMMITS_DIR_NAME)
    }

    /// Where the file named `name` of [`PublishedFiles::layers`] goes: a commit run in
    /// [`StorePaths::commits_dir`], a layer file in [`StorePaths::layers_dir`].
    pub fn listed_file(&self, name: &str) -> PathBuf {
        match PublishedLayer::is_commit_run(name) {
            true => self.commits_dir().join(name),
            false => self.layers_dir().join(name),
        }
    }

    /// The directory of the WAL segments.
    pub fn wal_dir(&self) -> PathBuf {
        self.dir.join(super::WAL_DIR_NAME)
    }

    /// The WAL segment file starting at `start`.
    pub fn segment(&self, start: Lsn) -> PathBuf {
        self.wal_dir()
            .join(pagefork_wal::layout::segment_file_name(start))
    }
}

/// What the store keeps for the state last handed out.
#[derive(Debug, Default)]
pub(super) struct Pin {
    pub(super) layers: BTreeSet<String>,
    pub(super) wal_from: Option<Lsn>,
}

impl Store {
    /// The store's published state as of now, pinned until the next call (see the module
    /// docs). Refused for a store in memory and for the RocksDB backend, whose versions
    /// are not in files a copy can take.
    pub fn pin_published(&self) -> Result<PublishedFiles> {
        let inner = &self.inner;
        let (Log::Wal(wal), Some(dir)) = (&inner.log, inner.dir.as_deref()) else {
            return Err(EngineError::InvalidConfig(
                "a store in memory has no files to copy".to_owned(),
            ));
        };
        if self.backend() != Backend::Native {
            return Err(EngineError::InvalidConfig(format!(
                "a store with the {} backend keeps its versions in a database, not in files a copy can take",
                self.backend()
            )));
        }
        let _housekeeping = inner.housekeeping.lock();
        let paths = StorePaths::new(dir);
        let catalog_path = paths.catalog();
        let catalog = match inner.fs.read(&catalog_path) {
            Ok(bytes) => Some(Bytes::from(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(EngineError::io("read", &catalog_path)(error)),
        };
        let (replay_from, layers) = match &catalog {
            Some(bytes) => {
                let checkpoint = Checkpoint::decode(bytes.clone(), &catalog_path)?;
                let layers: BTreeMap<String, PublishedLayer> = checkpoint
                    .branches
                    .iter()
                    .flat_map(|branch| {
                        let layers = branch
                            .layers
                            .iter()
                            .map(|layer| (&layer.name, layer.size, layer.checksum));
                        let runs = branch
                            .commit_runs
                            .iter()
                            .map(|run| (&run.name, run.size, run.whole_file_checksum()));
                        layers.chain(runs)
                    })
                    .map(|(name, size, checksum)| {
                        let published = PublishedLayer {
                            name: name.clone(),
                            path: paths.listed_file(name),
                            size,
                            checksum,
                        };
                        (name.clone(), published)
                    })
                    .collect();
                (checkpoint.replay_from().0, layers)
            }
            None => (wal.oldest_lsn(), BTreeMap::new()),
        };
        let names: BTreeSet<String> = layers.keys().cloned().collect();
        let wal_end = wal.durable_lsn();
        let files = PublishedFiles {
            log_id: wal.log_id(),
            meta: paths.meta(),
            catalog,
            replay_from,
            layers: layers.into_values().collect(),
            segment_size: wal.segment_size(),
            wal: wal.segment_files_from(replay_from),
            wal_end,
        };
        *inner.pin.lock() = Pin {
            layers: names,
            // The start of the first segment handed out: the WAL is removed only below it
            // (a segment ending exactly at the replay start is handed out too).
            wal_from: Some(
                files
                    .wal
                    .first()
                    .map_or(replay_from, |segment| segment.start),
            ),
        };
        Ok(files)
    }

    /// Releases the pin: the files only it held go at the next catalog publish.
    pub fn unpin_published(&self) {
        *self.inner.pin.lock() = Pin::default();
    }
}
