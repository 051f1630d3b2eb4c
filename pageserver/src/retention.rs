//! The retention commands: `gc` (run GC now and report what went and why the rest
//! stayed), `lease` (keep a state from GC for a while, or list leases) and `branch
//! set-pitr-window`. Each is one engine call; refusals come back as the engine's error,
//! one line, and change nothing.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use pagefork_engine::Lsn;
use serde_json::Value;

use crate::commands::open;
use crate::output::{counted, out};
use crate::views::{describe_retain_reason, gc_report_json, lease_json};

/// `pagefork gc`.
pub(crate) fn gc(dir: &Path, json: bool) -> Result<()> {
    let store = open(dir, json)?;
    let report = store.gc()?;
    if json {
        out!("{}", gc_report_json(&report));
        return Ok(());
    }
    out!(
        "removed {}, {} ({}); wrote {} ({})",
        counted(report.versions_removed, "page version"),
        counted(report.layers_removed as u64, "layer file"),
        counted(report.bytes_removed, "byte"),
        counted(report.layers_written as u64, "layer file"),
        counted(report.bytes_written, "byte")
    );
    for branch in &report.branches {
        let kind = if branch.unreadable {
            " (old state or expired: keeps its head, what its children read through it, and retain points)"
        } else {
            ""
        };
        out!(
            "{} ({}){kind}: cutoff {}, {} of {} versions at or below it removed",
            branch.name,
            branch.id,
            branch.cutoff,
            branch.versions_removed,
            branch.versions_examined
        );
        for point in &branch.retained {
            out!(
                "  keeps {} for {}",
                point.lsn,
                describe_retain_reason(&point.reason)
            );
        }
    }
    Ok(())
}

/// `pagefork lease [BRANCH LSN --for D]`.
pub(crate) fn lease(
    dir: &Path,
    target: Option<(&str, Lsn)>,
    duration: Duration,
    json: bool,
) -> Result<()> {
    let store = open(dir, json)?;
    let leases = match target {
        Some((branch, lsn)) => vec![store.lease(branch, lsn, duration)?],
        None => store.leases(),
    };
    if json {
        let values: Vec<Value> = leases.iter().map(lease_json).collect();
        out!("{}", Value::Array(values));
        return Ok(());
    }
    for lease in &leases {
        out!(
            "{} at {} kept until {}",
            lease.branch,
            lease.lsn,
            lease.expires_at
        );
    }
    Ok(())
}
