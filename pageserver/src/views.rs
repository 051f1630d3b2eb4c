//! The views of the engine's answers: one typed shape per kind of answer, shared by the
//! command line's `--json` output and the HTTP API (whose OpenAPI document is generated
//! from these very types), so a script sees the same fields either way and the document
//! cannot drift from what is sent. LSNs are `X/Y` strings, times RFC 3339, durations
//! as the API's grammar reads them (`36h`, `1d 12h`: `serve::params::duration_text`).

use std::collections::BTreeMap;

use pagefork_engine::{
    BranchInfo, Commit, GcReport, HistoryEntry, Key, Lease, LsnForTime, PageDiff, RetainReason,
    StoreStats,
};
use pagefork_files::{FileChange, TreeDiff};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// `view` as a JSON value, for the command line's `--json` output. These views hold only
/// strings, numbers and string-keyed maps, which always serialize.
pub(crate) fn to_json(view: &impl Serialize) -> Value {
    serde_json::to_value(view).unwrap_or_default()
}

/// A branch: everything `branch show` prints.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BranchView {
    /// The branch's id (stable across renames).
    id: u64,
    name: String,
    /// The parent's name; `null` for a root or a detached branch.
    parent: Option<String>,
    /// Whether the parent is an old state of a branch (kept only for this one).
    parent_hidden: bool,
    /// The LSN it branched at.
    branch_point: Option<String>,
    /// Its latest state.
    head: String,
    /// When it was created.
    created: String,
    /// The LSN of its creation record.
    created_lsn: String,
    /// When it expires; `null` if never.
    expires_at: Option<String>,
    protected: bool,
    /// Its own PITR window; `null`: the store's default.
    pitr_window: Option<String>,
    /// The oldest LSN it can still be read at.
    gc_cutoff: String,
    /// For a branch made at a time: what that time resolved to.
    created_at_time: Option<TimeAnswerView>,
    /// For an expired branch kept for its descendants: which.
    kept_for: Vec<String>,
}

impl BranchView {
    pub(crate) fn of(info: &BranchInfo) -> BranchView {
        BranchView {
            id: info.id.0,
            name: info.name.clone(),
            parent: info.parent.as_ref().map(|parent| parent.name.clone()),
            parent_hidden: info.parent.as_ref().is_some_and(|parent| parent.hidden),
            branch_point: info.parent.as_ref().map(|parent| parent.lsn.to_string()),
            head: info.head.to_string(),
            created: info.created.to_string(),
            created_lsn: info.created_lsn.to_string(),
            expires_at: info.expires_at.map(|time| time.to_string()),
            protected: info.protected,
            pitr_window: info.pitr_window.map(crate::serve::params::duration_text),
            gc_cutoff: info.gc_cutoff.to_string(),
            created_at_time: info.created_at_time.as_ref().map(TimeAnswerView::of),
            kept_for: info.kept_for.clone(),
        }
    }
}

/// A branch as JSON (`branch show --json`).
pub(crate) fn branch_json(info: &BranchInfo) -> Value {
    to_json(&BranchView::of(info))
}

/// How a time was resolved: requested, the commit it snapped to, the kind, how far back.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TimeAnswerView {
    requested: String,
    lsn: String,
    /// The commit it snapped to; `null` if none is at or before the time.
    commit_time: Option<String>,
    /// `present` (snapped to a commit), `future` (after the last commit: the head),
    /// `past` (before the history) or `nodata` (no commits).
    #[schema(pattern = "^(present|future|past|nodata)$")]
    kind: String,
    /// How far back from the requested time, in microseconds.
    snapped_back_us: Option<u64>,
}

impl TimeAnswerView {
    pub(crate) fn of(answer: &LsnForTime) -> TimeAnswerView {
        TimeAnswerView {
            requested: answer.requested.to_string(),
            lsn: answer.lsn.to_string(),
            commit_time: answer.commit_time.map(|time| time.to_string()),
            kind: time_kind_name(answer.kind),
            snapped_back_us: answer
                .snapped_back()
                .map(|back| u64::try_from(back.as_micros()).unwrap_or(u64::MAX)),
        }
    }
}

/// A time answer as JSON.
pub(crate) fn time_answer_json(answer: &LsnForTime) -> Value {
    to_json(&TimeAnswerView::of(answer))
}

/// A commit's LSN and time.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CommitView {
    lsn: String,
    time: String,
}

impl CommitView {
    pub(crate) fn of(commit: &Commit) -> CommitView {
        CommitView {
            lsn: commit.lsn.to_string(),
            time: commit.time.to_string(),
        }
    }
}

