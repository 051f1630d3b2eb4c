//! The mounts `pagefork serve` keeps: which branch of which project is mounted where.
//!
//! Invariants: a branch is mounted at most once; a mount point lies strictly inside the
//! server's mount root (an HTTP client cannot mount over a system directory); while a
//! branch is mounted, nothing else changes it: the operations that would (delete, reset,
//! restore in place, rename, detach, page writes) run under this registry's lock and are
//! refused while the branch is mounted, and no mount can start while one of them runs.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use pagefork_engine::Store;
use pagefork_files::TreeView;
use parking_lot::Mutex;

use super::{KeptWithMount, MountSpec, Mounted, dead_mount, dead_mount_message, mount};

/// What a mount is, for listings and answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MountInfo {
    pub(crate) branch: String,
    pub(crate) path: PathBuf,
    pub(crate) read_only: bool,
    /// The LSN a read-only mount shows.
    pub(crate) lsn: Option<pagefork_engine::Lsn>,
    /// For a mount at a time: the time asked for and the commit it snapped to.
    pub(crate) snap: Option<pagefork_engine::LsnForTime>,
}

/// Why a mount request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MountError {
    #[error("branch {branch:?} is mounted at {}: unmount it first", path.display())]
    Mounted { branch: String, path: PathBuf },
    /// A second mount of a branch (a review asked for an earlier state of a mounted one,
    /// and was told to unmount it).
    #[error(
        "branch {branch:?} is mounted at {}, and a branch has one mount at a time: to see \
         an earlier state of it meanwhile, create a branch at that LSN or time and mount \
         that one",
        path.display()
    )]
    MountedAlready { branch: String, path: PathBuf },
    #[error("branch {branch:?} is not mounted")]
    NotMounted { branch: String },
    #[error("files are open under {}: close them and unmount again", path.display())]
    Busy { path: PathBuf },
    /// A mount point refused: the message names it (see `bad_mount_point`).
    #[error("{message}")]
    BadMountPoint { message: String },
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// The server's mounts.
#[derive(Debug)]
pub(crate) struct Mounts {
    root: PathBuf,
    mounts: Mutex<BTreeMap<(String, String), Mounted>>,
}

