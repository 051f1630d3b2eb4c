//! POSIX semantics of a mounted branch, checked by pjdfstest (the Rust port from
//! crates.io, `cargo install --locked pjdfstest@0.2.2`, which needs Debian's
//! `libacl1-dev`; `.ci/run` installs both): every test it has for chmod, chown, link,
//! mkdir, mkfifo, mknod, open, rename, rmdir, symlink, truncate, unlink, utimensat and
//! ftruncate runs on a fresh mount, as root switching to `nobody` and `daemon` where a
//! test asks for other users.
//!
//! Hard links are not supported (`link` answers EPERM, docs/mounts.md): the tests that
//! make one are listed as expected failures, by name, so any other failure, and any of
//! those passing unexpectedly, fails this test.

// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use support::cli::{ok_json, pagefork};
use support::mount::Mount;

/// The tests that need a second name for an inode, one per kind of file they link.
fn hard_link_tests() -> Vec<String> {
    let needing_links = [
        "link::changed_ctime_success",
        "link::remove_link",
        "link::share_metadata",
        "rename::preserve_metadata",
        "rename::to_multiply_linked",
        "unlink::unchanged_ctime_failed",
        "unlink::update_ctime_success",
    ];
    let kinds = ["regular", "fifo", "socket", "char", "block"];
    needing_links
        .iter()
        .flat_map(|test| kinds.iter().map(move |kind| format!("{test}::{kind}")))
        .collect()
}

fn pjdfstest_binary() -> PathBuf {
    let on_path = Command::new("sh")
        .args(["-c", "command -v pjdfstest"])
        .output()
        .unwrap();
    let found = String::from_utf8_lossy(&on_path.stdout).trim().to_owned();
    if !found.is_empty() {
        return PathBuf::from(found);
    }
    let cargo_bin =
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo/bin/pjdfstest");
    assert!(
        cargo_bin.exists(),
        "this test runs pjdfstest: apt-get install libacl1-dev && cargo install --locked pjdfstest@0.2.2"
    );
    cargo_bin
}

#[test]
fn pjdfstest_passes_on_a_mount_except_hard_links() {
    let binary = pjdfstest_binary();
    let root = tempfile::tempdir().unwrap();
    // pjdfstest switches to other users, who must reach the mount point.
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let (data, dir, host) = (
        root.path().join("data"),
        root.path().join("mnt"),
        root.path().join("host"),
    );
    fs::create_dir(&host).unwrap();
    ok_json(pagefork(&data, &["init", "--json"]));
    let mount = Mount::start(&data, "main", &dir, &[]);
    let expected: Vec<String> = hard_link_tests()
        .iter()
        .map(|name| format!("    \"{name}\","))
        .collect();
    let config = root.path().join("pjdfstest.toml");
    fs::write(
        &config,
        format!(
            "[features]\nutime_now = {{}}\nutimensat = {{}}\nrename_ctime = {{}}\n\n\
             [settings]\nnaptime = 0.01\nallow_remount = false\nexpected_failures = [\n{}\n]\n\n\
             [dummy_auth]\nentries = [[\"nobody\", \"nogroup\"], [\"daemon\", \"daemon\"]]\n",
            expected.join("\n")
        ),
    )
    .unwrap();
    let output = Command::new(&binary)
        .arg("-c")
        .arg(&config)
        .arg("-p")
        .arg(&dir)
        .arg("-s")
        .arg(&host)
        .current_dir(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|line| line.trim_end().ends_with("FAILED"))
        .collect();
    let summary = stdout
        .lines()
        .find(|line| line.starts_with("Summary:"))
        .unwrap_or_else(|| {
            panic!(
                "pjdfstest printed no summary:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert!(
        output.status.success(),
        "pjdfstest failed: {summary}\n{}\n{stdout}",
        failed.join("\n")
    );
    // Every expected failure happened (a hard link test that passes means the list is
    // stale), and the run covered what it should.
    let expected_count = hard_link_tests().len();
    assert!(
        summary.contains(&format!("{expected_count} expected failures")),
        "{summary}"
    );
    let passed: usize = summary
        .split(", ")
        .find_map(|part| part.strip_suffix(" passed"))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(passed >= 340, "only {passed} tests passed: {summary}");
    assert!(mount.terminate().success());
}
