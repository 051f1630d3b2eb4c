//! `PageVersions`: the page versions one branch wrote, keyed by (key, LSN).
//!
//! This is the boundary where the on-disk layers of the next issue slot in: the read path
//! asks only "versions of key K at or below LSN L, newest first, down to the first
//! initializing one". Today the versions live in memory and are rebuilt from the WAL.
//!
//! Invariant (immutability): a version, once inserted at (key, LSN), is never replaced;
//! inserting at an LSN not above every existing version of that key is a bug and asserts.

use std::collections::BTreeMap;

use pagefork_wal::Lsn;

use crate::key::Key;
use crate::update::Update;

/// The versions of every page one branch has written.
#[derive(Debug, Default)]
pub(crate) struct PageVersions {
    pages: BTreeMap<Key, BTreeMap<Lsn, Update>>,
}

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
        versions.insert(lsn, update);
    }

    /// Whether no version is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// Every page and its versions, in key then LSN order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Key, &BTreeMap<Lsn, Update>)> {
        self.pages.iter()
    }

    /// Appends to `out` the versions of `key` at or below `lsn`, newest first, stopping
    /// after the first initializing one. Returns whether it found one (the caller need not
    /// look further back, nor at the parent).
    pub(crate) fn collect_versions(&self, key: Key, lsn: Lsn, out: &mut Vec<Update>) -> bool {
        let Some(versions) = self.pages.get(&key) else {
            return false;
        };
        for (_, update) in versions.range(..=lsn).rev() {
            out.push(update.clone());
            if update.is_initializing() {
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
        assert!(versions.collect_versions(key, Lsn(25), &mut out));
        assert_eq!(out.len(), 2);
        out.clear();
        assert!(!versions.collect_versions(key, Lsn(5), &mut out));
        assert!(out.is_empty());
        assert!(!versions.collect_versions(Key::new(2, 2), Lsn(99), &mut out));
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
