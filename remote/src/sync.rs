//! Uploading: one sync copies a store's published state (`Store::pin_published`) to its
//! location and then publishes an index listing it. Objects already there (uploaded by an
//! earlier sync, or listed by the index the store was attached from) are not uploaded
//! again: a layer is known by its name and checksum, a WAL object by its segment, length
//! and CRC32, the metadata file and the catalog by their bytes.
//!
//! Invariants it keeps (DESIGN.md invariant 10):
//! - The index is written only after every object it lists is fully uploaded, and only
//!   while this process's generation is the newest at the location (else `Fenced`).
//! - Every byte uploaded is checked first: a layer against the catalog's checksum of the
//!   file, everything else by the CRC32 the index records for it.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pagefork_engine::{EngineError, Lsn, PublishedFiles, Store};

use crate::bucket::Bucket;
use crate::error::{RemoteError, Result};
use crate::generations;
use crate::index::{INDEX_FORMAT_VERSION, RemoteIndex, RemoteLayer, RemoteObject, RemoteSegment};
use crate::keys;
use crate::layer_source::RemoteLayers;
use crate::location::RemoteLocation;
use crate::state::LocalState;
use crate::workers;

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
    /// Layer files and commit runs the index lists.
    pub layers: usize,
    /// WAL segments the index lists.
    pub wal_segments: usize,
    /// Objects no published index lists any more, deleted after this sync's index was
    /// published.
    pub deleted_objects: u64,
    /// Such objects whose deletion failed (or was postponed): the next sync tries again.
    pub deletions_pending: usize,
    /// How long the sync took.
    pub elapsed: Duration,
}

/// A WAL piece: segment start, offset in it, length, CRC32.
type PieceId = (u64, u64, u64, u32);

fn piece_id(piece: &RemoteSegment) -> PieceId {
    (
        piece.start,
        piece.offset,
        piece.object.size,
        piece.object.crc32,
    )
}

/// A WAL segment uploaded in more pieces than this goes up whole again.
const MAX_PIECES_PER_SEGMENT: usize = 16;

/// Copies one store to one location (see the module docs).
#[derive(Debug)]
pub struct Uploader {
    bucket: Bucket,
    dir: PathBuf,
    log_id: u64,
    generation: u32,
    layers: BTreeMap<(String, u32), RemoteObject>,
    /// What `pagefork.remote` records: the index this directory last published (or
    /// attached from), checked before each index is published over the location's.
    state: LocalState,
    /// WAL pieces in the bucket, by segment start, offset in it, length and CRC32.
    segments: BTreeMap<PieceId, RemoteObject>,
    /// Those known to hold this store's log: put by this uploader, or checked against it.
    checked: BTreeSet<PieceId>,
    /// The index this uploader published last.
    last_published: Option<RemoteIndex>,
    /// The metadata file and the catalog this process uploaded last, with their objects.
    meta: Option<(Bytes, RemoteObject)>,
    catalog: Option<(Bytes, RemoteObject)>,
    /// The metadata file and the catalog the newest index listed when this uploader
    /// connected: reused, not uploaded again, if their bytes are what the store has.
    listed_meta: Option<RemoteObject>,
    listed_catalog: Option<RemoteObject>,
    /// The keys the last index published (or attached from) lists: what this process may
    /// delete once an index without them is published.
    listed: BTreeSet<String>,
    /// Keys no published index lists whose deletion has not succeeded yet.
    pending_deletions: BTreeSet<String>,
    /// The store's layer source, told what each published index lists (so only uploaded
    /// layers are evicted) and when this process is fenced.
    layer_source: Option<Arc<RemoteLayers>>,
    /// Whether `state` holds what `pagefork.remote` does not yet (a server named anew):
    /// written at the next sync even if it publishes nothing.
    state_unwritten: bool,
}

impl Uploader {
    /// An uploader of `store` (on disk, native backend) to `location`. The first time a
    /// store is copied there it claims a generation (recorded in its `pagefork.remote`);
    /// a location that holds another store is refused.
    pub fn connect(location: &RemoteLocation, store: &Store) -> Result<Uploader> {
        Uploader::connect_with_layers(location, store, None)
    }

