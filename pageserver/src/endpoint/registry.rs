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
//! Invariant: a branch's entry exists exactly while its server runs (a start that fails
//! leaves no server and no mount of its own behind).

use std::collections::BTreeMap;
use std::path::PathBuf;

use pagefork_engine::{At, Store};
use parking_lot::Mutex;

use super::{EndpointError, EndpointInfo, EndpointSpec, Running};
use crate::mount::{MountError, MountSpec, Mounts};

/// The server's endpoints.
#[derive(Debug, Default)]
pub(crate) struct Endpoints {
    running: Mutex<BTreeMap<(String, String), Endpoint>>,
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
    /// created at a time.
    pub(crate) fn of(server: &Running, created_at_a_time: bool) -> Started {
        Started {
            info: server.info(),
            last_commit_time: created_at_a_time
                .then(|| server.last_commit_time())
                .flatten(),
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
        let mut running = self.running.lock();
        let key = (project.to_owned(), branch.to_owned());
        // First, so that a second start on the running endpoint's own port says so
        // rather than that the port is taken.
        if let Some(existing) = running.get_mut(&key)
            && existing.server.exited().is_none()
        {
            return Err(EndpointError::AlreadyRunning {
                branch: branch.to_owned(),
                port: existing.server.port,
            });
        }
        // Before anything is mounted, written or cleaned up: a refused start changes
        // nothing.
        super::check_spec(spec)?;
        // An entry still here is of a server that ended on its own (one that runs was
        // refused above, under the same lock): forget it, and start again.
        if let Some(mut ended) = running.remove(&key) {
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
                mounts.mount_at(project, store, spec)?;
                (place.mount_dir.clone(), place.log.clone(), Some(place))
            }
        };
        let mounted_here = place.is_some();
        let mounted = asked.elapsed();
        match super::start(branch, &dir, &log, spec) {
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
                running.insert(
                    key,
                    Endpoint {
                        server,
                        mounted_here,
                        place,
                    },
                );
                Ok(started)
            }
            Err(error) => {
                if mounted_here && let Err(unmount) = mounts.unmount(project, branch) {
                    tracing::error!(%project, %branch, "unmount after a failed start: {unmount}");
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
    /// The registry stays held until the server has exited and its mount is gone, as
    /// through a start: a start racing the stop waits for it (a review found one that
    /// found no entry, took the stopping endpoint's mount for a user's and started a
    /// second Postgres on a data directory the first had not left yet).
    pub(crate) fn stop(
        &self,
        project: &str,
        branch: &str,
        mounts: &Mounts,
    ) -> Result<(EndpointInfo, Option<PathBuf>), EndpointError> {
        let mut running = self.running.lock();
        let endpoint = running
            .remove(&(project.to_owned(), branch.to_owned()))
            .ok_or_else(|| EndpointError::NotRunning {
                branch: branch.to_owned(),
            })?;
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
        // The registry stays held until the mounts are gone: a start on the same branch
        // meanwhile would take the endpoint's mount for a user's (found by a review).
        let mut running = self.running.lock();
        let exited: Vec<_> = running
            .iter_mut()
            .filter_map(|(key, endpoint)| Some((key.clone(), endpoint.server.exited()?)))
            .collect();
        for (key, status) in exited {
            let Some(endpoint) = running.remove(&key) else {
                continue;
            };
            let (project, branch) = key;
            tracing::error!(
                %project,
                %branch,
                %status,
                "the endpoint's Postgres exited by itself; the last lines of its log:\n{}",
                endpoint.server.log_tail()
            );
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
        self.running
            .lock()
            .get_mut(&(project.to_owned(), branch.to_owned()))
            .and_then(|endpoint| match endpoint.server.exited() {
                None => Some((endpoint.server.pg.clone(), endpoint.server.port)),
                Some(_) => None,
            })
            .ok_or_else(|| EndpointError::NotRunning {
                branch: branch.to_owned(),
            })
    }

    /// The port of the endpoint that runs on `branch` of `project` on a mount it made
    /// itself, if it is known without waiting: `None` too while a start or stop holds the
    /// registry (one may take minutes; an answer about a refusal must not wait for it).
    pub(crate) fn mounted_by_endpoint(&self, project: &str, branch: &str) -> Option<u16> {
        let mut running = self.running.try_lock()?;
        let endpoint = running.get_mut(&(project.to_owned(), branch.to_owned()))?;
        (endpoint.mounted_here && endpoint.server.exited().is_none())
            .then(|| endpoint.server.info().port)
    }

    /// The endpoints of `project` whose server runs, by branch.
    pub(crate) fn list(&self, project: &str) -> Vec<EndpointInfo> {
        self.running
            .lock()
            .iter_mut()
            .filter(|((owner, _), _)| owner == project)
            .filter_map(|(_, endpoint)| match endpoint.server.exited() {
                None => Some(endpoint.server.info()),
                Some(_) => None,
            })
            .collect()
    }

    /// Stops every endpoint and unmounts what they mounted: for a server's shutdown.
    pub(crate) fn stop_all(&self, mounts: &Mounts) {
        let running = std::mem::take(&mut *self.running.lock());
        for ((project, branch), endpoint) in running {
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
