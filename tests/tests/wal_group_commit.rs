//! Concurrent appenders: LSNs strictly increase per thread and are unique across threads,
//! and every record reads back, in every sync mode.

use std::collections::BTreeMap;
use std::time::Duration;

use pagefork_tests::{payload_for, seq_of_payload};
use pagefork_wal::{Lsn, SyncMode, Wal, WalConfig};

fn run(sync_mode: SyncMode, threads: u64, per_thread: u64) {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig {
        segment_size: 256 * 1024,
        sync_mode,
        ..WalConfig::default()
    };
    let wal = Wal::create(dir.path(), config).unwrap();
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut last_end = Lsn::INVALID;
                for i in 0..per_thread {
                    let seq = thread * per_thread + i;
                    let len = 8 + (seq % 7) as usize * 1000;
                    let (start, end) = wal
                        .append((thread % 256) as u8, &payload_for(seq, len))
                        .unwrap();
                    assert!(
                        start >= last_end && end > start,
                        "thread {thread}: LSNs increase"
                    );
                    if !matches!(sync_mode, SyncMode::Never) {
                        assert!(wal.durable_lsn() >= end, "acknowledged means durable");
                    }
                    last_end = end;
                    acked.push((end, seq));
                }
                acked
            })
        })
        .collect();
    let mut by_lsn = BTreeMap::new();
    for handle in handles {
        for (end, seq) in handle.join().unwrap() {
            assert!(by_lsn.insert(end, seq).is_none(), "LSN {end} given twice");
        }
    }
    assert_eq!(by_lsn.len() as u64, threads * per_thread);
    let stats = wal.stats();
    assert_eq!(stats.records, threads * per_thread);
    if let SyncMode::Group { .. } = sync_mode {
        // Group commit: concurrent appenders share fsyncs (a count, not a timing).
        assert!(
            stats.fsyncs * 2 <= stats.records,
            "{} fsyncs for {} records: appenders are not sharing fsyncs",
            stats.fsyncs,
            stats.records
        );
    }

    let check = |wal: &Wal| {
        let mut read = 0;
        for record in wal.read_from(wal.oldest_lsn()).unwrap() {
            let record = record.unwrap();
            let seq = seq_of_payload(&record.payload).expect("payload intact");
            assert_eq!(
                by_lsn.get(&record.end),
                Some(&seq),
                "record at {}",
                record.end
            );
            read += 1;
        }
        assert_eq!(read, by_lsn.len());
    };
    check(&wal);
    drop(wal);
    let (wal, report) = Wal::open(dir.path(), config).unwrap();
    assert_eq!(report.records, threads * per_thread);
    check(&wal);
}

#[test]
fn group_commit_sixteen_threads() {
    run(
        SyncMode::Group {
            max_delay: Duration::from_micros(100),
        },
        16,
        100,
    );
}

#[test]
fn always_four_threads() {
    run(SyncMode::Always, 4, 100);
}

#[test]
fn never_eight_threads() {
    run(SyncMode::Never, 8, 300);
}

/// A log written without fsyncs across many segments fsyncs each old segment once, when
/// the writer crosses into the next (so a power cut cannot keep a later segment's records
/// and lose an earlier one's tail); the fsync that follows then fsyncs only the segments
/// not yet durable, not every segment written since the last fsync (each fsync flushes
/// the disk's cache, even with nothing left to write).
#[test]
fn an_fsync_after_a_long_write_fsyncs_only_what_is_not_yet_durable() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig {
        segment_size: 64 * 1024,
        sync_mode: SyncMode::Always,
        ..WalConfig::default()
    };
    let wal = Wal::create(dir.path(), config).unwrap();
    let mut last = Lsn::INVALID;
    for seq in 0..200 {
        let (_, end) = wal.append_deferred(1, &payload_for(seq, 4000)).unwrap();
        wal.write_to(end).unwrap();
        last = end;
    }
    let before = wal.stats();
    assert!(
        before.segments_started >= 10,
        "the write spans many segments: {before:?}"
    );
    wal.flush_to(last).unwrap();
    let after = wal.stats();
    assert!(wal.durable_lsn() >= last);
    assert!(
        after.fsyncs - before.fsyncs <= 2,
        "{} fsyncs to make {} segments durable, whose every one but the last was fsynced when the log crossed out of it",
        after.fsyncs - before.fsyncs,
        after.segments_started
    );
}
