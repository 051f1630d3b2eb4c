//! `pagefork sync --remote`, `pagefork attach` and `pagefork remote scrub`: the command
//! line's remote storage (the `pagefork-remote` crate does the work; docs/remote.md has the
//! layout and rules); and how every command opens a store whose local disk is a cache of
//! its location (`open_store`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use pagefork_engine::{Config, LayerCacheConfig, LayerCacheStats, Store};
use pagefork_remote::{RemoteLayers, RemoteLocation, Uploader};
use serde_json::{Value, json};

use crate::output::{counted, out};

/// Opens the store in `dir`. A store copied to remote storage (to `location`, or else to
/// the one its `pagefork.remote` file records) opens with a layer cache reading evicted
/// layer files back from there, evicting down to `budget` if given; the source is returned
/// for the uploader, which tells it what the location holds. A store never copied opens
/// as always.
pub(crate) fn open_store(
    dir: &Path,
    location: Option<&RemoteLocation>,
    budget: Option<u64>,
) -> Result<(Store, Option<Arc<RemoteLayers>>)> {
    let cannot_open = || format!("cannot open the store in {}", dir.display());
    let (config, source) = open_config(dir, location, budget).with_context(cannot_open)?;
    let store = Store::open_with(dir, config).map_err(|error| opening_error(dir, error))?;
    Ok((store, source))
}

/// `error`, from opening the store in `dir`, as a command says it: when another process
/// holds the store, with what to do about it.
pub(crate) fn opening_error(dir: &Path, error: pagefork_engine::EngineError) -> anyhow::Error {
    let held = is_held_by_another_process(&error);
    let error = anyhow::Error::new(error);
    match held {
        // Which endpoint commands hold it, when their run files say (found by a review:
        // a restore refused while a foreground endpoint ran said only "another process").
        true => match crate::endpoint::runfile::holders(dir) {
            Some(holders) => error.context(format!("{HELD_BY_ANOTHER_PROCESS}; {holders}")),
            None => error.context(HELD_BY_ANOTHER_PROCESS),
        },
        false => error,
    }
    .context(format!("cannot open the store in {}", dir.display()))
}

/// Whether opening failed because another process holds the store (its log's lock).
pub(crate) fn is_held_by_another_process(error: &pagefork_engine::EngineError) -> bool {
    matches!(
        error,
        pagefork_engine::EngineError::Wal(pagefork_engine::WalError::Locked { .. })
    )
}

/// What a command refused because another process holds the store is told to do.
const HELD_BY_ANOTHER_PROCESS: &str = "another pagefork process has this store open (a `pagefork mount`, `endpoint start` or `serve`): stop it first; to work on a store while its branches are mounted, serve it as a project (`pagefork serve` serves the stores in DATA_DIR/projects/NAME) and use the HTTP API";

/// How the store in `dir` opens: with its evicted layers read back from `location`, or
/// else from the location its `pagefork.remote` records, if any (and that source).
pub(crate) fn open_config(
    dir: &Path,
    location: Option<&RemoteLocation>,
    budget: Option<u64>,
) -> Result<(Config, Option<Arc<RemoteLayers>>)> {
    let config = Config::of_store(dir)?;
    let location = match location {
        Some(location) => Some(location.clone()),
        None => pagefork_remote::recorded_location(dir)?,
    };
    let Some(location) = location else {
        return Ok((config, None));
    };
    let source = RemoteLayers::new(&location);
    let config = Config {
        layer_cache: Some(LayerCacheConfig {
            source: Arc::clone(&source) as Arc<dyn pagefork_engine::LayerSource>,
            budget_bytes: budget,
        }),
        ..config
    };
    Ok((config, Some(source)))
}

/// The layer cache's figures as JSON (`null` without a cache).
pub(crate) fn layer_cache_json(stats: Option<LayerCacheStats>) -> Value {
    match stats {
        None => Value::Null,
        Some(stats) => json!({
            "budget_bytes": stats.budget_bytes,
            "resident_bytes": stats.resident_bytes,
            "resident_layers": stats.resident_layers,
            "evicted_layers": stats.evicted_layers,
            "downloads": stats.downloads,
            "downloaded_bytes": stats.downloaded_bytes,
            "evictions": stats.evictions,
        }),
    }
}

/// The layer cache in a line of text.
pub(crate) fn describe_layer_cache(cache: &LayerCacheStats) -> String {
    format!(
        "layer files on local disk: {} ({} bytes); evicted: {}",
        cache.resident_layers, cache.resident_bytes, cache.evicted_layers
    )
}

