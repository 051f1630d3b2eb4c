//! Mount endpoints: mount a branch's file tree at a directory inside the server's mount
//! root, unmount it, list a project's mounts. The mounts themselves live in
//! `crate::mount` (`Mounts`, the registry); this module only translates requests and
//! refusals. While a branch is mounted, the operations that would change it under its
//! writer are refused with 409 `branch_mounted` (see `refuse_if_mounted`).

use std::path::PathBuf;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use pagefork_engine::EngineError;
use pagefork_files::FsError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::branches::BranchPath;
use super::error::{ApiError, ErrorBody};
use super::params::{self, BranchParams, NoParameters, ProjectParam, present};
use super::schema::{LsnText, TimeText, TrueOnly};
use super::{AppState, blocking};
use crate::mount::{MountError, MountInfo, MountSpec};
use crate::views::TimeAnswerView;

/// The body of a mount: where, and which state (at most one of `lsn` and `timestamp`;
/// either makes the mount read-only).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MountRequest {
    /// The mount point: an existing, empty directory inside the server's mount root
    /// (`--mount-root`), absolute or relative to it.
    path: String,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = TrueOnly)]
    read_only: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = LsnText)]
    lsn: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = TimeText)]
    timestamp: Option<String>,
}

/// A mounted branch.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MountView {
    branch: String,
    /// Where it is mounted.
    path: String,
    read_only: bool,
    /// The LSN a read-only mount shows.
    lsn: Option<String>,
    /// For a mount at a `timestamp`: the time asked for and the commit it snapped to, as
    /// a branch at a time reports it; `null` otherwise.
    snap: Option<TimeAnswerView>,
}

impl MountView {
    fn of(info: &MountInfo) -> MountView {
        MountView {
            branch: info.branch.clone(),
            path: info.path.display().to_string(),
            read_only: info.read_only,
            lsn: info.lsn.map(|lsn| lsn.to_string()),
            snap: info.snap.as_ref().map(TimeAnswerView::of),
        }
    }
}

/// A project's mounts.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MountList {
    mounts: Vec<MountView>,
}

/// The answer for a refused or failed mount request.
pub(crate) fn mount_error(error: MountError) -> ApiError {
    match error {
        MountError::Mounted { .. } | MountError::MountedAlready { .. } => {
            ApiError::conflict("branch_mounted", error.to_string())
        }
        MountError::Busy { .. } => ApiError::conflict("mount_busy", error.to_string()),
        MountError::NotMounted { .. } => ApiError::not_found("not_mounted", error.to_string()),
        MountError::BadMountPoint { .. } => {
            ApiError::unprocessable("invalid_mount_point", error.to_string())
        }
        MountError::Failed(error) => {
            let error = match error.downcast::<EngineError>() {
                Ok(engine) => return ApiError::from(engine),
                Err(error) => error,
            };
            match error.downcast::<FsError>() {
                Ok(FsError::Store(engine)) => ApiError::from(engine),
                Ok(
                    error @ (FsError::NotATree { lsn: Some(_), .. } | FsError::OtherData { .. }),
                ) => ApiError::unprocessable("no_file_tree", error.to_string()),
                Ok(FsError::NotATree { branch, lsn: None }) => ApiError::unprocessable(
                    "no_file_tree",
                    format!("branch {branch:?} holds no file tree: mount it writable first"),
                ),
                Ok(other) => ApiError::internal(other.to_string()),
                Err(error) => ApiError::internal(format!("{error:#}")),
            }
        }
    }
}