    /// `connect`, telling `layer_source` (the one the store was opened with, if its local
    /// disk is a cache) which layers the location holds: those of the newest index now and
    /// of each index this uploader publishes.
    pub fn connect_with_layers(
        location: &RemoteLocation,
        store: &Store,
        layer_source: Option<Arc<RemoteLayers>>,
    ) -> Result<Uploader> {
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
        let recorded = LocalState::read(&dir)?;
        // A store whose layers are evicted stays with the location that holds them (a
        // review found a failed sync elsewhere had already rewritten `pagefork.remote`,
        // and every read of an evicted layer then looked for it in the wrong place).
        let evicted = store
            .layer_cache_stats()
            .map_or(0, |stats| stats.evicted_layers);
        if let Some(recorded) = &recorded
            && recorded.location != location.url()
            && evicted > 0
        {
            return Err(RemoteError::EvictedElsewhere {
                location: location.url(),
                recorded: recorded.location.clone(),
                evicted,
            });
        }
        let here = recorded.filter(|state| state.location == location.url());
        let state = match (here, &newest_index) {
            (Some(state), Some(index))
                if index.generation == state.generation && !state.knows(&index.mark()) =>
            {
                return Err(not_our_copy(
                    location,
                    index,
                    &state,
                    ANOTHER_COPY_PUBLISHED,
                ));
            }
            (Some(mut state), Some(index)) if index.generation == state.generation => {
                // Known (checked above): remembered as this directory's own.
                state.published = Some(index.mark());
                state
            }
            (Some(state), _) => state,
            (None, Some(index)) => {
                return Err(not_our_copy(
                    location,
                    index,
                    &LocalState::new(location, 0),
                    "this directory holds no generation there (it was attached without a \
                     claim, or syncs elsewhere now)",
                ));
            }
            (None, None) => {
                let generation = generations::claim(&bucket, "sync")?;
                let state = LocalState::new(location, generation);
                state.write(&dir)?;
                state
            }
        };
        // A server named anew (it moved) is recorded with the next index this sync
        // publishes, so reads of evicted layers go there too (a review found them sent to
        // the old address for good).
        let state_unwritten = location
            .endpoint()
            .is_some_and(|endpoint| state.s3_endpoint.as_deref() != Some(endpoint));
        let state = match location.endpoint() {
            Some(endpoint) => LocalState {
                s3_endpoint: Some(endpoint.to_owned()),
                ..state
            },
            None => state,
        };
        let generation = state.generation;
        // A directory fenced there uploads nothing (a review counted eleven objects left
        // by five refused syncs, each uploading a catalog and metadata before its index
        // was refused).
        check_not_fenced(&bucket, generation, layer_source.as_deref())?;
        let mut uploader = Uploader {
            bucket,
            dir,
            log_id,
            generation,
            layers: BTreeMap::new(),
            segments: BTreeMap::new(),
            checked: BTreeSet::new(),
            last_published: None,
            meta: None,
            catalog: None,
            listed_meta: None,
            listed_catalog: None,
            listed: BTreeSet::new(),
            pending_deletions: BTreeSet::new(),
            layer_source,
            state,
            state_unwritten,
        };
        if let Some(index) = newest_index {
            uploader.remember(&index);
            if let Some(source) = &uploader.layer_source {
                source.listed_by(&index);
            }
            // This directory's own last index (the state above checked it is known):
            // a sync that would publish the same stands by it, as one in the same
            // process does (each CLI sync, a new process, published a new index and new
            // copies of the metadata and catalog, and removed the old ones: a backup
            // check attaching meanwhile found them gone, found by a review).
            if index.generation == generation {
                uploader.last_published = Some(index);
            }
        }
        Ok(uploader)
    }

    /// This process's generation at the location.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The names of the layer files the bucket holds, as far as this uploader knows.
    pub fn uploaded_layers(&self) -> BTreeSet<String> {
        self.layers.keys().map(|(name, _)| name.clone()).collect()
    }

