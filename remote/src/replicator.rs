//! Replication in the background: a worker thread per store keeps its location current,
//! a sync every `interval` and whenever asked ([`Replicator::sync_now`] waits for a sync
//! that started after the call). Requests reach the worker through a crossbeam channel;
//! requests queued while a sync runs are answered together by the next one. A failed sync
//! is reported in the status and tried again at the next interval (each request inside it
//! is already retried with backoff by the client); a fenced replicator stops syncing for
//! good and says so, while the store goes on working locally.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam::channel::{Receiver, RecvTimeoutError, Sender};
use pagefork_engine::{Lsn, Store};
use parking_lot::Mutex;

use crate::error::{RemoteError, Result};
use crate::layer_source::RemoteLayers;
use crate::location::RemoteLocation;
use crate::sync::{SyncReport, Uploader};

/// What a replicator has done, for `stats` and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// The location (`s3://bucket/prefix`).
    pub location: String,
    /// This process's generation there (0 until connected).
    pub generation: u32,
    /// The recovery point of the last completed sync (`None` before the first).
    pub recovery_point: Option<Lsn>,
    /// When the last sync completed (Unix milliseconds).
    pub last_sync_ms: Option<u64>,
    /// Completed syncs.
    pub syncs: u64,
    /// Failed syncs.
    pub failures: u64,
    /// The last failure, until a sync succeeds.
    pub last_error: Option<String>,
    /// Objects and bytes uploaded, and objects deleted, by every sync.
    pub uploaded_objects: u64,
    /// See `uploaded_objects`.
    pub uploaded_bytes: u64,
    /// See `uploaded_objects`.
    pub deleted_objects: u64,
    /// The newer generation that fenced this one (another process claimed the location:
    /// an attach, or another store's first sync): this one publishes nothing more.
    pub fenced_by: Option<u32>,
    /// A sync is running now.
    pub syncing: bool,
}

/// What the store holds that the bucket does not yet (besides the WAL since the recovery
/// point): layer files flushed since the last sync.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Queued {
    /// Layer files and commit runs not uploaded yet.
    pub layers: u64,
    /// Their bytes.
    pub layer_bytes: u64,
}

enum Message {
    SyncNow(Sender<Result<SyncReport>>),
    Stop,
}

/// Keeps one store's location current (see the module docs). Dropping it stops the worker
/// after the sync in progress, if any, unless [`LastSync::wait_until`] gave up on it.
#[derive(Debug)]
pub struct Replicator {
    requests: Sender<Message>,
    status: Arc<Mutex<ReplicaStatus>>,
    /// The layer files the bucket holds, as of the last completed sync.
    uploaded_layers: Arc<Mutex<Arc<BTreeSet<String>>>>,
    store: Store,
    /// Joined on drop; `None` once left to end with the process.
    worker: Mutex<Option<JoinHandle<()>>>,
}

/// A last sync asked of a replicator whose worker then stops
/// ([`Replicator::sync_and_stop`]).
#[derive(Debug)]
pub struct LastSync<'a> {
    replicator: &'a Replicator,
    answer: Receiver<Result<SyncReport>>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::SyncNow(_) => "SyncNow",
            Message::Stop => "Stop",
        })
    }
}

