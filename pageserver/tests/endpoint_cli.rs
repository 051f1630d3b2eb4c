//! `pagefork endpoint start` as users run it: in the foreground, printing how to connect
//! once Postgres accepts connections, stopped by SIGTERM (fast shutdown, unmount,
//! checkpoint); started again, the data is there. Refusals before anything starts: no
//! Postgres programs where it was told to look, a mount point that is not empty, an
//! unknown branch; none of them changes the store. Needs root, /dev/fuse and
//! postgresql-15.

// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use support::cli::{ok_json, pagefork};
use support::mount::require_fuse;

const PSQL: &str = "/usr/lib/postgresql/15/bin/psql";

fn start(data: &Path, extra: &[&str]) -> (Child, Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pagefork"))
        .arg("--data-dir")
        .arg(data)
        .args(["--json", "endpoint", "start", "main"])
        .args(extra)
        .env_remove("PAGEFORK_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let answer: Value =
        serde_json::from_str(&line).unwrap_or_else(|error| panic!("not JSON ({error}): {line:?}"));
    (child, answer)
}

fn stop(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success());
}

fn sql(answer: &Value, sql: &str) -> String {
    let url = answer["endpoint"]["connection_string"].as_str().unwrap();
    let output = Command::new(PSQL)
        .args([url, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Every file of the store directory with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in walk(dir) {
        files.push((entry.display().to_string(), std::fs::read(&entry).unwrap()));
    }
    files.sort();
    files
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

#[test]
fn an_endpoint_runs_in_the_foreground_and_keeps_its_data() {
    require_fuse();
    assert!(
        Path::new(PSQL).exists(),
        "this test needs Debian's postgresql-15 (apt-get install postgresql-15)"
    );
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    ok_json(pagefork(&data, &["init", "--json"]));

    // Refused before anything starts, the store unchanged.
    let before = snapshot(&data);
    let missing = pagefork(
        &data,
        &["endpoint", "start", "main", "--pg-bin", "/nowhere"],
    );
    assert!(!missing.status.success());
    let message = String::from_utf8_lossy(&missing.stderr);
    assert!(
        message.contains("/nowhere") && message.contains("postgresql-15"),
        "{message}"
    );
    let occupied = root.path().join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    std::fs::write(occupied.join("file"), "x").unwrap();
    let refused = pagefork(
        &data,
        &[
            "endpoint",
            "start",
            "main",
            "--mount",
            occupied.to_str().unwrap(),
        ],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let unknown = pagefork(&data, &["endpoint", "start", "nobody"]);
    assert!(!unknown.status.success());
    assert_eq!(snapshot(&data), before, "a refused start changed the store");

    let (child, answer) = start(&data, &["-c", "shared_buffers=16MB"]);
    assert_eq!(answer["endpoint"]["initialized"], true, "{answer}");
    assert_eq!(sql(&answer, "SHOW shared_buffers"), "16MB");
    sql(
        &answer,
        "CREATE TABLE kept(n int); INSERT INTO kept VALUES (42);",
    );
    stop(child);

    let (child, answer) = start(&data, &[]);
    assert_eq!(answer["endpoint"]["initialized"], false, "{answer}");
    assert_eq!(sql(&answer, "SELECT n FROM kept"), "42");
    stop(child);
}
