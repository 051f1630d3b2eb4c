//! Project and store-wide endpoints: projects (create, list, get), leases, the
//! branch-graph log, GC, compaction, stats, and the server's own `/healthz`, `/metrics`
//! and OpenAPI document.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use pagefork_engine::Store;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::params::{self, BranchParams, NoParameters, ProjectParam, present};
use super::schema::{DurationText, LsnText, PageSizeValue, ProjectNameText};
use super::{AppState, blocking};
use crate::views::{GcReportView, HistoryEntryView, LeaseView, StatsView};

/// `GET /healthz`.
#[utoipa::path(get, path = "/healthz", tag = "server",
    responses((status = 200, description = "The server runs", content_type = "text/plain", body = String)))]
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /metrics`: Prometheus' text format.
#[utoipa::path(get, path = "/metrics", tag = "server",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
        (status = "4XX", description = "Refused", body = ErrorBody),
        (status = "5XX", description = "A fault", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let text = state
        .metrics
        .encode()
        .map_err(|error| ApiError::internal(format!("cannot encode metrics: {error}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}

/// `GET /v1/openapi.json`: this document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "server",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object)))]
pub(crate) async fn openapi() -> impl IntoResponse {
    /// The document never changes while the server runs: made once.
    static DOCUMENT: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| super::schema::document().to_string());
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}

/// A project.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProjectView {
    project_id: String,
    /// `projects/P`.
    resource: String,
    /// Bytes per page.
    page_size: u64,
    /// How many branches it has.
    branches: u64,
}

impl ProjectView {
    fn of(name: &str, store: &Store) -> ProjectView {
        ProjectView {
            project_id: name.to_owned(),
            resource: format!("projects/{name}"),
            page_size: store.page_size() as u64,
            branches: store.branch_count() as u64,
        }
    }
}

/// Every project.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProjectList {
    projects: Vec<ProjectView>,
    /// Projects whose store could not be opened when the server started (every request
    /// naming one answers 503 `project_unavailable`), with the reason.
    unavailable: Vec<UnavailableProject>,
}

/// A project the server could not open.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UnavailableProject {
    project_id: String,
    /// Why, and what to do.
    reason: String,
}

/// `GET /v1/projects`.
#[utoipa::path(get, path = "/v1/projects", tag = "projects",
    responses((status = 200, description = "Every project", body = ProjectList),
        (status = "4XX", description = "Refused", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn list_projects(State(state): State<AppState>) -> Json<ProjectList> {
    let projects = state
        .projects
        .list()
        .iter()
        .map(|(name, store)| ProjectView::of(name, store))
        .collect();
    let unavailable = state
        .projects
        .unavailable()
        .iter()
        .map(|(name, reason)| UnavailableProject {
            project_id: name.clone(),
            reason: reason.clone(),
        })
        .collect();
    Json(ProjectList {
        projects,
        unavailable,
    })
}

/// The body of a project create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateProject {
    #[schema(value_type = ProjectNameText)]
    project_id: String,
    /// Bytes per page: a power of two from 512 to 65536 (default 8192).
    #[serde(default, deserialize_with = "params::present_whole_u32")]
    #[schema(value_type = PageSizeValue)]
    page_size: Option<u32>,
}

/// `POST /v1/projects`.
#[utoipa::path(post, path = "/v1/projects", tag = "projects", request_body = CreateProject,
    responses((status = 201, description = "Created", body = ProjectView),
        (status = "4XX", description = "Refused; nothing changed", body = ErrorBody),
        (status = "5XX", description = "A fault", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn create_project(
    State(state): State<AppState>,
    body: Result<Json<CreateProject>, JsonRejection>,
) -> Result<(StatusCode, Json<ProjectView>), ApiError> {
    let Json(body) = body?;
    let page_size = match body.page_size {
        None => pagefork_engine::DEFAULT_PAGE_SIZE,
        Some(size) if (512..=65536).contains(&size) && size.is_power_of_two() => size as usize,
        Some(size) => {
            return Err(ApiError::bad_request(format!(
                "page_size: {size} is not a power of two from 512 to 65536"
            )));
        }
    };
    let projects = state.projects.clone();
    let name = body.project_id;
    let replication = std::sync::Arc::clone(&state.replication);
    let (name, store) = blocking(move || {
        let store = projects.create(&name, page_size)?;
        let source = projects.layer_source(&name);
        replication.add(&name, &store, source).map_err(|error| {
            ApiError::internal(format!(
                "project {name:?} was created but its replication did not start: {error:#}"
            ))
        })?;
        Ok((name, store))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(ProjectView::of(&name, &store))))
}

/// `GET /v1/projects/{project}`.
#[utoipa::path(get, path = "/v1/projects/{project}", tag = "projects", params(ProjectParam),
    responses((status = 200, description = "The project", body = ProjectView),
        (status = "4XX", description = "Refused", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn get_project(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ProjectView>, ApiError> {
    let Path(project) = path?;
    let store = state.projects.get(&project)?;
    Ok(Json(ProjectView::of(&project, &store)))
}

/// The body of a lease.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LeaseBody {
    /// At least the branch's own start (its branch point; older states are an ancestor's,
    /// to lease there), at most its head, not below the GC cutoff.
    #[schema(value_type = LsnText)]
    lsn: String,
    /// How long (default one hour).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = DurationText)]
    ttl: Option<String>,
}

/// `POST .../branches/{branch}/leases`: keep the branch's state at an LSN from GC.
#[utoipa::path(post, path = "/v1/projects/{project}/branches/{branch}/leases", tag = "retention",
    params(BranchParams), request_body = LeaseBody,
    responses((status = 201, description = "Leased", body = LeaseView),
        (status = "4XX", description = "Refused; nothing changed", body = ErrorBody),
        (status = "5XX", description = "A fault of the store", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn lease(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<LeaseBody>, JsonRejection>,
) -> Result<(StatusCode, Json<LeaseView>), ApiError> {
    let Path((project, branch)) = path?;
    let Json(body) = body?;
    let lsn = params::lsn("lsn", &body.lsn)?;
    let duration = params::duration("ttl", body.ttl.as_deref().unwrap_or("1h"))?;
    let store = state.projects.get(&project)?;
    let lease = blocking(move || Ok(store.lease(&branch, lsn, duration)?)).await?;
    Ok((StatusCode::CREATED, Json(LeaseView::of(&lease))))
}

/// The active leases.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LeaseList {
    leases: Vec<LeaseView>,
}

/// `GET /v1/projects/{project}/leases`.
#[utoipa::path(get, path = "/v1/projects/{project}/leases", tag = "retention", params(ProjectParam),
    responses((status = 200, description = "The active leases", body = LeaseList),
        (status = "4XX", description = "Refused", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn leases(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<LeaseList>, ApiError> {
    let Path(project) = path?;
    let store = state.projects.get(&project)?;
    let leases = store.leases().iter().map(LeaseView::of).collect();
    Ok(Json(LeaseList { leases }))
}

/// The branch-graph history.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HistoryLog {
    entries: Vec<HistoryEntryView>,
}

/// `GET /v1/projects/{project}/log`: the branch-graph history, oldest first.
#[utoipa::path(get, path = "/v1/projects/{project}/log", tag = "branches", params(ProjectParam),
    responses((status = 200, description = "Every branch operation, oldest first", body = HistoryLog),
        (status = "4XX", description = "Refused", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn log(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<HistoryLog>, ApiError> {
    let Path(project) = path?;
    let store = state.projects.get(&project)?;
    let entries = store.history().iter().map(HistoryEntryView::of).collect();
    Ok(Json(HistoryLog { entries }))
}

/// `POST /v1/projects/{project}/gc`.
#[utoipa::path(post, path = "/v1/projects/{project}/gc", tag = "retention", params(ProjectParam),
    request_body = NoParameters,
    responses((status = 200, description = "What GC removed, and why the rest stayed", body = GcReportView),
        (status = "4XX", description = "Refused", body = ErrorBody),
        (status = "5XX", description = "A fault of the store", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn gc(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<NoParameters>, JsonRejection>,
) -> Result<Json<GcReportView>, ApiError> {
    let Path(project) = path?;
    let Json(NoParameters {}) = body?;
    let store = state.projects.get(&project)?;
    let report = blocking(move || Ok(store.gc()?)).await?;
    Ok(Json(GcReportView::of(&report)))
}

/// What a compaction covered, and the counters after it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Compacted {
    covered_lsn: String,
    stats: StatsView,
}

/// `POST /v1/projects/{project}/compact`.
#[utoipa::path(post, path = "/v1/projects/{project}/compact", tag = "retention", params(ProjectParam),
    request_body = NoParameters,
    responses((status = 200, description = "Compacted", body = Compacted),
        (status = "4XX", description = "Refused", body = ErrorBody),
        (status = "5XX", description = "A fault of the store", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn compact(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<NoParameters>, JsonRejection>,
) -> Result<Json<Compacted>, ApiError> {
    let Path(project) = path?;
    let Json(NoParameters {}) = body?;
    let store = state.projects.get(&project)?;
    let (covered, stats) = blocking(move || {
        let covered = store.compact()?;
        Ok((covered, store.stats()))
    })
    .await?;
    Ok(Json(Compacted {
        covered_lsn: covered.to_string(),
        stats: StatsView::of(&stats),
    }))
}

/// `GET /v1/projects/{project}/stats`.
#[utoipa::path(get, path = "/v1/projects/{project}/stats", tag = "retention", params(ProjectParam),
    responses((status = 200, description = "The store's counters", body = StatsView),
        (status = "4XX", description = "Refused", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn stats(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<StatsView>, ApiError> {
    let Path(project) = path?;
    let store = state.projects.get(&project)?;
    Ok(Json(StatsView::of(&store.stats())))
}
