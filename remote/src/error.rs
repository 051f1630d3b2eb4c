//! The errors of remote storage: each names the location, object key or local file, and
//! offset where it applies.

use std::path::PathBuf;

use pagefork_engine::EngineError;

/// A remote storage operation that failed, and why.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The location could not be understood.
    #[error("invalid remote location {location:?}: {why}")]
    InvalidLocation {
        /// What was given.
        location: String,
        /// What is wrong with it.
        why: String,
    },
    /// The S3 endpoint given with a location could not be understood.
    #[error("invalid S3 endpoint {endpoint:?}: {why}")]
    InvalidEndpoint {
        /// What was given.
        endpoint: String,
        /// What is wrong with it.
        why: String,
    },
    /// A request failed after its retries.
    #[error(
        "{operation} {key} in {location}: {source}{}",
        credentials_hint(source)
    )]
    Request {
        /// What was asked.
        operation: &'static str,
        /// The object key (or prefix) it was about.
        key: String,
        /// The location (`s3://bucket/prefix`).
        location: String,
        /// What the object store client reported.
        #[source]
        source: Box<object_store::Error>,
    },
    /// An object downloaded (or a local file about to be uploaded) is not what the index
    /// (or the catalog) says it is.
    #[error("{what} {name} is damaged at offset {offset}: {why}")]
    Damaged {
        /// "remote object" or "local file".
        what: &'static str,
        /// The object key or file path.
        name: String,
        /// The first byte offset known to be wrong (0 when the whole is).
        offset: u64,
        /// What is wrong.
        why: String,
    },
    /// A newer process claimed the location: this one may no longer publish there.
    #[error(
        "generation {mine} of {location} was superseded by generation {newer}, claimed by {claimed_by}: this process publishes nothing more there (if that process failed or was killed before it published an index, delete generations/{newer:08X} from the location once sure it is not running, and sync again; if it is another store's first sync, give each store a prefix of its own)"
    )]
    Fenced {
        /// The location.
        location: String,
        /// This process's generation.
        mine: u32,
        /// The newest generation found.
        newer: u32,
        /// Who claimed it, as its marker says ("an attach (process 12)"), so a process
        /// that is still running is not mistaken for a failed one.
        claimed_by: String,
    },
    /// The location holds a copy of this store that this directory did not publish:
    /// publishing over it could roll it back.
    #[error(
        "{location} holds a copy of this store that this directory did not publish ({found}; this directory's last: {ours}): {why}; to go on, attach from it into a new directory, or sync this one to another prefix"
    )]
    NotOurCopy {
        /// The location.
        location: String,
        /// The newest index there, described.
        found: String,
        /// What this directory last published or attached from, described.
        ours: String,
        /// How this can be.
        why: &'static str,
    },
    /// The background replicator stopped before it answered.
    #[error("the replicator of {location} has stopped")]
    Stopped {
        /// The location.
        location: String,
    },
    /// A background sync failed (the first error, as text: one sync answers every caller
    /// that was waiting for it).
    #[error("sync to {location} failed: {why}")]
    SyncFailed {
        /// The location.
        location: String,
        /// What failed.
        why: String,
    },
    /// Attach found nothing to attach.
    #[error("{location} holds no index: no store was synced there")]
    NoIndex {
        /// The location.
        location: String,
    },
    /// The location holds a different store.
    #[error(
        "{location} holds another store (log id {found:016x}); this store's log id is {ours:016x}: give it a prefix of its own"
    )]
    OtherStore {
        /// The location.
        location: String,
        /// The log id in the location's index.
        found: u64,
        /// This store's log id.
        ours: u64,
    },
    /// A sync to another location than the one that holds the store's evicted layers:
    /// they are only there, so it could not copy them, and the store would forget where
    /// they are.
    #[error(
        "cannot sync to {location}: {evicted} layer file(s) of this store are evicted to \
         {recorded} and only there; sync to {recorded}, or attach a copy of it elsewhere and \
         sync that"
    )]
    EvictedElsewhere {
        /// The location asked for.
        location: String,
        /// The location the store records, which holds its evicted layers.
        recorded: String,
        /// How many layer files are evicted.
        evicted: u64,
    },
    /// Attach needs an empty directory.
    #[error("cannot attach into {dir}: it is not empty (holds {found})")]
    NotEmpty {
        /// The directory.
        dir: PathBuf,
        /// A few of the names in it.
        found: String,
    },
    /// A local file operation failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was done.
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The store itself refused.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Remote storage's result type.
pub type Result<T> = std::result::Result<T, RemoteError>;

impl RemoteError {
    pub(crate) fn io(
        operation: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> RemoteError {
        let path = path.into();
        move |source| RemoteError::Io {
            operation,
            path,
            source,
        }
    }
}

/// The address of the EC2 instance metadata service, where the S3 client looks for
/// credentials when the environment gives none.
const INSTANCE_METADATA_ADDRESS: &str = "169.254.169.254";

/// What to do when a request failed because no credentials were found: the client then
/// asks the EC2 instance metadata service, and its failure names only that address, which
/// says nothing to a user off EC2.
fn credentials_hint(source: &object_store::Error) -> &'static str {
    match source.to_string().contains(INSTANCE_METADATA_ADDRESS) {
        true => {
            " (no credentials were found in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, so the client asked the EC2 instance metadata service at 169.254.169.254 for some, and got none: set those two variables)"
        }
        false => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_failure(text: &str) -> RemoteError {
        RemoteError::Request {
            operation: "list",
            key: "p/index".to_owned(),
            location: "s3://b/p".to_owned(),
            source: Box::new(object_store::Error::Generic {
                store: "S3",
                source: text.into(),
            }),
        }
    }

    #[test]
    fn a_failure_to_get_credentials_from_the_instance_metadata_service_says_what_to_set() {
        let failure = request_failure(
            "Error performing PUT http://169.254.169.254/latest/api/token: 403 Forbidden",
        );
        let message = failure.to_string();
        assert!(
            message.contains("set those two variables") && message.contains("AWS_ACCESS_KEY_ID"),
            "{message}"
        );
        let other = request_failure("Error performing GET http://127.0.0.1:9/b: refused");
        assert!(!other.to_string().contains("AWS_ACCESS_KEY_ID"), "{other}");
    }
}
