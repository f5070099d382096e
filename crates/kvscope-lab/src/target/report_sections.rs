//! The sections of a target's report beyond its tables: the KV events'
//! block statistics, each load sweep, the failure conditions; formatted
//! and tagged by source as the tables are (source_tags.rs).

use super::load_sweep::LoadSweepResult;
use super::source_tags::{metric_tag, opt, peak_kv_usage, queue_tag, CLIENT};
use super::TargetResults;
use crate::failure::{Condition, FailureResults, Source};
use crate::failure_report::FailureSection;
use kvscope_wire::Quantity;
use serde::Serialize;

#[derive(Serialize)]
pub struct KvEventsView {
    pub endpoint: String,
    pub batches: u64,
    pub stored: u64,
    pub removed: u64,
    pub cleared: u64,
    pub block_size: String,
    pub missed: u64,
    pub malformed: u64,
    pub rows: Vec<BlockRow>,
    /// The blocks' lifecycle diagram (kv_lifecycle.mmd).
    pub mermaid: Option<String>,
}

#[derive(Serialize)]
pub struct BlockRow {
    pub case: String,
    pub stored: usize,
    pub removed: usize,
    pub peak_cached: i64,
    pub requests_bound: usize,
    pub requests: usize,
    pub blocks_bound: usize,
    pub shared_blocks: usize,
    pub lifetime_p50: String,
}

impl KvEventsView {
    /// `None`: no KV events were subscribed.
    pub fn new(res: &TargetResults) -> Option<KvEventsView> {
        let k = res.kv_events.as_ref()?;
        let rows = res
            .cases
            .iter()
            .zip(&res.case_blocks)
            .filter_map(|(case, blocks)| {
                let b = blocks.as_ref()?;
                Some(BlockRow {
                    case: case.case.clone(),
                    stored: b.stored,
                    removed: b.removed,
                    peak_cached: b.peak_cached,
                    requests_bound: b.requests_bound,
                    requests: case.requests,
                    blocks_bound: b.blocks_bound,
                    shared_blocks: b.shared_blocks,
                    lifetime_p50: if b.lifetime_s.n == 0 { "—".into() } else { format!("{:.3}", b.lifetime_s.p50) },
                })
            })
            .collect();
        Some(KvEventsView {
            endpoint: k.endpoint.clone(),
            batches: k.batches,
            stored: k.stored,
            removed: k.removed,
            cleared: k.cleared,
            block_size: k.block_size.map_or("?".into(), |b| b.to_string()),
            missed: k.missed,
            malformed: k.malformed,
            rows,
            mermaid: super::block_lifecycle::mermaid(res),
        })
    }
}

/// One `--sweep` on the target: a line per value and case.
#[derive(Serialize)]
pub struct SweepView {
    pub knob: &'static str,
    pub queue_wait_tag: String,
    pub kv_usage_tag: String,
    pub preemptions_tag: String,
    pub client_tag: &'static str,
    pub rows: Vec<SweepRow>,
}

#[derive(Serialize)]
pub struct SweepRow {
    pub value: String,
    pub case: String,
    pub failed: usize,
    pub ttft: [String; 2],
    pub queue_wait: [String; 2],
    pub e2e_p50: String,
    /// Output tokens per second over the case, at the client.
    pub throughput: String,
    pub kv_usage_peak: String,
    pub preemptions: String,
}

impl SweepView {
    pub fn new(sweep: &LoadSweepResult, res: &TargetResults) -> SweepView {
        let mut rows = Vec::new();
        for point in &sweep.points {
            for (case, wait) in point.cases.iter().zip(&point.queue_wait) {
                let seconds = (case.to - case.from).max(1e-9);
                let known_wait = wait.n > 0;
                let show_wait = |x: f64| if known_wait { format!("{x:.3}") } else { "—".into() };
                rows.push(SweepRow {
                    value: point.label.clone(),
                    case: case.case.clone(),
                    failed: case.failed,
                    ttft: [format!("{:.3}", case.ttft.p50), format!("{:.3}", case.ttft.p90)],
                    queue_wait: [show_wait(wait.p50), show_wait(wait.p90)],
                    e2e_p50: format!("{:.3}", case.e2e.p50),
                    throughput: format!("{:.1}", case.output_tokens.iter().sum::<usize>() as f64 / seconds),
                    kv_usage_peak: peak_kv_usage(case),
                    preemptions: opt(case.delta(Quantity::Preemptions), 0),
                });
            }
        }
        SweepView {
            knob: sweep.knob.name(),
            queue_wait_tag: queue_tag(res),
            kv_usage_tag: metric_tag(res, Quantity::KvUsage),
            preemptions_tag: metric_tag(res, Quantity::Preemptions),
            client_tag: CLIENT,
            rows,
        }
    }
}

/// The failure conditions on a target: the lab's section, each threshold
/// with the measurement that showed it.
#[derive(Serialize)]
pub struct FailureView {
    pub section: FailureSection,
    /// Some condition was reached within the budget.
    pub reached: bool,
    pub runs: usize,
}

impl FailureView {
    pub fn new(f: &FailureResults, res: &TargetResults) -> FailureView {
        let mut section = FailureSection::new(f);
        for (line, point) in section.rows.iter_mut().zip(&f.points) {
            for (cell, c) in line.thresholds.iter_mut().zip(Condition::ALL) {
                let t = point.threshold(c);
                let Some(run) = t.load.and_then(|x| point.runs.iter().find(|r| r.load == x)) else { continue };
                cell.evidence = match c {
                    Condition::SloTtft => {
                        Some(format!("TTFT p90 {:.3} s > {} s [{CLIENT}]", run.ttft_p90, f.plan.slo_ttft))
                    }
                    Condition::Preemption => {
                        Some(format!("{} preempted [{}]", run.preemptions, metric_tag(res, Quantity::Preemptions)))
                    }
                    Condition::AdmissionStall => None,
                };
            }
        }
        let reached = f.points.iter().any(|p| {
            Condition::ALL.iter().any(|&c| {
                let t = p.threshold(c);
                t.load.is_some() && matches!(t.source, Source::Real | Source::RealUpperBound)
            })
        });
        FailureView { section, reached, runs: f.primary_runs }
    }
}
