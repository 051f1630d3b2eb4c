//! Mounts: a branch's file tree (`pagefork_files`) shown as a directory through FUSE.
//!
//! Owns the checks before a mount (the branch exists, the mount point is an empty
//! directory, `/dev/fuse` is there, and the process may mount), the FUSE session and its
//! worker threads, and a clean unmount: the kernel lets go of the directory, then
//! everything the tree logged is made durable. A mount is its branch's only writer;
//! `pagefork serve` keeps a registry of its mounts (see `registry`) so that operations
//! that would change a mounted branch under its writer are refused.

mod command;
mod cutoff;
mod fuse;
mod leftovers;
pub(crate) use leftovers::{detach_dead_endpoint_mounts, kill_postgres_working_in};
mod registry;
mod writeback;

pub(crate) use command::{StopSignals, run_foreground};
pub(crate) use registry::{MountError, MountInfo, Mounts};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fuser::{Config as FuseConfig, MountOption, SessionACL};
use pagefork_engine::{At, Store};
use pagefork_files::{FileTree, TreeOptions, TreeView};

/// What to mount and how.
#[derive(Clone, Debug)]
pub(crate) struct MountSpec {
    /// The branch.
    pub(crate) branch: String,
    /// The mount point: an existing, empty directory.
    pub(crate) dir: PathBuf,
    /// Refuse writes (implied by `at` other than `Latest`).
    pub(crate) read_only: bool,
    /// The state to show.
    pub(crate) at: At,
}

/// FUSE worker threads: enough that a request waiting for an fsync does not hold up the
/// others.
const WORKER_THREADS: usize = 4;

/// How far the kernel reads ahead of a sequential reader of a mount, in KiB. FUSE's
/// default, 128 KiB, makes a cold read of 256 MiB 2,048 round trips of 128 KiB; with
/// 1 MiB it ran at 1.2 GB/s instead of 0.5-0.6; with 4 MiB the kernel keeps several 1 MiB
/// reads in flight, which the mount's threads answer at once: 1.6 GB/s against 1.1-1.3
/// (docs/benchmarks.md#mounts). A random reader does not set it off.
const READ_AHEAD_KIB: u32 = 4096;

/// A live mount.
/// A mount's `write_back`, runnable apart from it: see `Mounted::write_back_handle`.
pub(crate) struct WriteBack {
    writers: Arc<writeback::OpenWriters>,
    notifier: fuser::Notifier,
    dir: PathBuf,
}

impl WriteBack {
    /// `Mounted::write_back`.
    pub(crate) fn run(&self) -> Result<()> {
        writeback::write_back(&self.writers, &self.notifier, &self.dir)
            .with_context(|| format!("cannot write back the mount at {}", self.dir.display()))
    }

    /// Whether `mounted` is the mount this was taken from (not a later one of its branch).
    pub(crate) fn is_of(&self, mounted: &Mounted) -> bool {
        Arc::ptr_eq(&self.writers, &mounted.writers)
    }
}

pub(crate) struct Mounted {
    tree: Arc<FileTree>,
    dir: PathBuf,
    unmounter: Arc<Unmounter>,
    session: Option<JoinHandle<std::io::Result<()>>>,
    /// The FUSE connection, to cut off a detached mount (see `wait_until`).
    connection: Option<u64>,
    writers: Arc<writeback::OpenWriters>,
    notifier: fuser::Notifier,
    /// Dropped once the mount has ended (after `wait`): see `keep`.
    kept: Vec<KeptWithMount>,
    /// Whether the kernel keeps writes in its page cache (a writable mount, unless
    /// [`writeback_cache_wanted`] says no).
    writeback_cache: bool,
}

/// Something that must outlive a mount (`Mounted::keep`).
pub(crate) type KeptWithMount = Box<dyn std::any::Any + Send + Sync>;