/// A commit as JSON.
pub(crate) fn commit_json(commit: &Commit) -> Value {
    to_json(&CommitView::of(commit))
}

/// One entry of the branch-graph history.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HistoryEntryView {
    lsn: String,
    time: String,
    operation: String,
    branch: String,
    branch_id: u64,
    details: String,
}

impl HistoryEntryView {
    pub(crate) fn of(entry: &HistoryEntry) -> HistoryEntryView {
        HistoryEntryView {
            lsn: entry.lsn.to_string(),
            time: entry.time.to_string(),
            operation: entry.operation.to_string(),
            branch: entry.branch.clone(),
            branch_id: entry.branch_id.0,
            details: entry.details.clone(),
        }
    }
}

/// A history entry as JSON.
pub(crate) fn entry_json(entry: &HistoryEntry) -> Value {
    to_json(&HistoryEntryView::of(entry))
}

/// A page's key.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeyView {
    rel: u32,
    block: u32,
}

fn keys(keys: &[Key]) -> Vec<KeyView> {
    keys.iter()
        .map(|key| KeyView {
            rel: key.rel,
            block: key.block,
        })
        .collect()
}

/// How many pages of one relation differ.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RelationCountsView {
    added: u64,
    removed: u64,
    changed: u64,
}

/// The pages that differ between two states, and counts per relation.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DiffView {
    from: String,
    from_lsn: String,
    to: String,
    to_lsn: String,
    added: Vec<KeyView>,
    removed: Vec<KeyView>,
    changed: Vec<KeyView>,
    /// By relation number (as a string).
    by_relation: BTreeMap<String, RelationCountsView>,
    keys_compared: u64,
}

impl DiffView {
    pub(crate) fn of(from: &str, to: &str, diff: &PageDiff) -> DiffView {
        DiffView {
            from: from.to_owned(),
            from_lsn: diff.from_lsn.to_string(),
            to: to.to_owned(),
            to_lsn: diff.to_lsn.to_string(),
            added: keys(&diff.added),
            removed: keys(&diff.removed),
            changed: keys(&diff.changed),
            by_relation: diff
                .by_relation()
                .iter()
                .map(|(rel, counts)| {
                    let view = RelationCountsView {
                        added: counts.added as u64,
                        removed: counts.removed as u64,
                        changed: counts.changed as u64,
                    };
                    (rel.to_string(), view)
                })
                .collect(),
            keys_compared: diff.keys_compared as u64,
        }
    }
}

/// A diff told as files: paths added, removed and changed between two states of file
/// trees (`pagefork mount`), each in path order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FileDiffView {
    from: String,
    from_lsn: String,
    to: String,
    to_lsn: String,
    added: Vec<FileChangeView>,
    removed: Vec<FileChangeView>,
    changed: Vec<FileChangeView>,
}

/// One path that differs.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FileChangeView {
    /// From the tree's root, `/`-separated.
    path: String,
    /// "file", "directory", "symlink", "fifo", "socket", "character device" or "block
    /// device" (in the second state; the first for a removed path).
    kind: &'static str,
    /// Its size in the second state (the first, for a removed path).
    bytes: u64,
    /// Its size in the first state, for a changed path.
    previous_bytes: Option<u64>,
    /// For a changed path, what differs: "kind", "content" (its pages), "size", "mode",
    /// "owner" (owner or group), "mtime" or "device"; empty for one added or removed.
    differences: Vec<&'static str>,
}

impl FileDiffView {
    pub(crate) fn of(from: &str, to: &str, pages: &PageDiff, files: &TreeDiff) -> FileDiffView {
        let list = |changes: &[FileChange]| {
            changes
                .iter()
                .map(|change| FileChangeView {
                    path: change.path.clone(),
                    kind: change.kind.name(),
                    bytes: change.bytes,
                    previous_bytes: change.previous_bytes,
                    differences: change.differences.iter().map(|d| d.name()).collect(),
                })
                .collect()
        };
        FileDiffView {
            from: from.to_owned(),
            from_lsn: pages.from_lsn.to_string(),
            to: to.to_owned(),
            to_lsn: pages.to_lsn.to_string(),
            added: list(&files.added),
            removed: list(&files.removed),
            changed: list(&files.changed),
        }
    }
}

/// A diff as JSON.
pub(crate) fn diff_json(from: &str, to: &str, diff: &PageDiff) -> Value {
    to_json(&DiffView::of(from, to, diff))
}

