//! JSON views of the engine's answers: one shape per kind of answer, shared by the
//! command line's `--json` output and the HTTP API, so a script sees the same fields
//! either way. LSNs are `X/Y` strings, times RFC 3339, durations humantime (`1h 30m`).

use pagefork_engine::{
    BranchInfo, Commit, GcReport, HistoryEntry, Key, Lease, LsnForTime, PageDiff, RetainReason,
    StoreStats,
};
use serde_json::{Value, json};

/// A branch: everything `branch show` prints.
pub(crate) fn branch_json(info: &BranchInfo) -> Value {
    json!({
        "id": info.id.0,
        "name": info.name,
        "parent": info.parent.as_ref().map(|parent| parent.name.clone()),
        "parent_hidden": info.parent.as_ref().is_some_and(|parent| parent.hidden),
        "branch_point": info.parent.as_ref().map(|parent| parent.lsn.to_string()),
        "head": info.head.to_string(),
        "created": info.created.to_string(),
        "created_lsn": info.created_lsn.to_string(),
        "expires_at": info.expires_at.map(|time| time.to_string()),
        "protected": info.protected,
        "pitr_window": info.pitr_window.map(|window| humantime::format_duration(window).to_string()),
        "gc_cutoff": info.gc_cutoff.to_string(),
        "created_at_time": info.created_at_time.as_ref().map(time_answer_json),
        "kept_for": info.kept_for,
    })
}

/// How a time was resolved: requested, the commit it snapped to, the kind, how far back.
pub(crate) fn time_answer_json(answer: &LsnForTime) -> Value {
    json!({
        "requested": answer.requested.to_string(),
        "lsn": answer.lsn.to_string(),
        "commit_time": answer.commit_time.map(|time| time.to_string()),
        "kind": format!("{:?}", answer.kind).to_lowercase(),
        "snapped_back_us": answer.snapped_back().map(|back| back.as_micros() as u64),
    })
}

/// A commit's LSN and time.
pub(crate) fn commit_json(commit: &Commit) -> Value {
    json!({"lsn": commit.lsn.to_string(), "time": commit.time.to_string()})
}

/// One entry of the branch-graph history.
pub(crate) fn entry_json(entry: &HistoryEntry) -> Value {
    json!({
        "lsn": entry.lsn.to_string(),
        "time": entry.time.to_string(),
        "operation": entry.operation.to_string(),
        "branch": entry.branch,
        "branch_id": entry.branch_id.0,
        "details": entry.details,
    })
}

fn keys_json(keys: &[Key]) -> Vec<Value> {
    keys.iter()
        .map(|key| json!({"rel": key.rel, "block": key.block}))
        .collect()
}

/// The pages that differ between two states, and counts per relation.
pub(crate) fn diff_json(from: &str, to: &str, diff: &PageDiff) -> Value {
    let relations: serde_json::Map<String, Value> = diff
        .by_relation()
        .iter()
        .map(|(rel, counts)| {
            (
                rel.to_string(),
                json!({"added": counts.added, "removed": counts.removed, "changed": counts.changed}),
            )
        })
        .collect();
    json!({
        "from": from, "from_lsn": diff.from_lsn.to_string(),
        "to": to, "to_lsn": diff.to_lsn.to_string(),
        "added": keys_json(&diff.added), "removed": keys_json(&diff.removed),
        "changed": keys_json(&diff.changed), "by_relation": relations,
        "keys_compared": diff.keys_compared,
    })
}

/// Why GC kept a state, in words.
pub(crate) fn describe_retain_reason(reason: &RetainReason) -> String {
    match reason {
        RetainReason::BranchPoint { child } => format!("branch {child:?}"),
        RetainReason::Lease { branch, until } => format!("a lease on {branch:?} until {until}"),
    }
}

/// What one GC run removed and wrote, per branch, and why the rest stayed.
pub(crate) fn gc_report_json(report: &GcReport) -> Value {
    let branches: Vec<Value> = report
        .branches
        .iter()
        .map(|branch| {
            let retained: Vec<Value> = branch
                .retained
                .iter()
                .map(|point| {
                    json!({"lsn": point.lsn.to_string(), "why": describe_retain_reason(&point.reason)})
                })
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

/// A lease.
pub(crate) fn lease_json(lease: &Lease) -> Value {
    json!({
        "branch": lease.branch,
        "lsn": lease.lsn.to_string(),
        "expires_at": lease.expires_at.to_string(),
    })
}

/// The store's counters since it was opened.
pub(crate) fn stats_json(stats: &StoreStats) -> Value {
    json!({
        "backend": stats.backend.name(),
        "layers": {"l0": stats.layers_l0, "l1": stats.layers_l1, "image": stats.layers_image},
        "rocksdb_bytes": stats.rocksdb_bytes,
        "unflushed_bytes": stats.memory_bytes,
        "flushes": stats.flushes,
        "merges": stats.compactions,
        "images_written": stats.images_written,
        "page_reads": stats.page_reads,
        "cache_hits": stats.cache_hits,
        "cache_misses": stats.cache_misses,
        "gc_runs": stats.gc_runs,
        "gc_bytes_removed": stats.gc_bytes_removed,
        "wal_end": stats.wal_end.to_string(),
    })
}
