//! The branch lifecycle commands: reset, detach, restore, rename, diff, protect, set-expiry, and
//! `log` (the branch-graph history). Each is one engine call; refusals come back as the
//! engine's error, one line, and change nothing.

use std::path::Path;

use anyhow::Result;
use pagefork_engine::{At, Backup, PageDiff, Store};
use serde_json::{Value, json};

use crate::cli::BranchCommand;
use crate::commands::{at, open, print_branch};
use crate::output::out;
use crate::views::{branch_json, diff_json, entry_json};

/// Runs a lifecycle subcommand of `branch` (create, list, show and delete are in
/// `commands`).
pub(crate) fn branch(store: &Store, command: &BranchCommand, json: bool) -> Result<()> {
    match command {
        BranchCommand::Reset { name } => show(&store.reset_branch(name)?, json)?,
        BranchCommand::Detach { name } => show(&store.detach_branch(name)?, json)?,
        BranchCommand::Restore {
            name,
            from,
            at: at_args,
            backup_name,
            no_backup,
        } => {
            let backup = match (backup_name, no_backup) {
                (Some(name), _) => Backup::Named(name.clone()),
                (None, true) => Backup::Skip,
                (None, false) => Backup::Default,
            };
            let source = from.as_deref().unwrap_or(name);
            let restored = store.restore_branch(name, source, at(at_args), backup)?;
            if json {
                let mut value = branch_json(&restored.branch);
                if let Some(object) = value.as_object_mut() {
                    object.insert("backup".to_owned(), json!(restored.backup));
                }
                out!("{value}");
            } else {
                print_branch(&restored.branch)?;
                match &restored.backup {
                    Some(backup) => out!("  backup       {backup} (the previous state)"),
                    None => out!("  backup       none kept"),
                }
            }
        }
        BranchCommand::Rename { name, new_name } => {
            show(&store.rename_branch(name, new_name)?, json)?;
        }
        BranchCommand::Protect { name, off } => show(&store.set_protected(name, !off)?, json)?,
        BranchCommand::SetExpiry { name, expiry } => {
            show(&store.set_expiry(name, expiry.expiry())?, json)?;
        }
        BranchCommand::SetPitrWindow { name, window, .. } => {
            show(&store.set_pitr_window(name, *window)?, json)?;
        }
        BranchCommand::Diff {
            from,
            to,
            from_lsn,
            from_time,
            to_lsn,
            to_time,
            files,
        } => {
            let side = |lsn: &Option<_>, time: &Option<_>| match (lsn, time) {
                (Some(lsn), _) => At::Lsn(*lsn),
                (None, Some(time)) => At::Time(*time),
                (None, None) => At::Latest,
            };
            let diff = store.diff(from, side(from_lsn, from_time), to, side(to_lsn, to_time))?;
            if *files {
                let tree_diff = pagefork_files::diff_trees(store, from, to, &diff)?;
                print_file_diff(from, to, &diff, &tree_diff, json)?;
            } else {
                print_diff(from, to, &diff, json)?;
            }
        }
        BranchCommand::Create { .. }
        | BranchCommand::List { .. }
        | BranchCommand::Show { .. }
        | BranchCommand::Delete { .. } => unreachable!("handled by commands::branch"),
    }
    Ok(())
}

/// `pagefork log`: every branch operation, oldest first.
pub(crate) fn log(dir: &Path, json: bool) -> Result<()> {
    let store = open(dir, json)?;
    let history = store.history();
    if json {
        let entries: Vec<Value> = history.iter().map(entry_json).collect();
        out!("{}", Value::Array(entries));
        return Ok(());
    }
    for entry in &history {
        out!(
            "{:<12} {:<30} {:<16} {} ({}) {}",
            entry.lsn.to_string(),
            entry.time.to_string(),
            entry.operation.to_string(),
            entry.branch,
            entry.branch_id,
            entry.details
        );
    }
    Ok(())
}

fn show(info: &pagefork_engine::BranchInfo, json: bool) -> anyhow::Result<()> {
    if json {
        out!("{}", branch_json(info));
    } else {
        print_branch(info)?;
    }
    Ok(())
}

fn print_file_diff(
    from: &str,
    to: &str,
    pages: &PageDiff,
    files: &pagefork_files::TreeDiff,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        out!(
            "{}",
            crate::views::to_json(&crate::views::FileDiffView::of(from, to, pages, files))
        );
        return Ok(());
    }
    out!(
        "{from} at {} -> {to} at {}: {} added, {} removed, {} changed",
        pages.from_lsn,
        pages.to_lsn,
        files.added.len(),
        files.removed.len(),
        files.changed.len()
    );
    for change in &files.added {
        out!(
            "  + {} ({}, {} bytes)",
            change.path,
            change.kind.name(),
            change.bytes
        );
    }
    for change in &files.removed {
        out!(
            "  - {} ({}, {} bytes)",
            change.path,
            change.kind.name(),
            change.bytes
        );
    }
    for change in &files.changed {
        let before = change.previous_bytes.unwrap_or(change.bytes);
        let differences: Vec<&str> = change.differences.iter().map(|d| d.name()).collect();
        out!(
            "  ~ {} ({}, {before} -> {} bytes; {})",
            change.path,
            change.kind.name(),
            change.bytes,
            differences.join(", ")
        );
    }
    Ok(())
}

fn print_diff(from: &str, to: &str, diff: &PageDiff, json: bool) -> anyhow::Result<()> {
    if json {
        out!("{}", diff_json(from, to, diff));
        return Ok(());
    }
    out!(
        "{from} at {} -> {to} at {}: {} added, {} removed, {} changed ({} keys compared)",
        diff.from_lsn,
        diff.to_lsn,
        diff.added.len(),
        diff.removed.len(),
        diff.changed.len(),
        diff.keys_compared
    );
    for (rel, counts) in diff.by_relation() {
        out!(
            "  relation {rel:<10} +{} -{} ~{}",
            counts.added,
            counts.removed,
            counts.changed
        );
    }
    Ok(())
}
