//! `Backend`: where a store on disk keeps the page versions it has flushed from memory,
//! chosen when the store is created and recorded in its metadata file.
//!
//! Both backends share everything else (the WAL, branches, timestamps, the catalog, GC
//! decisions); only the storage of flushed page versions differs:
//! - `Native`: immutable layer files (L0 and L1 deltas, images) listed in the catalog;
//! - `RocksDb`: one RocksDB database for every branch (`rocks`, cargo feature `rocksdb`).
//!
//! `VersionDb` is the RocksDB store in a build with the feature; without it, it is a type
//! with no values, so store code handles `Option<Arc<VersionDb>>` the same way in both
//! builds and the compiler proves the RocksDB paths unreachable when the feature is off.

use std::fmt;
use std::str::FromStr;

/// Where a store keeps the page versions it flushed from memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// Immutable layer files (L0 and L1 deltas, image layers) listed in the catalog.
    #[default]
    Native,
    /// One RocksDB database for every branch; needs a build with the `rocksdb` feature.
    RocksDb,
}

impl Backend {
    /// Both backends, for loops over them.
    pub const ALL: [Backend; 2] = [Backend::Native, Backend::RocksDb];

    /// The name used by the command line and in messages: `native` or `rocksdb`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Native => "native",
            Backend::RocksDb => "rocksdb",
        }
    }

    /// Whether this build can open a store with this backend.
    pub fn is_built(self) -> bool {
        match self {
            Backend::Native => true,
            Backend::RocksDb => cfg!(feature = "rocksdb"),
        }
    }

    /// The code recorded in the metadata file.
    pub(crate) fn code(self) -> u32 {
        match self {
            Backend::Native => 0,
            Backend::RocksDb => 1,
        }
    }

    /// The backend a metadata code names.
    pub(crate) fn from_code(code: u32) -> Option<Backend> {
        match code {
            0 => Some(Backend::Native),
            1 => Some(Backend::RocksDb),
            _ => None,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend {0:?}: expected native or rocksdb")]
pub struct ParseBackendError(pub String);

impl FromStr for Backend {
    type Err = ParseBackendError;

    fn from_str(name: &str) -> Result<Backend, ParseBackendError> {
        Backend::ALL
            .into_iter()
            .find(|backend| backend.name() == name)
            .ok_or_else(|| ParseBackendError(name.to_owned()))
    }
}

#[cfg(feature = "rocksdb")]
pub(crate) use crate::rocks::RocksVersions as VersionDb;

#[cfg(not(feature = "rocksdb"))]
pub(crate) use absent::VersionDb;

/// `VersionDb` of a build without the `rocksdb` feature: no value of it exists.
#[cfg(not(feature = "rocksdb"))]
mod absent {
    use pagefork_wal::Lsn;

    use crate::branch::BranchId;
    use crate::error::Result;
    use crate::key::Key;
    use crate::update::{Depth, Update};

    /// Never constructed: every method is unreachable.
    #[derive(Debug)]
    pub(crate) enum VersionDb {}

    #[allow(clippy::unused_self)]
    impl VersionDb {
        pub(crate) fn put_versions(&self, _: BranchId, _: &[(Key, Lsn, Update)]) -> Result<()> {
            match *self {}
        }

        pub(crate) fn persist(&self) -> Result<()> {
            match *self {}
        }

        pub(crate) fn collect_versions(
            &self,
            _: BranchId,
            _: Key,
            _: Lsn,
            _: Depth,
            _: &mut Vec<Update>,
        ) -> Result<bool> {
            match *self {}
        }

        pub(crate) fn for_each_key(
            &self,
            _: BranchId,
            _: Lsn,
            _: impl FnMut(Key, Vec<(Lsn, Update)>) -> Result<()>,
        ) -> Result<()> {
            match *self {}
        }

        pub(crate) fn keys_written(&self, _: BranchId, _: Lsn, _: Lsn) -> Result<Vec<Key>> {
            match *self {}
        }

        pub(crate) fn keys_in(&self, _: BranchId, _: Key, _: Key, _: Lsn) -> Result<Vec<Key>> {
            match *self {}
        }

        pub(crate) fn key_bounds(&self, _: BranchId) -> Result<Option<(Key, Key)>> {
            match *self {}
        }

        pub(crate) fn replace_versions(
            &self,
            _: BranchId,
            _: Key,
            _: &[Lsn],
            _: &[(Lsn, Update)],
        ) -> Result<()> {
            match *self {}
        }

        pub(crate) fn trim(&self, _: BranchId, _: Option<Lsn>, _: Lsn) -> Result<usize> {
            match *self {}
        }

        pub(crate) fn remove_branch(&self, _: BranchId) -> Result<()> {
            match *self {}
        }

        pub(crate) fn branch_ids(&self) -> Result<Vec<BranchId>> {
            match *self {}
        }

        pub(crate) fn disk_bytes(&self) -> u64 {
            match *self {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip_and_unknown_ones_are_refused() {
        for backend in Backend::ALL {
            assert_eq!(backend.name().parse::<Backend>(), Ok(backend));
            assert_eq!(Backend::from_code(backend.code()), Some(backend));
        }
        assert_eq!(
            "leveldb".parse::<Backend>().unwrap_err().to_string(),
            "unknown backend \"leveldb\": expected native or rocksdb"
        );
        assert_eq!(Backend::from_code(2), None);
        assert!(Backend::Native.is_built());
        assert_eq!(Backend::RocksDb.is_built(), cfg!(feature = "rocksdb"));
    }
}
