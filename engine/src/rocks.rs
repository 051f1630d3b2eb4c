//! `RocksVersions` (feature `rocksdb`): page versions of every branch in one RocksDB
//! database, the storage the RocksDB backend puts where the native backend has layer files.
//!
//! What it owns: the key and value layout and every RocksDB call. What stays with the
//! engine: the WAL, branches, timestamps, GC decisions and the catalog. It answers "the
//! versions of key K on branch B at or below LSN L, newest first" with one seek.
//!
//! ```text
//! column family "versions": the versions themselves
//!   key   (24 bytes, big-endian, so bytes sort as (branch, page, newest first)):
//!     0  8  branch id
//!     8  4  relation
//!    12  4  block
//!    16  8  u64::MAX - LSN   (inverted: the newest version of a page sorts first)
//!   value:
//!     0  1  value format version (1)
//!     1  n  the update, encoded as in WAL records and checkpoints (`codec::put_update`)
//!   n+1  4  CRC32 of bytes 0..n+1
//! column family "by_lsn": an index of the same versions by LSN, empty values
//!   key   (24 bytes, big-endian): branch id, LSN, relation, block
//! ```
//!
//! Invariants it keeps:
//! - Both column families hold the same versions: every batch that adds or removes a
//!   version does it in both, atomically, and they are flushed together (atomic flush), so
//!   a crash keeps them in step too.
//! - One version per (branch, key, LSN): a write of the same version again (a flush
//!   replayed after a crash) overwrites it with the same bytes.
//! - Every value is checked against its CRC and format version before it is decoded; a bad
//!   one is `EngineError::CorruptFile` naming the database, branch, key and LSN, never data.
//! - Writes bypass RocksDB's own log (the engine's WAL is the log): nothing is durable until
//!   [`RocksVersions::persist`] returns, which flushes the memtables to synced table files.
//!   Versions written after the last persist may survive a crash too (RocksDB flushes full
//!   memtables on its own), so the store trims each branch back to what its catalog says is
//!   persisted when it opens ([`RocksVersions::trim`], [`RocksVersions::branch_ids`]).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use pagefork_wal::Lsn;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBRawIterator,
    FlushOptions, Options, ReadOptions, SliceTransform, WriteBatch, WriteOptions,
};

use crate::branch::BranchId;
use crate::codec::{Cursor, put_update};
use crate::error::{EngineError, Result};
use crate::key::Key;
use crate::update::{Depth, Update};

/// Bytes of a branch id plus a page key: the prefix bloom filters are built on.
const PAGE_PREFIX_LEN: usize = 16;
/// Bytes of a full key, in either column family.
const KEY_LEN: usize = 24;
/// The value format this build writes and reads.
const VALUE_FORMAT_VERSION: u8 = 1;
/// Block cache shared by every read of the database.
const BLOCK_CACHE_BYTES: usize = 64 * 1024 * 1024;
const VERSIONS_CF: &str = "versions";
const BY_LSN_CF: &str = "by_lsn";

/// The page versions of every branch of a store, in one RocksDB database.
pub(crate) struct RocksVersions {
    db: DB,
    path: PathBuf,
    write_options: WriteOptions,
}

impl std::fmt::Debug for RocksVersions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksVersions")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn page_prefix(branch: BranchId, key: Key) -> [u8; PAGE_PREFIX_LEN] {
    let mut prefix = [0u8; PAGE_PREFIX_LEN];
    prefix[0..8].copy_from_slice(&branch.0.to_be_bytes());
    prefix[8..12].copy_from_slice(&key.rel.to_be_bytes());
    prefix[12..16].copy_from_slice(&key.block.to_be_bytes());
    prefix
}

fn version_key(branch: BranchId, key: Key, lsn: Lsn) -> [u8; KEY_LEN] {
    let mut bytes = [0u8; KEY_LEN];
    bytes[..PAGE_PREFIX_LEN].copy_from_slice(&page_prefix(branch, key));
    bytes[PAGE_PREFIX_LEN..].copy_from_slice(&(u64::MAX - lsn.0).to_be_bytes());
    bytes
}

fn index_key(branch: BranchId, lsn: Lsn, key: Key) -> [u8; KEY_LEN] {
    let mut bytes = [0u8; KEY_LEN];
    bytes[0..8].copy_from_slice(&branch.0.to_be_bytes());
    bytes[8..16].copy_from_slice(&lsn.0.to_be_bytes());
    bytes[16..20].copy_from_slice(&key.rel.to_be_bytes());
    bytes[20..24].copy_from_slice(&key.block.to_be_bytes());
    bytes
}

