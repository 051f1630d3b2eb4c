//! Branch identity and description: ids, names and their rule, options, and what the
//! store tells users about a branch. The mutable state of a live branch is in `catalog`.

use std::fmt;
use std::time::Duration;

use pagefork_wal::Lsn;

use crate::error::{EngineError, Result};
use crate::time::Timestamp;

/// A branch's permanent id. Names can be reused after a delete; ids never are.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct BranchId(pub u64);

impl fmt::Display for BranchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The rule every branch name must follow, as stated in errors.
pub const BRANCH_NAME_RULE: &str = "1 to 63 characters, each a letter, digit, '.', '_', '/' or '-', where no part between slashes is empty, '.' or '..'";

/// The longest branch name, in bytes (every allowed character is one byte).
pub const BRANCH_NAME_MAX_BYTES: usize = 63;

/// Checks a branch name against [`BRANCH_NAME_RULE`].
pub fn validate_branch_name(name: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-');
    // A part that is `.` or `..` names no branch in a URL: clients resolve it away before
    // sending (a review found such branches reachable only as `%2E`). An empty part (a
    // leading, trailing or doubled `/`) is refused as git refuses it in a ref.
    let parts_ok = name.split('/').all(|part| !matches!(part, "" | "." | ".."));
    if (1..=BRANCH_NAME_MAX_BYTES).contains(&name.len()) && name.chars().all(allowed) && parts_ok {
        Ok(())
    } else {
        Err(EngineError::InvalidBranchName {
            name: name.to_owned(),
            rule: BRANCH_NAME_RULE,
        })
    }
}

/// When a branch expires (Lakebase's spec: exactly one of `ttl`, `expire_time`, `no_expiry`).
/// An expired branch is never readable nor writable; it is deleted by the expiry sweep
/// unless an unexpired descendant still needs its history (see [`BranchInfo::kept_for`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Expiry {
    /// Never expires.
    #[default]
    Never,
    /// Expires this long after it is given (at creation or by `set_expiry`), by the clock
    /// as it is then.
    Ttl(Duration),
    /// Expires at this time.
    At(Timestamp),
}

impl Expiry {
    /// When a branch created at `created` with this expiry expires, if ever.
    pub fn expires_at(self, created: Timestamp) -> Option<Timestamp> {
        match self {
            Expiry::Never => None,
            Expiry::Ttl(ttl) => Some(created.saturating_add(ttl)),
            Expiry::At(time) => Some(time),
        }
    }
}

/// Options for a new branch.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct BranchOptions {
    /// When the branch expires.
    pub expiry: Expiry,
    /// Protected branches cannot be deleted, reset or restored until unprotected, and
    /// cannot have an expiry.
    pub protected: bool,
}

/// What a restore does with the branch's previous state.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub enum Backup {
    /// Keep it as branch `NAME_old_<time>` (Neon's behaviour), so the restore can be
    /// undone by restoring from it.
    #[default]
    Default,
    /// Keep it under this name.
    Named(String),
    /// Keep no backup: the old state stays, hidden, only while children need it.
    Skip,
}

/// Which state of a branch an operation means.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum At {
    /// The branch's head: everything committed to it so far.
    Latest,
    /// The state at this LSN (at or below the head).
    Lsn(Lsn),
    /// The state at this time, snapped to the last commit at or before it
    /// (see [`LsnForTime`]).
    Time(Timestamp),
}

/// How a requested time relates to a branch's history (Neon's kinds).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TimeKind {
    /// There are commits at or before the time and after it.
    Present,
    /// The time is at or after the last commit: the answer is the branch's head.
    Future,
    /// The time is before the branch's first visible commit.
    Past,
    /// The branch's visible history has no commits.
    NoData,
}

/// The answer to "which LSN shows this branch as it was at time `requested`".
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LsnForTime {
    /// The time asked for.
    pub requested: Timestamp,
    /// The resolved LSN: the end of the last commit at or before `requested` (`Present`),
    /// the head (`Future`, `NoData`), or the start of the visible history (`Past`).
    pub lsn: Lsn,
    /// The commit time the answer snapped to (`None` for `Past` and `NoData`).
    pub commit_time: Option<Timestamp>,
    /// How `requested` relates to the history.
    pub kind: TimeKind,
}

