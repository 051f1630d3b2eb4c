//! The remote storage routes of `pagefork serve --remote`: a project's replication status
//! (`GET .../remote`) and a sync on request that answers once it is done
//! (`POST .../remote/sync`). Without `--remote` both answer 409 `remote_not_configured`.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use pagefork_engine::LayerCacheStats;
use pagefork_remote::{Queued, RemoteError, ReplicaStatus, Replicator, SyncReport};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::params::{NoParameters, ProjectParam};
use super::schema::LsnText;
use super::{AppState, blocking};

/// A project's copy in object storage.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RemoteStatusView {
    /// `s3://bucket/prefix`.
    location: String,
    /// This server's generation there (0 until it connected).
    generation: u32,
    /// Every commit at or below it is in the bucket (`null` before the first sync).
    #[schema(value_type = Option<LsnText>)]
    recovery_point: Option<String>,
    /// Bytes of WAL written since the recovery point (what a lost disk would lose).
    lag_bytes: u64,
    /// Layer files the bucket does not hold yet (flushed since the last sync).
    queued_layers: u64,
    /// Their bytes.
    queued_layer_bytes: u64,
    /// When the last sync completed (Unix milliseconds).
    last_sync_ms: Option<u64>,
    /// Completed and failed syncs.
    syncs: u64,
    /// See `syncs`.
    failures: u64,
    /// The last failure, until a sync succeeds.
    last_error: Option<String>,
    /// Totals of every sync.
    uploaded_objects: u64,
    /// See `uploaded_objects`.
    uploaded_bytes: u64,
    /// See `uploaded_objects`.
    deleted_objects: u64,
    /// The generation that fenced this server (another process attached): it publishes
    /// nothing more there.
    fenced_by: Option<u32>,
    /// A sync is running now.
    syncing: bool,
    /// Local disk as a cache of the bucket (`--local-cache-bytes`); `null` if every layer
    /// file stays on local disk.
    layer_cache: Option<LayerCacheView>,
}

/// What a project's layer cache holds and has done since the server started.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LayerCacheView {
    /// The budget (`null`: nothing evicted on its own).
    budget_bytes: Option<u64>,
    /// Bytes of layer files on local disk (downloads in progress included).
    resident_bytes: u64,
    /// Layer files on local disk.
    resident_layers: u64,
    /// Layer files only in the bucket (downloaded by the first read that needs one).
    evicted_layers: u64,
    /// Layer files downloaded.
    downloads: u64,
    /// See `downloads`.
    downloaded_bytes: u64,
    /// Layer files evicted.
    evictions: u64,
}

impl LayerCacheView {
    fn of(stats: &LayerCacheStats) -> LayerCacheView {
        LayerCacheView {
            budget_bytes: stats.budget_bytes,
            resident_bytes: stats.resident_bytes,
            resident_layers: stats.resident_layers,
            evicted_layers: stats.evicted_layers,
            downloads: stats.downloads,
            downloaded_bytes: stats.downloaded_bytes,
            evictions: stats.evictions,
        }
    }
}

impl RemoteStatusView {
    pub(crate) fn of(
        status: &ReplicaStatus,
        queued: Queued,
        wal_end: pagefork_engine::Lsn,
        layer_cache: Option<LayerCacheStats>,
    ) -> RemoteStatusView {
        let synced = status.recovery_point.map_or(0, |lsn| lsn.0);
        RemoteStatusView {
            location: status.location.clone(),
            generation: status.generation,
            recovery_point: status.recovery_point.map(|lsn| lsn.to_string()),
            lag_bytes: wal_end.0.saturating_sub(synced),
            queued_layers: queued.layers,
            queued_layer_bytes: queued.layer_bytes,
            last_sync_ms: status.last_sync_ms,
            syncs: status.syncs,
            failures: status.failures,
            last_error: status.last_error.clone(),
            uploaded_objects: status.uploaded_objects,
            uploaded_bytes: status.uploaded_bytes,
            deleted_objects: status.deleted_objects,
            fenced_by: status.fenced_by,
            syncing: status.syncing,
            layer_cache: layer_cache.as_ref().map(LayerCacheView::of),
        }
    }
}

