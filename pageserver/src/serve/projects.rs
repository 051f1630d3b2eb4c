//! The projects a server serves: one store per project, each in its own data directory
//! `<root>/projects/<project>`. Every store found there is opened at startup, and projects
//! created over the API are created and opened here. A store that cannot be opened (damage)
//! keeps its name but is *unavailable*: every request naming it answers 503
//! `project_unavailable` with the reason, the listing names it apart, and the other
//! projects are served as usual (one damaged project does not take the rest offline). A store another process holds open stops the server from starting, as
//! before: a second server on the same data directory would split the projects.
//!
//! With `--remote`, each store opens (or is created) with a layer cache reading evicted
//! layer files back from the project's location (`--local-cache-bytes` is its budget);
//! without it, a store whose `pagefork.remote` records a location opens with one too.
//!
//! Invariant: a project's name maps to at most one open store, or to the reason it could
//! not be opened, never both; its directory is only ever created by `create` under the
//! registry's lock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use pagefork_engine::{
    Config, EngineError, LayerCacheConfig, LayerSource, StdFileSystem, Store,
    create_dir_all_durably,
};
use pagefork_remote::RemoteLayers;
use parking_lot::{Mutex, RwLock};

use super::error::{ApiError, quoted};
use crate::replication::RemoteOptions;

/// The directory under the server's data directory that holds one directory per project.
const PROJECTS_DIR: &str = "projects";

/// Open stores by project name.
#[derive(Debug)]
pub(crate) struct Projects {
    root: PathBuf,
    remote: Option<RemoteOptions>,
    stores: RwLock<BTreeMap<String, Store>>,
    /// Projects whose store could not be opened at start, and why.
    unavailable: BTreeMap<String, String>,
    /// The layer source each store opened with, if any.
    layer_sources: RwLock<BTreeMap<String, Arc<RemoteLayers>>>,
    /// Serializes project creation.
    creating: Mutex<()>,
}

impl Projects {
    /// Opens every project under `root/projects` (creating the directories if missing).
    pub(crate) fn open(
        root: &Path,
        remote: Option<&RemoteOptions>,
    ) -> anyhow::Result<Arc<Projects>> {
        let dir = root.join(PROJECTS_DIR);
        // The directory must survive a power cut, or so would not the projects in it.
        create_dir_all_durably(&StdFileSystem, &dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut stores = BTreeMap::new();
        let mut unavailable = BTreeMap::new();
        let mut layer_sources = BTreeMap::new();
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if validate_project_name(&name).is_err() || !entry.path().is_dir() {
                continue;
            }
            let location = remote.map(|remote| remote.location.child(&name));
            let budget = remote.and_then(|remote| remote.local_cache_bytes);
            let (store, source) = match crate::remote::open_store(
                &entry.path(),
                location.as_ref(),
                budget,
            ) {
                Ok(opened) => opened,
                // A create cut short (no metadata yet) is not a project: nothing in it
                // was ever acknowledged. A store that lost its metadata is
                // (`MetaMissing`), and is served as unavailable below.
                Err(error)
                    if matches!(
                        error.downcast_ref::<EngineError>(),
                        Some(EngineError::NotAStore { .. })
                    ) =>
                {
                    tracing::warn!(project = %name, error = %format!("{error:#}"), "skipping a directory that holds no store");
                    continue;
                }
                // Another process has it open (a second server on this data directory):
                // not damage, and serving beside it would split the projects.
                Err(error)
                    if matches!(
                        error.downcast_ref::<EngineError>(),
                        Some(EngineError::Wal(pagefork_engine::WalError::Locked { .. }))
                    ) =>
                {
                    return Err(error).with_context(|| {
                        format!("cannot open project {name:?} in {}", entry.path().display())
                    });
                }
                Err(error) => {
                    let why = format!(
                        "project {name:?} cannot be opened ({error:#}): stop the server and run `pagefork --data-dir {} recover`",
                        entry.path().display()
                    );
                    tracing::error!(project = %name, "{why}");
                    unavailable.insert(name, why);
                    continue;
                }
            };
            if let Some(source) = source {
                layer_sources.insert(name.clone(), source);
            }
            stores.insert(name, store);
        }
        Ok(Arc::new(Projects {
            root: dir,
            remote: remote.cloned(),
            stores: RwLock::new(stores),
            unavailable,
            layer_sources: RwLock::new(layer_sources),
            creating: Mutex::new(()),
        }))
    }

    /// The store of `project`.
    pub(crate) fn get(&self, project: &str) -> Result<Store, ApiError> {
        if let Some(store) = self.stores.read().get(project) {
            return Ok(store.clone());
        }
        Err(match self.unavailable.get(project) {
            Some(why) => ApiError::unavailable("project_unavailable", why.clone()),
            None => ApiError::not_found(
                "project_not_found",
                format!("no project named {}", quoted(project)),
            ),
        })
    }

    /// The projects whose store could not be opened at start, and why, in name order.
    pub(crate) fn unavailable(&self) -> &BTreeMap<String, String> {
        &self.unavailable
    }

    /// Project names and their stores, in name order.
    pub(crate) fn list(&self) -> Vec<(String, Store)> {
        self.stores
            .read()
            .iter()
            .map(|(name, store)| (name.clone(), store.clone()))
            .collect()
    }

    /// Creates a project: a new store with `page_size`-byte pages. Blocking (fsyncs).
    pub(crate) fn create(&self, project: &str, page_size: usize) -> Result<Store, ApiError> {
        validate_project_name(project)?;
        let _creating = self.creating.lock();
        if self.stores.read().contains_key(project) || self.unavailable.contains_key(project) {
            return Err(ApiError::conflict(
                "project_exists",
                format!("a project named {project:?} already exists"),
            ));
        }
        let source = self
            .remote
            .as_ref()
            .map(|remote| RemoteLayers::new(&remote.location.child(project)));
        let config = Config {
            page_size,
            layer_cache: source.as_ref().map(|source| LayerCacheConfig {
                source: Arc::clone(source) as Arc<dyn LayerSource>,
                budget_bytes: self
                    .remote
                    .as_ref()
                    .and_then(|remote| remote.local_cache_bytes),
            }),
            ..Config::default()
        };
        let store = Store::create(self.root.join(project), config)?;
        if let Some(source) = source {
            self.layer_sources
                .write()
                .insert(project.to_owned(), source);
        }
        self.stores
            .write()
            .insert(project.to_owned(), store.clone());
        Ok(store)
    }

    /// The layer source `project`'s store opened with, if any.
    pub(crate) fn layer_source(&self, project: &str) -> Option<Arc<RemoteLayers>> {
        self.layer_sources.read().get(project).cloned()
    }

    /// Checkpoints every store (flushing what is in memory) and closes them.
    pub(crate) fn close(&self) {
        let stores = std::mem::take(&mut *self.stores.write());
        for (name, store) in stores {
            match store.checkpoint() {
                Ok(lsn) => tracing::info!(project = %name, %lsn, "checkpointed and closed"),
                Err(error) => {
                    tracing::error!(project = %name, %error, "checkpoint on close failed")
                }
            }
        }
    }
}

/// A project name: 1-63 characters of `[A-Za-z0-9._-]`, not starting with a dot (it is a
/// directory name).
pub(crate) fn validate_project_name(name: &str) -> Result<(), ApiError> {
    let valid = (1..=63).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid project name {}: a name is 1-63 characters of [A-Za-z0-9._-], not starting with '.'",
            quoted(name)
        )))
    }
}
