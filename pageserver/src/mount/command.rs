//! `pagefork mount`: the foreground command. Checks everything it can before it opens the
//! store, mounts, prints what it shows (and, for a time, what the time snapped to), and
//! on SIGTERM or SIGINT unmounts; an external `umount` ends it too. Either way it exits
//! only once everything written through the mount is durable and checkpointed.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use pagefork_files::TreeView;
use serde_json::json;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::{MountSpec, check_fuse_available, check_mount_point, mount};
use crate::commands::describe_time_answer;
use crate::output::out;
use crate::views::time_answer_json;

/// SIGINT and SIGTERM, caught from when it is made (a foreground command's way to end
/// cleanly), and a runtime to wait for them on.
pub(crate) struct StopSignals {
    runtime: tokio::runtime::Runtime,
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    pub(crate) fn catch() -> Result<StopSignals> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the signal handler")?;
        let (interrupt, terminate) = {
            let _context = runtime.enter();
            (
                signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
                signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            )
        };
        Ok(StopSignals {
            runtime,
            interrupt,
            terminate,
        })
    }

    /// Waits until either signal comes (`None`) or `done` completes (its output).
    pub(crate) fn wait_or<F: Future>(&mut self, done: F) -> Option<F::Output> {
        let (interrupt, terminate) = (&mut self.interrupt, &mut self.terminate);
        self.runtime.block_on(async {
            tokio::select! {
                _ = interrupt.recv() => None,
                _ = terminate.recv() => None,
                output = done => Some(output),
            }
        })
    }

    /// Runs `work` on a thread of its own, and waits for it; a signal that comes
    /// meanwhile sets `stop`, which `work` watches (an endpoint start waiting for Postgres
    /// gives up), and is not seen again by a later wait.
    pub(crate) fn run_stoppable<T: Send>(
        &mut self,
        stop: &AtomicBool,
        work: impl FnOnce() -> T + Send,
    ) -> T {
        std::thread::scope(|scope| {
            let (finished, done) = tokio::sync::oneshot::channel::<()>();
            let worker = scope.spawn(|| {
                let output = work();
                let _ = finished.send(());
                output
            });
            if self.wait_or(done).is_none() {
                stop.store(true, Ordering::Relaxed);
            }
            worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

pub(crate) fn run_foreground(data_dir: &Path, spec: &MountSpec, json: bool) -> Result<()> {
    crate::logging::init(crate::logging::FOREGROUND_FILTER);
    check_fuse_available()?;
    check_mount_point(&spec.dir)?;
    // The handlers are in place before the mount exists, so a signal that comes at any
    // moment after it unmounts instead of killing the process with the mount in place.
    let mut signals = StopSignals::catch()?;
    let store = crate::commands::open(data_dir, json)?;
    let mounted = mount(store.clone(), spec)?;
    let dir = spec.dir.display();
    match (mounted.tree().view(), json) {
        (view, true) => {
            let (lsn, time) = match view {
                TreeView::Writable => (None, None),
                TreeView::ReadOnly { lsn, time } => {
                    (Some(lsn.to_string()), time.as_ref().map(time_answer_json))
                }
            };
            let read_only = *view != TreeView::Writable;
            out!(
                "{}",
                json!({"branch": spec.branch, "dir": dir.to_string(), "read_only": read_only,
                       "write_through": mounted.write_through(), "lsn": lsn, "time": time})
            );
        }
        (TreeView::Writable, false) if mounted.write_through() => out!(
            "mounted branch {} at {dir} (writable, writes go through: no writeback cache)",
            spec.branch
        ),
        (TreeView::Writable, false) => out!("mounted branch {} at {dir} (writable)", spec.branch),
        (TreeView::ReadOnly { lsn, time: None }, false) => {
            out!("mounted branch {} at {dir} read-only at {lsn}", spec.branch);
        }
        (
            TreeView::ReadOnly {
                lsn,
                time: Some(answer),
            },
            false,
        ) => out!(
            "mounted branch {} at {dir} read-only at {lsn}: {}",
            spec.branch,
            describe_time_answer(answer)
        ),
    }
    let unmounter = mounted.unmounter();
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            signals.wait_or(std::future::pending::<()>());
            if let Err(error) = unmounter.unmount() {
                crate::output::warn_out!("pagefork: error: {error:#}");
            }
        })
        .context("cannot start the signal handler")?;
    mounted.wait()?;
    let covered = store.checkpoint()?;
    if !json {
        out!("unmounted {dir}; everything written is durable (checkpoint at {covered})");
    }
    Ok(())
}
