//! The per-replica part of a target's report (`--replica-metrics`):
//! `replicas.csv` (one row per case and replica, every column named with
//! the metric it was read from) and the report's per-replica table (its
//! view; the target's templates render it). A
//! replica that could not be read is a named gap, its cells blank.

use super::replica_case::ReplicaCase;
use super::replicas::ReplicaResults;
use kvscope_wire::metric_family::source;
use kvscope_wire::{EngineFamily, Quantity};
use serde::Serialize;
use std::fmt::Write;

/// The columns after `case,replica,url,family`: a header stem, what it
/// reads, and how a row's value is taken from the case.
const COLUMNS: [(&str, Quantity, Pick); 10] = [
    ("live_requests_mean", Quantity::RunningRequests, Pick::Mean),
    ("live_requests_max", Quantity::RunningRequests, Pick::Max),
    ("waiting_max", Quantity::WaitingRequests, Pick::Max),
    ("kv_usage_peak", Quantity::KvUsage, Pick::Max),
    ("cached_blocks_max", Quantity::CachedBlocks, Pick::Max),
    ("prefix_queries_tokens", Quantity::PrefixQueries, Pick::Delta),
    ("prefix_hits_tokens", Quantity::PrefixHits, Pick::Delta),
    ("prompt_tokens", Quantity::PromptTokens, Pick::Delta),
    ("evicted_blocks", Quantity::Evictions, Pick::Delta),
    ("preemptions", Quantity::Preemptions, Pick::Delta),
];

#[derive(Clone, Copy)]
enum Pick {
    Mean,
    Max,
    Delta,
}

fn value(case: &ReplicaCase, q: Quantity, pick: Pick) -> Option<f64> {
    let gauge = match q {
        Quantity::RunningRequests => case.running,
        Quantity::WaitingRequests => case.waiting,
        Quantity::KvUsage => case.kv_usage,
        Quantity::CachedBlocks => case.cached_blocks,
        _ => None,
    };
    match pick {
        Pick::Mean => gauge.map(|s| s.mean),
        Pick::Max => gauge.map(|s| s.max),
        Pick::Delta => case.delta(q),
    }
}

/// The family the header cites: the first replica that was read.
fn header_family(res: &ReplicaResults) -> Option<EngineFamily> {
    let name = res.replicas.iter().find_map(|r| r.family)?;
    EngineFamily::ALL.into_iter().find(|f| f.name() == name)
}

/// `metric NAME`, or `not exposed`, for `q` in `family`.
pub fn tag(family: Option<EngineFamily>, q: Quantity) -> String {
    match family.and_then(|f| source(f, q)) {
        Some(s) => s.metric_name().to_string(),
        None => "not exposed".into(),
    }
}

pub fn csv(res: &ReplicaResults) -> String {
    let family = header_family(res);
    let mut out = String::from("case,replica,url,family");
    for (stem, q, _) in COLUMNS {
        let _ = write!(out, ",{stem} [{}]", tag(family, q));
    }
    out.push('\n');
    for case in &res.cases {
        let _ = write!(out, "{},{},{},{}", case.case, case.replica, case.url, case.family.unwrap_or(""));
        for (_, q, pick) in COLUMNS {
            let _ = write!(out, ",{}", value(case, q, pick).map_or(String::new(), |v| format!("{v}")));
        }
        out.push('\n');
    }
    out
}

/// The report's per-replica section as the target's templates read it
/// (`target_report.{zh,en}.md.j2`): every cell formatted here, "—" where
/// the replica was not read.
#[derive(Debug, Serialize)]
pub struct ReplicaView {
    /// Each column after `case | replica`: its stem and its source tag.
    pub columns: Vec<String>,
    pub rows: Vec<ReplicaRow>,
    /// Distinct blocks stored on two replicas or more (KV events).
    pub blocks_on_several: Option<usize>,
    /// `replica I (URL): why`, for each replica that could not be read.
    pub gaps: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ReplicaRow {
    pub case: String,
    pub replica: String,
    pub cells: Vec<String>,
}

impl ReplicaView {
    pub fn new(res: &ReplicaResults) -> ReplicaView {
        let family = header_family(res);
        ReplicaView {
            columns: COLUMNS.iter().map(|(stem, q, _)| format!("{stem} [{}]", tag(family, *q))).collect(),
            rows: res
                .cases
                .iter()
                .map(|case| ReplicaRow {
                    case: case.case.clone(),
                    replica: format!("{} ({})", case.replica, case.url),
                    cells: COLUMNS.iter().map(|(stem, q, pick)| cell(value(case, *q, *pick), stem)).collect(),
                })
                .collect(),
            blocks_on_several: res.blocks_on_several,
            gaps: res
                .replicas
                .iter()
                .filter_map(|r| Some(format!("replica {} ({}): {}", r.index, r.url, r.gap.as_deref()?)))
                .collect(),
        }
    }
}

fn cell(v: Option<f64>, stem: &str) -> String {
    match (v, stem) {
        (None, _) => "—".to_string(),
        (Some(v), "kv_usage_peak") => format!("{:.1} %", v * 100.0),
        (Some(v), "live_requests_mean") => format!("{v:.1}"),
        (Some(v), _) => format!("{v:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::replicas::ReplicaInfo;

    fn info(index: usize, gap: Option<&str>) -> ReplicaInfo {
        ReplicaInfo {
            index,
            url: format!("http://r{index}"),
            family: gap.is_none().then_some("kvscope"),
            gap: gap.map(str::to_string),
            kv_events: None,
            metrics_samples: 0,
            metrics_failed: 0,
            metrics_last_error: None,
        }
    }

    #[test]
    fn a_down_replica_is_a_named_gap_with_blank_cells() {
        let case = |replica: usize, hits: Option<f64>| ReplicaCase {
            case: "c".into(),
            replica,
            url: format!("http://r{replica}"),
            family: hits.map(|_| "kvscope"),
            running: None,
            waiting: None,
            kv_usage: None,
            cached_blocks: None,
            deltas: hits.map(|h| vec![(Quantity::PrefixHits, h)]).unwrap_or_default(),
            deltas_end_at_last_poll: None,
            queue_time: None,
            blocks: None,
        };
        let res = ReplicaResults {
            replicas: vec![info(0, None), info(1, Some("http://r1/metrics does not answer"))],
            cases: vec![case(0, Some(64.0)), case(1, None)],
            blocks_on_several: None,
            samples: vec![Vec::new(), Vec::new()],
        };
        let csv = csv(&res);
        assert!(csv.lines().next().unwrap().contains("prefix_hits_tokens [kvscope:prefix_cache_hits_total]"));
        assert!(csv.contains("c,0,http://r0,kvscope,,,,,,,64,"), "{csv}");
        assert!(csv.contains("c,1,http://r1,,,,,,,,,,,\n"), "{csv}");
        let view = ReplicaView::new(&res);
        assert_eq!(view.gaps, ["replica 1 (http://r1): http://r1/metrics does not answer"]);
        let hits = view.columns.iter().position(|c| c.starts_with("prefix_hits_tokens")).unwrap();
        assert_eq!((view.rows[0].cells[hits].as_str(), view.rows[1].cells[hits].as_str()), ("64", "—"));
    }
}
