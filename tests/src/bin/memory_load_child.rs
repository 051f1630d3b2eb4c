//! Child process for the memory-budget test: loads pages into a store and reports its own
//! peak RSS, so the parent measures this process alone.
//!
//! Usage: `memory-load-child DIR TOTAL_MIB BUDGET_MIB`. Creates a store in DIR with 8 KiB
//! pages, `SyncMode::Never` and a memory budget of BUDGET_MIB, commits TOTAL_MIB of new
//! pages (16 per commit, each filled by `payload_for`), notes its peak RSS, reads a sample
//! back (which maps layer pages), and prints `peak_rss_kib N` (the load's), `flushes N`,
//! `flushed_bytes N`, `largest_frozen_bytes N`, `compactions N` and `memory_bytes N` (what
//! open and frozen layers hold at the end).

use bytes::Bytes;
use pagefork_engine::{At, Config, EngineError, Key, Store, SyncMode, Update};
use pagefork_tests::{payload_for, seq_of_payload};

const PAGE_SIZE: usize = 8192;
const PAGES_PER_COMMIT: u64 = 16;

fn main() -> Result<(), EngineError> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, total_mib, budget_mib] = args.as_slice() else {
        eprintln!("usage: memory-load-child DIR TOTAL_MIB BUDGET_MIB");
        std::process::exit(2);
    };
    let total_mib: u64 = total_mib.parse().expect("TOTAL_MIB is a number");
    let budget_mib: u64 = budget_mib.parse().expect("BUDGET_MIB is a number");
    let config = Config {
        page_size: PAGE_SIZE,
        sync_mode: SyncMode::Never,
        memory_budget_bytes: budget_mib << 20,
        ..Config::default()
    };
    let store = Store::create(dir, config)?;
    let pages = (total_mib << 20) / PAGE_SIZE as u64;
    let mut seq = 0u64;
    while seq < pages {
        let updates = (seq..(seq + PAGES_PER_COMMIT).min(pages))
            .map(|page| {
                let bytes = Bytes::from(payload_for(page, PAGE_SIZE));
                (key_of(page), Update::Image(bytes))
            })
            .collect();
        store.commit("main", updates)?;
        seq += PAGES_PER_COMMIT;
    }
    // The load's peak, before the checks below map layer pages to read them.
    let peak_rss_kib = peak_rss_kib();
    for page in (0..pages).step_by(997) {
        let read = store.get_page("main", key_of(page), At::Latest)?;
        assert_eq!(
            read.as_deref().and_then(seq_of_payload),
            Some(page),
            "page {page} reads back"
        );
    }
    let stats = store.stats();
    println!("peak_rss_kib {peak_rss_kib}");
    println!("flushes {}", stats.flushes);
    println!("flushed_bytes {}", stats.flushed_bytes);
    println!("largest_frozen_bytes {}", stats.largest_frozen_bytes);
    println!("compactions {}", stats.compactions);
    println!("memory_bytes {}", stats.memory_bytes);
    Ok(())
}

fn key_of(page: u64) -> Key {
    Key::new(1, u32::try_from(page).expect("fewer than 2^32 pages"))
}

/// `VmHWM` from /proc/self/status: the peak resident set size, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}