    /// Objects of `index` need no upload.
    fn remember(&mut self, index: &RemoteIndex) {
        self.listed = index.keys();
        self.listed_meta = Some(index.meta.clone());
        self.listed_catalog.clone_from(&index.catalog);
        for layer in &index.layers {
            self.layers.insert(
                (layer.name.clone(), layer.object.crc32),
                layer.object.clone(),
            );
        }
        for piece in &index.wal {
            self.segments.insert(piece_id(piece), piece.object.clone());
        }
    }

    /// Copies the store's published state now and publishes an index of it.
    pub fn sync(&mut self, store: &Store) -> Result<SyncReport> {
        let started = Instant::now();
        // Fenced, it uploads nothing (the check before the index is published stands:
        // a generation may be claimed meanwhile).
        check_not_fenced(&self.bucket, self.generation, self.layer_source.as_deref())?;
        // Commits logged and acknowledged without an fsync (a mount's creates, renames and
        // writes) are in the copy too: a review's mount wrote 23 MB that no sync took
        // while each said it had synced.
        store.make_logged_durable()?;
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
        let meta = Self::put_unless_same(
            &self.bucket,
            (&mut self.meta, self.listed_meta.as_ref()),
            keys::meta,
            self.generation,
            Bytes::from(meta_bytes),
            &mut uploaded,
        )?;
        let catalog = match &files.catalog {
            Some(bytes) => Some(Self::put_unless_same(
                &self.bucket,
                (&mut self.catalog, self.listed_catalog.as_ref()),
                keys::catalog,
                self.generation,
                bytes.clone(),
                &mut uploaded,
            )?),
            None => None,
        };
        // New layer files go up several at once (each read and checked first).
        let new: Vec<_> = files
            .layers
            .iter()
            .filter(|layer| {
                !self
                    .layers
                    .contains_key(&(layer.name.clone(), layer.checksum))
            })
            .collect();
        let generation = self.generation;
        let bucket = &self.bucket;
        let put = workers::run_all(new, |layer| {
            let bytes = read_checked_layer(&layer.path, layer.size, layer.checksum)?;
            let key = keys::layer(&layer.name, layer.checksum, generation);
            let object = put_object(bucket, key, bytes)?;
            Ok(((layer.name.clone(), layer.checksum), object))
        })?;
        for (known, object) in put {
            uploaded.objects += 1;
            uploaded.bytes += object.size;
            self.layers.insert(known, object);
        }
        let mut layers = Vec::with_capacity(files.layers.len());
        for layer in &files.layers {
            let known = (layer.name.clone(), layer.checksum);
            let object =
                self.layers
                    .get(&known)
                    .cloned()
                    .ok_or_else(|| EngineError::InvariantViolated {
                        action: "publish an index",
                        rule: "every layer it lists was uploaded",
                        detail: layer.name.clone(),
                    })?;
            layers.push(RemoteLayer {
                name: layer.name.clone(),
                object,
            });
        }
        let wal = self.put_wal(&files, &mut uploaded)?;
        let mut index = RemoteIndex {
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
            publish_id: None,
        };
        check_not_fenced(&self.bucket, self.generation, self.layer_source.as_deref())?;
        // Nothing changed since this uploader's last index: it stands.
        let unchanged = self.last_published.as_ref().is_some_and(|last| {
            RemoteIndex {
                published_at_ms: index.published_at_ms,
                publish_id: None,
                ..last.clone()
            } == index
        });
        if unchanged {
            if let Some(last) = &self.last_published {
                index.publish_id = last.publish_id;
            }
            if self.state_unwritten {
                self.state.write(&self.dir)?;
            }
        } else {
            self.publish(&mut index, files.wal_end)?;
        }
        self.state_unwritten = false;
        let (deleted, deletions_pending) = self.delete_unlisted(&index);
        self.last_published = Some(index.clone());
        Ok(SyncReport {
            location: self.bucket.location().url(),
            generation: self.generation,
            recovery_point: files.wal_end,
            uploaded_objects: uploaded.objects,
            uploaded_bytes: uploaded.bytes,
            layers: index.layers.len(),
            wal_segments: index.wal.len(),
            deleted_objects: deleted,
            deletions_pending,
            elapsed: started.elapsed(),
        })
    }

