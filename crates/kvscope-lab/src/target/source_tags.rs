//! How a target's report tags each figure with its source
//! (client-measured, `engine metric NAME` as a scrape held it, estimated)
//! and writes a figure the engine may not have exposed: "—", never 0.
//! Read by the report's tables (report_model.rs) and its other sections
//! (report_sections.rs) alike.

use super::TargetResults;
use kvscope_wire::Quantity;

pub const CLIENT: &str = "client-measured";
pub const ESTIMATED: &str = "estimated";
/// The queue-wait fallback where the engine has no queue-time metric.
pub const QUEUE_FALLBACK: &str = "estimated: TTFT − the case's TTFT at concurrency 1";

/// `engine metric NAME` (the name a scrape held), or `not exposed`.
pub fn metric_tag(res: &TargetResults, q: Quantity) -> String {
    match res.exposed.metric(q) {
        Some(name) => format!("engine metric {name}"),
        None => "not exposed".into(),
    }
}

/// The queue wait's source: the engine's histogram, else the fallback.
pub fn queue_tag(res: &TargetResults) -> String {
    match res.exposed.metric(Quantity::QueueTime) {
        Some(_) => metric_tag(res, Quantity::QueueTime),
        None => QUEUE_FALLBACK.into(),
    }
}

/// A figure the engine may not have exposed: "—" when it did not.
pub fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("—".to_string(), |v| format!("{v:.digits$}"))
}

/// The KV usage gauge's peak over a case, in percent.
pub fn peak_kv_usage(case: &super::case::CaseResult) -> String {
    case.kv_usage.map_or("—".into(), |s| format!("{:.1} %", s.max * 100.0))
}
