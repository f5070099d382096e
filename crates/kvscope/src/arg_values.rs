//! Value parsers for command-line values — numbers that must be positive
//! and finite, base URLs, KV-event endpoints — written once for every
//! command that takes them.

/// Seconds: finite and above zero.
pub fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("expected a positive number of seconds, got {s:?}")),
    }
}

/// Requests per second: finite and above zero (`sim` takes `inf` through
/// its own parser).
pub fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("expected a positive number of requests per second, got {s:?}")),
    }
}

/// A server's base URL: `http://HOST[:PORT]` or `https://…`, no `/v1`
/// needed.
pub fn base_url(s: &str) -> Result<String, String> {
    let host = s.strip_prefix("http://").or_else(|| s.strip_prefix("https://"));
    match host {
        Some(h) if !h.is_empty() && !h.starts_with('/') => Ok(s.to_string()),
        _ => Err(format!("expected a base URL http://HOST:PORT, got {s:?}")),
    }
}

/// A ZMQ KV-event endpoint, `tcp://HOST:PORT` (kvscope-wire's rule).
pub fn kv_events_endpoint(s: &str) -> Result<String, String> {
    kvscope_wire::check_tcp_endpoint(s).map(|()| s.to_string())
}
