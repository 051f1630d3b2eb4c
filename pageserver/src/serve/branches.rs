//! Branch endpoints: create (Lakebase's body), list, get, update (expiry, protection or
//! PITR window), delete, reset, restore, rename, detach and diff. Each checks its input,
//! then makes one store call; the engine's refusals come back as 4xx and change nothing.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use std::num::NonZeroUsize;

use pagefork_engine::{At, Backup, BranchFilter, BranchInfo, BranchOptions, Expiry};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, quoted};
use super::params;
use super::{AppState, blocking};
use crate::views::{branch_json, diff_json, time_answer_json};

/// `{project}` from the path.
type ProjectPath = Result<Path<String>, PathRejection>;

/// `{project}` and `{branch}` from the path.
type BranchPath = Result<Path<(String, String)>, PathRejection>;

/// A branch as the API shows it: the CLI's view, plus its resource name.
pub(crate) fn branch_resource(project: &str, info: &BranchInfo) -> Value {
    let mut value = branch_json(info);
    if let Some(object) = value.as_object_mut() {
        object.insert(
            "resource".to_owned(),
            json!(format!("projects/{project}/branches/{}", info.name)),
        );
    }
    value
}

/// The body of a branch create, as Lakebase users write it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBranch {
    branch_id: String,
    #[serde(default)]
    spec: CreateSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSpec {
    source_branch: Option<String>,
    source_branch_lsn: Option<String>,
    source_branch_time: Option<String>,
    ttl: Option<String>,
    expire_time: Option<String>,
    no_expiry: Option<bool>,
    #[serde(default)]
    is_protected: bool,
}

/// `POST /v1/projects/{project}/branches`.
pub(crate) async fn create(
    State(state): State<AppState>,
    project: ProjectPath,
    body: Result<Json<CreateBranch>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Path(project) = project?;
    let Json(body) = body?;
    let spec = &body.spec;
    let store = state.projects.get(&project)?;
    let source = match &spec.source_branch {
        Some(text) => params::branch_reference("spec.source_branch", &project, text)?.to_owned(),
        None => pagefork_engine::DEFAULT_ROOT_BRANCH.to_owned(),
    };
    let at = params::at(
        "spec.source_branch_lsn",
        spec.source_branch_lsn.as_deref(),
        "spec.source_branch_time",
        spec.source_branch_time.as_deref(),
    )?;
    let expiry = params::expiry(
        spec.ttl.as_deref(),
        spec.expire_time.as_deref(),
        spec.no_expiry,
    )?;
    let expiry = match expiry {
        Some(expiry) => expiry,
        None if state.options.require_expiration => {
            return Err(ApiError::bad_request("Expiration must be specified"));
        }
        None => Expiry::Never,
    };
    let options = BranchOptions {
        expiry,
        protected: spec.is_protected,
    };
    let name = body.branch_id;
    let info = blocking(move || Ok(store.create_branch(&name, &source, at, options)?)).await?;
    let mut value = branch_resource(&project, &info);
    if let Some(object) = value.as_object_mut() {
        let resolved = info.parent.as_ref().map(|parent| parent.lsn.to_string());
        object.insert("resolved_lsn".to_owned(), json!(resolved));
        let snap = info.created_at_time.as_ref().map(time_answer_json);
        object.insert("snap".to_owned(), json!(snap));
    }
    Ok((StatusCode::CREATED, Json(value)))
}

/// The largest page a listing gives.
pub(crate) const MAX_LIST_LIMIT: usize = 10_000;

/// The query of a listing: a page (`limit`, and `cursor` from the previous page's
/// `next_cursor`) and filters. Without `limit`, every branch that passes the filters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
    parent: Option<String>,
    name_prefix: Option<String>,
}

