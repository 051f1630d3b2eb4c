//! `PageCache`: reconstructed pages, keyed by (branch id, key, LSN), bounded in bytes,
//! evicting the least recently used.
//!
//! Why no entry ever needs invalidating: a read at LSN L on a branch is only answered for L
//! at or below the branch's head, and every later commit gets an LSN above every existing
//! one, so the page a branch shows at L never changes; branch ids are never reused. (GC,
//! when it arrives, only refuses reads below its cutoff; it never changes an answer.)

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use pagefork_wal::Lsn;
use parking_lot::Mutex;

use crate::branch::BranchId;
use crate::key::Key;

/// Bytes an entry costs beyond its page: the maps' keys and bookkeeping, roughly.
const ENTRY_OVERHEAD_BYTES: u64 = 96;

type CacheKey = (BranchId, Key, Lsn);

#[derive(Debug, Default)]
struct Entries {
    pages: HashMap<CacheKey, (Option<Bytes>, u64)>,
    /// Last-use tick -> key, oldest first.
    by_use: BTreeMap<u64, CacheKey>,
    bytes: u64,
    tick: u64,
}

/// The page cache (see the module docs).
#[derive(Debug)]
pub(crate) struct PageCache {
    capacity_bytes: u64,
    entries: Mutex<Entries>,
    hits: AtomicU64,
    misses: AtomicU64,
}

fn cost(page: &Option<Bytes>) -> u64 {
    ENTRY_OVERHEAD_BYTES + page.as_ref().map_or(0, |page| page.len() as u64)
}

impl PageCache {
    pub(crate) fn new(capacity_bytes: u64) -> PageCache {
        PageCache {
            capacity_bytes,
            entries: Mutex::new(Entries::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached answer for (branch, key, lsn): `Some(None)` is a cached "no such page".
    pub(crate) fn get(&self, branch: BranchId, key: Key, lsn: Lsn) -> Option<Option<Bytes>> {
        let mut entries = self.entries.lock();
        entries.tick += 1;
        let tick = entries.tick;
        let found = entries
            .pages
            .get_mut(&(branch, key, lsn))
            .map(|(page, last_use)| {
                let previous = std::mem::replace(last_use, tick);
                (page.clone(), previous)
            });
        match found {
            Some((page, previous)) => {
                entries.by_use.remove(&previous);
                entries.by_use.insert(tick, (branch, key, lsn));
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(page)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Caches the answer for (branch, key, lsn), evicting the least recently used entries
    /// to stay within the capacity. An entry larger than the whole capacity is not kept.
    pub(crate) fn insert(&self, branch: BranchId, key: Key, lsn: Lsn, page: Option<Bytes>) {
        let size = cost(&page);
        if size > self.capacity_bytes {
            return;
        }
        let mut entries = self.entries.lock();
        entries.tick += 1;
        let tick = entries.tick;
        if let Some((old, old_use)) = entries.pages.insert((branch, key, lsn), (page, tick)) {
            entries.by_use.remove(&old_use);
            entries.bytes -= cost(&old);
        }
        entries.by_use.insert(tick, (branch, key, lsn));
        entries.bytes += size;
        while entries.bytes > self.capacity_bytes {
            let Some((_, oldest)) = entries.by_use.pop_first() else {
                break;
            };
            if let Some((evicted, _)) = entries.pages.remove(&oldest) {
                entries.bytes -= cost(&evicted);
            }
        }
        assert!(
            entries.bytes <= self.capacity_bytes,
            "the page cache stays within its capacity"
        );
    }

    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub(crate) fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.entries.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(byte: u8, len: usize) -> Option<Bytes> {
        Some(Bytes::from(vec![byte; len]))
    }

    #[test]
    fn hits_misses_and_cached_absence() {
        let cache = PageCache::new(10_000);
        let key = Key::new(1, 1);
        assert_eq!(cache.get(BranchId(1), key, Lsn(8)), None);
        cache.insert(BranchId(1), key, Lsn(8), page(7, 100));
        cache.insert(BranchId(1), key, Lsn(16), None);
        assert_eq!(cache.get(BranchId(1), key, Lsn(8)), Some(page(7, 100)));
        assert_eq!(cache.get(BranchId(1), key, Lsn(16)), Some(None));
        assert_eq!(cache.get(BranchId(2), key, Lsn(8)), None, "another branch");
        assert_eq!((cache.hits(), cache.misses()), (2, 2));
    }

    #[test]
    fn evicts_least_recently_used_within_capacity() {
        let entry = ENTRY_OVERHEAD_BYTES + 1000;
        let cache = PageCache::new(3 * entry);
        for block in 0..3 {
            cache.insert(
                BranchId(1),
                Key::new(1, block),
                Lsn(8),
                page(block as u8, 1000),
            );
        }
        assert!(
            cache.get(BranchId(1), Key::new(1, 0), Lsn(8)).is_some(),
            "touch block 0"
        );
        cache.insert(BranchId(1), Key::new(1, 3), Lsn(8), page(3, 1000));
        assert!(cache.bytes() <= 3 * entry);
        assert!(
            cache.get(BranchId(1), Key::new(1, 1), Lsn(8)).is_none(),
            "block 1 was least recently used"
        );
        assert!(cache.get(BranchId(1), Key::new(1, 0), Lsn(8)).is_some());
        cache.insert(BranchId(1), Key::new(9, 9), Lsn(8), page(0, 100_000));
        assert!(
            cache.get(BranchId(1), Key::new(9, 9), Lsn(8)).is_none(),
            "larger than the cache: not kept"
        );
    }
}
