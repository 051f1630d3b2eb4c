//! `EngineError`: every way the store refuses or fails, each naming what was wrong.

use std::path::PathBuf;

use pagefork_wal::{Lsn, WalError};

use crate::key::Key;
use crate::time::Timestamp;

/// An error from the store. Refusals change nothing; each names the branch, key, LSN,
/// time or file involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// No live branch has this name.
    #[error("no branch named {}", quoted(.name))]
    UnknownBranch {
        /// The name asked for.
        name: String,
    },
    /// A live branch already has this name.
    #[error("a branch named {} already exists", quoted(.name))]
    BranchExists {
        /// The name.
        name: String,
    },
    /// The name breaks the naming rule.
    #[error("invalid branch name {}: a name is {rule}", quoted(.name))]
    InvalidBranchName {
        /// The name given.
        name: String,
        /// The rule.
        rule: &'static str,
    },
    /// A restore whose default backup name (`NAME_old_<time>`) breaks the naming rule.
    #[error(
        "restoring branch {branch:?} keeps its previous state as {backup:?} by default, which is longer than a name may be (a name is {rule}): name the backup (--backup-name, or backup_name over HTTP) or keep none (--no-backup, no_backup)"
    )]
    DefaultBackupNameInvalid {
        /// The branch restored.
        branch: String,
        /// The default name.
        backup: String,
        /// The rule.
        rule: &'static str,
    },
    /// A commit with no updates.
    #[error("empty commit on branch {branch:?}: a commit needs at least one update")]
    EmptyCommit {
        /// The branch.
        branch: String,
    },
    /// The same key twice in one commit.
    #[error("{key} appears more than once in one commit on branch {branch:?}")]
    DuplicateKey {
        /// The branch.
        branch: String,
        /// The key.
        key: Key,
    },
    /// An image that is not exactly one page.
    #[error("image for {key} is {len} bytes; the page size is {page_size}")]
    ImageSize {
        /// The key.
        key: Key,
        /// The image length given.
        len: usize,
        /// The store's page size.
        page_size: usize,
    },
    /// A patch reaching past the end of the page.
    #[error(
        "patch for {key} writes {len} bytes at offset {offset}, past the page size {page_size}"
    )]
    PatchOutOfBounds {
        /// The key.
        key: Key,
        /// The patch offset.
        offset: u32,
        /// The patch length.
        len: usize,
        /// The store's page size.
        page_size: usize,
    },
    /// A patch on a page that does not exist on the branch.
    #[error("patch for {key} on branch {branch:?}, where that page does not exist")]
    PatchOnMissingPage {
        /// The branch.
        branch: String,
        /// The key.
        key: Key,
    },
    /// A commit too large for one WAL record.
    #[error(
        "commit on branch {branch:?} encodes to {len} bytes; one commit may be at most {max} bytes"
    )]
    CommitTooLarge {
        /// The branch.
        branch: String,
        /// Encoded size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A read or branch point past a branch's head.
    #[error("LSN {lsn} is past the head {head} of branch {branch:?}")]
    LsnPastHead {
        /// The branch.
        branch: String,
        /// The LSN asked for.
        lsn: Lsn,
        /// The branch's head.
        head: Lsn,
    },
    /// An LSN below where a branch's usable history starts: a read or branch point below
    /// its root's start (LSN 0 is below every start), or a lease below the branch's own
    /// start (its branch point, or its creation for a root).
    #[error(
        "branch {branch:?} cannot be used at LSN {lsn}: that is below {start}, where its usable \
         history starts (its root's creation for reads and branch points, its own branch \
         point for leases)"
    )]
    LsnBelowBranchStart {
        /// The branch the LSN was asked of (the parent, for a branch point).
        branch: String,
        /// The LSN asked for.
        lsn: Lsn,
        /// Where the usable history starts.
        start: Lsn,
    },
    /// A time before the first commit the branch can see.
    #[error(
        "time {requested} is before the history of branch {branch:?}, which starts at {earliest}"
    )]
    TimeBeforeHistory {
        /// The branch.
        branch: String,
        /// The time asked for.
        requested: Timestamp,
        /// The earliest time the branch can answer for.
        earliest: Timestamp,
    },
    /// A delete of a branch that still has children.
    #[error("branch {branch:?} has children ({children}); delete them first")]
    HasChildren {
        /// The branch.
        branch: String,
        /// Their names, comma-separated.
        children: String,
    },
    /// A delete of (or an expiry on) the store's last visible branch that never expires.
    #[error(
        "branch {branch:?} is the store's last branch that never expires: without one, the store could be left with no branch to branch from or write to (make another branch that never expires first, or, to start afresh, create a new store)"
    )]
    LastBranch {
        /// The branch.
        branch: String,
    },
    /// The branch has expired: it is never read or written again, and is deleted once
    /// no unexpired descendant needs its history.
    #[error("branch {name:?} expired at {expired_at}")]
    BranchExpired {
        /// The branch.
        name: String,
        /// When it expired.
        expired_at: Timestamp,
    },
    /// The branch is protected and the operation would delete or replace it.
    #[error("branch {branch:?} is protected: unprotect it before {operation} it")]
    Protected {
        /// The branch.
        branch: String,
        /// What was refused ("deleting", "resetting", "restoring").
        operation: &'static str,
    },
    /// A protected branch cannot expire.
    #[error(
        "branch {branch:?} cannot be both protected and expiring: remove the expiry or the protection first"
    )]
    ExpiryOnProtected {
        /// The branch.
        branch: String,
    },
    /// An expiry time that has already passed.
    #[error("branch {branch:?} cannot expire at {expires_at}: that is not after now ({now})")]
    ExpiryInPast {
        /// The branch.
        branch: String,
        /// The expiry asked for.
        expires_at: Timestamp,
        /// The store clock's time.
        now: Timestamp,
    },
    /// An expiry (of a branch or a lease) later than the latest time a store can hold.
    #[error(
        "the expiry asked for on branch {branch:?} is later than {latest}, the latest time a store can hold: give a shorter duration (ttl, --for) or an earlier time"
    )]
    ExpiryTooLate {
        /// The branch (or the branch a lease is on).
        branch: String,
        /// The latest expiry accepted ([`Timestamp::MAX`]).
        latest: Timestamp,
    },
    /// The clock reads later than the latest time a store can hold: a record stamped so
    /// would stay the latest commit time for good (times never go back), and no time a
    /// user can write would reach a commit after it.
    #[error(
        "the clock reads {now}, later than {latest}, the latest time a store can hold: nothing is logged until the clock is set right"
    )]
    ClockPastLatest {
        /// The clock's reading.
        now: Timestamp,
        /// The latest time a store holds ([`Timestamp::MAX`]).
        latest: Timestamp,
    },
    /// A PITR window longer than a store can hold ([`crate::MAX_PITR_WINDOW`]).
    #[error(
        "the PITR window asked for on branch {branch:?} ({}) is longer than a store can hold ({})",
        humantime::format_duration(*window),
        humantime::format_duration(crate::MAX_PITR_WINDOW)
    )]
    PitrWindowTooLong {
        /// The branch.
        branch: String,
        /// The window asked for.
        window: std::time::Duration,
    },
    /// A reset or detach of a branch without a parent.
    #[error(
        "branch {branch:?} has no parent (it is a root): there is nothing to reset it to or detach it from"
    )]
    NoParent {
        /// The branch.
        branch: String,
    },
    /// A read, time lookup, branch point or lease below the branch's GC cutoff: the
    /// history there was (or may by now have been) garbage-collected.
    #[error(
        "branch {branch:?}: {} is below its GC cutoff {cutoff}; history before the cutoff is outside the PITR window and garbage-collected (to branch from a point later, lease it before GC passes it)",
        describe_requested(*lsn, *time)
    )]
    BelowGcCutoff {
        /// The branch.
        branch: String,
        /// The LSN asked for (or the one a time resolved to).
        lsn: Lsn,
        /// The time asked for, if the request was a time.
        time: Option<Timestamp>,
        /// The branch's GC cutoff: the oldest LSN it can still be read at (besides leases).
        cutoff: Lsn,
    },
    /// A lease of no length.
    #[error("a lease on branch {branch:?} must last longer than zero")]
    EmptyLease {
        /// The branch.
        branch: String,
    },
    /// A configuration value out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// `create` on a directory that already holds a store.
    #[error("a pagefork store already exists in {dir}")]
    StoreExists {
        /// The directory.
        dir: PathBuf,
    },
    /// `create` on a directory that holds a store's files but no `pagefork.meta`: a
    /// store that lost that file, which a create would overwrite.
    #[error(
        "{dir} holds a store's files ({found}) but no pagefork.meta: not creating a store over them. If this store lost its pagefork.meta, restore that file from a backup; if a create or an attach into this directory stopped half way, or to start afresh, remove them first"
    )]
    StoreFilesWithoutMeta {
        /// The directory.
        dir: PathBuf,
        /// The store files found there.
        found: String,
    },
    /// `open` on a directory holding a store's log but no `pagefork.meta` (and no sign of
    /// a create under way): a store that lost its metadata file.
    #[error(
        "the store in {dir} lost its pagefork.meta: the directory holds a store's files ({found}) but not that file: restore pagefork.meta from a backup; if a create or an attach into it stopped half way, remove them and run it again (`init` will not overwrite them)"
    )]
    MetaMissing {
        /// The directory.
        dir: PathBuf,
        /// The store files found there.
        found: String,
    },
    /// `open` on a directory without a store.
    #[error("no pagefork store in {dir}: {reason}")]
    NotAStore {
        /// The directory.
        dir: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The store keeps its pages with a backend this build does not have.
    #[error(
        "the store in {dir} keeps its page versions in {backend}, and this build has no {backend} backend (build pagefork with the `{backend}` cargo feature)"
    )]
    BackendNotBuilt {
        /// The store's directory.
        dir: PathBuf,
        /// The backend it was created with.
        backend: crate::backend::Backend,
    },
    /// A store file is damaged.
    #[error("store file {path} is damaged at offset {offset}: {reason}")]
    CorruptFile {
        /// The file.
        path: PathBuf,
        /// Byte offset of the damage.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An evicted layer file could not be read back from the layer cache's source (remote
    /// storage); the message names the object and what failed.
    #[error("layer {name} is evicted from local disk and could not be read back: {reason}")]
    LayerFetch {
        /// The layer's file name.
        name: String,
        /// What failed.
        reason: String,
    },
    /// The catalog needs WAL records the log no longer holds: replay must start below the
    /// oldest retained segment.
    #[error(
        "the catalog {catalog} needs the WAL from {replay_from} ({held_by}), but the oldest segment kept in {wal_dir} starts at {wal_start}: the records in between are missing"
    )]
    WalGap {
        /// The catalog file.
        catalog: PathBuf,
        /// The WAL directory.
        wal_dir: PathBuf,
        /// Where replay must start.
        replay_from: Lsn,
        /// What holds replay there: the branch whose `flushed` LSN it is, or the cut.
        held_by: String,
        /// The first LSN the log still holds.
        wal_start: Lsn,
    },
    /// The catalog covers records the WAL no longer holds at its end (the log lost records
    /// the catalog was written after, or was cut by a salvage): new records would reuse
    /// LSNs the catalog already knows.
    #[error(
        "the catalog {catalog} covers the WAL up to {covered}, but the log in {wal_dir} ends at {wal_end}: records the catalog relies on are missing"
    )]
    WalBehindCatalog {
        /// The catalog file.
        catalog: PathBuf,
        /// The WAL directory.
        wal_dir: PathBuf,
        /// What the catalog covers.
        covered: Lsn,
        /// Where the log ends.
        wal_end: Lsn,
    },
    /// The catalog is missing and the WAL no longer starts at the store's first record, so
    /// the history before the WAL (and the layer files holding it) cannot be found.
    #[error(
        "the WAL starts at {wal_start}, not at the store's first record, and the catalog {catalog}, which alone would hold the history before it, is missing: the catalog is lost ({layer_files} layer files are waiting for it), or the log's first segments are (a store never checkpointed has neither catalog nor layer files). Restore the catalog or the segments from a backup; nothing was changed"
    )]
    CatalogMissing {
        /// Where the catalog should be.
        catalog: PathBuf,
        /// The first LSN the log holds.
        wal_start: Lsn,
        /// Layer files found beside it.
        layer_files: usize,
    },
    /// The store caught itself about to break one of its own invariants and refused the
    /// step; nothing was published or removed. This is a bug: the message says which rule.
    #[error("refused to {action}: {rule} ({detail}); nothing was changed on disk")]
    InvariantViolated {
        /// What was refused.
        action: &'static str,
        /// The invariant it would have broken.
        rule: &'static str,
        /// The values that break it.
        detail: String,
    },
    /// A WAL record passed its checksum but does not decode, or contradicts the history.
    #[error("WAL record at LSN {lsn} is invalid: {reason}")]
    CorruptRecord {
        /// The record's LSN.
        lsn: Lsn,
        /// What is wrong with it.
        reason: String,
    },
    /// An operating-system call failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The housekeeper could not write unflushed versions to layer files, and the
    /// memory budget is spent: writes wait for it and fail with this rather than grow
    /// without bound.
    #[error("memory budget of {budget} bytes is spent and the background flush fails: {reason}")]
    FlushFailed {
        /// The configured budget (`Config::memory_budget_bytes`).
        budget: u64,
        /// The flush's last error.
        reason: String,
    },
    /// An earlier I/O error while writing the store's files (its log, layers or
    /// catalog): the store refuses writes until it is reopened, because after a failed
    /// write or fsync the operating system's view of those files cannot be trusted.
    /// Reads go on; reopening recovers from what is durable.
    #[error(
        "the store refuses writes after an I/O error ({cause}); reopen it to recover (nothing acknowledged was lost)"
    )]
    Poisoned {
        /// The first error.
        cause: String,
        /// Its kind, when it was an operating-system error (`StorageFull` for a full
        /// disk).
        kind: Option<std::io::ErrorKind>,
    },
    /// The write-ahead log failed or refused.
    #[error(transparent)]
    Wal(#[from] WalError),
}

impl EngineError {
    pub(crate) fn io(
        operation: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> EngineError {
        let path = path.into();
        move |source| EngineError::Io {
            operation,
            path,
            source,
        }
    }
}

/// The longest value an error quotes whole.
pub const QUOTED_PREFIX_CHARS: usize = 64;

/// `value` (a name or other text a user gave) quoted for an error message: whole if
/// short, else a prefix and its length, so no error echoes a huge input back.
pub fn quoted(value: &str) -> String {
    match value.char_indices().nth(QUOTED_PREFIX_CHARS) {
        None => format!("{value:?}"),
        Some((cut, _)) => {
            let prefix = value.get(..cut).unwrap_or_default();
            format!("{prefix:?}... ({} bytes in all)", value.len())
        }
    }
}

/// Result type of the store.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

fn describe_requested(lsn: Lsn, time: Option<Timestamp>) -> String {
    match time {
        Some(time) => format!("time {time} (LSN {lsn})"),
        None => format!("LSN {lsn}"),
    }
}
