//! The state capacity table: one row per case, measured, with the binding
//! constraint named from the admission stalls the scheduler recorded.

use crate::dist::Dist;
use crate::driver::CaseRun;
use crate::workload::Arrival;
use kvscope_core::{EngineConfig, StallReason};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct CapacityRow {
    pub case: String,
    /// Mean prompt length over the case's requests (tokens).
    pub prompt_len: f64,
    pub prompt_len_min: usize,
    pub prompt_len_max: usize,
    /// Offered load: the number of requests (all of them at once when the
    /// arrival is all-at-once).
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
        let pool = &run.config.pool;
        let reqs = &run.requests;
        let n = reqs.len().max(1) as f64;
        let bpt = pool.bytes_per_token() as f64;
        let stats = &run.stats;
        let kv_exact =
            reqs.iter().map(|r| (r.prompt_tokens + r.output_tokens).saturating_sub(1) as f64 * bpt).sum::<f64>() / n;
        let kv_blocks = reqs.iter().map(|r| (r.peak_blocks as u64 * pool.bytes_per_block) as f64).sum::<f64>() / n;
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
pub fn explain(row: &CapacityRow, cfg: &EngineConfig, zh: bool) -> String {
    let pool_tokens = cfg.pool.num_blocks * cfg.pool.block_size;
    let fits = if row.estimated_kv_block_rounded > 0.0 {
        cfg.pool.total_bytes() as f64 / row.estimated_kv_block_rounded
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

/// One line of `capacity.csv`: the row flattened, units in the column names.
#[derive(Serialize)]
struct CsvLine<'a> {
    case: &'a str,
    prompt_len_tokens: String,
    concurrency_requests: usize,
    live_requests_mean: String,
    live_requests_max: usize,
    estimated_kv_bytes: String,
    estimated_kv_block_rounded_bytes: String,
    ttft_p50_s: String,
    ttft_p90_s: String,
    ttft_p99_s: String,
    queue_wait_p50_s: String,
    queue_wait_p90_s: String,
    queue_wait_p99_s: String,
    stall_share_no_free_blocks: String,
    stall_share_max_running: String,
    stall_share_token_budget: String,
    preemptions: u64,
    explanation: &'a str,
}

impl<'a> CsvLine<'a> {
    fn of(r: &'a CapacityRow) -> Self {
        let f = |x: f64, digits: usize| format!("{x:.digits$}");
        CsvLine {
            case: &r.case,
            prompt_len_tokens: f(r.prompt_len, 1),
            concurrency_requests: r.concurrency,
            live_requests_mean: f(r.live_requests, 2),
            live_requests_max: r.live_requests_max,
            estimated_kv_bytes: f(r.estimated_kv, 0),
            estimated_kv_block_rounded_bytes: f(r.estimated_kv_block_rounded, 0),
            ttft_p50_s: f(r.ttft.p50, 4),
            ttft_p90_s: f(r.ttft.p90, 4),
            ttft_p99_s: f(r.ttft.p99, 4),
            queue_wait_p50_s: f(r.queue_wait.p50, 4),
            queue_wait_p90_s: f(r.queue_wait.p90, 4),
            queue_wait_p99_s: f(r.queue_wait.p99, 4),
            stall_share_no_free_blocks: f(r.stall_share_no_free_blocks, 3),
            stall_share_max_running: f(r.stall_share_max_running, 3),
            stall_share_token_budget: f(r.stall_share_token_budget, 3),
            preemptions: r.preemptions,
            explanation: &r.explanation,
        }
    }
}

/// `capacity.csv`: a header with units, one line per case.
pub fn to_csv(rows: &[CapacityRow]) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    for r in rows {
        out.serialize(CsvLine::of(r)).expect("writing CSV to memory");
    }
    if rows.is_empty() {
        out.write_record(CSV_COLUMNS).expect("writing CSV to memory");
    }
    String::from_utf8(out.into_inner().expect("flushing to memory")).expect("CSV of UTF-8 strings")
}

/// The columns of `capacity.csv`, in order.
pub const CSV_COLUMNS: [&str; 18] = [
    "case",
    "prompt_len_tokens",
    "concurrency_requests",
    "live_requests_mean",
    "live_requests_max",
    "estimated_kv_bytes",
    "estimated_kv_block_rounded_bytes",
    "ttft_p50_s",
    "ttft_p90_s",
    "ttft_p99_s",
    "queue_wait_p50_s",
    "queue_wait_p90_s",
    "queue_wait_p99_s",
    "stall_share_no_free_blocks",
    "stall_share_max_running",
    "stall_share_token_budget",
    "preemptions",
    "explanation",
];

/// `capacity.json`: the units, the engine configuration as it is, the rows.
/// `executor` says what produced the figures (`real` or `sim`); simulated
/// figures are labelled as such.
pub fn to_json(rows: &[CapacityRow], config: &EngineConfig, executor: &str) -> serde_json::Value {
    serde_json::json!({
        "executor": executor,
        "simulated": executor == "sim",
        "units": {
            "prompt_len": "tokens",
            "concurrency": "requests offered (all at once, or over the arrival process)",
            "live_requests": "requests holding KV (time-weighted mean; max alongside)",
            "estimated_kv": "bytes per request, token-exact at its largest (prompt + output - 1 tokens)",
            "estimated_kv_block_rounded": "bytes per request as whole blocks held at its peak",
            "ttft": if executor == "sim" { "simulated seconds" } else { "seconds" },
            "queue_wait": if executor == "sim" { "simulated seconds" } else { "seconds" },
            "percentiles": "linear interpolation between closest ranks (numpy's default)"
        },
        "pool": {
            "num_blocks": config.pool.num_blocks,
            "block_size_tokens": config.pool.block_size,
            "bytes_per_token": config.pool.bytes_per_token(),
            "bytes_per_block": config.pool.bytes_per_block,
            "total_bytes": config.pool.total_bytes(),
        },
        "engine": config,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_explanations_and_keeps_the_columns() {
        let row = CapacityRow {
            case: "long_ctx".into(),
            prompt_len: 1536.0,
            prompt_len_min: 1500,
            prompt_len_max: 1600,
            concurrency: 12,
            arrival: Arrival::AllAtOnce,
            live_requests: 2.5,
            live_requests_max: 3,
            estimated_kv: 1.0,
            estimated_kv_block_rounded: 2.0,
            ttft: Dist::default(),
            queue_wait: Dist::default(),
            stall_share_no_free_blocks: 1.0,
            stall_share_max_running: 0.0,
            stall_share_token_budget: 0.0,
            stalled_steps: 10,
            preemptions: 0,
            peak_block_occupancy: 1.0,
            explanation: "binding, with \"quotes\", and commas".into(),
        };
        let csv = to_csv(&[row]);
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), CSV_COLUMNS);
        let record = reader.records().next().unwrap().unwrap();
        assert_eq!(&record[0], "long_ctx");
        assert_eq!(&record[17], "binding, with \"quotes\", and commas");
    }
}
