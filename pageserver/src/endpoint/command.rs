//! The command line's endpoints, run by the command itself (one process holds a store):
//!
//! - `pagefork endpoint start`, in the foreground: mounts the branch (at `--mount` or a
//!   fresh directory), starts Postgres on it, prints how to connect once it accepts
//!   connections, and on SIGTERM or SIGINT stops it (fast shutdown), unmounts and
//!   checkpoints, also while Postgres is still starting (crash recovery may take
//!   minutes); if Postgres ends by itself, the command ends with an error.
//! - `pagefork endpoint list` and `endpoint stop BRANCH`: find those commands by their run
//!   files (`runfile`); stop has one end as SIGTERM would, and waits.
//! - `pagefork endpoint schema-diff A B`: starts an endpoint on each branch, compares
//!   their `pg_dumpall --schema-only`, stops both.
//!
//! Nothing is started before everything that can be checked was (FUSE, the mount point,
//! Postgres' programs and user).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use pagefork_engine::{At, Store};

use super::registry::Started;
use super::schema::{SchemaDiff, dump_schema_unless};
use super::view::{EndpointView, StartedEndpoint};
use super::{EndpointSpec, PgBin, Place, Running};
use crate::mount::{
    MountSpec, Mounted, StopSignals, check_fuse_available, check_mount_point, mount,
};
use crate::output::out;
use crate::views::to_json;

/// An endpoint this process runs: the branch mounted at its place, Postgres on it.
///
/// One dropped without [`Local::stop`] (a command's error path, a step given up on a
/// signal) is stopped as `stop` would: Postgres, which runs in a process group of its own
/// and outlives pagefork otherwise, stopped, and the branch unmounted and durable. A
/// failed demo once left its servers running on mounts dead with the process.
pub(crate) struct Local {
    server: Running,
    /// Taken by the first stop.
    mounted: Option<Mounted>,
    _place: Place,
}

impl Local {
    /// Mounts `branch` at `place` and starts Postgres on it; setting `abandon` stops a
    /// start still waiting for Postgres ([`super::EndpointError::Abandoned`]).
    pub(crate) fn start(
        store: &Store,
        branch: &str,
        place: Place,
        spec: &EndpointSpec,
        abandon: &AtomicBool,
    ) -> Result<Local> {
        let mount_spec = MountSpec {
            branch: branch.to_owned(),
            dir: place.mount_dir.clone(),
            read_only: false,
            at: At::Latest,
        };
        // Before the branch is mounted, which formats an empty one: a refused start
        // changes nothing (a review found the branch's head moved).
        PgBin::find(spec.pg_bin.as_deref())?.check_reachable(&place.mount_dir)?;
        let mounted = mount(store.clone(), &mount_spec)?;
        match super::start(branch, &place.mount_dir, &place.log, spec, abandon) {
            Ok(server) => Ok(Local {
                server,
                mounted: Some(mounted),
                _place: place,
            }),
            Err(error) => {
                mounted.unmounter().unmount()?;
                mounted.wait()?;
                Err(error.into())
            }
        }
    }

    /// How to connect.
    pub(crate) fn url(&self) -> String {
        self.server.info().connection_string()
    }

    /// The server's port.
    pub(crate) fn port(&self) -> u16 {
        self.server.info().port
    }

    /// See `Running::last_commit_time`.
    pub(crate) fn last_commit_time(&self) -> Option<String> {
        self.server.last_commit_time()
    }

    /// Stops Postgres (unless it ended already), then unmounts, everything durable.
    pub(crate) fn stop(mut self) -> Result<()> {
        self.stop_in_place()
    }

    fn stop_in_place(&mut self) -> Result<()> {
        let stopped = self.server.stop();
        if let Some(mounted) = self.mounted.take() {
            mounted.unmounter().unmount()?;
            mounted.wait()?;
        }
        Ok(stopped?)
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if self.mounted.is_none() {
            return;
        }
        if let Err(error) = self.stop_in_place() {
            crate::output::warn_out!(
                "pagefork: cannot stop the endpoint on branch {}: {error:#}",
                self.server.info().branch
            );
        }
    }
}

