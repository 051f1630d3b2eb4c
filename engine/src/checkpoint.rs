//! The catalog: the store's state as of one LSN (branches, their commit points, and the
//! layer files that hold their page versions), in one file, so that `open` replays only
//! the WAL after that LSN and the WAL segments before it can be removed. Written by every
//! checkpoint, crash-safely; a layer file it does not list is debris from a crash.
//!
//! ```text
//! offset size field (little-endian)
//!      0    8 magic "PFCKPT\0\0"
//!      8    4 format version (6; versions 1 to 5 are still read)
//!     12    8 covered LSN: every branch operation and commit point ending at or below
//!               it is in the catalog, none after it is
//!     20    8 time of the last covered record (the sequencer's floor)
//!     28    8 next branch id (ids of deleted branches are never reused)
//!     36    4 branch count, then per branch, parents before children:
//!               id u64, name (len u16 + bytes), has parent u8 [+ parent id u64,
//!               branch point u64], created time u64, created LSN u64, options
//!               (as in WAL records), created-at-time answer (as in WAL records),
//!               hidden u8 (v3: an old state kept only for its children), PITR
//!               window (v4: has u8 + micros u64), GC cutoff u64 (v4: its own cutoff),
//!               start u64 (v5: where its own history starts; a detached branch's is
//!               its old root's), head u64, flushed u64 (v2: every own page version at or below it is
//!               in the listed layers), commit run count u32 (v6) + per run, oldest
//!               first: file name (len u16 + bytes), size u64, the run's own CRC32
//!               u32 (its trailer's, see `commits`), commit count u32 + (lsn u64, time u64) each
//!               (the points after the runs; a catalog before v6 lists every point here),
//!               layer count u32 + per layer, oldest first: file name (len u16 +
//!               bytes), size u64, CRC32 of the whole file u32, level u8 (v2: 0 L0
//!               delta, 1 L1 delta, 2 image)
//!      .    4 (v3) history entry count, then per entry, oldest first: LSN u64, time
//!               u64, operation u8, branch id u64, branch name (len u16 + bytes),
//!               details (len u32 + bytes)
//!      .    4 (v4) lease count, then per lease: branch id u64, LSN u64, until u64
//!   last    4 CRC32 of every byte before it
//! ```
//!
//! A branch's `flushed` is never below its created LSN (it has no own version older than
//! its creation record); a catalog that says otherwise was written before that rule and
//! reads as its created LSN (capped at `covered`).
//!
//! Open replays the WAL from the lowest `flushed` of any branch: records up to `covered`
//! only put back page versions above their branch's `flushed`; records after it are
//! applied whole. A version-1 catalog reads as `flushed` = `covered`, every layer L0; a
//! version-1 or -2 catalog has no hidden branches and no history (the history then starts
//! with the records after it); before version 4 there were no PITR windows, cutoffs or
//! leases (cutoffs read as 0: GC had never run); before version 5 no branch was detached
//! (a start is the branch point, or a root's creation); before version 6 every commit
//! point was in the catalog itself, in no run.

use std::path::Path;
use std::time::Duration;

use bytes::{BufMut, Bytes};
use pagefork_wal::Lsn;

use crate::branch::{BranchId, BranchOptions, LsnForTime};
use crate::codec::{
    Cursor, put_bytes, put_lsn_for_time, put_name, put_options, put_parent, put_window,
};
use crate::commits::{CommitPoint, RunEntry};
use crate::error::{EngineError, Result};
use crate::history::{HistoryEntry, HistoryOperation};
use crate::layer::Level;
use crate::time::Timestamp;

pub(crate) const CATALOG_FILE_NAME: &str = "catalog";
const MAGIC: [u8; 8] = *b"PFCKPT\0\0";
pub(crate) const FORMAT_VERSION: u32 = 6;

/// A layer file as the catalog lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LayerEntry {
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) checksum: u32,
    pub(crate) level: Level,
}

