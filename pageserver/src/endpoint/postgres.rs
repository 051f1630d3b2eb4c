//! The Postgres an endpoint runs: where its programs are, which user runs them, and the
//! commands themselves (`initdb`, `postgres`, `psql`).
//!
//! Postgres refuses to run as root, so when pagefork runs as root every Postgres program
//! runs as the `postgres` user (Debian's packages create it); otherwise as pagefork's own
//! user.
//!
//! The switch of user is `setpriv`'s (util-linux, on every Debian system), which then
//! executes the program: a command that changes its user in the child itself makes the
//! standard library fork, and a fork copies the page tables of a process holding a
//! gigabyte of unflushed pages (15-20 ms on the benchmark machine, and as long again to
//! undo at the exec), where a plain command is started with `posix_spawn`, whose child
//! shares the parent's memory until it executes (0.6 ms). Without `setpriv`, the child
//! switches user itself.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::EndpointError;

/// How often a wait for a client program looks at its stop flag.
const STOP_POLL: Duration = Duration::from_millis(5);

/// Waits for `child`, a program of [`PgBin::command`] run against `target` (what errors
/// name: "branch \"main\"") with its output piped, and gives what it printed. Once
/// `stop` is set it is given up: the child and its process group (`pg_dumpall` runs a
/// `pg_dump` per database under it) are killed and reaped, and the answer is
/// [`EndpointError::ClientStopped`]. A command stopped by a signal
/// does not wait for a client that may never end.
pub(crate) fn finish_unless(
    mut child: Child,
    program: &str,
    target: &str,
    stop: &AtomicBool,
) -> Result<Output, EndpointError> {
    let failed = |what: String| EndpointError::from(anyhow::anyhow!(what));
    let kill_all = |child: &mut Child| {
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = child.kill();
        let _ = child.wait();
    };
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    let status = loop {
        if stop.load(Ordering::Relaxed) {
            kill_all(&mut child);
            return Err(EndpointError::ClientStopped {
                program: program.to_owned(),
                target: target.to_owned(),
            });
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => std::thread::sleep(STOP_POLL),
            Err(error) => {
                kill_all(&mut child);
                return Err(failed(format!("cannot wait for {program}: {error}")));
            }
        }
    };
    let output = |reader: std::thread::JoinHandle<std::io::Result<Vec<u8>>>| {
        reader
            .join()
            .map_err(|_| failed(format!("the reader of {program}'s output panicked")))?
            .map_err(|error| failed(format!("cannot read {program}'s output: {error}")))
    };
    Ok(Output {
        status,
        stdout: output(stdout)?,
        stderr: output(stderr)?,
    })
}

/// Everything `pipe` gives (nothing if there is none), read on a thread of its own so
/// that a child writing to two pipes never waits on the one not being read.
fn read_all<R: Read + Send + 'static>(
    pipe: Option<R>,
) -> std::thread::JoinHandle<std::io::Result<Vec<u8>>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        match pipe {
            Some(mut pipe) => pipe.read_to_end(&mut bytes).map(|_| bytes),
            None => Ok(bytes),
        }
    })
}

/// Where Debian's packages put each major version's programs.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// A directory of Postgres programs (`postgres`, `initdb`, `psql`).
#[derive(Clone, Debug)]
pub(crate) struct PgBin {
    dir: PathBuf,
    user: Option<RunAs>,
}

/// The user Postgres runs as, when it is not pagefork's own.
#[derive(Clone, Debug)]
struct RunAs {
    uid: u32,
    gid: u32,
}

impl PgBin {
    /// `explicit` (`--pg-bin`) if given, else `PAGEFORK_PG_BIN` if set (only that one,
    /// either way), else the newest `/usr/lib/postgresql/N/bin`, else the directory of
    /// `postgres` on `PATH`. Refused, naming every place it looked: none holds `postgres`
    /// and `initdb`.
    pub(crate) fn find(explicit: Option<&Path>) -> Result<PgBin, EndpointError> {
        let mut looked = Vec::new();
        let mut candidates: Vec<PathBuf> = Vec::new();
        // A directory the user named (`--pg-bin`, or `PAGEFORK_PG_BIN`) is the only place
        // looked: one without the programs is refused, not passed over for another
        // Postgres (a review found a wrong PAGEFORK_PG_BIN silently ignored).
        let named = explicit.map(Path::to_path_buf).or_else(|| {
            // Set but empty (`PAGEFORK_PG_BIN=${X:-}`) is unset.
            std::env::var_os("PAGEFORK_PG_BIN")
                .filter(|dir| !dir.is_empty())
                .map(PathBuf::from)
        });
        match &named {
            Some(dir) => candidates.push(dir.clone()),
            None => {
                candidates.extend(debian_versions());
                if let Some(path) = std::env::var_os("PATH") {
                    candidates.extend(std::env::split_paths(&path));
                }
            }
        }
        for dir in candidates {
            if dir.join("postgres").is_file() && dir.join("initdb").is_file() {
                // Absolute: the programs run in another directory (a review's relative
                // `--pg-bin` passed this check, then every start failed with exit 127).
                let dir = std::path::absolute(&dir).unwrap_or(dir);
                return Ok(PgBin {
                    dir,
                    user: run_as()?,
                });
            }
            looked.push(dir);
        }
        if named.is_none() && looked.iter().all(|dir| !dir.starts_with(DEBIAN_ROOT)) {
            looked.insert(0, PathBuf::from(format!("{DEBIAN_ROOT}/*/bin")));
        }
        Err(EndpointError::NoPostgres { looked })
    }

