//! `pagefork inspect`: look inside the store's files without changing them: WAL records
//! (like pg_waldump), one layer file (read directly, the store not opened), and the whole
//! store (formats, catalog, WAL, each branch's layers, every layer checked against its
//! checksums). A damaged file makes the command exit non-zero.

use std::path::Path;

use anyhow::{Result, bail};
use pagefork_engine::layer::LayerFile;
use pagefork_engine::{LayerFileSummary, StoreFiles};
use serde_json::{Value, json};

use crate::cli::InspectCommand;
use crate::commands::open;
use crate::output::{counted, out};

pub(crate) fn inspect(dir: &Path, command: &InspectCommand, json: bool) -> Result<()> {
    match command {
        InspectCommand::Layer { file } => inspect_layer(file, json),
        InspectCommand::Store { no_verify } => inspect_store(dir, !no_verify, json),
        InspectCommand::Wal { from, limit } => {
            let store = open(dir, json)?;
            let entries = store.wal_entries(*from, *limit)?;
            if json {
                let entries: Vec<Value> = entries
                    .iter()
                    .map(|entry| {
                        json!({"start": entry.start.to_string(), "lsn": entry.end.to_string(),
                               "time": entry.time.to_string(), "kind": entry.kind, "description": entry.description})
                    })
                    .collect();
                out!("{}", Value::Array(entries));
            } else {
                for entry in entries {
                    out!(
                        "{:>12} {:>12}  {}  {:<13} {}",
                        entry.start.to_string(),
                        entry.end.to_string(),
                        entry.time,
                        entry.kind,
                        entry.description
                    );
                }
            }
            Ok(())
        }
    }
}

fn inspect_layer(file: &Path, json: bool) -> Result<()> {
    // A directory (`layers/` itself) is named as such: mapping it said "No such device".
    anyhow::ensure!(
        !file.is_dir(),
        "{} is a directory: give one layer file in it",
        file.display()
    );
    let layer = LayerFile::open(file, None)?;
    let range = *layer.range();
    let checked = layer.versions();
    let status = match &checked {
        Ok(versions) => format!("ok: all {} blocks match their checksums", versions.len()),
        Err(error) => format!("DAMAGED: {error}"),
    };
    let checksum = layer.checksum()?;
    if json {
        out!(
            "{}",
            json!({
                "file": file.display().to_string(), "kind": format!("{:?}", range.kind).to_lowercase(),
                "branch": range.branch.0, "key_start": range.key_start.to_string(), "key_last": range.key_last.to_string(),
                "lsn_start": range.lsn_start.to_string(), "lsn_end": range.lsn_end.to_string(),
                "versions": layer.version_count(), "size": layer.size(), "crc32": format!("{checksum:08x}"),
                "blocks_ok": checked.is_ok(), "status": status,
            })
        );
    } else {
        out!("layer {}", file.display());
        out!("  kind       {:?} of branch {}", range.kind, range.branch);
        out!("  keys       [{}, {}]", range.key_start, range.key_last);
        out!("  LSNs       [{}, {})", range.lsn_start, range.lsn_end);
        out!("  versions   {}", layer.version_count());
        out!("  size       {} bytes, CRC32 {checksum:08x}", layer.size());
        out!("  blocks     {status}");
    }
    checked.map(drop).map_err(Into::into)
}

fn inspect_store(dir: &Path, verify: bool, json: bool) -> Result<()> {
    let store = open(dir, json)?;
    let files = store.files(verify)?;
    let damaged: Vec<&LayerFileSummary> = files
        .branches
        .iter()
        .flat_map(|branch| &branch.layers)
        .filter(|layer| matches!(layer.check, Some(Err(_))))
        .collect();
    if json {
        out!("{}", store_files_json(&files));
    } else {
        print_store_files(&files, verify)?;
    }
    if !damaged.is_empty() {
        bail!(
            "{} failed the check (damaged, or evicted and not read back)",
            counted(damaged.len() as u64, "layer file")
        );
    }
    Ok(())
}

