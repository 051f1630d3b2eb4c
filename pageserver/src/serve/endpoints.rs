//! Endpoints over HTTP: `POST`/`DELETE /v1/projects/P/branches/B/endpoint` start and stop
//! a Postgres server on the branch (`crate::endpoint`), `GET /v1/projects/P/endpoints`
//! lists them. A start answers once the server accepts connections, with its connection
//! string and, for a branch made at a time, what the time snapped to beside the commit
//! time of the last transaction the server sees.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use pagefork_engine::EngineError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::branches::BranchPath;
use super::error::{ApiError, ErrorBody};
use super::mounts::mount_error;
use super::params::{self, BranchParams, NoParameters, ProjectParam, present};
use super::schema::BranchReferenceText;
use super::{AppState, blocking};
use crate::endpoint::registry::Started;
use crate::endpoint::schema::SchemaDiff;
use crate::endpoint::view::{EndpointView, StartedEndpoint};
use crate::endpoint::{EndpointError, EndpointSpec, point_in_time_of};

/// The body of an endpoint start (`{}` for the defaults).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndpointRequest {
    /// The port on 127.0.0.1, unprivileged (a free one if not given).
    #[serde(default, deserialize_with = "params::present_whole_u32")]
    #[schema(value_type = u16, minimum = 1024, maximum = 65535)]
    port: Option<u32>,
    /// Server settings, as `postgres -c name=value` takes them (after the endpoint's own
    /// defaults, track_commit_timestamp and recovery_init_sync_method). port,
    /// listen_addresses, unix_socket_directories, data_directory and config_file are the
    /// endpoint's own: 422 `invalid_setting` before anything is mounted, as is a name or
    /// value Postgres refuses.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = BTreeMap<String, String>)]
    settings: Option<BTreeMap<String, String>>,
}

/// A project's endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EndpointList {
    endpoints: Vec<EndpointView>,
}

/// The answer for a refused or failed endpoint request.
pub(super) fn endpoint_error(error: EndpointError) -> ApiError {
    let message = error.to_string();
    match error {
        EndpointError::AlreadyRunning { .. } | EndpointError::Starting { .. } => {
            ApiError::conflict("endpoint_running", message)
        }
        EndpointError::Abandoned { .. } | EndpointError::ClientStopped { .. } => {
            ApiError::unavailable("shutting_down", message)
        }
        EndpointError::PortInUse { .. } => ApiError::conflict("port_in_use", message),
        EndpointError::InvalidSetting { .. } | EndpointError::RefusedSetting { .. } => {
            ApiError::unprocessable("invalid_setting", message)
        }
        EndpointError::NotRunning { .. } => ApiError::not_found("no_endpoint", message),
        EndpointError::NotADataDirectory { .. } => {
            ApiError::unprocessable("not_a_data_directory", message)
        }
        EndpointError::Unreachable { .. } => ApiError::unprocessable("unreachable_mount", message),
        EndpointError::Mount(error) => mount_error(error),
        EndpointError::Failed(error) => match error.downcast::<EngineError>() {
            Ok(engine) => ApiError::from(engine),
            Err(error) => ApiError::internal(format!("{error:#}")),
        },
        EndpointError::NoPostgres { .. }
        | EndpointError::NoPostgresUser
        | EndpointError::StartFailed { .. } => ApiError::internal(message),
    }
}

/// `POST .../endpoint`.
#[utoipa::path(post, path = "/v1/projects/{project}/branches/{branch}/endpoint",
    tag = "endpoints", params(BranchParams), request_body = EndpointRequest,
    responses((status = 201, description = "Started: the server accepts connections",
            body = StartedEndpoint),
        (status = "4XX", description = "Refused; nothing changed", body = ErrorBody),
        (status = "5XX", description = "Postgres or the store failed", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn start(
    State(state): State<AppState>,
    path: BranchPath,
    body: Result<Json<EndpointRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<StartedEndpoint>), ApiError> {
    let Path((project, branch)) = path?;
    let Json(body) = body?;
    let store = state.projects.get(&project)?;
    let port = match body.port {
        Some(port) if port >= u32::from(crate::endpoint::MIN_PORT) && port <= 65535 => {
            u16::try_from(port).ok()
        }
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "port must be between {} and 65535 (Postgres runs unprivileged)",
                crate::endpoint::MIN_PORT
            )));
        }
        None => None,
    };
    let settings = body.settings.unwrap_or_default();
    let spec = EndpointSpec {
        port,
        pg_bin: state.options.pg_bin.clone(),
        settings: settings.into_iter().collect(),
        refuse_empty: false,
    };
    let (endpoints, mounts) = (Arc::clone(&state.endpoints), Arc::clone(&state.mounts));
    let (started, created_at) = blocking(move || {
        let created_at = point_in_time_of(&store.branch_info(&branch)?);
        let started: Started = endpoints
            .start(&project, store, &mounts, &branch, &spec)
            .map_err(endpoint_error)?;
        Ok((started, created_at))
    })
    .await?;
    let created_at = created_at
        .as_ref()
        .and_then(|point| point.confirmed(started.last_commit_time.as_deref()));
    Ok((
        StatusCode::CREATED,
        Json(StartedEndpoint::of(&started, created_at)),
    ))
}

