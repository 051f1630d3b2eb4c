//! Commit runs: a branch's commit points live in immutable files under `commits/` that
//! the catalog lists, so the catalog does not grow with the number of commits. These
//! tests check the bound, the answers PITR gives from runs before and after a reopen and
//! a detach, and that a missing, damaged or reordered run is refused by name while
//! nothing on disk changes.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use pagefork_engine::{
    At, BranchOptions, Commit, EngineError, Key, ManualClock, Store, SyncMode, TimeKind, Timestamp,
    Update,
};
use pagefork_tests::{
    engine_config, manual_housekeeping, open_fails_changing_nothing, page_of, sorted_files,
};

fn run_files(dir: &Path) -> Vec<PathBuf> {
    sorted_files(&dir.join("commits"))
}

/// Commits one page to `branch` `count` times, 1 ms apart; returns the commits.
fn commit_many(store: &Store, clock: &ManualClock, branch: &str, count: u32) -> Vec<Commit> {
    (0..count)
        .map(|index| {
            clock.advance(Duration::from_millis(1));
            store
                .commit(
                    branch,
                    vec![(Key::new(1, index % 16), Update::Image(page_of(index as u8)))],
                )
                .unwrap()
        })
        .collect()
}

/// Checks what `lsn_for_time` and `commit_time_at` answer on `branch` against the
/// commits made, at each commit's time, just before it, and between commits.
fn check_answers(store: &Store, branch: &str, commits: &[Commit]) {
    for (index, commit) in commits.iter().enumerate().step_by(97) {
        let answer = store.lsn_for_time(branch, commit.time).unwrap();
        assert_eq!(
            (answer.lsn, answer.commit_time),
            (commit.lsn, Some(commit.time)),
            "commit {index}"
        );
        let between = Timestamp(commit.time.0 + 500);
        assert_eq!(
            store.lsn_for_time(branch, between).unwrap().lsn,
            commit.lsn,
            "half a millisecond after commit {index}"
        );
        if let Some(previous) = index.checked_sub(1).map(|previous| commits[previous]) {
            let before = Timestamp(commit.time.0 - 1);
            assert_eq!(
                store.lsn_for_time(branch, before).unwrap().lsn,
                previous.lsn,
                "just before commit {index}"
            );
        }
        assert_eq!(
            store.commit_time_at(branch, commit.lsn).unwrap(),
            Some(commit.time),
            "at commit {index}'s LSN"
        );
    }
}

/// Twenty thousand commits through the store's own housekeeping (a catalog every 16 KiB
/// of log, so hundreds of them): the catalog holds no commit point, where it held every
/// one before (about 16 bytes each, 320 KB here); a branch keeps a logarithmic number of
/// runs; PITR answers the same before and after a reopen.
#[test]
fn the_catalog_does_not_grow_with_commits_and_runs_answer_pitr_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = engine_config(SyncMode::Never);
    let store = Store::create(dir.path(), config.clone()).unwrap();
    let commits = commit_many(&store, &clock, "main", 20_000);
    store.checkpoint().unwrap();
    let files = store.files(false).unwrap();
    let main = files.branches.iter().find(|b| b.name == "main").unwrap();
    assert_eq!(main.commit_points, 20_000);
    let in_runs: u64 = main.commit_runs.iter().map(|run| run.points).sum();
    assert_eq!(
        in_runs, 20_000,
        "a checkpoint leaves no point only in memory"
    );
    assert!(
        main.commit_runs.len() <= 16,
        "{} runs for 20,000 points: merges do not keep up",
        main.commit_runs.len()
    );
    // The catalog lists layer files (about 100 bytes each: tiny thresholds make many) and
    // little else; 20,000 points in it would be 320 KB more.
    let layers: usize = files.branches.iter().map(|b| b.layers.len()).sum();
    let runs = main.commit_runs.len();
    let bound = 4096 + 128 * (layers + runs) as u64;
    assert!(
        files.catalog_bytes < bound,
        "the catalog is {} bytes, over {bound} for {layers} layers and {runs} runs: it grows with the commits",
        files.catalog_bytes
    );
    assert_eq!(run_files(dir.path()).len(), main.commit_runs.len());
    check_answers(&store, "main", &commits);
    drop(store);

    let store = Store::open_with(dir.path(), config).unwrap();
    check_answers(&store, "main", &commits);
    let first = commits[0];
    let past = store
        .lsn_for_time("main", Timestamp(first.time.0 - 1))
        .unwrap();
    assert_eq!(past.kind, TimeKind::Past);
    // Commits after the reopen go on from the runs: a tail, then a run of their own.
    let more = commit_many(&store, &clock, "main", 300);
    store.checkpoint().unwrap();
    let all: Vec<Commit> = commits.iter().chain(&more).copied().collect();
    check_answers(&store, "main", &all);
}

