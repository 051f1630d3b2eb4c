//! Endpoints: an unmodified Postgres server running on a mounted branch (Neon calls them
//! computes), listening on 127.0.0.1.
//!
//! Owns the Postgres side of an endpoint: the data directory inside the branch's tree
//! (`pgdata/` at its root, made by `initdb` on the first start of an empty branch), the
//! server process, waiting until it accepts connections, and a fast shutdown. A branch
//! taken from a running endpoint holds the parent's `postmaster.pid` (its server was
//! running) and `postgresql.conf`: nothing can run on a branch's mount but its own
//! endpoint, so the file is stale and is removed, and everything an endpoint must differ
//! in (port, address, socket, commit timestamps) is given on the command line, which
//! overrides both configuration files. Postgres then recovers the image as after a crash.
//!
//! Invariants: one server per mount (the callers' registries keep one endpoint per
//! branch); a server that did not come up is stopped and the reason returned with the end
//! of its log; connections are by TCP on 127.0.0.1 with `trust` authentication (local
//! development and CI, not a network service), and no Unix socket is made in the tree.

mod client;
pub(crate) mod command;
pub(crate) mod demo;
mod postgres;
pub(crate) mod registry;
pub(crate) mod runfile;
pub(crate) mod schema;
mod settings;
mod spawner;
pub(crate) mod view;

use pagefork_engine::{BranchInfo, LsnForTime, Timestamp};
use std::io::{BufRead, Seek};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub(crate) use postgres::{PgBin, finish_unless};
use settings::refused_setting;
pub(crate) use settings::{check_spec, setting_name_refusal, setting_value_refusal};

/// The data directory inside a branch's tree.
pub(crate) const PGDATA: &str = "pgdata";
/// Where `initdb` makes a new cluster, beside [`PGDATA`], renamed to it once initdb has
/// finished: a start killed meanwhile (SIGKILL, a power cut) leaves this name, never a
/// `pgdata` Postgres would start on (a review killed a first start during initdb and the
/// next start answered "ready" on a cluster without its `postgres` database).
pub(crate) const UNFINISHED_PGDATA: &str = "pgdata.initdb";
/// How long a server may take to accept connections (crash recovery of a branch taken
/// under heavy writes replays everything since the last checkpoint).
const READY_TIMEOUT: Duration = Duration::from_secs(600);
/// How often the wait for it looks at `postmaster.pid` (a read through the mount, tens of
/// microseconds): a start takes 50-150 ms, and each poll's delay adds to it.
const READY_POLL: Duration = Duration::from_millis(2);
/// How long a fast shutdown may take before the server is stopped immediately.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an immediate shutdown may take before the server is killed.
const IMMEDIATE_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// What an endpoint's start may report of the time its branch was created (or restored)
/// at, if it was (Postgres is asked for its last commit time only then): see
/// [`PointInTime::confirmed`].
pub(crate) fn point_in_time_of(info: &BranchInfo) -> Option<PointInTime> {
    info.created_at_time.map(|answer| PointInTime {
        unwritten: answer.lsn == info.head,
        answer,
        created: info.created,
    })
}

/// The time a branch was created at, and whether the branch was written since.
#[derive(Clone, Debug)]
pub(crate) struct PointInTime {
    answer: LsnForTime,
    /// The branch holds no commit of its own.
    unwritten: bool,
    /// When the branch was created.
    created: Timestamp,
}

impl PointInTime {
    /// The answer, while the server shows the state the time snapped to: the branch holds
    /// no commit of its own, or the last transaction the server sees (`last_commit`, its
    /// commit time as `Running::last_commit_time` gives it) committed before the branch was
    /// created, so it is not the branch's own. Once the branch committed a transaction,
    /// pairing it with the time asked for read as a recovery past that time (found by a
    /// review: every start after a restore in place did so); what a start writes that is
    /// no transaction (one that failed, or crash recovery) keeps the answer (a review's
    /// failed start lost it for good).
    pub(crate) fn confirmed(&self, last_commit: Option<&str>) -> Option<&LsnForTime> {
        if self.unwritten {
            return Some(&self.answer);
        }
        let last = last_commit?.parse::<Timestamp>().ok()?;
        (last <= self.created).then_some(&self.answer)
    }
}

