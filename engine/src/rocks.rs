//! `RocksVersions` (feature `rocksdb`): page versions of every branch in one RocksDB
//! instance, the storage the RocksDB backend puts where the native backend has layer files.
//!
//! What it owns: the key and value layout and every RocksDB call. What stays with the
//! engine: the WAL, branches, timestamps, GC decisions and the catalog. It answers "the
//! versions of key K on branch B at or below LSN L, newest first" with one seek.
//!
//! ```text
//! key   (24 bytes, big-endian so byte order is (branch, key, newest first)):
//!   0  8  branch id
//!   8  4  relation
//!  12  4  block
//!  16  8  u64::MAX - LSN   (inverted: the newest version of a page sorts first)
//! value:
//!   0  1  value format version (1)
//!   1  n  the update, encoded as in WAL records and checkpoints (`codec::put_update`)
//! n+1  4  CRC32 of bytes 0..n+1
//! ```
//!
//! Invariants it keeps:
//! - One version per (branch, key, LSN): a write of the same version again (a flush
//!   replayed after a crash) overwrites it with the same bytes.
//! - Every value is checked against its CRC and format version before it is decoded; a bad
//!   one is `EngineError::CorruptFile` naming the database, branch, key and LSN, never data.
//! - Writes bypass RocksDB's own log (the engine's WAL is the log): nothing is durable until
//!   [`RocksVersions::persist`] returns, which flushes the memtables to synced table files.
//!   Versions written but not persisted can survive a crash too, so callers bound every
//!   read by what their catalog says is persisted (`up_to` arguments), never by what the
//!   database happens to hold.
//! - Replacing the versions of a key (GC) and removing a branch are single atomic batches.
//!
//! Status: tested on its own; `Store` does not use it yet (the storage interface both
//! backends implement comes next), hence the `dead_code` allowance outside tests.

#![cfg_attr(not(test), allow(dead_code))]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use pagefork_wal::Lsn;
use rocksdb::{
    BlockBasedOptions, Cache, DB, DBRawIterator, FlushOptions, Options, ReadOptions,
    SliceTransform, WriteBatch, WriteOptions,
};

use crate::branch::BranchId;
use crate::codec::{Cursor, put_update};
use crate::error::{EngineError, Result};
use crate::key::Key;
use crate::update::Update;

/// Bytes of a branch id plus a page key: the prefix bloom filters are built on.
const PAGE_PREFIX_LEN: usize = 16;
/// Bytes of a full key.
const KEY_LEN: usize = 24;
/// The value format this build writes and reads.
const VALUE_FORMAT_VERSION: u8 = 1;
/// Block cache shared by every read of the database.
const BLOCK_CACHE_BYTES: usize = 64 * 1024 * 1024;

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

/// An exclusive upper bound past every full key that starts with `prefix`.
fn past_prefix(prefix: &[u8]) -> Vec<u8> {
    let mut bound = prefix.to_vec();
    bound.extend_from_slice(&[0xFF; KEY_LEN + 1]);
    bound.truncate(KEY_LEN + 1);
    bound
}

/// The (branch, key, LSN) a full key stands for, if it is one.
fn split_key(bytes: &[u8]) -> Option<(BranchId, Key, Lsn)> {
    let field = |range: std::ops::Range<usize>| bytes.get(range);
    let branch = u64::from_be_bytes(field(0..8)?.try_into().ok()?);
    let rel = u32::from_be_bytes(field(8..12)?.try_into().ok()?);
    let block = u32::from_be_bytes(field(12..16)?.try_into().ok()?);
    let inverted = u64::from_be_bytes(field(16..24)?.try_into().ok()?);
    (bytes.len() == KEY_LEN).then_some((
        BranchId(branch),
        Key::new(rel, block),
        Lsn(u64::MAX - inverted),
    ))
}

fn encode_value(update: &Update) -> Vec<u8> {
    let mut value = vec![VALUE_FORMAT_VERSION];
    put_update(&mut value, update);
    let crc = crc32fast::hash(&value);
    value.extend_from_slice(&crc.to_le_bytes());
    value
}

