//! The capacity table as `kvscope lab` and `kvscope sim` print it.

use kvscope_experiment::{CapacityRow, Dist};

/// "p50 / p99", or "p50 / max (n=5)" below 20 values, where a p99 is the
/// maximum under another name (`dist::P99_MIN_VALUES`).
fn p50_tail(d: &Dist) -> String {
    if d.p99_is_meaningful() {
        format!("{:.3} / {:.3}", d.p50, d.p99)
    } else {
        format!("{:.3} / max {:.3} (n={})", d.p50, d.max, d.n)
    }
}

/// One line per case; `simulated` labels the times.
pub fn print(rows: &[CapacityRow], simulated: bool) {
    let unit = if simulated { "simulated s" } else { "s" };
    println!(
        "{:<10} {:>10} {:>8} {:>14} {:>12} {:>28} {:>28}  binding",
        "case",
        "prompt_len",
        "requests",
        "live mean/max",
        "KV/request",
        format!("TTFT p50/p99|max ({unit})"),
        format!("queue p50/p99|max ({unit})"),
    );
    for r in rows {
        println!(
            "{:<10} {:>10.0} {:>8} {:>8.2}/{:<5} {:>8.1} MiB {:>28} {:>28}  {}",
            r.case,
            r.prompt_len,
            r.concurrency,
            r.live_requests,
            r.live_requests_max,
            r.estimated_kv / f64::from(1 << 20),
            p50_tail(&r.ttft),
            p50_tail(&r.queue_wait),
            r.binding_constraint().map_or("none", |b| b.as_str())
        );
    }
}
