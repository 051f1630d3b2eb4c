//! Property test: random records of every size from empty to the maximum, in logs of
//! several segment sizes, appended from a buffer or written in place into the log's own
//! (`append_deferred_in_place`), read back identically before and after reopening, from
//! the start and from any record boundary; an in-place payload of the wrong length is
//! refused and leaves no trace.

use pagefork_tests::{payload_for, unsynced_config};
use pagefork_wal::{Lsn, Wal, WalConfig, WalError};
use proptest::prelude::*;

fn config(segment_size: u64) -> WalConfig {
    unsynced_config(segment_size)
}

/// Payload lengths: mostly small, often exactly at or near the maximum.
fn payload_len(max: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0..64u64,
        3 => 0..=max,
        1 => Just(max),
        1 => (max.saturating_sub(16))..=max,
    ]
}

/// Kind, payload length, and whether it is written in place.
fn records(max: u64) -> impl Strategy<Value = Vec<(u8, u64, bool)>> {
    prop::collection::vec((any::<u8>(), payload_len(max), any::<bool>()), 1..40)
}

fn case() -> impl Strategy<Value = (u64, Vec<(u8, u64, bool)>, prop::sample::Index)> {
    prop_oneof![Just(4096u64), Just(8192u64), Just(65536u64)].prop_flat_map(|segment_size| {
        let max = segment_size - 64; // segment header 40, frame header 24
        (
            Just(segment_size),
            records(max),
            any::<prop::sample::Index>(),
        )
    })
}

