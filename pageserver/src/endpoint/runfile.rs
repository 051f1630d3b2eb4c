//! Run files: how `pagefork endpoint list` and `endpoint stop` find the endpoints that
//! foreground `pagefork endpoint start` commands run on a store (the store is open in that
//! command, so the others cannot open it to ask).
//!
//! A start publishes `DATA_DIR/run/endpoint-<branch>` before it starts Postgres, says in
//! it how to connect once Postgres accepts connections, and removes it when it ends: a
//! start still in crash recovery is listed as starting, and can be stopped. The file is
//! one JSON line (format version, the command's process id and start time, the branch,
//! the server's log, and the endpoint as `--json` shows it, `null` while it starts) and a
//! second line with the first's CRC32. A file whose process is gone (killed) is stale:
//! `list` skips it (whatever its format version), and the next start on that branch
//! replaces it.
//!
//! Invariants: a run file is published crash-safely, so a reader sees a whole one or
//! none; a damaged one is an error naming it, never a guess; a process is told to stop
//! only if its id and start time both match the file's, so a reused process id is never
//! signalled.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::view::EndpointView;

/// The directory under the data directory that holds run files.
const RUN_DIR: &str = "run";
/// The format version of a run file (1 had no `branch` nor `log`, and no starting state).
const RUN_FILE_VERSION: u32 = 2;
/// How long `endpoint stop` waits for the command to stop Postgres, unmount and checkpoint.
const STOP_WAIT: Duration = Duration::from_secs(120);

/// What a run file says.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RunRecord {
    version: u32,
    /// The `pagefork endpoint start` command's process id.
    pub(crate) pid: u32,
    /// Its start time, in clock ticks after boot (`/proc/PID/stat`, field 22).
    started: u64,
    pub(crate) branch: String,
    /// The server's log.
    pub(crate) log: String,
    /// The endpoint once it accepts connections; `None` while it starts.
    pub(crate) endpoint: Option<EndpointView>,
}

/// What every format version of a run file begins with: whose it is.
#[derive(Deserialize)]
struct RunHeader {
    version: u32,
    pid: u32,
    started: u64,
}

/// An endpoint as `endpoint list --json` and `endpoint stop --json` show it: the endpoint's
/// answer once it accepts connections, with the command's process id (as the text says
/// it: a review found it missing), or while it starts, the branch, `"starting": true`, the
/// command's process id and the server's log.
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum ListedEndpoint<'a> {
    Ready {
        #[serde(flatten)]
        endpoint: &'a EndpointView,
        command_pid: u32,
    },
    Starting {
        branch: &'a str,
        starting: bool,
        command_pid: u32,
        log: &'a str,
    },
}

impl RunRecord {
    /// How listings show it.
    pub(crate) fn listed(&self) -> ListedEndpoint<'_> {
        match &self.endpoint {
            Some(endpoint) => ListedEndpoint::Ready {
                endpoint,
                command_pid: self.pid,
            },
            None => ListedEndpoint::Starting {
                branch: &self.branch,
                starting: true,
                command_pid: self.pid,
                log: &self.log,
            },
        }
    }
}

/// A published run file, removed when dropped.
pub(crate) struct RunFile {
    path: PathBuf,
    record: RunRecord,
}

impl Drop for RunFile {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "could not remove a run file");
        }
    }
}

fn run_file_path(data_dir: &Path, branch: &str) -> PathBuf {
    // Branch names hold letters, digits and `._/-`: '/' is the only one a file name cannot.
    data_dir
        .join(RUN_DIR)
        .join(format!("endpoint-{}", branch.replace('/', "%2F")))
}

