//! The endpoints `pagefork serve` runs: at most one per branch of a project.
//!
//! An endpoint uses the branch's writable mount if it has one (a program may already be
//! working in the directory), and otherwise mounts it itself in a directory of its own
//! under the system's temporary directory (`pagefork-endpoint-*/branch`, open to
//! Postgres' user, whatever the data directory's permissions), with the server's log
//! beside it; stopping the endpoint unmounts only a mount it made, and removes its
//! directory. While an endpoint runs its branch is
//! mounted, so the mount registry refuses what would change the branch under it.
//!
//! Invariants: a branch's entry is `Running` exactly while its server runs (a start that
//! fails leaves no server and no mount of its own behind), and `Busy` while one start or
//! stop works on it; the registry's lock is never held through that work (a start may
//! replay WAL for minutes, a stop wait a minute for Postgres), so other branches' starts
//! and stops, listings and the rest of the server go on meanwhile (a review found one
//! slow start holding up every endpoint request, and those the async runtime's threads,
//! until `/healthz` did not answer). A start or stop meeting a busy entry waits for it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use pagefork_engine::{At, Store};
use parking_lot::{Condvar, Mutex, MutexGuard};

use super::{EndpointError, EndpointInfo, EndpointSpec, Running};
use crate::mount::{MountError, MountSpec, Mounts};

/// A project and a branch.
type Key = (String, String);

/// The server's endpoints.
#[derive(Debug, Default)]
pub(crate) struct Endpoints {
    entries: Mutex<BTreeMap<Key, Slot>>,
    /// Notified whenever a busy entry is settled.
    settled: Condvar,
    /// Set by a shutdown: starts still waiting for their server give up (a crash
    /// recovery may take minutes, and the shutdown waits for them).
    abandon_starts: AtomicBool,
}

#[derive(Debug)]
enum Slot {
    /// A start or a stop is at work on the branch, without the registry's lock.
    Busy,
    Running(Box<Endpoint>),
}

impl Slot {
    /// The endpoint, if its server runs.
    fn live(&mut self) -> Option<&mut Endpoint> {
        match self {
            Slot::Running(endpoint) => endpoint.server.exited().is_none().then_some(endpoint),
            Slot::Busy => None,
        }
    }
}

/// Marks a branch's entry busy until dropped, when it is given what the work left
/// (`settle`) or, if the work ended early (an error, a panic), removed.
struct BusyEntry<'a> {
    endpoints: &'a Endpoints,
    key: Key,
    outcome: Option<Endpoint>,
}

impl BusyEntry<'_> {
    fn settle(mut self, endpoint: Endpoint) {
        self.outcome = Some(endpoint);
    }
}

impl Drop for BusyEntry<'_> {
    fn drop(&mut self) {
        let mut entries = self.endpoints.entries.lock();
        match self.outcome.take() {
            Some(endpoint) => {
                entries.insert(self.key.clone(), Slot::Running(Box::new(endpoint)));
            }
            None => {
                entries.remove(&self.key);
            }
        }
        self.endpoints.settled.notify_all();
    }
}

#[derive(Debug)]
struct Endpoint {
    server: Running,
    /// Whether the endpoint mounted its branch (and unmounts it when it stops).
    mounted_here: bool,
    /// The directory the endpoint made for its mount and log, removed when it goes (or,
    /// if its mount outlives it, when the mount does).
    place: Option<super::Place>,
}

/// A started endpoint, and for a branch created at a time, the commit time of the last
/// transaction its server sees (asking costs a connection, 30-40 ms of a start that takes
/// about 110: a branch at the latest commit answers without it).
#[derive(Debug)]
pub(crate) struct Started {
    pub(crate) info: EndpointInfo,
    pub(crate) last_commit_time: Option<String>,
}

impl Started {
    /// What `server` answers once started: its last commit time only if its branch was
    /// created at a time (and the start did not run initdb into it).
    pub(crate) fn of(server: &Running, created_at_a_time: bool) -> Started {
        let info = server.info();
        Started {
            last_commit_time: (created_at_a_time && !info.initialized)
                .then(|| server.last_commit_time())
                .flatten(),
            info,
        }
    }
}

