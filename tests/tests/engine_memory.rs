//! The memory budget holds: a child process loads 2 GiB of 8 KiB pages into a store with a
//! 256 MiB budget and reports its peak RSS (`VmHWM`) over the load, which must stay under
//! 400 MiB, with flushes and compactions having run and a sample of pages read back.
//!
//! `PAGEFORK_MEMORY_LOAD_MIB` changes the amount loaded (default 2048).

use std::collections::BTreeMap;
use std::process::Command;

const BUDGET_MIB: u64 = 256;
const PEAK_LIMIT_MIB: u64 = 400;

#[test]
fn loading_far_more_than_the_budget_keeps_peak_rss_bounded() {
    let total_mib: u64 = std::env::var("PAGEFORK_MEMORY_LOAD_MIB")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(2048);
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_memory-load-child"))
        .arg(dir.path().join("store"))
        .arg(total_mib.to_string())
        .arg(BUDGET_MIB.to_string())
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: BTreeMap<&str, u64> = stdout
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(name, value)| (name, value.parse().unwrap()))
        .collect();
    let peak_mib = report["peak_rss_kib"] / 1024;
    println!(
        "{total_mib} MiB loaded with a {BUDGET_MIB} MiB budget: peak RSS {peak_mib} MiB, {} flushes (largest frozen layer {} MiB), {} compactions",
        report["flushes"],
        report["largest_frozen_bytes"] >> 20,
        report["compactions"]
    );
    assert!(
        peak_mib < PEAK_LIMIT_MIB,
        "peak RSS {peak_mib} MiB over {PEAK_LIMIT_MIB} MiB"
    );
    // Flushed all along, whatever the build's ingest speed: writers wait while open
    // layers hold half the budget, so no layer frozen for a flush is larger than that plus
    // the commit that crossed it (16 pages and their in-memory keys), and everything but
    // what the budget may hold at the end was flushed.
    let one_commit = 16 * (8192 + 1024);
    assert!(
        report["largest_frozen_bytes"] <= (BUDGET_MIB << 20) / 2 + one_commit,
        "a frozen layer of {} bytes: open layers grew past half the budget",
        report["largest_frozen_bytes"]
    );
    assert!(
        report["flushed_bytes"] + (BUDGET_MIB << 20) >= total_mib << 20,
        "only {} bytes of {total_mib} MiB were flushed",
        report["flushed_bytes"]
    );
    if total_mib >= 1024 {
        assert!(report["compactions"] > 0, "L0 layers were merged");
    }
    assert!(report["memory_bytes"] <= BUDGET_MIB << 20);
}
