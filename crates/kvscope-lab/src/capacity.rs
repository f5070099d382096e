//! The state capacity table: one row per case, measured, with the binding
//! constraint named from the admission stalls the scheduler recorded.

use crate::runner::CaseRun;
use crate::summary::Dist;
use crate::workload::Arrival;
use kvscope_core::StallReason;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct CapacityRow {
    pub case: String,
    /// Mean prompt length over the case's requests (tokens).
    pub prompt_len: f64,
    pub prompt_len_min: usize,
    pub prompt_len_max: usize,
    /// Offered concurrency: requests submitted at once (burst), or the
    /// Poisson rate's requests in flight if none waited (reported as the
    /// request count for a burst).
    pub concurrency: usize,
    pub arrival: Arrival,
    /// Requests holding KV (running), time-weighted mean over the run.
    pub live_requests: f64,
    pub live_requests_max: usize,
    /// KV per request at its largest, token-exact: (prompt + output − 1)
    /// tokens × bytes per token (bytes; mean over requests).
    pub estimated_kv: f64,
    /// The same, rounded up to whole blocks as the pool actually holds it.
    pub estimated_kv_block_rounded: f64,
    pub ttft: Dist,
    pub queue_wait: Dist,
    pub stall_share_no_free_blocks: f64,
    pub stall_share_max_running: f64,
    pub stall_share_token_budget: f64,
    pub stalled_steps: u64,
    pub preemptions: u64,
    pub peak_block_occupancy: f64,
    pub explanation: String,
}

impl CapacityRow {
    pub fn from_run(run: &CaseRun, lang_zh: bool) -> CapacityRow {
        let cfg = &run.config;
        let reqs = &run.requests;
        let n = reqs.len().max(1) as f64;
        let bpt = cfg.bytes_per_token() as f64;
        let stats = &run.stats;
        let kv_exact =
            reqs.iter().map(|r| (r.prompt_tokens + r.output_tokens).saturating_sub(1) as f64 * bpt).sum::<f64>() / n;
        let kv_blocks = reqs.iter().map(|r| (r.peak_blocks as u64 * cfg.bytes_per_block) as f64).sum::<f64>() / n;
        let mut row = CapacityRow {
            case: run.spec.name.clone(),
            prompt_len: reqs.iter().map(|r| r.prompt_tokens as f64).sum::<f64>() / n,
            prompt_len_min: reqs.iter().map(|r| r.prompt_tokens).min().unwrap_or(0),
            prompt_len_max: reqs.iter().map(|r| r.prompt_tokens).max().unwrap_or(0),
            concurrency: run.spec.num_requests,
            arrival: run.spec.arrival.clone(),
            live_requests: stats.time_weighted_mean_running(),
            live_requests_max: stats.max_running(),
            estimated_kv: kv_exact,
            estimated_kv_block_rounded: kv_blocks,
            ttft: Dist::of(reqs.iter().map(|r| r.ttft)),
            queue_wait: Dist::of(reqs.iter().map(|r| r.queue_wait)),
            stall_share_no_free_blocks: stats.stall_share(StallReason::NoFreeBlocks),
            stall_share_max_running: stats.stall_share(StallReason::MaxRunning),
            stall_share_token_budget: stats.stall_share(StallReason::TokenBudget),
            stalled_steps: stats.total_stalls(),
            preemptions: stats.preemptions,
            peak_block_occupancy: stats.rows.iter().map(|r| r.block_occupancy()).fold(0.0, f64::max),
            explanation: String::new(),
        };
        row.explanation = explain(&row, &run.config, lang_zh);
        row
    }

    pub fn binding_constraint(&self) -> Option<StallReason> {
        if self.stalled_steps == 0 {
            return None;
        }
        [
            (StallReason::NoFreeBlocks, self.stall_share_no_free_blocks),
            (StallReason::MaxRunning, self.stall_share_max_running),
            (StallReason::TokenBudget, self.stall_share_token_budget),
        ]
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(r, _)| r)
    }
}