/// The lowest port an endpoint may be given.
pub(crate) const MIN_PORT: u16 = 1024;
/// Lines of the server's log an error shows.
const LOG_TAIL_LINES: usize = 20;

/// Why an endpoint could not start or stop.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EndpointError {
    #[error(
        "no Postgres programs found (postgres and initdb): looked in {}; install Debian's \
         postgresql-15 (apt-get install postgresql-15) or name the directory with --pg-bin",
        looked.iter().map(|dir| dir.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NoPostgres { looked: Vec<PathBuf> },
    #[error(
        "running as root, endpoints run Postgres as the `postgres` user, and there is none \
         (Debian's postgresql package creates it)"
    )]
    NoPostgresUser,
    #[error(
        "Postgres' user cannot reach {}: {} is not searchable by it (chmod o+x, or mount \
         elsewhere)",
        dir.display(), blocked.display()
    )]
    Unreachable { dir: PathBuf, blocked: PathBuf },
    #[error("port {port} on 127.0.0.1 is in use")]
    PortInUse { port: u16 },
    #[error("Postgres refuses the settings: {message}")]
    InvalidSetting { message: String },
    /// A setting or port pagefork refuses before anything starts.
    #[error("{message}")]
    RefusedSetting { message: String },
    #[error(
        "branch {branch:?} is not a Postgres data directory: its tree holds {found}, and no \
         {PGDATA}/PG_VERSION (an endpoint starts on an empty branch, running initdb, or on \
         one an endpoint initialized; a schema diff needs a cluster on both branches)"
    )]
    NotADataDirectory { branch: String, found: String },
    #[error("Postgres on branch {branch:?} failed to start ({why}); the end of its log:\n{log}")]
    StartFailed {
        branch: String,
        why: String,
        log: String,
    },
    #[error("branch {branch:?} has an endpoint already, on port {port}")]
    AlreadyRunning { branch: String, port: u16 },
    #[error(
        "branch {branch:?} has an endpoint starting (command pid {command_pid}); `pagefork \
         endpoint stop {branch}` ends it"
    )]
    Starting { branch: String, command_pid: u32 },
    /// The start was asked to stop (SIGTERM or SIGINT, a server shutting down) before
    /// Postgres accepted connections.
    #[error(
        "the start of an endpoint on branch {branch:?} was stopped before Postgres accepted connections"
    )]
    Abandoned { branch: String },
    /// A client program (`pg_dumpall`, the demo's `psql`) was killed because a stop was
    /// asked for (SIGTERM or SIGINT, a server shutting down) before it finished.
    #[error("{program} against {target} was stopped before it finished")]
    ClientStopped { program: String, target: String },
    #[error("branch {branch:?} has no endpoint")]
    NotRunning { branch: String },
    #[error(transparent)]
    Mount(#[from] crate::mount::MountError),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Where an endpoint's branch is mounted and its server logs.
///
/// A directory made for the endpoint is removed when the `Place` goes, never recursively:
/// while the branch is mounted there, a recursive removal would delete the branch's files
/// through the mount. Only the log, then the empty mount point, then the directory are
/// removed; a mount point still in use stays (and so does everything under it).
#[derive(Debug)]
pub(crate) struct Place {
    pub(crate) mount_dir: PathBuf,
    pub(crate) log: PathBuf,
    /// The directory made for this endpoint, if it was.
    made: Option<PathBuf>,
}

/// The prefix of the name of an endpoint's own directory in the system's temporary one
/// (`Place::temporary`; a server's start looks for dead mounts there).
pub(crate) const PLACE_PREFIX: &str = "pagefork-endpoint-";
/// The name of the mount point in an endpoint's own directory.
pub(crate) const PLACE_MOUNT_DIR: &str = "branch";

impl Place {
    /// A new directory under the system's temporary one, open to Postgres' user, with
    /// the mount point (`branch`) and the log (`postgres.log`) in it.
    pub(crate) fn temporary() -> Result<Place, EndpointError> {
        let failed = |what: &str, error: std::io::Error| {
            EndpointError::Failed(anyhow::anyhow!("cannot {what}: {error}"))
        };
        let made = tempfile::Builder::new()
            .prefix(PLACE_PREFIX)
            .tempdir()
            .map_err(|error| failed("make a directory to mount the branch at", error))?
            .keep();
        let place = Place::made_at(&made);
        std::fs::set_permissions(&made, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|error| failed("open the mount directory to Postgres' user", error))?;
        std::fs::create_dir(&place.mount_dir)
            .map_err(|error| failed("make the mount point", error))?;
        Ok(place)
    }

    /// The place an endpoint made at `made` (by `temporary`; or by a killed server's,
    /// for a new server to remove what is left of it).
    pub(crate) fn made_at(made: &Path) -> Place {
        Place {
            mount_dir: made.join(PLACE_MOUNT_DIR),
            log: made.join("postgres.log"),
            made: Some(made.to_path_buf()),
        }
    }

    /// The mount point `dir`, given by the user, with the log beside it.
    pub(crate) fn given(dir: &Path) -> Place {
        Place {
            mount_dir: dir.to_path_buf(),
            log: Place::log_beside(dir),
            made: None,
        }
    }

    /// The log of an endpoint on the mount at `dir`: `DIR.postgres.log`.
    pub(crate) fn log_beside(dir: &Path) -> PathBuf {
        let mut name = dir.file_name().unwrap_or_default().to_os_string();
        name.push(".postgres.log");
        dir.with_file_name(name)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(made) = &self.made {
            // Each removal refuses what is not empty (a mount still in place included).
            // The log of an endpoint that ran later on the mount this place kept is
            // beside the mount point (`log_beside`).
            let _ = std::fs::remove_file(&self.log);
            let _ = std::fs::remove_file(Place::log_beside(&self.mount_dir));
            let _ = std::fs::remove_dir(&self.mount_dir);
            let _ = std::fs::remove_dir(made);
        }
    }
}

/// How to start an endpoint.
#[derive(Clone, Debug, Default)]
pub(crate) struct EndpointSpec {
    /// The port on 127.0.0.1 (a free one if not given).
    pub(crate) port: Option<u16>,
    /// Where Postgres' programs are (found if not given).
    pub(crate) pg_bin: Option<PathBuf>,
    /// Server settings (`-c name=value`), after the endpoint's own.
    pub(crate) settings: Vec<(String, String)>,
    /// Refuse an empty branch rather than run initdb into it (a schema diff formats
    /// nothing).
    pub(crate) refuse_empty: bool,
}

/// A running server.
#[derive(Debug)]
pub(crate) struct Running {
    branch: String,
    port: u16,
    server: Child,
    pg: PgBin,
    data: PathBuf,
    log: PathBuf,
    /// Whether this start ran `initdb`.
    initialized: bool,
    /// From starting the process to accepting connections.
    ready_after: Duration,
}

/// Runs `CHECKPOINT` on the server on `port` (of `branch`): everything it wrote is in its
/// data files, so a copy of them starts without replaying WAL. Returns how long it took.
pub(crate) fn checkpoint(port: u16, branch: &str) -> Result<Duration, EndpointError> {
    let started = std::time::Instant::now();
    client::first_value(port, "CHECKPOINT").map_err(|error| {
        EndpointError::Failed(anyhow::anyhow!(
            "CHECKPOINT on branch {branch}'s endpoint failed: {error}"
        ))
    })?;
    Ok(started.elapsed())
}

/// What an endpoint is, for answers and listings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EndpointInfo {
    pub(crate) branch: String,
    pub(crate) port: u16,
    pub(crate) pid: u32,
    pub(crate) data_directory: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) initialized: bool,
    pub(crate) ready_after: Duration,
}

