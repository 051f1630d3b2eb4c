//! Attaching: a store rebuilt in an empty directory from its location alone, as it was at
//! the newest index's recovery point. The attaching process claims a new generation first
//! (so the process it replaces, if still running, is fenced before anything is read;
//! `attach_without_claim` makes a copy to inspect that fences nobody), then
//! downloads and checks every object the index lists, and writes the store's metadata file
//! last: a directory with it holds a complete store. A failed attach removes everything it
//! wrote.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pagefork_engine::layer::{encode_marker, marker_path, read_outline};
use pagefork_engine::{Lsn, PublishedLayer, StdFileSystem, StorePaths, publish_file};

use crate::bucket::Bucket;
use crate::error::{RemoteError, Result};
use crate::generations;
use crate::index::{RemoteObject, RemoteSegment};
use crate::keys;
use crate::location::RemoteLocation;
use crate::state::LocalState;
use crate::sync::read_index;
use crate::workers;

/// What an attach did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachReport {
    /// The location.
    pub location: String,
    /// The generation of the index the store was rebuilt from.
    pub from_generation: u32,
    /// The generation this directory now holds there (`None` for a copy that claimed
    /// none).
    pub generation: Option<u32>,
    /// The store holds every commit ending at or below this LSN.
    pub recovery_point: Lsn,
    /// Objects downloaded.
    pub downloaded_objects: u64,
    /// Bytes downloaded.
    pub downloaded_bytes: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// Rebuilds the store at `location` in `dir` (empty or missing) and makes it the
/// location's writer: a new generation, which fences the process that wrote there before
/// (see the module docs).
pub fn attach(location: &RemoteLocation, dir: &Path) -> Result<AttachReport> {
    attach_as(location, dir, Claim::Generation)
}

/// `attach`, with every layer file left evicted (an eviction marker in its place): the
/// store must then be opened with a layer cache reading from `location` (the `pagefork`
/// command does so from the `pagefork.remote` file attach writes), and each layer file is
/// downloaded by the first read that needs it. Attaching then costs the catalog, the WAL
/// and three small reads per layer when the store opens, whatever the store's size.
pub fn attach_lazily(location: &RemoteLocation, dir: &Path) -> Result<AttachReport> {
    attach_as(location, dir, Claim::GenerationLazily)
}

/// Rebuilds the store at `location` in `dir` without claiming a generation: a copy to
/// inspect (or to check a backup with) that fences nobody. The copy is a store like any
/// other, but a sync of it to `location` is refused: it holds no generation there, and
/// publishing over what the writer published since could roll the location back.
pub fn attach_without_claim(location: &RemoteLocation, dir: &Path) -> Result<AttachReport> {
    attach_as(location, dir, Claim::Nothing)
}

/// Whether an attach takes the location over.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Claim {
    Generation,
    /// A generation, and the layer files left in the bucket.
    GenerationLazily,
    Nothing,
}

fn attach_as(location: &RemoteLocation, dir: &Path, claim: Claim) -> Result<AttachReport> {
    let started = Instant::now();
    let created_dir = prepare_empty_dir(dir)?;
    let result = attach_into(location, dir, claim, started);
    if result.is_err() {
        // Nothing of a failed attach stays: the directory was empty (or missing).
        let cleanup = if created_dir {
            std::fs::remove_dir_all(dir)
        } else {
            remove_contents(dir)
        };
        if let Err(error) = cleanup {
            tracing::warn!(dir = %dir.display(), %error, "could not remove what a failed attach wrote");
        }
    }
    result
}

