//! `pagefork sync --remote`, `pagefork attach` and `pagefork remote scrub`: the command
//! line's remote storage
//! (the `pagefork-remote` crate does the work; docs/remote.md has the layout and rules).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use pagefork_engine::Store;
use pagefork_remote::{RemoteLocation, Uploader};
use serde_json::json;

use crate::output::out;

/// `pagefork sync --remote URL`: one sync of the store in `dir`.
pub(crate) fn sync(dir: &Path, url: &str, endpoint: Option<&str>, json: bool) -> Result<()> {
    let location = RemoteLocation::parse(url, endpoint)?;
    let store = crate::commands::open(dir, json)?;
    let report = Uploader::connect(&location, &store)
        .and_then(|mut uploader| uploader.sync(&store))
        .with_context(|| format!("cannot sync the store in {} to {url}", dir.display()))?;
    if json {
        out!(
            "{}",
            json!({
                "location": report.location,
                "generation": report.generation,
                "recovery_point": report.recovery_point.to_string(),
                "uploaded_objects": report.uploaded_objects,
                "uploaded_bytes": report.uploaded_bytes,
                "deleted_objects": report.deleted_objects,
                "deletions_pending": report.deletions_pending,
                "layers": report.layers,
                "wal_segments": report.wal_segments,
                "elapsed_ms": report.elapsed.as_millis() as u64,
            })
        );
    } else {
        out!(
            "synced to {} (generation {}): recovery point {}; uploaded {} objects, {} bytes, in {} ms; the index lists {} layer files and {} WAL segments",
            report.location,
            report.generation,
            report.recovery_point,
            report.uploaded_objects,
            report.uploaded_bytes,
            report.elapsed.as_millis(),
            report.layers,
            report.wal_segments
        );
    }
    Ok(())
}

/// `pagefork attach --remote URL [--no-claim]`: rebuilds the store in `dir`, then opens it
/// to check it.
pub(crate) fn attach(
    dir: &Path,
    url: &str,
    endpoint: Option<&str>,
    no_claim: bool,
    json: bool,
) -> Result<()> {
    let location = RemoteLocation::parse(url, endpoint)?;
    let attached = if no_claim {
        pagefork_remote::attach_without_claim(&location, dir)
    } else {
        pagefork_remote::attach(&location, dir)
    };
    let report = attached.with_context(|| format!("cannot attach {url} in {}", dir.display()))?;
    let store = Store::open(dir).with_context(|| {
        format!(
            "the store attached in {} does not open (its files stay there for inspection)",
            dir.display()
        )
    })?;
    let branches = store.branch_count();
    if json {
        out!(
            "{}",
            json!({
                "location": report.location,
                "from_generation": report.from_generation,
                "generation": report.generation,
                "recovery_point": report.recovery_point.to_string(),
                "downloaded_objects": report.downloaded_objects,
                "downloaded_bytes": report.downloaded_bytes,
                "branches": branches,
                "elapsed_ms": report.elapsed.as_millis() as u64,
            })
        );
    } else {
        out!(
            "attached {} in {} ({}, from generation {}'s index): {} branches, every commit up to {}; downloaded {} objects, {} bytes, in {} ms",
            report.location,
            dir.display(),
            report.generation.map_or_else(
                || "no generation claimed: a copy to inspect".to_owned(),
                |generation| format!("generation {generation}")
            ),
            report.from_generation,
            branches,
            report.recovery_point,
            report.downloaded_objects,
            report.downloaded_bytes,
            report.elapsed.as_millis()
        );
    }
    Ok(())
}

/// `pagefork remote scrub`: the objects no index lists, removed unless `dry_run`.
pub(crate) fn scrub(
    url: &str,
    endpoint: Option<&str>,
    min_age: Duration,
    dry_run: bool,
    json: bool,
) -> Result<()> {
    let location = RemoteLocation::parse(url, endpoint)?;
    let report = pagefork_remote::scrub(&location, min_age, !dry_run)
        .with_context(|| format!("cannot scrub {url}"))?;
    if json {
        out!(
            "{}",
            json!({
                "location": report.location,
                "index_generation": report.index_generation,
                "listed": report.listed,
                "unlisted": report.unlisted,
                "kept_young_or_newer": report.kept,
                "removed": report.removed,
            })
        );
        return Ok(());
    }
    for key in &report.unlisted {
        out!("{key}");
    }
    out!(
        "{} objects no index lists{}; {} listed by generation {}'s index; {} unlisted kept (younger than {} or of a newer generation)",
        report.unlisted.len(),
        if report.removed {
            ", removed"
        } else {
            " (dry run: nothing removed)"
        },
        report.listed,
        report
            .index_generation
            .map_or_else(|| "no".to_owned(), |g| g.to_string()),
        report.kept,
        humantime::format_duration(min_age)
    );
    Ok(())
}
