//! Opening a store with the `pagefork` binary after the operations users combine: every
//! catalog a command publishes can be opened again (issue 18), and what recovery does is
//! said, never silent.

// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::path::Path;

use support::cli::{ok_json, pagefork, pagefork_with_stdin};

const PAGE_SIZE: usize = 65536;

fn page(tag: u64) -> Vec<u8> {
    tag.to_le_bytes().repeat(PAGE_SIZE / 8)
}

fn put(dir: &Path, branch: &str, rel: u32, block: u32, tag: u64) -> String {
    let out = ok_json(pagefork_with_stdin(
        dir,
        &[
            "--json",
            "page",
            "put",
            branch,
            &rel.to_string(),
            &block.to_string(),
        ],
        &page(tag),
    ));
    out["lsn"].as_str().unwrap().to_owned()
}

/// Issue 18's commands, verbatim: 280 commits of one 64 KiB page pass one 16 MiB WAL
/// segment, a checkpoint removes it, a branch at the 6th commit's LSN is written, and a
/// detach publishes a catalog. Every command after it must still open the store.
#[test]
fn a_branch_at_an_old_lsn_then_written_then_a_detach_leaves_a_store_that_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("D");
    ok_json(pagefork(
        &dir,
        &["--json", "init", "--page-size", &PAGE_SIZE.to_string()],
    ));
    let mut early = String::new();
    for commit in 0..280u64 {
        let lsn = put(&dir, "main", 1, u32::try_from(commit % 50).unwrap(), commit);
        if commit == 5 {
            early = lsn;
        }
    }
    ok_json(pagefork(&dir, &["--json", "checkpoint"]));
    ok_json(pagefork(
        &dir,
        &["--json", "branch", "create", "old", "--lsn", &early],
    ));
    put(&dir, "old", 7, 7, 7);
    ok_json(pagefork(&dir, &["--json", "branch", "create", "d"]));
    ok_json(pagefork(&dir, &["--json", "branch", "detach", "d"]));
    let branches = ok_json(pagefork(&dir, &["--json", "branch", "list"]));
    assert_eq!(branches.as_array().unwrap().len(), 3, "{branches}");
    let read = pagefork(&dir, &["page", "get", "old", "7", "7"]);
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert_eq!(read.stdout, page(7));
    let read = pagefork(&dir, &["page", "get", "old", "1", "5"]);
    assert_eq!(
        read.stdout,
        page(5),
        "old shows main as it was at the 6th commit"
    );
}
