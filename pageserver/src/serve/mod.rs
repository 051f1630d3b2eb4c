//! `pagefork serve`: the HTTP API. JSON over HTTP/1.1 (axum on tokio), versioned under
//! `/v1`, one store per project (see `projects`). Every store call that writes or may
//! wait on I/O runs on tokio's blocking pool (they fsync); lookups answered from memory
//! (show, list, stats, leases, log, metrics) run inline. Handlers only parse, call and
//! render.
//!
//! Invariants: a request that is malformed or names something that does not exist gets
//! a 4xx before the store is asked to change anything (see `error`); a request with a
//! foreign Host or from another origin never reaches a handler (see `guard`); the server
//! prints the address it listens on as its first line of standard output (so a caller
//! that asked for port 0 learns the port); SIGTERM or SIGINT stops accepting, lets
//! requests in flight finish within the grace period, then checkpoints and closes every
//! store, whatever clients do (see `connections`).

mod admin;
mod branches;
mod connections;
mod diff;
mod endpoints;
mod error;
mod guard;
mod metrics;
mod mounts;
mod pages;
pub(crate) mod params;
mod projects;
mod query;
mod remote;
mod schema;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};

use self::error::ApiError;
use self::metrics::Metrics;
pub(crate) use self::projects::Projects;
use crate::auth::{Keys, Scope, TokenError};
use crate::endpoint::registry::Endpoints;
use crate::mount::Mounts;
use crate::replication::Replication;

/// The largest request body accepted: a batch commit of many pages, base64-encoded.
pub(crate) const MAX_BODY_BYTES: usize = 64 << 20;

pub(crate) use self::connections::Timeouts;
pub(crate) use self::guard::AllowedHosts;
pub(crate) use self::params::parse_duration;
pub(crate) use self::projects::validate_project_name;

/// How the server behaves.
#[derive(Clone, Debug, Default)]
pub(crate) struct ServeOptions {
    /// Refuse to create a branch without an expiry (`ttl`, `expire_time` or `no_expiry`),
    /// as Lakebase does.
    pub(crate) require_expiration: bool,
    /// The Host names answered besides IP literals and `localhost`.
    pub(crate) allowed_hosts: AllowedHosts,
    /// How long clients get to send a request, and to finish at shutdown.
    pub(crate) timeouts: Timeouts,
    /// Require a token signed with these keys (`--auth`); `None`: no tokens.
    pub(crate) auth: Option<Arc<Keys>>,
    /// Mount points must lie inside this directory (`--mount-root`).
    pub(crate) mount_root: std::path::PathBuf,
    /// Where endpoints find Postgres' programs (`--pg-bin`; found if `None`).
    pub(crate) pg_bin: Option<std::path::PathBuf>,
    /// Keep every project's copy in object storage (`--remote`); `None`: no copy.
    pub(crate) remote: Option<crate::replication::RemoteOptions>,
}

/// What every handler can reach.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub(crate) projects: Arc<Projects>,
    pub(crate) mounts: Arc<Mounts>,
    pub(crate) endpoints: Arc<Endpoints>,
    pub(crate) replication: Arc<Replication>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) options: ServeOptions,
}

/// What the server logs unless `PAGEFORK_LOG` says otherwise: its own requests, and
/// fuser's errors except for replies to requests the kernel has dropped (a program
/// interrupted by a signal: `pg_test_fsync`'s alarms do it all the time) and its second
/// try at an unmount the registry already made.
const DEFAULT_LOG_FILTER: &str = "info,fuser=error,fuser::reply=off,fuser::session=off";

/// Serves the projects under `root` on `listener` (bound by the caller) until SIGTERM or
/// SIGINT.
pub(crate) fn run(
    root: &Path,
    listener: std::net::TcpListener,
    options: ServeOptions,
) -> anyhow::Result<()> {
    crate::logging::init(DEFAULT_LOG_FILTER);
    let shutdown_grace = options.timeouts.shutdown_grace;
    let projects = Projects::open(root, options.remote.as_ref())?;
    let mounts = Arc::new(Mounts::new(&options.mount_root)?);
    // After the stores are ours (a second server on this directory stopped above): what
    // a killed server left mounted here is dead, and would refuse its mount points.
    mounts.detach_dead_mounts();
    let endpoints = Arc::new(Endpoints::default());
    let reaper = reap_endpoints_every_second(Arc::clone(&endpoints), Arc::clone(&mounts))?;
    let replication = Replication::start(options.remote.clone(), &projects)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let served = runtime.block_on(serve(
        AppState {
            projects: Arc::clone(&projects),
            mounts: Arc::clone(&mounts),
            endpoints: Arc::clone(&endpoints),
            replication: Arc::clone(&replication),
            metrics: Arc::new(Metrics::new(
                Arc::clone(&projects),
                Arc::clone(&replication),
            )),
            options,
        },
        listener,
    ));
    // Requests in flight have finished (or the server never started): stop the endpoints
    // (fast shutdown), unmount what is mounted (everything written through it made
    // durable), sync every project a last time and stop replicating, then close the
    // stores.
    reaper.stop();
    endpoints.stop_all(&mounts);
    mounts.unmount_all(shutdown_grace);
    replication.sync_and_stop_all(shutdown_grace);
    projects.close();
    // Nothing left to wait for: a request still blocked in a task (on a last sync given
    // up above, say) ends with the process.
    runtime.shutdown_background();
    served
}

