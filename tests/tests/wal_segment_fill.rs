//! How segments made ahead are filled: a log appended in large batches per fsync (a bulk
//! load through a mount) has its segments allocated without zeros, so the disk writes
//! each byte once; a log fsynced after every small record (commits) has them zero-filled,
//! so its fsyncs need no metadata. Either way every record reads back, before and after
//! reopening, with nothing dropped, and the segment files have their full length.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::Path;

use pagefork_tests::{payload_for, seq_of_payload};
use pagefork_wal::{DEFAULT_SEGMENT_SIZE, Wal, WalConfig};

/// Every record's sequence number, in log order.
fn sequence(wal: &Wal) -> Vec<u64> {
    wal.read_from(wal.oldest_lsn())
        .unwrap()
        .map(|record| seq_of_payload(&record.unwrap().payload).unwrap())
        .collect()
}

/// Every segment file (made ahead or in place) has the log's segment size.
fn assert_full_length(dir: &Path, segment_size: u64) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".wal") || name.ends_with(".next.wal.tmp") {
            let len = std::fs::metadata(&path).unwrap().len();
            assert_eq!(len, segment_size, "{name}");
        }
    }
}

#[test]
fn a_log_appended_in_large_batches_allocates_its_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig::default();
    let wal = Wal::create(dir.path(), config).unwrap();
    // 48 MiB of 64 KiB records, written behind a megabyte at a time, never fsynced: three
    // roll-overs, every segment after the first made ahead.
    let records = 48 * 16;
    let mut last = wal.appended_lsn();
    for seq in 0..records {
        let (_, end) = wal.append_deferred(1, &payload_for(seq, 64 << 10)).unwrap();
        wal.write_behind().unwrap();
        last = end;
    }
    wal.flush_to(last).unwrap();
    let stats = wal.stats();
    assert!(stats.segments_made_ahead >= 2, "{stats:?}");
    assert!(
        stats.segments_allocated >= stats.segments_made_ahead,
        "a log written in batches of megabytes per fsync allocates what it makes ahead: {stats:?}"
    );
    assert_full_length(dir.path(), DEFAULT_SEGMENT_SIZE);
    assert_eq!(sequence(&wal), (0..records).collect::<Vec<_>>());
    drop(wal);
    let (wal, report) = Wal::open(dir.path(), config).unwrap();
    assert_eq!(report.dropped_bytes, 0, "{report:?}");
    assert_eq!(sequence(&wal), (0..records).collect::<Vec<_>>());
}

#[test]
fn a_log_fsynced_after_every_small_record_zero_fills_its_segments() {
    let dir = tempfile::tempdir().unwrap();
    let segment_size = 1 << 20;
    let config = WalConfig {
        segment_size,
        ..WalConfig::default()
    };
    let wal = Wal::create(dir.path(), config).unwrap();
    // 3 MiB of 8 KiB commits, each fsynced: roll-overs take segments made ahead, all of
    // them zero-filled.
    let records = 3 * 128;
    for seq in 0..records {
        wal.append(1, &payload_for(seq, 8 << 10)).unwrap();
    }
    let stats = wal.stats();
    assert!(stats.segments_made_ahead >= 2, "{stats:?}");
    assert_eq!(stats.segments_allocated, 0, "{stats:?}");
    assert_full_length(dir.path(), segment_size);
    drop(wal);
    let (wal, report) = Wal::open(dir.path(), config).unwrap();
    assert_eq!(report.dropped_bytes, 0, "{report:?}");
    assert_eq!(sequence(&wal), (0..records).collect::<Vec<_>>());
}