/// The location `url` (at `endpoint`); without an endpoint, at the server the store in
/// `dir` recorded for that location in its `pagefork.remote`, if it did: where every
/// other command reads its evicted layers (reviews found a sync, and a scrub, sent to AWS
/// itself).
fn location_for(dir: &Path, url: &str, endpoint: Option<&str>) -> Result<RemoteLocation> {
    let location = RemoteLocation::parse(url, endpoint)?;
    if endpoint.is_none()
        && let Some(recorded) = pagefork_remote::recorded_location(dir)?
        && recorded.url() == location.url()
    {
        return Ok(recorded);
    }
    Ok(location)
}

/// `pagefork sync --remote URL [--local-cache-bytes N]`: one sync of the store in `dir`,
/// then evictions down to N.
pub(crate) fn sync(
    dir: &Path,
    url: &str,
    endpoint: Option<&str>,
    local_cache_bytes: Option<u64>,
    json: bool,
) -> Result<()> {
    let location = location_for(dir, url, endpoint)?;
    let (store, source) = open_store(dir, Some(&location), local_cache_bytes)?;
    crate::recover::report_open(&store, json);
    let report = Uploader::connect_with_layers(&location, &store, source)
        .and_then(|mut uploader| uploader.sync(&store))
        .with_context(|| format!("cannot sync the store in {} to {url}", dir.display()))?;
    let cache = match local_cache_bytes {
        Some(bytes) => Some(store.evict_layers_to(bytes).with_context(|| {
            format!(
                "synced, but evicting layer files in {} failed",
                dir.display()
            )
        })?),
        None => None,
    };
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
                "layer_cache": layer_cache_json(cache),
            })
        );
    } else {
        out!(
            "synced to {} (generation {}): recovery point {}; uploaded {}, {}, in {} ms; the index lists {} and {}",
            report.location,
            report.generation,
            report.recovery_point,
            counted(report.uploaded_objects, "object"),
            counted(report.uploaded_bytes, "byte"),
            report.elapsed.as_millis(),
            counted(report.layers as u64, "layer file"),
            counted(report.wal_segments as u64, "WAL segment")
        );
        if let Some(cache) = cache {
            out!("{}", describe_layer_cache(&cache));
        }
    }
    Ok(())
}

/// How `pagefork attach` rebuilds a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttachHow {
    /// Every file downloaded; the location taken over.
    Whole,
    /// Layer files left in the bucket until read; the location taken over.
    Lazily,
    /// Every file downloaded; nothing claimed (`--no-claim`).
    CopyWithoutClaim,
}

/// `pagefork attach --remote URL [--no-claim | --lazy]`: rebuilds the store in `dir`, then opens it
/// to check it.
pub(crate) fn attach(
    dir: &Path,
    url: &str,
    endpoint: Option<&str>,
    how: AttachHow,
    json: bool,
) -> Result<()> {
    let location = RemoteLocation::parse(url, endpoint)?;
    let attached = match how {
        AttachHow::Whole => pagefork_remote::attach(&location, dir),
        AttachHow::Lazily => pagefork_remote::attach_lazily(&location, dir),
        AttachHow::CopyWithoutClaim => pagefork_remote::attach_without_claim(&location, dir),
    };
    let report = attached.with_context(|| format!("cannot attach {url} in {}", dir.display()))?;
    let (store, _) = open_store(dir, None, None).with_context(|| {
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
            "attached {} in {} ({}, from generation {}'s index): {}, every commit up to {}; downloaded {}, {}, in {} ms",
            report.location,
            dir.display(),
            report.generation.map_or_else(
                || "no generation claimed: a copy to inspect".to_owned(),
                |generation| format!("generation {generation}")
            ),
            report.from_generation,
            counted(branches as u64, "branch"),
            report.recovery_point,
            counted(report.downloaded_objects, "object"),
            counted(report.downloaded_bytes, "byte"),
            report.elapsed.as_millis()
        );
    }
    Ok(())
}

/// `pagefork remote scrub`: the objects no index lists, removed unless `dry_run`.
pub(crate) fn scrub(
    dir: &Path,
    url: &str,
    endpoint: Option<&str>,
    (min_age, dry_run): (Duration, bool),
    json: bool,
) -> Result<()> {
    let location = location_for(dir, url, endpoint)?;
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
        "{} no index lists{}; {} listed by {}; {} unlisted kept (younger than {} or of a newer generation)",
        counted(report.unlisted.len() as u64, "object"),
        if report.removed {
            ", removed"
        } else {
            " (dry run: nothing removed)"
        },
        report.listed,
        report.index_generation.map_or_else(
            || "no index (there is none)".to_owned(),
            |generation| format!("generation {generation}'s index")
        ),
        report.kept,
        humantime::format_duration(min_age)
    );
    Ok(())
}