    /// Publishes `index` over the location's index of this generation, if that one is
    /// what this directory knows (it published it, or there is none): the mark of the new
    /// index is recorded locally first (`publishing`), then the index is written, then
    /// recorded as published with its recovery point.
    fn publish(&mut self, index: &mut RemoteIndex, recovery_point: Lsn) -> Result<()> {
        if let Some(there) = find_index(&self.bucket, self.generation)? {
            if !self.state.knows(&there.mark()) {
                return Err(not_our_copy(
                    self.bucket.location(),
                    &there,
                    &self.state,
                    ANOTHER_COPY_PUBLISHED,
                ));
            }
            // Known, perhaps only as the one being published when a put's answer was
            // lost: it is the one this directory published, and must stay known after
            // `publishing` names the next (two failed puts in a row once locked the
            // directory out of its own location).
            self.state.published = Some(there.mark());
        }
        index.publish_id = Some(random_u64());
        let encoded = index.encode()?;
        self.state.publishing = Some(index.mark());
        self.state.write(&self.dir)?;
        self.bucket
            .put(&keys::index(self.generation), Bytes::from(encoded))?;
        if let Some(source) = &self.layer_source {
            source.listed_by(index);
        }
        self.state = self
            .state
            .clone()
            .published(index.mark())
            .at(recovery_point);
        // The sync has succeeded whether or not this is written: the mark it was about
        // to publish is recorded already.
        if let Err(error) = self.state.write(&self.dir) {
            tracing::warn!(%error, "the recovery point was not recorded locally");
        }
        Ok(())
    }

    /// Deletes what the previous index listed and `published` does not (a layer compaction
    /// or GC replaced, a shorter copy of a WAL segment, an older catalog), now that an
    /// index without them is published, and only while this generation is the newest (a
    /// newer process may have attached from an index that lists them). Never fails: the
    /// index is published, so the sync succeeded; what could not be deleted stays pending
    /// for the next sync (never a key listed again meanwhile). A crash loses the pending
    /// list: those objects are unlisted, and `scrub` removes them. Returns how many were
    /// deleted and how many are still pending.
    fn delete_unlisted(&mut self, published: &RemoteIndex) -> (u64, usize) {
        let now_listed = published.keys();
        self.pending_deletions
            .extend(self.listed.difference(&now_listed).cloned());
        self.listed = now_listed;
        let listed = &self.listed;
        self.pending_deletions.retain(|key| !listed.contains(key));
        let pending = &self.pending_deletions;
        self.layers
            .retain(|_, object| !pending.contains(&object.key));
        self.segments
            .retain(|_, object| !pending.contains(&object.key));
        for last in [&mut self.meta, &mut self.catalog] {
            if last
                .as_ref()
                .is_some_and(|(_, object)| pending.contains(&object.key))
            {
                *last = None;
            }
        }
        if self.pending_deletions.is_empty() {
            return (0, 0);
        }
        if let Err(error) = generations::check_current(&self.bucket, self.generation) {
            tracing::warn!(%error, pending = self.pending_deletions.len(), "remote deletions postponed");
            return (0, self.pending_deletions.len());
        }
        let mut deleted = 0;
        for key in self.pending_deletions.clone() {
            match self.bucket.delete(&key) {
                Ok(()) => {
                    self.pending_deletions.remove(&key);
                    deleted += 1;
                }
                Err(error) => {
                    tracing::warn!(%error, "a remote deletion failed; the next sync tries again");
                }
            }
        }
        (deleted, self.pending_deletions.len())
    }

