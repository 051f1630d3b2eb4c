//! Crash test: a child process appends with group commit from several threads and prints
//! every acknowledged LSN; we SIGKILL it at a random moment, reopen the log, and check that
//! every acknowledged record is there, intact. Repeated on the same log, so later runs also
//! recover logs that earlier kills left behind.
//!
//! `PAGEFORK_CRASH_SEED` replays a run; `PAGEFORK_CRASH_KILLS` sets the number of kills
//! (default 25).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use pagefork_tests::{TestRng, seed_from_env, seq_of_payload};
use pagefork_wal::{Lsn, Wal, WalConfig};

#[test]
fn acknowledged_records_survive_sigkill() {
    let seed = seed_from_env("PAGEFORK_CRASH_SEED");
    let kills: u64 = std::env::var("PAGEFORK_CRASH_KILLS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(25);
    println!("crash test seed {seed} ({kills} kills): rerun with PAGEFORK_CRASH_SEED={seed}");
    let mut rng = TestRng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged: BTreeMap<u64, Lsn> = BTreeMap::new();
    let mut total_acks_at_kill = 0;

    for kill in 0..kills {
        let threads = rng.in_range(1..5);
        let mut child = Command::new(env!("CARGO_BIN_EXE_wal-crash-child"))
            .arg(dir.path())
            .arg(rng.next_u64().to_string())
            .arg(threads.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the child");
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        assert_eq!(
            lines_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("child starts"),
            "ready"
        );
        std::thread::sleep(Duration::from_millis(rng.in_range(1..60)));
        child.kill().expect("SIGKILL the child");
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child was killed, it did not exit");
        reader.join().unwrap();
        let mut acks_this_run = 0;
        for line in lines_rx.try_iter() {
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
