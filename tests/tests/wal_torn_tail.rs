//! Torn tails: the last record cut at every byte offset, the rest zeros or garbage.
//! Reopening must recover exactly the records before it, report what it dropped, and
//! accept new appends that read back after another reopen.

use std::os::unix::fs::FileExt;

use pagefork_tests::{payload_for, segment_files, unsynced_config};
use pagefork_wal::layout::FRAME_HEADER_LEN;
use pagefork_wal::{Lsn, Wal, WalConfig};

const SEGMENT_SIZE: u64 = 8192;

fn config() -> WalConfig {
    unsynced_config(SEGMENT_SIZE)
}

/// Writes records of these payload lengths; returns the log's files' bytes, and each
/// record's (start, end).
fn build_log(dir: &std::path::Path, lens: &[usize]) -> Vec<(Lsn, Lsn)> {
    let wal = Wal::create(dir, config()).unwrap();
    let spans = lens
        .iter()
        .enumerate()
        .map(|(seq, len)| wal.append(3, &payload_for(seq as u64, *len)).unwrap())
        .collect();
    wal.sync().unwrap();
    spans
}

fn check_cut(fill: u8) {
    let lens = [40usize, 0, 300, 13, 77];
    let pristine_dir = tempfile::tempdir().unwrap();
    let spans = build_log(pristine_dir.path(), &lens);
    let segment = segment_files(pristine_dir.path()).remove(0);
    let pristine = std::fs::read(&segment).unwrap();
    let (last_start, last_end) = *spans.last().unwrap();
    let last_payload_len = *lens.last().unwrap() as u64;
    let frame_len = last_end.0 - last_start.0;

    for cut in 0..=frame_len {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join(segment.file_name().unwrap());
        let mut torn = pristine.clone();
        for byte in &mut torn[(last_start.0 + cut) as usize..last_end.0 as usize] {
            *byte = fill;
        }
        std::fs::write(&copy, &torn).unwrap();

        let (wal, report) = Wal::open(dir.path(), config()).unwrap();
        // With a zero fill, a cut inside the zero padding leaves the record whole.
        let intact = cut == frame_len || (fill == 0 && cut >= FRAME_HEADER_LEN + last_payload_len);
        let survivors = if intact { lens.len() } else { lens.len() - 1 };
        let expected_end = if intact { last_end } else { last_start };
        assert_eq!(report.end, expected_end, "cut at {cut}, fill {fill:#x}");
        assert_eq!(report.records, survivors as u64, "cut at {cut}");
        let damaged_bytes = torn[last_start.0 as usize..last_end.0 as usize]
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |last| last as u64 + 1);
        let expected_dropped = if intact { 0 } else { damaged_bytes };
        assert_eq!(report.dropped_bytes, expected_dropped, "cut at {cut}");

        let read: Vec<Vec<u8>> = wal
            .read_from(wal.oldest_lsn())
            .unwrap()
            .map(|record| record.unwrap().payload.to_vec())
            .collect();
        let expected: Vec<Vec<u8>> = lens[..survivors]
            .iter()
            .enumerate()
            .map(|(seq, len)| payload_for(seq as u64, *len))
            .collect();
        assert_eq!(read, expected, "cut at {cut}");

        // The dropped bytes are gone for good: a new record reads back after reopening.
        let (_, new_end) = wal.append(4, b"written after recovery").unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (wal, report) = Wal::open(dir.path(), config()).unwrap();
        assert_eq!(report.end, new_end);
        assert_eq!(report.dropped_bytes, 0);
        assert_eq!(
            wal.read_from(wal.oldest_lsn()).unwrap().count(),
            survivors + 1
        );
    }
}

#[test]
fn last_record_cut_at_every_offset_then_zeros() {
    check_cut(0);
}

#[test]
fn last_record_cut_at_every_offset_then_garbage() {
    check_cut(0xA5);
}

#[test]
fn garbage_in_preallocated_space_is_dropped_and_zeroed() {
    let dir = tempfile::tempdir().unwrap();
    let spans = build_log(dir.path(), &[100, 200]);
    let end = spans.last().unwrap().1;
    let segment = segment_files(dir.path()).remove(0);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.write_all_at(&[0xFF; 10], end.0 + 1000).unwrap();
    drop(file);
    let (_wal, report) = Wal::open(dir.path(), config()).unwrap();
    assert_eq!(report.end, end);
    assert_eq!(report.records, 2);
    assert_eq!(report.dropped_bytes, 1010);
    let bytes = std::fs::read(&segment).unwrap();
    assert!(
        bytes[end.0 as usize..].iter().all(|&b| b == 0),
        "tail zeroed"
    );
}