    /// The WAL from the segment holding the replay start to the recovery point. A segment
    /// already partly uploaded keeps its pieces and gains one with what it gained since
    /// (up to `MAX_PIECES_PER_SEGMENT`; then it goes up whole again, as one piece). Only
    /// the new bytes are read, once the pieces before them are known to hold this log's
    /// bytes: pieces this uploader put (the log is append-only) or checked.
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
            let start = segment.start.0;
            let mut pieces = self.chain(start, len, None);
            let remembered = self
                .segments
                .range((start, 0, 0, 0)..=(start, 0, u64::MAX, u32::MAX))
                .next()
                .is_some();
            if pieces.is_empty() && remembered {
                // Pieces remembered from an index, if any, are checked against the log.
                let prefix = read_prefix(&segment.path, len)?;
                pieces = self.chain(start, len, Some(&prefix));
                for piece in &pieces {
                    self.checked.insert(piece_id(piece));
                }
            }
            let held = pieces
                .last()
                .map_or(0, |piece| piece.offset + piece.object.size);
            if held < len {
                let offset = if pieces.len() < MAX_PIECES_PER_SEGMENT {
                    held
                } else {
                    pieces.clear();
                    0
                };
                let new = read_range(&segment.path, offset, len - offset)?;
                let crc32 = crc32fast::hash(&new);
                let size = new.len() as u64;
                let key = keys::wal(segment.start, offset, size, crc32, self.generation);
                let object = self.put(key, new, uploaded)?;
                let piece = RemoteSegment {
                    start,
                    offset,
                    object,
                };
                self.segments.insert(piece_id(&piece), piece.object.clone());
                self.checked.insert(piece_id(&piece));
                pieces.push(piece);
            }
            wal.extend(pieces);
        }
        Ok(wal)
    }

    /// The longest chain of pieces of the segment at `start`, from offset 0 and within its
    /// first `len` bytes, already in the bucket: with `prefix` (those bytes), pieces whose
    /// CRC32 matches them (known by content, not position alone: a store fenced after an
    /// attach has a log that diverged from its copy's at the same positions); without,
    /// only pieces already checked or put by this uploader.
    fn chain(&self, start: u64, len: u64, prefix: Option<&Bytes>) -> Vec<RemoteSegment> {
        let mut pieces = Vec::new();
        let mut offset = 0u64;
        loop {
            let next = self
                .segments
                .range((start, offset, 0, 0)..=(start, offset, u64::MAX, u32::MAX))
                .rev()
                .find(|(id, _)| {
                    let &(_, _, size, crc32) = *id;
                    offset + size <= len
                        && match prefix {
                            Some(bytes) => bytes
                                .get(offset as usize..(offset + size) as usize)
                                .is_some_and(|piece| crc32fast::hash(piece) == crc32),
                            None => self.checked.contains(*id),
                        }
                });
            let Some(((_, _, size, _), object)) = next else {
                return pieces;
            };
            pieces.push(RemoteSegment {
                start,
                offset,
                object: object.clone(),
            });
            offset += size;
        }
    }

    /// Uploads a small object (the metadata file, a catalog) under a fresh key, unless
    /// this process uploaded the very same bytes last time (compared byte for byte).
    fn put_unless_same(
        bucket: &Bucket,
        (last, listed): (&mut Option<(Bytes, RemoteObject)>, Option<&RemoteObject>),
        key_of: fn(u64, u32) -> String,
        generation: u32,
        bytes: Bytes,
        uploaded: &mut Uploaded,
    ) -> Result<RemoteObject> {
        if let Some((same, object)) = last.as_ref()
            && *same == bytes
        {
            return Ok(object.clone());
        }
        // Listed by the index this uploader found, with the same size and CRC32: the same
        // bytes, if a download says so (a small object, read once per process).
        if last.is_none()
            && let Some(object) = listed
            && object.size == bytes.len() as u64
            && object.crc32 == crc32fast::hash(&bytes)
            && bucket.get(&object.key)?.as_ref() == Some(&bytes)
        {
            *last = Some((bytes, object.clone()));
            return Ok(object.clone());
        }
        let object = loop {
            let key = key_of(random_u64(), generation);
            let object = RemoteObject {
                size: bytes.len() as u64,
                crc32: crc32fast::hash(&bytes),
                key,
            };
            if bucket.put_new(&object.key, bytes.clone())? {
                break object;
            }
        };
        uploaded.objects += 1;
        uploaded.bytes += object.size;
        *last = Some((bytes, object.clone()));
        Ok(object)
    }

    fn put(&self, key: String, bytes: Bytes, uploaded: &mut Uploaded) -> Result<RemoteObject> {
        let object = put_object(&self.bucket, key, bytes)?;
        uploaded.objects += 1;
        uploaded.bytes += object.size;
        Ok(object)
    }
}