/// `GET /v1/projects/{project}/branches[?limit=N&cursor=C&parent=P&name_prefix=X]`.
pub(crate) async fn list(
    State(state): State<AppState>,
    project: ProjectPath,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(project) = project?;
    let Query(query) = query?;
    let limit = match query.limit.as_deref() {
        None => NonZeroUsize::MAX,
        Some(text) => text
            .parse::<NonZeroUsize>()
            .ok()
            .filter(|limit| limit.get() <= MAX_LIST_LIMIT)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "limit: {} is not a whole number from 1 to {MAX_LIST_LIMIT}",
                    quoted(text)
                ))
            })?,
    };
    let store = state.projects.get(&project)?;
    let filter = BranchFilter {
        name_prefix: query.name_prefix,
        parent: query
            .parent
            .map(|text| params::branch_reference("parent", &project, &text).map(str::to_owned))
            .transpose()?,
    };
    let page = store.list_branches_page(&filter, query.cursor.as_deref(), limit);
    let branches: Vec<Value> = page
        .branches
        .iter()
        .map(|info| branch_resource(&project, info))
        .collect();
    Ok(Json(
        json!({"branches": branches, "next_cursor": page.next_after}),
    ))
}

/// `GET /v1/projects/{project}/branches/{branch}`.
pub(crate) async fn show(
    State(state): State<AppState>,
    path: BranchPath,
) -> Result<Json<Value>, ApiError> {
    let Path((project, branch)) = path?;
    let store = state.projects.get(&project)?;
    let info = store.branch_info(&branch)?;
    Ok(Json(branch_resource(&project, &info)))
}

/// The body of a branch update: one kind of change per request, so a refusal never
/// leaves half of it applied.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateBranch {
    spec: UpdateSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateSpec {
    ttl: Option<String>,
    expire_time: Option<String>,
    no_expiry: Option<bool>,
    is_protected: Option<bool>,
    /// A duration, or `"default"` for the store's.
    pitr_window: Option<String>,
}

/// `PATCH /v1/projects/{project}/branches/{branch}`.
pub(crate) async fn update(
    State(state): State<AppState>,
    path: BranchPath,
    body: Result<Json<UpdateBranch>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((project, branch)) = path?;
    let Json(UpdateBranch { spec }) = body?;
    let store = state.projects.get(&project)?;
    let expiry = params::expiry(
        spec.ttl.as_deref(),
        spec.expire_time.as_deref(),
        spec.no_expiry,
    )?;
    let window = match spec.pitr_window.as_deref() {
        Some("default") => Some(None),
        Some(text) => Some(Some(params::duration("spec.pitr_window", text)?)),
        None => None,
    };
    let info = match (expiry, spec.is_protected, window) {
        (Some(expiry), None, None) => {
            blocking(move || Ok(store.set_expiry(&branch, expiry)?)).await?
        }
        (None, Some(protected), None) => {
            blocking(move || Ok(store.set_protected(&branch, protected)?)).await?
        }
        (None, None, Some(window)) => {
            blocking(move || Ok(store.set_pitr_window(&branch, window)?)).await?
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one change per request: an expiry (ttl, expire_time or no_expiry), is_protected, or pitr_window",
            ));
        }
    };
    Ok(Json(branch_resource(&project, &info)))
}

/// `DELETE /v1/projects/{project}/branches/{branch}`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    path: BranchPath,
    body: Result<Json<params::NoParameters>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((project, branch)) = path?;
    let Json(params::NoParameters {}) = body?;
    let store = state.projects.get(&project)?;
    let deleted = branch.clone();
    blocking(move || Ok(store.delete_branch(&branch)?)).await?;
    Ok(Json(json!({"deleted": deleted})))
}

/// `POST .../reset`: the branch takes its parent's latest state.
pub(crate) async fn reset(
    State(state): State<AppState>,
    path: BranchPath,
    body: Result<Json<params::NoParameters>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((project, branch)) = path?;
    let Json(params::NoParameters {}) = body?;
    let store = state.projects.get(&project)?;
    let info = blocking(move || Ok(store.reset_branch(&branch)?)).await?;
    Ok(Json(branch_resource(&project, &info)))
}

