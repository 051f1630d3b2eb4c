//! The engine's WAL records: what each kind means and its byte layout.
//!
//! Every store change is one WAL record, so it is atomic and replayed after a crash. The
//! WAL checks each record's CRC; this module checks that a payload decodes completely
//! (no short field, no trailing bytes, known tags) and never panics on bad bytes.
//!
//! Every payload starts with the same 9 bytes; the store encodes a record, time and all,
//! straight into the log's buffer under its ordering lock (`encode_into`):
//!
//! ```text
//! offset size field
//!      0    1 record format version (1)
//!      1    8 time: microseconds since the Unix epoch (commit or operation time)
//!      9    . kind-specific fields, little-endian:
//!
//! kind 1 commit         branch id u64, update count u32, then per update:
//!                       rel u32, block u32, tag u8 (1 image, 2 patch, 3 drop),
//!                       image: len u32 + bytes; patch: offset u32, len u32 + bytes
//! kind 2 create branch  id u64, name len u16 + UTF-8 bytes,
//!                       has parent u8 (0/1) [+ parent id u64, branch point u64],
//!                       expiry tag u8 (0 never, 1 ttl, 2 at) + u64 (micros),
//!                       protected u8, created at a time u8 (0/1) [+ requested u64,
//!                       lsn u64, has commit time u8 + commit time u64, kind u8]
//! kind 3 delete branch  id u64
//! kind 4 change branch  id u64, change tag u8: 1 rename (name len u16 + bytes),
//!                       2 expiry (tag u8 + u64, as in create), 3 protected (u8 0/1),
//!                       4 PITR window (has window u8 + micros u64; without: the
//!                       store's default)
//! kind 5 replace branch old id u64, reason u8 (1 reset, 2 restore), has backup u8 (0/1)
//!                       [+ backup name len u16 + bytes], then the new branch as kind 2
//! kind 6 lease          branch id u64, LSN u64, expires at u64 (micros)
//! kind 7 detach branch  id u64, point count u32 + LSN u64 each (ascending; the last is
//!                       the base: the oldest state below the branch point it keeps
//!                       whole)
//! ```
//!
//! A replace is a reset or restore in one record: the branch's name moves to a new branch
//! (new id, the new parent and branch point), and the old one keeps the backup name or,
//! without one, is hidden, and removed at once if nothing branches from it.

use std::time::Duration;

use bytes::{BufMut, Bytes};
use pagefork_wal::Lsn;

use crate::branch::{BranchId, BranchOptions, Expiry, LsnForTime};
use crate::codec::{
    Cursor, KEY_LEN, put_expiry, put_key, put_lsn_for_time, put_name, put_options, put_parent,
    put_update, put_window, update_len,
};
use crate::key::Key;
use crate::time::Timestamp;
use crate::update::Update;

pub(crate) const KIND_COMMIT: u8 = 1;
pub(crate) const KIND_CREATE_BRANCH: u8 = 2;
pub(crate) const KIND_DELETE_BRANCH: u8 = 3;
pub(crate) const KIND_CHANGE_BRANCH: u8 = 4;
pub(crate) const KIND_REPLACE_BRANCH: u8 = 5;
pub(crate) const KIND_LEASE: u8 = 6;
pub(crate) const KIND_DETACH_BRANCH: u8 = 7;
const RECORD_VERSION: u8 = 1;

/// A branch creation, as logged.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct CreateBranch {
    pub(crate) id: BranchId,
    pub(crate) name: String,
    pub(crate) parent: Option<(BranchId, Lsn)>,
    pub(crate) options: BranchOptions,
    pub(crate) created_at_time: Option<LsnForTime>,
}

/// A change to a branch that leaves its history alone.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum BranchChange {
    Rename(String),
    /// Always `Expiry::Never` or `Expiry::At`: a TTL is turned into a time before logging,
    /// so replay does not depend on when it runs.
    Expiry(Expiry),
    Protected(bool),
    /// The branch's own PITR window; `None`: the store's default.
    PitrWindow(Option<Duration>),
}

/// Why a branch was replaced.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ReplaceReason {
    /// Reset to its parent's latest state.
    Reset,
    /// Restored to a state of itself or another branch.
    Restore,
}