/// Uploads `bytes` as `key`; the object as an index lists it.
fn put_object(bucket: &Bucket, key: String, bytes: Bytes) -> Result<RemoteObject> {
    let object = RemoteObject {
        size: bytes.len() as u64,
        crc32: crc32fast::hash(&bytes),
        key,
    };
    bucket.put(&object.key, bytes)?;
    Ok(object)
}

/// A random number for a fresh key.
pub(crate) fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // The OS's randomness; should it fail, the clock's nanoseconds still make a key that
    // `put_new` checks is free.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        return nanos ^ u64::from(std::process::id()) << 32;
    }
    u64::from_le_bytes(bytes)
}

#[derive(Default)]
struct Uploaded {
    objects: u64,
    bytes: u64,
}

/// The index generation `generation` published.
pub(crate) fn read_index(bucket: &Bucket, generation: u32) -> Result<RemoteIndex> {
    find_index(bucket, generation)?.ok_or_else(|| RemoteError::Damaged {
        what: "remote object",
        name: bucket.location().key(&keys::index(generation)),
        offset: 0,
        why: "listed, but gone when read".to_owned(),
    })
}

/// Generation `generation`'s index, `None` if it has none yet.
fn find_index(bucket: &Bucket, generation: u32) -> Result<Option<RemoteIndex>> {
    let key = keys::index(generation);
    bucket
        .get(&key)?
        .map(|bytes| RemoteIndex::decode(&bucket.location().key(&key), &bytes))
        .transpose()
}

/// Refuses with `Fenced` if a generation above `mine` exists at `bucket`'s location,
/// fencing `layer_source` first (it evicts nothing more: the newer generation may delete
/// what its own indexes no longer list).
fn check_not_fenced(bucket: &Bucket, mine: u32, layer_source: Option<&RemoteLayers>) -> Result<()> {
    let checked = generations::check_current(bucket, mine);
    match (&checked, layer_source) {
        (Err(RemoteError::Fenced { .. }), Some(source)) => source.fence(),
        // The newest again (the newer generation's marker deleted once its process was
        // gone): what it uploads may be evicted again.
        (Ok(()), Some(source)) => source.unfence(),
        _ => {}
    }
    checked
}

/// Why a location's index of this directory's generation that it does not know is there.
const ANOTHER_COPY_PUBLISHED: &str = "another copy of this directory (a disk snapshot, a \
     copy of its files, a second machine) published there since";

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
    read_range(path, 0, len)
}

/// `len` bytes of the file at `path` from `offset`.
fn read_range(path: &Path, offset: u64, len: u64) -> Result<Bytes> {
    let file = std::fs::File::open(path).map_err(RemoteError::io("open", path))?;
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, offset)
        .map_err(RemoteError::io("read", path))?;
    Ok(Bytes::from(bytes))
}

/// The refusal of a location whose newest index (`found`) this directory, whose state
/// file says `ours`, did not publish.
fn not_our_copy(
    location: &RemoteLocation,
    found: &RemoteIndex,
    ours: &LocalState,
    why: &'static str,
) -> RemoteError {
    let describe = |mark: &crate::index::IndexMark| {
        format!(
            "generation {}'s index at recovery point {}{}",
            mark.generation,
            Lsn(mark.wal_end),
            mark.publish_id
                .map(|id| format!(", publish id {id:016x}"))
                .unwrap_or_default()
        )
    };
    RemoteError::NotOurCopy {
        location: location.url(),
        found: describe(&found.mark()),
        ours: match (ours.generation, &ours.published) {
            (0, _) => "no generation there".to_owned(),
            (generation, None) => format!("generation {generation}, no index recorded"),
            (_, Some(mark)) => describe(mark),
        },
        why,
    }
}
