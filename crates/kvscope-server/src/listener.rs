//! Accepting connections: HTTP/1.1 with a header-read timeout (which also
//! closes idle keep-alive connections), and a graceful shutdown that stops
//! accepting, lets open responses finish for a grace period, then drops the
//! rest — dropping a response aborts its request in the engine, which
//! releases its KV blocks.
//!
//! `axum::serve` offers neither timeout, hence this small loop over hyper.

use crate::head_refusal::JsonHeadRefusal;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Where the HTTP layer stops reading a head (a limit among the others).
pub use crate::limits::HARD_MAX_HEADER_BYTES;

pub struct ListenConfig {
    pub header_timeout: Duration,
    pub shutdown_grace: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, app: Router, config: ListenConfig, shutdown: impl Future<Output = ()>) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(config.header_timeout).max_header_size(HARD_MAX_HEADER_BYTES);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors, say: wait a little instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let service = TowerToHyperService::new(app.clone());
                let connection = graceful.watch(http.serve_connection(TokioIo::new(JsonHeadRefusal::new(stream)), service));
                connections.spawn(async move {
                    if let Err(e) = connection.await {
                        let why = if e.is_timeout() {
                            "no complete request head within the header timeout (idle or too slow)"
                        } else if e.is_parse_too_large() {
                            "request head too large"
                        } else {
                            "connection error"
                        };
                        tracing::info!(%peer, error = %e, "closed a connection: {why}");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let open = connections.len();
    tracing::info!(
        open_connections = open,
        grace_s = config.shutdown_grace.as_secs_f64(),
        "shutting down: no longer accepting"
    );
    if tokio::time::timeout(config.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            open_connections = connections.len(),
            "shutdown grace over: closing the remaining connections and aborting their requests"
        );
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}
