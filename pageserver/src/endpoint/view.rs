//! What an endpoint answers, the same for `pagefork endpoint start --json` and the HTTP
//! API (whose OpenAPI document is made from these types).

use pagefork_engine::LsnForTime;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::EndpointInfo;
use super::registry::Started;
use crate::views::TimeAnswerView;

/// A running endpoint.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct EndpointView {
    branch: String,
    /// How to connect: `postgresql://postgres@127.0.0.1:PORT/postgres` (trust
    /// authentication, loopback only).
    connection_string: String,
    port: u16,
    /// The postmaster's process id.
    pid: u32,
    /// The data directory (inside the branch's mount).
    data_directory: String,
    /// The server's log.
    log: String,
    /// Whether this start ran `initdb` (the branch was empty).
    initialized: bool,
    /// Milliseconds from starting the server to its accepting connections (crash
    /// recovery included).
    ready_ms: u64,
}

impl EndpointView {
    /// The branch it runs on.
    pub(crate) fn branch(&self) -> &str {
        &self.branch
    }

    /// How to connect.
    pub(crate) fn connection_string(&self) -> &str {
        &self.connection_string
    }

    /// Its port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The server's log.
    pub(crate) fn log(&self) -> &str {
        &self.log
    }

    pub(crate) fn of(info: &EndpointInfo) -> EndpointView {
        EndpointView {
            branch: info.branch.clone(),
            connection_string: info.connection_string(),
            port: info.port,
            pid: info.pid,
            data_directory: info.data_directory.display().to_string(),
            log: info.log.display().to_string(),
            initialized: info.initialized,
            ready_ms: u64::try_from(info.ready_after.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// A started endpoint and what its branch shows.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StartedEndpoint {
    endpoint: EndpointView,
    /// For a branch created at a time: the time asked for and the commit it snapped to.
    branch_created_at: Option<TimeAnswerView>,
    /// For a branch created at a time: the commit time of the last transaction the
    /// server sees (Postgres' `pg_last_committed_xact()`; endpoints track commit
    /// timestamps), `null` if none committed since timestamps were tracked. `null` for a
    /// branch at the latest commit (not asked: it would cost the start a connection).
    last_committed_transaction: Option<String>,
}

impl StartedEndpoint {
    /// The answer for `started`, on a branch created at `created_at` (if at a time). A
    /// start that ran initdb shows a new cluster, not the state the time snapped to, and
    /// pairs nothing with it (a review found a branch at a time before initdb reported so).
    pub(crate) fn of(started: &Started, created_at: Option<&LsnForTime>) -> StartedEndpoint {
        let created_at = created_at.filter(|_| !started.info.initialized);
        StartedEndpoint {
            endpoint: EndpointView::of(&started.info),
            branch_created_at: created_at.map(TimeAnswerView::of),
            last_committed_transaction: created_at.and_then(|_| started.last_commit_time.clone()),
        }
    }
}
