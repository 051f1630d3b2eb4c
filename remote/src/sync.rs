//! Uploading: one sync copies a store's published state (`Store::pin_published`) to its
//! location and then publishes an index listing it. Objects already there (uploaded by an
//! earlier sync, or listed by the index the store was attached from) are not uploaded
//! again: a layer is known by its name and checksum, a WAL object by its segment and
//! length.
//!
//! Invariants it keeps (DESIGN.md invariant 10):
//! - The index is written only after every object it lists is fully uploaded, and only
//!   while this process's generation is the newest at the location (else `Fenced`).
//! - Every byte uploaded is checked first: a layer against the catalog's checksum of the
//!   file, everything else by the CRC32 the index records for it.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pagefork_engine::{EngineError, Lsn, PublishedFiles, Store};

use crate::bucket::Bucket;
use crate::error::{RemoteError, Result};
use crate::generations;
use crate::index::{INDEX_FORMAT_VERSION, RemoteIndex, RemoteLayer, RemoteObject, RemoteSegment};
use crate::keys;
use crate::location::RemoteLocation;
use crate::state::LocalState;

/// What one sync did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncReport {
    /// The location (`s3://bucket/prefix`).
    pub location: String,
    /// This process's generation there.
    pub generation: u32,
    /// The recovery point: every commit ending at or below it is in the bucket.
    pub recovery_point: Lsn,
    /// Objects uploaded by this sync.
    pub uploaded_objects: u64,
    /// Bytes uploaded by this sync.
    pub uploaded_bytes: u64,
    /// Layer files the index lists.
    pub layers: usize,
    /// WAL segments the index lists.
    pub wal_segments: usize,
    /// Objects the previous index listed and this one does not, deleted after it was
    /// published.
    pub deleted_objects: u64,
    /// How long the sync took.
    pub elapsed: Duration,
}

/// Copies one store to one location (see the module docs).
#[derive(Debug)]
pub struct Uploader {
    bucket: Bucket,
    dir: PathBuf,
    log_id: u64,
    generation: u32,
    layers: BTreeMap<(String, u32), RemoteObject>,
    segments: BTreeMap<(u64, u64), RemoteObject>,
    /// The metadata file's and catalogs' objects by (directory, CRC32, size).
    small: BTreeMap<(String, u32, u64), RemoteObject>,
    /// The keys the last index published (or attached from) lists: what this process may
    /// delete once an index without them is published.
    listed: BTreeSet<String>,
}

impl Uploader {
    /// An uploader of `store` (on disk, native backend) to `location`. The first time a
    /// store is copied there it claims a generation (recorded in its `pagefork.remote`);
    /// a location that holds another store is refused.
    pub fn connect(location: &RemoteLocation, store: &Store) -> Result<Uploader> {
        let dir = store
            .dir()
            .ok_or_else(|| {
                EngineError::InvalidConfig("a store in memory has no files to copy".to_owned())
            })?
            .to_owned();
        let log_id = store.pin_published()?.log_id;
        let bucket = Bucket::connect(location)?;
        let newest_index = match generations::newest_index(&bucket)? {
            Some(generation) => Some(read_index(&bucket, generation)?),
            None => None,
        };
        if let Some(index) = &newest_index
            && index.log_id != log_id
        {
            return Err(RemoteError::OtherStore {
                location: location.url(),
                found: index.log_id,
                ours: log_id,
            });
        }
        let generation = match LocalState::read(&dir)? {
            Some(state) if state.location == location.url() => state.generation,
            _ => {
                let generation = generations::claim(&bucket, "sync")?;
                LocalState::new(location.url(), generation).write(&dir)?;
                generation
            }
        };
        let mut uploader = Uploader {
            bucket,
            dir,
            log_id,
            generation,
            layers: BTreeMap::new(),
            segments: BTreeMap::new(),
            small: BTreeMap::new(),
            listed: BTreeSet::new(),
        };
        if let Some(index) = newest_index {
            uploader.remember(&index);
        }
        Ok(uploader)
    }