impl RocksVersions {
    /// Opens (creating it if missing) the database in `path`.
    pub(crate) fn open(path: &Path) -> Result<RocksVersions> {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&Cache::new_lru_cache(BLOCK_CACHE_BYTES));
        // Reads that find no version of a page on a branch (most of a walk up the
        // ancestors) are answered by the filter without touching a data block.
        table.set_bloom_filter(10.0, false);
        table.set_whole_key_filtering(false);
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_prefix_extractor(SliceTransform::create_fixed_prefix(PAGE_PREFIX_LEN));
        options.set_block_based_table_factory(&table);
        let db = DB::open(&options, path).map_err(rocks_error("open RocksDB", path))?;
        let mut write_options = WriteOptions::default();
        write_options.disable_wal(true);
        Ok(RocksVersions {
            db,
            path: path.to_owned(),
            write_options,
        })
    }

    /// Writes versions of `branch` (visible to reads at once, durable after `persist`).
    pub(crate) fn put_versions(
        &self,
        branch: BranchId,
        versions: &[(Key, Lsn, Update)],
    ) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (key, lsn, update) in versions {
            batch.put(version_key(branch, *key, *lsn), encode_value(update));
        }
        self.write(batch, "write page versions")
    }

    /// Makes every version written so far durable: flushes the memtables to synced files.
    pub(crate) fn persist(&self) -> Result<()> {
        let mut options = FlushOptions::default();
        options.set_wait(true);
        self.db
            .flush_opt(&options)
            .map_err(rocks_error("flush RocksDB", &self.path))
    }

    /// Appends the versions of `key` on `branch` at or below `up_to` to `out`, newest
    /// first, stopping after the first initializing one (image or drop). Returns whether
    /// it found one: if not, older versions are the parent's business.
    pub(crate) fn collect_versions(
        &self,
        branch: BranchId,
        key: Key,
        up_to: Lsn,
        out: &mut Vec<Update>,
    ) -> Result<bool> {
        let prefix = page_prefix(branch, key);
        let mut iter = self.iter_prefix(&prefix, true);
        iter.seek(version_key(branch, key, up_to));
        while let Some((bytes, value)) = iter.item() {
            let Some((_, _, lsn)) = split_key(bytes) else {
                return Err(self.corrupt(format!("key {bytes:02x?} is not a version key")));
            };
            let update = self.decode_value(branch, key, lsn, value)?;
            let initializing = update.is_initializing();
            out.push(update);
            if initializing {
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
        let mut iter = self.iter_prefix(&prefix, false);
        iter.seek(prefix);
        let mut current: Option<(Key, Vec<(Lsn, Update)>)> = None;
        while let Some((bytes, value)) = iter.item() {
            let Some((_, key, lsn)) = split_key(bytes) else {
                return Err(self.corrupt(format!("key {bytes:02x?} is not a version key")));
            };
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

    /// Keys of `branch` with a version in `(after, up_to]`, in key order.
    pub(crate) fn keys_written(
        &self,
        branch: BranchId,
        after: Lsn,
        up_to: Lsn,
    ) -> Result<Vec<Key>> {
        let prefix = branch.0.to_be_bytes();
        let mut iter = self.iter_prefix(&prefix, false);
        iter.seek(prefix);
        let mut keys: Vec<Key> = Vec::new();
        while let Some((bytes, _)) = iter.item() {
            let Some((_, key, lsn)) = split_key(bytes) else {
                return Err(self.corrupt(format!("key {bytes:02x?} is not a version key")));
            };
            if after < lsn && lsn <= up_to && keys.last() != Some(&key) {
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
        let mut iter = self.iter_prefix(&prefix, false);
        iter.seek(prefix);
        let first = iter.item().and_then(|(bytes, _)| split_key(bytes));
        iter.seek_for_prev(past_prefix(&prefix));
        let last = iter.item().and_then(|(bytes, _)| split_key(bytes));
        self.check_iter(&iter)?;
        Ok(first
            .zip(last)
            .map(|((_, first, _), (_, last, _))| (first, last)))
    }

    /// Replaces every version of `key` on `branch` with `keep` (GC), atomically.
    pub(crate) fn replace_versions(
        &self,
        branch: BranchId,
        key: Key,
        keep: &[(Lsn, Update)],
    ) -> Result<()> {
        let prefix = page_prefix(branch, key);
        let mut batch = WriteBatch::default();
        batch.delete_range(prefix.to_vec(), past_prefix(&prefix));
        for (lsn, update) in keep {
            batch.put(version_key(branch, key, *lsn), encode_value(update));
        }
        self.write(batch, "replace page versions")
    }

    /// Removes every version of `branch`, atomically.
    pub(crate) fn remove_branch(&self, branch: BranchId) -> Result<()> {
        let prefix = branch.0.to_be_bytes();
        let mut batch = WriteBatch::default();
        batch.delete_range(prefix.to_vec(), past_prefix(&prefix));
        self.write(batch, "remove a branch's versions")
    }

    fn write(&self, batch: WriteBatch, operation: &'static str) -> Result<()> {
        self.db
            .write_opt(batch, &self.write_options)
            .map_err(rocks_error(operation, &self.path))
    }

    /// An iterator bounded to keys starting with `prefix`; `same_page` when the prefix is a
    /// whole (branch, key), so the prefix bloom filters apply.
    fn iter_prefix(&self, prefix: &[u8], same_page: bool) -> DBRawIterator<'_> {
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(past_prefix(prefix));
        if same_page {
            options.set_prefix_same_as_start(true);
        } else {
            options.set_total_order_seek(true);
        }
        self.db.raw_iterator_opt(options)
    }

    fn check_iter(&self, iter: &DBRawIterator<'_>) -> Result<()> {
        iter.status()
            .map_err(rocks_error("read RocksDB", &self.path))
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
    move |error| EngineError::Io {
        operation,
        path,
        source: std::io::Error::other(error.into_string()),
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
            .collect_versions(branch, key, Lsn(up_to), &mut out)
            .unwrap();
        (out, complete)
    }

    #[test]
    fn reads_see_the_newest_versions_at_or_below_the_lsn_until_an_initializing_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = RocksVersions::open(dir.path()).unwrap();
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
            let db = RocksVersions::open(dir.path()).unwrap();
            db.put_versions(MAIN, &[(key, Lsn(8), image(8))]).unwrap();
            db.persist().unwrap();
        }
        let db = RocksVersions::open(dir.path()).unwrap();
        assert_eq!(collect(&db, MAIN, key, 8), (vec![image(8)], true));
    }

    #[test]
    fn scans_group_versions_by_key_oldest_first_and_bound_them_by_lsn() {
        let dir = tempfile::tempdir().unwrap();
        let db = RocksVersions::open(dir.path()).unwrap();
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
        let db = RocksVersions::open(dir.path()).unwrap();
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
        db.replace_versions(MAIN, a, &[(Lsn(20), image(9))])
            .unwrap();
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
        let db = RocksVersions::open(dir.path()).unwrap();
        let key = Key::new(4, 2);
        let mut value = encode_value(&image(5));
        value[3] ^= 0x40;
        db.db.put(version_key(MAIN, key, Lsn(12)), &value).unwrap();
        let error = db
            .collect_versions(MAIN, key, Lsn(12), &mut Vec::new())
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
        db.db.put(version_key(MAIN, key, Lsn(13)), &newer).unwrap();
        let error = db
            .collect_versions(MAIN, key, Lsn(13), &mut Vec::new())
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
            assert!(split_key(&bytes).is_some());
            assert!(past_prefix(&bytes[..8]).as_slice() > &bytes[..]);
        }
        assert_eq!(split_key(&keys[0]), Some((MAIN, Key::new(1, 1), Lsn(30))));
    }
}