impl Replicator {
    /// Starts the worker for `store` and `location`. It connects first (claiming a
    /// generation the first time, refusing a location of another store: reported in the
    /// status and tried again each interval), then syncs at once and every `interval`.
    /// Makes no request itself, so it neither blocks nor fails on the network.
    /// With `layer_source` (the one `store` was opened with when its local disk is a
    /// cache), each sync also evicts layer files down to the cache's budget.
    pub fn start(
        location: &RemoteLocation,
        store: Store,
        interval: Duration,
        layer_source: Option<Arc<RemoteLayers>>,
    ) -> Result<Replicator> {
        let status = Arc::new(Mutex::new(ReplicaStatus {
            location: location.url(),
            ..ReplicaStatus::default()
        }));
        let (requests, receiver) = crossbeam::channel::unbounded();
        let worker_status = Arc::clone(&status);
        let worker_location = location.clone();
        let uploaded_layers = Arc::new(Mutex::new(Arc::new(BTreeSet::new())));
        let worker_uploaded = Arc::clone(&uploaded_layers);
        let worker_store = store.clone();
        let worker = std::thread::Builder::new()
            .name("pagefork-replicator".to_owned())
            .spawn(move || {
                run(
                    &worker_location,
                    &worker_store,
                    layer_source,
                    &receiver,
                    (&worker_status, &worker_uploaded),
                    interval,
                )
            })
            .map_err(RemoteError::io(
                "start the replication thread for",
                location.url(),
            ))?;
        Ok(Replicator {
            requests,
            status,
            uploaded_layers,
            store,
            worker: Mutex::new(Some(worker)),
        })
    }

    /// Asks for a sync that starts after this call, then for the worker to stop; the
    /// answer waits in the [`LastSync`], so several replicators' last syncs run at once.
    pub fn sync_and_stop(&self) -> LastSync<'_> {
        let (reply, answer) = crossbeam::channel::bounded(1);
        // A worker already gone answers nothing, which `wait_until` reports.
        let _ = self.requests.send(Message::SyncNow(reply));
        let _ = self.requests.send(Message::Stop);
        LastSync {
            replicator: self,
            answer,
        }
    }

    /// Runs a sync that starts after this call and waits for it.
    pub fn sync_now(&self) -> Result<SyncReport> {
        let (reply, answer) = crossbeam::channel::bounded(1);
        let stopped = || RemoteError::Stopped {
            location: self.status.lock().location.clone(),
        };
        self.requests
            .send(Message::SyncNow(reply))
            .map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }

    /// What it has done so far.
    pub fn status(&self) -> ReplicaStatus {
        self.status.lock().clone()
    }

    /// The layer files and commit runs of the store the bucket does not hold yet.
    pub fn queued(&self) -> Result<Queued> {
        let uploaded = Arc::clone(&self.uploaded_layers.lock());
        let files = self.store.files(false)?;
        let mut queued = Queued::default();
        let listed = files.branches.iter().flat_map(|branch| {
            let layers = branch.layers.iter().map(|layer| (&layer.name, layer.bytes));
            let runs = branch.commit_runs.iter().map(|run| (&run.name, run.bytes));
            layers.chain(runs)
        });
        for (name, bytes) in listed {
            if !uploaded.contains(name) {
                queued.layers += 1;
                queued.layer_bytes += bytes;
            }
        }
        Ok(queued)
    }
}

impl LastSync<'_> {
    /// The last sync's answer, waited for until `deadline`. `None` if it is still running
    /// then (a stalled server: each request inside it may be retried for minutes): the
    /// worker is left to end with the process, so dropping the replicator does not wait
    /// for it either. What the sync did not upload stays durable in the store, and the
    /// next sync uploads it.
    pub fn wait_until(self, deadline: Instant) -> Option<Result<SyncReport>> {
        match self.answer.recv_deadline(deadline) {
            Ok(answer) => Some(answer),
            Err(RecvTimeoutError::Disconnected) => Some(Err(RemoteError::Stopped {
                location: self.replicator.status.lock().location.clone(),
            })),
            Err(RecvTimeoutError::Timeout) => {
                drop(self.replicator.worker.lock().take());
                None
            }
        }
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        let _ = self.requests.send(Message::Stop);
        if let Some(worker) = self.worker.lock().take() {
            let _ = worker.join();
        }
    }
}