impl std::fmt::Debug for Mounted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mounted")
            .field("branch", &self.tree.branch())
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Checks that FUSE can be used here: `/dev/fuse` exists and the process is root (which
/// mounts with mount(2)) or has `fusermount3`.
pub(crate) fn check_fuse_available() -> Result<()> {
    if !Path::new("/dev/fuse").exists() {
        bail!(
            "/dev/fuse is missing: load the fuse module (modprobe fuse) or, in a container, \
             pass the device in (--device /dev/fuse)"
        );
    }
    if !nix::unistd::geteuid().is_root() && find_in_path("fusermount3").is_none() {
        bail!(
            "not running as root and fusermount3 is not installed: run as root, or install \
             the fuse3 package"
        );
    }
    Ok(())
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Checks that `dir` is an existing, empty directory.
pub(crate) fn check_mount_point(dir: &Path) -> Result<()> {
    let unusable = |error: std::io::Error, what: &str| match dead_mount(&error) {
        true => anyhow::anyhow!("{}", dead_mount_message(dir)),
        false => {
            anyhow::Error::from(error).context(format!("mount point {} {what}", dir.display()))
        }
    };
    let metadata = std::fs::metadata(dir).map_err(|error| unusable(error, "does not exist"))?;
    if !metadata.is_dir() {
        bail!("mount point {} is not a directory", dir.display());
    }
    let mut entries =
        std::fs::read_dir(dir).map_err(|error| unusable(error, "cannot be listed"))?;
    if let Some(entry) = entries.next() {
        // An entry that cannot be read is the error, not a name ("it holds \"\"").
        let first = entry
            .map_err(|error| unusable(error, "cannot be listed"))?
            .file_name();
        bail!(
            "mount point {} is not empty (it holds {first:?}, among others perhaps)",
            dir.display()
        );
    }
    Ok(())
}

/// Whether `error` is what a mount whose FUSE server has gone answers (ENOTCONN).
pub(crate) fn dead_mount(error: &std::io::Error) -> bool {
    error.raw_os_error() == Some(libc::ENOTCONN)
}

/// What to say of a mount point that is a mount whose server has gone.
pub(crate) fn dead_mount_message(dir: &Path) -> String {
    format!(
        "mount point {dir} is still a mount whose FUSE server has gone (a mount process that \
         was killed?): unmount it with `umount -l {dir}` first",
        dir = dir.display()
    )
}

/// Bytes in total and free on the file system holding `dir`.
pub(crate) fn disk_space(dir: &Path) -> nix::Result<(u64, u64)> {
    let stats = nix::sys::statvfs::statvfs(dir)?;
    let fragment = stats.fragment_size();
    Ok((
        stats.blocks() * fragment,
        stats.blocks_available() * fragment,
    ))
}

/// Opens the branch's tree and mounts it at `spec.dir`, serving requests on worker
/// threads until `unmount` (or an external `umount`). Callers check first, before
/// anything can change (`check_fuse_available`, `check_mount_point`), each answering
/// refusals its own way.
pub(crate) fn mount(store: Store, spec: &MountSpec) -> Result<Mounted> {
    store.branch_info(&spec.branch)?;
    let writable = !spec.read_only && spec.at == At::Latest;
    let writeback_cache = writable && writeback_cache_wanted();
    let options = TreeOptions {
        read_only: spec.read_only,
        at: spec.at,
        holder: format!("the mount at {}", spec.dir.display()),
        // The writeback cache keeps the times of what it holds.
        kernel_keeps_times: writeback_cache,
        ..TreeOptions::default()
    };
    let tree = Arc::new(
        FileTree::open(store, &spec.branch, options)
            .with_context(|| format!("cannot open the file tree of branch {:?}", spec.branch))?,
    );
    let mut mount_options = vec![
        MountOption::FSName(format!("pagefork:{}", spec.branch)),
        MountOption::Subtype("pagefork".to_owned()),
        // Permissions are checked by the kernel against the modes the tree stores, so
        // other users (Postgres runs as `postgres`) get exactly what the modes allow.
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
        // A tree's inodes are pages anyone who may write the branch (the HTTP page API, a
        // copy attached from a bucket) can craft: a set-user-ID root program or a device
        // node there must not work for every user of this machine (found by a review).
        // Databases need neither.
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if *tree.view() != TreeView::Writable {
        mount_options.push(MountOption::RO);
    }
    let mut config = FuseConfig::default();
    config.mount_options = mount_options;
    config.acl = SessionACL::All;
    config.n_threads = Some(WORKER_THREADS);
    config.clone_fd = true;
    let writers = Arc::new(writeback::OpenWriters::default());
    let notifier_slot = Arc::new(std::sync::OnceLock::new());
    let adapter = fuse::FuseAdapter::new(
        Arc::clone(&tree),
        writeback_cache,
        Arc::clone(&writers),
        Arc::clone(&notifier_slot),
    );
    let session = fuser::Session::new(adapter, &spec.dir, &config).with_context(|| {
        format!(
            "cannot mount branch {:?} at {}",
            spec.branch,
            spec.dir.display()
        )
    })?;
    let unmounter = Arc::new(Unmounter {
        dir: spec.dir.clone(),
    });
    let notifier = session.notifier();
    // Before the session serves anything: set once, here.
    let _ = notifier_slot.set(notifier.clone());
    let thread = std::thread::Builder::new()
        .name(format!("mount {}", spec.branch))
        .spawn(move || session.run())
        .context("cannot start the mount's thread")?;
    raise_read_ahead(&spec.dir);
    Ok(Mounted {
        tree,
        dir: spec.dir.clone(),
        unmounter,
        session: Some(thread),
        connection: cutoff::connection_of(&spec.dir),
        writers,
        notifier,
        kept: Vec::new(),
        writeback_cache,
    })
}

/// Set to `1` to mount writable branches without the kernel's writeback cache: every
/// `write` is then handed to the tree before it returns (slower; what a kernel before
/// 6.16 gets anyway).
pub(crate) const WRITE_THROUGH_VARIABLE: &str = "PAGEFORK_MOUNT_WRITE_THROUGH";

/// The first Linux release whose FUSE writeback keeps a page under writeback until the
/// mount has answered its `WRITE` (the temporary page copies went in 6.16). Before it the
/// kernel copied dirty pages aside and called them written at once, so dropping a file's
/// cached pages (`write_back`) did not wait for the mount to take them, and a branch
/// taken at latest could miss a write that had returned before it (found by a review).
const SOUND_WRITEBACK_KERNEL: (u32, u32) = (6, 16);

/// Whether a writable mount uses the kernel's writeback cache: on a kernel whose
/// writeback `write_back` can wait for, unless [`WRITE_THROUGH_VARIABLE`] says not to.
fn writeback_cache_wanted() -> bool {
    if std::env::var(WRITE_THROUGH_VARIABLE).is_ok_and(|value| value == "1") {
        tracing::info!(
            "writes go through to the tree before they return: {WRITE_THROUGH_VARIABLE}=1"
        );
        return false;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    match kernel_version(&release) {
        Some(version) if version >= SOUND_WRITEBACK_KERNEL => true,
        _ => {
            tracing::info!(
                kernel = release.trim(),
                "writes go through to the tree before they return: the writeback cache \
                 needs Linux {}.{} or later",
                SOUND_WRITEBACK_KERNEL.0,
                SOUND_WRITEBACK_KERNEL.1
            );
            false
        }
    }
}

/// A kernel release's major and minor version (`6.18.44-fc-v1300` is 6.18).
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Raises the mount's read-ahead (its backing device's `read_ahead_kb` in sysfs) to
/// [`READ_AHEAD_KIB`]. After the FUSE handshake, which sets it to at most what the kernel
/// offered: a `statfs` of the mount waits for the handshake to finish. Best effort:
/// without the right to write sysfs (not root) the kernel's default stays, and only the
/// speed of cold sequential reads differs.
fn raise_read_ahead(dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let raised = nix::sys::statvfs::statvfs(dir)
        .map_err(std::io::Error::from)
        .and_then(|_| std::fs::metadata(dir))
        .and_then(|metadata| {
            let device = metadata.dev();
            let (major, minor) = (nix::sys::stat::major(device), nix::sys::stat::minor(device));
            let path = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
            std::fs::write(path, READ_AHEAD_KIB.to_string())
        });
    if let Err(error) = raised {
        tracing::debug!(%error, dir = %dir.display(), "cannot raise the mount's read-ahead");
    }
}

impl Mounted {
    /// Keeps `kept` until this mount has ended: the directory that holds its mount point,
    /// made by whoever mounted it and removed when it drops.
    pub(crate) fn keep(&mut self, kept: KeptWithMount) {
        self.kept.push(kept);
    }

    /// The mounted tree.
    pub(crate) fn tree(&self) -> &Arc<FileTree> {
        &self.tree
    }

    /// Whether a writable mount hands every write to the tree before it returns (no
    /// writeback cache in the kernel).
    pub(crate) fn write_through(&self) -> bool {
        *self.tree.view() == TreeView::Writable && !self.writeback_cache
    }

    /// A handle that unmounts from another thread (a signal handler's).
    pub(crate) fn unmounter(&self) -> Arc<Unmounter> {
        Arc::clone(&self.unmounter)
    }

    /// Hands everything written through the mount so far to the tree (see `writeback`):
    /// a branch taken after this returns holds every write that finished before it.
    pub(crate) fn write_back(&self) -> Result<()> {
        self.write_back_handle().run()
    }

    /// What `write_back` needs, to run without holding the mount (or the registry).
    pub(crate) fn write_back_handle(&self) -> WriteBack {
        WriteBack {
            writers: Arc::clone(&self.writers),
            notifier: self.notifier.clone(),
            dir: self.dir.clone(),
        }
    }

    /// As `wait`, but a mount that has not ended by `deadline` (detached, with files
    /// still open under it) is cut off: its FUSE connection aborted, so the holders' next
    /// calls fail with ENOTCONN and what they had not handed over is lost as in a crash.
    /// For a shutdown that must end (`pagefork serve`'s grace).
    pub(crate) fn wait_until(self, deadline: Instant) -> Result<()> {
        let running = |mounted: &Mounted| {
            mounted
                .session
                .as_ref()
                .is_some_and(|session| !session.is_finished())
        };
        while running(&self) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if running(&self) {
            let cut = self
                .connection
                .context("its FUSE connection is not known")
                .and_then(cutoff::abort);
            match cut {
                Ok(()) => crate::output::warn_out!(
                    "pagefork: files were still open under {} at the end of the grace: cut \
                     them off (what their programs had not fsynced is lost, as in a crash)",
                    self.dir.display()
                ),
                Err(error) => crate::output::warn_out!(
                    "pagefork: files are still open under {} and the mount cannot be cut off \
                     ({error:#}): waiting for the last of them to be closed",
                    self.dir.display()
                ),
            }
        }
        self.wait()
    }

    /// Waits until the mount ends (an `unmount` or an external `umount`), then makes
    /// everything the tree logged durable: also when the session failed, whose error
    /// comes after (what was written before it is kept either way).
    pub(crate) fn wait(mut self) -> Result<()> {
        let ended = match self.session.take().map(JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(error))) => {
                Err(anyhow::Error::from(error).context("the FUSE session failed"))
            }
            Some(Err(_)) => Err(anyhow::anyhow!("the FUSE session panicked")),
        };
        let synced = self
            .tree
            .sync()
            .with_context(|| format!("cannot make branch {:?} durable", self.tree.branch()));
        match (ended, synced) {
            (Err(ended), Err(synced)) => Err(anyhow::anyhow!("{ended:#}; then {synced:#}")),
            (ended, synced) => ended.and(synced),
        }
    }
}

/// Unmounts a mount from any thread, with umount(2) itself (fuser's own unmounter forgets
/// its mount when an unmount fails, so a second try after EBUSY would do nothing); as a
/// user who may not call it, with `fusermount3 -u`.
pub(crate) struct Unmounter {
    dir: PathBuf,
}

impl Unmounter {
    /// Unmounts; if the mount is busy (files open in it), detaches it lazily: the kernel
    /// then ends the session once the last file is closed.
    pub(crate) fn unmount(&self) -> Result<()> {
        if self.try_unmount(false)? {
            return Ok(());
        }
        self.try_unmount(true)?;
        crate::output::warn_out!(
            "pagefork: files are still open under {}: detached it; the mount ends when the \
             last of them is closed",
            self.dir.display()
        );
        Ok(())
    }

    /// Unmounts, unless files are open under the mount: then nothing changes and this
    /// answers false.
    pub(crate) fn unmount_strict(&self) -> Result<bool> {
        self.try_unmount(false)
    }

    /// One unmount (lazy: a detach); false when the mount is busy.
    fn try_unmount(&self, lazy: bool) -> Result<bool> {
        let flags = if lazy {
            nix::mount::MntFlags::MNT_DETACH
        } else {
            nix::mount::MntFlags::empty()
        };
        match nix::mount::umount2(&self.dir, flags) {
            Ok(()) => Ok(true),
            Err(nix::errno::Errno::EBUSY) => Ok(false),
            Err(nix::errno::Errno::EPERM) => {
                let status = std::process::Command::new("fusermount3")
                    .arg(if lazy { "-uz" } else { "-u" })
                    .arg(&self.dir)
                    .status()
                    .with_context(|| format!("cannot run fusermount3 -u {}", self.dir.display()))?;
                Ok(status.success())
            }
            Err(error) => {
                Err(error).with_context(|| format!("cannot unmount {}", self.dir.display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::kernel_version;

    #[test]
    fn kernel_releases_name_their_version() {
        assert_eq!(kernel_version("6.18.44-fc-v1300\n"), Some((6, 18)));
        assert_eq!(kernel_version("6.1.0-28-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("5.15.0"), Some((5, 15)));
        assert_eq!(kernel_version("6-rc1"), None);
        assert_eq!(kernel_version(""), None);
        assert!(kernel_version("6.15.9") < Some(super::SOUND_WRITEBACK_KERNEL));
    }
}
