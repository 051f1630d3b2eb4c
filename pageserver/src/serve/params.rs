//! Parsing what requests carry: LSNs (`X/Y`), times (RFC 3339), durations (`3600s`,
//! `1h`), branch references (a name or `projects/P/branches/B`) and which state of a
//! branch a request means. Each failure is a 400 naming the field and the value.

use std::time::Duration;

use pagefork_engine::{At, Expiry, Lsn, Timestamp};

use super::error::{ApiError, quoted};

/// The body of a request that changes something but takes no parameters: `{}`, sent as
/// `application/json` like every other body, so that no browser can send it cross-origin
/// without a preflight (see `guard`).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoParameters {}

/// `text`, the value of `field`, as an LSN.
/// LSN 0 is refused: no state has it (every branch starts above it).
pub(crate) fn lsn(field: &str, text: &str) -> Result<Lsn, ApiError> {
    let lsn: Lsn = text.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "{field}: invalid LSN {}: expected X/Y in hexadecimal, like 0/16B3748",
            quoted(text)
        ))
    })?;
    if lsn == Lsn(0) {
        return Err(ApiError {
            code: "invalid_lsn",
            ..ApiError::bad_request(format!(
                "{field}: LSN 0/0 names no state: every branch starts above it"
            ))
        });
    }
    Ok(lsn)
}

/// `text`, the value of `field`, as a time.
pub(crate) fn time(field: &str, text: &str) -> Result<Timestamp, ApiError> {
    text.parse().map_err(|error: pagefork_engine::ParseTimestampError| {
        ApiError::bad_request(format!(
            "{field}: invalid time {}: expected RFC 3339 in UTC, like 2026-11-21T10:00:00Z ({})",
            quoted(text),
            error.reason
        ))
    })
}

/// `text`, the value of `field`, as a duration.
pub(crate) fn duration(field: &str, text: &str) -> Result<Duration, ApiError> {
    humantime::parse_duration(text).map_err(|error| {
        ApiError::bad_request(format!(
            "{field}: invalid duration {} ({error}): use forms like 3600s, 90m or 1h",
            quoted(text)
        ))
    })
}

/// The state `lsn` or `time` (at most one) names, as `field_lsn` / `field_time`.
pub(crate) fn at(
    lsn_field: &str,
    lsn_text: Option<&str>,
    time_field: &str,
    time_text: Option<&str>,
) -> Result<At, ApiError> {
    match (lsn_text, time_text) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(format!(
            "give at most one of {lsn_field} and {time_field}"
        ))),
        (Some(text), None) => Ok(At::Lsn(lsn(lsn_field, text)?)),
        (None, Some(text)) => Ok(At::Time(time(time_field, text)?)),
        (None, None) => Ok(At::Latest),
    }
}

/// A branch named in a body: a plain name, or `projects/P/branches/B` with `P` the
/// project the request is for.
pub(crate) fn branch_reference<'a>(
    field: &str,
    project: &str,
    text: &'a str,
) -> Result<&'a str, ApiError> {
    let Some(rest) = text.strip_prefix("projects/") else {
        return Ok(text);
    };
    match rest.split_once("/branches/") {
        Some((named, branch)) if named == project => Ok(branch),
        Some((named, _)) => Err(ApiError::bad_request(format!(
            "{field}: {} names project {}, but this request is for project {}",
            quoted(text),
            quoted(named),
            quoted(project)
        ))),
        None => Err(ApiError::bad_request(format!(
            "{field}: {} is neither a branch name nor projects/P/branches/B",
            quoted(text)
        ))),
    }
}

/// The expiry a body gives with Lakebase's fields (at most one of them): `None` if it
/// gives none (`no_expiry: false` alone gives none).
pub(crate) fn expiry(
    ttl: Option<&str>,
    expire_time: Option<&str>,
    no_expiry: Option<bool>,
) -> Result<Option<Expiry>, ApiError> {
    let given = usize::from(ttl.is_some())
        + usize::from(expire_time.is_some())
        + usize::from(no_expiry.is_some());
    if given > 1 {
        return Err(ApiError::bad_request(
            "give at most one of spec.ttl, spec.expire_time and spec.no_expiry",
        ));
    }
    Ok(match (ttl, expire_time, no_expiry) {
        (Some(ttl), _, _) => Some(Expiry::Ttl(duration("spec.ttl", ttl)?)),
        (_, Some(at), _) => Some(Expiry::At(time("spec.expire_time", at)?)),
        (_, _, Some(true)) => Some(Expiry::Never),
        _ => None,
    })
}