    /// This process's generation at the location.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Objects of `index` need no upload.
    fn remember(&mut self, index: &RemoteIndex) {
        self.listed = index.keys();
        for layer in &index.layers {
            self.layers.insert(
                (layer.name.clone(), layer.object.crc32),
                layer.object.clone(),
            );
        }
        for segment in &index.wal {
            self.segments
                .insert((segment.start, segment.object.size), segment.object.clone());
        }
        for object in index.catalog.iter().chain(std::iter::once(&index.meta)) {
            self.small.insert(
                small_slot(&object.key, object.crc32, object.size),
                object.clone(),
            );
        }
    }

    /// Copies the store's published state now and publishes an index of it.
    pub fn sync(&mut self, store: &Store) -> Result<SyncReport> {
        let started = Instant::now();
        let files = store.pin_published()?;
        if files.log_id != self.log_id || store.dir() != Some(self.dir.as_path()) {
            return Err(EngineError::InvalidConfig(format!(
                "this uploader copies the store in {}, not this one",
                self.dir.display()
            ))
            .into());
        }
        let mut uploaded = Uploaded::default();
        let meta_bytes =
            std::fs::read(&files.meta).map_err(RemoteError::io("read", &files.meta))?;
        let meta = self.put_small(keys::meta, Bytes::from(meta_bytes), &mut uploaded)?;
        let catalog = match &files.catalog {
            Some(bytes) => Some(self.put_small(keys::catalog, bytes.clone(), &mut uploaded)?),
            None => None,
        };
        let mut layers = Vec::with_capacity(files.layers.len());
        for layer in &files.layers {
            let known = (layer.name.clone(), layer.checksum);
            let object = match self.layers.get(&known) {
                Some(object) => object.clone(),
                None => {
                    let bytes = read_checked_layer(&layer.path, layer.size, layer.checksum)?;
                    let key = keys::layer(&layer.name, layer.checksum, self.generation);
                    let object = self.put(key, bytes, &mut uploaded)?;
                    self.layers.insert(known, object.clone());
                    object
                }
            };
            layers.push(RemoteLayer {
                name: layer.name.clone(),
                object,
            });
        }
        let wal = self.put_wal(&files, &mut uploaded)?;
        let index = RemoteIndex {
            format_version: INDEX_FORMAT_VERSION,
            generation: self.generation,
            log_id: self.log_id,
            published_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64),
            meta,
            catalog,
            replay_from: files.replay_from.0,
            layers,
            segment_size: files.segment_size,
            wal,
            wal_end: files.wal_end.0,
        };
        let encoded = index.encode()?;
        generations::check_current(&self.bucket, self.generation)?;
        self.bucket
            .put(&keys::index(self.generation), Bytes::from(encoded))?;
        let deleted = self.delete_unlisted(&index)?;
        Ok(SyncReport {
            location: self.bucket.location().url(),
            generation: self.generation,
            recovery_point: files.wal_end,
            uploaded_objects: uploaded.objects,
            uploaded_bytes: uploaded.bytes,
            layers: index.layers.len(),
            wal_segments: index.wal.len(),
            deleted_objects: deleted,
            elapsed: started.elapsed(),
        })
    }

    /// Deletes what the previous index listed and `published` does not (a layer compaction
    /// or GC replaced, a shorter copy of a WAL segment, an older catalog), now that an
    /// index without them is published, and only while this generation is the newest (a
    /// newer process may have attached from an index that lists them). A crash midway
    /// leaves unlisted objects, which `scrub` removes.
    fn delete_unlisted(&mut self, published: &RemoteIndex) -> Result<u64> {
        let now_listed = published.keys();
        let doomed: Vec<String> = self.listed.difference(&now_listed).cloned().collect();
        self.listed = now_listed;
        if doomed.is_empty() {
            return Ok(0);
        }
        generations::check_current(&self.bucket, self.generation)?;
        for key in &doomed {
            self.bucket.delete(key)?;
        }
        self.layers
            .retain(|_, object| !doomed.contains(&object.key));
        self.segments
            .retain(|_, object| !doomed.contains(&object.key));
        self.small.retain(|_, object| !doomed.contains(&object.key));
        Ok(doomed.len() as u64)
    }

    /// The WAL from the segment holding the replay start to the recovery point.
    fn put_wal(
        &mut self,
        files: &PublishedFiles,
        uploaded: &mut Uploaded,
    ) -> Result<Vec<RemoteSegment>> {
        let mut wal = Vec::new();
        for segment in &files.wal {
            let len = files.segment_len(segment.start);
            if len == 0 {
                continue;
            }
            let known = (segment.start.0, len);
            let object = match self.segments.get(&known) {
                Some(object) => object.clone(),
                None => {
                    let bytes = read_prefix(&segment.path, len)?;
                    let crc32 = crc32fast::hash(&bytes);
                    let key = keys::wal(segment.start, len, crc32, self.generation);
                    let object = self.put(key, bytes, uploaded)?;
                    self.segments.insert(known, object.clone());
                    object
                }
            };
            wal.push(RemoteSegment {
                start: segment.start.0,
                object,
            });
        }
        Ok(wal)
    }

    /// Uploads a small object named by its checksum, unless it is already there.
    fn put_small(
        &mut self,
        key_of: fn(u32, u32) -> String,
        bytes: Bytes,
        uploaded: &mut Uploaded,
    ) -> Result<RemoteObject> {
        let crc32 = crc32fast::hash(&bytes);
        let key = key_of(crc32, self.generation);
        let slot = small_slot(&key, crc32, bytes.len() as u64);
        if let Some(object) = self.small.get(&slot) {
            return Ok(object.clone());
        }
        let object = self.put(key, bytes, uploaded)?;
        self.small.insert(slot, object.clone());
        Ok(object)
    }

    fn put(&self, key: String, bytes: Bytes, uploaded: &mut Uploaded) -> Result<RemoteObject> {
        let object = RemoteObject {
            size: bytes.len() as u64,
            crc32: crc32fast::hash(&bytes),
            key,
        };
        self.bucket.put(&object.key, bytes)?;
        uploaded.objects += 1;
        uploaded.bytes += object.size;
        Ok(object)
    }
}

