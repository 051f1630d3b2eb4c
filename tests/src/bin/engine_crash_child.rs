//! Child process for the engine crash test: commits until it is killed.
//!
//! Usage: `engine-crash-child DIR SEED`. Opens (or creates) the store in DIR with
//! `SyncMode::Always`, continues numbering after the last commit it finds, prints `ready`,
//! then loops: one commit writes `PAGES_PER_COMMIT` pages of relation 1 and appends as
//! many to relation 2 (at `appended_block(seq)`), each filled by `payload_for(seq, ..)`,
//! and prints `commit SEQ LSN` once acknowledged; every 16th commit
//! is followed by a branch `snap-SEQ` at the head, printed as `branch NAME LSN` once
//! acknowledged; every 64th by a checkpoint and every 64th (offset 32) by a compaction.
//! Every 16th commit not followed by a snapshot is followed, once there is a snapshot, by
//! a quiet branch `old-SEQ` at the oldest snapshot's branch point (below the oldest WAL
//! kept once catalogs removed some) with one commit of its own (commit SEQ's pages),
//! printed as `branch NAME LSN` once that commit is acknowledged; it is never written
//! again, so its commit stays unflushed while `main`'s flushes publish catalogs, until
//! the next flush of everything. Flush and compaction thresholds are tiny
//! (`crash_child_config`), so the background housekeeper is busy most of the time; if a
//! background cycle fails, the child prints `failed` and the error. The parent SIGKILLs
//! it at a random moment.

use std::io::Write;

use bytes::Bytes;
use pagefork_engine::{At, BranchOptions, EngineError, Key, Update};
use pagefork_tests::{
    TEST_PAGE_SIZE, TestRng, appended_block, crash_child_config, open_or_create, payload_for,
    seq_of_payload,
};

/// Pages every commit writes: a commit is visible whole or not at all.
const PAGES_PER_COMMIT: u32 = 8;

/// Commit `seq`'s pages: `PAGES_PER_COMMIT` pages of relation 1, rewritten by every
/// commit, and as many of relation 2 appended at ``appended_block(seq)``, so
/// flushes cut runs of relation 2 into files of their own and compaction moves them.
fn updates_of(seq: u64) -> Vec<(Key, Update)> {
    let page = Bytes::from(payload_for(seq, TEST_PAGE_SIZE));
    let rewritten = (0..PAGES_PER_COMMIT).map(|block| Key::new(1, block));
    let appended = (0..PAGES_PER_COMMIT).map(|offset| Key::new(2, appended_block(seq) + offset));
    rewritten
        .chain(appended)
        .map(|key| (key, Update::Image(page.clone())))
        .collect()
}

fn main() -> Result<(), EngineError> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, seed, backend] = args.as_slice() else {
        eprintln!("usage: engine-crash-child DIR SEED BACKEND");
        std::process::exit(2);
    };
    let mut rng = TestRng::new(seed.parse().expect("SEED is a number"));
    let backend = backend.parse().expect("BACKEND is native or rocksdb");
    let store = open_or_create(dir, crash_child_config(backend))?;
    let last = store.get_page("main", Key::new(1, 0), At::Latest)?;
    let mut seq = last.map_or(0, |page| seq_of_payload(&page).expect("a test page") + 1);
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ready").expect("write stdout");
    stdout.flush().expect("flush stdout");
    loop {
        let commit = store.commit("main", updates_of(seq))?;
        writeln!(stdout, "commit {seq} {}", commit.lsn).expect("write stdout");
        stdout.flush().expect("flush stdout");
        if seq % 16 == 0 && rng.in_range(0..2) == 0 {
            let name = format!("snap-{seq}");
            let info = store.create_branch(&name, "main", At::Latest, BranchOptions::default())?;
            let branch_point = info.parent.expect("a branch of main").lsn;
            writeln!(stdout, "branch {name} {branch_point}").expect("write stdout");
            stdout.flush().expect("flush stdout");
        } else if seq % 16 == 0 {
            let oldest = store
                .list_branches()
                .into_iter()
                .filter(|info| info.name.starts_with("snap-"))
                .filter_map(|info| info.parent.map(|parent| parent.lsn))
                .min();
            if let Some(branch_point) = oldest {
                let name = format!("old-{seq}");
                store.create_branch(
                    &name,
                    "main",
                    At::Lsn(branch_point),
                    BranchOptions::default(),
                )?;
                store.commit(&name, updates_of(seq))?;
                writeln!(stdout, "branch {name} {branch_point}").expect("write stdout");
                stdout.flush().expect("flush stdout");
            }
        }
        if store.stats().housekeeping_failures > 0 {
            let error = store.housekeeping_error();
            writeln!(stdout, "failed {error:?}").expect("write stdout");
            stdout.flush().expect("flush stdout");
        }
        if seq % 64 == 63 {
            // Kills also land in the middle of checkpoints and WAL truncation.
            store.checkpoint()?;
        }
        if seq % 64 == 31 {
            store.compact()?;
        }
        seq += 1;
    }
}
