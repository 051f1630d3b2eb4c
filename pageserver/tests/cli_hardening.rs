//! The `pagefork` command against what users do to it (issue 19): piping it into `head`,
//! expiries and LSNs no store can hold, a full disk, and listing many branches.

// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use pagefork_engine::{At, BranchOptions, Config, Key, Store, SyncMode, Update};
use support::cli::{ok_json, pagefork};

/// A store in `dir` with `count` branches `b0000`... from main (its WAL unsynced: this
/// only sets the scene).
fn store_with_branches(dir: &Path, count: usize) {
    let config = Config {
        sync_mode: SyncMode::Never,
        ..Config::default()
    };
    let store = Store::create(dir, config).unwrap();
    store
        .commit(
            "main",
            vec![(Key::new(1, 0), Update::Image(vec![1; 8192].into()))],
        )
        .unwrap();
    for index in 0..count {
        let parent = if index % 4 == 0 { "main" } else { "b0000" };
        store
            .create_branch(
                &format!("b{index:04}"),
                parent,
                At::Latest,
                BranchOptions::default(),
            )
            .unwrap();
    }
    store.checkpoint().unwrap();
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    store_with_branches(dir.path(), 3000);
    for args in [
        vec!["branch", "list"],
        vec!["--json", "branch", "list"],
        vec!["branch", "list", "--name-prefix", "b"],
        vec!["log"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pagefork"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(&args)
            .env_remove("PAGEFORK_DATA_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // `| head -1`: one line, then the pipe closes.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(!line.is_empty());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

#[test]
fn branch_list_filters_and_pages_through_every_branch() {
    let dir = tempfile::tempdir().unwrap();
    store_with_branches(dir.path(), 2500);
    let all = ok_json(pagefork(dir.path(), &["--json", "branch", "list"]));
    assert_eq!(all.as_array().unwrap().len(), 2501);
    let children = ok_json(pagefork(
        dir.path(),
        &["--json", "branch", "list", "--parent", "main"],
    ));
    // b0000, b0004, ... (625 of them) branch from main.
    assert_eq!(children.as_array().unwrap().len(), 625);
    let prefixed = pagefork(dir.path(), &["branch", "list", "--name-prefix", "b01"]);
    assert!(prefixed.status.success());
    let text = String::from_utf8(prefixed.stdout).unwrap();
    assert_eq!(text.lines().count(), 100);
    assert!(text.lines().all(|line| line.starts_with("b01")), "{text}");
}

#[test]
fn expiries_and_lsns_no_store_can_hold_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    store_with_branches(dir.path(), 1);
    let before = pagefork_tests::tree_snapshot(dir.path());
    for args in [
        vec!["branch", "create", "far", "--ttl", "8000y"],
        vec!["branch", "set-expiry", "b0000", "--ttl", "8000y"],
        vec!["lease", "main", "0/0"],
        vec!["lease", "main", "0/1"],
        vec!["page", "get", "main", "1", "0", "--lsn", "0/0"],
    ] {
        let output = pagefork(dir.path(), &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("9999-12-31T23:59:59.999999Z") || stderr.contains("LSN 0/"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let head = ok_json(pagefork(dir.path(), &["--json", "branch", "show", "main"]))["head"]
        .as_str()
        .unwrap()
        .to_owned();
    let output = pagefork(dir.path(), &["lease", "main", &head, "--for", "8000y"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        pagefork_tests::tree_snapshot(dir.path()),
        before,
        "a refusal changed the store"
    );
    // Every view still answers.
    for args in [vec!["branch", "list"], vec!["lease"], vec!["log"]] {
        let output = pagefork(dir.path(), &args);
        assert!(output.status.success(), "{args:?}");
    }
}

#[test]
fn a_full_disk_is_reported_once_naming_the_file() {
    let disk = support::SmallDisk::mount(40);
    let store = disk.path().join("store");
    let output = pagefork(&store, &["init"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    disk.fill();
    let page = disk.path().join("page.bin");
    // No room for the page file either: give it on standard input.
    let mut output =
        support::cli::pagefork_with_stdin(&store, &["page", "put", "main", "1", "0"], &[3; 8192]);
    if output.status.success() {
        // The WAL segment is preallocated (zero-filled), so a commit may still fit; the
        // checkpoint that writes it into a layer file cannot.
        output = pagefork(&store, &["checkpoint"]);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let os_error = std::io::Error::from_raw_os_error(28).to_string();
    assert_eq!(stderr.matches(&os_error).count(), 1, "{stderr}");
    assert!(
        stderr.contains(&store.display().to_string()),
        "names the file: {stderr}"
    );
    assert!(!page.exists());
}

/// Found by a review: `init` in a directory of someone's files went ahead and mixed the
/// store's files in with them. It is refused naming what is there, changing nothing; a
/// file system's `lost+found` may stay.
#[test]
fn regression_init_refuses_a_directory_holding_other_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    let before = pagefork_tests::tree_snapshot(dir.path());
    let output = pagefork(dir.path(), &["init"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is not empty (it holds notes.txt and 1 more)"),
        "{stderr}"
    );
    assert_eq!(pagefork_tests::tree_snapshot(dir.path()), before);
    let disk = tempfile::tempdir().unwrap();
    std::fs::create_dir(disk.path().join("lost+found")).unwrap();
    ok_json(pagefork(disk.path(), &["--json", "init"]));
    // A file an init killed half way through publishing it is a store's business: the
    // retry goes ahead (found by a review of this check).
    let retried = tempfile::tempdir().unwrap();
    std::fs::write(retried.path().join("pagefork.creating.tmp"), b"").unwrap();
    ok_json(pagefork(retried.path(), &["--json", "init"]));
}
