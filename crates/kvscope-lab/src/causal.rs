//! The causal chain, measured: a sweep of prompt length at a fixed pool and
//! offered load. Each point carries every link of the chain
//! context length → KV per request → live requests → queue wait → TTFT.

use crate::repeat::{Agreement, Spread};
use kvscope_experiment::capacity::CapacityRow;
use kvscope_experiment::driver::CaseRun;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct SweepPoint {
    /// Prompt length of every request at this point (tokens).
    pub prompt_len: usize,
    /// KV per request at its largest, token-exact (bytes).
    pub kv_per_request: f64,
    pub live_mean: f64,
    pub live_max: usize,
    pub stalls_no_free_blocks: u64,
    pub stalls_max_running: u64,
    pub stalls_token_budget: u64,
    pub preemptions: u64,
    pub queue_wait_p50: f64,
    pub queue_wait_p90: f64,
    pub ttft_p50: f64,
    pub ttft_p90: f64,
    /// TTFT minus queue wait, median: the part of TTFT spent computing the
    /// prompt once admitted (it grows with the prompt even with no queue).
    pub prefill_time_p50: f64,
}

impl SweepPoint {
    pub fn from_run(run: &CaseRun) -> SweepPoint {
        let row = CapacityRow::from_run(run, false);
        let count = |r| *run.stats.stalls.get(&r).unwrap_or(&0);
        use kvscope_core::StallReason::*;
        SweepPoint {
            prompt_len: row.prompt_len.round() as usize,
            kv_per_request: row.estimated_kv,
            live_mean: row.live_requests,
            live_max: row.live_requests_max,
            stalls_no_free_blocks: count(NoFreeBlocks),
            stalls_max_running: count(MaxRunning),
            stalls_token_budget: count(TokenBudget),
            preemptions: row.preemptions,
            queue_wait_p50: row.queue_wait.p50,
            queue_wait_p90: row.queue_wait.p90,
            ttft_p50: row.ttft.p50,
            ttft_p90: row.ttft.p90,
            prefill_time_p50: kvscope_experiment::dist::Dist::of(run.requests.iter().map(|r| r.ttft - r.queue_wait))
                .p50,
        }
    }
}

/// Whether each link of the chain holds in the measured direction between
/// the shortest and the longest prompt of the sweep.
#[derive(Clone, Debug, Serialize)]
pub struct ChainVerdict {
    pub kv_grows: bool,
    pub live_shrinks: bool,
    pub queue_wait_grows: bool,
    pub ttft_grows: bool,
}

pub fn verdict(points: &[SweepPoint]) -> Option<ChainVerdict> {
    let (first, last) = (points.first()?, points.last()?);
    Some(ChainVerdict {
        kv_grows: last.kv_per_request > first.kv_per_request,
        live_shrinks: last.live_max < first.live_max || last.live_mean < first.live_mean,
        queue_wait_grows: last.queue_wait_p50 > first.queue_wait_p50,
        ttft_grows: last.ttft_p50 > first.ttft_p50,
    })
}

/// The chain over repeats: each link is established only when it held in
/// every repeat (`by_len[i][r]` is prompt length i's point in repeat r).
#[derive(Clone, Debug, Serialize)]
pub struct ChainAgreement {
    pub kv_grows: Agreement,
    pub live_shrinks: Agreement,
    pub queue_wait_grows: Agreement,
    pub ttft_grows: Agreement,
}

pub fn agreement(by_len: &[Vec<SweepPoint>]) -> Option<ChainAgreement> {
    let repeats = by_len.iter().map(Vec::len).min()?;
    let verdicts: Vec<ChainVerdict> = (0..repeats)
        .map(|r| verdict(&by_len.iter().map(|p| p[r].clone()).collect::<Vec<_>>()))
        .collect::<Option<_>>()?;
    if verdicts.is_empty() {
        return None;
    }
    let over = |f: fn(&ChainVerdict) -> bool| Agreement::of(verdicts.iter().map(f));
    Some(ChainAgreement {
        kv_grows: over(|v| v.kv_grows),
        live_shrinks: over(|v| v.live_shrinks),
        queue_wait_grows: over(|v| v.queue_wait_grows),
        ttft_grows: over(|v| v.ttft_grows),
    })
}

/// The point of medians of one prompt length's repeats (counts rounded).
pub fn median_point(repeats: &[SweepPoint]) -> SweepPoint {
    let med = |f: fn(&SweepPoint) -> f64| Spread::of(repeats.iter().map(f)).median;
    let count = |f: fn(&SweepPoint) -> f64| med(f).round();
    SweepPoint {
        prompt_len: repeats[0].prompt_len,
        kv_per_request: med(|p| p.kv_per_request),
        live_mean: med(|p| p.live_mean),
        live_max: count(|p| p.live_max as f64) as usize,
        stalls_no_free_blocks: count(|p| p.stalls_no_free_blocks as f64) as u64,
        stalls_max_running: count(|p| p.stalls_max_running as f64) as u64,
        stalls_token_budget: count(|p| p.stalls_token_budget as f64) as u64,
        preemptions: count(|p| p.preemptions as f64) as u64,
        queue_wait_p50: med(|p| p.queue_wait_p50),
        queue_wait_p90: med(|p| p.queue_wait_p90),
        ttft_p50: med(|p| p.ttft_p50),
        ttft_p90: med(|p| p.ttft_p90),
        prefill_time_p50: med(|p| p.prefill_time_p50),
    }
}
