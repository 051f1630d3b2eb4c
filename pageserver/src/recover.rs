//! `pagefork recover [--salvage]`, and the line every command prints when opening a store
//! dropped a torn WAL tail.
//!
//! Without `--salvage` nothing changes on disk: the store is read as an open would read it
//! (its `pagefork.remote`, if it has one, then `Store::check_open`), strictly, and if that
//! fails, once more as a salvage would, so the
//! answer says what is damaged and exactly what salvage would discard. With `--salvage` the
//! log is cut at its last good record and the store opened: never silently, the report
//! names the damage, the LSN the log now ends at, and what went.

use std::path::Path;

use crate::output::out;
use anyhow::{Context, Result};
use pagefork_engine::{Config, RecoveryMode, RecoveryReport, Store};
use serde_json::{Value, json};

/// Exit code of `recover` when the store is damaged (and `--salvage` was not given).
const EXIT_DAMAGED: i32 = 1;

pub(crate) fn run(dir: &Path, salvage: bool, json: bool) -> Result<i32> {
    // Every command opens the store through the bucket its `pagefork.remote` names (its
    // evicted layers are read back from there): a damaged record stops them all, so it is
    // damage here too, which cutting the log cannot mend.
    if let Err(error) = pagefork_remote::recorded_location(dir) {
        return print_unsalvageable(
            json,
            &format!("{error:#}"),
            "salvage cannot help: restore pagefork.remote (it names the bucket that holds \
             this store's copy and evicted layers)",
        );
    }
    let evicted = evicted_layers(dir);
    // As every command opens it: evicted layers are in the bucket, not damage (a review
    // found a healthy store with evicted layers called damaged beyond salvage).
    // A metadata file damaged or missing is damage too, answered as such (with --json,
    // as JSON: a review found a plain error line instead).
    let (strict, _) = match crate::remote::open_config(dir, None, None) {
        Ok(config) => config,
        // No store there at all (a mistyped directory): an error, not damage.
        Err(error)
            if matches!(
                error.downcast_ref::<pagefork_engine::EngineError>(),
                Some(pagefork_engine::EngineError::NotAStore { .. })
            ) =>
        {
            return Err(error);
        }
        Err(error) => {
            return print_unsalvageable(
                json,
                &format!("cannot read the store in {}: {error:#}", dir.display()),
                "salvage cannot help: restore pagefork.meta from a backup (it records the \
                 page size and backend), or give the directory of a store",
            );
        }
    };
    let salvaging = Config {
        wal_recovery: RecoveryMode::SalvageToLastGood,
        ..strict.clone()
    };
    let damage = match Store::check_open(dir, strict) {
        // A torn tail: what a crash leaves, dropped by any open. Said as such, not as
        // clean: without a crash it is damage to the last record, which looks the same
        // (a review found a damaged acknowledged commit reported as "clean").
        Ok(report) if report.dropped_tail.is_some() => {
            print_answer(
                json,
                "torn_tail",
                None,
                (&report, evicted),
                "the store opens, dropping the torn tail listed above: a record being written when the process or the machine stopped, never acknowledged as durable. If nothing stopped, it is damage to the last record, which cannot be told apart",
            )?;
            return Ok(0);
        }
        Ok(report) => {
            print_answer(
                json,
                "clean",
                None,
                (&report, evicted),
                "the store opens; nothing to salvage",
            )?;
            return Ok(0);
        }
        // Not damage: another process has it open (a review was told a healthy store
        // in use could not be salvaged).
        Err(error) if crate::remote::is_held_by_another_process(&error) => {
            return Err(crate::remote::opening_error(dir, error));
        }
        Err(damage) => damage.to_string(),
    };
    // What salvage would find, changing nothing: damage it cannot mend (a damaged
    // layer) is answered before anything is cut (a review found "salvaged" answered for
    // a damaged layer, which the salvaging open does not read).
    let checked = Store::check_open(dir, salvaging.clone());
    if salvage && let Err(error) = &checked {
        return print_unsalvageable(json, &damage, &format!("salvage cannot help: {error}"));
    }
    if !salvage {
        return match checked {
            Ok(report) => {
                print_answer(
                    json,
                    "damaged",
                    Some(&damage),
                    (&report, evicted),
                    "`pagefork recover --salvage` would discard what is listed above and the store would open",
                )?;
                Ok(EXIT_DAMAGED)
            }
            Err(error) => {
                print_unsalvageable(json, &damage, &format!("salvage cannot help: {error}"))
            }
        };
    }
    // The cause follows once, after the context (it is the damage found above).
    let store = Store::open_with(dir, salvaging)
        .with_context(|| format!("salvage cannot open the store in {}", dir.display()))?;
    let report = store
        .recovery()
        .cloned()
        .context("an opened store has a recovery report")?;
    print_answer(
        json,
        "salvaged",
        Some(&damage),
        (&report, evicted),
        "salvaged: the store opens; what is listed above was discarded",
    )?;
    Ok(0)
}

