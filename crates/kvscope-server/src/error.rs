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
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.status.as_u16()}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}
