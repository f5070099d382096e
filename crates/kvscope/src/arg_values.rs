//! Value parsers for command-line numbers that must be positive and
//! finite, written once for every command that takes them.

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