fn layer_json(layer: &LayerFileSummary) -> Value {
    json!({
        "name": layer.name,
        "level": format!("{:?}", layer.level).to_lowercase(),
        "key_start": layer.range.key_start.to_string(), "key_last": layer.range.key_last.to_string(),
        "lsn_start": layer.range.lsn_start.to_string(), "lsn_end": layer.range.lsn_end.to_string(),
        "versions": layer.versions,
        "bytes": layer.bytes,
        "resident": layer.resident,
        "check": match &layer.check {
            None => json!(null),
            Some(Ok(())) => json!("ok"),
            Some(Err(error)) => json!(format!("DAMAGED: {error}")),
        },
    })
}

fn store_files_json(files: &StoreFiles) -> Value {
    let branches: Vec<Value> = files
        .branches
        .iter()
        .map(|branch| {
            json!({
                "id": branch.id.0, "name": branch.name, "hidden": branch.hidden,
                "head": branch.head.to_string(), "flushed": branch.flushed.to_string(),
                "unflushed_bytes": branch.unflushed_bytes,
                "layers": branch.layers.iter().map(layer_json).collect::<Vec<_>>(),
                "commit_points": branch.commit_points,
                "commit_runs": branch.commit_runs.iter().map(|run| json!({
                    "name": run.name, "points": run.points, "bytes": run.bytes,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "dir": files.dir.as_ref().map(|dir| dir.display().to_string()),
        "page_size": files.page_size,
        "formats": {"meta": files.formats.meta, "catalog": files.formats.catalog, "layer": files.formats.layer, "commit_run": files.formats.commit_run, "wal": files.formats.wal},
        "catalog": {"covers": files.catalog_covers.to_string(), "bytes": files.catalog_bytes},
        "wal": files.wal.map(|wal| json!({
            "segment_size": wal.segment_size, "segments": wal.segments, "bytes": wal.bytes,
            "oldest": wal.oldest.to_string(), "durable": wal.durable.to_string(),
        })),
        "branches": branches,
    })
}

fn print_store_files(files: &StoreFiles, verify: bool) -> anyhow::Result<()> {
    if let Some(dir) = &files.dir {
        out!("store {}", dir.display());
    }
    out!("  page size    {} bytes", files.page_size);
    out!(
        "  formats      meta v{}, catalog v{}, layers v{}, commit runs v{}, WAL v{}",
        files.formats.meta,
        files.formats.catalog,
        files.formats.layer,
        files.formats.commit_run,
        files.formats.wal
    );
    out!(
        "  catalog      {} bytes, covers the WAL up to {}",
        files.catalog_bytes,
        files.catalog_covers
    );
    if let Some(wal) = &files.wal {
        out!(
            "  wal          {} segments of {} bytes ({} bytes on disk), records from {}, durable to {}",
            wal.segments,
            wal.segment_size,
            wal.bytes,
            wal.oldest,
            wal.durable
        );
    }
    for branch in &files.branches {
        let hidden = if branch.hidden {
            " (old state, hidden)"
        } else {
            ""
        };
        let bytes: u64 = branch.layers.iter().map(|layer| layer.bytes).sum();
        let run_bytes: u64 = branch.commit_runs.iter().map(|run| run.bytes).sum();
        out!(
            "branch {} ({}){hidden}: head {}, flushed to {}, {} unflushed, {} ({}), {} ({}, {})",
            branch.name,
            branch.id,
            branch.head,
            branch.flushed,
            counted(branch.unflushed_bytes, "byte"),
            counted(branch.layers.len() as u64, "layer file"),
            counted(bytes, "byte"),
            counted(branch.commit_points, "commit point"),
            counted(branch.commit_runs.len() as u64, "run file"),
            counted(run_bytes, "byte"),
        );
        for layer in &branch.layers {
            let check = match &layer.check {
                None => String::new(),
                Some(Ok(())) => "  ok".to_owned(),
                Some(Err(error)) => format!("  DAMAGED: {error}"),
            };
            out!(
                "  {:<6} keys [{}, {}] LSNs [{}, {}) {} versions {} bytes  {}{}{check}",
                format!("{:?}", layer.level),
                layer.range.key_start,
                layer.range.key_last,
                layer.range.lsn_start,
                layer.range.lsn_end,
                layer.versions,
                layer.bytes,
                layer.name,
                if layer.resident { "" } else { " (evicted)" }
            );
        }
    }
    if !verify {
        out!("(layer files not checked: --no-verify)");
    }
    Ok(())
}