impl Endpoints {
    /// Starts an endpoint on `branch` of `project` (mounting it if needed) and waits until
    /// it accepts connections.
    pub(crate) fn start(
        &self,
        project: &str,
        store: Store,
        mounts: &Mounts,
        branch: &str,
        spec: &EndpointSpec,
    ) -> Result<Started, EndpointError> {
        let key = (project.to_owned(), branch.to_owned());
        let mut entries = self.settled_entries(&key);
        // First, so that a second start on the running endpoint's own port says so
        // rather than that the port is taken.
        if let Some(existing) = entries.get_mut(&key).and_then(Slot::live) {
            return Err(EndpointError::AlreadyRunning {
                branch: branch.to_owned(),
                port: existing.server.port,
            });
        }
        let ended = entries.insert(key.clone(), Slot::Busy);
        drop(entries);
        let busy = BusyEntry {
            endpoints: self,
            key,
            outcome: None,
        };
        let ended = match ended {
            Some(Slot::Running(ended)) => Some(*ended),
            _ => None,
        };
        // Before anything is mounted, written or cleaned up: a refused start changes
        // nothing (an ended server's entry is put back, for the reaper).
        if let Err(error) = super::check_spec(spec) {
            if let Some(ended) = ended {
                busy.settle(ended);
            }
            return Err(error);
        }
        // An entry still here is of a server that ended on its own (one that runs was
        // refused above): forget it, and start again.
        if let Some(mut ended) = ended {
            if let Some(status) = ended.server.exited() {
                tracing::warn!(%project, %branch, %status, "an endpoint's server had exited");
            }
            if ended.mounted_here {
                mounts.unmount(project, branch)?;
            }
        }
        let created_at_a_time =
            super::point_in_time_of(&store.branch_info(branch).map_err(anyhow::Error::from)?)
                .is_some();
        let asked = std::time::Instant::now();
        let (dir, log, place) = match mounts.mounted_at(project, branch) {
            Some((dir, true)) => {
                let log = super::Place::log_beside(&dir);
                (dir, log, None)
            }
            Some((dir, false)) => {
                return Err(MountError::Mounted {
                    branch: branch.to_owned(),
                    path: dir,
                }
                .into());
            }
            None => {
                let place = super::Place::temporary()?;
                let spec = MountSpec {
                    branch: branch.to_owned(),
                    dir: place.mount_dir.clone(),
                    read_only: false,
                    at: At::Latest,
                };
                mounts.mount_at(project, store.clone(), spec)?;
                (place.mount_dir.clone(), place.log.clone(), Some(place))
            }
        };
        let mounted_here = place.is_some();
        let mounted = asked.elapsed();
        match super::start(branch, &dir, &log, spec, &self.abandon_starts) {
            Ok(server) => {
                let ready = asked.elapsed();
                let started = Started::of(&server, created_at_a_time);
                tracing::info!(
                    %project, %branch, port = started.info.port,
                    mount_ms = mounted.as_millis(),
                    postgres_ready_ms = started.info.ready_after.as_millis(),
                    ready_ms = ready.as_millis(),
                    answered_ms = asked.elapsed().as_millis(),
                    "endpoint started"
                );
                busy.settle(Endpoint {
                    server,
                    mounted_here,
                    place,
                });
                Ok(started)
            }
            Err(error) => {
                if mounted_here && let Err(unmount) = mounts.unmount(project, branch) {
                    tracing::error!(%project, %branch, "unmount after a failed start: {unmount}");
                }
                // What Postgres met through the mount (EIO at every file) when the store
                // refuses writes is the store's failure, answered as such (503 or 507): a
                // review saw 500s naming a postmaster.pid on a full disk.
                if let Err(refused) = store.check_writable() {
                    tracing::error!(%project, %branch, %error, "endpoint start failed");
                    return Err(EndpointError::Failed(refused.into()));
                }
                Err(error)
            }
        }
    }

