//! Opening a store with the `pagefork` binary after the operations users combine: every
//! catalog a command publishes can be opened again (issue 18), and what recovery does is
//! said, never silent.

// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::path::Path;

use pagefork_engine::{Config, Key, Store, SyncMode, Update};
use pagefork_tests::tree_snapshot;
use serde_json::Value;
use support::cli::{ok_json, pagefork, pagefork_with_stdin};

const PAGE_SIZE: usize = 65536;

fn page(tag: u64) -> Vec<u8> {
    tag.to_le_bytes().repeat(PAGE_SIZE / 8)
}

/// `pagefork init` of a store with `PAGE_SIZE`-byte pages in `dir`.
fn init(dir: &Path) {
    ok_json(pagefork(
        dir,
        &["--json", "init", "--page-size", &PAGE_SIZE.to_string()],
    ));
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
    init(&dir);
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

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    files.sort();
    files
}

/// A store of 8 KiB pages at the default segment size whose WAL spans two segments, the
/// second holding the last commits; built through the library (thousands of `page put`
/// processes would take minutes), used through the binary.
fn store_over_two_segments(dir: &Path) {
    let config = Config {
        sync_mode: SyncMode::Never,
        ..Config::default()
    };
    let store = Store::create(dir, config).unwrap();
    let mut block = 0u32;
    while segments(dir).len() < 2 || !block.is_multiple_of(100) {
        let page = u64::from(block).to_le_bytes().repeat(8192 / 8);
        store
            .commit(
                "main",
                vec![(Key::new(1, block), Update::Image(page.into()))],
            )
            .unwrap();
        block += 1;
    }
    drop(store);
}

/// `recover` on a store whose last segment was cut mid-record (a bad copy, a full disk):
/// without `--salvage` it says what is damaged and what salvage would discard, and
/// changes nothing; with it, the log is cut at the last good record and the store opens.
#[test]
fn recover_explains_a_cut_segment_and_salvage_makes_the_store_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    store_over_two_segments(&dir);
    let last = segments(&dir).pop().unwrap();
    let bytes = std::fs::read(&last).unwrap();
    let used = bytes.iter().rposition(|&b| b != 0).unwrap();
    std::fs::write(&last, &bytes[..used / 2]).unwrap();

    let refused = pagefork(&dir, &["branch", "list"]);
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("the segment size is 16777216"),
        "{message}"
    );

    let before = tree_snapshot(&dir);
    let check = pagefork(&dir, &["--json", "recover"]);
    assert_eq!(check.status.code(), Some(1), "damage exits 1");
    let answer: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(answer["status"], "damaged", "{answer}");
    assert!(answer["damage"].as_str().unwrap().contains("16777216"));
    let would_end = answer["wal"]["end"].as_str().unwrap().to_owned();
    assert!(answer["wal"]["salvaged_corruption"].is_string(), "{answer}");
    assert_eq!(
        before,
        tree_snapshot(&dir),
        "recover without --salvage changed nothing"
    );

    let salvaged = ok_json(pagefork(&dir, &["--json", "recover", "--salvage"]));
    assert_eq!(salvaged["status"], "salvaged", "{salvaged}");
    assert_eq!(
        salvaged["wal"]["end"],
        would_end.as_str(),
        "salvage did what the check said"
    );
    let branches = ok_json(pagefork(&dir, &["--json", "branch", "list"]));
    assert_eq!(branches.as_array().unwrap().len(), 1);
    let clean = ok_json(pagefork(&dir, &["--json", "recover"]));
    assert_eq!(clean["status"], "clean");
    // What the first segment held is all there.
    let read = pagefork(&dir, &["page", "get", "main", "1", "5"]);
    assert_eq!(read.stdout, 5u64.to_le_bytes().repeat(8192 / 8));
}

/// A deleted last segment: its predecessor's segment-end frame promises it, so opening
/// is refused naming it; salvage accepts the loss, explicitly.
#[test]
fn a_deleted_last_segment_is_refused_and_salvage_says_what_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    store_over_two_segments(&dir);
    let last = segments(&dir).pop().unwrap();
    std::fs::remove_file(&last).unwrap();
    let refused = pagefork(&dir, &["branch", "list"]);
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains(&format!("WAL segment {} is missing", last.display())),
        "{message}"
    );
    let check = pagefork(&dir, &["recover"]);
    assert_eq!(check.status.code(), Some(1));
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        text.contains("is missing") && text.contains("--salvage"),
        "{text}"
    );
    let salvaged = ok_json(pagefork(&dir, &["--json", "recover", "--salvage"]));
    assert_eq!(salvaged["status"], "salvaged");
    ok_json(pagefork(&dir, &["--json", "branch", "list"]));
}