impl EndpointInfo {
    /// How a client connects.
    pub(crate) fn connection_string(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

/// Starts Postgres on the tree mounted at `mount_dir` (branch `branch`), logging to
/// `log`, and waits until it accepts connections.
///
/// Setting `abandon` while the server is on its way up (crash recovery may take minutes)
/// has it stopped (a fast shutdown) and the start answer [`EndpointError::Abandoned`].
pub(crate) fn start(
    branch: &str,
    mount_dir: &Path,
    log: &Path,
    spec: &EndpointSpec,
    abandon: &AtomicBool,
) -> Result<Running, EndpointError> {
    let asked = Instant::now();
    // Postgres' programs run elsewhere than this process's directory.
    assert!(
        mount_dir.is_absolute(),
        "an endpoint's mount point is absolute"
    );
    let pg = PgBin::find(spec.pg_bin.as_deref())?;
    pg.check_reachable(mount_dir)?;
    let found = asked.elapsed();
    let data = mount_dir.join(PGDATA);
    let initialized = prepare_data_directory(branch, mount_dir, &data, (&pg, spec.refuse_empty))?;
    tracing::debug!(
        branch,
        found_us = found.as_micros(),
        prepared_us = asked.elapsed().as_micros(),
        "endpoint start: programs found, data directory prepared"
    );
    let started = run_server(branch, (pg, data.clone(), initialized), log, spec, abandon);
    if started.is_err() && initialized {
        // The branch goes back to empty: a start that failed formats nothing (a review
        // found a refused setting leaving 70 MB of initdb behind, and the next start
        // saying it had not run initdb).
        discard_new_cluster(branch, mount_dir);
    }
    started
}

/// Starts `postgres` on the prepared data directory `data` and waits until it accepts
/// connections.
fn run_server(
    branch: &str,
    (pg, data, initialized): (PgBin, PathBuf, bool),
    log: &Path,
    spec: &EndpointSpec,
    abandon: &AtomicBool,
) -> Result<Running, EndpointError> {
    let port = choose_port(spec.port)?;
    let log_file = std::fs::File::create(log)
        .map_err(|error| anyhow::anyhow!("cannot create the log {}: {error}", log.display()))?;
    let (mut command, dies_with_parent) = pg.server_command("postgres");
    command.arg("-D").arg(&data);
    let own = [
        ("port", port.to_string()),
        ("listen_addresses", "127.0.0.1".to_owned()),
        ("unix_socket_directories", String::new()),
        ("track_commit_timestamp", "on".to_owned()),
        // Crash recovery starts by making every file of the data directory durable, by
        // default one fsync per file (through FUSE: 130 ms for an empty cluster). On a
        // fresh mount nothing is only in the kernel's cache: one syncfs does it.
        ("recovery_init_sync_method", "syncfs".to_owned()),
    ];
    let own = own.iter().map(|(name, value)| (*name, value.as_str()));
    let given = spec
        .settings
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()));
    for (name, value) in own.chain(given) {
        command.arg("-c").arg(format!("{name}={value}"));
    }
    let started = Instant::now();
    command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().map_err(anyhow::Error::from)?)
        .stderr(log_file);
    let server =
        spawner::spawn(command, dies_with_parent).map_err(|error| EndpointError::StartFailed {
            branch: branch.to_owned(),
            why: format!(
                "cannot run {}: {error}",
                pg.dir().join("postgres").display()
            ),
            log: String::new(),
        })?;
    let mut running = Running {
        branch: branch.to_owned(),
        port,
        server,
        pg,
        data,
        log: log.to_path_buf(),
        initialized,
        ready_after: Duration::ZERO,
    };
    match running.wait_ready(started, abandon) {
        Ok(()) => {
            running.ready_after = started.elapsed();
            Ok(running)
        }
        Err(_) if abandon.load(Ordering::Relaxed) => {
            running.stop()?;
            Err(EndpointError::Abandoned {
                branch: branch.to_owned(),
            })
        }
        Err(why) => {
            running.kill();
            let log = log_tail(log);
            if let Some(message) = refused_setting(&log, &spec.settings) {
                return Err(EndpointError::InvalidSetting { message });
            }
            // Taken between the check and Postgres' bind (a review's four starts racing
            // for one port got 500s, not the port's refusal).
            if log.contains("could not bind") && log.contains("Address already in use") {
                return Err(EndpointError::PortInUse { port });
            }
            Err(EndpointError::StartFailed {
                branch: branch.to_owned(),
                why,
                log,
            })
        }
    }
}