    /// The directory the programs are in.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// `program` of this directory, set to run as Postgres' user, from `/`.
    pub(crate) fn command(&self, program: &str) -> Command {
        self.command_with(program, &[])
    }

    /// `command` for a server that must die with pagefork, and whether it will: `false`
    /// when `setpriv` is missing, and the caller must arrange it (see `spawner`).
    pub(crate) fn server_command(&self, program: &str) -> (Command, bool) {
        let dies_with_parent = setpriv().is_some();
        (
            self.command_with(program, &["--pdeathsig=KILL"]),
            dies_with_parent,
        )
    }

    /// `program` run through `setpriv` with `options` (and a switch to Postgres' user),
    /// or, without `setpriv`, switching user in the child and without `options`.
    fn command_with(&self, program: &str, options: &[&str]) -> Command {
        let path = self.dir.join(program);
        let mut command = match setpriv() {
            Some(setpriv) if self.user.is_some() || !options.is_empty() => {
                let mut command = Command::new(setpriv);
                if let Some(user) = &self.user {
                    command
                        .arg(format!("--reuid={}", user.uid))
                        .arg(format!("--regid={}", user.gid))
                        .arg("--clear-groups");
                }
                command.args(options).arg("--").arg(path);
                command
            }
            _ => {
                let mut command = Command::new(path);
                if let Some(user) = &self.user {
                    use std::os::unix::process::CommandExt;
                    command.uid(user.uid).gid(user.gid);
                }
                command
            }
        };
        command.current_dir("/");
        // A process group of its own: a Ctrl-C in pagefork's terminal reaches pagefork
        // alone, which stops what it started in order (a review found it also reaching
        // initdb and Postgres, whose deaths then raced the stop for what was said).
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        command
    }

    /// Refuses a mount point Postgres' user cannot reach: one of its parents is not
    /// searchable by that user.
    pub(crate) fn check_reachable(&self, dir: &Path) -> Result<(), EndpointError> {
        use std::os::unix::fs::MetadataExt;
        let Some(user) = &self.user else {
            return Ok(());
        };
        for parent in dir.ancestors().skip(1) {
            let Ok(metadata) = std::fs::metadata(parent) else {
                continue;
            };
            let mode = metadata.mode();
            let searchable = mode & 0o001 != 0
                || (metadata.uid() == user.uid && mode & 0o100 != 0)
                || (metadata.gid() == user.gid && mode & 0o010 != 0);
            if !searchable {
                return Err(EndpointError::Unreachable {
                    dir: dir.to_path_buf(),
                    blocked: parent.to_path_buf(),
                });
            }
        }
        Ok(())
    }

    /// Gives `path` to Postgres' user (a data directory it creates).
    pub(crate) fn give(&self, path: &Path) -> std::io::Result<()> {
        match &self.user {
            Some(user) => std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)),
            None => Ok(()),
        }
    }
}

/// util-linux's `setpriv`, if this system has it (see the module docs).
fn setpriv() -> Option<&'static Path> {
    static SETPRIV: std::sync::LazyLock<Option<PathBuf>> = std::sync::LazyLock::new(|| {
        ["/usr/bin/setpriv", "/bin/setpriv"]
            .into_iter()
            .map(PathBuf::from)
            .find(|path| path.is_file())
    });
    SETPRIV.as_deref()
}

/// `/usr/lib/postgresql/N/bin`, newest major version first.
fn debian_versions() -> Vec<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(DEBIAN_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// Postgres' user when pagefork runs as root; nobody else to switch to otherwise.
fn run_as() -> Result<Option<RunAs>, EndpointError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match nix::unistd::User::from_name("postgres") {
        Ok(Some(user)) => Ok(Some(RunAs {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })),
        _ => Err(EndpointError::NoPostgresUser),
    }
}