/// A branch detached from a parent whose points are in runs keeps every answer; its
/// copies of the parent's points are written as a run of its own, which a reopen reads
/// back, and the parent can then be deleted.
#[test]
fn a_detached_branch_keeps_its_old_parents_commit_times_through_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = engine_config(SyncMode::Never);
    let config = manual_housekeeping(config);
    let store = Store::create(dir.path(), config.clone()).unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.extend(commit_many(&store, &clock, "main", 40));
        store.checkpoint().unwrap();
    }
    let point = seen[100];
    store
        .create_branch("dev", "main", At::Lsn(point.lsn), BranchOptions::default())
        .unwrap();
    seen.truncate(101);
    seen.extend(commit_many(&store, &clock, "dev", 50));
    store.checkpoint().unwrap();
    check_answers(&store, "dev", &seen);
    store.detach_branch("dev").unwrap();
    check_answers(&store, "dev", &seen);
    store.checkpoint().unwrap();
    store.delete_branch("main").unwrap();
    store.checkpoint().unwrap();
    drop(store);

    let store = Store::open_with(dir.path(), config).unwrap();
    check_answers(&store, "dev", &seen);
    let files = store.files(false).unwrap();
    let dev = files.branches.iter().find(|b| b.name == "dev").unwrap();
    assert_eq!(dev.commit_points, seen.len() as u64);
    // Only dev's runs are left: main's went with it.
    let prefix = format!("{:016X}-", dev.id.0);
    let names: Vec<String> = run_files(dir.path())
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.is_empty() && names.iter().all(|name| name.starts_with(&prefix)),
        "{names:?}"
    );
}

/// A store with main's commits in two runs (of 8 points, then 1).
fn store_with_runs(dir: &Path) -> Store {
    let (config, clock) = engine_config(SyncMode::Always);
    let store = Store::create(dir, manual_housekeeping(config)).unwrap();
    commit_many(&store, &clock, "main", 8);
    store.checkpoint().unwrap();
    commit_many(&store, &clock, "main", 1);
    store.checkpoint().unwrap();
    store
}

fn reopen(dir: &Path) -> Result<Store, EngineError> {
    let (config, _clock) = engine_config(SyncMode::Always);
    Store::open_with(dir, manual_housekeeping(config))
}

/// Rewrites the run at `path` with `change` applied to its bytes, its own checksum made
/// right again and the catalog's record of it too: damage only the order checks can
/// find.
fn forge_run(dir: &Path, path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    let body = bytes.len() - 4;
    // The catalog lists a run's own CRC32, the one its trailer holds.
    let old_crc = u32::from_le_bytes(bytes[body..].try_into().unwrap());
    change(&mut bytes);
    let new_crc = crc32fast::hash(&bytes[..body]);
    bytes[body..].copy_from_slice(&new_crc.to_le_bytes());
    std::fs::write(path, &bytes).unwrap();
    let catalog_path = dir.join("catalog");
    let mut catalog = std::fs::read(&catalog_path).unwrap();
    let at = catalog
        .windows(4)
        .position(|window| window == old_crc.to_le_bytes())
        .unwrap();
    catalog[at..at + 4].copy_from_slice(&new_crc.to_le_bytes());
    let body = catalog.len() - 4;
    let crc = crc32fast::hash(&catalog[..body]);
    catalog[body..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&catalog_path, &catalog).unwrap();
}

/// A run whose checksums are right but whose points are out of order (a bug, or a forged
/// file) is refused naming the file and the offset, not trusted and not a panic.
#[test]
fn a_commit_run_with_points_out_of_order_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_runs(dir.path()));
    let runs = run_files(dir.path());
    assert_eq!(runs.len(), 2, "{runs:?}");
    forge_run(dir.path(), &runs[0], |bytes| {
        let (first, second) = (bytes[32..48].to_vec(), bytes[48..64].to_vec());
        bytes[32..48].copy_from_slice(&second);
        bytes[48..64].copy_from_slice(&first);
    });
    let error = open_fails_changing_nothing(dir.path(), || reopen(dir.path()));
    assert!(
        matches!(&error, EngineError::CorruptFile { path, offset: 48, reason }
            if path == &runs[0] && reason.contains("comes after")),
        "{error}"
    );
}