/// One store change.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum Record {
    Commit {
        branch: BranchId,
        updates: Vec<(Key, Update)>,
    },
    CreateBranch(CreateBranch),
    DeleteBranch {
        id: BranchId,
    },
    ChangeBranch {
        id: BranchId,
        change: BranchChange,
    },
    ReplaceBranch {
        old: BranchId,
        reason: ReplaceReason,
        /// The old branch's new name; `None` hides it.
        backup: Option<String>,
        /// The branch that takes the old one's name.
        new: CreateBranch,
    },
    /// Keeps `branch`'s state at `lsn` from GC until `expires_at`.
    Lease {
        branch: BranchId,
        lsn: Lsn,
        expires_at: Timestamp,
    },
    /// Gives branch `id` copies of what it reads through its ancestors, then cuts it from
    /// its parent. It keeps every state from `points`' last (the base, at most the branch
    /// point) up, and below it the states at the other points (retained for its children
    /// and leases).
    DetachBranch {
        id: BranchId,
        points: Vec<Lsn>,
    },
}

impl Record {
    pub(crate) fn kind(&self) -> u8 {
        match self {
            Record::Commit { .. } => KIND_COMMIT,
            Record::CreateBranch(_) => KIND_CREATE_BRANCH,
            Record::DeleteBranch { .. } => KIND_DELETE_BRANCH,
            Record::ChangeBranch { .. } => KIND_CHANGE_BRANCH,
            Record::ReplaceBranch { .. } => KIND_REPLACE_BRANCH,
            Record::Lease { .. } => KIND_LEASE,
            Record::DetachBranch { .. } => KIND_DETACH_BRANCH,
        }
    }

    /// The length of the record's encoding, exactly: the store has it encoded straight
    /// into the log's buffer, which needs the length first.
    pub(crate) fn encoded_len(&self) -> usize {
        match self {
            Record::Commit { updates, .. } => commit_len(updates),
            _ => self.encode(Timestamp(0)).len(),
        }
    }

    /// Encodes the record with `time`.
    pub(crate) fn encode(&self, time: Timestamp) -> Vec<u8> {
        // A commit's size is known up front: one allocation, not a doubling per megabyte.
        let capacity = match self {
            Record::Commit { updates, .. } => commit_len(updates),
            _ => 64,
        };
        let mut out = Vec::with_capacity(capacity);
        self.encode_into(&mut out, time);
        out
    }

