//! The capacity row of a target's case: the experiment layer's
//! [`CapacityRow`], filled from what the client measured and what the
//! engine exports, with a [`Known`] mask beside it: what a remote engine
//! does not show (admission stalls and their reasons always; live
//! requests, preemptions or queue times where it exports none) is unknown,
//! written blank in capacity.csv and "—" in the report, never as a zero,
//! and listed in the report's "not exposed" section; no capacity claim is
//! made from it.

use super::case::CaseResult;
use super::engine_id::EngineIdentity;
use super::kv_estimate::KvEstimate;
use kvscope_experiment::capacity::Known;
use kvscope_experiment::{CapacityRow, Dist};
use kvscope_wire::{HistogramSample, Quantity};

/// Prompt tokens per request: what the engine counted, else what was sent.
pub fn prompt_tokens(case: &CaseResult) -> Vec<usize> {
    if case.engine_prompt_tokens.iter().any(|&n| n > 0) {
        case.engine_prompt_tokens.clone()
    } else {
        case.sent_prompt_tokens.clone()
    }
}

/// Queue waits: the engine's histogram where it has one, else each
/// request's TTFT less the case's TTFT alone (labelled in the report).
pub fn queue_wait(case: &CaseResult, solo: Option<f64>) -> Dist {
    if let Some(h) = case.queue_time.as_ref().filter(|h| h.count > 0.0) {
        return histogram_dist(h);
    }
    match solo {
        Some(alone) => Dist::of(case.ttfts.iter().map(|t| (t - alone).max(0.0))),
        None => Dist::default(),
    }
}

/// Mean from sum and count; percentiles interpolated inside the buckets
/// (Prometheus' `histogram_quantile`); the maximum is the p99's bound.
pub fn histogram_dist(h: &HistogramSample) -> Dist {
    let quantile = |q: f64| {
        let rank = q * h.count;
        let mut lower = (0.0, 0.0);
        for &(bound, count) in &h.buckets {
            if count >= rank {
                if !bound.is_finite() {
                    return lower.0;
                }
                let share = if count > lower.1 { (rank - lower.1) / (count - lower.1) } else { 1.0 };
                return lower.0 + (bound - lower.0) * share;
            }
            lower = (bound, count);
        }
        lower.0
    };
    Dist {
        mean: h.sum / h.count.max(1.0),
        p50: quantile(0.5),
        p90: quantile(0.9),
        p99: quantile(0.99),
        max: quantile(1.0),
        n: h.count as usize,
    }
}

/// Mean KV per request at its largest (prompt + output − 1 tokens), exact
/// and rounded up to whole blocks, in bytes.
pub fn kv_per_request(case: &CaseResult, bytes_per_token: u64, block_size: Option<usize>) -> (f64, f64) {
    let tokens: Vec<usize> =
        prompt_tokens(case).iter().zip(&case.max_tokens).map(|(p, o)| (p + o).saturating_sub(1)).collect();
    let n = tokens.len().max(1) as f64;
    let exact = tokens.iter().map(|&t| t as f64).sum::<f64>() / n * bytes_per_token as f64;
    let bs = block_size.unwrap_or(1).max(1);
    let rounded = tokens.iter().map(|&t| t.div_ceil(bs) * bs).sum::<usize>() as f64 / n * bytes_per_token as f64;
    (exact, rounded)
}

/// How many of the case's mean request the engine's pool holds at once.
pub fn pool_capacity(case: &CaseResult, engine: &EngineIdentity) -> Option<f64> {
    let pool_tokens = engine.pool.tokens()? as f64;
    let (_, rounded_tokens) = kv_per_request(case, 1, engine.pool.block_size);
    (rounded_tokens > 0.0).then(|| pool_tokens / rounded_tokens)
}

/// Each case's row and what of it was measured.
pub fn rows(
    cases: &[CaseResult],
    engine: Option<&EngineIdentity>,
    kv: Option<&KvEstimate>,
    solo: &[Option<f64>],
) -> (Vec<CapacityRow>, Vec<Known>) {
    cases
        .iter()
        .zip(solo)
        .map(|(case, solo)| {
            let row = row(case, engine, kv, *solo);
            let known = Known {
                live_requests: case.running.is_some(),
                estimated_kv: kv.is_some(),
                kv_block_rounded: kv.is_some() && engine.is_some_and(|e| e.pool.block_size.is_some()),
                queue_wait: row.queue_wait.n > 0,
                stalls: false,
                preemptions: case.delta(Quantity::Preemptions).is_some(),
            };
            (row, known)
        })
        .unzip()
}

/// The explanation column of a target's row, in Chinese or English: what
/// the engine's gauges showed; why the queue's head waited is not
/// exported, so no binding constraint is named.
pub fn explanation(case: &CaseResult, zh: bool) -> String {
    let most = |s: Option<super::case::Series>| s.map_or("?".into(), |s| format!("{:.0}", s.max));
    let (running, waiting) = (most(case.running), most(case.waiting));
    if zh {
        format!("从引擎外部测得: 最多 {running} 个运行、{waiting} 个等待 (引擎指标); 引擎不公开队首等待的原因, 故不指出约束瓶颈")
    } else {
        format!("measured from outside the engine: at most {running} running and {waiting} waiting (engine metrics); why the queue's head waited is not exported, so no binding constraint is named")
    }
}

fn row(case: &CaseResult, engine: Option<&EngineIdentity>, kv: Option<&KvEstimate>, solo: Option<f64>) -> CapacityRow {
    let prompts = prompt_tokens(case);
    let block_size = engine.and_then(|e| e.pool.block_size);
    let (estimated_kv, estimated_kv_block_rounded) =
        kv.map_or((0.0, 0.0), |k| kv_per_request(case, k.bytes_per_token, block_size));
    let running = case.running;
    // Zeros below are what the Known mask marks unknown (see `rows`).
    CapacityRow {
        case: case.case.clone(),
        prompt_len: prompts.iter().sum::<usize>() as f64 / prompts.len().max(1) as f64,
        prompt_len_min: prompts.iter().copied().min().unwrap_or(0),
        prompt_len_max: prompts.iter().copied().max().unwrap_or(0),
        concurrency: case.requests,
        arrival: case.arrival.clone(),
        live_requests: running.map_or(0.0, |s| s.mean),
        live_requests_max: running.map_or(0, |s| s.max as usize),
        estimated_kv,
        estimated_kv_block_rounded,
        ttft: case.ttft,
        queue_wait: queue_wait(case, solo),
        stall_time_share_no_free_blocks: 0.0,
        stall_time_share_max_running: 0.0,
        stall_time_share_token_budget: 0.0,
        stall_step_share_no_free_blocks: 0.0,
        stall_step_share_max_running: 0.0,
        stall_step_share_token_budget: 0.0,
        stalled_steps: 0,
        stalled_seconds: 0.0,
        preemptions: case.delta(Quantity::Preemptions).unwrap_or(0.0).max(0.0) as u64,
        peak_block_occupancy: case.kv_usage.map_or(0.0, |s| s.max),
        members: Vec::new(),
        explanation: explanation(case, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_interpolate_inside_buckets() {
        let h =
            HistogramSample { buckets: vec![(0.1, 5.0), (1.0, 10.0), (f64::INFINITY, 10.0)], sum: 3.0, count: 10.0 };
        let d = histogram_dist(&h);
        assert!((d.mean - 0.3).abs() < 1e-9);
        assert!((d.p50 - 0.1).abs() < 1e-9);
        assert!((d.p90 - 0.82).abs() < 1e-9);
        assert_eq!(d.n, 10);
    }
}
