//! Branch endpoints: create (Lakebase's body), list, get, update (expiry, protection or
//! PITR window), delete, reset, restore, rename and detach (diffs are in `diff`). Each checks its input,
//! then makes one store call; the engine's refusals come back as 4xx and change nothing.
//! The request and answer types here are the ones the OpenAPI document is made of.

use std::num::NonZeroUsize;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use pagefork_engine::{
    At, Backup, BranchFilter, BranchInfo, BranchOptions, EngineError, Expiry, Store,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody, quoted};
use super::mounts::refuse_if_mounted;
use super::params::{self, BranchParams, NoParameters, ProjectParam, present};
use super::schema::{
    BranchNameText, BranchReferenceText, DurationText, LsnText, PitrWindowText, TimeText, TrueOnly,
};
use super::{AppState, blocking};
use crate::views::{BranchView, TimeAnswerView};

/// `{project}` from the path.
type ProjectPath = Result<Path<String>, PathRejection>;

/// `{project}` and `{branch}` from the path.
pub(crate) type BranchPath = Result<Path<(String, String)>, PathRejection>;

/// A branch as the API shows it: the CLI's view, plus its resource name.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BranchResource {
    #[serde(flatten)]
    branch: BranchView,
    /// `projects/P/branches/B`.
    resource: String,
}

impl BranchResource {
    pub(crate) fn of(project: &str, info: &BranchInfo) -> BranchResource {
        BranchResource {
            branch: BranchView::of(info),
            resource: format!("projects/{project}/branches/{}", info.name),
        }
    }
}

/// The body of a branch create, as Lakebase users write it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBranch {
    #[schema(value_type = BranchNameText)]
    branch_id: String,
    #[serde(default, deserialize_with = "params::object")]
    spec: CreateSpec,
}

/// Where the branch starts and when it expires: at most one of `source_branch_lsn` and
/// `source_branch_time`, at most one of `ttl`, `expire_time` and `no_expiry`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateSpec {
    /// Default `main`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = BranchReferenceText)]
    source_branch: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = LsnText)]
    source_branch_lsn: Option<String>,
    /// Snapped to the last commit at or before it (the answer's `snap` says which).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = TimeText)]
    source_branch_time: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = DurationText)]
    ttl: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = TimeText)]
    expire_time: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = bool)]
    no_expiry: Option<bool>,
    #[serde(default)]
    is_protected: bool,
    /// Before branching (at latest only), run `CHECKPOINT` on the source branch's
    /// endpoint, which must be running: an endpoint on the new branch then starts without
    /// replaying the WAL written since Postgres' last checkpoint (seconds after heavy
    /// writes).
    #[serde(default)]
    checkpoint_endpoint: bool,
}

/// A new branch, with the LSN its start resolved to and, for a time, what it snapped to.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedBranch {
    #[serde(flatten)]
    branch: BranchResource,
    resolved_lsn: Option<String>,
    snap: Option<TimeAnswerView>,
    /// With `spec.checkpoint_endpoint`: milliseconds the source's `CHECKPOINT` took.
    endpoint_checkpoint_ms: Option<u64>,
}

