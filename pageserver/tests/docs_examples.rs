//! The documentation's runnable examples, run: every fenced block whose info string is
//! exactly `sh` in docs/cli.md and docs/http-api.md, each document's blocks concatenated
//! in order as one `bash -euo pipefail` script in a fresh temporary directory, with the
//! real `pagefork` on `PATH`. The CLI's script gets a data directory of its own
//! (`PAGEFORK_DATA_DIR`); the HTTP API's gets a fresh server (`PAGEFORK_URL`). A script
//! that fails fails the test, naming the document, the failing command and its line there,
//! and printing what the script printed.
//!
//! Every other document under docs/ must have no `sh` block: a block marked runnable that
//! nothing runs would go stale unnoticed (commands shown but not run are `console`).

// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The documents whose `sh` blocks are run, each with the fewest blocks it may have (so
/// that deleting the examples cannot make this test pass) and commands it must run.
const CLI_DOC: &str = "cli.md";
const CLI_MIN_BLOCKS: usize = 6;
const CLI_MUST_RUN: [&str; 3] = [
    "pagefork branch list --name-prefix",
    "pagefork --data-dir server token create",
    "| head -n 1",
];
const HTTP_DOC: &str = "http-api.md";
const HTTP_MIN_BLOCKS: usize = 9;
const HTTP_MUST_RUN: [&str; 4] = [
    "branches?limit=2&cursor=",
    "Origin: http://evil.example",
    "Host: evil.example",
    "lsn=0/0",
];

/// How long one document's script may run before it is killed and the test fails.
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

fn read_doc(name: &str) -> String {
    let path = docs_dir().join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// A fenced code block: the line number (from 1) of its first line of content, and the
/// content.
#[derive(Debug, PartialEq, Eq)]
struct Block {
    first_line: usize,
    text: String,
}

/// An open fence: its character and length, and, if its block is wanted, the block so far.
struct Fence<'a> {
    char: char,
    len: usize,
    wanted: Option<(usize, Vec<&'a str>)>,
}

/// Every fenced code block (``` or ~~~, three or more) whose info string is exactly
/// `info`, in order.
fn fenced_blocks(markdown: &str, info: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Fence<'_>> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let fence_char = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let fence_len = fence_char.map_or(0, |c| trimmed.chars().take_while(|x| *x == c).count());
        let after_fence = trimmed[fence_len..].trim();
        match &mut open {
            None => {
                if let Some(char) = fence_char
                    && fence_len >= 3
                {
                    open = Some(Fence {
                        char,
                        len: fence_len,
                        // Its content starts on the next line (numbered from 1).
                        wanted: (after_fence == info).then(|| (index + 2, Vec::new())),
                    });
                }
            }
            Some(fence) => {
                let closes = fence_char == Some(fence.char)
                    && fence_len >= fence.len
                    && after_fence.is_empty();
                if closes {
                    if let Some((first_line, lines)) = fence.wanted.take() {
                        blocks.push(Block {
                            first_line,
                            text: lines.join("\n"),
                        });
                    }
                    open = None;
                } else if let Some((_, lines)) = &mut fence.wanted {
                    lines.push(line);
                }
            }
        }
    }
    assert!(open.is_none(), "a fenced block is never closed");
    blocks
}

/// A document's `sh` blocks as one script, and for each of its lines (from 1) the line
/// of the document it came from (0: a line of the harness).
struct Script {
    text: String,
    doc_lines: Vec<usize>,
}

/// The line a failing command reports on standard error (from the `ERR` trap), with the
/// script's line number and the command after it.
const FAILED_MARK: &str = "docs_examples: script line ";

/// The `sh` blocks of docs/`name`, checked to be at least `min` and to contain each of
/// `must_run`, as one script: an `ERR` trap that names the failing command, then each
/// block after a comment naming where it starts.
fn script_of(name: &str, min: usize, must_run: &[&str]) -> Script {
    let blocks = fenced_blocks(&read_doc(name), "sh");
    assert!(
        blocks.len() >= min,
        "docs/{name} has {} `sh` blocks; at least {min} are expected (were examples deleted?)",
        blocks.len()
    );
    let mut lines = vec![format!(
        "trap 'echo \"{FAILED_MARK}$LINENO (exit $?): $BASH_COMMAND\" >&2' ERR"
    )];
    let mut doc_lines = vec![0];
    for block in &blocks {
        lines.push(format!("# docs/{name}, line {}", block.first_line));
        doc_lines.push(0);
        for (offset, line) in block.text.lines().enumerate() {
            lines.push(line.to_owned());
            doc_lines.push(block.first_line + offset);
        }
    }
    let text = lines.join("\n") + "\n";
    for command in must_run {
        assert!(
            text.contains(command),
            "the `sh` blocks of docs/{name} no longer run {command:?}"
        );
    }
    Script { text, doc_lines }
}

/// The last `limit` bytes of `text` (on a character boundary), saying what was cut.
fn tail(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut cut = text.len() - limit;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    format!("[... {cut} bytes before]\n{}", &text[cut..])
}

/// A directory holding `pagefork`, a symlink to the binary under test, for `PATH`.
fn bin_dir(root: &Path) -> PathBuf {
    let dir = root.join("bin");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pagefork"), dir.join("pagefork")).unwrap();
    dir
}

