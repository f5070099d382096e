//! A target's report as its templates (`templates/target_report.{zh,en}
//! .md.j2`) read it: every figure formatted once, here, and every column
//! tagged by its source — client-measured, `engine metric NAME` (the name
//! a scrape held), KV events, or estimated. What the engine did not expose
//! arrives as "—", never as a zero. The capacity table is the lab's own
//! ([`CapacityTable`], rendered by the macro both reports import).

use super::capacity::pool_capacity;
use super::replica_report::ReplicaView;
use super::report_sections::{FailureView, KvEventsView, SweepView};
use super::source_tags::{metric_tag, opt, peak_kv_usage, queue_tag, CLIENT, ESTIMATED};
use super::TargetResults;
use crate::report::CapacityTable;
use kvscope_wire::Quantity;
use serde::Serialize;

#[derive(Serialize)]
pub struct TargetReportModel {
    pub url: String,
    pub engine: Option<EngineView>,
    pub token_exact: bool,
    pub metrics_samples: usize,
    pub wall_seconds: String,
    pub capacity: CapacityTable,
    pub capacity_tags: CapacityTags,
    pub engine_rows: Vec<EngineRow>,
    pub engine_tags: EngineTags,
    /// How KV per request was estimated ("—": it was not).
    pub kv_source: String,
    pub kv_events: Option<KvEventsView>,
    /// The per-replica section (`--replica-metrics`).
    pub replicas: Option<ReplicaView>,
    pub sweeps: Vec<SweepView>,
    pub failure: Option<FailureView>,
    /// `None`: the family is unknown (no metrics page read), so every
    /// engine metric is missing.
    pub not_exposed: Option<Vec<NotExposedLine>>,
    pub kv_events_subscribed: bool,
    pub problems: Vec<String>,
    pub metrics_failed: Option<String>,
}

#[derive(Serialize)]
pub struct EngineView {
    pub name: String,
    pub version: Option<String>,
    pub family: String,
    /// `--engine` named the family (else it was detected).
    pub forced: bool,
    pub model: Option<String>,
}

/// The source of each column of the shared capacity table.
#[derive(Serialize)]
pub struct CapacityTags {
    pub prompt_len: String,
    pub concurrency: String,
    pub live_requests: String,
    pub estimated_kv: String,
    pub ttft: String,
    pub queue_wait: String,
}

/// What the capacity table has no column for: per case, the engine's
/// counters and gauges and the client's other timings.
#[derive(Serialize)]
pub struct EngineRow {
    pub case: String,
    pub requests: usize,
    pub failed: usize,
    pub output_tokens: usize,
    pub kv_usage_peak: String,
    pub itl_p50_ms: String,
    pub e2e_p50: String,
    pub preemptions: String,
    pub prefix_hits: String,
    pub prefix_queries: String,
    pub pool_requests: String,
    /// With `--replica-metrics`: each replica's live requests (mean / max),
    /// peak KV usage and realized prefix-hit tokens in this case, as
    /// `rI a / b, c %, d` joined by "; " ("—" where a replica was not read).
    pub per_replica: Option<String>,
}

#[derive(Serialize)]
pub struct EngineTags {
    pub kv_usage: String,
    pub preemptions: String,
    pub prefix_hits: String,
    pub pool: String,
}

/// A quantity no scrape held; `listed_as`: the name the family's table
/// gives it (this build of the engine does not export it).
#[derive(Serialize)]
pub struct NotExposedLine {
    pub quantity: String,
    pub listed_as: Option<String>,
}

fn pool_tag(res: &TargetResults) -> String {
    let cite = |q| res.exposed.metric(q);
    match (cite(Quantity::TotalBlocks), cite(Quantity::BlockSize), cite(Quantity::PoolTokens)) {
        (Some(blocks), Some(bs), _) => format!("engine metric {blocks} × {bs} / {ESTIMATED} tokens per request"),
        (_, _, Some(tokens)) => format!("engine metric {tokens} / {ESTIMATED} tokens per request"),
        _ => "not exposed".into(),
    }
}