/// What one sync did.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SyncView {
    location: String,
    generation: u32,
    /// Every commit at or below it is in the bucket.
    #[schema(value_type = LsnText)]
    recovery_point: String,
    uploaded_objects: u64,
    uploaded_bytes: u64,
    deleted_objects: u64,
    /// Objects no index lists whose deletion failed: the next sync tries again.
    deletions_pending: usize,
    /// Layer files and WAL segments the published index lists.
    layers: usize,
    /// See `layers`.
    wal_segments: usize,
    elapsed_ms: u64,
}

impl SyncView {
    fn of(report: &SyncReport) -> SyncView {
        SyncView {
            location: report.location.clone(),
            generation: report.generation,
            recovery_point: report.recovery_point.to_string(),
            uploaded_objects: report.uploaded_objects,
            uploaded_bytes: report.uploaded_bytes,
            deleted_objects: report.deleted_objects,
            deletions_pending: report.deletions_pending,
            layers: report.layers,
            wal_segments: report.wal_segments,
            elapsed_ms: report.elapsed.as_millis() as u64,
        }
    }
}

/// The project's replicator: 404 for no project, 409 without `--remote`.
fn replicator(state: &AppState, project: &str) -> Result<Arc<Replicator>, ApiError> {
    state.projects.get(project)?;
    state.replication.get(project).ok_or_else(|| {
        ApiError::conflict(
            "remote_not_configured",
            "this server keeps no copy in object storage: start it with --remote s3://BUCKET/PREFIX",
        )
    })
}

/// `GET /v1/projects/{project}/remote`.
#[utoipa::path(get, path = "/v1/projects/{project}/remote", tag = "remote", params(ProjectParam),
    responses((status = 200, description = "The project's replication status", body = RemoteStatusView),
        (status = "4XX", description = "Refused: no such project, or no --remote", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn status(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<RemoteStatusView>, ApiError> {
    let Path(project) = path?;
    let replicator = replicator(&state, &project)?;
    let store = state.projects.get(&project)?;
    let view = blocking(move || {
        let queued = replicator.queued().map_err(|error| match error {
            RemoteError::Engine(error) => ApiError::from(error),
            error => ApiError::internal(error.to_string()),
        })?;
        Ok(RemoteStatusView::of(
            &replicator.status(),
            queued,
            store.stats().wal_end,
            store.layer_cache_stats(),
        ))
    })
    .await?;
    Ok(Json(view))
}

/// `POST /v1/projects/{project}/remote/sync`: a sync that starts after the request, and
/// its answer once it is done.
#[utoipa::path(post, path = "/v1/projects/{project}/remote/sync", tag = "remote", params(ProjectParam),
    request_body(content = NoParameters, description = "An empty object"),
    responses((status = 200, description = "Synced: the recovery point now covers every commit acknowledged before the request", body = SyncView),
        (status = 409, description = "No --remote, this server was fenced by a newer process, the location holds a copy of the store this directory did not publish (not_our_copy), or the project's layers are evicted to another location (evicted_elsewhere)", body = ErrorBody),
        (status = 503, description = "The sync failed (the object storage is unreachable, say); the store goes on locally", body = ErrorBody),
        (status = "4XX", description = "Refused", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn sync(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<NoParameters>, JsonRejection>,
) -> Result<Json<SyncView>, ApiError> {
    let Path(project) = path?;
    let Json(NoParameters {}) = body?;
    let replicator = replicator(&state, &project)?;
    let mounts = Arc::clone(&state.mounts);
    let report = blocking(move || {
        // What programs wrote through the project's mounts and the kernel still caches
        // goes to the store first: the answer covers it.
        mounts
            .write_back_all(&project)
            .map_err(super::mounts::mount_error)?;
        replicator.sync_now().map_err(|error| match error {
            RemoteError::Fenced { .. } => ApiError::conflict("fenced", error.to_string()),
            RemoteError::NotOurCopy { .. } => ApiError::conflict("not_our_copy", error.to_string()),
            RemoteError::EvictedElsewhere { .. } => {
                ApiError::conflict("evicted_elsewhere", error.to_string())
            }
            error => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "remote_unavailable",
                message: error.to_string(),
            },
        })
    })
    .await?;
    Ok(Json(SyncView::of(&report)))
}