/// How a start abandoned by a stop is told.
const STOPPED_BEFORE_READY: &str = "stopped before Postgres accepted connections";

/// Whether `error` is a start, or a client program, given up for a stop
/// ([`super::EndpointError::Abandoned`], [`super::EndpointError::ClientStopped`]).
fn is_abandoned(error: &anyhow::Error) -> bool {
    matches!(
        error.downcast_ref::<super::EndpointError>(),
        Some(super::EndpointError::Abandoned { .. } | super::EndpointError::ClientStopped { .. })
    )
}

/// Checks what can be checked before anything starts.
pub(crate) fn check_first(spec: &EndpointSpec) -> Result<()> {
    super::check_spec(spec)?;
    check_fuse_available()?;
    PgBin::find(spec.pg_bin.as_deref())?;
    Ok(())
}

pub(crate) fn run_foreground(
    data_dir: &Path,
    branch: &str,
    mount_at: Option<&Path>,
    spec: &EndpointSpec,
    json: bool,
) -> Result<()> {
    crate::logging::init(crate::logging::FOREGROUND_FILTER);
    // Another command's endpoint on this branch, named as such (a start with its port
    // said "port in use", one without it that the store was locked).
    if let Some(running) = super::runfile::list(data_dir)?
        .into_iter()
        .find(|record| record.branch == branch)
    {
        return Err(match running.endpoint {
            Some(endpoint) => super::EndpointError::AlreadyRunning {
                branch: branch.to_owned(),
                port: endpoint.port(),
            },
            None => super::EndpointError::Starting {
                branch: branch.to_owned(),
                command_pid: running.pid,
            },
        }
        .into());
    }
    check_first(spec)?;
    // What a killed start left: a dead mount in its temporary directory.
    crate::mount::detach_dead_endpoint_mounts();
    let place = match mount_at {
        Some(dir) => {
            check_mount_point(dir)?;
            // Postgres and initdb do not run in this directory: a relative path would
            // name another place to them (a review found initdb writing a cluster outside
            // the branch).
            let absolute = dir
                .canonicalize()
                .with_context(|| format!("cannot resolve mount point {}", dir.display()))?;
            Place::given(&absolute)
        }
        None => Place::temporary()?,
    };
    let mut signals = StopSignals::catch()?;
    let store = crate::commands::open(data_dir, json)?;
    let created_at = super::point_in_time_of(&store.branch_info(branch)?);
    // Listed as starting from now on, so `endpoint list` and `endpoint stop` see a start
    // still in crash recovery (they once saw nothing until Postgres was ready).
    let mut run_file = super::runfile::publish_starting(data_dir, branch, &place.log)?;
    // A stop asked for while Postgres starts abandons the start: the signals are
    // watched here while another thread starts it.
    let abandon = AtomicBool::new(false);
    let local = signals.run_stoppable(&abandon, || {
        Local::start(&store, branch, place, spec, &abandon)
    });
    let local = match local {
        // A stop asked for just as Postgres became ready: stopped as one before.
        Ok(local) if abandon.load(Ordering::Relaxed) => {
            local.stop()?;
            Err(super::EndpointError::Abandoned {
                branch: branch.to_owned(),
            }
            .into())
        }
        started => started,
    };
    let mut local = match local {
        Ok(local) => local,
        Err(error) => {
            if !is_abandoned(&error) {
                return Err(error);
            }
            let covered = store.checkpoint()?;
            match json {
                true => out!(
                    "{}",
                    serde_json::json!({"branch": branch, "abandoned": true})
                ),
                false => out!(
                    "endpoint start on branch {branch} {STOPPED_BEFORE_READY}; branch unmounted and durable (checkpoint at {covered})"
                ),
            }
            return Ok(());
        }
    };
    let started = Started::of(&local.server, created_at.is_some());
    let created_at = created_at
        .as_ref()
        .and_then(|point| point.confirmed(started.last_commit_time.as_deref()));
    if json {
        out!("{}", to_json(&StartedEndpoint::of(&started, created_at)));
    } else {
        out!(
            "endpoint on branch {branch} accepts connections: {} (ready in {} ms{}; log {})",
            started.info.connection_string(),
            started.info.ready_after.as_millis(),
            if started.info.initialized {
                ", initdb ran"
            } else {
                ""
            },
            started.info.log.display()
        );
        if let Some(answer) = created_at {
            out!(
                "branch {branch} was created at {}; last visible transaction committed {}",
                crate::commands::describe_time_answer(answer),
                started
                    .last_commit_time
                    .as_deref()
                    .unwrap_or("(none with a commit timestamp)")
            );
        }
    }
    run_file.ready(EndpointView::of(&started.info))?;
    let exited = signals.wait_or(async {
        let mut poll = tokio::time::interval(std::time::Duration::from_millis(200));
        loop {
            poll.tick().await;
            if let Some(status) = local.server.exited() {
                return status;
            }
        }
    });
    let log = local.server.log_tail();
    local.stop()?;
    let covered = store.checkpoint()?;
    drop(run_file);
    if let Some(status) = exited {
        // Postgres ended on its own: the branch is unmounted and durable all the same.
        anyhow::bail!(
            "Postgres on branch {branch} exited by itself ({status}); the end of its log:\n{log}"
        );
    }
    if !json {
        out!("endpoint stopped; branch {branch} unmounted and durable (checkpoint at {covered})");
    }
    Ok(())
}

