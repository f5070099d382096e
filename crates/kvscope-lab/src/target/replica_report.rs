//! The per-replica part of a target's report (`--replica-metrics`):
//! `replicas.csv` (one row per case and replica, every column named with
//! the metric it was read from) and the report's per-replica table. A
//! replica that could not be read is a named gap, its cells blank.

use super::replica_case::ReplicaCase;
use super::replicas::ReplicaResults;
use crate::lang::Lang;
use kvscope_wire::metric_family::source;
use kvscope_wire::{EngineFamily, Quantity};
use std::fmt::Write;

/// The columns after `case,replica,url,family`: a header stem, what it
/// reads, and how a row's value is taken from the case.
const COLUMNS: [(&str, Quantity, Pick); 9] = [
    ("live_requests_mean", Quantity::RunningRequests, Pick::Mean),
    ("live_requests_max", Quantity::RunningRequests, Pick::Max),
    ("waiting_max", Quantity::WaitingRequests, Pick::Max),
    ("kv_usage_peak", Quantity::KvUsage, Pick::Max),
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

/// The report's per-replica section (markdown), in `lang`.
pub fn markdown(res: &ReplicaResults, lang: Lang) -> String {
    let zh = lang == Lang::Zh;
    let family = header_family(res);
    let mut md = String::new();
    let title = if zh { "每个副本的 KV 状态" } else { "KV state per replica" };
    let _ = writeln!(md, "## {title}\n");
    let note = if zh {
        "负载均衡器后的每个副本各自读取 /metrics（replicas.csv）；计数器为每个用例前后的差。前缀命中是该副本的引擎实际复用的 token（引擎计数器），而非路由器的选择。"
    } else {
        "Each replica behind the load balancer is read on its own /metrics (replicas.csv); counters are differences across each case. Prefix hits are tokens the replica's engine reused (engine counter), not the router's choice."
    };
    let _ = writeln!(md, "{note}\n");
    let _ = write!(md, "| case | replica |");
    for (stem, q, _) in COLUMNS {
        let _ = write!(md, " {stem} [{}] |", tag(family, q));
    }
    let _ = writeln!(md, "\n|{}", "---|".repeat(COLUMNS.len() + 2));
    for case in &res.cases {
        let _ = write!(md, "| {} | {} ({}) |", case.case, case.replica, case.url);
        for (stem, q, pick) in COLUMNS {
            let cell = match (value(case, q, pick), stem) {
                (None, _) => "—".to_string(),
                (Some(v), "kv_usage_peak") => format!("{:.1} %", v * 100.0),
                (Some(v), "live_requests_mean") => format!("{v:.1}"),
                (Some(v), _) => format!("{v:.0}"),
            };
            let _ = write!(md, " {cell} |");
        }
        md.push('\n');
    }
    md.push('\n');
    if let Some(n) = res.blocks_on_several {
        let line = if zh {
            "KV 事件：存于两个及以上副本的不同块"
        } else {
            "KV events: distinct blocks stored on two replicas or more"
        };
        let _ = writeln!(md, "{line}: {n}\n");
    }
    for r in res.replicas.iter().filter(|r| r.gap.is_some()) {
        let gap = if zh { "缺口" } else { "gap" };
        let _ = writeln!(md, "- {gap}: replica {} ({}): {}", r.index, r.url, r.gap.as_deref().unwrap_or(""));
    }
    md
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
        assert!(csv.contains("c,0,http://r0,kvscope,,,,,,64,"), "{csv}");
        assert!(csv.contains("c,1,http://r1,,,,,,,,,,"), "{csv}");
        let md = markdown(&res, Lang::En);
        assert!(md.contains("gap: replica 1 (http://r1): http://r1/metrics does not answer"), "{md}");
    }
}
