//! Errors as OpenAI shapes them: a status and
//! `{"error": {"message", "type", "param", "code"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
}

impl ApiError {
    pub fn bad_request(message: &str, param: Option<&str>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.to_string(),
            kind: "invalid_request_error",
            param: param.map(str::to_string),
        }
    }
    pub fn overloaded(message: String) -> Self {
        ApiError { status: StatusCode::SERVICE_UNAVAILABLE, message, kind: "server_overloaded", param: None }
    }
    pub fn internal(message: String) -> Self {
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, message, kind: "server_error", param: None }
    }
    pub fn not_found(message: String) -> Self {
        ApiError { status: StatusCode::NOT_FOUND, message, kind: "not_found_error", param: None }
    }
    pub fn payload_too_large(message: String) -> Self {
        ApiError { status: StatusCode::PAYLOAD_TOO_LARGE, message, kind: "invalid_request_error", param: None }
    }
    pub fn timeout(message: String) -> Self {
        ApiError { status: StatusCode::REQUEST_TIMEOUT, message, kind: "timeout_error", param: None }
    }
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.status.as_u16()}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Every refusal is one log line: 4xx at info, overload and 5xx at warn.
        let (status, kind, message) = (self.status.as_u16(), self.kind, &self.message);
        if self.status.is_server_error() {
            tracing::warn!(status, kind, %message, "request refused");
        } else {
            tracing::info!(status, kind, %message, "request refused");
        }
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// Gives the errors that the router and the extractors produce themselves
/// (404 no such route, 405 wrong method, 413 body too large, 408 body too
/// slow, ...) the OpenAI shape every client parses.
pub async fn openai_shaped(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (kind, message) = match status {
        StatusCode::NOT_FOUND => ("not_found_error", "no such endpoint: see /v1/models, /v1/completions, /v1/chat/completions, /health, /ready, /metrics, /kv, /events".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => ("invalid_request_error", "this endpoint does not take that HTTP method (the /v1 generation endpoints take POST)".to_string()),
        StatusCode::PAYLOAD_TOO_LARGE => ("invalid_request_error", "the request body is larger than this server accepts (--max-body-bytes)".to_string()),
        StatusCode::REQUEST_TIMEOUT => ("timeout_error", "the request body did not arrive within --body-timeout-s".to_string()),
        _ => ("invalid_request_error", status.canonical_reason().unwrap_or("error").to_string()),
    };
    ApiError { status, message, kind, param: None }.into_response()
}