impl TargetReportModel {
    pub fn new(res: &TargetResults) -> TargetReportModel {
        TargetReportModel {
            url: res.url.clone(),
            engine: res.engine.as_ref().map(|e| EngineView {
                name: e.name.clone(),
                version: e.version.clone(),
                family: e.family.to_string(),
                forced: e.family_source.starts_with("forced"),
                model: e.model.clone(),
            }),
            token_exact: res.token_exact,
            metrics_samples: res.metrics_samples,
            wall_seconds: format!("{:.1}", res.wall_seconds),
            capacity: CapacityTable::measured(&res.capacity, &res.capacity_known, |i, zh| {
                super::capacity::explanation(&res.cases[i], zh)
            }),
            capacity_tags: capacity_tags(res),
            engine_rows: engine_rows(res),
            engine_tags: EngineTags {
                kv_usage: metric_tag(res, Quantity::KvUsage),
                preemptions: metric_tag(res, Quantity::Preemptions),
                prefix_hits: metric_tag(res, Quantity::PrefixHits),
                pool: pool_tag(res),
            },
            kv_source: res.kv_estimate.as_ref().map_or("—".to_string(), |k| format!("{ESTIMATED}: {}", k.from)),
            kv_events: KvEventsView::new(res),
            replicas: res.replicas.as_ref().map(ReplicaView::new),
            sweeps: res.load_sweeps.iter().map(|s| SweepView::new(s, res)).collect(),
            failure: res.failure.as_ref().map(|f| FailureView::new(f, res)),
            not_exposed: not_exposed(res),
            kv_events_subscribed: res.kv_events.is_some(),
            problems: res.problems.clone(),
            metrics_failed: res
                .metrics_last_error
                .as_ref()
                .map(|e| format!("/metrics: {} failed scrapes (last: {e})", res.metrics_failed)),
        }
    }
}

fn capacity_tags(res: &TargetResults) -> CapacityTags {
    CapacityTags {
        prompt_len: if res.token_exact {
            "engine usage.prompt_tokens; token-exact: the client sent these ids".into()
        } else {
            "engine usage.prompt_tokens".into()
        },
        concurrency: format!("{CLIENT}: requests sent"),
        live_requests: metric_tag(res, Quantity::RunningRequests),
        estimated_kv: ESTIMATED.into(),
        ttft: CLIENT.into(),
        queue_wait: queue_tag(res),
    }
}

fn engine_rows(res: &TargetResults) -> Vec<EngineRow> {
    res.cases
        .iter()
        .map(|case| EngineRow {
            case: case.case.clone(),
            requests: case.requests,
            failed: case.failed,
            output_tokens: case.output_tokens.iter().sum(),
            kv_usage_peak: peak_kv_usage(case),
            itl_p50_ms: format!("{:.1}", case.itl.p50 * 1000.0),
            e2e_p50: format!("{:.3}", case.e2e.p50),
            preemptions: opt(case.delta(Quantity::Preemptions), 0),
            prefix_hits: opt(case.delta(Quantity::PrefixHits), 0),
            prefix_queries: opt(case.delta(Quantity::PrefixQueries), 0),
            pool_requests: opt(res.engine.as_ref().and_then(|e| pool_capacity(case, e)), 1),
            per_replica: res.replicas.as_ref().map(|r| per_replica(r, &case.case)),
        })
        .collect()
}

/// The case's live requests, KV usage and realized hits on each replica.
fn per_replica(res: &super::replicas::ReplicaResults, case: &str) -> String {
    let one = |r: &super::replica_case::ReplicaCase| {
        let live = r.running.map_or("—".into(), |s| format!("{:.1} / {:.0}", s.mean, s.max));
        let kv = r.kv_usage.map_or("—".into(), |s| format!("{:.1} %", s.max * 100.0));
        format!("r{} {live}, {kv}, {}", r.replica, opt(r.delta(Quantity::PrefixHits), 0))
    };
    res.cases.iter().filter(|r| r.case == case).map(one).collect::<Vec<_>>().join("; ")
}

/// Whether the report lists `q` when no scrape held it: every quantity
/// but the token counters, whose totals the client reads from each
/// response's usage instead.
fn listed(q: Quantity) -> bool {
    !matches!(q, Quantity::PromptTokens | Quantity::GenerationTokens)
}

/// Every listed quantity no scrape held (not what the family's table
/// lacks: a build may omit a name its table lists).
fn not_exposed(res: &TargetResults) -> Option<Vec<NotExposedLine>> {
    let name = res.engine.as_ref()?.family;
    let family = kvscope_wire::EngineFamily::ALL.into_iter().find(|f| f.name() == name)?;
    let missing = Quantity::ALL.into_iter().filter(|&q| listed(q) && res.exposed.metric(q).is_none());
    Some(
        missing
            .map(|q| NotExposedLine {
                quantity: format!("{q:?}"),
                listed_as: kvscope_wire::metric_family::source(family, q).map(|s| s.metric_name().to_string()),
            })
            .collect(),
    )
}