/// `POST /v1/projects/{project}/branches`.
#[utoipa::path(post, path = "/v1/projects/{project}/branches", tag = "branches",
    params(ProjectParam), request_body = CreateBranch,
    responses((status = 201, description = "Created", body = CreatedBranch),
        (status = "4XX", description = "Refused; nothing changed", body = ErrorBody),
        (status = "5XX", description = "A fault of the store", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    project: ProjectPath,
    body: Result<Json<CreateBranch>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedBranch>), ApiError> {
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
    let checkpoint_endpoint = spec.checkpoint_endpoint;
    if checkpoint_endpoint && at != At::Latest {
        return Err(ApiError::bad_request(
            "spec.checkpoint_endpoint applies to a branch at latest: leave out source_branch_lsn and source_branch_time",
        ));
    }
    let name = body.branch_id;
    params::new_branch_name("branch_id", &name)?;
    let project_name = project.clone();
    let mounts = std::sync::Arc::clone(&state.mounts);
    let endpoints = std::sync::Arc::clone(&state.endpoints);
    let (info, checkpoint) = blocking(move || {
        let checkpoint = match checkpoint_endpoint {
            true => Some({
                // What the branch create would refuse, refused before Postgres is asked
                // (a review found an expiry in the past refused after the CHECKPOINT).
                store.check_new_branch(&name, options)?;
                store.branch_info(&source)?;
                if store.branch_info(&name).is_ok() {
                    return Err(EngineError::BranchExists { name: name.clone() }.into());
                }

                endpoints
                    .checkpoint(&project, &source)
                    .map_err(super::endpoints::endpoint_error)?
            }),
            false => None,
        };
        if at == At::Latest {
            // A branch of a mounted branch at latest holds every write made before it.
            mounts
                .write_back(&project, &source)
                .map_err(super::mounts::mount_error)?;
        }
        Ok((
            store.create_branch(&name, &source, at, options)?,
            checkpoint,
        ))
    })
    .await?;
    let created = CreatedBranch {
        branch: BranchResource::of(&project_name, &info),
        resolved_lsn: info.parent.as_ref().map(|parent| parent.lsn.to_string()),
        snap: info.created_at_time.as_ref().map(TimeAnswerView::of),
        endpoint_checkpoint_ms: checkpoint
            .map(|took| u64::try_from(took.as_millis()).unwrap_or(u64::MAX)),
    };
    Ok((StatusCode::CREATED, Json(created)))
}

/// The largest page a listing gives.
pub(crate) const MAX_LIST_LIMIT: usize = 10_000;

/// The query of a listing: a page (`limit`, and `cursor` from the previous page's
/// `next_cursor`) and filters. Without `limit`, every branch that passes the filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// At most this many branches (1 to 10000); without it, all of them.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 10000)]
    limit: Option<String>,
    /// List after this name: the previous page's `next_cursor`.
    #[param(value_type = Option<String>)]
    cursor: Option<String>,
    /// Only children of this branch.
    #[param(value_type = Option<BranchReferenceText>)]
    parent: Option<String>,
    /// Only names that start with this.
    #[param(value_type = Option<String>)]
    name_prefix: Option<String>,
}

/// A page of branches, in name order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BranchList {
    branches: Vec<BranchResource>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    next_cursor: Option<String>,
}

/// `GET /v1/projects/{project}/branches[?limit=N&cursor=C&parent=P&name_prefix=X]`.
#[utoipa::path(get, path = "/v1/projects/{project}/branches", tag = "branches",
    params(ProjectParam, ListQuery),
    responses((status = 200, description = "The branches", body = BranchList),
        (status = "4XX", description = "Refused", body = ErrorBody),
        (status = "5XX", description = "A fault of the store", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    project: ProjectPath,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<BranchList>, ApiError> {
    let Path(project) = project?;
    let Query(query) = query?;
    let limit = match query.limit.as_deref() {
        None => NonZeroUsize::MAX,
        Some(text) => text
            .parse::<NonZeroUsize>()
            .ok()
            .filter(|limit| {
                limit.get() <= MAX_LIST_LIMIT && text.bytes().all(|b| b.is_ascii_digit())
            })
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
    let cursor = query.cursor;
    let page =
        blocking(move || Ok(store.list_branches_page(&filter, cursor.as_deref(), limit))).await?;
    let branches = page
        .branches
        .iter()
        .map(|info| BranchResource::of(&project, info))
        .collect();
    Ok(Json(BranchList {
        branches,
        next_cursor: page.next_after,
    }))
}

/// `GET /v1/projects/{project}/branches/{branch}`.
#[utoipa::path(get, path = "/v1/projects/{project}/branches/{branch}", tag = "branches",
    params(BranchParams),
    responses((status = 200, description = "The branch", body = BranchResource),
        (status = "4XX", description = "Refused", body = ErrorBody),
        (status = "5XX", description = "A fault of the store", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn show(
    State(state): State<AppState>,
    path: BranchPath,
) -> Result<Json<BranchResource>, ApiError> {
    let Path((project, branch)) = path?;
    let store = state.projects.get(&project)?;
    let info = store.branch_info(&branch)?;
    Ok(Json(BranchResource::of(&project, &info)))
}

/// The body of a branch update: one kind of change per request, so a refusal never
/// leaves half of it applied.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateBranch {
    #[serde(deserialize_with = "params::object")]
    spec: UpdateSpec,
}

/// Exactly one of: an expiry (`ttl`, `expire_time` or `no_expiry: true`),
/// `is_protected`, or `pitr_window`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateSpec {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = DurationText)]
    ttl: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = TimeText)]
    expire_time: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = TrueOnly)]
    no_expiry: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = bool)]
    is_protected: Option<bool>,
    /// A duration, or `"default"` for the store's.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = PitrWindowText)]
    pitr_window: Option<String>,
}