fn attach_into(
    location: &RemoteLocation,
    dir: &Path,
    claim: Claim,
    started: Instant,
) -> Result<AttachReport> {
    let bucket = Bucket::connect(location)?;
    let no_index = || RemoteError::NoIndex {
        location: location.url(),
    };
    // A location with nothing to attach gets no generation marker either.
    generations::newest_index(&bucket)?.ok_or_else(no_index)?;
    let generation = match claim {
        Claim::Generation | Claim::GenerationLazily => Some(generations::claim(&bucket, "attach")?),
        Claim::Nothing => None,
    };
    let attached = attach_claimed(location, &bucket, dir, (claim, generation), started);
    if let (Err(_), Some(generation)) = (&attached, generation) {
        // A failed attach publishes nothing under its generation: giving the claim back
        // lets the process that writes there publish again once it connects anew (a
        // process that saw the claim meanwhile stays fenced until it restarts), instead of
        // fencing it for good for a copy that does not exist (found by a review).
        if let Err(error) = bucket.delete(&keys::generation_marker(generation)) {
            tracing::warn!(%error, generation, "could not give back the generation of a failed attach");
        }
    }
    attached
}

/// The rest of `attach_into`, once `generation` (if any) is claimed.
fn attach_claimed(
    location: &RemoteLocation,
    bucket: &Bucket,
    dir: &Path,
    (claim, generation): (Claim, Option<u32>),
    started: Instant,
) -> Result<AttachReport> {
    let no_index = || RemoteError::NoIndex {
        location: location.url(),
    };
    // The newest index once this generation fences every older process.
    let from_generation = generations::newest_index(bucket)?.ok_or_else(no_index)?;
    let index = read_index(bucket, from_generation)?;
    let paths = StorePaths::new(dir);
    let mut downloaded = Downloaded::default();
    for made in [paths.layers_dir(), paths.commits_dir(), paths.wal_dir()] {
        std::fs::create_dir_all(&made).map_err(RemoteError::io("create", &made))?;
    }
    let lazily = claim == Claim::GenerationLazily;
    let layers = workers::run_all(index.layers.iter().collect(), |layer| {
        let path = paths.listed_file(&layer.name);
        if lazily && !PublishedLayer::is_commit_run(&layer.name) {
            let outline = fetch_outline(bucket, &layer.object)?;
            let marker = encode_marker(layer.object.size, layer.object.crc32, &outline);
            write_synced(&marker_path(&path), &marker)?;
            Ok(marker.len() as u64)
        } else {
            let bytes = fetch_checked(bucket, &layer.object)?;
            write_synced(&path, &bytes)?;
            Ok(layer.object.size)
        }
    })?;
    downloaded.objects += layers.len() as u64;
    downloaded.bytes += layers.iter().sum::<u64>();
    let mut by_segment: Vec<Vec<&RemoteSegment>> = Vec::new();
    for piece in &index.wal {
        match by_segment.last_mut() {
            Some(pieces)
                if pieces
                    .first()
                    .is_some_and(|first| first.start == piece.start) =>
            {
                pieces.push(piece);
            }
            _ => by_segment.push(vec![piece]),
        }
    }
    let segments = workers::run_all(by_segment, |pieces| {
        let Some(first) = pieces.first() else {
            return Ok(0);
        };
        let path = paths.segment(Lsn(first.start));
        let file = create_new(&path)?;
        let mut bytes = 0;
        for piece in &pieces {
            let downloaded = fetch_checked(bucket, &piece.object)?;
            file.write_all_at(&downloaded, piece.offset)
                .map_err(RemoteError::io("write", &path))?;
            bytes += piece.object.size;
        }
        file.set_len(index.segment_size)
            .map_err(RemoteError::io("extend", &path))?;
        file.sync_all().map_err(RemoteError::io("fsync", &path))?;
        Ok(bytes)
    })?;
    downloaded.objects += index.wal.len() as u64;
    downloaded.bytes += segments.iter().sum::<u64>();
    if let Some(catalog) = &index.catalog {
        let bytes = downloaded.fetch(bucket, catalog)?;
        write_synced(&paths.catalog(), &bytes)?;
    }
    let meta = downloaded.fetch(bucket, &index.meta)?;
    for synced in [
        paths.layers_dir(),
        paths.commits_dir(),
        paths.wal_dir(),
        dir.to_owned(),
    ] {
        sync_dir(&synced)?;
    }
    if let Some(generation) = generation {
        LocalState::new(location, generation)
            .at(Lsn(index.wal_end))
            .published(index.mark())
            .write(dir)?;
    }
    publish_file(&StdFileSystem, &paths.meta(), &meta)
        .map_err(RemoteError::io("publish", paths.meta()))?;
    Ok(AttachReport {
        location: location.url(),
        from_generation,
        generation,
        recovery_point: Lsn(index.wal_end),
        downloaded_objects: downloaded.objects,
        downloaded_bytes: downloaded.bytes,
        elapsed: started.elapsed(),
    })
}

