//! `ApiError`: every answer the API gives instead of a result, as a status code and a JSON
//! body `{"error": code, "message": text}` naming what was wrong. Refusals are 4xx and
//! changed nothing: 400 for a request the OpenAPI document does not allow, 422 for one it
//! allows that the store refuses for what it means; a 5xx is only ever a real fault of
//! the store (I/O, damage, a full disk).

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pagefork_engine::EngineError;
use pagefork_engine::model::Refusal;
pub(crate) use pagefork_engine::quoted;

/// An error answer: status, a stable machine-readable code, and a message for people.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    /// A request that is malformed or names impossible values (400).
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
            message: message.into(),
        }
    }

    /// A well-formed request refused for what it means: an LSN past the head, a time
    /// before the history, an expiry past what a store can hold (422).
    pub(crate) fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code,
            message: message.into(),
        }
    }

    /// Something the request names does not exist (404).
    pub(crate) fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code,
            message: message.into(),
        }
    }

    /// The request conflicts with what exists (409).
    pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::CONFLICT,
            code,
            message: message.into(),
        }
    }

    /// Something the server has but cannot use now (503).
    pub(crate) fn unavailable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code,
            message: message.into(),
        }
    }

    /// A fault of the server, not of the request (500).
    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: message.into(),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> ApiError {
        let message = error.to_string();
        let (status, code) = match Refusal::of(&error) {
            // The name given is well-formed; the default backup name made from it is too
            // long (schemathesis found this answered 400 for a 63-character branch).
            _ if matches!(error, EngineError::DefaultBackupNameInvalid { .. }) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
            }
            Some(Refusal::UnknownBranch) => (StatusCode::NOT_FOUND, "branch_not_found"),
            Some(Refusal::BranchExists) => (StatusCode::CONFLICT, "branch_exists"),
            Some(Refusal::HasChildren) => (StatusCode::CONFLICT, "has_children"),
            Some(Refusal::LastBranch) => (StatusCode::CONFLICT, "last_branch"),
            Some(Refusal::Protected) => (StatusCode::CONFLICT, "protected"),
            Some(Refusal::ExpiryOnProtected) => (StatusCode::CONFLICT, "expiry_on_protected"),
            Some(Refusal::NoParent) => (StatusCode::CONFLICT, "no_parent"),
            Some(Refusal::BranchExpired) => (StatusCode::GONE, "branch_expired"),
            Some(Refusal::BelowGcCutoff) => (StatusCode::GONE, "below_gc_cutoff"),
            // The document states these rules: breaking them is a malformed request.
            Some(Refusal::InvalidBranchName | Refusal::EmptyCommit) => {
                (StatusCode::BAD_REQUEST, "invalid_request")
            }
            // Well-formed, refused for what it means given the store's state and time.
            Some(Refusal::ImageSize) => (StatusCode::UNPROCESSABLE_ENTITY, "wrong_page_size"),
            Some(Refusal::LsnPastHead | Refusal::LsnBelowBranchStart) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_lsn")
            }
            Some(Refusal::TimeBeforeHistory | Refusal::ExpiryInPast | Refusal::ExpiryTooLate) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_time")
            }
            Some(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            None if storage_full(&error) => {
                (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
            }
            None => match error {
                EngineError::CommitTooLarge { .. } => {
                    (StatusCode::PAYLOAD_TOO_LARGE, "commit_too_large")
                }
                EngineError::StoreExists { .. } | EngineError::StoreFilesWithoutMeta { .. } => {
                    (StatusCode::CONFLICT, "project_exists")
                }
                // The host's clock, not the store: the request may succeed once it is right.
                EngineError::ClockPastLatest { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "clock_past_latest")
                }
                EngineError::Poisoned { .. } => (StatusCode::SERVICE_UNAVAILABLE, "poisoned"),
                EngineError::LayerFetch { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "remote_unavailable")
                }
                EngineError::InvalidConfig(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            },
        };
        if status.is_server_error() {
            tracing::error!(%message, "store fault");
        }
        ApiError {
            status,
            code,
            message,
        }
    }
}

/// Whether `error` comes from a full disk (or quota): a 507 naming the file, not an
/// internal fault. (The store refuses further writes until it is opened again, once
/// space is freed: a failed write poisons it.)
fn storage_full(error: &EngineError) -> bool {
    let full = |kind: std::io::ErrorKind| {
        matches!(
            kind,
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        )
    };
    if let EngineError::Poisoned {
        kind: Some(kind), ..
    } = error
    {
        return full(*kind);
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && full(io.kind())
        {
            return true;
        }
        cause = current.source();
    }
    false
}

/// The longest message an error answer carries (a safety net under [`quoted`], which
/// every message uses for the values it names).
const MAX_MESSAGE_BYTES: usize = 2048;

/// `message` cut to at most [`MAX_MESSAGE_BYTES`] on a character boundary.
fn bounded(mut message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let total = message.len();
    let mut cut = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    message.truncate(cut);
    message.push_str(&format!("... (message cut: {total} bytes in all)"));
    message
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => body_too_large(&rejection.body_text()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "unsupported_media_type",
                message: "send a JSON body with content-type: application/json".to_owned(),
            },
            _ => ApiError::bad_request(format!(
                "malformed JSON body: {}",
                crate::output::values_cut(&rejection.body_text())
            )),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> ApiError {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => body_too_large(&rejection.body_text()),
            _ => ApiError::bad_request(format!("cannot read the body: {}", rejection.body_text())),
        }
    }
}

pub(crate) fn body_too_large(detail: &str) -> ApiError {
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "body_too_large",
        message: format!(
            "the request body is larger than {} bytes: {detail}",
            super::MAX_BODY_BYTES
        ),
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        ApiError::bad_request(format!(
            "bad path: {}",
            crate::output::values_cut(&rejection.body_text())
        ))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::bad_request(format!(
            "bad query string: {}",
            crate::output::values_cut(&rejection.body_text())
        ))
    }
}

/// The body of every error answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    /// A stable code naming the kind of error, like `invalid_lsn` or `branch_not_found`.
    error: String,
    /// What was wrong, for people: names the branch, LSN, time, field or value.
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            error: self.code.to_owned(),
            message: bounded(self.message),
        });
        (self.status, body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_quoted_by_a_prefix() {
        assert_eq!(quoted("main"), "\"main\"");
        let long = "é".repeat(10_000);
        let text = quoted(&long);
        assert!(text.ends_with("... (20000 bytes in all)"), "{text}");
        assert!(text.len() < 200, "{text}");
    }

    #[test]
    fn messages_are_bounded_on_a_char_boundary() {
        let message = bounded("ü".repeat(5_000));
        assert!(message.len() < MAX_MESSAGE_BYTES + 64);
        assert!(message.ends_with("(message cut: 10000 bytes in all)"));
        assert_eq!(bounded("short".to_owned()), "short");
    }

    #[test]
    fn a_full_disk_is_insufficient_storage() {
        let error = EngineError::Io {
            operation: "write",
            path: "/data/wal/000".into(),
            source: std::io::Error::from_raw_os_error(28),
        };
        let answer = ApiError::from(error);
        assert_eq!(answer.status, StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(answer.code, "insufficient_storage");
        assert!(
            answer.message.contains("/data/wal/000"),
            "{}",
            answer.message
        );
    }
}
