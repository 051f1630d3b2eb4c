//! What the HTTP benchmarks share: the real `pagefork serve` on a free loopback port.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts `pagefork --data-dir DIR serve --listen 127.0.0.1:0` and returns the child and
/// the base URL it printed.
pub(crate) fn start_serve(dir: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pagefork"))
        .arg("--data-dir")
        .arg(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        // Warnings, but not fuser's note of each reply to a request the kernel dropped
        // (pg_test_fsync's alarms interrupt its writes).
        .env("PAGEFORK_LOG", "warn,fuser::reply=off,fuser::session=off")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap()
        .to_owned();
    (child, base)
}
