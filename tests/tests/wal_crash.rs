//! Crash test: a child process appends with group commit from several threads and prints
//! every acknowledged LSN; we SIGKILL it at a random moment, reopen the log, and check that
//! every acknowledged record is there, intact. Repeated on the same log, so later runs also
//! recover logs that earlier kills left behind.
//!
//! `PAGEFORK_CRASH_SEED` replays a run; `PAGEFORK_CRASH_KILLS` sets the number of kills
//! (default 25).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use pagefork_tests::{TestRng, crash_kills, run_then_sigkill, seed_from_env, seq_of_payload};
use pagefork_wal::{Lsn, Wal, WalConfig};

#[test]
fn acknowledged_records_survive_sigkill() {
    let seed = seed_from_env("PAGEFORK_CRASH_SEED");
    let kills = crash_kills(25);
    println!("crash test seed {seed} ({kills} kills): rerun with PAGEFORK_CRASH_SEED={seed}");
    let mut rng = TestRng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged: BTreeMap<u64, Lsn> = BTreeMap::new();
    let mut total_acks_at_kill = 0;

    for kill in 0..kills {
        let threads = rng.in_range(1..5);
        let mut command = Command::new(env!("CARGO_BIN_EXE_wal-crash-child"));
        command
            .arg(dir.path())
            .arg(rng.next_u64().to_string())
            .arg(threads.to_string());
        let lines = run_then_sigkill(command, Duration::from_millis(rng.in_range(1..60)));
        let mut acks_this_run = 0;
        for line in lines {
            let mut words = line.split(' ');
            assert_eq!(words.next(), Some("ack"), "unexpected line {line:?}");
            let seq: u64 = words.next().unwrap().parse().unwrap();
            let lsn: Lsn = words.next().unwrap().parse().unwrap();
            acknowledged.insert(seq, lsn);
            acks_this_run += 1;
        }
        total_acks_at_kill += acks_this_run;

        let (wal, report) = Wal::open(dir.path(), WalConfig::default())
            .unwrap_or_else(|error| panic!("kill {kill} (seed {seed}): reopen failed: {error}"));
        let mut recovered: BTreeMap<u64, Lsn> = BTreeMap::new();
        for record in wal.read_from(wal.oldest_lsn()).unwrap() {
            let record = record.unwrap();
            let seq = seq_of_payload(&record.payload).unwrap_or_else(|| {
                panic!(
                    "kill {kill} (seed {seed}): record at {} damaged",
                    record.end
                )
            });
            assert!(
                recovered.insert(seq, record.end).is_none(),
                "seq {seq} twice"
            );
        }
        assert_eq!(recovered.len() as u64, report.records);
        for (seq, lsn) in &acknowledged {
            assert_eq!(
                recovered.get(seq),
                Some(lsn),
                "kill {kill} (seed {seed}): acknowledged record {seq} at {lsn} lost"
            );
        }
    }
    assert!(
        total_acks_at_kill > 0,
        "the children acknowledged records before being killed"
    );
    println!(
        "{kills} kills, {} acknowledged records, 0 lost",
        acknowledged.len()
    );
}