/// Refuses a branch whose latest state is not a Postgres data directory, from the store
/// alone: nothing is mounted, formatted or written. What a command that must leave the
/// branch as it is checks first (a schema diff: a review found a refused one logging a
/// scratch branch, a commit and a delete).
pub(crate) fn check_holds_data_directory(
    store: &pagefork_engine::Store,
    branch: &str,
) -> Result<(), EndpointError> {
    use pagefork_files::{FileTree, FsError, TreeOptions};
    let not_one = |found: String| EndpointError::NotADataDirectory {
        branch: branch.to_owned(),
        found,
    };
    let options = TreeOptions {
        read_only: true,
        ..TreeOptions::default()
    };
    let tree = match FileTree::open(store.clone(), branch, options) {
        Ok(tree) => tree,
        Err(FsError::NotATree { .. }) => return Err(not_one("nothing".to_owned())),
        Err(error) => return Err(EndpointError::Failed(error.into())),
    };
    // As `prepare_data_directory` tells them apart: nothing, something else, a cluster
    // initdb did not finish.
    let holds_file = |path: &[&str]| {
        let mut found = None;
        let mut ino = tree.root();
        for name in path {
            match tree.lookup(ino, name.as_bytes()) {
                Ok(attributes) => (ino, found) = (attributes.ino, Some(attributes.kind)),
                Err(_) => return false,
            }
        }
        found == Some(pagefork_files::FileKind::File)
    };
    let names: Vec<String> = tree
        .read_dir(tree.root())
        .map_err(|error| EndpointError::Failed(error.into()))?
        .into_iter()
        .map(|entry| String::from_utf8_lossy(&entry.name).into_owned())
        .collect();
    if names.is_empty() {
        return Err(not_one("nothing".to_owned()));
    }
    if names == [UNFINISHED_PGDATA] {
        return Err(not_one(unfinished_initdb()));
    }
    if !holds_file(&[PGDATA, "PG_VERSION"]) {
        // What it holds instead, as a start says it (a review's schema diff said "holds no
        // pgdata/PG_VERSION file but no pgdata/PG_VERSION").
        return Err(not_one(first_names(names)));
    }
    if !holds_file(&[PGDATA, "global", "pg_control"]) {
        return Err(not_one(unfinished_initdb()));
    }
    Ok(())
}