/// Publishes this process's run file for an endpoint starting on `branch`, logging to
/// `log`, replacing a stale one.
pub(crate) fn publish_starting(data_dir: &Path, branch: &str, log: &Path) -> Result<RunFile> {
    let pid = std::process::id();
    let record = RunRecord {
        version: RUN_FILE_VERSION,
        pid,
        started: process_start(pid)
            .with_context(|| format!("read this process's start time (pid {pid})"))?,
        branch: branch.to_owned(),
        log: log.display().to_string(),
        endpoint: None,
    };
    let dir = data_dir.join(RUN_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let file = RunFile {
        path: run_file_path(data_dir, branch),
        record,
    };
    file.write()?;
    Ok(file)
}

impl RunFile {
    /// Says how to connect to the endpoint, which now accepts connections.
    pub(crate) fn ready(&mut self, endpoint: EndpointView) -> Result<()> {
        assert_eq!(
            endpoint.branch(),
            self.record.branch,
            "a run file is its branch's"
        );
        self.record.endpoint = Some(endpoint);
        self.write()
    }

    fn write(&self) -> Result<()> {
        let line = serde_json::to_string(&self.record)?;
        let text = format!("{line}\n{:08x}\n", crc32fast::hash(line.as_bytes()));
        pagefork_engine::publish_file(&pagefork_engine::StdFileSystem, &self.path, text.as_bytes())
            .with_context(|| format!("publish {}", self.path.display()))
    }
}

/// Reads one run file.
fn read(path: &Path) -> Result<Read> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut lines = text.lines();
    let (Some(line), Some(crc)) = (lines.next(), lines.next()) else {
        bail!(
            "run file {} is damaged: it is not two lines",
            path.display()
        );
    };
    let expected = u32::from_str_radix(crc.trim(), 16).ok();
    if expected != Some(crc32fast::hash(line.as_bytes())) {
        bail!(
            "run file {} is damaged: its first line (offset 0, {} bytes) does not match its CRC32",
            path.display(),
            line.len()
        );
    }
    let not_a_record = || format!("run file {} is not a run record", path.display());
    let header: RunHeader = serde_json::from_str(line).with_context(not_a_record)?;
    if header.version != RUN_FILE_VERSION {
        return Ok(Read::OtherVersion(header));
    }
    Ok(Read::Record(
        serde_json::from_str(line).with_context(not_a_record)?,
    ))
}

/// A run file read: this build's, or another's (whose command may still run).
enum Read {
    Record(RunRecord),
    OtherVersion(RunHeader),
}

impl Read {
    /// The record of a command that still runs, if this build can read it.
    fn running(self, path: &Path) -> Result<Option<RunRecord>> {
        match self {
            Read::Record(record) => Ok(is_running(record.pid, record.started).then_some(record)),
            Read::OtherVersion(header) if is_running(header.pid, header.started) => bail!(
                "run file {} has format version {} (a command of another pagefork build, pid \
                 {}, runs it); this build reads {RUN_FILE_VERSION}",
                path.display(),
                header.version,
                header.pid
            ),
            // Stale: its command ended.
            Read::OtherVersion(_) => Ok(None),
        }
    }
}

/// The start time of process `pid` (clock ticks after boot), if it runs (a zombie does
/// not).
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2 is the command in parentheses and may hold spaces: count after its end.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    // Field 3, the state: a zombie has ended (its parent has not reaped it yet).
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

fn is_running(pid: u32, started: u64) -> bool {
    process_start(pid) == Some(started)
}

/// The endpoints foreground commands run on the store in `data_dir`, by branch.
pub(crate) fn list(data_dir: &Path) -> Result<Vec<RunRecord>> {
    let dir = data_dir.join(RUN_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("list {}", dir.display())),
    };
    let mut running = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("list {}", dir.display()))?
            .path();
        let is_run_file = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("endpoint-") && !name.contains(".tmp"));
        if !is_run_file {
            continue;
        }
        if let Some(record) = read(&path)?.running(&path)? {
            running.push(record);
        }
    }
    running.sort_by(|a, b| a.branch.cmp(&b.branch));
    Ok(running)
}

/// Which `pagefork endpoint start` commands run on the store in `data_dir`, as a refusal
/// names them: `None` if none does (or their run files cannot be read).
pub(crate) fn holders(data_dir: &Path) -> Option<String> {
    let running = list(data_dir).ok()?;
    let named: Vec<String> = running
        .iter()
        .map(|record| {
            let serving = match &record.endpoint {
                Some(endpoint) => format!("Postgres on port {}", endpoint.port()),
                None => "Postgres starting".to_owned(),
            };
            format!(
                "`pagefork endpoint start {}` (process {}, {serving}; `pagefork --data-dir {} \
                 endpoint stop {}` stops it)",
                record.branch,
                record.pid,
                data_dir.display(),
                record.branch
            )
        })
        .collect();
    match named.is_empty() {
        true => None,
        false => Some(format!("it is held by {}", named.join(", "))),
    }
}