impl LsnForTime {
    /// How far back the answer snapped: `requested` minus the commit time.
    pub fn snapped_back(&self) -> Option<Duration> {
        self.commit_time
            .map(|commit_time| self.requested.saturating_duration_since(commit_time))
    }
}

/// What a commit was given.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Commit {
    /// The commit's LSN: the end of its WAL record.
    pub lsn: Lsn,
    /// Its commit time: the store clock's time, never earlier than the previous commit's.
    pub time: Timestamp,
}

/// A branch's parent and branch point.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ParentRef {
    /// The parent's id.
    pub id: BranchId,
    /// The parent's name (for a hidden parent, the name it had when it was replaced).
    pub name: String,
    /// Whether the parent is an old state replaced by a reset or restore without a backup,
    /// kept (unnamed) because this branch's history runs through it.
    pub hidden: bool,
    /// The branch point: the branch sees the parent as it was at this LSN.
    pub lsn: Lsn,
}

/// Everything the store says about a branch.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BranchInfo {
    /// Permanent id.
    pub id: BranchId,
    /// Current name.
    pub name: String,
    /// Parent and branch point; `None` for a root branch.
    pub parent: Option<ParentRef>,
    /// The latest LSN of the branch: its last commit, or its branch point if it has none
    /// (for a root without commits, the LSN of its creation).
    pub head: Lsn,
    /// When it was created (store clock).
    pub created: Timestamp,
    /// The LSN of the record that created it.
    pub created_lsn: Lsn,
    /// Its expiry as requested (a TTL given at creation is kept as the time it ends:
    /// `Expiry::At`).
    pub expiry: Expiry,
    /// When it expires, if ever.
    pub expires_at: Option<Timestamp>,
    /// Whether it is protected.
    pub protected: bool,
    /// For a branch created (or restored) at a timestamp: how that time was resolved.
    pub created_at_time: Option<LsnForTime>,
    /// For an expired branch still there: the unexpired descendants whose history runs
    /// through it (it is deleted once they are gone). Empty otherwise.
    pub kept_for: Vec<String>,
    /// Its own PITR window, if set; `None`: the store's default (`Config::pitr_window`).
    pub pitr_window: Option<Duration>,
    /// The oldest LSN it can be read, branched or leased at (besides active leases):
    /// set by GC, only moves forward (see [`crate::Store::gc`]). 0 before any GC.
    pub gc_cutoff: Lsn,
}

/// A lease: the state of a branch at one LSN, kept from GC until it expires.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Lease {
    /// The branch.
    pub branch: String,
    /// The LSN whose state is kept.
    pub lsn: Lsn,
    /// When the lease ends.
    pub expires_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_follow_the_rule() {
        for good in [
            "main",
            "a",
            "feature/x-1.2_b",
            &"x".repeat(63),
            "...",
            ".hidden/..x/x..",
        ] {
            assert!(validate_branch_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            " main",
            "ünï",
            "a b",
            "x\0",
            &"x".repeat(64),
            "semi;colon",
            ".",
            "..",
            "feature/..",
            "./x",
            "a//b",
            "/a",
            "a/",
            "/",
        ] {
            let error = validate_branch_name(bad).unwrap_err();
            assert!(error.to_string().contains(BRANCH_NAME_RULE), "{error}");
        }
    }

    #[test]
    fn expiry_times() {
        let created = Timestamp(1_000_000);
        assert_eq!(Expiry::Never.expires_at(created), None);
        assert_eq!(
            Expiry::Ttl(Duration::from_secs(1)).expires_at(created),
            Some(Timestamp(2_000_000))
        );
        assert_eq!(
            Expiry::At(Timestamp(5)).expires_at(created),
            Some(Timestamp(5))
        );
    }
}
