//! Query parameters a route does not take are refused (400 `invalid_request`), on every
//! route alike: the routes that take some refuse the others through their parameter
//! types, and the rest took any silently (a review's `POST .../gc?dry_run=true` ran a
//! real GC, and `DELETE .../branches/B?dry_run=true` deleted the branch).
//!
//! What a route takes is what the OpenAPI document (`schema`) says it takes, so the
//! check and the document cannot disagree.

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The query parameters of each operation, by lowercase method and path template, from
/// the OpenAPI document.
static QUERY_PARAMETERS: LazyLock<HashMap<(String, String), BTreeSet<String>>> =
    LazyLock::new(|| query_parameters(&super::schema::document()));

fn query_parameters(document: &serde_json::Value) -> HashMap<(String, String), BTreeSet<String>> {
    let mut routes = HashMap::new();
    let paths = document["paths"].as_object().into_iter().flatten();
    for (path, operations) in paths {
        for (method, operation) in operations.as_object().into_iter().flatten() {
            let names = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|parameter| parameter["in"] == "query")
                .filter_map(|parameter| parameter["name"].as_str().map(str::to_owned))
                .collect();
            routes.insert((method.clone(), path.clone()), names);
        }
    }
    routes
}

/// Refuses a request naming a query parameter its route does not take.
pub(crate) async fn refuse_unknown_parameters(request: Request, next: Next) -> Response {
    if let Some(query) = request.uri().query().filter(|query| !query.is_empty()) {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(|path| path.as_str().to_owned());
        if let Some(route) = route {
            // A HEAD is answered by its route's GET, and takes what that takes.
            let method = match request.method() {
                &axum::http::Method::HEAD => "get".to_owned(),
                method => method.as_str().to_ascii_lowercase(),
            };
            // An operation the document does not list (a method the route does not take,
            // the routes outside /v1) is left to the router: 405 for a wrong method.
            let Some(taken) = QUERY_PARAMETERS.get(&(method, route.clone())) else {
                return next.run(request).await;
            };
            let unknown = form_urlencoded::parse(query.as_bytes())
                .map(|(name, _)| name.into_owned())
                .find(|name| !taken.contains(name));
            if let Some(name) = unknown {
                let takes = match taken.is_empty() {
                    true => "it takes none".to_owned(),
                    false => format!(
                        "it takes {}",
                        taken.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                };
                return ApiError::bad_request(crate::output::values_cut(&format!(
                    "{} {route} takes no query parameter {name:?}: {takes}",
                    request.method()
                )))
                .into_response();
            }
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_says_which_routes_take_which_parameters() {
        let routes = &*QUERY_PARAMETERS;
        let of = |method: &str, path: &str| routes.get(&(method.to_owned(), path.to_owned()));
        let diff = of("get", "/v1/projects/{project}/branches/{branch}/diff").expect("documented");
        assert!(diff.contains("to") && diff.contains("from_lsn"), "{diff:?}");
        let gc = of("post", "/v1/projects/{project}/gc").expect("documented");
        assert!(gc.is_empty(), "{gc:?}");
    }
}
