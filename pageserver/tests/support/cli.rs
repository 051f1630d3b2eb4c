//! Running the `pagefork` binary as a child process on a data directory.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// `pagefork --data-dir DIR ARGS...`, run to completion.
pub(crate) fn pagefork(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pagefork"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("PAGEFORK_DATA_DIR")
        .output()
        .expect("run pagefork")
}

/// `pagefork --data-dir DIR ARGS...` with `stdin` as its standard input.
pub(crate) fn pagefork_with_stdin(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pagefork"));
    command
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("PAGEFORK_DATA_DIR");
    run_with_stdin(command, stdin)
}

/// Runs `command` with `stdin` as its standard input and returns what it did.
pub(crate) fn run_with_stdin(mut command: Command, stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pagefork");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// The JSON a successful command printed (fails the test, with its stderr, otherwise).
pub(crate) fn ok_json(output: Output) -> Value {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON output")
}

/// The test S3 server's credentials as users give them: `AWS_*` environment variables.
pub(crate) const S3_CREDENTIALS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", pagefork_tests::s3::ACCESS_KEY),
    ("AWS_SECRET_ACCESS_KEY", pagefork_tests::s3::SECRET_KEY),
    ("AWS_REGION", "us-east-1"),
];

/// `pagefork --data-dir DIR ARGS...`, not yet run, with [`S3_CREDENTIALS`] in its
/// environment.
pub(crate) fn pagefork_s3(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pagefork"));
    command
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("PAGEFORK_DATA_DIR")
        .envs(S3_CREDENTIALS);
    command
}
