//! Page endpoints: put one page (raw body), get one page (raw body; the LSN read at and
//! that state's commit time in headers), a batch commit of several updates (JSON, page
//! bytes in base64), and which LSN a time means. The request and answer types here are
//! the ones the OpenAPI document is made of.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use pagefork_engine::{Key, Store, Update};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::mounts::refuse_if_mounted;
use super::params::{self, BranchParams, present};
use super::schema::{Base64Text, BranchNameText, LsnText, ProjectNameText, TimeText, TrueOnly};
use super::{AppState, blocking};
use crate::views::{CommitView, TimeAnswerView};

/// The LSN of the state a page read saw.
pub(crate) const LSN_HEADER: HeaderName = HeaderName::from_static("pagefork-lsn");
/// The time of the last commit at or before that LSN (absent if none is known).
pub(crate) const COMMIT_TIME_HEADER: HeaderName = HeaderName::from_static("pagefork-commit-time");

type PagePath = Result<Path<(String, String, u32, u32)>, PathRejection>;

/// A page's place in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct PageParams {
    #[param(value_type = ProjectNameText)]
    project: String,
    #[param(value_type = BranchNameText)]
    branch: String,
    /// The relation.
    #[param(value_type = u64, maximum = 4294967295_u64)]
    rel: u32,
    /// The block in it.
    #[param(value_type = u64, maximum = 4294967295_u64)]
    block: u32,
}

/// `PUT .../pages/{rel}/{block}`: the body is the page image, exactly one page.
#[utoipa::path(put, path = "/v1/projects/{project}/branches/{branch}/pages/{rel}/{block}", tag = "pages",
    params(PageParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The page image: exactly the project's page size"),
    responses((status = 200, description = "Committed", body = CommitView),
        (status = "4XX", description = "Refused; nothing changed", body = ErrorBody),
        (status = "5XX", description = "A fault of the store", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn put(
    State(state): State<AppState>,
    path: PagePath,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CommitView>, ApiError> {
    let Path((project, branch, rel, block)) = path?;
    let body = body?;
    let store = state.projects.get(&project)?;
    let updates = vec![(Key::new(rel, block), Update::Image(body))];
    commit_unmounted(state, store, (project, branch), updates).await
}

/// Which state a page read means: at most one of `lsn` and `timestamp` (default: the
/// latest).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AtQuery {
    #[param(value_type = Option<LsnText>)]
    lsn: Option<String>,
    #[param(value_type = Option<TimeText>)]
    timestamp: Option<String>,
}

/// `GET .../pages/{rel}/{block}[?lsn=X/Y|?timestamp=T]`: the page's bytes, or 404 with
/// `page_not_found` if it does not exist in that state.
#[utoipa::path(get, path = "/v1/projects/{project}/branches/{branch}/pages/{rel}/{block}", tag = "pages",
    params(PageParams, AtQuery),
    responses((status = 200, description = "The page's bytes", content_type = "application/octet-stream", body = Vec<u8>,
            headers(("pagefork-lsn" = String, description = "The LSN read at"),
                ("pagefork-commit-time" = String, description = "The time of the last commit at or before it, if any"))),
        (status = "4XX", description = "Refused, or no such page (404 page_not_found)", body = ErrorBody),
        (status = "5XX", description = "A fault of the store", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn get(
    State(state): State<AppState>,
    path: PagePath,
    query: Result<Query<AtQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path((project, branch, rel, block)) = path?;
    let Query(query) = query?;
    let at = params::at_in_query(
        "lsn",
        query.lsn.as_deref(),
        "timestamp",
        query.timestamp.as_deref(),
    )?;
    let store = state.projects.get(&project)?;
    let key = Key::new(rel, block);
    let (page, lsn, commit_time) = blocking(move || {
        let (page, trace) = store.get_page_traced(&branch, key, at)?;
        Ok((page, trace.lsn, trace.commit_time))
    })
    .await?;
    let Some(page) = page else {
        return Err(ApiError::not_found(
            "page_not_found",
            format!("rel {rel} block {block} does not exist at LSN {lsn}"),
        ));
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let lsn_value = HeaderValue::from_str(&lsn.to_string())
        .map_err(|error| ApiError::internal(format!("LSN header: {error}")))?;
    headers.insert(LSN_HEADER, lsn_value);
    if let Some(time) = commit_time {
        let value = HeaderValue::from_str(&time.to_string())
            .map_err(|error| ApiError::internal(format!("commit time header: {error}")))?;
        headers.insert(COMMIT_TIME_HEADER, value);
    }
    Ok((headers, page).into_response())
}

/// A batch commit: several page updates, applied together as one commit or not at all.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommitBody {
    /// At least one and at most 65,536 (`params::MAX_OBJECTS`), each page at most once.
    #[serde(deserialize_with = "params::objects")]
    #[schema(min_items = 1, max_items = 65536)]
    updates: Vec<PageUpdate>,
}

/// One update: exactly one of `image` (a whole page), `patch` or `drop: true`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageUpdate {
    #[serde(deserialize_with = "params::whole_u32")]
    #[schema(value_type = u64, maximum = 4294967295_u64)]
    rel: u32,
    #[serde(deserialize_with = "params::whole_u32")]
    #[schema(value_type = u64, maximum = 4294967295_u64)]
    block: u32,
    /// The whole page, base64.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Base64Text)]
    image: Option<String>,
    #[serde(default, deserialize_with = "params::present_object")]
    #[schema(value_type = PatchSpec)]
    patch: Option<PatchSpec>,
    /// The page no longer exists.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = TrueOnly)]
    drop: Option<bool>,
}

/// Bytes written over an existing page at an offset.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchSpec {
    /// Where in the page the bytes go; they must fit in it.
    #[serde(deserialize_with = "params::whole_u32")]
    #[schema(value_type = u64, maximum = 4294967295_u64)]
    offset: u32,
    /// The bytes, base64.
    #[schema(value_type = Base64Text)]
    bytes: String,
}

/// Standard base64 with padding, as the document's pattern says; the unused low bits of
/// the last character may be anything (the pattern does not constrain them either).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

fn decode(field: &str, text: &str) -> Result<Bytes, ApiError> {
    BASE64
        .decode(text)
        .map(Bytes::from)
        .map_err(|error| ApiError::bad_request(format!("{field}: not base64 ({error})")))
}

impl PageUpdate {
    fn update(self, index: usize) -> Result<(Key, Update), ApiError> {
        let key = Key::new(self.rel, self.block);
        let drop = params::only_true(&format!("updates[{index}].drop"), self.drop)?;
        let update = match (self.image, self.patch, drop) {
            (Some(image), None, false) => {
                Update::Image(decode(&format!("updates[{index}].image"), &image)?)
            }
            (None, Some(patch), false) => Update::Patch {
                offset: patch.offset,
                bytes: decode(&format!("updates[{index}].patch.bytes"), &patch.bytes)?,
            },
            (None, None, true) => Update::Drop,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "updates[{index}] ({key}): give exactly one of image, patch and drop: true"
                )));
            }
        };
        Ok((key, update))
    }
}