/// What identifies a small object's content: its directory, CRC32 and size.
fn small_slot(key: &str, crc32: u32, size: u64) -> (String, u32, u64) {
    let dir = key.split('/').next().unwrap_or_default().to_owned();
    (dir, crc32, size)
}

#[derive(Default)]
struct Uploaded {
    objects: u64,
    bytes: u64,
}

/// The index generation `generation` published.
pub(crate) fn read_index(bucket: &Bucket, generation: u32) -> Result<RemoteIndex> {
    let key = keys::index(generation);
    let bytes = bucket.get(&key)?.ok_or_else(|| RemoteError::Damaged {
        what: "remote object",
        name: bucket.location().key(&key),
        offset: 0,
        why: "listed, but gone when read".to_owned(),
    })?;
    RemoteIndex::decode(&bucket.location().key(&key), &bytes)
}

/// A layer file's bytes, checked against the catalog's size and checksum.
fn read_checked_layer(path: &Path, size: u64, checksum: u32) -> Result<Bytes> {
    let bytes = std::fs::read(path).map_err(RemoteError::io("read", path))?;
    let damaged = |offset: u64, why: String| RemoteError::Damaged {
        what: "local file",
        name: path.display().to_string(),
        offset,
        why,
    };
    if bytes.len() as u64 != size {
        return Err(damaged(
            bytes.len().min(size as usize) as u64,
            format!("{} bytes, the catalog says {size}", bytes.len()),
        ));
    }
    let actual = crc32fast::hash(&bytes);
    if actual != checksum {
        return Err(damaged(
            0,
            format!("CRC32 {actual:08x}, the catalog says {checksum:08x}"),
        ));
    }
    Ok(Bytes::from(bytes))
}

/// The first `len` bytes of a file.
fn read_prefix(path: &Path, len: u64) -> Result<Bytes> {
    let file = std::fs::File::open(path).map_err(RemoteError::io("open", path))?;
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)
        .map_err(RemoteError::io("read", path))?;
    Ok(Bytes::from(bytes))
}