/// `PATCH /v1/projects/{project}/branches/{branch}`.
#[utoipa::path(patch, path = "/v1/projects/{project}/branches/{branch}", tag = "branches",
    params(BranchParams), request_body = UpdateBranch,
    responses((status = 200, description = "The branch as changed", body = BranchResource),
        (status = "4XX", description = "Refused; nothing changed", body = ErrorBody),
        (status = "5XX", description = "A fault of the store", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn update(
    State(state): State<AppState>,
    path: BranchPath,
    body: Result<Json<UpdateBranch>, JsonRejection>,
) -> Result<Json<BranchResource>, ApiError> {
    let Path((project, branch)) = path?;
    let Json(UpdateBranch { spec }) = body?;
    let store = state.projects.get(&project)?;
    // An update refuses `no_expiry: false`: it would change nothing.
    let no_expiry = params::only_true("spec.no_expiry", spec.no_expiry)?;
    let expiry = params::expiry(
        spec.ttl.as_deref(),
        spec.expire_time.as_deref(),
        no_expiry.then_some(true),
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
    Ok(Json(BranchResource::of(&project, &info)))
}

/// What a delete removed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Deleted {
    deleted: String,
}

/// `DELETE /v1/projects/{project}/branches/{branch}`.
#[utoipa::path(delete, path = "/v1/projects/{project}/branches/{branch}", tag = "branches",
    params(BranchParams), request_body = NoParameters,
    responses((status = 200, description = "Deleted", body = Deleted),
        (status = "4XX", description = "Refused; nothing changed", body = ErrorBody),
        (status = "5XX", description = "A fault of the store", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    path: BranchPath,
    body: Result<Json<NoParameters>, JsonRejection>,
) -> Result<Json<Deleted>, ApiError> {
    let Path((project, branch)) = path?;
    let Json(NoParameters {}) = body?;
    let store = state.projects.get(&project)?;
    let deleted = branch.clone();
    blocking(move || {
        refuse_if_mounted(&state, &project, &branch, || {
            Ok(store.delete_branch(&branch)?)
        })
    })
    .await?;
    Ok(Json(Deleted { deleted }))
}

/// `POST .../reset`: the branch takes its parent's latest state.
#[utoipa::path(post, path = "/v1/projects/{project}/branches/{branch}/reset", tag = "branches",
    params(BranchParams), request_body = NoParameters,
    responses((status = 200, description = "The branch, now at its parent's latest state", body = BranchResource),
        (status = "4XX", description = "Refused; nothing changed", body = ErrorBody),
        (status = "5XX", description = "A fault of the store", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn reset(
    State(state): State<AppState>,
    path: BranchPath,
    body: Result<Json<NoParameters>, JsonRejection>,
) -> Result<Json<BranchResource>, ApiError> {
    change_unmounted(state, path, body, Store::reset_branch).await
}

/// `POST .../detach`.
#[utoipa::path(post, path = "/v1/projects/{project}/branches/{branch}/detach", tag = "branches",
    params(BranchParams), request_body = NoParameters,
    responses((status = 200, description = "The branch, now a root", body = BranchResource),
        (status = "4XX", description = "Refused; nothing changed", body = ErrorBody),
        (status = "5XX", description = "A fault of the store", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn detach(
    State(state): State<AppState>,
    path: BranchPath,
    body: Result<Json<NoParameters>, JsonRejection>,
) -> Result<Json<BranchResource>, ApiError> {
    change_unmounted(state, path, body, Store::detach_branch).await
}

/// A change of a branch that takes no parameters and is refused while it is mounted
/// (`reset`, `detach`): the branch as it is afterwards.
async fn change_unmounted(
    state: AppState,
    path: BranchPath,
    body: Result<Json<NoParameters>, JsonRejection>,
    change: fn(&Store, &str) -> Result<BranchInfo, EngineError>,
) -> Result<Json<BranchResource>, ApiError> {
    let Path((project, branch)) = path?;
    let Json(NoParameters {}) = body?;
    let store = state.projects.get(&project)?;
    let target = (state.clone(), project.clone());
    let info = blocking(move || {
        refuse_if_mounted(&target.0, &target.1, &branch, || {
            Ok(change(&store, &branch)?)
        })
    })
    .await?;
    Ok(Json(BranchResource::of(&project, &info)))
}

/// The body of a restore; all optional (`{}`: the branch itself, latest state, a backup
/// under the default name). At most one of `source_branch_lsn` and `source_branch_time`,
/// at most one of `backup_name` and `no_backup`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestoreBranch {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = BranchReferenceText)]
    source_branch: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = LsnText)]
    source_branch_lsn: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = TimeText)]
    source_branch_time: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = BranchNameText)]
    backup_name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = TrueOnly)]
    no_backup: Option<bool>,
}

