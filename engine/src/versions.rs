//! `PageVersions`: the page versions one branch wrote, keyed by (key, LSN).
//!
//! A branch's open layer (where commits land) and its frozen layer (waiting to be written
//! to a layer file) are each one `PageVersions`. The read path asks it only "versions of
//! key K at or below LSN L, newest first, down to the first initializing one". It counts
//! the bytes it holds, so the store can bound the memory of unflushed versions.
//!
//! Invariant (immutability): a version, once inserted at (key, LSN), is never replaced by
//! another page: GC only removes versions no retained state needs, and materializes a
//! patch into the whole page it produces; inserting at an LSN not above every existing
//! version of that key is a bug and asserts (except a detach's inherited copies, which go
//! below every existing one).

use std::collections::BTreeMap;

use pagefork_wal::Lsn;

use crate::key::Key;
use crate::update::{Depth, Update};

/// The memory `update` adds to a page whose versions are `versions`.
fn added_bytes(versions: &BTreeMap<Lsn, Update>, update: &Update) -> u64 {
    let page = if versions.is_empty() {
        PAGE_OVERHEAD
    } else {
        0
    };
    page + VERSION_OVERHEAD + update.payload_len() as u64
}

/// The versions of every page one branch has written.
#[derive(Debug, Default)]
pub(crate) struct PageVersions {
    pages: BTreeMap<Key, BTreeMap<Lsn, Update>>,
    /// Approximate memory held: payload bytes plus a fixed cost per version.
    bytes: u64,
}

/// Memory a version costs beside its payload (its slot in a map node: LSN, `Update`).
const VERSION_OVERHEAD: u64 = 64;
/// Memory a page's first version costs on top (a map node of its own, the outer entry).
const PAGE_OVERHEAD: u64 = 576;

impl PageVersions {
    /// Adds the version of `key` written at `lsn`.
    pub(crate) fn insert(&mut self, key: Key, lsn: Lsn, update: Update) {
        let versions = self.pages.entry(key).or_default();
        if let Some((last, _)) = versions.last_key_value() {
            assert!(
                *last < lsn,
                "page versions are immutable: {key} already has a version at {last}, cannot add {lsn}"
            );
        }
        self.bytes += added_bytes(versions, &update);
        versions.insert(lsn, update);
    }

    /// Detach: adds a copy of a version the branch read through an ancestor, which is
    /// older than every version the branch wrote itself (those are above its branch point).
    pub(crate) fn insert_inherited(&mut self, key: Key, lsn: Lsn, update: Update) {
        let versions = self.pages.entry(key).or_default();
        if let Some((first, _)) = versions.first_key_value() {
            assert!(
                lsn < *first,
                "an inherited version of {key} at {lsn} is not older than the branch's own at {first}"
            );
        }
        self.bytes += added_bytes(versions, &update);
        versions.insert(lsn, update);
    }

    /// Every key's versions at or below `up_to`: (LSN, whether it is initializing),
    /// oldest first. GC plans from this.
    pub(crate) fn history_up_to(&self, up_to: Lsn) -> Vec<(Key, Vec<(Lsn, bool)>)> {
        self.pages
            .iter()
            .map(|(key, versions)| {
                let history = versions
                    .range(..=up_to)
                    .map(|(lsn, update)| (*lsn, update.is_initializing()))
                    .collect();
                (*key, history)
            })
            .collect()
    }

    /// GC: removes the version of `key` at `lsn`. Returns the bytes freed.
    pub(crate) fn remove_version(&mut self, key: Key, lsn: Lsn) -> u64 {
        let Some(versions) = self.pages.get_mut(&key) else {
            return 0;
        };
        let Some(update) = versions.remove(&lsn) else {
            return 0;
        };
        let mut freed = VERSION_OVERHEAD + update.payload_len() as u64;
        if versions.is_empty() {
            self.pages.remove(&key);
            freed += PAGE_OVERHEAD;
        }
        self.bytes -= freed;
        freed
    }

    /// GC: replaces the version of `key` at `lsn` by `page`, the same page materialized
    /// (an image or a drop), so older versions are no longer needed to rebuild it. The
    /// only change ever made to a version: what it reads as stays the same.
    pub(crate) fn materialize(&mut self, key: Key, lsn: Lsn, page: Update) {
        assert!(
            page.is_initializing(),
            "a materialized version is a whole page"
        );
        if let Some(update) = self
            .pages
            .get_mut(&key)
            .and_then(|versions| versions.get_mut(&lsn))
        {
            self.bytes = self.bytes - update.payload_len() as u64 + page.payload_len() as u64;
            *update = page;
        }
    }

    /// Approximate bytes of memory held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Keys in `first..=last` with a version at or below `lsn`.
    pub(crate) fn keys_in(&self, first: Key, last: Key, lsn: Lsn) -> impl Iterator<Item = Key> {
        self.pages
            .range(first..=last)
            .filter(move |(_, versions)| versions.range(..=lsn).next().is_some())
            .map(|(key, _)| *key)
    }

    /// Keys with a version above `after` and at or below `up_to`, in order.
    pub(crate) fn keys_written(&self, after: Lsn, up_to: Lsn) -> impl Iterator<Item = Key> {
        self.pages
            .iter()
            .filter(move |(_, versions)| {
                after < up_to && versions.range(Lsn(after.0 + 1)..=up_to).next().is_some()
            })
            .map(|(key, _)| *key)
    }

    /// Every version as `(key, LSN, update)`, sorted by key then LSN (as layer files want).
    pub(crate) fn to_sorted_vec(&self) -> Vec<(Key, Lsn, Update)> {
        self.pages
            .iter()
            .flat_map(|(key, versions)| {
                versions
                    .iter()
                    .map(|(lsn, update)| (*key, *lsn, update.clone()))
            })
            .collect()
    }

    /// Whether no version is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// Appends to `out` the versions of `key` at or below `lsn`, newest first, as far back
    /// as `depth` says. Returns whether that was far enough (the caller need not look
    /// further back, nor at the parent).
    pub(crate) fn collect_versions(
        &self,
        key: Key,
        lsn: Lsn,
        depth: Depth,
        out: &mut Vec<Update>,
    ) -> bool {
        let Some(versions) = self.pages.get(&key) else {
            return false;
        };
        for (_, update) in versions.range(..=lsn).rev() {
            out.push(update.clone());
            if depth.stops_at(update) {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn versions_come_back_newest_first_down_to_the_image() {
        let key = Key::new(1, 1);
        let mut versions = PageVersions::default();
        versions.insert(key, Lsn(10), Update::Image(Bytes::from_static(b"a")));
        versions.insert(
            key,
            Lsn(20),
            Update::Patch {
                offset: 0,
                bytes: Bytes::from_static(b"b"),
            },
        );
        versions.insert(key, Lsn(30), Update::Image(Bytes::from_static(b"c")));
        let mut out = Vec::new();
        assert!(versions.collect_versions(key, Lsn(25), Depth::ToWhole, &mut out));
        assert_eq!(out.len(), 2);
        out.clear();
        assert!(!versions.collect_versions(key, Lsn(5), Depth::ToWhole, &mut out));
        assert!(out.is_empty());
        assert!(!versions.collect_versions(Key::new(2, 2), Lsn(99), Depth::ToWhole, &mut out));
    }

    #[test]
    #[should_panic(expected = "page versions are immutable")]
    fn a_version_is_never_replaced() {
        let key = Key::new(1, 1);
        let mut versions = PageVersions::default();
        versions.insert(key, Lsn(10), Update::Drop);
        versions.insert(key, Lsn(10), Update::Drop);
    }
}