impl Mounts {
    /// A registry whose mount points must lie inside `root` (created if missing).
    pub(crate) fn new(root: &Path) -> anyhow::Result<Mounts> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create the mount root {}", root.display()))?;
        let root = root
            .canonicalize()
            .with_context(|| format!("cannot resolve the mount root {}", root.display()))?;
        Ok(Mounts {
            root,
            mounts: Mutex::new(BTreeMap::new()),
        })
    }

    /// Detaches the dead mounts a killed server left under the root and in endpoints'
    /// directories (see `leftovers`), so their mount points work again; returns them.
    pub(crate) fn detach_dead_mounts(&self) -> Vec<PathBuf> {
        super::leftovers::detach_dead_mounts(&self.root)
    }

    /// `path` (absolute, or relative to the root) as a mount point strictly inside the
    /// root, without `..`.
    fn mount_point(&self, path: &str) -> Result<PathBuf, MountError> {
        let bad = |reason: &str| bad_mount_point(Path::new(path), reason);
        let given = Path::new(path);
        if path.is_empty() || given.components().any(|part| part == Component::ParentDir) {
            return Err(bad(
                "give a directory inside the mount root, without \"..\"",
            ));
        }
        let joined = self.root.join(given);
        let resolved = joined
            .canonicalize()
            .map_err(|error| match dead_mount(&error) {
                true => MountError::BadMountPoint {
                    message: dead_mount_message(&joined),
                },
                false => bad(&format!("does not exist ({error})")),
            })?;
        if resolved == self.root || !resolved.starts_with(&self.root) {
            return Err(bad(&format!(
                "must lie inside the mount root {}",
                self.root.display()
            )));
        }
        Ok(resolved)
    }

    /// Mounts `spec.branch` of `project` at `path` (inside the root).
    pub(crate) fn mount(
        &self,
        project: &str,
        store: Store,
        path: &str,
        mut spec: MountSpec,
    ) -> Result<MountInfo, MountError> {
        let key = (project.to_owned(), spec.branch.clone());
        if let Some(existing) = self.mounts.lock().get(&key) {
            return Err(MountError::MountedAlready {
                branch: spec.branch,
                path: existing.dir.clone(),
            });
        }
        spec.dir = self.mount_point(path)?;
        self.mount_at(project, store, spec)
    }

    /// Mounts `spec.branch` of `project` at `spec.dir`, a directory the server chose
    /// itself (an endpoint's), which need not lie inside the root.
    pub(crate) fn mount_at(
        &self,
        project: &str,
        store: Store,
        spec: MountSpec,
    ) -> Result<MountInfo, MountError> {
        let mut mounts = self.mounts.lock();
        let key = (project.to_owned(), spec.branch.clone());
        if let Some(existing) = mounts.get(&key) {
            return Err(MountError::MountedAlready {
                branch: spec.branch,
                path: existing.dir.clone(),
            });
        }
        super::check_fuse_available()?;
        // First: a mount point another branch took is not empty either, and "taken" says
        // why (found by a review).
        if mounts.values().any(|mounted| mounted.dir == spec.dir) {
            return Err(bad_mount_point(
                &spec.dir,
                "another branch is mounted there",
            ));
        }
        // Its messages name the mount point (a review found it named twice when this
        // wrapped them).
        super::check_mount_point(&spec.dir).map_err(|error| MountError::BadMountPoint {
            message: format!("{error:#}"),
        })?;
        let mounted = mount(store, &spec)?;
        let info = info_of(&mounted);
        mounts.insert(key, mounted);
        Ok(info)
    }

    /// Unmounts `branch` of `project` (refused while files are open under it) and makes
    /// everything written through it durable.
    pub(crate) fn unmount(&self, project: &str, branch: &str) -> Result<MountInfo, MountError> {
        let mut mounts = self.mounts.lock();
        let key = (project.to_owned(), branch.to_owned());
        let Some(mounted) = mounts.get(&key) else {
            return Err(MountError::NotMounted {
                branch: branch.to_owned(),
            });
        };
        let info = info_of(mounted);
        if mounted.unmounter().unmount_strict()? {
            let mounted = mounts.remove(&key).expect("looked up above");
            mounted.wait()?;
            Ok(info)
        } else {
            Err(MountError::Busy { path: info.path })
        }
    }

    /// Keeps `keep` until the mount of `branch` goes (dropped at once if it has none): an
    /// endpoint's directory, which holds the mount point.
    pub(crate) fn keep_until_unmounted(&self, project: &str, branch: &str, keep: KeptWithMount) {
        if let Some(mounted) = self
            .mounts
            .lock()
            .get_mut(&(project.to_owned(), branch.to_owned()))
        {
            mounted.keep(keep);
        }
    }

    /// Hands everything written through the writable mount of `branch` (if it has one)
    /// to its branch (`Mounted::write_back`), so a branch taken at latest next holds it.
    /// The registry stays held: the mount cannot go meanwhile.
    pub(crate) fn write_back(&self, project: &str, branch: &str) -> Result<(), MountError> {
        match self
            .mounts
            .lock()
            .get(&(project.to_owned(), branch.to_owned()))
        {
            Some(mounted) if *mounted.tree().view() == TreeView::Writable => {
                Ok(mounted.write_back()?)
            }
            _ => Ok(()),
        }
    }

    /// `write_back` of every writable mount of `project`: a sync to object storage next
    /// holds what programs wrote through them, fsynced or not. The registry is not held
    /// while the kernel writes back (gigabytes of dirty pages can take seconds, and every
    /// mount, endpoint and change of a branch waits for the registry); a mount that goes
    /// meanwhile was written back by its unmount, so its failure is no failure.
    pub(crate) fn write_back_all(&self, project: &str) -> Result<(), MountError> {
        let handles: Vec<_> = self
            .mounts
            .lock()
            .iter()
            .filter(|((owner, _), mounted)| {
                owner == project && *mounted.tree().view() == TreeView::Writable
            })
            .map(|(key, mounted)| (key.clone(), mounted.write_back_handle()))
            .collect();
        for (key, handle) in handles {
            if let Err(error) = handle.run() {
                let still_mounted = self
                    .mounts
                    .lock()
                    .get(&key)
                    .is_some_and(|mounted| handle.is_of(mounted));
                if still_mounted {
                    return Err(error.into());
                }
            }
        }
        Ok(())
    }

    /// Where `branch` of `project` is mounted, and whether writable.
    pub(crate) fn mounted_at(&self, project: &str, branch: &str) -> Option<(PathBuf, bool)> {
        self.mounts
            .lock()
            .get(&(project.to_owned(), branch.to_owned()))
            .map(|mounted| {
                (
                    mounted.dir.clone(),
                    *mounted.tree().view() == TreeView::Writable,
                )
            })
    }

    /// The mounts of `project`, by branch.
    pub(crate) fn list(&self, project: &str) -> Vec<MountInfo> {
        self.mounts
            .lock()
            .iter()
            .filter(|((owner, _), _)| owner == project)
            .map(|(_, mounted)| info_of(mounted))
            .collect()
    }

    /// Runs `operation` unless `branch` of `project` is mounted, holding the registry so
    /// that no mount starts meanwhile.
    pub(crate) fn unless_mounted<T>(
        &self,
        project: &str,
        branch: &str,
        operation: impl FnOnce() -> T,
    ) -> Result<T, MountError> {
        let mounts = self.mounts.lock();
        if let Some(mounted) = mounts.get(&(project.to_owned(), branch.to_owned())) {
            return Err(MountError::Mounted {
                branch: branch.to_owned(),
                path: mounted.dir.clone(),
            });
        }
        Ok(operation())
    }

    /// Unmounts everything (detaching lazily what is busy) and makes it durable: for a
    /// server's shutdown. A mount that files still hold open `grace` after this starts is
    /// cut off (`Mounted::wait_until`), so the shutdown ends whatever its users do.
    pub(crate) fn unmount_all(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let mounts = std::mem::take(&mut *self.mounts.lock());
        let mut detached = Vec::new();
        for ((project, branch), mounted) in mounts {
            match mounted.unmounter().unmount() {
                Ok(()) => detached.push((project, branch, mounted)),
                Err(error) => tracing::error!(%project, %branch, "unmount failed: {error:#}"),
            }
        }
        for (project, branch, mounted) in detached {
            match mounted.wait_until(deadline) {
                Ok(()) => tracing::info!(%project, %branch, "unmounted"),
                Err(error) => tracing::error!(%project, %branch, "unmount failed: {error:#}"),
            }
        }
    }
}

fn info_of(mounted: &Mounted) -> MountInfo {
    let (read_only, lsn, snap) = match mounted.tree().view() {
        TreeView::Writable => (false, None, None),
        TreeView::ReadOnly { lsn, time } => (true, Some(*lsn), *time),
    };
    MountInfo {
        branch: mounted.tree().branch().to_owned(),
        path: mounted.dir.clone(),
        read_only,
        lsn,
        snap,
    }
}

/// The refusal of mount point `path` for `reason`, naming it.
fn bad_mount_point(path: &Path, reason: &str) -> MountError {
    MountError::BadMountPoint {
        message: format!("mount point {}: {reason}", path.display()),
    }
}