/// One branch as the catalog holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BranchImage {
    pub(crate) id: BranchId,
    pub(crate) name: String,
    pub(crate) parent: Option<(BranchId, Lsn)>,
    pub(crate) created: Timestamp,
    pub(crate) created_lsn: Lsn,
    pub(crate) options: BranchOptions,
    pub(crate) created_at_time: Option<LsnForTime>,
    pub(crate) hidden: bool,
    pub(crate) pitr_window: Option<Duration>,
    pub(crate) gc_cutoff: Lsn,
    /// Where its own history starts (see `Branch::start`).
    pub(crate) start: Lsn,
    pub(crate) head: Lsn,
    pub(crate) flushed: Lsn,
    /// The files of its oldest commit points, oldest first.
    pub(crate) commit_runs: Vec<RunEntry>,
    /// Its commit points after those in `commit_runs`.
    pub(crate) commits: Vec<CommitPoint>,
    /// Oldest first.
    pub(crate) layers: Vec<LayerEntry>,
}

/// The store's state as of `covered`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) covered: Lsn,
    pub(crate) last_time: Timestamp,
    pub(crate) next_id: BranchId,
    /// Parents before children.
    pub(crate) branches: Vec<BranchImage>,
    /// The branch-graph history up to `covered`.
    pub(crate) history: Vec<HistoryEntry>,
    /// Leases: (branch, LSN, until).
    pub(crate) leases: Vec<(BranchId, Lsn, Timestamp)>,
}

impl Checkpoint {
    /// Where replay of the WAL must start for this catalog: the lowest `flushed` of any
    /// branch (page versions above it may be only in the WAL), at most `covered`; with the
    /// branch that holds it there, if any.
    pub(crate) fn replay_from(&self) -> (Lsn, Option<&BranchImage>) {
        match self.branches.iter().min_by_key(|branch| branch.flushed) {
            Some(branch) if branch.flushed < self.covered => (branch.flushed, Some(branch)),
            _ => (self.covered, None),
        }
    }

    /// The ids of every branch the catalog lists.
    pub(crate) fn branch_ids(&self) -> std::collections::BTreeSet<BranchId> {
        self.branches.iter().map(|branch| branch.id).collect()
    }

    /// The names of every file the catalog lists: layer files (in `layers/`) and commit
    /// runs (in `commits/`).
    pub(crate) fn listed_files(&self) -> std::collections::BTreeSet<String> {
        self.branches
            .iter()
            .flat_map(|branch| {
                let layers = branch.layers.iter().map(|layer| layer.name.clone());
                let runs = branch.commit_runs.iter().map(|run| run.name.clone());
                layers.chain(runs)
            })
            .collect()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        self.encode_as(FORMAT_VERSION)
    }

    /// The catalog in format `version`: 6, or 5 (for tests of what older builds wrote:
    /// no commit runs, every point inline).
    pub(crate) fn encode_as(&self, version: u32) -> Vec<u8> {
        assert!(
            version == FORMAT_VERSION
                || (version == 5 && self.branches.iter().all(|b| b.commit_runs.is_empty())),
            "a catalog is written in format 6, or 5 without commit runs"
        );
        let mut out = Vec::new();
        out.put_slice(&MAGIC);
        out.put_u32_le(version);
        out.put_u64_le(self.covered.0);
        out.put_u64_le(self.last_time.0);
        out.put_u64_le(self.next_id.0);
        out.put_u32_le(u32::try_from(self.branches.len()).expect("branch count fits u32"));
        for branch in &self.branches {
            out.put_u64_le(branch.id.0);
            put_name(&mut out, &branch.name);
            put_parent(&mut out, branch.parent);
            out.put_u64_le(branch.created.0);
            out.put_u64_le(branch.created_lsn.0);
            put_options(&mut out, branch.options);
            put_lsn_for_time(&mut out, branch.created_at_time);
            out.put_u8(u8::from(branch.hidden));
            put_window(&mut out, branch.pitr_window);
            out.put_u64_le(branch.gc_cutoff.0);
            out.put_u64_le(branch.start.0);
            out.put_u64_le(branch.head.0);
            out.put_u64_le(branch.flushed.0);
            if version >= 6 {
                out.put_u32_le(
                    u32::try_from(branch.commit_runs.len()).expect("commit run count fits u32"),
                );
            }
            for run in &branch.commit_runs {
                put_name(&mut out, &run.name);
                out.put_u64_le(run.size);
                out.put_u32_le(run.checksum);
            }
            out.put_u32_le(u32::try_from(branch.commits.len()).expect("commit count fits u32"));
            for commit in &branch.commits {
                out.put_u64_le(commit.lsn.0);
                out.put_u64_le(commit.time.0);
            }
            out.put_u32_le(u32::try_from(branch.layers.len()).expect("layer count fits u32"));
            for layer in &branch.layers {
                put_name(&mut out, &layer.name);
                out.put_u64_le(layer.size);
                out.put_u32_le(layer.checksum);
                out.put_u8(layer.level.code());
            }
        }
        out.put_u32_le(u32::try_from(self.history.len()).expect("history length fits u32"));
        for entry in &self.history {
            out.put_u64_le(entry.lsn.0);
            out.put_u64_le(entry.time.0);
            out.put_u8(entry.operation.code());
            out.put_u64_le(entry.branch_id.0);
            put_name(&mut out, &entry.branch);
            put_bytes(&mut out, entry.details.as_bytes());
        }
        out.put_u32_le(u32::try_from(self.leases.len()).expect("lease count fits u32"));
        for (branch, lsn, until) in &self.leases {
            out.put_u64_le(branch.0);
            out.put_u64_le(lsn.0);
            out.put_u64_le(until.0);
        }
        let crc = crc32fast::hash(&out);
        out.put_u32_le(crc);
        out
    }