/// Why GC kept a state, in words.
pub(crate) fn describe_retain_reason(reason: &RetainReason) -> String {
    match reason {
        RetainReason::BranchPoint { child } => format!("branch {child:?}"),
        RetainReason::Lease { branch, until } => format!("a lease on {branch:?} until {until}"),
        RetainReason::Held { branch, holder } => format!("{holder} (branch {branch:?})"),
    }
}

/// A state GC kept, and why.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RetainedView {
    lsn: String,
    why: String,
}

/// What GC did on one branch.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BranchGcView {
    branch: String,
    id: u64,
    unreadable: bool,
    cutoff: String,
    versions_examined: u64,
    versions_removed: u64,
    layers_removed: u64,
    bytes_removed: u64,
    retained: Vec<RetainedView>,
}

/// What one GC run removed and wrote, per branch, and why the rest stayed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GcReportView {
    versions_removed: u64,
    layers_removed: u64,
    bytes_removed: u64,
    layers_written: u64,
    bytes_written: u64,
    branches: Vec<BranchGcView>,
}

impl GcReportView {
    pub(crate) fn of(report: &GcReport) -> GcReportView {
        let branches = report
            .branches
            .iter()
            .map(|branch| BranchGcView {
                branch: branch.name.clone(),
                id: branch.id.0,
                unreadable: branch.unreadable,
                cutoff: branch.cutoff.to_string(),
                versions_examined: branch.versions_examined,
                versions_removed: branch.versions_removed,
                layers_removed: branch.layers_removed as u64,
                bytes_removed: branch.bytes_removed,
                retained: branch
                    .retained
                    .iter()
                    .map(|point| RetainedView {
                        lsn: point.lsn.to_string(),
                        why: describe_retain_reason(&point.reason),
                    })
                    .collect(),
            })
            .collect();
        GcReportView {
            versions_removed: report.versions_removed,
            layers_removed: report.layers_removed as u64,
            bytes_removed: report.bytes_removed,
            layers_written: report.layers_written as u64,
            bytes_written: report.bytes_written,
            branches,
        }
    }
}

/// A GC report as JSON.
pub(crate) fn gc_report_json(report: &GcReport) -> Value {
    to_json(&GcReportView::of(report))
}

/// A lease.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LeaseView {
    branch: String,
    lsn: String,
    expires_at: String,
}

impl LeaseView {
    pub(crate) fn of(lease: &Lease) -> LeaseView {
        LeaseView {
            branch: lease.branch.clone(),
            lsn: lease.lsn.to_string(),
            expires_at: lease.expires_at.to_string(),
        }
    }
}

/// A lease as JSON.
pub(crate) fn lease_json(lease: &Lease) -> Value {
    to_json(&LeaseView::of(lease))
}

/// Layer files by kind.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LayerCountsView {
    l0: u64,
    l1: u64,
    image: u64,
}

/// The store's counters since it was opened.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatsView {
    backend: String,
    layers: LayerCountsView,
    rocksdb_bytes: u64,
    unflushed_bytes: u64,
    flushes: u64,
    merges: u64,
    images_written: u64,
    page_reads: u64,
    cache_hits: u64,
    cache_misses: u64,
    gc_runs: u64,
    gc_bytes_removed: u64,
    wal_end: String,
    /// WAL records appended since the store was opened.
    wal_records: u64,
    /// WAL fsyncs since then: concurrent commits share them.
    wal_fsyncs: u64,
}

impl StatsView {
    pub(crate) fn of(stats: &StoreStats) -> StatsView {
        StatsView {
            backend: stats.backend.name().to_owned(),
            layers: LayerCountsView {
                l0: stats.layers_l0,
                l1: stats.layers_l1,
                image: stats.layers_image,
            },
            rocksdb_bytes: stats.rocksdb_bytes,
            unflushed_bytes: stats.memory_bytes,
            flushes: stats.flushes,
            merges: stats.compactions,
            images_written: stats.images_written,
            page_reads: stats.page_reads,
            cache_hits: stats.cache_hits,
            cache_misses: stats.cache_misses,
            gc_runs: stats.gc_runs,
            gc_bytes_removed: stats.gc_bytes_removed,
            wal_end: stats.wal_end.to_string(),
            wal_records: stats.wal_records,
            wal_fsyncs: stats.wal_fsyncs,
        }
    }
}

/// The counters as JSON.
pub(crate) fn stats_json(stats: &StoreStats) -> Value {
    to_json(&StatsView::of(stats))
}

/// How a time was resolved, as answers write it: `present`, `future`, `past`, `nodata`.
pub(crate) fn time_kind_name(kind: pagefork_engine::TimeKind) -> String {
    format!("{kind:?}").to_lowercase()
}
