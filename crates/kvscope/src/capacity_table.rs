//! The capacity table as `kvscope lab` and `kvscope sim` print it.

use kvscope_experiment::CapacityRow;

/// One line per case; `simulated` labels the times.
pub fn print(rows: &[CapacityRow], simulated: bool) {
    let unit = if simulated { "simulated s" } else { "s" };
    println!(
        "{:<10} {:>10} {:>8} {:>14} {:>12} {:>22} {:>22}  binding",
        "case",
        "prompt_len",
        "requests",
        "live mean/max",
        "KV/request",
        format!("TTFT p50/p99 ({unit})"),
        format!("queue p50/p99 ({unit})"),
    );
    for r in rows {
        println!(
            "{:<10} {:>10.0} {:>8} {:>8.2}/{:<5} {:>8.1} MiB {:>22} {:>22}  {}",
            r.case,
            r.prompt_len,
            r.concurrency,
            r.live_requests,
            r.live_requests_max,
            r.estimated_kv / f64::from(1 << 20),
            format!("{:.3} / {:.3}", r.ttft.p50, r.ttft.p99),
            format!("{:.3} / {:.3}", r.queue_wait.p50, r.queue_wait.p99),
            r.binding_constraint().map_or("none", |b| b.as_str())
        );
    }
}
