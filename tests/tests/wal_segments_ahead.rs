//! Segments made ahead of need, at the default segment size (16 MiB): a roll-over takes
//! the segment the last write made ahead (a rename), never waits for 16 MiB of zeros;
//! the one made ahead is a temporary file until then: a clean close removes it, and one
//! a crash leaves (whole or cut short) is debris that the next open removes, with every
//! record kept. A log written little makes none (a small store's directory stays as it
//! was). Deferred appends are written behind a megabyte at a time, so a writer that
//! never waits gets its segments made ahead too.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pagefork_tests::{payload_for, seq_of_payload};
use pagefork_wal::fs::{FileSystem, FsFile, FsLock, StdFileSystem};
use pagefork_wal::{DEFAULT_SEGMENT_SIZE, WRITE_BEHIND_BYTES, Wal, WalConfig};

/// Records of 64 KiB: 60 MiB of them cross three segment boundaries and leave the fourth
/// segment three quarters full (past half: the next one is made ahead).
const RECORD_BYTES: usize = 64 << 10;
const RECORDS: u64 = 60 * 16;

fn made_ahead_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(".next.wal.tmp"))
        .collect();
    files.sort();
    files
}

fn segment_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".wal")
        })
        .count()
}

/// Every record's sequence number, in log order.
fn sequence(wal: &Wal) -> Vec<u64> {
    wal.read_from(wal.oldest_lsn())
        .unwrap()
        .map(|record| seq_of_payload(&record.unwrap().payload).unwrap())
        .collect()
}

fn write_records(wal: &Wal, seqs: std::ops::Range<u64>) {
    for seq in seqs {
        wal.append(1, &payload_for(seq, RECORD_BYTES)).unwrap();
    }
}

#[test]
fn every_roll_over_takes_the_segment_made_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::create(dir.path(), WalConfig::default()).unwrap();
    write_records(&wal, 0..RECORDS);
    let stats = wal.stats();
    assert!(
        stats.segments_started >= 2,
        "60 MiB in 16 MiB segments: {stats:?}"
    );
    assert_eq!(
        stats.segments_made_ahead, stats.segments_started,
        "each durable append's write made the next segment ahead: {stats:?}"
    );
    // The next one is already there, whole, under its temporary name.
    let ahead = made_ahead_files(dir.path());
    assert_eq!(ahead.len(), 1, "{ahead:?}");
    assert_eq!(
        std::fs::metadata(&ahead[0]).unwrap().len(),
        DEFAULT_SEGMENT_SIZE
    );
    let segments = segment_count(dir.path());
    assert_eq!(sequence(&wal), (0..RECORDS).collect::<Vec<_>>());
    drop(wal);

    // A clean close removes it, and nothing else changes.
    assert!(made_ahead_files(dir.path()).is_empty());
    let (wal, report) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    assert_eq!(report.dropped_bytes, 0, "{report:?}");
    assert_eq!(segment_count(dir.path()), segments);
    assert_eq!(sequence(&wal), (0..RECORDS).collect::<Vec<_>>());
    // And the log goes on across the next boundary, making segments ahead again.
    write_records(&wal, RECORDS..RECORDS + 16 * 16);
    assert_eq!(sequence(&wal), (0..RECORDS + 16 * 16).collect::<Vec<_>>());
    assert!(wal.stats().segments_made_ahead >= 1, "{:?}", wal.stats());
}

#[test]
fn deferred_appends_are_written_behind_and_their_roll_overs_take_segments_made_ahead() {
    // A writer that never waits (a mount between fsyncs): its records reach the file a
    // megabyte at a time, unsynced, and the writes make every next segment ahead; before
    // write-behind they piled up until someone waited, and every roll-over made its
    // segment under the append lock.
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::create(dir.path(), WalConfig::default()).unwrap();
    let start = wal.durable_lsn();
    let mut last = start;
    for seq in 0..RECORDS {
        last = wal
            .append_deferred(1, &payload_for(seq, RECORD_BYTES))
            .unwrap()
            .1;
        wal.write_behind().unwrap();
        let behind = last.0 - wal.written_lsn().0;
        assert!(
            behind < WRITE_BEHIND_BYTES as u64,
            "record {seq}: {behind} bytes appended and not written"
        );
    }
    assert_eq!(wal.durable_lsn(), start, "written behind, never fsynced");
    let stats = wal.stats();
    assert!(stats.segments_started >= 3, "{stats:?}");
    assert_eq!(
        stats.segments_made_ahead, stats.segments_started,
        "every roll-over took a segment a write-behind made ahead: {stats:?}"
    );
    wal.flush_to(last).unwrap();
    assert_eq!(sequence(&wal), (0..RECORDS).collect::<Vec<_>>());
    // Below the threshold nothing is written.
    let written = wal.written_lsn();
    let small = wal
        .append_deferred(1, &payload_for(RECORDS, 100))
        .unwrap()
        .1;
    wal.write_behind().unwrap();
    assert_eq!(wal.written_lsn(), written);
    wal.flush_to(small).unwrap();
}