/// The explanation column: the binding constraint and the stall shares
/// behind it, in Chinese or English.
pub fn explain(row: &CapacityRow, cfg: &crate::runner::RunConfig, zh: bool) -> String {
    let pool_tokens = cfg.num_blocks * cfg.block_size;
    let fits = if row.estimated_kv_block_rounded > 0.0 {
        cfg.pool_bytes() as f64 / row.estimated_kv_block_rounded
    } else {
        0.0
    };
    let shares = format!(
        "no_free_blocks {:.0}% / max_running {:.0}% / token_budget {:.0}%",
        100.0 * row.stall_share_no_free_blocks,
        100.0 * row.stall_share_max_running,
        100.0 * row.stall_share_token_budget
    );
    let binding = row.binding_constraint();
    match (zh, binding) {
        (true, None) => format!(
            "无准入阻塞: {} 个请求全部立即准入; 池 ({pool_tokens} tokens) 可容纳约 {fits:.1} 个此规模请求, 容量不是瓶颈",
            row.concurrency
        ),
        (false, None) => format!(
            "no admission stalls: all {} requests admitted at once; the pool ({pool_tokens} tokens) fits about {fits:.1} requests of this size, capacity is not binding",
            row.concurrency
        ),
        (true, Some(r)) => format!(
            "瓶颈 = {}: {} 个阻塞步中 {shares}; 池约容纳 {fits:.1} 个此规模请求, 实测最多 {} 个同时存活 (共 {} 个), 抢占 {} 次",
            r.as_str(),
            row.stalled_steps,
            row.live_requests_max,
            row.concurrency,
            row.preemptions
        ),
        (false, Some(r)) => format!(
            "binding constraint = {}: of {} stalled steps {shares}; the pool fits about {fits:.1} requests of this size, at most {} of {} were live at once, {} preemptions",
            r.as_str(),
            row.stalled_steps,
            row.live_requests_max,
            row.concurrency,
            row.preemptions
        ),
    }
}

pub const CSV_HEADER: &str = "case,prompt_len_tokens,concurrency_requests,live_requests_mean,live_requests_max,estimated_kv_bytes,estimated_kv_block_rounded_bytes,ttft_p50_s,ttft_p90_s,ttft_p99_s,queue_wait_p50_s,queue_wait_p90_s,queue_wait_p99_s,stall_share_no_free_blocks,stall_share_max_running,stall_share_token_budget,preemptions,explanation";

pub fn to_csv(rows: &[CapacityRow]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        out.push_str(&format!(
            "{},{:.1},{},{:.2},{},{:.0},{:.0},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.3},{:.3},{:.3},{},\"{}\"\n",
            r.case,
            r.prompt_len,
            r.concurrency,
            r.live_requests,
            r.live_requests_max,
            r.estimated_kv,
            r.estimated_kv_block_rounded,
            r.ttft.p50,
            r.ttft.p90,
            r.ttft.p99,
            r.queue_wait.p50,
            r.queue_wait.p90,
            r.queue_wait.p99,
            r.stall_share_no_free_blocks,
            r.stall_share_max_running,
            r.stall_share_token_budget,
            r.preemptions,
            r.explanation.replace('"', "'")
        ));
    }
    out
}

pub fn to_json(rows: &[CapacityRow], run_config: &crate::runner::RunConfig) -> serde_json::Value {
    serde_json::json!({
        "units": {
            "prompt_len": "tokens",
            "concurrency": "requests offered at once",
            "live_requests": "requests holding KV (time-weighted mean; max alongside)",
            "estimated_kv": "bytes per request, token-exact at its largest (prompt + output - 1 tokens)",
            "estimated_kv_block_rounded": "bytes per request as whole blocks held at its peak",
            "ttft": "seconds", "queue_wait": "seconds"
        },
        "pool": {
            "num_blocks": run_config.num_blocks,
            "block_size_tokens": run_config.block_size,
            "bytes_per_token": run_config.bytes_per_token(),
            "bytes_per_block": run_config.bytes_per_block,
            "total_bytes": run_config.pool_bytes(),
            "max_running": run_config.max_running,
            "max_batched_tokens": run_config.max_batched_tokens,
            "prefix_caching": run_config.enable_prefix_caching,
        },
        "rows": rows,
    })
}