/// Prints that the store is damaged in a way salvage cannot mend; returns the exit code.
fn print_unsalvageable(json: bool, damage: &str, summary: &str) -> Result<i32> {
    if json {
        out!(
            "{}",
            json!({"status": "unsalvageable", "damage": damage, "salvage": summary})
        );
    } else {
        out!("damaged: {damage}\n{summary}");
    }
    Ok(EXIT_DAMAGED)
}

/// Layer files evicted to the store's bucket: their eviction markers in `layers/`.
fn evicted_layers(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("layers")).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".evicted"))
            .count()
    })
}

/// Prints the answer: `evicted` layer files were not read (only their markers), which it
/// says (a review found a store whose evicted layers could not be read called clean).
fn print_answer(
    json: bool,
    status: &str,
    damage: Option<&str>,
    (report, evicted): (&RecoveryReport, usize),
    summary: &str,
) -> anyhow::Result<()> {
    if json {
        out!(
            "{}",
            json!({"status": status, "damage": damage, "wal": recovery_json(report),
                "evicted_layers_not_read": evicted, "summary": summary})
        );
        return Ok(());
    }
    if let Some(damage) = damage {
        out!("damaged: {damage}");
    }
    out!(
        "WAL: {} records from {} to {}",
        report.records,
        report.oldest,
        report.end
    );
    for line in discarded_lines(report, status == "salvaged") {
        out!("{line}");
    }
    out!("{summary}");
    if evicted > 0 {
        out!(
            "{} evicted to remote storage were not read, only their markers: `pagefork inspect store` reads them back and checks them",
            crate::output::counted(evicted as u64, "layer file")
        );
    }
    Ok(())
}

/// What recovery discarded, or (`done` false: a check that changed nothing) would, one
/// line each; none when nothing. (A review's check said "removed segment" of a segment it
/// had left in place.)
fn discarded_lines(report: &RecoveryReport, done: bool) -> Vec<String> {
    let (dropped, removed) = match done {
        true => ("dropped", "removed"),
        false => ("an open drops", "an open removes"),
    };
    let mut lines = Vec::new();
    if let Some(damage) = &report.salvaged_corruption {
        lines.push(format!("salvage cuts the log at {}: {damage}", report.end));
    }
    if let Some(tail) = &report.dropped_tail {
        // `to` is past the last non-zero byte, which can be short of where the record
        // ended; and the first frame is torn or damaged, so not counted (a review read
        // "0 whole records" of a damaged acknowledged commit as none dropped).
        lines.push(format!(
            "{dropped} from {}: {}..{} (to its last non-zero byte), {} bytes: a torn or damaged record, then {}",
            tail.segment.display(),
            tail.from,
            tail.to,
            tail.bytes,
            crate::output::counted(tail.records, "valid record"),
        ));
    }
    for segment in &report.removed_segments {
        lines.push(format!("{removed} segment {}", segment.display()));
    }
    lines
}

fn recovery_json(report: &RecoveryReport) -> Value {
    json!({
        "oldest": report.oldest.to_string(),
        "end": report.end.to_string(),
        "records": report.records,
        "dropped_bytes": report.dropped_bytes,
        "dropped_tail": report.dropped_tail.as_ref().map(|tail| json!({
            "segment": tail.segment.display().to_string(),
            "from": tail.from.to_string(),
            "to": tail.to.to_string(),
            "bytes": tail.bytes,
            "records": tail.records,
        })),
        "unsynced_records_dropped": report.unsynced_records_dropped,
        "removed_segments": report.removed_segments.iter().map(|path| path.display().to_string()).collect::<Vec<_>>(),
        "salvaged_corruption": report.salvaged_corruption,
    })
}

/// Tells a CLI user what opening the store dropped from the WAL's tail (a torn record a
/// crash left, never acknowledged as durable): one line on stderr, JSON with `--json`.
pub(crate) fn report_open(store: &Store, json: bool) {
    let Some(report) = store.recovery() else {
        return;
    };
    if report.dropped_tail.is_none() && report.removed_segments.is_empty() {
        return;
    }
    if json {
        crate::output::warn_out!("{}", json!({"recovery": recovery_json(report)}));
    } else {
        crate::output::warn_out!(
            "pagefork: recovery: {} (the log now ends at {})",
            discarded_lines(report, true).join("; "),
            report.end
        );
    }
}