/// The thread that ends endpoints whose Postgres exited by itself
/// (`Endpoints::reap_exited`), until `stop`.
struct Reaper {
    stop: crossbeam::channel::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Reaper {
    fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

fn reap_endpoints_every_second(
    endpoints: Arc<Endpoints>,
    mounts: Arc<Mounts>,
) -> anyhow::Result<Reaper> {
    let (stop, stopped) = crossbeam::channel::bounded::<()>(0);
    let thread = std::thread::Builder::new()
        .name("endpoint reaper".to_owned())
        .spawn(move || {
            while let Err(crossbeam::channel::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(std::time::Duration::from_secs(1))
            {
                endpoints.reap_exited(&mounts);
            }
        })
        .context("cannot start the endpoint reaper")?;
    Ok(Reaper { stop, thread })
}

async fn serve(state: AppState, listener: std::net::TcpListener) -> anyhow::Result<()> {
    listener
        .set_nonblocking(true)
        .context("cannot make the listening socket non-blocking")?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .context("cannot listen with the async runtime")?;
    let address = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let count = state.projects.list().len();
    let noun = if count == 1 { "project" } else { "projects" };
    let unavailable = match state.projects.unavailable().len() {
        0 => String::new(),
        n => format!("; {n} unavailable, see GET /v1/projects"),
    };
    crate::output::line(format_args!(
        "pagefork listening on http://{address} ({count} {noun}{unavailable})"
    ))?;
    tracing::info!(%address, projects = count, "serving");
    let timeouts = state.options.timeouts;
    let endpoints = Arc::clone(&state.endpoints);
    // A start still waiting for its server gives up at the signal, not after the grace:
    // its request is answered 503 `shutting_down` while connections are still served (a
    // review's start outlasting the grace was cut off with no answer at all).
    let shutdown = async move {
        shutdown_signal().await;
        endpoints.abandon_starts();
    };
    connections::serve(listener, router(state), timeouts, shutdown).await;
    Ok(())
}

/// Every route, in the order of the API table in README.
pub(crate) fn router(state: AppState) -> Router {
    let branch = "/v1/projects/{project}/branches/{branch}";
    let v1 = Router::new()
        .route("/v1/openapi.json", get(admin::openapi))
        .route(
            "/v1/projects",
            get(admin::list_projects).post(admin::create_project),
        )
        .route("/v1/projects/{project}", get(admin::get_project))
        .route(
            "/v1/projects/{project}/branches",
            get(branches::list).post(branches::create),
        )
        .route(
            branch,
            get(branches::show)
                .patch(branches::update)
                .delete(branches::delete),
        )
        .route(&format!("{branch}/reset"), post(branches::reset))
        .route(&format!("{branch}/restore"), post(branches::restore))
        .route(&format!("{branch}/rename"), post(branches::rename))
        .route(&format!("{branch}/detach"), post(branches::detach))
        .route(&format!("{branch}/diff"), get(diff::diff))
        .route(&format!("{branch}/diff/files"), get(diff::diff_files))
        .route(
            &format!("{branch}/endpoint"),
            post(endpoints::start).delete(endpoints::stop),
        )
        .route("/v1/projects/{project}/endpoints", get(endpoints::list))
        .route(
            &format!("{branch}/schema-diff"),
            get(endpoints::schema_diff),
        )
        .route(
            &format!("{branch}/lsn_by_timestamp"),
            get(pages::lsn_by_timestamp),
        )
        .route(&format!("{branch}/leases"), post(admin::lease))
        .route(
            &format!("{branch}/pages/{{rel}}/{{block}}"),
            put(pages::put).get(pages::get),
        )
        .route(&format!("{branch}/commit"), post(pages::commit))
        .route(
            &format!("{branch}/mount"),
            post(mounts::mount).delete(mounts::unmount),
        )
        .route("/v1/projects/{project}/mounts", get(mounts::list))
        .route("/v1/projects/{project}/leases", get(admin::leases))
        .route("/v1/projects/{project}/log", get(admin::log))
        .route("/v1/projects/{project}/gc", post(admin::gc))
        .route("/v1/projects/{project}/compact", post(admin::compact))
        .route("/v1/projects/{project}/stats", get(admin::stats))
        .route("/v1/projects/{project}/remote", get(remote::status))
        .route("/v1/projects/{project}/remote/sync", post(remote::sync));
    v1.route("/healthz", get(admin::healthz))
        .route("/metrics", get(admin::metrics))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        // Innermost first, so a request meets them in the opposite order: it is counted,
        // must pass the Host and Origin checks and (under --auth) show a token, and only
        // then is its body read (up to the limit, within the body timeout).
        .layer(axum::middleware::from_fn(query::refuse_unknown_parameters))
        .layer(axum::middleware::from_fn_with_state(
            state.options.timeouts.body,
            read_body_first,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.options.auth.clone(),
            require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(state.options.allowed_hosts.clone()),
            guard::check_host_and_origin,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.metrics),
            metrics::record_request,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found("no_route", format!("no route for {method} {uri}"))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: format!("{method} is not allowed on {uri}"),
    }
}

/// Reads every request's body before its handler runs, so an answer given without the
/// body (a wrong content type, an unknown route) never leaves unread bytes behind: closing
/// a socket with unread data resets the connection, and the client could lose the answer.
/// A request whose announced length is over the limit is refused without reading it; a
/// body without a length is cut off at the limit; a body that has not all arrived within
/// `timeout` is answered 408 and the connection closed.
async fn read_body_first(
    axum::extract::State(timeout): axum::extract::State<std::time::Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let announced = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if let Some(length) = announced.filter(|length| *length > MAX_BODY_BYTES as u64) {
        return error::body_too_large(&format!("it announces {length} bytes")).into_response();
    }
    let (parts, body) = request.into_parts();
    let Ok(read) = tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY_BYTES)).await
    else {
        let mut response = ApiError {
            status: axum::http::StatusCode::REQUEST_TIMEOUT,
            code: "request_timeout",
            message: format!(
                "the request body did not arrive within {}",
                humantime::format_duration(timeout)
            ),
        }
        .into_response();
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        return response;
    };
    // A page PUT's body is the raw page, whatever its content type says (a review found
    // a page refused for being sent as application/json, as some clients do by default).
    // (The page route is the only PUT one.)
    let raw_page = parts.method == axum::http::Method::PUT;
    match read {
        Ok(bytes) if is_json(&parts.headers) && !raw_page && !is_object(&bytes) => {
            ApiError::bad_request(
                "the body must be a JSON object ({} for an operation without parameters)",
            )
            .into_response()
        }
        Ok(bytes) => {
            let request = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
            next.run(request).await
        }
        // Cut off at the limit (no length was announced), or the client broke off.
        Err(error) if announced.is_none() => {
            error::body_too_large(&error.to_string()).into_response()
        }
        Err(error) => {
            ApiError::bad_request(format!("cannot read the body: {error}")).into_response()
        }
    }
}

/// Whether a request says its body is JSON.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(';')
                .next()
                .is_some_and(|kind| kind.trim().eq_ignore_ascii_case("application/json"))
        })
}

