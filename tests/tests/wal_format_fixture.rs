//! Backward compatibility: a log written by format version 2 and checked in under
//! `tests/fixtures/wal-v2/` must keep opening and reading back exactly, at the same LSNs.
//! A change to the byte layout that breaks old logs fails here. A version 1 log (16-byte
//! frame headers without "synced through", kept under `tests/fixtures/wal-v1/`) is refused
//! with an error naming the file and both versions, never misread.
//!
//! The fixture is two 4 KiB segments (records of 0 B to 3000 B, a segment-end frame, a
//! record ending 8 bytes before its segment's end). To write it again after a deliberate
//! format change (with a new format version), run with `PAGEFORK_WRITE_FIXTURES=1`.

use std::path::{Path, PathBuf};

use pagefork_tests::{payload_for, segment_files, unsynced_config};
use pagefork_wal::{Lsn, Wal, WalError};

const SEGMENT_SIZE: u64 = 4096;
const PAYLOAD_LENS: [usize; 7] = [0, 1, 7, 8, 100, 3000, 4024];

/// (start, end) of every record, as format version 2 lays them out.
const EXPECTED_SPANS: [(u64, u64); 7] = [
    (0x28, 0x40),
    (0x40, 0x60),
    (0x60, 0x80),
    (0x80, 0xA0),
    (0xA0, 0x120),
    (0x120, 0xCF0),
    (0x1028, 0x1FF8),
];

fn fixture_dir(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/wal-v{version}"))
}

/// A copy of a fixture to open: opening takes a lock file and may fsync, and the fixture
/// stays pristine.
fn copy_of(fixture: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let files = segment_files(fixture);
    assert_eq!(files.len(), 2, "fixture segments in {fixture:?}");
    for file in &files {
        std::fs::copy(file, copy.path().join(file.file_name().unwrap())).unwrap();
    }
    copy
}
fn write_fixture(dir: &Path) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    let wal = Wal::create(dir, unsynced_config(SEGMENT_SIZE)).unwrap();
    for (seq, len) in PAYLOAD_LENS.iter().enumerate() {
        let (start, end) = wal
            .append(seq as u8 + 1, &payload_for(seq as u64, *len))
            .unwrap();
        println!("    ({:#X}, {:#X}),", start.0, end.0);
    }
    wal.sync().unwrap();
    drop(wal);
    std::fs::remove_file(dir.join("LOCK")).unwrap();
}

#[test]
fn format_v2_fixture_reads_back_exactly() {
    if std::env::var_os("PAGEFORK_WRITE_FIXTURES").is_some() {
        write_fixture(&fixture_dir(2));
    }
    let copy = copy_of(&fixture_dir(2));
    let (wal, report) = Wal::open(copy.path(), unsynced_config(SEGMENT_SIZE)).unwrap();
    assert_eq!(report.records, PAYLOAD_LENS.len() as u64);
    assert_eq!(report.dropped_bytes, 0);
    assert_eq!(report.end, Lsn(EXPECTED_SPANS[6].1));
    assert_eq!(wal.segment_size(), SEGMENT_SIZE);
    let records: Vec<_> = wal
        .read_from(wal.oldest_lsn())
        .unwrap()
        .map(|record| record.unwrap())
        .collect();
    assert_eq!(records.len(), PAYLOAD_LENS.len());
    for (seq, record) in records.iter().enumerate() {
        assert_eq!(
            (record.start.0, record.end.0),
            EXPECTED_SPANS[seq],
            "record {seq}"
        );
        assert_eq!(record.kind, seq as u8 + 1);
        assert_eq!(
            record.payload.to_vec(),
            payload_for(seq as u64, PAYLOAD_LENS[seq])
        );
    }
}

#[test]
fn a_format_v1_log_is_refused_naming_the_file_and_the_versions() {
    let copy = copy_of(&fixture_dir(1));
    let error = Wal::open(copy.path(), unsynced_config(SEGMENT_SIZE)).unwrap_err();
    let WalError::BadSegment { path, offset, .. } = &error else {
        panic!("expected BadSegment, got {error:?}");
    };
    assert!(path.ends_with("0000000000000000.wal"), "{path:?}");
    assert_eq!(*offset, 0);
    let message = error.to_string();
    assert!(
        message.contains("unsupported format version 1 (this build reads 2)"),
        "{message}"
    );
    // Refused without a change: the files are as they were.
    for file in segment_files(copy.path()) {
        let name = file.file_name().unwrap();
        assert_eq!(
            std::fs::read(&file).unwrap(),
            std::fs::read(fixture_dir(1).join(name)).unwrap()
        );
    }
}