/// A torn record after the log's end (a crash mid-write): every command opens the store
/// and says on stderr, in one line, what it dropped; with `--json`, as JSON.
#[test]
fn a_torn_tail_is_reported_on_stderr_by_the_command_that_drops_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    ok_json(pagefork(&dir, &["--json", "init"]));
    let lsn = put_page(&dir);
    let last = segments(&dir).pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    // The first segment starts at LSN 0, so the last record's LSN is its end's offset.
    let end =
        usize::try_from(u64::from_str_radix(lsn.trim_start_matches("0/"), 16).unwrap()).unwrap();
    bytes[end..end + 100].fill(0x5A);
    std::fs::write(&last, &bytes).unwrap();
    let mut damaged = bytes.clone();
    // recover lists it, not as clean (found by a review: a damaged last record, which
    // looks the same, was called clean), and drops nothing.
    let checked = pagefork(&dir, &["--json", "recover"]);
    assert_eq!(checked.status.code(), Some(0));
    let checked: Value = serde_json::from_slice(&checked.stdout).unwrap();
    assert_eq!(checked["status"], "torn_tail", "{checked}");
    assert_eq!(checked["wal"]["dropped_tail"]["bytes"], 100, "{checked}");
    // In text, what an open would do, not what was done (found by a review: it said
    // "removed segment" of a segment it left in place).
    let told = pagefork(&dir, &["recover"]);
    let told = String::from_utf8_lossy(&told.stdout);
    assert!(
        told.contains(&format!("an open drops from {}", last.display())),
        "{told}"
    );
    let json = pagefork(&dir, &["--json", "branch", "list"]);
    assert!(json.status.success());
    let line: Value = serde_json::from_slice(&json.stderr).unwrap();
    assert_eq!(line["recovery"]["dropped_tail"]["bytes"], 100, "{line}");
    assert_eq!(
        line["recovery"]["dropped_tail"]["segment"],
        last.display().to_string()
    );
    // Again in text: one line naming the segment, the LSN range, bytes and records.
    damaged[end..end + 100].fill(0x5A);
    std::fs::write(&last, &damaged).unwrap();
    let text = pagefork(&dir, &["branch", "list"]);
    let stderr = String::from_utf8_lossy(&text.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&last.display().to_string())
            && stderr.contains("100 bytes")
            && stderr.contains("a torn or damaged record, then 0 valid records"),
        "{stderr}"
    );
    // Dropped once: the next open says nothing.
    let quiet = pagefork(&dir, &["branch", "list"]);
    assert!(
        quiet.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );
}

/// Commits one page on main; returns its LSN.
fn put_page(dir: &Path) -> String {
    let out = ok_json(pagefork_with_stdin(
        dir,
        &["--json", "page", "put", "main", "1", "0"],
        &[0xEE; 8192],
    ));
    out["lsn"].as_str().unwrap().to_owned()
}

/// Found by a review: with its `pagefork.remote` damaged every command refused the store,
/// while `recover` said it opened and there was nothing to salvage. Now `recover` (with or
/// without `--salvage`) says it is damaged, naming the file, exits 1 and changes nothing.
#[test]
fn regression_recover_reports_a_damaged_remote_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    init(&dir);
    put(&dir, "main", 1, 0, 1);
    std::fs::write(dir.join("pagefork.remote"), b"not a record").unwrap();
    let refused = pagefork(&dir, &["branch", "list"]);
    assert_eq!(refused.status.code(), Some(1));
    let before = tree_snapshot(&dir);
    for args in [
        &["--json", "recover"][..],
        &["--json", "recover", "--salvage"],
    ] {
        let answer = pagefork(&dir, args);
        assert_eq!(answer.status.code(), Some(1), "{args:?}");
        let answer: Value = serde_json::from_slice(&answer.stdout).unwrap();
        assert_eq!(answer["status"], "unsalvageable", "{answer}");
        assert!(
            answer["damage"]
                .as_str()
                .unwrap()
                .contains("pagefork.remote"),
            "{answer}"
        );
        assert_eq!(before, tree_snapshot(&dir), "{args:?} changed the store");
    }
}

/// `init` over a store that lost its `pagefork.meta` refuses and changes nothing; every
/// command says to restore the file (found by a review: `init` wiped the store's log,
/// which the "missing" message had led the user to run).
#[test]
fn regression_init_does_not_overwrite_a_store_that_lost_its_metadata() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    init(&dir);
    put(&dir, "main", 1, 0, 42);
    std::fs::remove_file(dir.join("pagefork.meta")).unwrap();
    let before = tree_snapshot(&dir);
    let listed = pagefork(&dir, &["branch", "list"]);
    let message = String::from_utf8_lossy(&listed.stderr);
    assert!(
        !listed.status.success() && message.contains("restore pagefork.meta"),
        "{message}"
    );
    // recover answers in JSON when asked, as for any damage (it printed an error line).
    let checked = pagefork(&dir, &["--json", "recover"]);
    assert_eq!(checked.status.code(), Some(1));
    let checked: Value = serde_json::from_slice(&checked.stdout).unwrap();
    assert_eq!(checked["status"], "unsalvageable", "{checked}");
    let again = pagefork(&dir, &["init"]);
    let message = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && message.contains("not creating a store over them"),
        "{message}"
    );
    assert_eq!(
        tree_snapshot(&dir),
        before,
        "a refused init changed the store"
    );
}

/// A layer file damaged in a data block (which an open does not read) is damage to
/// `recover`, named with its offset, and changes nothing (found by a review: "clean").
#[test]
fn regression_recover_reads_every_layer_in_full() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    init(&dir);
    for block in 0..3 {
        put(&dir, "main", 1, block, u64::from(block) + 1);
    }
    ok_json(pagefork(&dir, &["--json", "checkpoint"]));
    let layers: Vec<_> = std::fs::read_dir(dir.join("layers"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(layers.len(), 1, "{layers:?}");
    let mut bytes = std::fs::read(&layers[0]).unwrap();
    bytes[100] ^= 0xFF;
    std::fs::write(&layers[0], &bytes).unwrap();
    let before = tree_snapshot(&dir);
    let output = pagefork(&dir, &["recover"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let name = layers[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&name)
            && stdout.contains("offset")
            && stdout.contains("salvage cannot help"),
        "{stdout}"
    );
    assert_eq!(tree_snapshot(&dir), before, "recover changed the store");
    // Salvage cannot mend it, and says so without cutting anything (it said "salvaged").
    let salvaged = pagefork(&dir, &["recover", "--salvage"]);
    let stdout = String::from_utf8_lossy(&salvaged.stdout);
    assert_eq!(salvaged.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("salvage cannot help"), "{stdout}");
    assert_eq!(
        tree_snapshot(&dir),
        before,
        "a refused salvage changed the store"
    );
}