/// An exclusive upper bound past every full key that starts with `prefix`.
fn past_prefix(prefix: &[u8]) -> Vec<u8> {
    let mut bound = prefix.to_vec();
    bound.resize(KEY_LEN + 1, 0xFF);
    bound
}

fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// The (branch, key, LSN) a key of the versions column family stands for.
fn split_version_key(bytes: &[u8]) -> Option<(BranchId, Key, Lsn)> {
    let key = Key::new(be_u32(bytes, 8)?, be_u32(bytes, 12)?);
    let lsn = Lsn(u64::MAX - be_u64(bytes, 16)?);
    (bytes.len() == KEY_LEN).then_some((BranchId(be_u64(bytes, 0)?), key, lsn))
}

/// The (branch, LSN, key) a key of the by-LSN index stands for.
fn split_index_key(bytes: &[u8]) -> Option<(BranchId, Lsn, Key)> {
    let key = Key::new(be_u32(bytes, 16)?, be_u32(bytes, 20)?);
    (bytes.len() == KEY_LEN).then_some((BranchId(be_u64(bytes, 0)?), Lsn(be_u64(bytes, 8)?), key))
}

fn encode_value(update: &Update) -> Vec<u8> {
    let mut value = vec![VALUE_FORMAT_VERSION];
    put_update(&mut value, update);
    let crc = crc32fast::hash(&value);
    value.extend_from_slice(&crc.to_le_bytes());
    value
}

