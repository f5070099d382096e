//! The highest request rate that still meets a latency SLO, by bisection.

/// Bisects the request rate in `[lo, hi]` (requests per second) for the
/// largest rate whose measured latency (typically p99 TTFT, in seconds,
/// returned by `run`) is at most `slo`, to within `tolerance` (relative to
/// `hi`) or 30 halvings.
///
/// Assumes latency is non-decreasing in the rate, which holds for an
/// open-loop arrival process on one engine up to noise; with a seeded
/// simulator the noise is the arrival sample, so use the same seed at every
/// rate. Returns `None` when even `lo` misses the SLO, and `hi` when `hi`
/// meets it.
pub fn find_max_rate(run: impl Fn(f64) -> f64, slo: f64, lo: f64, hi: f64, tolerance: f64) -> Option<f64> {
    if run(lo) > slo {
        return None;
    }
    if run(hi) <= slo {
        return Some(hi);
    }
    let (mut good, mut bad) = (lo, hi);
    for _ in 0..30 {
        if bad - good <= tolerance * hi {
            break;
        }
        let mid = 0.5 * (good + bad);
        if run(mid) <= slo {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Some(good)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_knee_of_a_monotone_latency_curve() {
        // Latency explodes past 40 req/s.
        let run = |rate: f64| if rate <= 40.0 { 0.1 } else { 10.0 };
        let r = find_max_rate(run, 1.0, 1.0, 100.0, 1e-3).unwrap();
        assert!((r - 40.0).abs() < 0.2, "{r}");
        assert_eq!(find_max_rate(run, 0.01, 1.0, 100.0, 1e-3), None);
        assert_eq!(find_max_rate(run, 100.0, 1.0, 100.0, 1e-3), Some(100.0));
    }
}
