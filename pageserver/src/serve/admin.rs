//! Project and store-wide endpoints: projects (create, list, get), leases, the
//! branch-graph log, GC, compaction, stats, and the server's own `/healthz`, `/metrics`
//! and OpenAPI document.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use pagefork_engine::Store;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::params;
use super::{AppState, blocking};
use crate::views::{entry_json, gc_report_json, lease_json, stats_json};

/// The OpenAPI document describing every route.
const OPENAPI: &str = include_str!("openapi.json");

/// `GET /healthz`.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /metrics`: Prometheus' text format.
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

/// `GET /v1/openapi.json`.
pub(crate) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

fn project_json(name: &str, store: &Store) -> Value {
    json!({
        "project_id": name,
        "resource": format!("projects/{name}"),
        "page_size": store.page_size(),
        "branches": store.list_branches().len(),
    })
}

/// `GET /v1/projects`.
pub(crate) async fn list_projects(State(state): State<AppState>) -> Json<Value> {
    let projects: Vec<Value> = state
        .projects
        .list()
        .iter()
        .map(|(name, store)| project_json(name, store))
        .collect();
    Json(json!({"projects": projects}))
}

/// The body of a project create.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateProject {
    project_id: String,
    /// Page size in bytes (default 8192).
    page_size: Option<usize>,
}

/// `POST /v1/projects`.
pub(crate) async fn create_project(
    State(state): State<AppState>,
    body: Result<Json<CreateProject>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body?;
    let page_size = body.page_size.unwrap_or(pagefork_engine::DEFAULT_PAGE_SIZE);
    let projects = state.projects.clone();
    let name = body.project_id;
    let (name, store) = blocking(move || {
        let store = projects.create(&name, page_size)?;
        Ok((name, store))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(project_json(&name, &store))))
}

/// `GET /v1/projects/{project}`.
pub(crate) async fn get_project(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(project) = path?;
    let store = state.projects.get(&project)?;
    Ok(Json(project_json(&project, &store)))
}

/// The body of a lease.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LeaseBody {
    lsn: String,
    /// How long, like `3600s` (default one hour).
    ttl: Option<String>,
}

/// `POST .../branches/{branch}/leases`: keep the branch's state at an LSN from GC.
pub(crate) async fn lease(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<LeaseBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Path((project, branch)) = path?;
    let Json(body) = body?;
    let lsn = params::lsn("lsn", &body.lsn)?;
    let duration = params::duration("ttl", body.ttl.as_deref().unwrap_or("1h"))?;
    let store = state.projects.get(&project)?;
    let lease = blocking(move || Ok(store.lease(&branch, lsn, duration)?)).await?;
    Ok((StatusCode::CREATED, Json(lease_json(&lease))))
}

/// `GET /v1/projects/{project}/leases`.
pub(crate) async fn leases(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(project) = path?;
    let store = state.projects.get(&project)?;
    let leases: Vec<Value> = store.leases().iter().map(lease_json).collect();
    Ok(Json(json!({"leases": leases})))
}

/// `GET /v1/projects/{project}/log`: the branch-graph history, oldest first.
pub(crate) async fn log(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(project) = path?;
    let store = state.projects.get(&project)?;
    let entries: Vec<Value> = store.history().iter().map(entry_json).collect();
    Ok(Json(json!({"entries": entries})))
}

/// `POST /v1/projects/{project}/gc`.
pub(crate) async fn gc(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<params::NoParameters>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(project) = path?;
    let Json(params::NoParameters {}) = body?;
    let store = state.projects.get(&project)?;
    let report = blocking(move || Ok(store.gc()?)).await?;
    Ok(Json(gc_report_json(&report)))
}

/// `POST /v1/projects/{project}/compact`.
pub(crate) async fn compact(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<params::NoParameters>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(project) = path?;
    let Json(params::NoParameters {}) = body?;
    let store = state.projects.get(&project)?;
    let (covered, stats) = blocking(move || {
        let covered = store.compact()?;
        Ok((covered, store.stats()))
    })
    .await?;
    Ok(Json(
        json!({"covered_lsn": covered.to_string(), "stats": stats_json(&stats)}),
    ))
}

/// `GET /v1/projects/{project}/stats`.
pub(crate) async fn stats(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(project) = path?;
    let store = state.projects.get(&project)?;
    Ok(Json(stats_json(&store.stats())))
}