impl RocksVersions {
    /// Opens the database in `path`; `create` makes a new one (a new store), otherwise a
    /// missing database or column family is an error, never an empty store.
    pub(crate) fn open(path: &Path, create: bool) -> Result<RocksVersions> {
        // RocksDB makes the directory before it finds no database in it: look first.
        if !create && !path.join("CURRENT").is_file() {
            return Err(EngineError::CorruptFile {
                path: path.to_owned(),
                offset: 0,
                reason: "the store's RocksDB database is missing".to_owned(),
            });
        }
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&Cache::new_lru_cache(BLOCK_CACHE_BYTES));
        // Reads that find no version of a page on a branch (most of a walk up the
        // ancestors) are answered by the filter without touching a data block.
        table.set_bloom_filter(10.0, false);
        table.set_whole_key_filtering(false);
        let mut versions = Options::default();
        versions.set_prefix_extractor(SliceTransform::create_fixed_prefix(PAGE_PREFIX_LEN));
        versions.set_block_based_table_factory(&table);
        let mut options = Options::default();
        options.create_if_missing(create);
        options.create_missing_column_families(create);
        // With RocksDB's log off, a column family's memtable survives a crash only once it
        // is flushed; flushing both together keeps the index and the versions in step.
        options.set_atomic_flush(true);
        let families = [
            ColumnFamilyDescriptor::new(VERSIONS_CF, versions),
            ColumnFamilyDescriptor::new(BY_LSN_CF, Options::default()),
        ];
        let db = DB::open_cf_descriptors(&options, path, families)
            .map_err(rocks_error("open RocksDB", path))?;
        let mut write_options = WriteOptions::default();
        write_options.disable_wal(true);
        let store = RocksVersions {
            db,
            path: path.to_owned(),
            write_options,
        };
        store.family(VERSIONS_CF)?;
        store.family(BY_LSN_CF)?;
        Ok(store)
    }

    fn family(&self, name: &str) -> Result<&ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| self.corrupt(format!("column family {name:?} is missing")))
    }

    /// Writes versions of `branch` (visible to reads at once, durable after `persist`).
    pub(crate) fn put_versions(
        &self,
        branch: BranchId,
        versions: &[(Key, Lsn, Update)],
    ) -> Result<()> {
        let (data, index) = (self.family(VERSIONS_CF)?, self.family(BY_LSN_CF)?);
        let mut batch = WriteBatch::default();
        for (key, lsn, update) in versions {
            batch.put_cf(data, version_key(branch, *key, *lsn), encode_value(update));
            batch.put_cf(index, index_key(branch, *lsn, *key), []);
        }
        self.write(batch, "write page versions")
    }

    /// Makes every version written so far durable: flushes the memtables to synced files.
    pub(crate) fn persist(&self) -> Result<()> {
        let mut options = FlushOptions::default();
        options.set_wait(true);
        let families = [self.family(VERSIONS_CF)?, self.family(BY_LSN_CF)?];
        self.db
            .flush_cfs_opt(&families, &options)
            .map_err(rocks_error("flush RocksDB", &self.path))
    }

    /// Appends the versions of `key` on `branch` at or below `up_to` to `out`, newest
    /// first, as far back as `depth` says. Returns whether that was far enough: if not,
    /// older versions are the parent's business.
    pub(crate) fn collect_versions(
        &self,
        branch: BranchId,
        key: Key,
        up_to: Lsn,
        depth: Depth,
        out: &mut Vec<Update>,
    ) -> Result<bool> {
        let prefix = page_prefix(branch, key);
        let mut iter = self.iter_prefix(VERSIONS_CF, &prefix, true)?;
        iter.seek(version_key(branch, key, up_to));
        while let Some((bytes, value)) = iter.item() {
            let (_, _, lsn) = self.version_key_of(bytes)?;
            let update = self.decode_value(branch, key, lsn, value)?;
            let enough = depth.stops_at(&update);
            out.push(update);
            if enough {
                return Ok(true);
            }
            iter.next();
        }
        self.check_iter(&iter)?;
        Ok(false)
    }

    /// Calls `visit` with each key of `branch` that has versions at or below `up_to`, in key
    /// order, with those versions oldest first.
    pub(crate) fn for_each_key(
        &self,
        branch: BranchId,
        up_to: Lsn,
        mut visit: impl FnMut(Key, Vec<(Lsn, Update)>) -> Result<()>,
    ) -> Result<()> {
        let prefix = branch.0.to_be_bytes();
        let mut iter = self.iter_prefix(VERSIONS_CF, &prefix, false)?;
        iter.seek(prefix);
        let mut current: Option<(Key, Vec<(Lsn, Update)>)> = None;
        while let Some((bytes, value)) = iter.item() {
            let (_, key, lsn) = self.version_key_of(bytes)?;
            if current.as_ref().is_some_and(|(held, _)| *held != key)
                && let Some((done, mut versions)) = current.take()
            {
                versions.reverse();
                visit(done, versions)?;
            }
            if lsn <= up_to {
                let update = self.decode_value(branch, key, lsn, value)?;
                current
                    .get_or_insert_with(|| (key, Vec::new()))
                    .1
                    .push((lsn, update));
            }
            iter.next();
        }
        self.check_iter(&iter)?;
        if let Some((key, mut versions)) = current {
            versions.reverse();
            visit(key, versions)?;
        }
        Ok(())
    }

    /// (LSN, key) of every version of `branch` in `(after, up_to]`, in LSN order.
    fn versions_between(
        &self,
        branch: BranchId,
        after: Lsn,
        up_to: Lsn,
    ) -> Result<Vec<(Lsn, Key)>> {
        let prefix = branch.0.to_be_bytes();
        let mut iter = self.iter_prefix(BY_LSN_CF, &prefix, false)?;
        let Some(first) = after.0.checked_add(1) else {
            return Ok(Vec::new());
        };
        iter.seek(index_key(branch, Lsn(first), Key::new(0, 0)));
        let mut found = Vec::new();
        while let Some((bytes, _)) = iter.item() {
            let Some((_, lsn, key)) = split_index_key(bytes) else {
                return Err(self.corrupt(format!("index key {bytes:02x?} is malformed")));
            };
            if lsn > up_to {
                break;
            }
            found.push((lsn, key));
            iter.next();
        }
        self.check_iter(&iter)?;
        Ok(found)
    }

    /// Keys of `branch` with a version in `(after, up_to]`, in key order.
    pub(crate) fn keys_written(
        &self,
        branch: BranchId,
        after: Lsn,
        up_to: Lsn,
    ) -> Result<Vec<Key>> {
        let mut keys: Vec<Key> = self
            .versions_between(branch, after, up_to)?
            .into_iter()
            .map(|(_, key)| key)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    /// Keys of `branch` in `first..=last` with a version at or below `up_to`, in key order:
    /// a seek to `first`, then the versions of the keys in the range.
    pub(crate) fn keys_in(
        &self,
        branch: BranchId,
        first: Key,
        last: Key,
        up_to: Lsn,
    ) -> Result<Vec<Key>> {
        let prefix = branch.0.to_be_bytes();
        let mut iter = self.iter_prefix(VERSIONS_CF, &prefix, false)?;
        iter.seek(version_key(branch, first, Lsn(u64::MAX)));
        let mut keys: Vec<Key> = Vec::new();
        while let Some((bytes, _)) = iter.item() {
            let (_, key, lsn) = self.version_key_of(bytes)?;
            if key > last {
                break;
            }
            if lsn <= up_to && keys.last() != Some(&key) {
                keys.push(key);
            }
            iter.next();
        }
        self.check_iter(&iter)?;
        Ok(keys)
    }

    /// The first and last key of `branch` that have versions, if any.
    pub(crate) fn key_bounds(&self, branch: BranchId) -> Result<Option<(Key, Key)>> {
        let prefix = branch.0.to_be_bytes();
        let mut iter = self.iter_prefix(VERSIONS_CF, &prefix, false)?;
        iter.seek(prefix);
        let first = iter.item().and_then(|(bytes, _)| split_version_key(bytes));
        iter.seek_for_prev(past_prefix(&prefix));
        let last = iter.item().and_then(|(bytes, _)| split_version_key(bytes));
        self.check_iter(&iter)?;
        Ok(first
            .zip(last)
            .map(|((_, first, _), (_, last, _))| (first, last)))
    }

    /// Replaces the versions of `key` on `branch` at the LSNs `old` with `keep` (GC),
    /// atomically.
    pub(crate) fn replace_versions(
        &self,
        branch: BranchId,
        key: Key,
        old: &[Lsn],
        keep: &[(Lsn, Update)],
    ) -> Result<()> {
        let (data, index) = (self.family(VERSIONS_CF)?, self.family(BY_LSN_CF)?);
        let mut batch = WriteBatch::default();
        for lsn in old {
            batch.delete_cf(data, version_key(branch, key, *lsn));
            batch.delete_cf(index, index_key(branch, *lsn, key));
        }
        for (lsn, update) in keep {
            batch.put_cf(data, version_key(branch, key, *lsn), encode_value(update));
            batch.put_cf(index, index_key(branch, *lsn, key), []);
        }
        self.write(batch, "replace page versions")
    }

    /// Removes every version of `branch` with an LSN past `ceiling` (written after the last
    /// catalog, so never published) and, given a `floor`, at or below it (copies a detach
    /// made whose record was lost). Returns how many it removed.
    pub(crate) fn trim(&self, branch: BranchId, floor: Option<Lsn>, ceiling: Lsn) -> Result<usize> {
        let mut doomed = self.versions_between(branch, ceiling, Lsn(u64::MAX))?;
        if let Some(floor) = floor {
            doomed.extend(self.versions_between(branch, Lsn(0), floor)?);
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        let (data, index) = (self.family(VERSIONS_CF)?, self.family(BY_LSN_CF)?);
        let mut batch = WriteBatch::default();
        for (at, key) in &doomed {
            batch.delete_cf(data, version_key(branch, *key, *at));
            batch.delete_cf(index, index_key(branch, *at, *key));
        }
        self.write(batch, "trim unpublished page versions")?;
        Ok(doomed.len())
    }

    /// Bytes of table files on disk (what a flush or compaction wrote), for stats.
    pub(crate) fn disk_bytes(&self) -> u64 {
        [VERSIONS_CF, BY_LSN_CF]
            .into_iter()
            .filter_map(|name| self.family(name).ok())
            .filter_map(|family| {
                self.db
                    .property_int_value_cf(family, "rocksdb.total-sst-files-size")
                    .ok()
                    .flatten()
            })
            .sum()
    }

    /// Removes every version of `branch`, atomically.
    pub(crate) fn remove_branch(&self, branch: BranchId) -> Result<()> {
        let prefix = branch.0.to_be_bytes();
        let mut batch = WriteBatch::default();
        for family in [VERSIONS_CF, BY_LSN_CF] {
            batch.delete_range_cf(self.family(family)?, prefix.to_vec(), past_prefix(&prefix));
        }
        self.write(batch, "remove a branch's versions")
    }

    /// Every branch id that has versions, in order.
    pub(crate) fn branch_ids(&self) -> Result<Vec<BranchId>> {
        let mut options = ReadOptions::default();
        options.set_total_order_seek(true);
        let mut iter = self
            .db
            .raw_iterator_cf_opt(self.family(BY_LSN_CF)?, options);
        let mut ids = Vec::new();
        iter.seek_to_first();
        while let Some((bytes, _)) = iter.item() {
            let Some(id) = be_u64(bytes, 0) else {
                return Err(self.corrupt(format!("index key {bytes:02x?} is malformed")));
            };
            ids.push(BranchId(id));
            let Some(next) = id.checked_add(1) else { break };
            iter.seek(next.to_be_bytes());
        }
        self.check_iter(&iter)?;
        Ok(ids)
    }

    fn write(&self, batch: WriteBatch, operation: &'static str) -> Result<()> {
        self.db
            .write_opt(batch, &self.write_options)
            .map_err(rocks_error(operation, &self.path))
    }

    /// An iterator over `family` bounded to keys starting with `prefix`; `same_page` when
    /// the prefix is a whole (branch, key), so the prefix bloom filters apply.
    fn iter_prefix(
        &self,
        family: &str,
        prefix: &[u8],
        same_page: bool,
    ) -> Result<DBRawIterator<'_>> {
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(past_prefix(prefix));
        if same_page {
            options.set_prefix_same_as_start(true);
        } else {
            options.set_total_order_seek(true);
        }
        Ok(self.db.raw_iterator_cf_opt(self.family(family)?, options))
    }

    fn check_iter(&self, iter: &DBRawIterator<'_>) -> Result<()> {
        iter.status()
            .map_err(rocks_error("read RocksDB", &self.path))
    }

    fn version_key_of(&self, bytes: &[u8]) -> Result<(BranchId, Key, Lsn)> {
        split_version_key(bytes)
            .ok_or_else(|| self.corrupt(format!("version key {bytes:02x?} is malformed")))
    }

    fn decode_value(&self, branch: BranchId, key: Key, lsn: Lsn, value: &[u8]) -> Result<Update> {
        let bad = |reason: &str| {
            self.corrupt(format!(
                "version of {key} at LSN {lsn} on branch id {}: {reason}",
                branch.0
            ))
        };
        let (body, crc) = value
            .split_last_chunk::<4>()
            .ok_or_else(|| bad("value shorter than its checksum"))?;
        if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
            return Err(bad("checksum mismatch"));
        }
        match body.first() {
            Some(&VALUE_FORMAT_VERSION) => {}
            Some(other) => return Err(bad(&format!("unsupported value format version {other}"))),
            None => return Err(bad("empty value")),
        }
        let mut cursor = Cursor::new(Bytes::copy_from_slice(body.get(1..).unwrap_or_default()));
        let update = cursor.update(key).map_err(|reason| bad(&reason))?;
        cursor.finish().map_err(|reason| bad(&reason))?;
        Ok(update)
    }

    fn corrupt(&self, reason: String) -> EngineError {
        EngineError::CorruptFile {
            path: self.path.clone(),
            offset: 0,
            reason,
        }
    }
}

