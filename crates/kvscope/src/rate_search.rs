//! `kvscope sim --find-max-rate`'s search, for one engine and for a fleet:
//! each probed rate's outcome logged the same way, and the same bounds.

use kvscope_sim::find_max_rate;

/// What one simulated run at a probed rate gave.
pub enum Probe {
    /// Every request ran: the p99 TTFT (seconds).
    P99(f64),
    /// The run stopped once the p99 could no longer meet the objective.
    StoppedEarly(String),
    /// This many requests could never run (larger than the pool).
    Rejected(usize),
    /// The run failed.
    Failed(String),
}

/// Lowest rate searched (requests/s).
const LOWEST_RATE: f64 = 0.01;

/// The highest rate up to `hi` whose p99 TTFT meets `slo` seconds, probing
/// with `run`; `None` (after saying so) when even the lowest rate misses.
pub fn highest_rate(slo: f64, hi: f64, run: impl Fn(f64) -> Probe) -> Option<f64> {
    let p99 = |rate: f64| -> f64 {
        match run(rate) {
            Probe::P99(p) => {
                eprintln!("  rate {rate:.3} req/s: p99 TTFT {p:.4} s (simulated)");
                p
            }
            Probe::StoppedEarly(why) => {
                eprintln!("  rate {rate:.3} req/s: {why}");
                f64::INFINITY
            }
            Probe::Rejected(n) => {
                eprintln!("  rate {rate:.3} req/s: {n} requests rejected");
                f64::INFINITY
            }
            Probe::Failed(e) => {
                eprintln!("  rate {rate:.3} req/s: {e}");
                f64::INFINITY
            }
        }
    };
    let found = find_max_rate(p99, slo, LOWEST_RATE, hi, 0.005);
    if found.is_none() {
        println!("even {LOWEST_RATE} req/s misses p99 TTFT <= {slo} s");
    }
    found
}