#[test]
fn a_segment_made_ahead_left_by_a_crash_whole_or_cut_short_is_debris() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::create(dir.path(), WalConfig::default()).unwrap();
    write_records(&wal, 0..RECORDS);
    let ahead = made_ahead_files(dir.path());
    assert_eq!(ahead.len(), 1, "{ahead:?}");
    let made = std::fs::read(&ahead[0]).unwrap();
    drop(wal);
    // As a crash would leave it: whole, half its zeros, or not even a whole header.
    for cut in [made.len(), made.len() / 2, 10] {
        std::fs::write(&ahead[0], &made[..cut]).unwrap();
        let (wal, report) = Wal::open(dir.path(), WalConfig::default()).unwrap();
        assert_eq!(report.dropped_bytes, 0, "{report:?}");
        assert!(made_ahead_files(dir.path()).is_empty());
        assert_eq!(sequence(&wal), (0..RECORDS).collect::<Vec<_>>());
        drop(wal);
    }
    // The log then rolls over by making the segment itself, as before.
    let (wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    write_records(&wal, RECORDS..RECORDS + 24 * 16);
    assert_eq!(sequence(&wal), (0..RECORDS + 24 * 16).collect::<Vec<_>>());
}

#[test]
fn a_log_written_little_makes_no_segment_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::create(dir.path(), WalConfig::default()).unwrap();
    // 4 MiB: a quarter of the first segment.
    write_records(&wal, 0..64);
    assert!(made_ahead_files(dir.path()).is_empty());
    wal.sync().unwrap();
    assert!(made_ahead_files(dir.path()).is_empty());
    assert_eq!(wal.stats().segments_started, 0);
}

#[test]
fn concurrent_appenders_cross_boundaries_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::create(dir.path(), WalConfig::default()).unwrap();
    let writers = 4u64;
    let per_writer = RECORDS / writers;
    std::thread::scope(|scope| {
        for writer in 0..writers {
            let wal = &wal;
            scope.spawn(move || {
                let first = writer * per_writer;
                write_records(wal, first..first + per_writer);
            });
        }
    });
    let stats = wal.stats();
    assert!(stats.segments_started >= 2, "{stats:?}");
    let mut seen = sequence(&wal);
    // Each writer's records in its own order; all of them there once.
    for writer in 0..writers {
        let first = writer * per_writer;
        let own: Vec<u64> = seen
            .iter()
            .copied()
            .filter(|seq| (first..first + per_writer).contains(seq))
            .collect();
        assert_eq!(own, (first..first + per_writer).collect::<Vec<_>>());
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..RECORDS).collect::<Vec<_>>());
}

/// The operating system's file system, with every segment made ahead of need slow to
/// create: as a disk that takes longer to write a segment's zeros than the log takes to
/// fill one.
#[derive(Debug)]
struct SlowSegmentsAhead;

const SLOW_CREATE: std::time::Duration = std::time::Duration::from_millis(150);

impl FileSystem for SlowSegmentsAhead {
    fn open(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        StdFileSystem.open(path)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        if path.to_string_lossy().ends_with(".next.wal.tmp") {
            std::thread::sleep(SLOW_CREATE);
        }
        StdFileSystem.create(path)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        StdFileSystem.read(path)
    }
    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        StdFileSystem.write(path, bytes)
    }
    fn sync_file(&self, path: &Path) -> io::Result<()> {
        StdFileSystem.sync_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFileSystem.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFileSystem.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        StdFileSystem.sync_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFileSystem.create_dir_all(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFileSystem.remove_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        StdFileSystem.list_dir(path)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        StdFileSystem.exists(path)
    }
    fn is_dir(&self, path: &Path) -> io::Result<bool> {
        StdFileSystem.is_dir(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn FsLock>>> {
        StdFileSystem.try_lock(path)
    }
    fn is_operating_system(&self) -> bool {
        true
    }
}

#[test]
fn a_log_written_faster_than_zeros_reach_the_disk_writes_each_segment_once() {
    // Four writers that never wait, as a mount's writers between fsyncs, fill segments
    // faster than the next one is made. A roll-over that came first used to make the
    // same segment again under the append lock (twice the zeros on disk, every appender
    // waiting); it waits for the one being made instead. And a segment filled while one
    // leader writes used to roll over with nothing made ahead (found by CI under load:
    // 13 of 20 runs beside three busy loops); writers that find a leader writing make
    // the next one meanwhile.
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig {
        segment_size: 1 << 20,
        ..WalConfig::default()
    };
    let wal = Wal::create_on(Arc::new(SlowSegmentsAhead), dir.path(), config).unwrap();
    let writers = 4u64;
    let records = 16 * 16;
    let per_writer = records / writers;
    let last = Mutex::new(wal.appended_lsn());
    std::thread::scope(|scope| {
        for writer in 0..writers {
            let (wal, last) = (&wal, &last);
            scope.spawn(move || {
                let first = writer * per_writer;
                for seq in first..first + per_writer {
                    let (_, end) = wal
                        .append_deferred(1, &payload_for(seq, RECORD_BYTES / 2))
                        .unwrap();
                    wal.write_behind().unwrap();
                    let mut last = last.lock().unwrap();
                    *last = (*last).max(end);
                }
            });
        }
    });
    wal.flush_to(*last.lock().unwrap()).unwrap();
    let stats = wal.stats();
    assert!(
        stats.segments_started >= 6,
        "8 MiB in 1 MiB segments: {stats:?}"
    );
    assert!(
        stats.segments_zero_filled <= stats.segments_started + 1,
        "no segment written twice (one more may be made ahead): {stats:?}"
    );
    assert!(
        stats.segments_made_ahead + 1 >= stats.segments_started,
        "roll-overs took the segments made ahead: {stats:?}"
    );
    let mut seen = sequence(&wal);
    seen.sort_unstable();
    assert_eq!(seen, (0..records).collect::<Vec<_>>());
    drop(wal);
    let (_, report) = Wal::open(dir.path(), config).unwrap();
    assert_eq!(report.dropped_bytes, 0, "{report:?}");
}