fn rocks_error(operation: &'static str, path: &Path) -> impl FnOnce(rocksdb::Error) -> EngineError {
    let path = path.to_owned();
    move |error| match error.kind() {
        rocksdb::ErrorKind::Corruption => EngineError::CorruptFile {
            path,
            offset: 0,
            reason: format!("{operation}: {}", error.into_string()),
        },
        _ => EngineError::Io {
            operation,
            path,
            source: std::io::Error::other(error.into_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(byte: u8) -> Update {
        Update::Image(Bytes::from(vec![byte; 16]))
    }

    fn patch(byte: u8) -> Update {
        Update::Patch {
            offset: 1,
            bytes: Bytes::from(vec![byte; 2]),
        }
    }

    const MAIN: BranchId = BranchId(1);
    const DEV: BranchId = BranchId(2);

    fn collect(db: &RocksVersions, branch: BranchId, key: Key, up_to: u64) -> (Vec<Update>, bool) {
        let mut out = Vec::new();
        let complete = db
            .collect_versions(branch, key, Lsn(up_to), Depth::ToWhole, &mut out)
            .unwrap();
        (out, complete)
    }

    #[test]
    fn reads_see_the_newest_versions_at_or_below_the_lsn_until_an_initializing_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = RocksVersions::open(dir.path(), true).unwrap();
        let key = Key::new(1, 7);
        db.put_versions(
            MAIN,
            &[
                (key, Lsn(10), image(1)),
                (key, Lsn(20), patch(2)),
                (key, Lsn(30), image(3)),
                (key, Lsn(40), patch(4)),
            ],
        )
        .unwrap();
        assert_eq!(
            collect(&db, MAIN, key, 45),
            (vec![patch(4), image(3)], true)
        );
        assert_eq!(collect(&db, MAIN, key, 39), (vec![image(3)], true));
        assert_eq!(
            collect(&db, MAIN, key, 25),
            (vec![patch(2), image(1)], true)
        );
        assert_eq!(collect(&db, MAIN, key, 9), (vec![], false));
        // Other pages and branches are not in the answer.
        assert_eq!(collect(&db, MAIN, Key::new(1, 8), 100), (vec![], false));
        assert_eq!(collect(&db, DEV, key, 100), (vec![], false));
        db.put_versions(DEV, &[(key, Lsn(50), patch(9))]).unwrap();
        assert_eq!(
            collect(&db, DEV, key, 100),
            (vec![patch(9)], false),
            "the rest is the parent's"
        );
    }

    #[test]
    fn persisted_versions_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::new(3, 3);
        {
            let db = RocksVersions::open(dir.path(), true).unwrap();
            db.put_versions(MAIN, &[(key, Lsn(8), image(8))]).unwrap();
            db.persist().unwrap();
        }
        let db = RocksVersions::open(dir.path(), false).unwrap();
        assert_eq!(collect(&db, MAIN, key, 8), (vec![image(8)], true));
        drop(db);
        let missing = dir.path().join("missing");
        let error = RocksVersions::open(&missing, false).unwrap_err();
        assert!(error.to_string().contains("database is missing"), "{error}");
        assert!(!missing.exists(), "a failed open creates nothing");
    }

    #[test]
    fn scans_group_versions_by_key_oldest_first_and_bound_them_by_lsn() {
        let dir = tempfile::tempdir().unwrap();
        let db = RocksVersions::open(dir.path(), true).unwrap();
        let (a, b, c) = (Key::new(1, 1), Key::new(1, 2), Key::new(2, 0));
        db.put_versions(
            MAIN,
            &[
                (b, Lsn(30), patch(3)),
                (a, Lsn(10), image(1)),
                (b, Lsn(20), image(2)),
                (c, Lsn(50), image(5)),
            ],
        )
        .unwrap();
        db.put_versions(DEV, &[(a, Lsn(60), image(6))]).unwrap();
        let mut seen = Vec::new();
        db.for_each_key(MAIN, Lsn(40), |key, versions| {
            seen.push((key, versions));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                (a, vec![(Lsn(10), image(1))]),
                (b, vec![(Lsn(20), image(2)), (Lsn(30), patch(3))])
            ]
        );
        assert_eq!(db.keys_written(MAIN, Lsn(10), Lsn(50)).unwrap(), vec![b, c]);
        assert_eq!(db.keys_written(MAIN, Lsn(0), Lsn(10)).unwrap(), vec![a]);
        assert_eq!(db.key_bounds(MAIN).unwrap(), Some((a, c)));
        assert_eq!(db.key_bounds(DEV).unwrap(), Some((a, a)));
        assert_eq!(db.key_bounds(BranchId(3)).unwrap(), None);
    }

    #[test]
    fn replacing_a_keys_versions_and_removing_a_branch_touch_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let db = RocksVersions::open(dir.path(), true).unwrap();
        let (a, b) = (Key::new(1, 1), Key::new(1, 2));
        db.put_versions(
            MAIN,
            &[
                (a, Lsn(10), image(1)),
                (a, Lsn(20), patch(2)),
                (b, Lsn(10), image(7)),
            ],
        )
        .unwrap();
        db.put_versions(DEV, &[(a, Lsn(30), image(3))]).unwrap();
        db.replace_versions(MAIN, a, &[Lsn(10), Lsn(20)], &[(Lsn(20), image(9))])
            .unwrap();
        assert_eq!(db.keys_written(MAIN, Lsn(0), Lsn(100)).unwrap(), vec![a, b]);
        assert_eq!(
            db.keys_written(MAIN, Lsn(0), Lsn(15)).unwrap(),
            vec![b],
            "the index follows"
        );
        assert_eq!(collect(&db, MAIN, a, 100), (vec![image(9)], true));
        assert_eq!(collect(&db, MAIN, b, 100), (vec![image(7)], true));
        db.remove_branch(MAIN).unwrap();
        assert_eq!(collect(&db, MAIN, a, 100), (vec![], false));
        assert_eq!(collect(&db, MAIN, b, 100), (vec![], false));
        assert_eq!(collect(&db, DEV, a, 100), (vec![image(3)], true));
    }

    #[test]
    fn a_damaged_value_is_an_error_naming_the_version_never_data() {
        let dir = tempfile::tempdir().unwrap();
        let db = RocksVersions::open(dir.path(), true).unwrap();
        let key = Key::new(4, 2);
        let mut value = encode_value(&image(5));
        value[3] ^= 0x40;
        let data = db.family(VERSIONS_CF).unwrap();
        db.db
            .put_cf(data, version_key(MAIN, key, Lsn(12)), &value)
            .unwrap();
        let error = db
            .collect_versions(MAIN, key, Lsn(12), Depth::ToWhole, &mut Vec::new())
            .unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, EngineError::CorruptFile { .. }),
            "{message}"
        );
        assert!(
            message.contains("rel 4 block 2") && message.contains("checksum mismatch"),
            "{message}"
        );
        let mut newer = encode_value(&image(5));
        newer[0] = 2;
        let crc = crc32fast::hash(&newer[..newer.len() - 4]);
        let at = newer.len() - 4;
        newer[at..].copy_from_slice(&crc.to_le_bytes());
        db.db
            .put_cf(data, version_key(MAIN, key, Lsn(13)), &newer)
            .unwrap();
        let error = db
            .collect_versions(MAIN, key, Lsn(13), Depth::ToWhole, &mut Vec::new())
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("unsupported value format version 2"),
            "{error}"
        );
    }

    #[test]
    fn keys_sort_by_branch_then_page_then_newest_first() {
        let keys = [
            version_key(MAIN, Key::new(1, 1), Lsn(30)),
            version_key(MAIN, Key::new(1, 1), Lsn(20)),
            version_key(MAIN, Key::new(1, 2), Lsn(90)),
            version_key(MAIN, Key::new(2, 0), Lsn(5)),
            version_key(DEV, Key::new(0, 0), Lsn(1)),
        ];
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]));
        for bytes in keys {
            assert!(split_version_key(&bytes).is_some());
            assert!(past_prefix(&bytes[..8]).as_slice() > &bytes[..]);
        }
        assert_eq!(
            split_version_key(&keys[0]),
            Some((MAIN, Key::new(1, 1), Lsn(30)))
        );
        let index = index_key(DEV, Lsn(77), Key::new(5, 6));
        assert_eq!(
            split_index_key(&index),
            Some((DEV, Lsn(77), Key::new(5, 6)))
        );
        assert!(index_key(MAIN, Lsn(9), Key::new(9, 9)) < index_key(MAIN, Lsn(10), Key::new(0, 0)));
    }

    #[test]
    fn trimming_removes_exactly_the_versions_past_the_lsn_and_branch_ids_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let db = RocksVersions::open(dir.path(), true).unwrap();
        let (a, b) = (Key::new(1, 1), Key::new(1, 2));
        db.put_versions(
            MAIN,
            &[
                (a, Lsn(10), image(1)),
                (b, Lsn(20), image(2)),
                (a, Lsn(30), patch(3)),
            ],
        )
        .unwrap();
        db.put_versions(BranchId(7), &[(a, Lsn(40), image(4))])
            .unwrap();
        assert_eq!(db.branch_ids().unwrap(), vec![MAIN, BranchId(7)]);
        assert_eq!(db.trim(MAIN, None, Lsn(20)).unwrap(), 1);
        assert_eq!(collect(&db, MAIN, a, 100), (vec![image(1)], true));
        assert_eq!(db.keys_written(MAIN, Lsn(0), Lsn(100)).unwrap(), vec![a, b]);
        assert_eq!(db.trim(MAIN, None, Lsn(20)).unwrap(), 0);
        assert_eq!(db.trim(MAIN, Some(Lsn(10)), Lsn(20)).unwrap(), 1);
        assert_eq!(db.keys_written(MAIN, Lsn(0), Lsn(100)).unwrap(), vec![b]);
        db.remove_branch(BranchId(7)).unwrap();
        assert_eq!(db.branch_ids().unwrap(), vec![MAIN]);
    }
}
