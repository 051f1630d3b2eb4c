//! `pagefork endpoint start`: the foreground command. Mounts the branch (at `--mount` or
//! a fresh directory), starts Postgres on it, prints how to connect once it accepts
//! connections, and on SIGTERM or SIGINT stops it (fast shutdown), unmounts and
//! checkpoints. Nothing is started before everything it can check was checked (FUSE,
//! the mount point, Postgres' programs and user, the port).

use std::path::Path;

use anyhow::{Context, Result};
use pagefork_engine::At;
use tokio::signal::unix::{SignalKind, signal};

use super::registry::Started;
use super::view::StartedEndpoint;
use super::{EndpointSpec, PgBin, Place};
use crate::mount::{MountSpec, check_fuse_available, check_mount_point, mount};
use crate::output::out;
use crate::views::to_json;

pub(crate) fn run_foreground(
    data_dir: &Path,
    branch: &str,
    mount_at: Option<&Path>,
    spec: &EndpointSpec,
    json: bool,
) -> Result<()> {
    check_fuse_available()?;
    PgBin::find(spec.pg_bin.as_deref())?;
    let place = match mount_at {
        Some(dir) => {
            check_mount_point(dir)?;
            Place::given(dir)
        }
        None => Place::temporary()?,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal handler")?;
    let (mut interrupt, mut terminate) = {
        let _context = runtime.enter();
        (
            signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        )
    };
    let store = crate::commands::open(data_dir, json)?;
    let created_at = store.branch_info(branch)?.created_at_time;
    let mount_spec = MountSpec {
        branch: branch.to_owned(),
        dir: place.mount_dir.clone(),
        read_only: false,
        at: At::Latest,
    };
    let mounted = mount(store.clone(), &mount_spec)?;
    let server = match super::start(branch, &place.mount_dir, &place.log, spec) {
        Ok(server) => server,
        Err(error) => {
            mounted.unmounter().unmount()?;
            mounted.wait()?;
            return Err(error.into());
        }
    };
    let started = Started {
        info: server.info(),
        last_commit_time: server.last_commit_time(),
    };
    let view = StartedEndpoint::of(&started, created_at.as_ref());
    if json {
        out!("{}", to_json(&view));
    } else {
        out!(
            "endpoint on branch {branch} accepts connections: {} (ready in {} ms{}; log {})",
            started.info.connection_string(),
            started.info.ready_after.as_millis(),
            if started.info.initialized {
                ", initdb ran"
            } else {
                ""
            },
            started.info.log.display()
        );
        if let Some(answer) = &created_at {
            out!(
                "branch {branch} was created at {}; last visible transaction committed {}",
                crate::commands::describe_time_answer(answer),
                started
                    .last_commit_time
                    .as_deref()
                    .unwrap_or("(none with a commit timestamp)")
            );
        }
    }
    let mut server = server;
    let exited = runtime.block_on(async {
        let mut poll = tokio::time::interval(std::time::Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = interrupt.recv() => return None,
                _ = terminate.recv() => return None,
                _ = poll.tick() => {
                    if let Some(status) = server.exited() {
                        return Some(status);
                    }
                }
            }
        }
    });
    if let Some(status) = exited {
        // Postgres ended on its own: say so, and leave the branch unmounted and durable.
        let log = server.log_tail();
        mounted.unmounter().unmount()?;
        mounted.wait()?;
        store.checkpoint()?;
        anyhow::bail!(
            "Postgres on branch {branch} exited by itself ({status}); the end of its log:\n{log}"
        );
    }
    let stopped = server.stop();
    mounted.unmounter().unmount()?;
    mounted.wait()?;
    stopped?;
    let covered = store.checkpoint()?;
    if !json {
        out!("endpoint stopped; branch {branch} unmounted and durable (checkpoint at {covered})");
    }
    Ok(())
}
