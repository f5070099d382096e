//! One routing policy's run of `shared_prefix_chats` through the gateway,
//! read from the target path's results: per replica its live requests, KV
//! usage, realized prefix hits and evictions (engine metrics); for the
//! policy, client-measured TTFT, queue wait from the replicas' queue-time
//! histograms, and the prefill the engines computed.
//!
//! The evidence rule: a hit is realized only when a replica's engine
//! reused the blocks (its prefix-hit counter); the gateway's routing
//! choice alone is never counted as one.

use super::fault::FaultReport;
use crate::target::capacity::histogram_dist;
use crate::target::replica_case::ReplicaCase;
use crate::target::replica_report;
use crate::target::replicas::ReplicaResults;
use crate::target::TargetResults;
use kvscope_experiment::Dist;
use kvscope_wire::{HistogramSample, Quantity};
use serde::Serialize;

/// One replica's figures over the policy's run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplicaFigures {
    pub replica: usize,
    pub url: String,
    pub live_requests_mean: Option<f64>,
    pub live_requests_max: Option<f64>,
    /// Peak share of its KV pool in use, 0 to 1.
    pub kv_usage_peak: Option<f64>,
    /// Most blocks its prefix cache kept for reuse (by no request).
    pub cached_blocks_peak: Option<f64>,
    /// Realized: tokens its engine served from its prefix cache.
    pub prefix_hit_tokens: Option<f64>,
    pub prefix_query_tokens: Option<f64>,
    pub prompt_tokens: Option<f64>,
    pub evicted_blocks: Option<f64>,
    pub preemptions: Option<f64>,
    /// Its counters end at its last answered poll (it died during the run).
    pub counted_until_s: Option<f64>,
    /// Why its figures are blank, when they are.
    pub gap: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PolicyRun {
    pub policy: String,
    pub requests: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    /// Client-measured, queue included.
    pub ttft: Dist,
    /// From the replicas' queue-time histograms (deltas, added together);
    /// `None`: no replica exports one.
    pub queue_wait: Option<Dist>,
    /// Engine counters summed over the replicas.
    pub prompt_tokens: f64,
    pub hit_tokens: f64,
    pub query_tokens: f64,
    /// Prompt tokens the engines computed: prompt tokens − realized hits.
    pub prefill_tokens: f64,
    /// Realized hits / prefix-cache queries.
    pub hit_rate: Option<f64>,
    /// Distinct blocks stored on two replicas or more (KV events).
    pub blocks_on_several: Option<usize>,
    pub replicas: Vec<ReplicaFigures>,
    /// A replica killed during the run (`--kill-replica-after`).
    pub fault: Option<FaultReport>,
    pub problems: Vec<String>,
    pub wall_seconds: f64,
    /// replicas.csv of this run (target/replica_report.rs), written as
    /// `replicas_<policy>.csv`.
    #[serde(skip)]
    pub replicas_csv: String,
    /// Per replica: (seconds since the start, KV usage in %) as polled.
    #[serde(skip)]
    pub kv_usage: Vec<Vec<(f64, f64)>>,
    /// Per replica: (seconds since the start, blocks kept for reuse by no
    /// request: where the prefixes stay) as polled.
    #[serde(skip)]
    pub cached_blocks: Vec<Vec<(f64, f64)>>,
}

