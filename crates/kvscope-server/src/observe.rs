//! The observability endpoints: `/health`, `/metrics`, `/kv`, `/events`,
//! `/api/series`, and the web view at `/`.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::convert::Infallible;
use tokio::sync::broadcast::error::RecvError;

const INDEX_HTML: &str = include_str!("../web/index.html");

pub async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

/// vLLM's `GET /version`: the server's version, so a client (the lab's
/// `--target` report among them) can name what it measured.
pub async fn version() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }))
}

/// Liveness: answered from an atomic flag, never waiting for an engine step.
pub async fn health(State(state): State<AppState>) -> Response {
    if state.engine.status().alive() {
        StatusCode::OK.into_response()
    } else {
        ApiError::internal("the engine thread has stopped".into()).into_response()
    }
}

/// Readiness: 200 while the engine thread runs, makes progress (with work
/// queued, an iteration of its loop ended within
/// `Limits::engine_stall_after`) and its waiting queue has room (a request
/// sent now would be queued, not refused with 503); 503 otherwise. Also
/// answered without waiting for a step.
pub async fn ready(State(state): State<AppState>) -> Response {
    let status = state.engine.status();
    let (alive, waiting, running) = (status.alive(), status.waiting(), status.running());
    let busy_for = status.busy_for();
    let stalled = busy_for.is_some_and(|s| s > state.limits.engine_stall_after.as_secs_f64());
    let ready = alive && !stalled && waiting < state.max_waiting;
    let engine = match (alive, stalled) {
        (false, _) => "stopped",
        (true, true) => "stalled",
        (true, false) => "running",
    };
    let body = Json(json!({
        "ready": ready,
        "engine": engine,
        "waiting": waiting,
        "running": running,
        "max_waiting": state.max_waiting,
        "seconds_since_engine_progress": busy_for,
    }));
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, body).into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::not_found(
        "no such endpoint: see /v1/models, /v1/completions, /v1/chat/completions, /health, /ready, /metrics, /kv, /events".into(),
    )
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
}

pub async fn kv(State(state): State<AppState>) -> Result<Response, ApiError> {
    match state.engine.snapshot().await {
        Some(snapshot) => Ok(Json(snapshot).into_response()),
        None => Err(ApiError::internal("the engine thread has stopped".into())),
    }
}

pub async fn series(State(state): State<AppState>) -> Response {
    let series = state.series.lock().unwrap_or_else(|e| e.into_inner());
    Json(&*series).into_response()
}

/// Every KV event from now on, one SSE `data:` line each, in the
/// `events.jsonl` schema. A client too slow to keep up is told how many
/// events it missed (`event: lagged`).
pub async fn events(State(state): State<AppState>) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let rx = state.events.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(line) => Some((Ok(Event::default().data(&*line)), rx)),
            Err(RecvError::Lagged(n)) => Some((Ok(Event::default().event("lagged").data(n.to_string())), rx)),
            Err(RecvError::Closed) => None,
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