/// The first five of `names` in order, as a refusal of a tree that is not a data
/// directory says what it holds.
fn first_names(mut names: Vec<String>) -> String {
    names.sort();
    names.truncate(5);
    names.join(", ")
}

/// What a tree whose initdb did not finish holds, as a refusal says it.
fn unfinished_initdb() -> String {
    format!(
        "a cluster initdb had not finished ({UNFINISHED_PGDATA}, or {PGDATA} without global/pg_control)"
    )
}

/// Makes sure `data` is a data directory Postgres can start on: `initdb` if the tree is
/// empty (returns true), a stale `postmaster.pid` removed. Refuses a tree that holds
/// something else.
fn prepare_data_directory(
    branch: &str,
    mount_dir: &Path,
    data: &Path,
    (pg, refuse_empty): (&PgBin, bool),
) -> Result<bool, EndpointError> {
    let failed = |what: String| anyhow::anyhow!(what);
    // A state taken while initdb ran (a branch at such a time) holds a part of a cluster:
    // not a data directory Postgres can start on (a review got a 500 for it).
    if data.join("PG_VERSION").is_file() && !data.join("global/pg_control").is_file() {
        return Err(EndpointError::NotADataDirectory {
            branch: branch.to_owned(),
            found: unfinished_initdb(),
        });
    }
    if data.join("PG_VERSION").is_file() {
        match std::fs::remove_file(data.join("postmaster.pid")) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(
                    failed(format!("cannot remove the stale postmaster.pid: {error}")).into(),
                );
            }
        }
        return Ok(false);
    }
    let mut entries: Vec<String> = std::fs::read_dir(mount_dir)
        .map_err(|error| failed(format!("cannot list {}: {error}", mount_dir.display())))?
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    let unfinished = mount_dir.join(UNFINISHED_PGDATA);
    if entries == [UNFINISHED_PGDATA] {
        // A start stopped during its initdb: the branch is as empty as it was, and
        // initdb runs again.
        if refuse_empty {
            return Err(EndpointError::NotADataDirectory {
                branch: branch.to_owned(),
                found: unfinished_initdb(),
            });
        }
        std::fs::remove_dir_all(&unfinished).map_err(|error| {
            failed(format!(
                "cannot remove {}, which an initdb stopped part way left: {error}",
                unfinished.display()
            ))
        })?;
        entries.clear();
    }
    if entries.is_empty() && refuse_empty {
        return Err(EndpointError::NotADataDirectory {
            branch: branch.to_owned(),
            found: "nothing".to_owned(),
        });
    }
    if !entries.is_empty() {
        return Err(EndpointError::NotADataDirectory {
            branch: branch.to_owned(),
            found: first_names(entries),
        });
    }
    std::fs::create_dir(&unfinished)
        .map_err(|error| failed(format!("cannot create {}: {error}", unfinished.display())))?;
    let initialized = run_initdb(branch, &unfinished, pg).and_then(|()| {
        // One commit makes the cluster the data directory, durable before Postgres starts.
        std::fs::rename(&unfinished, data)
            .and_then(|()| std::fs::File::open(mount_dir)?.sync_all())
            .map_err(|error| {
                failed(format!(
                    "cannot make {} the data directory {}: {error}",
                    unfinished.display(),
                    data.display()
                ))
                .into()
            })
    });
    if initialized.is_err() {
        // The branch goes back to empty, so the next start runs initdb again (a directory
        // left behind made the branch "not a Postgres data directory" for good).
        discard_new_cluster(branch, mount_dir);
    }
    initialized.map(|()| true)
}