    /// Stops `branch`'s endpoint (fast shutdown) and unmounts the branch if the endpoint
    /// mounted it. If files are open under that mount (a shell in it), the endpoint is
    /// stopped all the same and the mount stays, for `DELETE .../mount` once they are
    /// closed: the answer's second part names it.
    ///
    /// The entry stays busy until the server has exited and its mount is gone, as
    /// through a start: a start racing the stop waits for it (a review found one that
    /// found no entry, took the stopping endpoint's mount for a user's and started a
    /// second Postgres on a data directory the first had not left yet).
    pub(crate) fn stop(
        &self,
        project: &str,
        branch: &str,
        mounts: &Mounts,
    ) -> Result<(EndpointInfo, Option<PathBuf>), EndpointError> {
        let key = (project.to_owned(), branch.to_owned());
        let mut entries = self.settled_entries(&key);
        let Some(Slot::Running(mut endpoint)) = entries.remove(&key) else {
            return Err(EndpointError::NotRunning {
                branch: branch.to_owned(),
            });
        };
        entries.insert(key.clone(), Slot::Busy);
        drop(entries);
        let _busy = BusyEntry {
            endpoints: self,
            key,
            outcome: None,
        };
        let info = endpoint.server.info();
        endpoint.server.stop()?;
        let still_mounted = match endpoint.mounted_here {
            true => unmount_after_server(mounts, project, branch, endpoint.place)?,
            false => None,
        };
        Ok((info, still_mounted))
    }

    /// Ends the endpoints whose server exited by itself (killed, crashed): each leaves the
    /// registry, its end is logged with the last lines of its log, and a mount it made is
    /// unmounted (or, with files open under it, left for `DELETE .../mount`). Until then
    /// the branch stayed mounted, listed as having an endpoint that answered nothing.
    /// `pagefork serve` calls it every second.
    pub(crate) fn reap_exited(&self, mounts: &Mounts) {
        // The entries stay busy until the mounts are gone: a start on the same branch
        // meanwhile would take the endpoint's mount for a user's (found by a review).
        let mut entries = self.entries.lock();
        let exited: Vec<_> = entries
            .iter_mut()
            .filter_map(|(key, slot)| match slot {
                Slot::Running(endpoint) => Some((key.clone(), endpoint.server.exited()?)),
                Slot::Busy => None,
            })
            .collect();
        let mut ended = Vec::new();
        for (key, status) in exited {
            if let Some(Slot::Running(endpoint)) = entries.insert(key.clone(), Slot::Busy) {
                let busy = BusyEntry {
                    endpoints: self,
                    key: key.clone(),
                    outcome: None,
                };
                ended.push((busy, key, status, endpoint));
            }
        }
        drop(entries);
        for (_busy, key, status, endpoint) in ended {
            let (project, branch) = key;
            tracing::error!(
                %project,
                %branch,
                %status,
                "the endpoint's Postgres exited by itself; the last lines of its log:\n{}",
                endpoint.server.log_tail()
            );
            endpoint.server.kill_orphans();
            if endpoint.mounted_here
                && let Err(error) = unmount_after_server(mounts, &project, &branch, endpoint.place)
            {
                tracing::error!(%project, %branch, "cannot unmount after the endpoint ended: {error}");
            }
        }
    }

    /// The schema of `from`'s endpoint against `to`'s, as a unified diff of their
    /// `pg_dumpall --schema-only` (both must be running).
    pub(crate) fn schema_diff(
        &self,
        project: &str,
        from: &str,
        to: &str,
    ) -> Result<super::schema::SchemaDiff, EndpointError> {
        let (pg, from_port) = self.live_server(project, from)?;
        let (_, to_port) = self.live_server(project, to)?;
        let before = super::schema::dump_schema(&pg, from, from_port)?;
        let after = super::schema::dump_schema(&pg, to, to_port)?;
        Ok(super::schema::SchemaDiff::of(from, &before, to, &after))
    }

    /// Runs `CHECKPOINT` on `branch`'s endpoint (see `endpoint::checkpoint`); returns how
    /// long it took.
    pub(crate) fn checkpoint(
        &self,
        project: &str,
        branch: &str,
    ) -> Result<std::time::Duration, EndpointError> {
        let (_, port) = self.live_server(project, branch)?;
        super::checkpoint(port, branch)
    }

