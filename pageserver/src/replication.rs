//! `pagefork serve --remote s3://BUCKET/PREFIX`: every project's store kept current in
//! object storage at `PREFIX/<project>` by a background replicator (`pagefork-remote`'s
//! `Replicator`: a sync at once, then every `--remote-interval`, and on request). Started
//! for every project when the server starts and for each project created; stopped after
//! the sync in progress, before the stores close.
//!
//! Invariant: a project has at most one replicator, so at most one generation of this
//! process writes under its prefix.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pagefork_engine::Store;
use pagefork_remote::{RemoteLayers, RemoteLocation, Replicator};
use parking_lot::Mutex;

use crate::serve::Projects;

/// Where and how often (`--remote`, `--s3-endpoint`, `--remote-interval`).
#[derive(Clone, Debug)]
pub(crate) struct RemoteOptions {
    /// The projects' parent location.
    pub(crate) location: RemoteLocation,
    /// Time between background syncs.
    pub(crate) interval: Duration,
    /// The budget of each store's layer cache (`--local-cache-bytes`), if any.
    pub(crate) local_cache_bytes: Option<u64>,
}

/// The replicators of a server's projects (none without `--remote`).
#[derive(Debug, Default)]
pub(crate) struct Replication {
    options: Option<RemoteOptions>,
    replicators: Mutex<BTreeMap<String, Arc<Replicator>>>,
}

impl Replication {
    /// Replication for `projects` per `options` (nothing without them).
    pub(crate) fn start(
        options: Option<RemoteOptions>,
        projects: &Projects,
    ) -> anyhow::Result<Arc<Replication>> {
        let replication = Arc::new(Replication {
            options,
            replicators: Mutex::new(BTreeMap::new()),
        });
        for (project, store) in projects.list() {
            replication.add(&project, &store, projects.layer_source(&project))?;
        }
        Ok(replication)
    }

    /// Starts replicating `project` (a no-op without `--remote`, or if it already is);
    /// `layer_source` is the one its store opened with, if any.
    pub(crate) fn add(
        &self,
        project: &str,
        store: &Store,
        layer_source: Option<Arc<RemoteLayers>>,
    ) -> anyhow::Result<()> {
        let Some(options) = &self.options else {
            return Ok(());
        };
        let mut replicators = self.replicators.lock();
        if replicators.contains_key(project) {
            return Ok(());
        }
        let replicator = Replicator::start(
            &options.location.child(project),
            store.clone(),
            options.interval,
            layer_source,
        )?;
        replicators.insert(project.to_owned(), Arc::new(replicator));
        Ok(())
    }

    /// The replicator of `project`; `None` without `--remote` (or for no such project).
    pub(crate) fn get(&self, project: &str) -> Option<Arc<Replicator>> {
        self.replicators.lock().get(project).cloned()
    }

    /// Syncs every project a last time, so the bucket holds every commit acknowledged
    /// before the server began shutting down, then stops every replicator. The projects
    /// sync at once, and the server waits for them at most `grace` (`--shutdown-grace`):
    /// with a stalled server a sync may be retried for minutes (a review's SIGTERM took
    /// 227 s). A failed or unfinished last sync is logged; the store is durable locally
    /// and the next start syncs first.
    pub(crate) fn sync_and_stop_all(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let stopped = std::mem::take(&mut *self.replicators.lock());
        let last: Vec<_> = stopped
            .iter()
            .map(|(project, replicator)| (project, replicator.sync_and_stop()))
            .collect();
        for (project, last) in last {
            match last.wait_until(deadline) {
                Some(Ok(report)) => tracing::info!(
                    %project,
                    recovery_point = %report.recovery_point,
                    "synced to remote storage on shutdown"
                ),
                Some(Err(error)) => tracing::warn!(
                    %project,
                    %error,
                    "the last sync before shutdown failed; the next start syncs first"
                ),
                None => tracing::warn!(
                    %project,
                    ?grace,
                    "the last sync before shutdown did not finish within the shutdown \
                     grace; the store is durable here, and the next start syncs first"
                ),
            }
        }
        drop(stopped);
    }
}
