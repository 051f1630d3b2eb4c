//! The log's recovery reads before it writes: `Wal::open_for_recovery_on` plans what it
//! would change (a torn tail zeroed, later segments and temporary files removed) and
//! changes nothing, refusing appends, until `complete_recovery`; a segment-end frame whose
//! successor is gone is refused naming it; salvage cuts a short segment at its last whole
//! record and says so.

use std::sync::Arc;

use pagefork_tests::{
    open_fails_changing_nothing, payload_for, segment_files, tree_snapshot, unsynced_config,
};
use pagefork_wal::fs::StdFileSystem;
use pagefork_wal::{Lsn, RecoveryMode, Wal, WalConfig, WalError};

const SEGMENT_SIZE: u64 = 8192;

fn config(mode: RecoveryMode) -> WalConfig {
    WalConfig {
        recovery_mode: mode,
        ..unsynced_config(SEGMENT_SIZE)
    }
}

/// A log of `records` 300-byte records (several segments); returns each record's end.
fn build(dir: &std::path::Path, records: u64) -> Vec<Lsn> {
    let wal = Wal::create(dir, config(RecoveryMode::Strict)).unwrap();
    let ends = (0..records)
        .map(|seq| wal.append(3, &payload_for(seq, 300)).unwrap().1)
        .collect();
    wal.sync().unwrap();
    ends
}

#[test]
fn recovery_changes_nothing_until_completed_and_refuses_appends_before() {
    let dir = tempfile::tempdir().unwrap();
    let ends = build(dir.path(), 40);
    let last = segment_files(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    let offset = (ends.last().unwrap().0 % SEGMENT_SIZE) as usize;
    bytes[offset..offset + 30].fill(0xC3);
    std::fs::write(&last, &bytes).unwrap();
    std::fs::write(dir.path().join("0000000000100000.wal.tmp"), b"half made").unwrap();
    let before = tree_snapshot(dir.path());

    let (wal, report) = Wal::open_for_recovery_on(
        Arc::new(StdFileSystem),
        dir.path(),
        config(RecoveryMode::Strict),
    )
    .unwrap();
    assert_eq!(report.end, *ends.last().unwrap());
    let tail = report
        .dropped_tail
        .clone()
        .expect("the torn bytes are planned to go");
    assert_eq!(
        (tail.segment, tail.bytes, tail.records),
        (last.clone(), 30, 0)
    );
    assert_eq!(wal.read_from(wal.oldest_lsn()).unwrap().count(), 40);
    assert!(matches!(
        wal.append(3, b"too early"),
        Err(WalError::RecoveryPending { .. })
    ));
    assert_eq!(before, tree_snapshot(dir.path()), "nothing changed yet");

    wal.complete_recovery().unwrap();
    assert!(!dir.path().join("0000000000100000.wal.tmp").exists());
    let zeroed = std::fs::read(&last).unwrap();
    assert!(zeroed[offset..offset + 30].iter().all(|&b| b == 0));
    let (_, next) = wal.append(3, b"after").unwrap();
    assert!(next > *ends.last().unwrap());
}

#[test]
fn a_missing_successor_is_refused_and_salvage_accepts_the_loss_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 60);
    let segments = segment_files(dir.path());
    assert!(segments.len() >= 3);
    let gone = segments.last().unwrap();
    std::fs::remove_file(gone).unwrap();
    let error = open_fails_changing_nothing(dir.path(), || {
        Wal::open(dir.path(), config(RecoveryMode::Strict))
    });
    assert!(
        matches!(&error, WalError::MissingSegment { path, .. } if path == gone),
        "{error}"
    );
    let (wal, report) = Wal::open(dir.path(), config(RecoveryMode::SalvageToLastGood)).unwrap();
    assert!(
        report
            .salvaged_corruption
            .as_deref()
            .is_some_and(|damage| damage.contains("is missing")),
        "{report:?}"
    );
    wal.append(3, b"on").unwrap();
    drop(wal);
    Wal::open(dir.path(), config(RecoveryMode::Strict)).unwrap();
}

#[test]
fn salvage_cuts_a_short_segment_at_its_last_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    let ends = build(dir.path(), 60);
    let segments = segment_files(dir.path());
    let middle = &segments[1];
    let start = u64::from_str_radix(middle.file_stem().unwrap().to_str().unwrap(), 16).unwrap();
    std::fs::write(middle, &std::fs::read(middle).unwrap()[..3000]).unwrap();
    let error = open_fails_changing_nothing(dir.path(), || {
        Wal::open(dir.path(), config(RecoveryMode::Strict))
    });
    assert!(
        matches!(&error, WalError::BadSegment { path, .. } if path == middle),
        "{error}"
    );

    let (wal, report) = Wal::open(dir.path(), config(RecoveryMode::SalvageToLastGood)).unwrap();
    let kept: Vec<Lsn> = ends
        .iter()
        .copied()
        .filter(|end| end.0 <= start + 3000)
        .collect();
    assert_eq!(
        report.end,
        *kept.last().unwrap(),
        "cut at the last whole record"
    );
    assert_eq!(report.records, kept.len() as u64);
    assert!(
        !report.removed_segments.is_empty(),
        "the segments after it go"
    );
    assert_eq!(std::fs::metadata(middle).unwrap().len(), SEGMENT_SIZE);
    drop(wal);
    let (_, report) = Wal::open(dir.path(), config(RecoveryMode::Strict)).unwrap();
    assert_eq!(
        report.records,
        kept.len() as u64,
        "a strict open accepts the salvaged log"
    );
}
