//! A tour of pagefork's write-ahead log on the local disk, in a few seconds:
//! group commit from many threads, a torn tail recovered, corruption in the middle refused,
//! and records read back by LSN.
//!
//! Run: `cargo run --release -p pagefork-wal --example wal_tour [-- DIR]`
//! (a temporary directory unless DIR is given; DIR must not already hold a log).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pagefork_wal::{Lsn, SyncMode, Wal, WalConfig, WalError};

const THREADS: usize = 16;
const RECORDS_PER_THREAD: usize = 500;
const RECORD_SIZE: usize = 8 * 1024;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| temp.path().join("wal"));
    println!("pagefork WAL tour in {}\n", dir.display());

    let config = WalConfig {
        segment_size: 4 * 1024 * 1024,
        sync_mode: SyncMode::Group {
            max_delay: Duration::from_micros(100),
        },
        ..WalConfig::default()
    };

    // 1. Group commit: many threads append durable records; fsyncs are shared.
    let wal = Wal::create(&dir, config)?;
    let payload = vec![0xABu8; RECORD_SIZE];
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                for _ in 0..RECORDS_PER_THREAD {
                    wal.append(1, &payload).expect("append");
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let stats = wal.stats();
    let megabytes = stats.payload_bytes as f64 / 1e6;
    println!(
        "1. group commit: {THREADS} threads appended {} records of {RECORD_SIZE} B, each fsynced before it was acknowledged",
        stats.records
    );
    println!(
        "   {:.0} ms, {:.1} MB/s, {:.0} records/s, {} fsyncs ({:.1} records per fsync)",
        elapsed.as_secs_f64() * 1e3,
        megabytes / elapsed.as_secs_f64(),
        stats.records as f64 / elapsed.as_secs_f64(),
        stats.fsyncs,
        stats.records as f64 / stats.fsyncs.max(1) as f64
    );
    println!("   durable up to LSN {}\n", wal.durable_lsn());

    // 2. A torn tail: the last record is half written when the "power" goes.
    let (last_start, last_end) = wal.append(2, b"the last record, torn in half by a crash")?;
    drop(wal);
    let middle = Lsn(last_start.0 + (last_end.0 - last_start.0) / 2);
    overwrite_at(&dir, middle, &vec![0u8; (last_end.0 - middle.0) as usize])?;
    let (wal, report) = Wal::open(&dir, config)?;
    println!("2. torn tail: the last record was cut at {middle}; open recovered");
    println!(
        "   {} records intact, log ends at {} (the torn record started there), {} bytes of it dropped\n",
        report.records, report.end, report.dropped_bytes
    );
    assert_eq!(report.end, last_start);

    // 3. Corruption in the middle is refused, naming where it is.
    let mut reader = wal.read_from(wal.oldest_lsn())?;
    let first = reader.next().expect("a record")?;
    let second = reader.next().expect("a record")?;
    drop(reader);
    drop(wal);
    flip_bit_at(&dir, Lsn(second.start.0 + 100))?;
    match Wal::open(&dir, config) {
        Err(error @ WalError::CorruptedInMiddle { .. }) => {
            println!("3. one bit flipped in the second record; open refuses:\n   {error}\n")
        }
        other => return Err(format!("expected corruption to be refused, got {other:?}").into()),
    }
    flip_bit_at(&dir, Lsn(second.start.0 + 100))?; // undo the damage

    // 4. Reading back from any record boundary.
    let (wal, _report) = Wal::open(&dir, config)?;
    println!(
        "4. reading from LSN {} (the end of the first record):",
        first.end
    );
    for record in wal.read_from(first.end)?.take(3) {
        let record = record?;
        println!(
            "   record {}..{} kind {} {} bytes",
            record.start,
            record.end,
            record.kind,
            record.payload.len()
        );
    }
    Ok(())
}

fn segment_holding(dir: &Path, lsn: Lsn) -> std::io::Result<(PathBuf, u64)> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    segments.sort();
    for path in segments.into_iter().rev() {
        let stem = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .unwrap_or("");
        let start = u64::from_str_radix(stem, 16).unwrap_or(u64::MAX);
        if start <= lsn.0 {
            return Ok((path, lsn.0 - start));
        }
    }
    Err(std::io::Error::other(format!("no segment holds {lsn}")))
}

fn overwrite_at(dir: &Path, lsn: Lsn, bytes: &[u8]) -> std::io::Result<()> {
    let (path, offset) = segment_holding(dir, lsn)?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all_at(bytes, offset)
}

fn flip_bit_at(dir: &Path, lsn: Lsn) -> std::io::Result<()> {
    let (path, offset) = segment_holding(dir, lsn)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset)?;
    byte[0] ^= 0x10;
    file.write_all_at(&byte, offset)
}