    pub(crate) fn decode(bytes: Bytes, path: &Path) -> Result<Checkpoint> {
        let corrupt = |offset: u64, reason: String| EngineError::CorruptFile {
            path: path.to_owned(),
            offset,
            reason,
        };
        let Some(body_len) = bytes.len().checked_sub(4) else {
            return Err(corrupt(0, "shorter than a checksum".to_owned()));
        };
        let body = bytes.slice(..body_len);
        let mut stored = [0u8; 4];
        stored.copy_from_slice(bytes.get(body_len..).unwrap_or_default());
        if crc32fast::hash(&body) != u32::from_le_bytes(stored) {
            return Err(corrupt(
                body_len as u64,
                whole_file_checksum_mismatch(body_len),
            ));
        }
        let mut cursor = Cursor::new(body);
        let parse = |cursor: &mut Cursor| -> std::result::Result<Checkpoint, String> {
            if cursor.take(8, "magic")?[..] != MAGIC {
                return Err("bad magic: not a pagefork checkpoint".to_owned());
            }
            let version = cursor.u32("format version")?;
            if !(1..=FORMAT_VERSION).contains(&version) {
                return Err(format!("unsupported format version {version}"));
            }
            let covered = Lsn(cursor.u64("covered LSN")?);
            let last_time = Timestamp(cursor.u64("last time")?);
            let next_id = BranchId(cursor.u64("next branch id")?);
            let branch_count = cursor.u32("branch count")?;
            let mut branches = Vec::new();
            for _ in 0..branch_count {
                let id = BranchId(cursor.u64("branch id")?);
                let name = cursor.name()?;
                let parent = cursor.parent()?;
                let created = Timestamp(cursor.u64("created time")?);
                let created_lsn = Lsn(cursor.u64("created LSN")?);
                let options = cursor.options()?;
                let created_at_time = cursor.lsn_for_time()?;
                let hidden = version >= 3 && cursor.flag("hidden")?;
                let (pitr_window, gc_cutoff) = if version >= 4 {
                    (cursor.window()?, Lsn(cursor.u64("GC cutoff")?))
                } else {
                    (None, Lsn(0))
                };
                let start = if version >= 5 {
                    Lsn(cursor.u64("start LSN")?)
                } else {
                    parent.map_or(created_lsn, |(_, branch_point)| branch_point)
                };
                let head = Lsn(cursor.u64("head")?);
                let flushed = if version == 1 {
                    covered
                } else {
                    Lsn(cursor.u64("flushed LSN")?)
                };
                // Catalogs written before `flushed` started at a branch's creation may hold
                // its branch point, which can lie below the retained WAL. No own version of
                // a branch is older than its creation record, so that is where it starts.
                let flushed = flushed.max(created_lsn.min(covered));
                let run_count = if version >= 6 {
                    cursor.u32("commit run count")?
                } else {
                    0
                };
                let mut commit_runs = Vec::new();
                for _ in 0..run_count {
                    let name = cursor.name()?;
                    let size = cursor.u64("commit run size")?;
                    let checksum = cursor.u32("commit run checksum")?;
                    commit_runs.push(RunEntry {
                        name,
                        size,
                        checksum,
                    });
                }
                let commit_count = cursor.u32("commit count")?;
                let mut commits = Vec::new();
                for _ in 0..commit_count {
                    let lsn = Lsn(cursor.u64("commit LSN")?);
                    let time = Timestamp(cursor.u64("commit time")?);
                    commits.push(CommitPoint { lsn, time });
                }
                let layer_count = cursor.u32("layer count")?;
                let mut layers = Vec::new();
                for _ in 0..layer_count {
                    let name = cursor.name()?;
                    let size = cursor.u64("layer size")?;
                    let checksum = cursor.u32("layer checksum")?;
                    let level = if version == 1 {
                        Level::L0
                    } else {
                        let code = cursor.u8("layer level")?;
                        Level::from_code(code)
                            .ok_or_else(|| format!("layer {name:?} has unknown level {code}"))?
                    };
                    layers.push(LayerEntry {
                        name,
                        size,
                        checksum,
                        level,
                    });
                }
                branches.push(BranchImage {
                    id,
                    name,
                    parent,
                    created,
                    created_lsn,
                    options,
                    created_at_time,
                    hidden,
                    pitr_window,
                    gc_cutoff,
                    start,
                    head,
                    flushed,
                    commit_runs,
                    commits,
                    layers,
                });
            }
            let mut history = Vec::new();
            let entry_count = if version >= 3 {
                cursor.u32("history entry count")?
            } else {
                0
            };
            for _ in 0..entry_count {
                let lsn = Lsn(cursor.u64("history LSN")?);
                let time = Timestamp(cursor.u64("history time")?);
                let code = cursor.u8("history operation")?;
                let operation = HistoryOperation::from_code(code)
                    .ok_or_else(|| format!("unknown history operation {code} at {lsn}"))?;
                let branch_id = BranchId(cursor.u64("history branch id")?);
                let branch = cursor.name()?;
                let details = String::from_utf8(cursor.bytes("history details")?.to_vec())
                    .map_err(|_| format!("history details at {lsn} are not UTF-8"))?;
                history.push(HistoryEntry {
                    lsn,
                    time,
                    operation,
                    branch_id,
                    branch,
                    details,
                });
            }
            let mut leases = Vec::new();
            let lease_count = if version >= 4 {
                cursor.u32("lease count")?
            } else {
                0
            };
            for _ in 0..lease_count {
                let branch = BranchId(cursor.u64("lease branch")?);
                let lsn = Lsn(cursor.u64("lease LSN")?);
                let until = Timestamp(cursor.u64("lease end")?);
                leases.push((branch, lsn, until));
            }
            Ok(Checkpoint {
                covered,
                last_time,
                next_id,
                branches,
                history,
                leases,
            })
        };
        // Damage is said where the read stopped: at the field that failed, or just past a
        // value found impossible (found by a review: every one said offset 0).
        let checkpoint =
            parse(&mut cursor).map_err(|reason| corrupt(cursor.position() as u64, reason))?;
        let end = cursor.position() as u64;
        cursor.finish().map_err(|reason| corrupt(end, reason))?;
        Ok(checkpoint)
    }
}

