//! `RemoteLayers`: the engine's [`LayerSource`] for a store copied to a location, so its
//! local disk is a cache (`Config::layer_cache`): evicted layer files are read back from
//! the bucket by the first read that needs them, checked against the size and CRC32 the
//! index lists (a damaged object is an error naming its key and offset, never data).
//!
//! Invariant: a layer counts as held (evictable) only while an index this process
//! published (or the newest one when it connected) lists it and this process is not
//! fenced: a newer generation may delete what its own indexes no longer list.
//!
//! It connects on first use, so a store opened with it makes no request until a read
//! needs an evicted layer (an evicted layer's eviction marker holds what opening needs).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use pagefork_engine::LayerSource;
use parking_lot::{Mutex, RwLock};

use crate::bucket::Bucket;
use crate::error::{RemoteError, Result};
use crate::generations;
use crate::index::{RemoteIndex, RemoteObject};
use crate::location::RemoteLocation;
use crate::sync::read_index;

/// Layer files read back from a location (see the module docs).
#[derive(Debug)]
pub struct RemoteLayers {
    location: RemoteLocation,
    bucket: Mutex<Option<Arc<Bucket>>>,
    /// Layer objects by (name, whole-file CRC32), from the last index published or read.
    listed: RwLock<Option<HashMap<(String, u32), RemoteObject>>>,
    fenced: AtomicBool,
    /// Objects found in the bucket at their size by a `HEAD` (see `holds`): looked up once
    /// each, so evictions during reads do not wait on a request per candidate each time.
    seen: Mutex<HashSet<String>>,
}

impl RemoteLayers {
    /// A source for the store at `location` (no request is made yet).
    pub fn new(location: &RemoteLocation) -> Arc<RemoteLayers> {
        Arc::new(RemoteLayers {
            location: location.clone(),
            bucket: Mutex::new(None),
            listed: RwLock::new(None),
            fenced: AtomicBool::new(false),
            seen: Mutex::new(HashSet::new()),
        })
    }

    /// The location it reads from.
    pub fn location(&self) -> &RemoteLocation {
        &self.location
    }

    /// An index was published (or read at connect): its layers are what can be read back.
    pub(crate) fn listed_by(&self, index: &RemoteIndex) {
        *self.listed.write() = Some(layers_of(index));
    }

    /// A newer generation took the location over: nothing more is evicted.
    pub(crate) fn fence(&self) {
        self.fenced.store(true, Ordering::SeqCst);
    }

    /// No newer generation is there any more: evictions may go on, each object looked up
    /// again (a newer generation may have deleted objects while it held the location).
    pub(crate) fn unfence(&self) {
        if self.fenced.swap(false, Ordering::SeqCst) {
            self.seen.lock().clear();
        }
    }

    fn bucket(&self) -> Result<Arc<Bucket>> {
        let mut bucket = self.bucket.lock();
        if let Some(bucket) = &*bucket {
            return Ok(Arc::clone(bucket));
        }
        let connected = Arc::new(Bucket::connect(&self.location)?);
        *bucket = Some(Arc::clone(&connected));
        Ok(connected)
    }

    /// The object of layer `name` with CRC32 `checksum`, reading the newest index first if
    /// no index was seen yet.
    fn object(&self, name: &str, checksum: u32) -> Result<RemoteObject> {
        if self.listed.read().is_none() {
            let bucket = self.bucket()?;
            let newest =
                generations::newest_index(&bucket)?.ok_or_else(|| RemoteError::NoIndex {
                    location: self.location.url(),
                })?;
            let index = read_index(&bucket, newest)?;
            let mut listed = self.listed.write();
            if listed.is_none() {
                *listed = Some(layers_of(&index));
            }
        }
        self.listed
            .read()
            .as_ref()
            .and_then(|listed| listed.get(&(name.to_owned(), checksum)).cloned())
            .ok_or_else(|| RemoteError::Damaged {
                what: "remote index",
                name: self.location.url(),
                offset: 0,
                why: format!("it lists no layer {name} with CRC32 {checksum:08x}"),
            })
    }

    fn read_all_checked(&self, name: &str, checksum: u32) -> Result<Bytes> {
        let object = self.object(name, checksum)?;
        let bucket = self.bucket()?;
        crate::attach::fetch_checked(&bucket, &object)
    }
}

/// The layer objects `index` lists, by (name, whole-file CRC32).
fn layers_of(index: &RemoteIndex) -> HashMap<(String, u32), RemoteObject> {
    index
        .layers
        .iter()
        .map(|layer| {
            (
                (layer.name.clone(), layer.object.crc32),
                layer.object.clone(),
            )
        })
        .collect()
}

impl LayerSource for RemoteLayers {
    /// Listed by the index, not fenced, and the object found in the bucket at its size (a
    /// `HEAD`, once per object per process): an object deleted by hand or by a lifecycle rule while the index
    /// still lists it must not cost the only copy left (a review found the layer evicted
    /// and the data gone). Any doubt, a failed request included, keeps the layer.
    fn holds(&self, name: &str, checksum: u32) -> bool {
        if self.fenced.load(Ordering::SeqCst) {
            return false;
        }
        let listed = self
            .listed
            .read()
            .as_ref()
            .and_then(|listed| listed.get(&(name.to_owned(), checksum)).cloned());
        let Some(object) = listed else {
            return false;
        };
        if self.seen.lock().contains(&object.key) {
            return true;
        }
        match self.bucket().and_then(|bucket| bucket.size_of(&object.key)) {
            Ok(Some(size)) if size == object.size => {
                self.seen.lock().insert(object.key);
                true
            }
            Ok(found) => {
                tracing::error!(
                    key = %self.location.key(&object.key),
                    expected = object.size,
                    ?found,
                    "a layer the index lists is not in the bucket as listed: it stays on local disk"
                );
                false
            }
            Err(error) => {
                tracing::warn!(%error, "cannot check a layer in the bucket: it stays on local disk");
                false
            }
        }
    }

    fn read_all(&self, name: &str, checksum: u32) -> std::result::Result<Bytes, String> {
        self.read_all_checked(name, checksum)
            .map_err(|error| error.to_string())
    }
}
