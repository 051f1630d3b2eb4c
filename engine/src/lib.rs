//! pagefork-engine: a copy-on-write branching page store, embeddable or in memory.
//!
//! Pages are immutable versions keyed by (key, LSN) behind pagefork's write-ahead log. A
//! branch is a pointer (parent, LSN): creating one copies nothing. A read at LSN L on a
//! branch sees the branch's own commits at or below L, then its parent as of
//! min(L, branch point), recursively; no write on one branch is visible on another. A
//! time resolves to the last commit at or before it, and every answer says what it
//! snapped to. Every change is one WAL record: atomic, durable before it is acknowledged
//! (with `SyncMode::Always` or `Group`), and replayed on open.
//!
//! ```
//! use bytes::Bytes;
//! use pagefork_engine::{At, BranchOptions, Config, Key, Store, Update};
//! # fn main() -> Result<(), pagefork_engine::EngineError> {
//! let store = Store::in_memory(Config::default())?;
//! let key = Key::new(1, 0);
//! let before = store.commit("main", vec![(key, Update::Image(Bytes::from(vec![1u8; 8192])))])?;
//! let test = store.create_branch("test", "main", At::Latest, BranchOptions::default())?;
//! store.commit("test", vec![(key, Update::Patch { offset: 0, bytes: Bytes::from_static(b"changed") })])?;
//! assert_eq!(store.get_page("main", key, At::Latest)?.unwrap()[0], 1);   // main untouched
//! assert_eq!(&store.get_page("test", key, At::Latest)?.unwrap()[..7], b"changed");
//! assert_eq!(test.parent.unwrap().lsn, before.lsn);
//! # Ok(()) }
//! ```

#![cfg_attr(test, allow(clippy::indexing_slicing, clippy::unwrap_used))]

mod backend;
mod branch;
mod cache;
mod catalog;
mod checkpoint;
mod codec;
mod commits;
mod error;
mod fs;
mod history;
mod key;
pub mod layer;
mod log;
mod machine;
mod meta;
pub mod model;
mod record;
#[cfg(feature = "rocksdb")]
mod rocks;
mod store;
mod time;
mod update;
mod versions;

pub use backend::{Backend, ParseBackendError};
pub use branch::{
    At, BRANCH_NAME_MAX_BYTES, BRANCH_NAME_RULE, Backup, BranchId, BranchInfo, BranchOptions,
    Commit, Expiry, Lease, LsnForTime, ParentRef, TimeKind, validate_branch_name,
};
pub use error::{EngineError, QUOTED_PREFIX_CHARS, Result, quoted};
pub use fs::{
    Access, FileSystem, FsFile, FsLock, MappedFile, StdFileSystem, create_dir_all_durably,
    publish_file,
};
pub use history::{HistoryEntry, HistoryOperation};
pub use key::Key;
pub use layer::{LayerCacheConfig, LayerCacheStats, LayerSource};
/// The simulated, fault-injecting file system (see [`pagefork_wal::sim`]).
pub use pagefork_wal::sim;
pub use pagefork_wal::{
    DroppedTail, Lsn, RecoveryMode, RecoveryReport, SegmentFile, SyncMode, WalError,
};
pub use store::{
    BranchFiles, BranchFilter, BranchGc, BranchHold, BranchPage, CREATE_DEBRIS,
    CREATING_MARKER_NAME, CommitRunSummary, Config, DEFAULT_CHECKPOINT_AFTER_BYTES,
    DEFAULT_COMPACT_L0_LAYERS, DEFAULT_GC_PERIOD, DEFAULT_IMAGE_AFTER_CHANGED_PERCENT,
    DEFAULT_IMAGE_AFTER_DELTAS, DEFAULT_L1_LAYER_BYTES, DEFAULT_LAYER_FLUSH_BYTES,
    DEFAULT_MEMORY_BUDGET_BYTES, DEFAULT_PAGE_CACHE_BYTES, DEFAULT_PAGE_SIZE, DEFAULT_PITR_WINDOW,
    DEFAULT_ROOT_BRANCH, FormatVersions, GcReport, LayerFileSummary,
    MAX_DEFAULT_MEMORY_BUDGET_BYTES, MAX_PITR_WINDOW, PageDiff, PublishedFiles, PublishedLayer,
    ReadTrace, RelationDiff, Restored, RetainPoint, RetainReason, STORE_FILE_NAMES, Store,
    StoreFiles, StorePaths, StoreStats, WalEntry, WalFiles, check_page_size, default_backup_name,
    default_memory_budget_bytes,
};
pub use time::{Clock, ManualClock, ParseTimestampError, SystemClock, Timestamp};
pub use update::{Depth, Update};
