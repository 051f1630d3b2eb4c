//! `pagefork mount`: the foreground command. Checks everything it can before it opens the
//! store, mounts, prints what it shows (and, for a time, what the time snapped to), and
//! on SIGTERM or SIGINT unmounts; an external `umount` ends it too. Either way it exits
//! only once everything written through the mount is durable and checkpointed.

use std::path::Path;

use anyhow::{Context, Result};
use pagefork_files::TreeView;
use serde_json::json;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::{MountSpec, check_fuse_available, check_mount_point, mount};
use crate::commands::describe_time_answer;
use crate::output::out;
use crate::views::time_answer_json;

/// A runtime to wait on, and SIGINT and SIGTERM caught from now on (a foreground
/// command's way to end cleanly).
pub(crate) fn stop_signals() -> Result<(tokio::runtime::Runtime, Signal, Signal)> {
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
    Ok((runtime, interrupt, terminate))
}

pub(crate) fn run_foreground(data_dir: &Path, spec: &MountSpec, json: bool) -> Result<()> {
    crate::logging::init(crate::logging::FOREGROUND_FILTER);
    check_fuse_available()?;
    check_mount_point(&spec.dir)?;
    // The handlers are in place before the mount exists, so a signal that comes at any
    // moment after it unmounts instead of killing the process with the mount in place.
    let (runtime, mut interrupt, mut terminate) = stop_signals()?;
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
                       "lsn": lsn, "time": time})
            );
        }
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
            runtime.block_on(async {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            });
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
