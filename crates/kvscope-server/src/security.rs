//! Who may talk to the server, checked before any handler runs:
//! - bound to loopback, the `Host` header must name a loopback host, so a
//!   web page on another site cannot reach the server through DNS
//!   rebinding;
//! - with an API key, `/v1/*` and the state endpoints need
//!   `Authorization: Bearer KEY` (vLLM's `--api-key`); `/`, `/health`,
//!   `/ready` and `/metrics` stay open, as in vLLM;
//! - a POST must say `Content-Type: application/json`, so a cross-site HTML
//!   form (which can only send form or plain-text bodies) cannot submit.

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct Guard {
    api_key: Option<Arc<str>>,
    /// Only loopback names are accepted in `Host` (bound to loopback).
    loopback_only: bool,
}

impl Guard {
    pub fn new(api_key: Option<String>, bound: SocketAddr) -> Self {
        Guard { api_key: api_key.map(Into::into), loopback_only: bound.ip().is_loopback() }
    }
}

/// Paths an API key protects.
fn is_protected(path: &str) -> bool {
    path.starts_with("/v1/") || matches!(path, "/kv" | "/events" | "/api/series" | "/flush_cache")
}

/// A POST that carries nothing: the gateway's `POST /flush_cache` sends no
/// body and no `Content-Type`. Such a request submits no content, so the
/// JSON-only rule (against cross-site form posts) has nothing to protect
/// beyond what `--api-key` protects.
fn is_bodiless_flush(request: &Request) -> bool {
    let empty =
        request.headers().get(header::CONTENT_LENGTH).is_none_or(|len| len.to_str().is_ok_and(|l| l.trim() == "0"))
            && request.headers().get(header::TRANSFER_ENCODING).is_none();
    request.uri().path() == "/flush_cache" && empty
}

/// `localhost`, `127.0.0.1`, `[::1]`, ... with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Compares in time independent of where the first difference is.
fn same_secret(given: &[u8], key: &[u8]) -> bool {
    given.len() == key.len() && given.iter().zip(key).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

fn refuse(status: StatusCode, kind: &'static str, message: String) -> Response {
    ApiError { status, message, kind, param: None }.into_response()
}

pub async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let head_bytes = request.uri().to_string().len()
        + headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum::<usize>();
    if head_bytes > crate::limits::MAX_HEADER_BYTES {
        return refuse(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "invalid_request_error",
            format!(
                "the request's URI and headers take {head_bytes} bytes, more than the {} this server accepts",
                crate::limits::MAX_HEADER_BYTES
            ),
        );
    }
    if guard.loopback_only {
        // HTTP/1.0 clients may send no Host; a browser always does.
        if let Some(host) = headers.get(header::HOST) {
            let host = host.to_str().unwrap_or("");
            if !is_loopback_host(host) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "Host {host:?} is not a loopback name; this server is bound to loopback and answers only localhost, 127.0.0.1 or [::1] (bind to another address with --host to serve other names)"
                    ),
                );
            }
        }
    }
    if let Some(key) = &guard.api_key {
        if is_protected(request.uri().path()) {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if !same_secret(given.trim().as_bytes(), key.as_bytes()) {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "authentication_error",
                    "missing or wrong API key: send the header `Authorization: Bearer <key>` with the key given to --api-key (or KVSCOPE_API_KEY)".into(),
                );
            }
        }
    }
    if request.method() == Method::POST && !is_bodiless_flush(&request) {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request_error",
                "POST bodies must be JSON: send the header `Content-Type: application/json`".into(),
            );
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for ok in ["localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000", "[::1]", "LOCALHOST", "a.localhost:1"]
        {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in ["evil.example", "evil.example:8000", "10.0.0.1:8000", "localhost.evil.example", ""] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
    }
}
