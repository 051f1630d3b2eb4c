//! Child process for the WAL crash test: appends records until it is killed.
//!
//! Usage: `wal-crash-child DIR SEED THREADS`. Opens (or creates) the log in DIR with group
//! commit, prints `ready`, then appends from THREADS threads records made by `payload_for`,
//! printing `ack SEQ END_LSN` on stdout after each append is acknowledged. The parent kills
//! it with SIGKILL at a random moment and checks that every acknowledged record survived.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pagefork_tests::{TestRng, payload_for, seq_of_payload};
use pagefork_wal::{SyncMode, Wal, WalConfig, WalError};

fn main() -> Result<(), WalError> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, seed, threads] = args.as_slice() else {
        eprintln!("usage: wal-crash-child DIR SEED THREADS");
        std::process::exit(2);
    };
    let seed: u64 = seed.parse().expect("SEED is a number");
    let threads: u64 = threads.parse().expect("THREADS is a number");
    let config = WalConfig {
        segment_size: 64 * 1024,
        sync_mode: SyncMode::Group {
            max_delay: Duration::from_micros(50),
        },
        ..WalConfig::default()
    };
    let wal = match Wal::open(dir, config) {
        Ok((wal, _report)) => wal,
        Err(WalError::NotFound { .. }) => Wal::create(dir, config)?,
        Err(error) => return Err(error),
    };
    // Continue numbering after the records that survived earlier runs.
    let mut next_seq = 0;
    for record in wal.read_from(wal.oldest_lsn())? {
        let seq = seq_of_payload(&record?.payload).expect("every record is a test payload");
        next_seq = next_seq.max(seq + 1);
    }
    let next_seq = Arc::new(AtomicU64::new(next_seq));
    println!("ready");
    std::io::stdout().flush().expect("flush stdout");
    let workers: Vec<_> = (0..threads)
        .map(|thread| {
            let wal = wal.clone();
            let next_seq = Arc::clone(&next_seq);
            std::thread::spawn(move || -> Result<(), WalError> {
                let mut rng = TestRng::new(seed ^ (thread + 1).wrapping_mul(0x9E37_79B9));
                loop {
                    let seq = next_seq.fetch_add(1, Ordering::Relaxed);
                    let len = 8 + rng.in_range(0..3000) as usize;
                    let (_start, end) = wal.append(1, &payload_for(seq, len))?;
                    let mut stdout = std::io::stdout().lock();
                    writeln!(stdout, "ack {seq} {end}").expect("write stdout");
                    stdout.flush().expect("flush stdout");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker panicked")?;
    }
    Ok(())
}