    /// How to reach `branch`'s server (its programs and port), if it is running.
    fn live_server(
        &self,
        project: &str,
        branch: &str,
    ) -> Result<(super::PgBin, u16), EndpointError> {
        self.entries
            .lock()
            .get_mut(&(project.to_owned(), branch.to_owned()))
            .and_then(Slot::live)
            .map(|endpoint| (endpoint.server.pg.clone(), endpoint.server.port))
            .ok_or_else(|| EndpointError::NotRunning {
                branch: branch.to_owned(),
            })
    }

    /// The port of the endpoint that runs on `branch` of `project` on a mount it made
    /// itself: `None` too while a start or stop is at work on it.
    pub(crate) fn mounted_by_endpoint(&self, project: &str, branch: &str) -> Option<u16> {
        let mut entries = self.entries.lock();
        let endpoint = entries
            .get_mut(&(project.to_owned(), branch.to_owned()))?
            .live()?;
        endpoint.mounted_here.then(|| endpoint.server.info().port)
    }

    /// The endpoints of `project` whose server runs, by branch (not those starting).
    pub(crate) fn list(&self, project: &str) -> Vec<EndpointInfo> {
        self.entries
            .lock()
            .iter_mut()
            .filter(|((owner, _), _)| owner == project)
            .filter_map(|(_, slot)| slot.live().map(|endpoint| endpoint.server.info()))
            .collect()
    }

    /// The registry, once no start or stop is at work on `key`.
    fn settled_entries(&self, key: &Key) -> MutexGuard<'_, BTreeMap<Key, Slot>> {
        let mut entries = self.entries.lock();
        while matches!(entries.get(key), Some(Slot::Busy)) {
            self.settled.wait(&mut entries);
        }
        entries
    }

    /// Has every start still waiting for its server give up (stopping it) and answer
    /// `Abandoned`, from now on: for a server that is shutting down.
    pub(crate) fn abandon_starts(&self) {
        self.abandon_starts.store(true, Ordering::Relaxed);
    }

    /// Stops every endpoint and unmounts what they mounted: for a server's shutdown. A
    /// start still waiting for its server gives up (stopping it); a start or stop still
    /// at work is waited for first, so that no server it starts outlives this.
    pub(crate) fn stop_all(&self, mounts: &Mounts) {
        self.abandon_starts();
        let mut entries = self.entries.lock();
        while entries.values().any(|slot| matches!(slot, Slot::Busy)) {
            self.settled.wait(&mut entries);
        }
        let running: Vec<_> = std::mem::take(&mut *entries)
            .into_iter()
            .filter_map(|(key, slot)| match slot {
                Slot::Running(endpoint) => Some((key, endpoint)),
                Slot::Busy => None,
            })
            .collect();
        drop(entries);
        for ((project, branch), mut endpoint) in running {
            let stopped = endpoint.server.stop().map_err(|error| error.to_string());
            // A mount still busy stays, with the endpoint's directory, for the shutdown's
            // unmount of everything (which cuts it off after the grace).
            let unmounted = match endpoint.mounted_here {
                true => unmount_after_server(mounts, &project, &branch, endpoint.place)
                    .map(drop)
                    .map_err(|error| error.to_string()),
                false => Ok(()),
            };
            match stopped.and(unmounted) {
                Ok(()) => tracing::info!(%project, %branch, "endpoint stopped"),
                Err(error) => tracing::error!(%project, %branch, "endpoint stop failed: {error}"),
            }
        }
    }
}

/// Unmounts the mount an endpoint made once its server has ended; `Some(path)` if files
/// are open under it, which leaves it mounted, with the endpoint's directory (`place`)
/// kept until it goes.
fn unmount_after_server(
    mounts: &Mounts,
    project: &str,
    branch: &str,
    place: Option<super::Place>,
) -> Result<Option<PathBuf>, EndpointError> {
    match mounts.unmount(project, branch) {
        Ok(_) => Ok(None),
        Err(MountError::Busy { path }) => {
            tracing::warn!(%project, %branch, path = %path.display(),
                "files are open under the endpoint's mount: it stays mounted");
            if let Some(place) = place {
                mounts.keep_until_unmounted(project, branch, Box::new(place));
            }
            Ok(Some(path))
        }
        Err(error) => Err(error.into()),
    }
}
