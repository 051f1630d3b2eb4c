//! What may reach the handlers at all, against attacks through the user's own browser:
//!
//! - **DNS rebinding.** A page on `evil.example` whose name is made to resolve to
//!   127.0.0.1 reads the API as its own origin, but its requests carry
//!   `Host: evil.example`. Only Host names this server answers to pass: IP literals (an
//!   origin that is an IP address cannot be rebound), `localhost`, and the names given
//!   with `--allow-host`. A request without a Host header (HTTP/1.0) did not come from a
//!   browser and passes.
//! - **Cross-site requests.** Browsers send some cross-origin POSTs (no body or a
//!   `text/plain` one) without asking first, and mark them with an `Origin` header. A
//!   request whose `Origin` is not this server's own (`http://` + its Host) is refused.
//!   Together with every mutating route taking `Content-Type: application/json` (which
//!   a browser will not send cross-origin without a CORS preflight this server never
//!   grants), no page the user visits can change a branch.
//!
//! Both refusals are 403 and happen before the request's body is read (at most a small
//! prefix, see `refuse_unread`) or any store is asked anything.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::error::{ApiError, quoted};

/// The Host names a server answers to besides IP literals and `localhost`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AllowedHosts {
    names: Vec<String>,
}

impl AllowedHosts {
    /// `names`, compared without case.
    pub(crate) fn new(names: &[String]) -> AllowedHosts {
        AllowedHosts {
            names: names.iter().map(|name| name.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether a request with this Host header value (`name[:port]`) may be answered.
    fn allows(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        literal.parse::<IpAddr>().is_ok() || name == "localhost" || self.names.contains(&name)
    }
}

/// The name part of a Host header value: without the port, brackets kept for IPv6.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .find(']')
            .map_or(host, |end| host.get(..=end).unwrap_or(host));
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|byte| byte.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Refuses a request with a foreign Host or another origin (see the module comment).
pub(crate) async fn check_host_and_origin(
    State(allowed): State<Arc<AllowedHosts>>,
    request: Request,
    next: Next,
) -> Response {
    match refusal(&allowed, request.headers(), request.uri().authority()) {
        Some(error) => super::refuse_unread(request, error).await,
        None => next.run(request).await,
    }
}

/// The refusal of a request with `headers` whose target named `authority` (a request in
/// absolute form, `POST http://host/...`), if any.
fn refusal(
    allowed: &AllowedHosts,
    headers: &HeaderMap,
    authority: Option<&Authority>,
) -> Option<ApiError> {
    // Which Host counts must not be a matter of which copy is read (found by a review:
    // the first of two passed, and an absolute target's host, which HTTP says replaces
    // the header, was not looked at).
    if headers.get_all(header::HOST).iter().nth(1).is_some() {
        return Some(ApiError::bad_request(
            "more than one Host header: a request names one host",
        ));
    }
    let named = match authority {
        Some(authority) => Some(Ok(authority.as_str())),
        None => headers.get(header::HOST).map(|value| value.to_str()),
    };
    let host = match named {
        None => None,
        Some(Ok(host)) => Some(host),
        Some(Err(_)) => {
            return Some(forbidden(
                "host_not_allowed",
                "the Host header is not ASCII".to_owned(),
            ));
        }
    };
    if let Some(host) = host
        && !allowed.allows(host)
    {
        return Some(forbidden(
            "host_not_allowed",
            format!(
                "Host {} is not a name this server answers to (IP addresses, localhost, and names given with --allow-host)",
                quoted(host)
            ),
        ));
    }
    let origin = headers.get(header::ORIGIN)?;
    let same = match (origin.to_str(), host) {
        (Ok(origin), Some(host)) => origin.eq_ignore_ascii_case(&format!("http://{host}")),
        _ => false,
    };
    if same {
        return None;
    }
    Some(forbidden(
        "cross_origin",
        format!(
            "requests from origin {} are refused: the API answers only its own origin (http://{})",
            quoted(&String::from_utf8_lossy(origin.as_bytes())),
            host.map_or_else(|| "HOST".to_owned(), str::to_owned)
        ),
    ))
}

fn forbidden(code: &'static str, message: String) -> ApiError {
    ApiError {
        status: StatusCode::FORBIDDEN,
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(host) = host {
            headers.insert(
                header::HOST,
                HeaderValue::from_str(host).expect("a valid header"),
            );
        }
        if let Some(origin) = origin {
            headers.insert(
                header::ORIGIN,
                HeaderValue::from_str(origin).expect("a valid header"),
            );
        }
        headers
    }

    #[test]
    fn host_names_are_checked_without_their_port() {
        let allowed = AllowedHosts::new(&["Pagefork.Internal".to_owned()]);
        for host in [
            "127.0.0.1:7070",
            "localhost",
            "LOCALHOST:80",
            "[::1]:7070",
            "[::1]",
            "10.0.0.5",
            "pagefork.internal:7070",
        ] {
            assert!(
                refusal(&allowed, &headers(Some(host), None), None).is_none(),
                "{host}"
            );
        }
        for host in [
            "evil.example",
            "evil.example:7070",
            "localhost.evil.example",
            "127.0.0.1.evil",
        ] {
            let error = refusal(&allowed, &headers(Some(host), None), None).expect(host);
            assert_eq!(
                (error.status, error.code),
                (StatusCode::FORBIDDEN, "host_not_allowed")
            );
        }
        assert!(refusal(&allowed, &headers(None, None), None).is_none());
    }

    #[test]
    fn only_the_servers_own_origin_passes() {
        let allowed = AllowedHosts::default();
        let same = headers(Some("127.0.0.1:7070"), Some("http://127.0.0.1:7070"));
        assert!(refusal(&allowed, &same, None).is_none());
        for origin in [
            "http://evil.example",
            "null",
            "https://127.0.0.1:7070",
            "http://127.0.0.1:7071",
        ] {
            let error = refusal(
                &allowed,
                &headers(Some("127.0.0.1:7070"), Some(origin)),
                None,
            )
            .expect(origin);
            assert_eq!(
                (error.status, error.code),
                (StatusCode::FORBIDDEN, "cross_origin")
            );
        }
        let error = refusal(&allowed, &headers(None, Some("http://x")), None).expect("no host");
        assert_eq!(error.code, "cross_origin");
    }

    /// Found by a review: of two Host headers only the first was checked, and the host
    /// of a request in absolute form (`POST http://evil.example/v1/...`), which HTTP says
    /// replaces the header, not at all.
    #[test]
    fn one_host_counts_and_an_absolute_targets_host_is_it() {
        let allowed = AllowedHosts::default();
        let mut two = headers(Some("127.0.0.1:7070"), None);
        two.append(header::HOST, HeaderValue::from_static("evil.example"));
        let error = refusal(&allowed, &two, None).expect("two hosts");
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        let local = headers(Some("127.0.0.1:7070"), None);
        let evil = Authority::from_static("evil.example");
        let error = refusal(&allowed, &local, Some(&evil)).expect("absolute form");
        assert_eq!(error.code, "host_not_allowed");
        let own = Authority::from_static("127.0.0.1:7070");
        let same_origin = headers(Some("evil.example"), Some("http://127.0.0.1:7070"));
        assert!(refusal(&allowed, &same_origin, Some(&own)).is_none());
    }
}
