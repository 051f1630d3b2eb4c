//! The local state file `pagefork.remote` in a store's directory: which location the
//! store is copied to and the generation this disk holds there. Written crash-safely
//! (`publish_file`) when a generation is claimed and by `attach`; framed like the index
//! (`framing`), format version 1.

use std::path::{Path, PathBuf};

use pagefork_engine::{Lsn, StdFileSystem, publish_file};
use serde::{Deserialize, Serialize};

use crate::error::{RemoteError, Result};
use crate::index::IndexMark;
use crate::location::RemoteLocation;

/// The location the store in `dir` is copied to, as its `pagefork.remote` file records it
/// (`None` if it has none): where its evicted layer files are read back from. Credentials
/// come from the `AWS_*` environment variables as always.
pub fn recorded_location(dir: &Path) -> Result<Option<RemoteLocation>> {
    LocalState::read(dir)?
        .map(|state| RemoteLocation::parse_recorded(&state.location, state.s3_endpoint.as_deref()))
        .transpose()
}

/// The state file's name in a store's directory.
pub(crate) const STATE_FILE_NAME: &str = "pagefork.remote";
const STATE_FORMAT_VERSION: u32 = 1;

/// What the state file records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LocalState {
    pub(crate) format_version: u32,
    /// `s3://bucket/prefix`.
    pub(crate) location: String,
    /// The S3-compatible server's URL, if not AWS's (absent in files written before it
    /// was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) s3_endpoint: Option<String>,
    /// The generation this store holds there.
    pub(crate) generation: u32,
    /// The recovery point of the last sync from (or attach into) this directory: every
    /// commit at or below it is in the bucket (absent before the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) recovery_point: Option<u64>,
    /// The index this directory last published there, or attached from (absent in files
    /// written before it was recorded: then nothing is checked against it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) published: Option<IndexMark>,
    /// The index this directory is publishing: recorded before the index is written, so
    /// a crash between the two leaves an index the directory still knows as its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) publishing: Option<IndexMark>,
}

/// What a store's `pagefork.remote` file says about its copy (see [`recorded_copy`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedCopy {
    /// Where: `s3://bucket/prefix`.
    pub location: String,
    /// The generation this directory holds there.
    pub generation: u32,
    /// The recovery point of the last sync from (or attach into) this directory.
    pub recovery_point: Option<Lsn>,
}

/// What the `pagefork.remote` file of the store in `dir` records (`None` if it has none):
/// for `pagefork stats`, with no request to the bucket.
pub fn recorded_copy(dir: &Path) -> Result<Option<RecordedCopy>> {
    Ok(LocalState::read(dir)?.map(|state| RecordedCopy {
        location: state.location,
        generation: state.generation,
        recovery_point: state.recovery_point.map(Lsn),
    }))
}

impl LocalState {
    pub(crate) fn new(location: &RemoteLocation, generation: u32) -> LocalState {
        LocalState {
            format_version: STATE_FORMAT_VERSION,
            location: location.url(),
            s3_endpoint: location.endpoint().map(str::to_owned),
            generation,
            recovery_point: None,
            published: None,
            publishing: None,
        }
    }

    /// The same, remembering `mark` as the index it last published or attached from.
    pub(crate) fn published(self, mark: IndexMark) -> LocalState {
        LocalState {
            published: Some(mark),
            publishing: None,
            ..self
        }
    }

    /// Whether the index marked `mark` is one this directory published (or is publishing,
    /// or attached from). A file that recorded no index knows nothing to check.
    pub(crate) fn knows(&self, mark: &IndexMark) -> bool {
        self.published.is_none()
            || self.published.as_ref() == Some(mark)
            || self.publishing.as_ref() == Some(mark)
    }

    /// The same, recording `recovery_point`.
    pub(crate) fn at(self, recovery_point: Lsn) -> LocalState {
        LocalState {
            recovery_point: Some(recovery_point.0),
            ..self
        }
    }

    fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE_NAME)
    }

    /// The state file of the store in `dir`, `None` if it has none; damage is an error
    /// naming the file and offset.
    pub(crate) fn read(dir: &Path) -> Result<Option<LocalState>> {
        let path = LocalState::path(dir);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(RemoteError::io("read", &path)(error)),
        };
        let damaged = |offset: u64, why: String| RemoteError::Damaged {
            what: "local file",
            name: path.display().to_string(),
            offset,
            why,
        };
        let line = crate::framing::decode(&bytes).map_err(|(offset, why)| damaged(offset, why))?;
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|error| damaged(error.column() as u64, error.to_string()))?;
        if crate::framing::format_version(&value) != Some(u64::from(STATE_FORMAT_VERSION)) {
            return Err(damaged(
                0,
                format!("not format version {STATE_FORMAT_VERSION}"),
            ));
        }
        serde_json::from_value(value)
            .map(Some)
            .map_err(|error| damaged(0, error.to_string()))
    }

    /// Publishes the state file of the store in `dir` crash-safely.
    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        let path = LocalState::path(dir);
        let line = serde_json::to_string(self).map_err(|error| RemoteError::Io {
            operation: "encode",
            path: path.clone(),
            source: std::io::Error::other(error),
        })?;
        publish_file(&StdFileSystem, &path, &crate::framing::encode(&line))
            .map_err(RemoteError::io("publish", &path))
    }
}
