//! The retention commands: `gc` (run GC now and report what went and why the rest
//! stayed), `lease` (keep a state from GC for a while, or list leases) and `branch
//! set-pitr-window`. Each is one engine call; refusals come back as the engine's error,
//! one line, and change nothing.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use pagefork_engine::{GcReport, Lease, Lsn, RetainReason};
use serde_json::{Value, json};

use crate::commands::open;

/// `pagefork gc`.
pub(crate) fn gc(dir: &Path, json: bool) -> Result<()> {
    let store = open(dir)?;
    let report = store.gc()?;
    if json {
        println!("{}", report_json(&report));
        return Ok(());
    }
    println!(
        "removed {} page versions, {} layer files ({} bytes); wrote {} layer files ({} bytes)",
        report.versions_removed,
        report.layers_removed,
        report.bytes_removed,
        report.layers_written,
        report.bytes_written
    );
    for branch in &report.branches {
        let kind = if branch.unreadable {
            " (old state or expired: keeps only its head and retain points)"
        } else {
            ""
        };
        println!(
            "{} ({}){kind}: cutoff {}, {} of {} versions at or below it removed",
            branch.name,
            branch.id,
            branch.cutoff,
            branch.versions_removed,
            branch.versions_examined
        );
        for point in &branch.retained {
            println!("  keeps {} for {}", point.lsn, describe(&point.reason));
        }
    }
    Ok(())
}

fn describe(reason: &RetainReason) -> String {
    match reason {
        RetainReason::BranchPoint { child } => format!("branch {child:?}"),
        RetainReason::Lease { branch, until } => format!("a lease on {branch:?} until {until}"),
    }
}

fn report_json(report: &GcReport) -> Value {
    let branches: Vec<Value> = report
        .branches
        .iter()
        .map(|branch| {
            let retained: Vec<Value> = branch
                .retained
                .iter()
                .map(|point| json!({"lsn": point.lsn.to_string(), "why": describe(&point.reason)}))
                .collect();
            json!({
                "branch": branch.name,
                "id": branch.id.0,
                "unreadable": branch.unreadable,
                "cutoff": branch.cutoff.to_string(),
                "versions_examined": branch.versions_examined,
                "versions_removed": branch.versions_removed,
                "layers_removed": branch.layers_removed,
                "bytes_removed": branch.bytes_removed,
                "retained": retained,
            })
        })
        .collect();
    json!({
        "versions_removed": report.versions_removed,
        "layers_removed": report.layers_removed,
        "bytes_removed": report.bytes_removed,
        "layers_written": report.layers_written,
        "bytes_written": report.bytes_written,
        "branches": branches,
    })
}

/// `pagefork lease [BRANCH LSN --for D]`.
pub(crate) fn lease(
    dir: &Path,
    target: Option<(&str, Lsn)>,
    duration: Duration,
    json: bool,
) -> Result<()> {
    let store = open(dir)?;
    let leases = match target {
        Some((branch, lsn)) => vec![store.lease(branch, lsn, duration)?],
        None => store.leases(),
    };
    if json {
        let values: Vec<Value> = leases.iter().map(lease_json).collect();
        println!("{}", Value::Array(values));
        return Ok(());
    }
    for lease in &leases {
        println!(
            "{} at {} kept until {}",
            lease.branch, lease.lsn, lease.expires_at
        );
    }
    Ok(())
}

fn lease_json(lease: &Lease) -> Value {
    json!({
        "branch": lease.branch,
        "lsn": lease.lsn.to_string(),
        "expires_at": lease.expires_at.to_string(),
    })
}
