//! Mounts a killed server left behind: a `pagefork serve` killed with SIGKILL (or by the
//! machine's OOM killer) cannot unmount, and its mounts stay in the kernel's table as dead
//! FUSE mounts whose every operation fails with ENOTCONN. The next server detaches those
//! under its own mount root, and those of endpoints (`pagefork-endpoint-*/branch` in the
//! temporary directory), before it serves anything, so the same mount points work again.
//!
//! Owns finding and detaching them, and what a killed server's endpoints left: Postgres
//! processes still working in such a mount (the postmaster dies with its server, but a
//! backend waiting on a lock a dead one held never notices: a review found one alive
//! minutes later, its client hanging) are killed first, and an endpoint's own directory
//! is removed once its mount is detached. What it keeps: only a mount that is a pagefork
//! one (its source `pagefork:BRANCH`) in those places, and dead, is touched; a live mount,
//! of another process or another server, is never detached; of the processes using a
//! dead mount only Postgres' are killed (a shell in it is left, to see ENOTCONN). A
//! mount point's server is asked whether it is there with `statfs`, which no kernel cache
//! answers: a dead one fails at once with ENOTCONN. One whose server is alive but does not
//! answer is left alone after a short wait (the thread asking stays blocked: a cost paid
//! once, at start).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// How long a mount's server may take to answer `statfs` before the mount is left alone.
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// The kernel's table of this process's mounts.
const MOUNT_TABLE: &str = "/proc/self/mountinfo";

/// Detaches (lazily, as `umount -l` does) every dead pagefork mount under `root` or in an
/// endpoint's temporary directory; returns the mount points detached. Best effort: a
/// mount that cannot be detached is logged and left.
pub(crate) fn detach_dead_mounts(root: &Path) -> Vec<PathBuf> {
    detach_dead(Some(root))
}

/// `detach_dead_mounts` for the endpoints' temporary directories only: what a killed
/// foreground `pagefork endpoint start` left (each start looks, so one killed is cleaned
/// up by the next, not only by a later `pagefork serve`; found by a review).
pub(crate) fn detach_dead_endpoint_mounts() -> Vec<PathBuf> {
    detach_dead(None)
}

fn detach_dead(root: Option<&Path>) -> Vec<PathBuf> {
    let table = match std::fs::read_to_string(MOUNT_TABLE) {
        Ok(table) => table,
        Err(error) => {
            tracing::warn!(%error, "cannot read {MOUNT_TABLE} to find dead mounts");
            return Vec::new();
        }
    };
    let endpoints = std::env::temp_dir();
    let mut detached = Vec::new();
    for point in pagefork_mount_points(&table) {
        let under_root = root.is_some_and(|root| point.starts_with(root) && point != root);
        let ours = under_root || is_endpoint_mount(&point, &endpoints);
        if !ours || !is_dead(&point) {
            continue;
        }
        kill_postgres_working_in(&point, "a killed process's endpoint left on its dead mount");
        match nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => {
                tracing::warn!(
                    mount_point = %point.display(),
                    "detached a dead mount a killed process left"
                );
                if is_endpoint_mount(&point, &endpoints)
                    && let Some(place) = point.parent()
                {
                    drop(crate::endpoint::Place::made_at(place));
                }
                detached.push(point);
            }
            Err(error) => tracing::warn!(
                %error, mount_point = %point.display(),
                "cannot detach a dead mount a killed process left"
            ),
        }
    }
    detached
}

/// The mount points of pagefork's FUSE mounts in `table` (the format of
/// `/proc/self/mountinfo`: the mount point is the 5th field, with spaces and other bytes
/// written as octal escapes; after a `-` field, the type and the source).
fn pagefork_mount_points(table: &str) -> Vec<PathBuf> {
    table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let separator = fields.iter().position(|field| *field == "-")?;
            let kind = fields.get(separator + 1)?;
            let source = fields.get(separator + 2)?;
            let is_ours =
                (*kind == "fuse" || kind.starts_with("fuse.")) && source.starts_with("pagefork:");
            is_ours.then(|| unescape(fields.get(4)?)).flatten()
        })
        .collect()
}