    /// Appends the record's encoding with `time` to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>, time: Timestamp) {
        out.put_u8(RECORD_VERSION);
        out.put_u64_le(time.0);
        match self {
            Record::Commit { branch, updates } => {
                out.put_u64_le(branch.0);
                out.put_u32_le(u32::try_from(updates.len()).expect("update count fits u32"));
                for (key, update) in updates {
                    put_key(out, *key);
                    put_update(out, update);
                }
            }
            Record::CreateBranch(create) => put_create(out, create),
            Record::DeleteBranch { id } => out.put_u64_le(id.0),
            Record::ChangeBranch { id, change } => {
                out.put_u64_le(id.0);
                match change {
                    BranchChange::Rename(name) => {
                        out.put_u8(1);
                        put_name(out, name);
                    }
                    BranchChange::Expiry(expiry) => {
                        out.put_u8(2);
                        put_expiry(out, *expiry);
                    }
                    BranchChange::Protected(protected) => {
                        out.put_u8(3);
                        out.put_u8(u8::from(*protected));
                    }
                    BranchChange::PitrWindow(window) => {
                        out.put_u8(4);
                        put_window(out, *window);
                    }
                }
            }
            Record::ReplaceBranch {
                old,
                reason,
                backup,
                new,
            } => {
                out.put_u64_le(old.0);
                out.put_u8(match reason {
                    ReplaceReason::Reset => 1,
                    ReplaceReason::Restore => 2,
                });
                match backup {
                    None => out.put_u8(0),
                    Some(name) => {
                        out.put_u8(1);
                        put_name(out, name);
                    }
                }
                put_create(out, new);
            }
            Record::Lease {
                branch,
                lsn,
                expires_at,
            } => {
                out.put_u64_le(branch.0);
                out.put_u64_le(lsn.0);
                out.put_u64_le(expires_at.0);
            }
            Record::DetachBranch { id, points } => {
                out.put_u64_le(id.0);
                out.put_u32_le(u32::try_from(points.len()).expect("point count fits u32"));
                for point in points {
                    out.put_u64_le(point.0);
                }
            }
        }
    }

    /// Decodes a payload of `kind`; the error says what is wrong and where.
    pub(crate) fn decode(kind: u8, payload: Bytes) -> Result<(Record, Timestamp), String> {
        let mut cursor = Cursor::new(payload);
        let version = cursor.u8("format version")?;
        if version != RECORD_VERSION {
            return Err(format!("unsupported record format version {version}"));
        }
        let time = Timestamp(cursor.u64("time")?);
        let record = match kind {
            KIND_COMMIT => {
                let branch = BranchId(cursor.u64("branch id")?);
                let count = cursor.u32("update count")?;
                let mut updates = Vec::with_capacity(count.min(1 << 16) as usize);
                for _ in 0..count {
                    let key = cursor.key()?;
                    updates.push((key, cursor.update(key)?));
                }
                Record::Commit { branch, updates }
            }
            KIND_CREATE_BRANCH => Record::CreateBranch(read_create(&mut cursor)?),
            KIND_DELETE_BRANCH => Record::DeleteBranch {
                id: BranchId(cursor.u64("branch id")?),
            },
            KIND_CHANGE_BRANCH => {
                let id = BranchId(cursor.u64("branch id")?);
                let change = match cursor.u8("change tag")? {
                    1 => BranchChange::Rename(cursor.name()?),
                    2 => BranchChange::Expiry(cursor.expiry()?),
                    3 => BranchChange::Protected(cursor.flag("protected")?),
                    4 => BranchChange::PitrWindow(cursor.window()?),
                    tag => return Err(format!("unknown branch change tag {tag}")),
                };
                Record::ChangeBranch { id, change }
            }
            KIND_REPLACE_BRANCH => {
                let old = BranchId(cursor.u64("replaced branch id")?);
                let reason = match cursor.u8("replace reason")? {
                    1 => ReplaceReason::Reset,
                    2 => ReplaceReason::Restore,
                    reason => return Err(format!("unknown replace reason {reason}")),
                };
                let backup = if cursor.flag("has backup")? {
                    Some(cursor.name()?)
                } else {
                    None
                };
                let new = read_create(&mut cursor)?;
                Record::ReplaceBranch {
                    old,
                    reason,
                    backup,
                    new,
                }
            }
            KIND_LEASE => Record::Lease {
                branch: BranchId(cursor.u64("branch id")?),
                lsn: Lsn(cursor.u64("lease LSN")?),
                expires_at: Timestamp(cursor.u64("lease expiry")?),
            },
            KIND_DETACH_BRANCH => {
                let id = BranchId(cursor.u64("branch id")?);
                let count = cursor.u32("point count")?;
                let mut points = Vec::with_capacity(count.min(1 << 10) as usize);
                for _ in 0..count {
                    points.push(Lsn(cursor.u64("point LSN")?));
                }
                if points.is_empty() || !points.is_sorted() {
                    return Err("a detach's points are empty or out of order".to_owned());
                }
                Record::DetachBranch { id, points }
            }
            kind => return Err(format!("unknown record kind {kind}")),
        };
        cursor.finish()?;
        Ok((record, time))
    }
}

fn put_create(out: &mut Vec<u8>, create: &CreateBranch) {
    out.put_u64_le(create.id.0);
    put_name(out, &create.name);
    put_parent(out, create.parent);
    put_options(out, create.options);
    put_lsn_for_time(out, create.created_at_time);
}

fn read_create(cursor: &mut Cursor) -> Result<CreateBranch, String> {
    Ok(CreateBranch {
        id: BranchId(cursor.u64("branch id")?),
        name: cursor.name()?,
        parent: cursor.parent()?,
        options: cursor.options()?,
        created_at_time: cursor.lsn_for_time()?,
    })
}