/// Why a file whose checksum covers all of it is refused: the offset named is the
/// checksum's, and the damage may be anywhere before it (a review read the offset as
/// where the damage was).
pub(crate) fn whole_file_checksum_mismatch(body_len: usize) -> String {
    format!(
        "the checksum here does not match the {body_len} bytes before it (the damage may be anywhere in them)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::branch::Expiry;

    fn sample() -> Checkpoint {
        Checkpoint {
            covered: Lsn(0x5000),
            last_time: Timestamp(77),
            next_id: BranchId(4),
            branches: vec![
                BranchImage {
                    id: BranchId(1),
                    name: "main".to_owned(),
                    parent: None,
                    created: Timestamp(1),
                    created_lsn: Lsn(0x40),
                    options: BranchOptions::default(),
                    created_at_time: None,
                    hidden: false,
                    pitr_window: Some(Duration::from_secs(60)),
                    gc_cutoff: Lsn(0x90),
                    start: Lsn(0x40),
                    head: Lsn(0x100),
                    flushed: Lsn(0x100),
                    commit_runs: vec![RunEntry {
                        name: "0000000000000001-0000000000000050-0000000000000090.commits"
                            .to_owned(),
                        size: 68,
                        checksum: 0x1234_5678,
                    }],
                    commits: vec![CommitPoint {
                        lsn: Lsn(0x100),
                        time: Timestamp(5),
                    }],
                    layers: vec![LayerEntry {
                        name: "0000000000000001-0000000000000080-0000000000000101.delta".to_owned(),
                        size: 4096,
                        checksum: 0xDEAD_BEEF,
                        level: Level::L1,
                    }],
                },
                BranchImage {
                    id: BranchId(3),
                    name: "dev".to_owned(),
                    parent: Some((BranchId(1), Lsn(0x80))),
                    created: Timestamp(9),
                    created_lsn: Lsn(0x200),
                    options: BranchOptions {
                        expiry: Expiry::At(Timestamp(99)),
                        protected: true,
                    },
                    created_at_time: None,
                    hidden: true,
                    pitr_window: None,
                    gc_cutoff: Lsn(0),
                    start: Lsn(0x80),
                    head: Lsn(0x80),
                    flushed: Lsn(0x200),
                    commit_runs: vec![],
                    commits: vec![],
                    layers: vec![],
                },
            ],
            history: vec![HistoryEntry {
                lsn: Lsn(0x200),
                time: Timestamp(9),
                operation: HistoryOperation::Create,
                branch_id: BranchId(3),
                branch: "dev".to_owned(),
                details: "from \"main\" at 0/80".to_owned(),
            }],
            leases: vec![(BranchId(1), Lsn(0x100), Timestamp(500))],
        }
    }

    /// Catalogs written before `flushed` started at a branch's creation could hold a
    /// branch point below the retained WAL (issue 18); they read as the created LSN, which
    /// no own version of the branch is older than.
    #[test]
    fn a_flushed_lsn_below_the_branch_creation_reads_as_the_creation() {
        let mut checkpoint = sample();
        checkpoint.branches[1].flushed = Lsn(0x80);
        let decoded =
            Checkpoint::decode(Bytes::from(checkpoint.encode()), Path::new("catalog")).unwrap();
        assert_eq!(decoded.branches[1].flushed, Lsn(0x200));
        assert_eq!(
            decoded.replay_from(),
            (Lsn(0x100), Some(&decoded.branches[0]))
        );
    }

    #[test]
    fn checkpoint_round_trips_and_damage_is_refused() {
        let checkpoint = sample();
        let bytes = checkpoint.encode();
        let path = Path::new("checkpoint");
        assert_eq!(
            Checkpoint::decode(Bytes::from(bytes.clone()), path).unwrap(),
            checkpoint
        );
        for index in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[index] ^= 0x01;
            assert!(
                Checkpoint::decode(Bytes::from(damaged), path).is_err(),
                "byte {index}"
            );
        }
        assert!(Checkpoint::decode(Bytes::from(bytes[..bytes.len() - 1].to_vec()), path).is_err());
        assert!(Checkpoint::decode(Bytes::new(), path).is_err());
    }

    /// `bytes` with its trailing CRC32 made right again.
    fn with_crc(mut bytes: Vec<u8>) -> Bytes {
        let body = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
        Bytes::from(bytes)
    }

    /// Found by a review: damage behind a right checksum (anything that writes the file
    /// can write one) was said at offset 0 whatever field it was in.
    #[test]
    fn damage_behind_a_right_checksum_is_said_where_it_is() {
        let bytes = sample().encode();
        let path = Path::new("checkpoint");
        let offset_of = |bytes: Bytes| match Checkpoint::decode(bytes, path) {
            Err(EngineError::CorruptFile { offset, reason, .. }) => (offset, reason),
            other => panic!("not refused as damage: {other:?}"),
        };
        // The format version (bytes 8..12): said just past it.
        let mut version = bytes.clone();
        version[8..12].copy_from_slice(&99u32.to_le_bytes());
        let (offset, reason) = offset_of(with_crc(version));
        assert_eq!(
            (offset, reason.as_str()),
            (12, "unsupported format version 99")
        );
        // Cut after the header and the branch count (byte 40): the first branch's fields
        // run out there.
        let mut cut = bytes[..40].to_vec();
        cut.extend_from_slice(&[0; 4]);
        let (offset, reason) = offset_of(with_crc(cut));
        assert_eq!(offset, 40, "{reason}");
        // Bytes after the last field: said where the fields ended.
        let mut longer = bytes[..bytes.len() - 4].to_vec();
        let end = longer.len() as u64;
        longer.extend_from_slice(&[0; 5]);
        let (offset, reason) = offset_of(with_crc(longer));
        assert_eq!(offset, end, "{reason}");
    }
}