/// A restored branch, and the name its previous state was kept under.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RestoredBranch {
    #[serde(flatten)]
    branch: BranchResource,
    backup: Option<String>,
}

/// `POST .../restore`.
#[utoipa::path(post, path = "/v1/projects/{project}/branches/{branch}/restore", tag = "branches",
    params(BranchParams), request_body = RestoreBranch,
    responses((status = 200, description = "The branch, restored", body = RestoredBranch),
        (status = "4XX", description = "Refused; nothing changed", body = ErrorBody),
        (status = "5XX", description = "A fault of the store", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn restore(
    State(state): State<AppState>,
    path: BranchPath,
    body: Result<Json<RestoreBranch>, JsonRejection>,
) -> Result<Json<RestoredBranch>, ApiError> {
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
    let no_backup = params::only_true("no_backup", body.no_backup)?;
    let backup = match (body.backup_name, no_backup) {
        (Some(_), true) => {
            return Err(ApiError::bad_request(
                "give at most one of backup_name and no_backup",
            ));
        }
        (Some(name), false) => {
            params::new_branch_name("backup_name", &name)?;
            Backup::Named(name)
        }
        (None, true) => Backup::Skip,
        (None, false) => Backup::Default,
    };
    let target = (state.clone(), project.clone());
    let restored = blocking(move || {
        refuse_if_mounted(&target.0, &target.1, &branch, || {
            Ok(store.restore_branch(&branch, &source, at, backup)?)
        })
    })
    .await?;
    Ok(Json(RestoredBranch {
        branch: BranchResource::of(&project, &restored.branch),
        backup: restored.backup,
    }))
}

/// The body of a rename.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RenameBranch {
    #[schema(value_type = BranchNameText)]
    new_branch_id: String,
}

/// `POST .../rename`.
#[utoipa::path(post, path = "/v1/projects/{project}/branches/{branch}/rename", tag = "branches",
    params(BranchParams), request_body = RenameBranch,
    responses((status = 200, description = "The branch, renamed", body = BranchResource),
        (status = "4XX", description = "Refused; nothing changed", body = ErrorBody),
        (status = "5XX", description = "A fault of the store", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn rename(
    State(state): State<AppState>,
    path: BranchPath,
    body: Result<Json<RenameBranch>, JsonRejection>,
) -> Result<Json<BranchResource>, ApiError> {
    let Path((project, branch)) = path?;
    let Json(body) = body?;
    params::new_branch_name("new_branch_id", &body.new_branch_id)?;
    let store = state.projects.get(&project)?;
    let target = (state.clone(), project.clone());
    let info = blocking(move || {
        refuse_if_mounted(&target.0, &target.1, &branch, || {
            Ok(store.rename_branch(&branch, &body.new_branch_id)?)
        })
    })
    .await?;
    Ok(Json(BranchResource::of(&project, &info)))
}