/// `pagefork init --postgres`: runs `initdb` into the new store's `main` (through a first
/// start of an endpoint, stopped again) and checkpoints. Returns what it did, in words.
pub(crate) fn init_postgres(store: &Store, spec: &EndpointSpec) -> Result<String> {
    // A signal abandons it (the caller then removes the new store), where it once
    // killed the command, leaving the store and a mount behind.
    let mut signals = StopSignals::catch()?;
    let stop = AtomicBool::new(false);
    let local = signals.run_stoppable(&stop, || {
        Local::start(store, "main", Place::temporary()?, spec, &stop)
    })?;
    let ready = local.server.info().ready_after;
    local.stop()?;
    store.checkpoint()?;
    Ok(format!(
        "branch main is a Postgres data directory (initdb, then a first start in {} ms): `pagefork endpoint start main` serves it",
        ready.as_millis()
    ))
}

/// `pagefork endpoint list`: the endpoints foreground commands run on this store.
pub(crate) fn list(data_dir: &Path, json: bool) -> Result<()> {
    // Not opened: a foreground start holds it. A mistyped directory is not an empty list.
    Store::check_is_store(data_dir)?;
    let running = super::runfile::list(data_dir)?;
    if json {
        let views: Vec<_> = running.iter().map(|record| record.listed()).collect();
        out!("{}", to_json(&views));
        return Ok(());
    }
    if running.is_empty() {
        out!(
            "no endpoints run on this store (endpoints `pagefork serve` runs: GET /v1/projects/P/endpoints)"
        );
    }
    for record in &running {
        match &record.endpoint {
            Some(endpoint) => out!(
                "{}  {}  (command pid {}, postmaster pid {}, log {})",
                endpoint.branch(),
                endpoint.connection_string(),
                record.pid,
                endpoint.pid(),
                endpoint.log()
            ),
            None => out!(
                "{}  starting: Postgres does not accept connections yet  (command pid {}, log {})",
                record.branch,
                record.pid,
                record.log
            ),
        }
    }
    Ok(())
}

/// `pagefork endpoint stop BRANCH`: has the command running it stop and waits.
pub(crate) fn stop(data_dir: &Path, branch: &str, json: bool) -> Result<()> {
    Store::check_is_store(data_dir)?;
    let record = super::runfile::stop(data_dir, branch)?;
    if json {
        out!("{}", to_json(&record.listed()));
    } else if let Some(endpoint) = &record.endpoint {
        out!(
            "endpoint on branch {branch} stopped (port {}); the branch is unmounted and durable",
            endpoint.port()
        );
    } else {
        out!(
            "endpoint start on branch {branch} {STOPPED_BEFORE_READY}; the branch is unmounted and durable"
        );
    }
    Ok(())
}