/// Tells the command running the endpoint on `branch` to stop (SIGTERM: a fast shutdown,
/// an unmount, a checkpoint) and waits until it has. Returns what it stopped.
pub(crate) fn stop(data_dir: &Path, branch: &str) -> Result<RunRecord> {
    let path = run_file_path(data_dir, branch);
    let not_running = || super::EndpointError::NotRunning {
        branch: branch.to_owned(),
    };
    let record = match read(&path) {
        Ok(read) => read.running(&path)?.ok_or_else(not_running)?,
        Err(_) if !path.exists() => bail!(not_running()),
        Err(error) => return Err(error),
    };
    let pid = Pid::from_raw(i32::try_from(record.pid).context("process id out of range")?);
    kill(pid, Signal::SIGTERM)
        .with_context(|| format!("signal the endpoint command (pid {})", record.pid))?;
    let deadline = Instant::now() + STOP_WAIT;
    while is_running(record.pid, record.started) {
        if Instant::now() > deadline {
            bail!(
                "the endpoint command on branch {branch} (pid {}) did not stop within {} s",
                record.pid,
                STOP_WAIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::path::PathBuf;
    use std::time::Duration;

    use super::{list, publish_starting, run_file_path, stop};
    use crate::endpoint::EndpointInfo;
    use crate::endpoint::view::EndpointView;

    fn view(branch: &str) -> EndpointView {
        EndpointView::of(&EndpointInfo {
            branch: branch.to_owned(),
            port: 5999,
            pid: 1,
            data_directory: PathBuf::from("/nowhere/pgdata"),
            log: PathBuf::from("/nowhere/postgres.log"),
            initialized: false,
            ready_after: Duration::from_millis(5),
        })
    }

    #[test]
    fn a_run_file_lists_its_endpoint_until_dropped_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list(dir.path()).unwrap().is_empty(), "no run directory yet");
        let log = PathBuf::from("/nowhere/postgres.log");
        let mut file = publish_starting(dir.path(), "team/dev", &log).unwrap();
        let listed = list(dir.path()).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].branch, "team/dev");
        assert!(listed[0].endpoint.is_none(), "listed as starting");
        let shown = serde_json::to_value(listed[0].listed()).unwrap();
        assert_eq!(shown["starting"], true, "{shown}");
        assert_eq!(shown["command_pid"], std::process::id(), "{shown}");
        file.ready(view("team/dev")).unwrap();
        let listed = list(dir.path()).unwrap();
        assert_eq!(listed[0].endpoint.as_ref().unwrap().port(), 5999);
        assert_eq!(listed[0].pid, std::process::id());
        let shown = serde_json::to_value(listed[0].listed()).unwrap();
        assert_eq!(shown["port"], 5999, "{shown}");
        assert_eq!(shown["command_pid"], std::process::id(), "{shown}");
        let path = run_file_path(dir.path(), "team/dev");
        assert!(path.ends_with("run/endpoint-team%2Fdev"));

        // One byte changed: an error naming the file, never a guess.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let error = format!("{:#}", list(dir.path()).unwrap_err());
        assert!(
            error.contains("endpoint-team%2Fdev") && error.contains("CRC32"),
            "{error}"
        );
        drop(file);
        assert!(!path.exists(), "dropping the run file removes it");
        let error = stop(dir.path(), "team/dev").unwrap_err().to_string();
        assert!(error.contains("has no endpoint"), "{error}");
    }

    /// A file of another format version is skipped when its command is gone, and named
    /// when it runs (this build cannot stop it).
    #[test]
    fn a_run_file_of_another_version_is_stale_or_named() {
        let dir = tempfile::tempdir().unwrap();
        let log = PathBuf::from("/nowhere/postgres.log");
        let file = publish_starting(dir.path(), "main", &log).unwrap();
        let path = run_file_path(dir.path(), "main");
        let rewrite = |pid: u32| {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut record: serde_json::Value =
                serde_json::from_str(text.lines().next().unwrap()).unwrap();
            record["version"] = 1.into();
            record["pid"] = pid.into();
            let line = record.to_string();
            std::fs::write(
                &path,
                format!("{line}\n{:08x}\n", crc32fast::hash(line.as_bytes())),
            )
            .unwrap();
        };
        rewrite(std::process::id());
        let error = format!("{:#}", list(dir.path()).unwrap_err());
        assert!(error.contains("format version 1"), "{error}");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        rewrite(gone);
        assert!(
            list(dir.path()).unwrap().is_empty(),
            "a stale file is skipped"
        );
        drop(file);
    }

    #[test]
    fn a_run_file_whose_process_is_gone_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let log = PathBuf::from("/nowhere/postgres.log");
        let mut file = publish_starting(dir.path(), "main", &log).unwrap();
        file.ready(view("main")).unwrap();
        // Rewrite it as another process's: one that exited (a reaped child).
        let path = run_file_path(dir.path(), "main");
        let text = std::fs::read_to_string(&path).unwrap();
        let line = text.lines().next().unwrap();
        let mut record: serde_json::Value = serde_json::from_str(line).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        record["pid"] = gone.into();
        let line = record.to_string();
        let text = format!("{line}\n{:08x}\n", crc32fast::hash(line.as_bytes()));
        std::fs::write(&path, text).unwrap();
        assert!(
            list(dir.path()).unwrap().is_empty(),
            "a stale file is skipped"
        );
        let error = stop(dir.path(), "main").unwrap_err().to_string();
        assert!(error.contains("has no endpoint"), "{error}");
        drop(file);
    }
}
