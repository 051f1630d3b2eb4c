//! A blocking client for one location: put, get, list and delete objects by their key
//! under the prefix, on a small runtime of its own. Its methods block; call them from
//! ordinary threads, never from inside an async task.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{RemoteError, Result};
use crate::location::RemoteLocation;

/// One location's objects (see the module docs).
#[derive(Debug)]
pub(crate) struct Bucket {
    location: RemoteLocation,
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
}

impl Bucket {
    /// A client for `location` (no request is made yet).
    pub(crate) fn connect(location: &RemoteLocation) -> Result<Bucket> {
        Bucket::with_store(location, location.client()?)
    }

    /// A client for `location` through `store` (tests wrap the real client to inject
    /// faults).
    pub(crate) fn with_store(
        location: &RemoteLocation,
        store: Arc<dyn ObjectStore>,
    ) -> Result<Bucket> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pagefork-remote")
            .enable_all()
            .build()
            .map_err(RemoteError::io(
                "start the remote storage runtime for",
                location.url(),
            ))?;
        Ok(Bucket {
            location: location.clone(),
            store,
            runtime,
        })
    }

    pub(crate) fn location(&self) -> &RemoteLocation {
        &self.location
    }

    fn path(&self, relative: &str) -> ObjectPath {
        ObjectPath::from(self.location.key(relative))
    }

    fn failed(
        &self,
        operation: &'static str,
        relative: &str,
    ) -> impl FnOnce(object_store::Error) -> RemoteError {
        let key = self.location.key(relative);
        let location = self.location.url();
        move |source| RemoteError::Request {
            operation,
            key,
            location,
            source: Box::new(source),
        }
    }

    /// Writes `bytes` as the object `relative` (replacing it if it exists).
    pub(crate) fn put(&self, relative: &str, bytes: Bytes) -> Result<()> {
        let path = self.path(relative);
        self.runtime
            .block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(self.failed("upload", relative))
    }

    /// Writes `bytes` as the object `relative` only if there is none: `false` if it
    /// already existed.
    pub(crate) fn put_new(&self, relative: &str, bytes: Bytes) -> Result<bool> {
        let path = self.path(relative);
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .runtime
            .block_on(self.store.put_opts(&path, PutPayload::from(bytes), options))
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(error) => Err(self.failed("create", relative)(error)),
        }
    }

    /// The object `relative`, or `None` if there is none.
    pub(crate) fn get(&self, relative: &str) -> Result<Option<Bytes>> {
        let path = self.path(relative);
        let result = self.runtime.block_on(async {
            let object = self.store.get(&path).await?;
            object.bytes().await
        });
        match result {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(self.failed("download", relative)(error)),
        }
    }

    /// The size of the object `relative`, or `None` if there is none (a `HEAD`).
    pub(crate) fn size_of(&self, relative: &str) -> Result<Option<u64>> {
        let path = self.path(relative);
        match self.runtime.block_on(self.store.head(&path)) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(self.failed("look up", relative)(error)),
        }
    }

    /// Bytes `range` of the object `relative` (an error if it is missing, or if another
    /// number of bytes comes back).
    pub(crate) fn get_range(&self, relative: &str, range: std::ops::Range<u64>) -> Result<Bytes> {
        let path = self.path(relative);
        let bytes = self
            .runtime
            .block_on(self.store.get_range(&path, range.clone()))
            .map_err(self.failed("download", relative))?;
        if bytes.len() as u64 != range.end.saturating_sub(range.start) {
            return Err(RemoteError::Damaged {
                what: "remote object",
                name: self.location.key(relative),
                offset: range.start + bytes.len() as u64,
                why: format!("{} bytes came back for bytes {range:?}", bytes.len()),
            });
        }
        Ok(bytes)
    }

    /// Deletes the object `relative`; one that is already gone is not an error.
    pub(crate) fn delete(&self, relative: &str) -> Result<()> {
        let path = self.path(relative);
        match self.runtime.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.failed("delete", relative)(error)),
        }
    }

    /// Every object below `dir/` (relative to it) with its last modification time, sorted
    /// by name.
    pub(crate) fn list_with_times(&self, dir: &str) -> Result<Vec<(String, SystemTime)>> {
        let path = self.path(dir);
        let below = format!("{}/", self.location.key(dir));
        let mut objects: Vec<(String, SystemTime)> = self
            .runtime
            .block_on(
                self.store
                    .list(Some(&path))
                    .map_ok(|meta| {
                        (
                            meta.location.to_string(),
                            SystemTime::from(meta.last_modified),
                        )
                    })
                    .try_collect::<Vec<_>>(),
            )
            .map_err(self.failed("list", dir))?
            .into_iter()
            .filter_map(|(key, time)| key.strip_prefix(&below).map(|name| (name.to_owned(), time)))
            .collect();
        objects.sort();
        Ok(objects)
    }

    /// The names of the objects below `dir/` (relative to it), sorted.
    pub(crate) fn list(&self, dir: &str) -> Result<Vec<String>> {
        let path = self.path(dir);
        let below = format!("{}/", self.location.key(dir));
        let mut names: Vec<String> = self
            .runtime
            .block_on(
                self.store
                    .list(Some(&path))
                    .map_ok(|meta| meta.location.to_string())
                    .try_collect::<Vec<String>>(),
            )
            .map_err(self.failed("list", dir))?
            .into_iter()
            .filter_map(|key| key.strip_prefix(&below).map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }
}
