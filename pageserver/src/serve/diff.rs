//! Diffs over HTTP: `GET .../branches/B/diff` (pages that differ between two states) and
//! `GET .../branches/B/diff/files` (the same diff told as paths of a file tree, for a
//! branch used through `pagefork mount`). Both take the other branch and the states of
//! each from the query; a diff at latest of a mounted branch first has the kernel hand
//! over what was written through the mount, so it shows every write that returned.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use pagefork_engine::{At, Store};
use pagefork_files::FsError;
use serde::Deserialize;
use utoipa::IntoParams;

use super::branches::BranchPath;
use super::error::{ApiError, ErrorBody};
use super::mounts::mount_error;
use super::params::{self, BranchParams};
use super::schema::{BranchReferenceText, LsnText, TimeText};
use super::{AppState, blocking};
use crate::views::{DiffView, FileDiffView};

/// The query of a diff: the other branch and which states of each (at most one of
/// `from_lsn` and `from_timestamp`, and of `to_lsn` and `to_timestamp`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DiffQuery {
    /// The other branch (default: this one).
    #[param(value_type = Option<BranchReferenceText>)]
    to: Option<String>,
    #[param(value_type = Option<LsnText>)]
    from_lsn: Option<String>,
    #[param(value_type = Option<TimeText>)]
    from_timestamp: Option<String>,
    #[param(value_type = Option<LsnText>)]
    to_lsn: Option<String>,
    #[param(value_type = Option<TimeText>)]
    to_timestamp: Option<String>,
}

/// Both sides of a diff, checked: branch and state of each.
struct Sides {
    from: String,
    from_at: At,
    to: String,
    to_at: At,
}

impl Sides {
    fn of(project: &str, from: String, query: &DiffQuery) -> Result<Sides, ApiError> {
        let to = match &query.to {
            Some(text) => params::branch_reference("to", project, text)?.to_owned(),
            None => from.clone(),
        };
        let from_at = params::at_in_query(
            "from_lsn",
            query.from_lsn.as_deref(),
            "from_timestamp",
            query.from_timestamp.as_deref(),
        )?;
        let to_at = params::at_in_query(
            "to_lsn",
            query.to_lsn.as_deref(),
            "to_timestamp",
            query.to_timestamp.as_deref(),
        )?;
        Ok(Sides {
            from,
            from_at,
            to,
            to_at,
        })
    }

    /// Has every mount of a side read at latest hand its writes over, then diffs.
    fn diff(
        &self,
        state: &AppState,
        project: &str,
        store: &Store,
    ) -> Result<pagefork_engine::PageDiff, ApiError> {
        let sides = [(&self.from, self.from_at), (&self.to, self.to_at)];
        // A branch compared with itself (the default `to`) is written back once.
        let to_is_from = self.to == self.from;
        for (index, (branch, at)) in sides.into_iter().enumerate() {
            if at == At::Latest && !(index == 1 && to_is_from) {
                state
                    .mounts
                    .write_back(project, branch)
                    .map_err(mount_error)?;
            }
        }
        Ok(store.diff(&self.from, self.from_at, &self.to, self.to_at)?)
    }
}

/// `GET .../diff?to=B`: pages that differ from this branch's state to `to`'s (default:
/// this branch, so `from_*`/`to_*` compare two of its states).
#[utoipa::path(get, path = "/v1/projects/{project}/branches/{branch}/diff", tag = "branches",
    params(BranchParams, DiffQuery),
    responses((status = 200, description = "The pages that differ", body = DiffView),
        (status = "4XX", description = "Refused", body = ErrorBody),
        (status = "5XX", description = "A fault of the store", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn diff(
    State(state): State<AppState>,
    path: BranchPath,
    query: Result<Query<DiffQuery>, QueryRejection>,
) -> Result<Json<DiffView>, ApiError> {
    let Path((project, from)) = path?;
    let Query(query) = query?;
    let store = state.projects.get(&project)?;
    let sides = Sides::of(&project, from, &query)?;
    blocking(move || {
        let diff = sides.diff(&state, &project, &store)?;
        Ok(Json(DiffView::of(&sides.from, &sides.to, &diff)))
    })
    .await
}

/// `GET .../diff/files?to=B`: the same diff as paths of the branches' file trees: files,
/// directories and links added, removed and changed, with their sizes (a state of a branch
/// that never held a tree is an empty tree).
#[utoipa::path(get, path = "/v1/projects/{project}/branches/{branch}/diff/files",
    tag = "branches", params(BranchParams, DiffQuery),
    responses((status = 200, description = "The paths that differ", body = FileDiffView),
        (status = "4XX", description = "Refused", body = ErrorBody),
        (status = "5XX", description = "A fault of the store", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn diff_files(
    State(state): State<AppState>,
    path: BranchPath,
    query: Result<Query<DiffQuery>, QueryRejection>,
) -> Result<Json<FileDiffView>, ApiError> {
    let Path((project, from)) = path?;
    let Query(query) = query?;
    let store = state.projects.get(&project)?;
    let sides = Sides::of(&project, from, &query)?;
    blocking(move || {
        let pages = sides.diff(&state, &project, &store)?;
        let files = pagefork_files::diff_trees(&store, &sides.from, &sides.to, &pages)
            .map_err(tree_error)?;
        Ok(Json(FileDiffView::of(
            &sides.from,
            &sides.to,
            &pages,
            &files,
        )))
    })
    .await
}

fn tree_error(error: FsError) -> ApiError {
    match error {
        FsError::Store(engine) => ApiError::from(engine),
        FsError::NotATree { branch, .. } => ApiError::unprocessable(
            "no_file_tree",
            format!("branch {branch:?} holds pages that are not a file tree"),
        ),
        error @ FsError::OtherData { .. } => {
            ApiError::unprocessable("no_file_tree", error.to_string())
        }
        other => ApiError::internal(other.to_string()),
    }
}