/// The encoded length of a commit of `updates`: version, time, branch id, count, then
/// each key and update.
fn commit_len(updates: &[(Key, Update)]) -> usize {
    1 + 8
        + 8
        + 4
        + updates
            .iter()
            .map(|(_, update)| KEY_LEN + update_len(update))
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::branch::TimeKind;

    fn round_trip(record: Record) {
        let time = Timestamp(1_700_000_000_000_000);
        let encoded = record.encode(time);
        assert_eq!(record.encoded_len(), encoded.len(), "{record:?}");
        let decoded = Record::decode(record.kind(), Bytes::from(encoded.clone()));
        assert_eq!(decoded, Ok((record.clone(), time)));
        // Every strict prefix is refused, never a panic.
        for len in 0..encoded.len() {
            let prefix = Bytes::copy_from_slice(&encoded[..len]);
            assert!(
                Record::decode(record.kind(), prefix).is_err(),
                "prefix of {len}"
            );
        }
        let mut longer = encoded;
        longer.push(0);
        assert!(Record::decode(record.kind(), Bytes::from(longer)).is_err());
    }

    #[test]
    fn every_record_kind_round_trips_and_truncation_is_refused() {
        round_trip(Record::Commit {
            branch: BranchId(3),
            updates: vec![
                (Key::new(1, 2), Update::Image(Bytes::from(vec![7u8; 32]))),
                (
                    Key::new(1, 3),
                    Update::Patch {
                        offset: 5,
                        bytes: Bytes::from_static(b"abc"),
                    },
                ),
                (Key::new(9, 0), Update::Drop),
            ],
        });
        round_trip(Record::CreateBranch(CreateBranch {
            id: BranchId(1),
            name: "main".to_owned(),
            parent: None,
            options: BranchOptions::default(),
            created_at_time: None,
        }));
        round_trip(Record::CreateBranch(CreateBranch {
            id: BranchId(2),
            name: "recovered/2026".to_owned(),
            parent: Some((BranchId(1), Lsn(0x1234))),
            options: BranchOptions {
                expiry: Expiry::Ttl(Duration::from_secs(3600)),
                protected: true,
            },
            created_at_time: Some(LsnForTime {
                requested: Timestamp(99),
                lsn: Lsn(0x1000),
                commit_time: Some(Timestamp(90)),
                kind: TimeKind::Present,
            }),
        }));
        round_trip(Record::DeleteBranch { id: BranchId(2) });
        for change in [
            BranchChange::Rename("renamed".to_owned()),
            BranchChange::Expiry(Expiry::At(Timestamp(12345))),
            BranchChange::Expiry(Expiry::Never),
            BranchChange::Protected(true),
            BranchChange::Protected(false),
            BranchChange::PitrWindow(Some(Duration::from_secs(3600))),
            BranchChange::PitrWindow(None),
        ] {
            round_trip(Record::ChangeBranch {
                id: BranchId(7),
                change,
            });
        }
        for (reason, backup) in [
            (ReplaceReason::Reset, None),
            (
                ReplaceReason::Restore,
                Some("main_old_20261122T101530Z".to_owned()),
            ),
        ] {
            round_trip(Record::ReplaceBranch {
                old: BranchId(1),
                reason,
                backup,
                new: CreateBranch {
                    id: BranchId(9),
                    name: "main".to_owned(),
                    parent: Some((BranchId(1), Lsn(0x88))),
                    options: BranchOptions::default(),
                    created_at_time: None,
                },
            });
        }
    }

    #[test]
    fn leases_round_trip() {
        round_trip(Record::Lease {
            branch: BranchId(4),
            lsn: Lsn(0x4321),
            expires_at: Timestamp(1_800_000_000_000_000),
        });
    }

    #[test]
    fn detaches_round_trip_and_need_ordered_points() {
        round_trip(Record::DetachBranch {
            id: BranchId(9),
            points: vec![Lsn(0x10), Lsn(0x80)],
        });
        for points in [vec![], vec![Lsn(0x80), Lsn(0x10)]] {
            let encoded = Record::DetachBranch {
                id: BranchId(9),
                points,
            }
            .encode(Timestamp(0));
            let error = Record::decode(KIND_DETACH_BRANCH, Bytes::from(encoded)).unwrap_err();
            assert!(error.contains("out of order"), "{error}");
        }
    }

    #[test]
    fn unknown_kinds_and_tags_are_refused() {
        let encoded = Record::DeleteBranch { id: BranchId(2) }.encode(Timestamp(0));
        let error = Record::decode(77, Bytes::from(encoded)).unwrap_err();
        assert!(error.contains("unknown record kind 77"), "{error}");
    }
}