/// `PATH` with `dir` first.
fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_owned()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

/// Fails the test, saying so, if `tool` cannot be run.
fn require_tool(tool: &str, doc: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "the examples of docs/{doc} need {tool}, which is not on PATH: install it to run this test"
    );
}

/// Runs `script` (docs/`doc`'s examples) as `bash -euo pipefail` in `work`, with `env`
/// set, and fails the test with its output if it fails or runs too long.
fn run_script(doc: &str, script: &Script, work: &Path, env: &[(&str, &std::ffi::OsStr)]) {
    let script_path = work.join("examples.sh");
    std::fs::write(&script_path, &script.text).unwrap();
    let (stdout_path, stderr_path) = (work.join("stdout.txt"), work.join("stderr.txt"));
    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail"])
        .arg(&script_path)
        .current_dir(work)
        .env_remove("PAGEFORK_DATA_DIR")
        .env_remove("PAGEFORK_URL")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    for (name, value) in env {
        command.env(name, value);
    }
    let started = Instant::now();
    let mut child = command.spawn().expect("run bash");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let how = match status {
        Some(status) if status.success() => return,
        Some(status) => format!("failed ({status})"),
        None => format!("did not finish within {SCRIPT_LIMIT:?} (killed)"),
    };
    // Where: the command the trap named, at its line of the document.
    let failed = stderr.lines().rev().find_map(|line| {
        let rest = line.strip_prefix(FAILED_MARK)?;
        let (number, command) = rest.split_once(' ')?;
        let index = number.parse::<usize>().ok()?.checked_sub(1)?;
        let doc_line = script.doc_lines.get(index)?;
        Some(format!(
            "\nthe failing command, at docs/{doc} line {doc_line} {command}"
        ))
    });
    panic!(
        "the `sh` examples of docs/{doc}, run as one bash -euo pipefail script, {how}{}\n\
         --- stdout ---\n{}\n--- stderr ---\n{}",
        failed.unwrap_or_default(),
        tail(&stdout, 6000),
        tail(&stderr, 6000),
    );
}

#[test]
fn the_cli_examples_run() {
    let script = script_of(CLI_DOC, CLI_MIN_BLOCKS, &CLI_MUST_RUN);
    let root = tempfile::tempdir().unwrap();
    let bin = bin_dir(root.path());
    let (work, data) = (root.path().join("work"), root.path().join("data"));
    std::fs::create_dir(&work).unwrap();
    let path = path_with(&bin);
    run_script(
        CLI_DOC,
        &script,
        &work,
        &[
            ("PATH", path.as_os_str()),
            ("PAGEFORK_DATA_DIR", data.as_os_str()),
        ],
    );
}

#[test]
fn the_http_api_examples_run() {
    let script = script_of(HTTP_DOC, HTTP_MIN_BLOCKS, &HTTP_MUST_RUN);
    require_tool("curl", HTTP_DOC);
    let root = tempfile::tempdir().unwrap();
    let bin = bin_dir(root.path());
    let (work, data) = (root.path().join("work"), root.path().join("data"));
    std::fs::create_dir(&work).unwrap();
    std::fs::create_dir(&data).unwrap();
    let server = support::Server::start(&data, &[]);
    let path = path_with(&bin);
    let url = std::ffi::OsString::from(&server.base);
    run_script(
        HTTP_DOC,
        &script,
        &work,
        &[
            ("PATH", path.as_os_str()),
            ("PAGEFORK_URL", url.as_os_str()),
        ],
    );
}

/// Only the documents run above may have `sh` blocks; the others (recovery.md's commands
/// on a placeholder store `D`, say) show theirs as `console`.
#[test]
fn no_other_document_has_sh_blocks() {
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(docs_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".md") || name == CLI_DOC || name == HTTP_DOC {
            continue;
        }
        let blocks = fenced_blocks(&read_doc(&name), "sh");
        assert!(
            blocks.is_empty(),
            "docs/{name} has {} `sh` block(s), but only {CLI_DOC} and {HTTP_DOC} are run: \
             mark commands shown but not run as `console` (or `text`)",
            blocks.len()
        );
        checked.push(name);
    }
    assert!(
        checked.iter().any(|name| name == "recovery.md"),
        "docs/recovery.md was not checked: {checked:?}"
    );
    let recovery = read_doc("recovery.md");
    assert!(
        !fenced_blocks(&recovery, "console").is_empty(),
        "docs/recovery.md shows its recover commands in a `console` block"
    );
}

#[test]
fn fenced_blocks_are_found_by_exact_info_string() {
    let markdown = "text\n```sh\na\nb\n```\n```shell\nc\n```\n````sh\n```\nd\n````\n~~~sh\ne\n~~~\n```console\n$ f\n```\n";
    let texts = |info| -> Vec<(usize, String)> {
        fenced_blocks(markdown, info)
            .into_iter()
            .map(|block| (block.first_line, block.text))
            .collect()
    };
    assert_eq!(
        texts("sh"),
        vec![
            (3, "a\nb".to_owned()),
            (10, "```\nd".to_owned()),
            (14, "e".to_owned())
        ]
    );
    assert_eq!(texts("console"), vec![(17, "$ f".to_owned())]);
}