#[derive(Default)]
struct Downloaded {
    objects: u64,
    bytes: u64,
}

impl Downloaded {
    /// The object's bytes, checked against the index's size and CRC32.
    fn fetch(&mut self, bucket: &Bucket, object: &RemoteObject) -> Result<Bytes> {
        let bytes = fetch_checked(bucket, object)?;
        self.objects += 1;
        self.bytes += object.size;
        Ok(bytes)
    }
}

/// The outline of a layer object (header, index and footer: what opening a store with the
/// layer evicted needs), read with three ranged requests and checked; damage is an error
/// naming the object's key and the offset.
fn fetch_outline(bucket: &Bucket, object: &RemoteObject) -> Result<Vec<u8>> {
    let mut failure = None;
    let mut read = |range: std::ops::Range<u64>| {
        bucket.get_range(&object.key, range).map_err(|error| {
            let message = error.to_string();
            failure = Some(error);
            message
        })
    };
    read_outline(object.size, &mut read).map_err(|why| {
        failure.take().unwrap_or_else(|| RemoteError::Damaged {
            what: "remote object",
            name: bucket.location().key(&object.key),
            offset: 0,
            why: format!("not a layer's outline: {why}"),
        })
    })
}

/// The object's bytes, checked against the index's size and CRC32: a damaged object is an
/// error naming its key and the offset.
pub(crate) fn fetch_checked(bucket: &Bucket, object: &RemoteObject) -> Result<Bytes> {
    let name = bucket.location().key(&object.key);
    let bytes = bucket
        .get(&object.key)?
        .ok_or_else(|| RemoteError::Damaged {
            what: "remote object",
            name: name.clone(),
            offset: 0,
            why: "the index lists it, but it is not there".to_owned(),
        })?;
    if bytes.len() as u64 != object.size {
        return Err(RemoteError::Damaged {
            what: "remote object",
            name,
            offset: (bytes.len() as u64).min(object.size),
            why: format!("{} bytes, the index says {}", bytes.len(), object.size),
        });
    }
    let crc32 = crc32fast::hash(&bytes);
    if crc32 != object.crc32 {
        return Err(RemoteError::Damaged {
            what: "remote object",
            name,
            offset: 0,
            why: format!("CRC32 {crc32:08x}, the index says {:08x}", object.crc32),
        });
    }
    Ok(bytes)
}

/// A new file at `path` (an error if one is there).
fn create_new(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(RemoteError::io("create", path))
}

/// Writes `bytes` as a new file at `path` and fsyncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let file = create_new(path)?;
    file.write_all_at(bytes, 0)
        .map_err(RemoteError::io("write", path))?;
    file.sync_all().map_err(RemoteError::io("fsync", path))
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(RemoteError::io("fsync directory", dir))
}

/// Makes sure `dir` exists and is empty; true if it had to be created.
fn prepare_empty_dir(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut found: Vec<String> = entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect();
            if found.is_empty() {
                return Ok(false);
            }
            found.sort();
            found.truncate(5);
            Err(RemoteError::NotEmpty {
                dir: dir.to_owned(),
                found: found.join(", "),
            })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(RemoteError::io("create", dir))?;
            Ok(true)
        }
        Err(error) => Err(RemoteError::io("list", dir)(error)),
    }
}

fn remove_contents(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path: PathBuf = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}
