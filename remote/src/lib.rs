//! pagefork's remote storage: a store's published files (layer files, the catalog, the WAL
//! after it) in S3-compatible object storage, with an index that lists them, so a store
//! outlives its disk and opens on another machine (`attach`).
//!
//! A workspace member of its own because it brings the network stack (`object_store`, its
//! HTTP client and an async runtime): the engine stays a synchronous library with no
//! network code, and only what uses remote storage (the `pagefork` command, the tests)
//! links it.
//!
//! The layout under a location's prefix, and the rules that keep it safe
//! ([`docs/remote.md`](../../docs/remote.md) has the full account):
//! - `generations/G`: a process that writes to a prefix first claims a generation G above
//!   every one there; every object key it writes carries G, so no two processes ever write
//!   the same key, and an older process cannot overwrite what a newer one relies on.
//! - `layers/…`, `wal/…`, `catalogs/…`, `meta/…`: objects uploaded once, never modified.
//! - `index/G.json`: generation G's index, written last, after every object it lists is
//!   fully uploaded (DESIGN.md invariant 10). The index of the highest generation is the
//!   truth; a process sees a newer generation before it publishes and stops (fenced).

mod attach;
mod bucket;
mod error;
mod framing;
mod generations;
mod index;
mod keys;
mod layer_source;
mod location;
mod replicator;
mod scrub;
mod state;
mod sync;
mod workers;

pub use attach::{AttachReport, attach, attach_lazily, attach_without_claim};
pub use error::{RemoteError, Result};
pub use index::{INDEX_FORMAT_VERSION, RemoteIndex, RemoteLayer, RemoteObject, RemoteSegment};
pub use layer_source::RemoteLayers;
pub use location::RemoteLocation;
pub use replicator::{LastSync, Queued, ReplicaStatus, Replicator};
pub use scrub::{ScrubReport, scrub};
pub use state::{RecordedCopy, recorded_copy, recorded_location};
pub use sync::{SyncReport, Uploader};
