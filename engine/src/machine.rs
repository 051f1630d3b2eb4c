//! What the machine offers, for sizing defaults: its memory (the smaller of the kernel's
//! `MemTotal` and the cgroup's `memory.max`, where they can be read).
//!
//! Invariant it keeps: an answer is never a guess. Memory that cannot be read is `None`
//! and the caller keeps its fixed default.

use std::path::Path;

/// The machine's memory in bytes, as far as this process may use it; `None` where it
/// cannot be read (not Linux, or an unreadable `/proc`).
pub(crate) fn memory_bytes() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total(&text))?;
    let limit = cgroup_limit(Path::new("/sys/fs/cgroup/memory.max"));
    Some(limit.map_or(total, |limit| limit.min(total)))
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => value.checked_mul(1024),
        _ => None,
    }
}

/// A cgroup v2 memory limit in bytes; `None` for `max`, or where there is none.
fn cgroup_limit(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total_reads_kilobytes_and_refuses_what_it_cannot_read() {
        let text = "MemFree: 1 kB\nMemTotal:       24683792 kB\nSwapTotal: 0 kB\n";
        assert_eq!(mem_total(text), Some(24_683_792 * 1024));
        assert_eq!(mem_total("MemTotal: 12 MB\n"), None);
        assert_eq!(mem_total("MemTotal: lots kB\n"), None);
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn a_cgroup_limit_of_max_is_no_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.max");
        std::fs::write(&path, "max\n").unwrap();
        assert_eq!(cgroup_limit(&path), None);
        std::fs::write(&path, "1073741824\n").unwrap();
        assert_eq!(cgroup_limit(&path), Some(1 << 30));
        assert_eq!(cgroup_limit(&dir.path().join("absent")), None);
    }

    #[test]
    fn the_default_memory_budget_is_a_sixteenth_of_this_machine_within_its_bounds() {
        use crate::store::{
            DEFAULT_MEMORY_BUDGET_BYTES, MAX_DEFAULT_MEMORY_BUDGET_BYTES,
            default_memory_budget_bytes,
        };
        let memory = memory_bytes().expect("Linux has /proc/meminfo");
        assert!(memory >= 64 << 20, "{memory}");
        let budget = default_memory_budget_bytes();
        let expected =
            (memory / 16).clamp(DEFAULT_MEMORY_BUDGET_BYTES, MAX_DEFAULT_MEMORY_BUDGET_BYTES);
        assert_eq!(budget, expected, "{memory} bytes of memory");
        assert_eq!(crate::Config::default().memory_budget_bytes, budget);
    }
}
