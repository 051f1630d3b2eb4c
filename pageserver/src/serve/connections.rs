//! Accepting and serving connections: each HTTP/1.1 connection is served by hyper with a
//! header read timeout, so a client that sends half a header (or sits idle between
//! requests) is dropped instead of held forever. On shutdown the listener closes, every
//! connection is told to finish the request it is on, and those still open after the
//! grace period are dropped, so one stalled client can never keep the stores from being
//! checkpointed and closed. (The body read timeout is `read_body_first`'s, in `mod.rs`.)

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// How long the server waits for clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// From the moment a connection waits for a request's header until all of it arrived.
    pub(crate) header: Duration,
    /// From the header until the whole body arrived.
    pub(crate) body: Duration,
    /// From the shutdown signal until connections still open are dropped.
    pub(crate) shutdown_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            header: Duration::from_secs(10),
            body: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `router` on every connection `listener` accepts until `shutdown` completes,
/// then gives open connections `timeouts.shutdown_grace` to finish.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Reap the connections that ended, so the set holds only open ones.
        while connections.try_join_next().is_some() {}
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors, say: wait a little rather than spin.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let service = TowerToHyperService::new(router.clone());
                let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                connections.spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    match tokio::time::timeout(timeouts.shutdown_grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!("shut down: no more requests in flight"),
        Err(_) => tracing::warn!(
            grace = ?timeouts.shutdown_grace,
            open = connections.len(),
            "shutdown grace period over: dropping the connections still open"
        ),
    }
    // Dropped now, not left to run on while the stores are closed: a request whose body
    // arrives later is never served. (A store call already on the blocking pool finishes;
    // the stores are thread-safe and its commit is in the log.)
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}