/// Two runs that are each in order but overlap are refused naming the later one.
#[test]
fn commit_runs_out_of_order_with_each_other_are_refused_naming_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_runs(dir.path());
    let main = store.branch_info("main").unwrap().id;
    drop(store);
    let runs = run_files(dir.path());
    // The newer run's one point moved below the older run's last.
    let older = std::fs::read(&runs[0]).unwrap();
    let older_last_lsn =
        u64::from_le_bytes(older[32 + 7 * 16..32 + 7 * 16 + 8].try_into().unwrap());
    let renamed = runs[1].with_file_name(format!(
        "{:016X}-{:016X}-{:016X}.commits",
        main.0,
        older_last_lsn - 1,
        older_last_lsn - 1
    ));
    forge_run(dir.path(), &runs[1], |bytes| {
        bytes[32..40].copy_from_slice(&(older_last_lsn - 1).to_le_bytes());
    });
    // The catalog names the run by its range: rename both.
    std::fs::rename(&runs[1], &renamed).unwrap();
    let catalog_path = dir.path().join("catalog");
    let mut catalog = std::fs::read(&catalog_path).unwrap();
    let old_name = runs[1].file_name().unwrap().to_string_lossy().into_owned();
    let new_name = renamed.file_name().unwrap().to_string_lossy().into_owned();
    let at = catalog
        .windows(old_name.len())
        .position(|window| window == old_name.as_bytes())
        .unwrap();
    catalog[at..at + old_name.len()].copy_from_slice(new_name.as_bytes());
    let body = catalog.len() - 4;
    let crc = crc32fast::hash(&catalog[..body]);
    catalog[body..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&catalog_path, &catalog).unwrap();

    let error = open_fails_changing_nothing(dir.path(), || reopen(dir.path()));
    assert!(
        matches!(&error, EngineError::CorruptFile { path, reason, .. }
            if path == &catalog_path && reason.contains(&new_name)
                && reason.contains("which does not follow the last point before it")),
        "{error}"
    );
}

/// A listed run that is missing, cut short, or has a flipped bit is refused naming the
/// file; nothing on disk changes. So is a directory or a FIFO in its place (a FIFO made
/// every command hang, found by a review).
#[test]
fn a_missing_or_damaged_commit_run_is_refused_by_name() {
    for damage in ["missing", "cut", "flipped", "directory", "fifo"] {
        let dir = tempfile::tempdir().unwrap();
        drop(store_with_runs(dir.path()));
        let run = run_files(dir.path())[0].clone();
        match damage {
            "missing" => std::fs::remove_file(&run).unwrap(),
            "cut" => {
                let bytes = std::fs::read(&run).unwrap();
                std::fs::write(&run, &bytes[..bytes.len() - 16]).unwrap();
            }
            "directory" => {
                std::fs::remove_file(&run).unwrap();
                std::fs::create_dir(&run).unwrap();
            }
            "fifo" => {
                std::fs::remove_file(&run).unwrap();
                let made = std::process::Command::new("mkfifo").arg(&run).status();
                assert!(made.unwrap().success(), "mkfifo (coreutils) is needed");
            }
            _ => {
                let mut bytes = std::fs::read(&run).unwrap();
                bytes[40] ^= 0x08;
                std::fs::write(&run, &bytes).unwrap();
            }
        }
        let error = open_fails_changing_nothing(dir.path(), || reopen(dir.path()));
        let named = match (&error, damage) {
            (EngineError::Io { path, source, .. }, "directory" | "fifo") => {
                path == &run && source.to_string().contains("not a regular file")
            }
            (EngineError::CorruptFile { path, .. }, _) => path == &run,
            _ => false,
        };
        assert!(named, "{damage}: {error}");
    }
}

/// Runs no catalog lists (written by a cycle whose catalog a crash stopped) and their
/// temporary files are debris: an open removes them and keeps the listed ones.
#[test]
fn unlisted_commit_runs_are_debris_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_runs(dir.path()));
    let listed = run_files(dir.path());
    let commits = dir.path().join("commits");
    let debris = [
        commits.join("0000000000000001-0000000000FFFF00-0000000000FFFF80.commits"),
        commits.join("0000000000000001-0000000000FFFF00-0000000000FFFF80.commits.tmp"),
    ];
    for file in &debris {
        std::fs::write(file, b"left by a crash").unwrap();
    }
    let other = commits.join("notes.txt");
    std::fs::write(&other, b"not the store's").unwrap();
    drop(reopen(dir.path()).unwrap());
    let mut expected = listed;
    expected.push(other);
    expected.sort();
    assert_eq!(run_files(dir.path()), expected);
}
