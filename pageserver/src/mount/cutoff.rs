//! Cutting off a detached mount that files still hold open: its FUSE connection aborted
//! through the kernel's control file system (`fusectl`), so a shutdown that must end in
//! bounded time (`pagefork serve` on SIGTERM) does not wait for whoever holds a file.
//!
//! Owns finding a mount's connection and aborting it. What it keeps: only a connection
//! this process mounted is ever aborted (its number is taken from the mount point right
//! after the mount, while it is ours); everything the mount was handed before the abort
//! stays in the tree and is made durable by the caller; what the holders had not yet
//! written back or fsynced is lost, as in a crash of the program holding them.

use std::path::Path;

use anyhow::{Context, Result};

/// Where the kernel's FUSE control file system is mounted.
const CONTROL_DIR: &str = "/sys/fs/fuse/connections";

/// The FUSE connection number of the file system mounted at `dir` (the kernel names a
/// connection's control directory after its device number), or `None` when `dir` cannot
/// be read.
pub(super) fn connection_of(dir: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let device = std::fs::metadata(dir).ok()?.dev();
    let (major, minor) = (nix::sys::stat::major(device), nix::sys::stat::minor(device));
    // The kernel's own encoding of a device number: 20 bits of minor.
    Some((major << 20) | minor)
}

/// Aborts FUSE connection `connection`: its pending and later requests fail with
/// ENOTCONN, and the session reading it ends. Mounts the control file system first if
/// nobody has (as root only: elsewhere this fails and says so).
pub(super) fn abort(connection: u64) -> Result<()> {
    let control = Path::new(CONTROL_DIR);
    let abort_file = control.join(connection.to_string()).join("abort");
    if !abort_file.exists() {
        let mounted = nix::mount::mount(
            Some("fusectl"),
            control,
            Some("fusectl"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        );
        // EBUSY: mounted already (the connection has gone meanwhile, or another process
        // mounted it); the write below tells.
        if let Err(error) = mounted
            && error != nix::errno::Errno::EBUSY
        {
            return Err(error).with_context(|| {
                format!("cannot mount the FUSE control file system at {CONTROL_DIR}")
            });
        }
    }
    std::fs::write(&abort_file, "1").with_context(|| {
        format!(
            "cannot abort FUSE connection {connection} ({})",
            abort_file.display()
        )
    })
}