/// A mount table path with its octal escapes (`\040` for a space) decoded.
fn unescape(escaped: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        if byte == b'\\' {
            let digits = std::str::from_utf8(bytes.get(at + 1..at + 4)?).ok()?;
            out.push(u8::from_str_radix(digits, 8).ok()?);
            at += 4;
        } else {
            out.push(byte);
            at += 1;
        }
    }
    Some(PathBuf::from(std::ffi::OsString::from_vec(out)))
}

/// Whether `point` is an endpoint's mount point: `pagefork-endpoint-*/branch` in
/// `temp_dir` (see `endpoint::Place::temporary`).
fn is_endpoint_mount(point: &Path, temp_dir: &Path) -> bool {
    use crate::endpoint::{PLACE_MOUNT_DIR, PLACE_PREFIX};
    let Some(place) = point.parent() else {
        return false;
    };
    point
        .file_name()
        .is_some_and(|name| name == PLACE_MOUNT_DIR)
        && place.parent() == Some(temp_dir)
        && place
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(PLACE_PREFIX))
}

/// Kills (SIGKILL) every Postgres process whose working directory is under `point`: a
/// dead mount (a server works in its data directory, and on a dead mount it can do
/// nothing but wait or fail), or the data directory of a postmaster that is gone (its
/// backends, left running, would go on writing to the branch). `left` says how they were
/// left, for the log. Best effort: what cannot be read or killed is logged. Returns once
/// those killed have let go of the directory (within `ANSWER_WAIT`), so an unmount next
/// does not find them there.
pub(crate) fn kill_postgres_working_in(point: &Path, left: &str) {
    let killed = kill_each_postgres_working_in(point, left);
    let deadline = std::time::Instant::now() + ANSWER_WAIT;
    // Dead (a zombie has no working directory) or gone.
    let working = |pid: &nix::unistd::Pid| {
        std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(point))
    };
    while killed.iter().any(working) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// `kill_postgres_working_in`'s kills: the processes signalled.
fn kill_each_postgres_working_in(point: &Path, left: &str) -> Vec<nix::unistd::Pid> {
    let mut killed = Vec::new();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return killed;
    };
    for process in processes.flatten() {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        let is_postgres = std::fs::read_link(process.path().join("exe")).is_ok_and(|exe| {
            exe.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("postgres"))
        });
        let works_here = || {
            std::fs::read_link(process.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(point))
        };
        if !is_postgres || !works_here() {
            continue;
        }
        let pid = nix::unistd::Pid::from_raw(pid);
        match nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL) {
            Ok(()) => {
                killed.push(pid);
                tracing::warn!(
                    %pid, directory = %point.display(),
                    "killed a Postgres process {left}"
                );
            }
            Err(error) => tracing::warn!(
                %pid, %error, directory = %point.display(),
                "cannot kill a Postgres process {left}"
            ),
        }
    }
    killed
}

/// Whether the FUSE server of the mount at `point` is gone: `statfs` fails with ENOTCONN.
fn is_dead(point: &Path) -> bool {
    let (answer, answered) = mpsc::channel();
    let asked = point.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("dead-mount check".to_owned())
        .spawn(move || {
            let _ = answer.send(nix::sys::statvfs::statvfs(&asked).err());
        });
    if spawned.is_err() {
        return false;
    }
    matches!(
        answered.recv_timeout(ANSWER_WAIT),
        Ok(Some(nix::errno::Errno::ENOTCONN))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagefork_mounts_are_found_in_the_mount_table_with_their_escapes() {
        let table = "\
22 1 8:1 / / rw - ext4 /dev/vda rw
46 27 0:41 / /var/tmp/a\\040b rw,noatime - fuse pagefork:main rw,user_id=0
47 27 0:42 / /var/tmp/other rw - fuse sshfs#host rw
48 27 0:43 / /tmp/pagefork-endpoint-x/branch rw - fuse.pagefork pagefork:dev rw";
        assert_eq!(
            pagefork_mount_points(table),
            [
                PathBuf::from("/var/tmp/a b"),
                PathBuf::from("/tmp/pagefork-endpoint-x/branch")
            ]
        );
        assert!(is_endpoint_mount(
            Path::new("/tmp/pagefork-endpoint-x/branch"),
            Path::new("/tmp")
        ));
        assert!(!is_endpoint_mount(
            Path::new("/tmp/elsewhere/branch"),
            Path::new("/tmp")
        ));
    }
}