impl PolicyRun {
    /// The policy's figures from its target run (one case: the chats).
    pub fn from_target(policy: &str, res: &TargetResults) -> PolicyRun {
        let case = res.cases.first();
        let empty =
            ReplicaResults { replicas: Vec::new(), cases: Vec::new(), blocks_on_several: None, samples: Vec::new() };
        let replicas = res.replicas.as_ref().unwrap_or(&empty);
        let figures: Vec<ReplicaFigures> = replicas
            .replicas
            .iter()
            .map(|r| match replicas.cases.iter().find(|c| c.replica == r.index) {
                Some(case) => ReplicaFigures { gap: r.gap.clone(), ..replica_figures(case) },
                None => {
                    ReplicaFigures { replica: r.index, url: r.url.clone(), gap: r.gap.clone(), ..Default::default() }
                }
            })
            .collect();
        let sum = |f: fn(&ReplicaFigures) -> Option<f64>| figures.iter().filter_map(f).sum::<f64>();
        let (prompt_tokens, hit_tokens, query_tokens) =
            (sum(|f| f.prompt_tokens), sum(|f| f.prefix_hit_tokens), sum(|f| f.prefix_query_tokens));
        PolicyRun {
            policy: policy.to_string(),
            requests: case.map_or(0, |c| c.requests),
            failed: case.map_or(0, |c| c.failed),
            first_error: case.and_then(|c| c.first_error.clone()),
            ttft: case.map(|c| c.ttft).unwrap_or_default(),
            queue_wait: merged_queue_wait(&replicas.cases),
            prompt_tokens,
            hit_tokens,
            query_tokens,
            prefill_tokens: (prompt_tokens - hit_tokens).max(0.0),
            hit_rate: (query_tokens > 0.0).then(|| hit_tokens / query_tokens),
            blocks_on_several: replicas.blocks_on_several,
            replicas: figures,
            fault: None,
            problems: res.problems.clone(),
            wall_seconds: res.wall_seconds,
            replicas_csv: res.replicas.as_ref().map(replica_report::csv).unwrap_or_default(),
            kv_usage: replicas.samples.iter().map(|s| over_time(s, Quantity::KvUsage, 100.0)).collect(),
            cached_blocks: replicas.samples.iter().map(|s| over_time(s, Quantity::CachedBlocks, 1.0)).collect(),
        }
    }
}

fn replica_figures(case: &ReplicaCase) -> ReplicaFigures {
    ReplicaFigures {
        replica: case.replica,
        url: case.url.clone(),
        live_requests_mean: case.running.map(|s| s.mean),
        live_requests_max: case.running.map(|s| s.max),
        kv_usage_peak: case.kv_usage.map(|s| s.max),
        cached_blocks_peak: case.cached_blocks.map(|s| s.max),
        prefix_hit_tokens: case.delta(Quantity::PrefixHits),
        prefix_query_tokens: case.delta(Quantity::PrefixQueries),
        prompt_tokens: case.delta(Quantity::PromptTokens),
        evicted_blocks: case.delta(Quantity::Evictions),
        preemptions: case.delta(Quantity::Preemptions),
        counted_until_s: case.deltas_end_at_last_poll,
        gap: None,
    }
}

/// The replicas' queue-time histogram deltas as one distribution.
fn merged_queue_wait(cases: &[ReplicaCase]) -> Option<Dist> {
    let merged = cases
        .iter()
        .filter_map(|c| c.queue_time.as_ref())
        .fold(None, |acc: Option<HistogramSample>, h| Some(acc.map_or_else(|| h.clone(), |a| a.plus(h))))?;
    (merged.count > 0.0).then(|| histogram_dist(&merged))
}

/// `q` × `scale` at each poll that held it: (seconds, value) points for a
/// figure (not a [`crate::target::case::Series`], which is a mean and a max).
fn over_time(samples: &[crate::target::poller::MetricsSample], q: Quantity, scale: f64) -> Vec<(f64, f64)> {
    samples.iter().filter_map(|s| Some((s.t, s.get(q)? * scale))).collect()
}

/// Policy runs made up for the fleet's unit tests (no processes).
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// `hits` of 2000 prompt tokens realized, `spread` blocks on several
    /// replicas, TTFT p50 `ttft` seconds.
    pub fn run(policy: &str, hits: f64, spread: Option<usize>, ttft: f64) -> PolicyRun {
        PolicyRun {
            policy: policy.into(),
            requests: 9,
            failed: 0,
            first_error: None,
            ttft: Dist { p50: ttft, p90: ttft, n: 9, ..Default::default() },
            queue_wait: None,
            prompt_tokens: 2000.0,
            hit_tokens: hits,
            query_tokens: 2000.0,
            prefill_tokens: 2000.0 - hits,
            hit_rate: Some(hits / 2000.0),
            blocks_on_several: spread,
            replicas: Vec::new(),
            fault: None,
            problems: Vec::new(),
            wall_seconds: 1.0,
            replicas_csv: String::new(),
            kv_usage: Vec::new(),
            cached_blocks: Vec::new(),
        }
    }
}