/// `POST .../detach`.
pub(crate) async fn detach(
    State(state): State<AppState>,
    path: BranchPath,
    body: Result<Json<params::NoParameters>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((project, branch)) = path?;
    let Json(params::NoParameters {}) = body?;
    let store = state.projects.get(&project)?;
    let info = blocking(move || Ok(store.detach_branch(&branch)?)).await?;
    Ok(Json(branch_resource(&project, &info)))
}

/// The body of a restore; all optional (`{}`: the branch itself, latest state, a backup
/// under the default name).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestoreBranch {
    source_branch: Option<String>,
    source_branch_lsn: Option<String>,
    source_branch_time: Option<String>,
    backup_name: Option<String>,
    #[serde(default)]
    no_backup: bool,
}

/// `POST .../restore`.
pub(crate) async fn restore(
    State(state): State<AppState>,
    path: BranchPath,
    body: Result<Json<RestoreBranch>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((project, branch)) = path?;
    let Json(body) = body?;
    let store = state.projects.get(&project)?;
    let source = match &body.source_branch {
        Some(text) => params::branch_reference("source_branch", &project, text)?.to_owned(),
        None => branch.clone(),
    };
    let at = params::at(
        "source_branch_lsn",
        body.source_branch_lsn.as_deref(),
        "source_branch_time",
        body.source_branch_time.as_deref(),
    )?;
    let backup = match (body.backup_name, body.no_backup) {
        (Some(_), true) => {
            return Err(ApiError::bad_request(
                "give at most one of backup_name and no_backup",
            ));
        }
        (Some(name), false) => Backup::Named(name),
        (None, true) => Backup::Skip,
        (None, false) => Backup::Default,
    };
    let restored =
        blocking(move || Ok(store.restore_branch(&branch, &source, at, backup)?)).await?;
    let mut value = branch_resource(&project, &restored.branch);
    if let Some(object) = value.as_object_mut() {
        object.insert("backup".to_owned(), json!(restored.backup));
    }
    Ok(Json(value))
}

/// The body of a rename.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RenameBranch {
    new_branch_id: String,
}

/// `POST .../rename`.
pub(crate) async fn rename(
    State(state): State<AppState>,
    path: BranchPath,
    body: Result<Json<RenameBranch>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((project, branch)) = path?;
    let Json(body) = body?;
    let store = state.projects.get(&project)?;
    let info = blocking(move || Ok(store.rename_branch(&branch, &body.new_branch_id)?)).await?;
    Ok(Json(branch_resource(&project, &info)))
}

/// The query of a diff: the other branch and which states of each.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiffQuery {
    to: Option<String>,
    from_lsn: Option<String>,
    from_timestamp: Option<String>,
    to_lsn: Option<String>,
    to_timestamp: Option<String>,
}

/// `GET .../diff?to=B`: pages that differ from this branch's state to `to`'s (default:
/// this branch, so `from_*`/`to_*` compare two of its states).
pub(crate) async fn diff(
    State(state): State<AppState>,
    path: BranchPath,
    query: Result<Query<DiffQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((project, from)) = path?;
    let Query(query) = query?;
    let store = state.projects.get(&project)?;
    let to = match &query.to {
        Some(text) => params::branch_reference("to", &project, text)?.to_owned(),
        None => from.clone(),
    };
    let from_at = params::at(
        "from_lsn",
        query.from_lsn.as_deref(),
        "from_timestamp",
        query.from_timestamp.as_deref(),
    )?;
    let to_at: At = params::at(
        "to_lsn",
        query.to_lsn.as_deref(),
        "to_timestamp",
        query.to_timestamp.as_deref(),
    )?;
    let (from_name, to_name) = (from.clone(), to.clone());
    let diff = blocking(move || Ok(store.diff(&from, from_at, &to, to_at)?)).await?;
    Ok(Json(diff_json(&from_name, &to_name, &diff)))
}
