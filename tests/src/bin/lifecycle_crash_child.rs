//! Child process for the lifecycle crash test: commits, branch operations and GC until it
//! is killed.
//!
//! Usage: `lifecycle-crash-child DIR SEED`. Opens (or creates) the store in DIR
//! (`lifecycle_crash_config`: `SyncMode::Always`, tiny flush and compaction thresholds, a
//! 200 ms PITR window and background GC), continues numbering after the last commit on
//! `main`, prints `ready`, then loops. Commit `SEQ` writes `PAGES` pages of relation 1 on
//! `main` filled by `payload_for(SEQ, ..)` and prints `commit SEQ LSN`. After every 4th
//! commit, a round on a new branch `w-SEQ` of `main`:
//! - `branch w-SEQ SEQ` once created (it shows commit SEQ), then a commit of its own
//!   (marker `MARK + SEQ`, printed as `own w-SEQ MARK+SEQ`);
//! - then, by turns, a reset (`reset w-SEQ S`: it shows `main`'s head, commit S), a restore
//!   from `main` at a commit 8 back, without a backup (`restore w-SEQ S`; skipped if GC
//!   already collected that state), or a detach (`detached w-SEQ`);
//! - every 4th round an explicit GC (`gc N`: versions removed), and the branch of 6 rounds
//!   ago is deleted (`deleted NAME`).
//!
//! Every line is printed once the operation is acknowledged. The parent SIGKILLs it at a
//! random moment and checks the store against what was acknowledged.

use std::collections::BTreeMap;
use std::io::Write;

use bytes::Bytes;
use pagefork_engine::{At, Backup, BranchOptions, EngineError, Key, Lsn, Store, Update};
use pagefork_tests::{
    LIFECYCLE_CRASH_MARK, LIFECYCLE_CRASH_PAGES, TEST_PAGE_SIZE, lifecycle_crash_config,
    open_or_create, payload_for, seq_of_payload,
};

fn commit(store: &Store, branch: &str, seq: u64) -> Result<Lsn, EngineError> {
    let updates = (0..LIFECYCLE_CRASH_PAGES)
        .map(|block| {
            let page = Bytes::from(payload_for(seq, TEST_PAGE_SIZE));
            (Key::new(1, block), Update::Image(page))
        })
        .collect();
    Ok(store.commit(branch, updates)?.lsn)
}

/// Prints an acknowledgement and flushes it, so the parent sees it before any kill.
fn ack(line: String) {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").expect("write stdout");
    stdout.flush().expect("flush stdout");
}

/// Whether `error` is a refusal the workload expects now and then (GC collected the state
/// a restore wanted).
fn expected_refusal(error: &EngineError) -> bool {
    matches!(error, EngineError::BelowGcCutoff { .. })
}

fn main() -> Result<(), EngineError> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, _seed, backend] = args.as_slice() else {
        eprintln!("usage: lifecycle-crash-child DIR SEED BACKEND");
        std::process::exit(2);
    };
    let backend = backend.parse().expect("BACKEND is native or rocksdb");
    let store = open_or_create(dir, lifecycle_crash_config(backend))?;
    let last = store.get_page("main", Key::new(1, 0), At::Latest)?;
    let mut seq = last.map_or(0, |page| seq_of_payload(&page).expect("a test page") + 1);
    let mut recent: BTreeMap<u64, Lsn> = BTreeMap::new();
    ack("ready".to_owned());
    loop {
        let lsn = commit(&store, "main", seq)?;
        ack(format!("commit {seq} {lsn}"));
        recent.insert(seq, lsn);
        if seq % 4 == 0 {
            round(&store, seq, &recent)?;
        }
        seq += 1;
    }
}

fn round(store: &Store, seq: u64, recent: &BTreeMap<u64, Lsn>) -> Result<(), EngineError> {
    let name = format!("w-{seq}");
    store.create_branch(&name, "main", At::Latest, BranchOptions::default())?;
    ack(format!("branch {name} {seq}"));
    commit(store, &name, LIFECYCLE_CRASH_MARK + seq)?;
    ack(format!("own {name} {}", LIFECYCLE_CRASH_MARK + seq));
    match (seq / 4) % 3 {
        0 => {
            store.reset_branch(&name)?;
            ack(format!("reset {name} {seq}"));
        }
        1 => {
            if let Some((old, lsn)) = recent.range(..seq.saturating_sub(7)).next_back() {
                match store.restore_branch(&name, "main", At::Lsn(*lsn), Backup::Skip) {
                    Ok(_) => ack(format!("restore {name} {old}")),
                    Err(error) if expected_refusal(&error) => {}
                    Err(error) => return Err(error),
                }
            }
        }
        _ => {
            store.detach_branch(&name)?;
            ack(format!("detached {name}"));
        }
    }
    if (seq / 4) % 4 == 3 {
        let report = store.gc()?;
        ack(format!("gc {}", report.versions_removed));
    }
    let old = format!("w-{}", seq.saturating_sub(24));
    if seq >= 24 {
        match store.delete_branch(&old) {
            Ok(()) => ack(format!("deleted {old}")),
            Err(EngineError::UnknownBranch { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