/// `pagefork endpoint schema-diff FROM TO`.
pub(crate) fn schema_diff(
    data_dir: &Path,
    from: &str,
    to: &str,
    spec: &EndpointSpec,
    json: bool,
) -> Result<()> {
    check_first(spec)?;
    let pg = PgBin::find(spec.pg_bin.as_deref())?;
    // Caught before the store is opened: a signal abandons the diff, deleting its scratch
    // branches and unmounting (it once killed the command, leaving both behind).
    let mut signals = StopSignals::catch()?;
    let store = crate::commands::open(data_dir, json)?;
    store.branch_info(from)?;
    store.branch_info(to)?;
    // Both sides, from the store alone, before a scratch branch is made for either.
    super::check_holds_data_directory(&store, from)?;
    super::check_holds_data_directory(&store, to)?;
    // Postgres writes to the branch it runs on (crash recovery, a checkpoint), so each
    // side runs on a scratch branch of it, deleted after; an empty side is refused, not
    // formatted (a review found both branches of a diff left formatted, even by a diff
    // that failed).
    let spec = EndpointSpec {
        refuse_empty: true,
        ..spec.clone()
    };
    let stop = AtomicBool::new(false);
    let dump = |branch: &str| -> Result<String> {
        if stop.load(Ordering::Relaxed) {
            return Err(super::EndpointError::Abandoned {
                branch: branch.to_owned(),
            }
            .into());
        }
        let scratch = ScratchBranch::of(&store, branch)?;
        let local = Local::start(&store, &scratch.name, Place::temporary()?, &spec, &stop)
            .map_err(|error| match error.downcast::<super::EndpointError>() {
                Ok(super::EndpointError::NotADataDirectory { found, .. }) => {
                    anyhow::Error::from(super::EndpointError::NotADataDirectory {
                        branch: branch.to_owned(),
                        found,
                    })
                }
                Ok(other) => other.into(),
                Err(error) => error,
            })?;
        let dumped = dump_schema_unless(&pg, branch, local.port(), &stop);
        local.stop()?;
        Ok(dumped?)
    };
    let dumps = signals.run_stoppable(&stop, || Ok::<_, anyhow::Error>((dump(from)?, dump(to)?)));
    let (before, after) = match dumps {
        Err(error) if is_abandoned(&error) => anyhow::bail!(
            "the schema diff of {from} and {to} was stopped by a signal; its servers are stopped and its scratch branches unmounted"
        ),
        dumps => dumps?,
    };
    store.checkpoint()?;
    let diff = SchemaDiff::of(from, &before, to, &after);
    if json {
        out!("{}", to_json(&diff));
    } else if diff.is_identical() {
        out!("the schemas of {from} and {to} are identical");
    } else {
        out!("{}", diff.text().trim_end());
    }
    Ok(())
}

/// A branch of `source` at its latest state for a command's own Postgres to write to,
/// deleted when dropped.
struct ScratchBranch<'a> {
    store: &'a Store,
    name: String,
}

/// How long a scratch branch lives if the command that made it cannot delete it (killed
/// with SIGKILL, or a power cut): the expiry sweep then removes it. A branch an endpoint
/// runs on does not expire while it runs (the mount holds it), however long that is.
const SCRATCH_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

impl<'a> ScratchBranch<'a> {
    fn of(store: &'a Store, source: &str) -> Result<ScratchBranch<'a>> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        let name = format!("pagefork-scratch-{}-{nanos}", std::process::id());
        let options = pagefork_engine::BranchOptions {
            expiry: pagefork_engine::Expiry::Ttl(SCRATCH_TTL),
            protected: false,
        };
        store.create_branch(&name, source, At::Latest, options)?;
        Ok(ScratchBranch { store, name })
    }
}

impl Drop for ScratchBranch<'_> {
    fn drop(&mut self) {
        if let Err(error) = self.store.delete_branch(&self.name) {
            crate::output::warn_out!(
                "pagefork: cannot delete scratch branch {} ({error}); it expires within an hour",
                self.name
            );
        }
    }
}
