//! A `pagefork mount` child process: started and waited for until the kernel shows the
//! mount, stopped by SIGTERM, `umount` or SIGKILL (after which the dead mount is detached,
//! as a user would with `umount -l`). Mount tests need root and /dev/fuse, as CI runs;
//! without them they fail saying so.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Fails the test, saying what is missing, unless FUSE mounts can be made here.
pub(crate) fn require_fuse() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "this test mounts branches with FUSE and needs /dev/fuse (CI passes it in)"
    );
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test mounts branches with FUSE and runs as root, as CI does"
    );
}

/// A running mount; stopped (SIGTERM, then SIGKILL) and detached when dropped.
pub(crate) struct Mount {
    child: Child,
    pub(crate) dir: PathBuf,
    /// The line the command printed once mounted.
    pub(crate) announced: String,
    /// Whether dropping this detaches the mount (not once `kill` hands that on).
    detach_on_drop: bool,
}

/// Whether the kernel lists `dir` as a mount point.
pub(crate) fn is_mounted(dir: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    mounts
        .lines()
        .any(|line| line.split(' ').nth(1) == Some(dir.to_str().unwrap()))
}

impl Mount {
    /// `pagefork --data-dir DATA mount BRANCH DIR EXTRA...`, waited for until mounted.
    pub(crate) fn start(data: &Path, branch: &str, dir: &Path, extra: &[&str]) -> Mount {
        Mount::try_start(data, branch, dir, extra).unwrap_or_else(|error| panic!("{error}"))
    }

    /// Like `start`, but a mount that fails is an error carrying the command's stderr.
    pub(crate) fn try_start(
        data: &Path,
        branch: &str,
        dir: &Path,
        extra: &[&str],
    ) -> Result<Mount, String> {
        Mount::try_start_with_env(data, branch, dir, extra, &[])
    }

    /// Like `try_start`, with `env` set for the command.
    pub(crate) fn try_start_with_env(
        data: &Path,
        branch: &str,
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Mount, String> {
        require_fuse();
        std::fs::create_dir_all(dir).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pagefork"))
            .arg("--data-dir")
            .arg(data)
            .args(["mount", branch])
            .arg(dir)
            .args(extra)
            .env_remove("PAGEFORK_DATA_DIR")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut announced = String::new();
        stdout.read_line(&mut announced).unwrap();
        if announced.is_empty() {
            let status = child.wait().unwrap();
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return Err(format!("mount exited ({status}): {stderr}"));
        }
        // The rest of standard output is read (and kept) by a thread, so the child never
        // blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !is_mounted(dir) {
            assert!(
                Instant::now() < deadline,
                "{} never appeared as a mount",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Mount {
            child,
            dir: dir.to_path_buf(),
            announced: announced.trim().to_owned(),
            detach_on_drop: true,
        })
    }

    /// A path inside the mount.
    pub(crate) fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// SIGTERM, and the exit status once the command is done (unmounted, durable).
    pub(crate) fn terminate(mut self) -> ExitStatus {
        self.stop_with_sigterm()
    }

    /// SIGTERM, and the exit status and everything the command wrote to standard error.
    pub(crate) fn terminate_with_stderr(mut self) -> (ExitStatus, String) {
        let mut stderr = self.child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            stderr.read_to_string(&mut text).unwrap();
            text
        });
        let status = self.stop_with_sigterm();
        (status, reader.join().unwrap())
    }

    fn stop_with_sigterm(&mut self) -> ExitStatus {
        signal(&self.child, "-TERM");
        let status = wait_within(&mut self.child, Duration::from_secs(60));
        assert!(!is_mounted(&self.dir), "still mounted after SIGTERM");
        status
    }

    /// `umount DIR`, and the exit status of the command, which ends with the mount.
    pub(crate) fn unmount_externally(mut self) -> ExitStatus {
        let unmounted = Command::new("umount").arg(&self.dir).status().unwrap();
        assert!(unmounted.success(), "umount failed");
        wait_within(&mut self.child, Duration::from_secs(60))
    }

    /// SIGKILL: the mount is left dead (every call in it fails with ENOTCONN) until the
    /// returned `DeadMount` is detached or dropped.
    pub(crate) fn kill(mut self) -> DeadMount {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.detach_on_drop = false;
        DeadMount {
            dir: self.dir.clone(),
        }
    }
}

/// A mount whose process was killed; detached (`umount -l`) when dropped.
pub(crate) struct DeadMount {
    dir: PathBuf,
}

impl Drop for DeadMount {
    fn drop(&mut self) {
        detach(&self.dir);
    }
}

fn signal(child: &Child, which: &str) {
    let sent = Command::new("kill")
        .args([which, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

fn wait_within(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the mount command did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Detaches whatever is mounted at `dir` (a dead FUSE mount included).
pub(crate) fn detach(dir: &Path) {
    if is_mounted(dir) {
        let _ = Command::new("umount").arg("-l").arg(dir).status();
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        super::stop_on_drop(&mut self.child);
        if self.detach_on_drop {
            detach(&self.dir);
        }
    }
}