/// `DELETE .../endpoint`: a fast shutdown (a checkpoint, clients disconnected), then the
/// branch is unmounted if the endpoint mounted it.
#[utoipa::path(delete, path = "/v1/projects/{project}/branches/{branch}/endpoint",
    tag = "endpoints", params(BranchParams), request_body = NoParameters,
    responses((status = 200, description = "Stopped", body = StoppedEndpoint),
        (status = "4XX", description = "Refused", body = ErrorBody),
        (status = "5XX", description = "Postgres or the store failed", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn stop(
    State(state): State<AppState>,
    path: BranchPath,
    body: Result<Json<NoParameters>, JsonRejection>,
) -> Result<Json<StoppedEndpoint>, ApiError> {
    let Path((project, branch)) = path?;
    let Json(NoParameters {}) = body?;
    let store = state.projects.get(&project)?;
    let (endpoints, mounts) = (Arc::clone(&state.endpoints), Arc::clone(&state.mounts));
    let (info, still_mounted) = blocking(move || {
        // A branch that does not exist is named as such, as a start names it, not as
        // one without an endpoint (found by a review).
        if let Err(error @ pagefork_engine::EngineError::UnknownBranch { .. }) =
            store.branch_info(&branch)
        {
            return Err(ApiError::from(error));
        }
        endpoints
            .stop(&project, &branch, &mounts)
            .map_err(endpoint_error)
    })
    .await?;
    Ok(Json(StoppedEndpoint {
        endpoint: EndpointView::of(&info),
        still_mounted: still_mounted.map(|path| path.display().to_string()),
    }))
}

/// A stopped endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StoppedEndpoint {
    #[serde(flatten)]
    endpoint: EndpointView,
    /// Present when files were open under the mount the endpoint made (a shell in it):
    /// the server is stopped and the branch stays mounted there, for `DELETE .../mount`
    /// once they are closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    still_mounted: Option<String>,
}

/// The query of a schema diff: the other branch.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct SchemaDiffQuery {
    /// The branch to compare with (its endpoint must be running, as this branch's).
    #[param(value_type = BranchReferenceText)]
    to: String,
}

/// `GET .../schema-diff?to=B`: `pg_dumpall --schema-only` of this branch's endpoint against
/// `to`'s, as a unified diff.
#[utoipa::path(get, path = "/v1/projects/{project}/branches/{branch}/schema-diff",
    tag = "endpoints", params(BranchParams, SchemaDiffQuery),
    responses((status = 200, description = "The schemas compared", body = SchemaDiff),
        (status = "4XX", description = "Refused", body = ErrorBody),
        (status = "5XX", description = "pg_dumpall failed", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn schema_diff(
    State(state): State<AppState>,
    path: BranchPath,
    query: Result<Query<SchemaDiffQuery>, QueryRejection>,
) -> Result<Json<SchemaDiff>, ApiError> {
    let Path((project, from)) = path?;
    let Query(query) = query?;
    let store = state.projects.get(&project)?;
    let to = params::branch_reference("to", &project, &query.to)?.to_owned();
    // A branch that does not exist is named as such (404 branch_not_found), not as one
    // without an endpoint.
    for branch in [&from, &to] {
        store.branch_info(branch)?;
    }
    let endpoints = Arc::clone(&state.endpoints);
    let diff = blocking(move || {
        endpoints
            .schema_diff(&project, &from, &to)
            .map_err(endpoint_error)
    })
    .await?;
    Ok(Json(diff))
}

/// `GET /v1/projects/{project}/endpoints`.
#[utoipa::path(get, path = "/v1/projects/{project}/endpoints", tag = "endpoints",
    params(ProjectParam),
    responses((status = 200, description = "The project's endpoints, by branch",
            body = EndpointList),
        (status = "4XX", description = "Refused", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<EndpointList>, ApiError> {
    let Path(project) = path?;
    state.projects.get(&project)?;
    let endpoints = state
        .endpoints
        .list(&project)
        .iter()
        .map(EndpointView::of)
        .collect();
    Ok(Json(EndpointList { endpoints }))
}