/// Removes the cluster a failed first start made, so the branch is empty again: renamed
/// back to [`UNFINISHED_PGDATA`] first (one commit), so a removal cut short (a kill, a
/// power cut) leaves a name the next start removes, never part of a `pgdata`.
fn discard_new_cluster(branch: &str, mount_dir: &Path) {
    let (data, unfinished) = (mount_dir.join(PGDATA), mount_dir.join(UNFINISHED_PGDATA));
    let remove = |dir: &Path| match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        removed => removed,
    };
    let discarded = match data.exists() {
        true => remove(&unfinished).and_then(|()| std::fs::rename(&data, &unfinished)),
        false => Ok(()),
    }
    .and_then(|()| remove(&unfinished));
    if let Err(error) = discarded {
        tracing::warn!(branch, %error, "cannot remove the cluster a failed start made in {}", mount_dir.display());
    }
}

/// Runs `initdb` into the empty directory `data`, given to Postgres' user.
fn run_initdb(branch: &str, data: &Path, pg: &PgBin) -> Result<(), EndpointError> {
    let failed = |what: String| anyhow::anyhow!(what);
    std::fs::set_permissions(data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .and_then(|()| pg.give(data))
        .map_err(|error| failed(format!("cannot create {}: {error}", data.display())))?;
    let output = pg
        .command("initdb")
        .arg("-D")
        .arg(data)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-instructions",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|error| failed(format!("cannot run initdb: {error}")))?;
    if !output.status.success() {
        return Err(EndpointError::StartFailed {
            branch: branch.to_owned(),
            why: format!("initdb failed with {}", output.status),
            log: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(())
}

/// `wanted` if it is free on 127.0.0.1, else a free port.
fn choose_port(wanted: Option<u16>) -> Result<u16, EndpointError> {
    match wanted {
        Some(port) => match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            Ok(_) => Ok(port),
            Err(_) => Err(EndpointError::PortInUse { port }),
        },
        None => {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .map_err(|error| anyhow::anyhow!("cannot find a free port: {error}"))?;
            let port = listener
                .local_addr()
                .map_err(|error| anyhow::anyhow!("cannot find a free port: {error}"))?
                .port();
            Ok(port)
        }
    }
}

/// The last lines of the log at `path`.
fn log_tail(path: &Path) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    // The tail is in the last few kilobytes.
    let size = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
    let _ = file.seek(std::io::SeekFrom::Start(size.saturating_sub(16 << 10)));
    let lines: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .collect();
    let tail = lines.get(lines.len().saturating_sub(LOG_TAIL_LINES)..);
    tail.unwrap_or_default().join("\n")
}

impl Running {
    /// Waits until the server says it accepts connections (`ready` in its
    /// `postmaster.pid`), or says why not.
    fn wait_ready(&mut self, started: Instant, abandon: &AtomicBool) -> Result<(), String> {
        let pid_file = self.data.join("postmaster.pid");
        loop {
            if abandon.load(Ordering::Relaxed) {
                return Err("its start was abandoned".to_owned());
            }
            if let Some(status) = self.server.try_wait().map_err(|error| error.to_string())? {
                return Err(format!("it exited with {status}"));
            }
            if let Ok(text) = std::fs::read_to_string(&pid_file) {
                let ours = text.lines().next() == Some(&self.server.id().to_string());
                if ours && text.lines().nth(7).map(str::trim) == Some("ready") {
                    return Ok(());
                }
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "it did not accept connections within {} s",
                    READY_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(READY_POLL);
        }
    }

    /// What it is.
    pub(crate) fn info(&self) -> EndpointInfo {
        EndpointInfo {
            branch: self.branch.clone(),
            port: self.port,
            pid: self.server.id(),
            data_directory: self.data.clone(),
            log: self.log.clone(),
            initialized: self.initialized,
            ready_after: self.ready_after,
        }
    }

    /// The commit time of the last transaction the server sees, in RFC 3339 (UTC, to the
    /// microsecond, as every other time pagefork answers):
    /// `pg_last_committed_xact()` (endpoints track commit timestamps), or when recovery
    /// replayed no commit (it started past the last one), the latest commit timestamp of
    /// the 1,000 transactions before the next one. `None` when none has one, or when the
    /// query fails.
    pub(crate) fn last_commit_time(&self) -> Option<String> {
        const LAST_COMMIT_SQL: &str = "SELECT to_char(coalesce(\
            (SELECT timestamp FROM pg_last_committed_xact()), \
            (SELECT max(pg_xact_commit_timestamp((n % 4294967296)::text::xid)) \
             FROM generate_series(\
                 greatest(3, pg_snapshot_xmax(pg_current_snapshot())::text::bigint - 1000), \
                 pg_snapshot_xmax(pg_current_snapshot())::text::bigint - 1) AS n)) \
            AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";
        match client::first_value(self.port, LAST_COMMIT_SQL) {
            Ok(value) => value.filter(|text| !text.is_empty()),
            Err(error) => {
                // Postgres' own words (`postgres::Error` displays only "db error").
                let said = error
                    .as_db_error()
                    .map_or_else(|| format!("{error:#}"), |db| db.message().to_owned());
                tracing::warn!(branch = %self.branch, error = %said, "could not ask the endpoint for its last commit time");
                None
            }
        }
    }

    /// How the server ended, if it has (a crash, or a shutdown nobody asked for).
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.server.try_wait().ok().flatten()
    }

    /// The last lines of the server's log.
    pub(crate) fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// Fast shutdown (SIGINT: clients disconnected, a checkpoint written), or, if that
    /// takes too long, an immediate one; then waits for the server to exit. Stopping a
    /// server that has exited does nothing.
    pub(crate) fn stop(&mut self) -> Result<(), EndpointError> {
        // Reaped already (a listing asked): its pid may be another process's by now.
        if let Ok(Some(_)) = self.server.try_wait() {
            self.kill_orphans();
            return Ok(());
        }
        use nix::sys::signal::Signal;
        // A fast shutdown; then an immediate one; then SIGKILL, which even a stopped
        // (SIGSTOP) or wedged postmaster cannot ignore (a review's stop of a stopped one
        // waited for good, holding its branch).
        let steps = [
            (Signal::SIGINT, STOP_TIMEOUT),
            (Signal::SIGQUIT, IMMEDIATE_STOP_TIMEOUT),
        ];
        let stopped = stop_process(&mut self.server, &steps, &self.branch)
            .map_err(|error| anyhow::anyhow!("cannot wait for Postgres to stop: {error}").into());
        self.kill_orphans();
        stopped
    }

    /// Kills the Postgres processes still working in the data directory of a postmaster
    /// that is gone (killed, crashed, or stopped with SIGKILL at last): a backend busy in
    /// a long statement notices its postmaster's death late, and went on writing to the
    /// branch, holding its mount and the shared memory the next start needs (found by a
    /// review: a loop ran for 40 s, an INSERT filled the disk).
    pub(crate) fn kill_orphans(&self) {
        crate::mount::kill_postgres_working_in(
            &self.data,
            "whose postmaster had exited, left working in its data directory",
        );
    }

    fn kill(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// Sends `child` each signal of `steps` in turn, waiting after each up to its time for the
/// child to exit; then SIGKILL, and waits for it.
fn stop_process(
    child: &mut std::process::Child,
    steps: &[(nix::sys::signal::Signal, Duration)],
    branch: &str,
) -> std::io::Result<()> {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
    for &(signal, limit) in steps {
        let _ = nix::sys::signal::kill(pid, signal);
        let asked = Instant::now();
        while asked.elapsed() < limit {
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(%branch, ?signal, ?limit, "Postgres did not stop");
    }
    let _ = child.kill();
    child.wait().map(drop)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::time::Duration;

    use nix::sys::signal::Signal;

    /// A state taken while initdb ran (PG_VERSION written, no global/pg_control yet) is
    /// not a data directory to start on (a review got a 500 from Postgres for it).
    #[test]
    fn a_cluster_initdb_had_not_finished_is_not_a_data_directory() {
        let mount = tempfile::tempdir().unwrap();
        let data = mount.path().join(super::PGDATA);
        std::fs::create_dir_all(data.join("global")).unwrap();
        std::fs::write(data.join("PG_VERSION"), "15\n").unwrap();
        let pg = super::PgBin::find(None).expect("Postgres' programs (postgresql-15)");
        match super::prepare_data_directory("b", mount.path(), &data, (&pg, false)) {
            Err(super::EndpointError::NotADataDirectory { found, .. }) => {
                assert!(found.contains("global/pg_control"), "{found}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// A server that ignores both shutdown signals is killed in the end; one stopped with
    /// SIGSTOP too.
    #[test]
    fn a_server_deaf_to_shutdown_signals_is_killed_at_last() {
        for stopped in [false, true] {
            let mut child = std::process::Command::new("sh")
                .args(["-c", "trap '' INT QUIT; sleep 60 & wait; sleep 60"])
                .stdin(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(200));
            if stopped {
                let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                nix::sys::signal::kill(pid, Signal::SIGSTOP).unwrap();
            }
            let steps = [
                (Signal::SIGINT, Duration::from_millis(300)),
                (Signal::SIGQUIT, Duration::from_millis(300)),
            ];
            let asked = std::time::Instant::now();
            super::stop_process(&mut child, &steps, "test").unwrap();
            assert!(
                asked.elapsed() < Duration::from_secs(30),
                "{:?}",
                asked.elapsed()
            );
            assert!(child.try_wait().unwrap().is_some(), "still running");
        }
    }
}