/// Whether a JSON body is an object (or empty, which the extractor refuses itself).
fn is_object(body: &[u8]) -> bool {
    match body.iter().find(|byte| !byte.is_ascii_whitespace()) {
        None | Some(b'{') => true,
        Some(_) => false,
    }
}

/// The routes anyone may call under `--auth`: liveness and the API's description.
const OPEN_ROUTES: [&str; 2] = ["/healthz", "/v1/openapi.json"];

/// Under `--auth`, refuses a request without a valid token (401, with a code saying what
/// was wrong with the token) or with one that does not cover its path (403).
async fn require_token(
    axum::extract::State(keys): axum::extract::State<Option<Arc<Keys>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let Some(keys) = keys else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    if OPEN_ROUTES.contains(&path) {
        return next.run(request).await;
    }
    let header = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .map(|value| value.to_str().unwrap_or_default());
    let refusal = match keys.check(header) {
        Ok(scope) if scope.allows(path) => return next.run(request).await,
        Ok(scope) => TokenError::WrongScope {
            scope: match scope {
                Scope::Server => "the whole server".to_owned(),
                Scope::Project(project) => format!("project {}", error::quoted(&project)),
            },
            path: error::quoted(path),
        },
        Err(error) => error,
    };
    // A valid token for something else is authenticated but not allowed (403); no token,
    // or one that is not valid, asks for one (401, with the scheme to use).
    let wrong_scope = matches!(refusal, TokenError::WrongScope { .. });
    let error = ApiError {
        status: match wrong_scope {
            true => axum::http::StatusCode::FORBIDDEN,
            false => axum::http::StatusCode::UNAUTHORIZED,
        },
        code: refusal.code(),
        message: refusal.to_string(),
    };
    let mut response = refuse_unread(request, error).await;
    if !wrong_scope {
        response.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

/// The most of a refused request's body read before answering, and how long for.
const REFUSED_BODY_BYTES: usize = 64 << 10;
const REFUSED_BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Answers `error` to a request refused before its body was read (a foreign Host, another
/// origin, no token): reads at most a small prefix of the body, briefly, so the answer is
/// not lost to a reset connection in the common case, without letting whoever sent it
/// make the server buffer a large body; then closes the connection.
pub(crate) async fn refuse_unread(
    request: axum::extract::Request,
    error: ApiError,
) -> axum::response::Response {
    let body = request.into_body();
    let _ = tokio::time::timeout(
        REFUSED_BODY_WAIT,
        axum::body::to_bytes(body, REFUSED_BODY_BYTES),
    )
    .await;
    let mut response = error.into_response();
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

/// Runs a store call on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|error| ApiError::internal(format!("the request's task failed: {error}")))?
}

async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT: shutting down"),
        () = terminate => tracing::info!("SIGTERM: shutting down"),
    }
}
