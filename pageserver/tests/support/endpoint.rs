//! A `pagefork endpoint start` child process (the foreground command), its JSON answer,
//! and `psql` against it. Dropped, it kills the command and detaches its mount before
//! anything else goes: a test's temporary directory removed recursively while the mount
//! is live would delete the branch's files through it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::mount::detach;

/// Debian's Postgres 15 programs.
pub(crate) const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Fails the test, saying what is missing, unless Postgres 15 and its client are here.
pub(crate) fn require_postgres() {
    assert!(
        Path::new(PG_BIN).join("pg_amcheck").exists(),
        "this test runs Postgres endpoints: it needs Debian's postgresql-15 and postgresql-client-15"
    );
}

/// Postgres' programs, linked into a directory under `root`, with `program` replaced by
/// `script` (the directory, and `root`, open to Postgres' user).
pub(crate) fn pg_bin_with(root: &Path, program: &str, script: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = root.join(format!("planted-{program}"));
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(PG_BIN).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != program {
            std::os::unix::fs::symlink(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    let path = dir.join(program);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A running `pagefork endpoint start`.
pub(crate) struct Endpoint {
    child: Option<Child>,
    /// What it printed once Postgres accepted connections.
    pub(crate) answer: Value,
    mount: Option<PathBuf>,
}

impl Endpoint {
    /// `pagefork --data-dir DATA --json endpoint start BRANCH EXTRA...`, `--mount MOUNT`
    /// if given; waits for its answer.
    pub(crate) fn start(
        data: &Path,
        branch: &str,
        mount: Option<&Path>,
        extra: &[&str],
    ) -> Endpoint {
        Endpoint::start_in(Path::new("."), data, branch, mount, extra)
    }

    /// As `start`, run in directory `cwd` (a relative `mount` is relative to it).
    pub(crate) fn start_in(
        cwd: &Path,
        data: &Path,
        branch: &str,
        mount: Option<&Path>,
        extra: &[&str],
    ) -> Endpoint {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pagefork"));
        command
            .current_dir(cwd)
            .arg("--data-dir")
            .arg(data)
            .args(["--json", "endpoint", "start", branch])
            .args(extra)
            .env_remove("PAGEFORK_DATA_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(mount) = mount {
            command.arg("--mount").arg(mount);
        }
        let mut child = command.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut endpoint = Endpoint {
            child: Some(child),
            answer: Value::Null,
            mount: mount.map(|mount| cwd.join(mount)),
        };
        endpoint.answer = serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("endpoint start did not answer ({error}): {line:?}"));
        if endpoint.mount.is_none() {
            // The command's own mount point: the data directory's parent.
            let data = endpoint.answer["endpoint"]["data_directory"]
                .as_str()
                .unwrap();
            endpoint.mount = Path::new(data).parent().map(Path::to_path_buf);
        }
        endpoint
    }

    /// How to connect.
    pub(crate) fn url(&self) -> String {
        self.answer["endpoint"]["connection_string"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The postmaster's PID.
    pub(crate) fn postgres_pid(&self) -> u64 {
        self.answer["endpoint"]["pid"].as_u64().unwrap()
    }

    /// SIGTERM, and the command's exit status.
    pub(crate) fn stop(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        child.wait().unwrap()
    }

    /// Waits for the command to end by itself.
    pub(crate) fn wait(mut self) -> std::process::ExitStatus {
        self.child.take().unwrap().wait().unwrap()
    }

    /// SIGKILL, leaving the dead mount where it is; its mount point.
    #[allow(dead_code)] // Not every test binary asks.
    pub(crate) fn kill_leaving_mount(mut self) -> std::path::PathBuf {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.mount.take().unwrap()
    }

    /// SIGKILL; the dead mount is detached.
    pub(crate) fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mount) = &self.mount {
            detach(mount);
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mount) = &self.mount {
            detach(mount);
        }
    }
}

/// Runs `sql` with psql against `url`: its unaligned output, or its error.
pub(crate) fn psql(url: &str, sql: &str) -> Result<String, String> {
    let output = Command::new(Path::new(PG_BIN).join("psql"))
        .args([url, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// Runs `pg_amcheck` (heap, every index, from the root) on database `postgres` of the
/// server on `port`, failing the test with its report unless it finds nothing.
pub(crate) fn pg_amcheck(port: &str) {
    let check = Command::new(Path::new(PG_BIN).join("pg_amcheck"))
        .args(["-h", "127.0.0.1", "-p", port, "-U", "postgres"])
        .args([
            "--install-missing",
            "--heapallindexed",
            "--rootdescend",
            "postgres",
        ])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "pg_amcheck: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
