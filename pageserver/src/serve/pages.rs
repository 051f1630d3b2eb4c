//! Page endpoints: put one page (raw body), get one page (raw body; the LSN read at and
//! that state's commit time in headers), a batch commit of several updates (JSON, page
//! bytes in base64), and which LSN a time means.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use pagefork_engine::{Key, Update};
use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;
use super::params;
use super::{AppState, blocking};
use crate::views::{commit_json, time_answer_json};

/// The LSN of the state a page read saw.
pub(crate) const LSN_HEADER: HeaderName = HeaderName::from_static("pagefork-lsn");
/// The time of the last commit at or before that LSN (absent if none is known).
pub(crate) const COMMIT_TIME_HEADER: HeaderName = HeaderName::from_static("pagefork-commit-time");

type PagePath = Result<Path<(String, String, u32, u32)>, PathRejection>;

/// `PUT .../pages/{rel}/{block}`: the body is the page image, exactly one page.
pub(crate) async fn put(
    State(state): State<AppState>,
    path: PagePath,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((project, branch, rel, block)) = path?;
    let body = body?;
    let store = state.projects.get(&project)?;
    let updates = vec![(Key::new(rel, block), Update::Image(body))];
    let commit = blocking(move || Ok(store.commit(&branch, updates)?)).await?;
    Ok(Json(commit_json(&commit)))
}

/// Which state a page read or a time lookup means.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AtQuery {
    lsn: Option<String>,
    timestamp: Option<String>,
}

/// `GET .../pages/{rel}/{block}[?lsn=X/Y|?timestamp=T]`: the page's bytes, or 404 with
/// `page_not_found` if it does not exist in that state.
pub(crate) async fn get(
    State(state): State<AppState>,
    path: PagePath,
    query: Result<Query<AtQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path((project, branch, rel, block)) = path?;
    let Query(query) = query?;
    let at = params::at(
        "lsn",
        query.lsn.as_deref(),
        "timestamp",
        query.timestamp.as_deref(),
    )?;
    let store = state.projects.get(&project)?;
    let key = Key::new(rel, block);
    let (page, lsn, commit_time) = blocking(move || {
        let (page, trace) = store.get_page_traced(&branch, key, at)?;
        let commit_time = store.commit_time_at(&branch, trace.lsn)?;
        Ok((page, trace.lsn, commit_time))
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommitBody {
    updates: Vec<UpdateSpec>,
}

/// One update: exactly one of `image` (base64 page), `patch` or `drop: true`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateSpec {
    rel: u32,
    block: u32,
    image: Option<String>,
    patch: Option<PatchSpec>,
    #[serde(default)]
    drop: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchSpec {
    offset: u32,
    /// Base64.
    bytes: String,
}

fn decode(field: &str, text: &str) -> Result<Bytes, ApiError> {
    BASE64
        .decode(text)
        .map(Bytes::from)
        .map_err(|error| ApiError::bad_request(format!("{field}: not base64 ({error})")))
}

impl UpdateSpec {
    fn update(self, index: usize) -> Result<(Key, Update), ApiError> {
        let key = Key::new(self.rel, self.block);
        let update = match (self.image, self.patch, self.drop) {
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
pub(crate) async fn commit(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<CommitBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((project, branch)) = path?;
    let Json(body) = body?;
    let store = state.projects.get(&project)?;
    let updates = body
        .updates
        .into_iter()
        .enumerate()
        .map(|(index, spec)| spec.update(index))
        .collect::<Result<Vec<_>, _>>()?;
    let commit = blocking(move || Ok(store.commit(&branch, updates)?)).await?;
    Ok(Json(commit_json(&commit)))
}

/// `GET .../lsn_by_timestamp?timestamp=T`: the LSN a time means, and how it snapped.
pub(crate) async fn lsn_by_timestamp(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<AtQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((project, branch)) = path?;
    let Query(query) = query?;
    let Some(text) = query.timestamp.as_deref() else {
        return Err(ApiError::bad_request("give the time as ?timestamp=RFC3339"));
    };
    if query.lsn.is_some() {
        return Err(ApiError::bad_request(
            "lsn_by_timestamp takes a timestamp, not an lsn",
        ));
    }
    let time = params::time("timestamp", text)?;
    let store = state.projects.get(&project)?;
    let answer = blocking(move || Ok(store.lsn_for_time(&branch, time)?)).await?;
    Ok(Json(time_answer_json(&answer)))
}
