//! Stale records from an earlier use of the same file space are never replayed: a segment
//! pre-filled with valid records of an earlier log (another salt), and a recycled segment
//! holding valid records of this log at other positions.

use std::os::unix::fs::FileExt;

use pagefork_tests::{payload_for, segment_files, unsynced_config};
use pagefork_wal::{Lsn, Wal, WalConfig};

const SEGMENT_SIZE: u64 = 8192;

fn config() -> WalConfig {
    unsynced_config(SEGMENT_SIZE)
}

fn payloads(wal: &Wal) -> Vec<Vec<u8>> {
    wal.read_from(wal.oldest_lsn())
        .unwrap()
        .map(|r| r.unwrap().payload.to_vec())
        .collect()
}

#[test]
fn a_segment_prefilled_by_an_earlier_log_does_not_replay_it() {
    // The earlier generation: a log full of valid records.
    let old_dir = tempfile::tempdir().unwrap();
    let old = Wal::create(old_dir.path(), config()).unwrap();
    for seq in 0..10 {
        old.append(1, &payload_for(seq, 600)).unwrap();
    }
    old.sync().unwrap();
    drop(old);
    let old_bytes = std::fs::read(&segment_files(old_dir.path())[0]).unwrap();

    // The new log, in space that still holds the old bytes after its own records.
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::create(dir.path(), config()).unwrap();
    let (_, end) = wal.append(2, &payload_for(100, 600)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let segment = &segment_files(dir.path())[0];
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(segment)
        .unwrap();
    file.write_all_at(&old_bytes[end.0 as usize..], end.0)
        .unwrap();
    drop(file);

    let (wal, report) = Wal::open(dir.path(), config()).unwrap();
    assert_eq!(report.records, 1);
    assert_eq!(report.end, end);
    assert!(
        report.dropped_bytes > 0,
        "the stale bytes are reported as dropped"
    );
    assert_eq!(payloads(&wal), vec![payload_for(100, 600)]);

    // And they stay gone: new records after them read back alone.
    let (_, end2) = wal.append(2, &payload_for(101, 50)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (wal, report) = Wal::open(dir.path(), config()).unwrap();
    assert_eq!(report.end, end2);
    assert_eq!(
        payloads(&wal),
        vec![payload_for(100, 600), payload_for(101, 50)]
    );
}

#[test]
fn a_recycled_segment_holding_this_logs_older_records_does_not_replay_them() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::create(dir.path(), config()).unwrap();
    let mut ends = Vec::new();
    for seq in 0..14 {
        ends.push(wal.append(1, &payload_for(seq, 1000)).unwrap().1);
    }
    wal.sync().unwrap();
    let end = *ends.last().unwrap();
    drop(wal);
    let files = segment_files(dir.path());
    assert!(files.len() >= 2);
    // Recycle: the last segment's unused space gets the bytes segment 0 holds at the same
    // offsets: valid frames of this very log (same salt), but at other LSNs.
    let first = std::fs::read(&files[0]).unwrap();
    let last_path = files.last().unwrap();
    let offset = (end.0 % SEGMENT_SIZE) as usize;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(last_path)
        .unwrap();
    file.write_all_at(&first[offset..], offset as u64).unwrap();
    drop(file);

    let (wal, report) = Wal::open(dir.path(), config()).unwrap();
    assert_eq!(report.end, end);
    assert_eq!(report.records, 14);
    assert!(report.dropped_bytes > 0);
    let expected: Vec<Vec<u8>> = (0..14).map(|seq| payload_for(seq, 1000)).collect();
    assert_eq!(payloads(&wal), expected);
    assert!(ends.iter().all(|lsn| *lsn > Lsn::INVALID));
}