/// `POST .../commit`.
#[utoipa::path(post, path = "/v1/projects/{project}/branches/{branch}/commit", tag = "pages",
    params(BranchParams), request_body = CommitBody,
    responses((status = 200, description = "Committed, all or nothing", body = CommitView),
        (status = "4XX", description = "Refused; nothing changed", body = ErrorBody),
        (status = "5XX", description = "A fault of the store", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn commit(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<CommitBody>, JsonRejection>,
) -> Result<Json<CommitView>, ApiError> {
    let Path((project, branch)) = path?;
    let Json(body) = body?;
    let store = state.projects.get(&project)?;
    let updates = body
        .updates
        .into_iter()
        .enumerate()
        .map(|(index, spec)| spec.update(index))
        .collect::<Result<Vec<_>, _>>()?;
    commit_unmounted(state, store, (project, branch), updates).await
}

/// Commits `updates` to a branch that is not mounted (a mount is its branch's only
/// writer).
async fn commit_unmounted(
    state: AppState,
    store: Store,
    (project, branch): (String, String),
    updates: Vec<(Key, Update)>,
) -> Result<Json<CommitView>, ApiError> {
    let commit = blocking(move || {
        refuse_if_mounted(&state, &project, &branch, || {
            Ok(store.commit(&branch, updates)?)
        })
    })
    .await?;
    Ok(Json(CommitView::of(&commit)))
}

/// The time a lookup asks about.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct TimeQuery {
    #[param(value_type = TimeText)]
    timestamp: String,
}

/// `GET .../lsn_by_timestamp?timestamp=T`: the LSN a time means, and how it snapped.
#[utoipa::path(get, path = "/v1/projects/{project}/branches/{branch}/lsn_by_timestamp", tag = "pages",
    params(BranchParams, TimeQuery),
    responses((status = 200, description = "The LSN, and the commit the time snapped to", body = TimeAnswerView),
        (status = "4XX", description = "Refused", body = ErrorBody),
        (status = "5XX", description = "A fault of the store", body = ErrorBody)),
    security((), ("token" = [])))]
pub(crate) async fn lsn_by_timestamp(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<TimeQuery>, QueryRejection>,
) -> Result<Json<TimeAnswerView>, ApiError> {
    let Path((project, branch)) = path?;
    let Query(query) = query?;
    let time = params::time("timestamp", &query.timestamp)?;
    let store = state.projects.get(&project)?;
    let answer = blocking(move || Ok(store.lsn_for_time(&branch, time)?)).await?;
    Ok(Json(TimeAnswerView::of(&answer)))
}
