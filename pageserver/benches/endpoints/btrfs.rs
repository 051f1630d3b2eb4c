//! A btrfs file system in a loop-mounted image file, for the snapshot comparison: a
//! subvolume holding a Postgres data directory, snapshotted while its server runs (as
//! people copy a database with a copy-on-write file system). Needs root and Debian's
//! `btrfs-progs`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::host::{give_to_postgres, run};

/// A mounted btrfs volume, unmounted and its image removed when dropped.
pub(crate) struct Btrfs {
    image: PathBuf,
    mount: PathBuf,
}

impl Btrfs {
    /// Makes a sparse image of `bytes` in `dir`, formats it and mounts it.
    pub(crate) fn create(dir: &Path, bytes: u64) -> Btrfs {
        assert!(
            Path::new("/usr/sbin/mkfs.btrfs").exists() || Path::new("/sbin/mkfs.btrfs").exists(),
            "the btrfs snapshot row needs mkfs.btrfs and btrfs: apt-get install btrfs-progs"
        );
        std::fs::create_dir_all(dir).unwrap();
        let image = dir.join("btrfs.img");
        let mount = dir.join("volume");
        std::fs::create_dir_all(&mount).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(bytes)
            .unwrap();
        let mut mkfs = Command::new("mkfs.btrfs");
        mkfs.arg("-q").arg(&image);
        run(mkfs, "mkfs.btrfs");
        let mut mount_command = Command::new("mount");
        mount_command.args(["-o", "loop"]).arg(&image).arg(&mount);
        run(mount_command, "mount the btrfs image");
        Btrfs { image, mount }
    }

    /// Creates subvolume `name` (given to `postgres`).
    pub(crate) fn subvolume(&self, name: &str) -> PathBuf {
        let path = self.mount.join(name);
        let mut create = Command::new("btrfs");
        create.args(["-q", "subvolume", "create"]).arg(&path);
        run(create, "btrfs subvolume create");
        give_to_postgres(&path);
        path
    }

    /// Snapshots subvolume `from` as `name` (writable, atomic: what a running server had
    /// written, as after a crash).
    pub(crate) fn snapshot(&self, from: &Path, name: &str) -> PathBuf {
        let path = self.mount.join(name);
        let mut snapshot = Command::new("btrfs");
        snapshot
            .args(["-q", "subvolume", "snapshot"])
            .arg(from)
            .arg(&path);
        run(snapshot, "btrfs subvolume snapshot");
        path
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = std::fs::remove_file(&self.image);
    }
}
