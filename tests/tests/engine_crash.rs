//! Engine crash test: a child process commits multi-page commits (and now and then creates
//! a branch) with `SyncMode::Always`, printing each acknowledgement; we SIGKILL it at a
//! random moment and reopen. Every acknowledged commit must be there, whole, at its LSN;
//! every acknowledged branch must exist with its branch point; and no commit may be half
//! visible: at the head all pages carry the same commit. Repeated on the same store. The
//! child's flush and compaction thresholds are tiny, so kills land in the middle of
//! flushes, L0 merges, image writes, catalog publication and WAL removal; its WAL
//! segments are small, so catalogs remove WAL all the time, and its quiet `old-` branches
//! (at the oldest snapshot's branch point, below the oldest WAL kept, with one unflushed
//! commit) are in most catalogs `main`'s flushes publish (issue 18). A background cycle
//! that fails in the child fails the test.
//!
//! `PAGEFORK_CRASH_SEED` replays a run; `PAGEFORK_CRASH_KILLS` sets the kills (default 20).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use pagefork_engine::{At, Backend, Key, Lsn, Store};
use pagefork_tests::{
    TestRng, appended_block, backends, crash_child_config, crash_kills, run_then_sigkill,
    seed_from_env, seq_of_payload,
};

const PAGES_PER_COMMIT: u32 = 8;

/// The commit whose pages `main` shows at `at`, checking that all pages agree.
fn whole_commit_at(store: &Store, at: At) -> Option<u64> {
    let seqs: Vec<Option<u64>> = (0..PAGES_PER_COMMIT)
        .map(|block| {
            store
                .get_page("main", Key::new(1, block), at)
                .unwrap()
                .map(|page| seq_of_payload(&page).expect("an intact test page"))
        })
        .collect();
    assert!(
        seqs.windows(2).all(|pair| pair[0] == pair[1]),
        "a commit is half visible at {at:?}: {seqs:?}"
    );
    seqs[0]
}

#[test]
fn acknowledged_commits_and_branches_survive_sigkill_whole() {
    for backend in backends() {
        sigkill_runs(backend);
    }
}

/// The kills, on a store with `backend`.
fn sigkill_runs(backend: Backend) {
    let seed = seed_from_env("PAGEFORK_CRASH_SEED");
    let kills = crash_kills(20);
    println!(
        "engine crash test ({backend}) seed {seed} ({kills} kills): rerun with PAGEFORK_CRASH_SEED={seed}"
    );
    let mut rng = TestRng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut commits: BTreeMap<u64, Lsn> = BTreeMap::new();
    let mut branches: BTreeMap<String, Lsn> = BTreeMap::new();

    for kill in 0..kills {
        let mut command = Command::new(env!("CARGO_BIN_EXE_engine-crash-child"));
        command
            .arg(dir.path())
            .arg(rng.next_u64().to_string())
            .arg(backend.name());
        let lines = run_then_sigkill(command, Duration::from_millis(rng.in_range(5..80)));
        for line in lines {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["commit", seq, lsn] => {
                    commits.insert(seq.parse().unwrap(), lsn.parse().unwrap());
                }
                ["branch", name, lsn] => {
                    branches.insert((*name).to_owned(), lsn.parse().unwrap());
                }
                ["failed", ..] => panic!("kill {kill} (seed {seed}): the child's {line}"),
                _ => panic!("unexpected line {line:?}"),
            }
        }

        let store = Store::open_with(dir.path(), crash_child_config(backend))
            .unwrap_or_else(|error| panic!("kill {kill} (seed {seed}): reopen failed: {error}"));
        for (seq, lsn) in &commits {
            assert_eq!(
                whole_commit_at(&store, At::Lsn(*lsn)),
                Some(*seq),
                "kill {kill} (seed {seed}): acknowledged commit {seq} at {lsn} lost"
            );
        }
        // Every acknowledged commit's appended pages of relation 2, at the head (moved
        // files among them once compaction ran).
        for seq in commits.keys() {
            for offset in 0..PAGES_PER_COMMIT {
                let key = Key::new(2, appended_block(*seq) + offset);
                let page = store.get_page("main", key, At::Latest).unwrap();
                assert_eq!(
                    page.and_then(|page| seq_of_payload(&page)),
                    Some(*seq),
                    "kill {kill} (seed {seed}): appended page {key} of commit {seq} lost"
                );
            }
        }
        let head = whole_commit_at(&store, At::Latest);
        if let Some((last_acked, _)) = commits.last_key_value() {
            assert!(
                head >= Some(*last_acked),
                "the head is behind an acknowledged commit"
            );
        }
        for (name, branch_point) in &branches {
            let info = store.branch_info(name).unwrap_or_else(|error| {
                panic!("kill {kill} (seed {seed}): acknowledged branch lost: {error}")
            });
            assert_eq!(info.parent.unwrap().lsn, *branch_point);
            let seq: u64 = name
                .trim_start_matches("snap-")
                .trim_start_matches("old-")
                .parse()
                .unwrap();
            let page = store
                .get_page(name, Key::new(1, 0), At::Latest)
                .unwrap()
                .unwrap();
            assert_eq!(
                seq_of_payload(&page),
                Some(seq),
                "branch {name} shows its commit"
            );
        }
    }
    assert!(
        !commits.is_empty(),
        "the children acknowledged commits before being killed"
    );
    if backend == Backend::Native {
        let layers: Vec<String> = std::fs::read_dir(dir.path().join("layers"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        for level in [".l1", ".image"] {
            assert!(
                layers.iter().any(|name| name.ends_with(level)),
                "housekeeping wrote {level} layers while the children ran: {layers:?}"
            );
        }
        // Files written as L0 that the catalog lists at L1: moved, not merged.
        let store = Store::open_with(dir.path(), crash_child_config(backend)).unwrap();
        let written_at_l1 = layers.iter().filter(|name| name.ends_with(".l1")).count();
        assert!(
            store.stats().layers_l1 as usize > written_at_l1,
            "compaction moved files while the children ran: {} L1 layers, {written_at_l1} written as L1",
            store.stats().layers_l1
        );
    } else {
        let flushes = Store::open_with(dir.path(), crash_child_config(backend))
            .unwrap()
            .stats();
        assert!(flushes.rocksdb_bytes > 0, "the children flushed to RocksDB");
    }
    println!(
        "{backend}: {kills} kills: {} acknowledged commits and {} branches, none lost",
        commits.len(),
        branches.len()
    );
}