/// Refuses (409 `branch_mounted`, naming the mount point) a change to a mounted branch;
/// otherwise runs `operation` with the registry held, so no mount starts meanwhile.
pub(crate) fn refuse_if_mounted<T>(
    state: &AppState,
    project: &str,
    branch: &str,
    operation: impl FnOnce() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    state
        .mounts
        .unless_mounted(project, branch, operation)
        .map_err(|error| match (&error, state.endpoints.mounted_by_endpoint(project, branch)) {
            (MountError::Mounted { path, .. }, Some(port)) => ApiError::conflict(
                "branch_mounted",
                format!(
                    "branch {branch:?} is mounted at {} by its endpoint (Postgres on port {port}): stop the endpoint first (DELETE /v1/projects/{project}/branches/{branch}/endpoint)",
                    path.display()
                ),
            ),
            _ => mount_error(error),
        })?
}

/// `POST .../mount`.
#[utoipa::path(post, path = "/v1/projects/{project}/branches/{branch}/mount", tag = "mounts",
    params(BranchParams), request_body = MountRequest,
    responses((status = 201, description = "Mounted", body = MountView),
        (status = "4XX", description = "Refused; nothing changed", body = ErrorBody),
        (status = "5XX", description = "A fault of the store or of FUSE", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn mount(
    State(state): State<AppState>,
    path: BranchPath,
    body: Result<Json<MountRequest>, JsonRejection>,
) -> Result<(axum::http::StatusCode, Json<MountView>), ApiError> {
    let Path((project, branch)) = path?;
    let Json(body) = body?;
    let store = state.projects.get(&project)?;
    let at = params::at(
        "lsn",
        body.lsn.as_deref(),
        "timestamp",
        body.timestamp.as_deref(),
    )?;
    let read_only = params::only_true("read_only", body.read_only)?;
    let spec = MountSpec {
        branch,
        dir: PathBuf::new(),
        read_only,
        at,
    };
    let mounts = std::sync::Arc::clone(&state.mounts);
    let info = blocking(move || {
        mounts
            .mount(&project, store, &body.path, spec)
            .map_err(mount_error)
    })
    .await?;
    Ok((axum::http::StatusCode::CREATED, Json(MountView::of(&info))))
}

/// `DELETE .../mount`: unmounts, once everything written through it is durable. Refused
/// (409 `mount_busy`) while files are open under it.
#[utoipa::path(delete, path = "/v1/projects/{project}/branches/{branch}/mount", tag = "mounts",
    params(BranchParams), request_body = NoParameters,
    responses((status = 200, description = "Unmounted", body = MountView),
        (status = "4XX", description = "Refused; nothing changed", body = ErrorBody),
        (status = "5XX", description = "A fault of the store or of FUSE", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn unmount(
    State(state): State<AppState>,
    path: BranchPath,
    body: Result<Json<NoParameters>, JsonRejection>,
) -> Result<Json<MountView>, ApiError> {
    let Path((project, branch)) = path?;
    let Json(NoParameters {}) = body?;
    state.projects.get(&project)?;
    // An endpoint's own mount goes with the endpoint: said so, not as files open under
    // it (found by a review).
    if let Some(port) = state.endpoints.mounted_by_endpoint(&project, &branch) {
        return Err(ApiError::conflict(
            "endpoint_running",
            format!(
                "branch {branch:?} is mounted by its endpoint (Postgres on port {port}): stop the endpoint (DELETE /v1/projects/{project}/branches/{branch}/endpoint), which unmounts it"
            ),
        ));
    }
    let mounts = std::sync::Arc::clone(&state.mounts);
    let info = blocking(move || mounts.unmount(&project, &branch).map_err(mount_error)).await?;
    Ok(Json(MountView::of(&info)))
}

/// `GET /v1/projects/{project}/mounts`.
#[utoipa::path(get, path = "/v1/projects/{project}/mounts", tag = "mounts",
    params(ProjectParam),
    responses((status = 200, description = "The project's mounts, by branch", body = MountList),
        (status = "4XX", description = "Refused", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<MountList>, ApiError> {
    let Path(project) = path?;
    state.projects.get(&project)?;
    let mounts = state
        .mounts
        .list(&project)
        .iter()
        .map(MountView::of)
        .collect();
    Ok(Json(MountList { mounts }))
}