fn run(
    location: &RemoteLocation,
    store: &Store,
    layer_source: Option<Arc<RemoteLayers>>,
    requests: &Receiver<Message>,
    (status, uploaded_layers): (&Mutex<ReplicaStatus>, &Mutex<Arc<BTreeSet<String>>>),
    interval: Duration,
) {
    let mut next = Instant::now();
    let mut uploader: Option<Uploader> = None;
    loop {
        let mut waiters = Vec::new();
        let mut stop = false;
        match requests.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Ok(Message::SyncNow(reply)) => waiters.push(reply),
            Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => stop = true,
            Err(RecvTimeoutError::Timeout) => {}
        }
        // Everything asked before this sync starts is answered by it.
        while let Ok(message) = requests.try_recv() {
            match message {
                Message::SyncNow(reply) => waiters.push(reply),
                Message::Stop => stop = true,
            }
        }
        if stop && waiters.is_empty() {
            return;
        }
        // A fenced replicator tries again too: each sync looks for a newer generation
        // before it uploads anything, and one deleted since (as the fencing error advises
        // once its process is gone) no longer fences it (a review's server stayed fenced
        // until restarted, where the CLI synced at once).
        // It connects afresh, as a new process would: what it knew of the location may
        // have changed under the newer generation.
        if status.lock().fenced_by.is_some() {
            uploader = None;
        }
        status.lock().syncing = true;
        let result = connected(&mut uploader, location, store, &layer_source, status)
            .and_then(|uploader| uploader.sync(store));
        record(status, &result);
        if let (Ok(_), Some(uploader)) = (&result, &uploader) {
            *uploaded_layers.lock() = Arc::new(uploader.uploaded_layers());
        }
        if result.is_ok() && layer_source.is_some() {
            // The layers just uploaded may go now.
            if let Err(error) = store.evict_layers_over_budget() {
                tracing::warn!(%error, "evicting layer files after a sync failed");
            }
        }
        for waiter in waiters {
            let answer = match &result {
                Ok(report) => Ok(report.clone()),
                Err(RemoteError::Fenced {
                    location,
                    mine,
                    newer,
                    claimed_by,
                }) => Err(RemoteError::Fenced {
                    location: location.clone(),
                    mine: *mine,
                    newer: *newer,
                    claimed_by: claimed_by.clone(),
                }),
                // A refusal, not an outage: passed on as it is.
                Err(RemoteError::NotOurCopy {
                    location,
                    found,
                    ours,
                    why,
                }) => Err(RemoteError::NotOurCopy {
                    location: location.clone(),
                    found: found.clone(),
                    ours: ours.clone(),
                    why,
                }),
                Err(error) => Err(RemoteError::SyncFailed {
                    location: status.lock().location.clone(),
                    why: error.to_string(),
                }),
            };
            let _ = waiter.send(answer);
        }
        if stop {
            return;
        }
        next = Instant::now() + interval;
    }
}

/// The uploader, connecting it first if it is not yet.
fn connected<'a>(
    uploader: &'a mut Option<Uploader>,
    location: &RemoteLocation,
    store: &Store,
    layer_source: &Option<Arc<RemoteLayers>>,
    status: &Mutex<ReplicaStatus>,
) -> Result<&'a mut Uploader> {
    if uploader.is_none() {
        let connected = Uploader::connect_with_layers(location, store, layer_source.clone())?;
        status.lock().generation = connected.generation();
        *uploader = Some(connected);
    }
    uploader.as_mut().ok_or_else(|| RemoteError::Stopped {
        location: location.url(),
    })
}

fn record(status: &Mutex<ReplicaStatus>, result: &Result<SyncReport>) {
    let mut status = status.lock();
    status.syncing = false;
    match result {
        Ok(report) => {
            status.fenced_by = None;
            status.recovery_point = Some(report.recovery_point);
            status.last_sync_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()
                .map(|since| since.as_millis() as u64);
            status.syncs += 1;
            status.last_error = None;
            status.uploaded_objects += report.uploaded_objects;
            status.uploaded_bytes += report.uploaded_bytes;
            status.deleted_objects += report.deleted_objects;
        }
        Err(error) => {
            status.failures += 1;
            status.last_error = Some(error.to_string());
            if let RemoteError::Fenced { newer, mine, .. } = error {
                status.fenced_by = Some(*newer);
                // Fenced when connecting: the generation it held was never recorded.
                status.generation = *mine;
            }
            tracing::warn!(location = %status.location, %error, "remote sync failed");
        }
    }
}