fn read_all(wal: &Wal, from: Lsn) -> Vec<(Lsn, Lsn, u8, Vec<u8>)> {
    wal.read_from(from)
        .expect("reader")
        .map(|record| {
            let record = record.expect("record reads back");
            (
                record.start,
                record.end,
                record.kind,
                record.payload.to_vec(),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn records_round_trip_through_reopen((segment_size, records, pick) in case()) {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::create(dir.path(), config(segment_size)).unwrap();
        prop_assert_eq!(wal.max_payload_len(), segment_size - 64);
        let mut expected = Vec::new();
        let mut last_end = Lsn::INVALID;
        for (seq, (kind, len, in_place)) in records.iter().enumerate() {
            let payload = payload_for(seq as u64, *len as usize);
            let (start, end) = match in_place {
                false => wal.append(*kind, &payload).unwrap(),
                true => {
                    // One byte short, then one too many: refused, nothing appended.
                    let short = &payload[..payload.len().saturating_sub(1)];
                    let long = [payload.as_slice(), &[7]].concat();
                    for wrong in [short, long.as_slice()] {
                        if wrong.len() == payload.len() {
                            continue;
                        }
                        let refused = wal
                            .append_deferred_in_place(*kind, *len, |out| out.extend_from_slice(wrong))
                            .unwrap_err();
                        prop_assert!(matches!(refused, WalError::PayloadLength { .. }), "{}", refused);
                    }
                    let (start, end) = wal
                        .append_deferred_in_place(*kind, *len, |out| out.extend_from_slice(&payload))
                        .unwrap();
                    wal.flush_to(end).unwrap();
                    (start, end)
                }
            };
            prop_assert!(start >= last_end && end > start, "LSNs strictly increase");
            prop_assert!(end.is_aligned(8));
            last_end = end;
            expected.push((start, end, *kind, payload));
        }
        let oldest = wal.oldest_lsn();
        prop_assert_eq!(read_all(&wal, oldest), expected.clone());

        // One past the maximum is refused and changes nothing.
        let too_big = vec![0u8; (wal.max_payload_len() + 1) as usize];
        let refused = wal.append(1, &too_big).unwrap_err();
        prop_assert!(matches!(refused, WalError::RecordTooLarge { .. }), "{}", refused);
        drop(wal);

        let (wal, report) = Wal::open(dir.path(), config(segment_size)).unwrap();
        prop_assert_eq!(report.end, last_end);
        prop_assert_eq!(report.records, expected.len() as u64);
        prop_assert_eq!(report.dropped_bytes, 0);
        prop_assert_eq!(read_all(&wal, oldest), expected.clone());

        // Reading from any record boundary returns exactly the records after it.
        let from = pick.index(expected.len());
        let boundary = expected[from].1;
        prop_assert_eq!(read_all(&wal, boundary), expected[from + 1..].to_vec());

        // The log keeps working after reopening.
        let (_, end) = wal.append(9, b"after reopen").unwrap();
        let tail = read_all(&wal, last_end);
        prop_assert_eq!(tail.len(), 1);
        prop_assert_eq!(tail[0].1, end);
    }
}

#[test]
fn reading_from_inside_a_record_names_the_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::create(dir.path(), config(4096)).unwrap();
    let (start, end) = wal.append(1, &[7u8; 100]).unwrap();
    wal.append(1, &[8u8; 100]).unwrap();
    let inside = Lsn(start.0 + 16);
    match wal.read_from(inside) {
        Err(WalError::NotRecordBoundary { lsn }) => assert_eq!(lsn, inside),
        other => panic!("expected NotRecordBoundary, got {other:?}"),
    }
    assert!(wal.read_from(end).is_ok());
    let past = Lsn(wal.written_lsn().0 + 8);
    assert!(matches!(wal.read_from(past), Err(WalError::PastEnd { .. })));
    assert!(matches!(
        wal.read_from(Lsn::INVALID),
        Err(WalError::NotRecordBoundary { .. })
    ));
}

#[test]
fn a_reader_sees_records_written_after_it_was_created() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::create(dir.path(), config(4096)).unwrap();
    let mut reader = wal.read_from(wal.oldest_lsn()).unwrap();
    assert!(reader.next().is_none());
    for seq in 0..50u64 {
        wal.append(2, &payload_for(seq, 300)).unwrap();
        let record = reader.next().expect("new record visible").unwrap();
        assert_eq!(record.payload.to_vec(), payload_for(seq, 300));
        assert!(reader.next().is_none());
    }
}

#[test]
fn truncation_removes_whole_segments_and_reads_below_fail_naming_the_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::create(dir.path(), config(4096)).unwrap();
    let ends: Vec<Lsn> = (0..40u64)
        .map(|seq| wal.append(1, &payload_for(seq, 500)).unwrap().1)
        .collect();
    let cut = ends[20];
    let removed = wal.truncate_before(cut).unwrap();
    assert!(removed > 0);
    assert!(wal.oldest_lsn() <= cut);
    match wal.read_from(ends[0]) {
        Err(WalError::Truncated { lsn, oldest }) => {
            assert_eq!(lsn, ends[0]);
            assert_eq!(oldest, wal.oldest_lsn());
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    // Everything from the cut on is intact, before and after reopening.
    let after_cut = wal.read_from(cut).unwrap().count();
    assert_eq!(after_cut, 19);
    drop(wal);
    let (wal, report) = Wal::open(dir.path(), config(4096)).unwrap();
    assert_eq!(report.end, ends[39]);
    assert_eq!(wal.read_from(cut).unwrap().count(), 19);
}

#[test]
fn bad_configuration_and_missing_logs_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    for bad_size in [0, 1000, 2048, 3 * 4096, 2 * 1024 * 1024 * 1024] {
        let error = Wal::create(dir.path().join("x"), config(bad_size)).unwrap_err();
        assert!(matches!(error, WalError::InvalidConfig(_)), "{error}");
    }
    let error = Wal::open(dir.path().join("nothing here"), config(4096)).unwrap_err();
    assert!(matches!(error, WalError::NotFound { .. }), "{error}");
    let wal = Wal::create(dir.path().join("log"), config(4096)).unwrap();
    let error = Wal::open(dir.path().join("log"), config(4096)).unwrap_err();
    assert!(matches!(error, WalError::Locked { .. }), "{error}");
    drop(wal);
    let error = Wal::create(dir.path().join("log"), config(4096)).unwrap_err();
    assert!(matches!(error, WalError::AlreadyExists { .. }), "{error}");
}

/// Regression (found by `records_round_trip_through_reopen`): a record ending 8 bytes
/// before the end of its segment leaves no room for a segment-end frame. Recovery must
/// report the record's end, not the segment's, and the next record goes to a new segment.
#[test]
fn regression_record_ending_eight_bytes_before_segment_end() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::create(dir.path(), config(4096)).unwrap();
    // 40-byte segment header + 24-byte frame header + 4024-byte payload = 4088 = 0/FF8.
    let (_, end) = wal.append(1, &payload_for(0, 4024)).unwrap();
    assert_eq!(end, Lsn(0xFF8));
    drop(wal);
    let (wal, report) = Wal::open(dir.path(), config(4096)).unwrap();
    assert_eq!(report.end, Lsn(0xFF8));
    assert_eq!(report.records, 1);
    let (start, next_end) = wal.append(2, b"next").unwrap();
    assert_eq!(
        start,
        Lsn(0x1000 + 40),
        "the next record starts the next segment"
    );
    let after: Vec<_> = wal
        .read_from(end)
        .unwrap()
        .map(|r| r.unwrap().end)
        .collect();
    assert_eq!(after, vec![next_end]);
}
