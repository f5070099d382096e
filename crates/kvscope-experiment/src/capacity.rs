//! The state capacity table: one row per case, measured, with the binding
//! constraint named from the admission stalls the scheduler recorded.

use crate::dist::Dist;
use crate::driver::CaseRun;
use crate::kv_size::kv_per_request;
use crate::mix::MemberRow;
use crate::names;
use crate::workload::Arrival;
use kvscope_core::{EngineConfig, Seconds, StallReason};
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
    /// Requests holding KV, time-weighted mean over the run: each request
    /// from the start of the step that admits it to the end of the step
    /// that releases it (the state a step computes with).
    pub live_requests: f64,
    /// Most requests live in one step.
    pub live_requests_max: usize,
    /// KV per request at its largest, token-exact: (prompt + output − 1)
    /// tokens × bytes per token (bytes; mean over requests).
    pub estimated_kv: f64,
    /// The same, rounded up to whole blocks as the pool actually holds it.
    pub estimated_kv_block_rounded: f64,
    pub ttft: Dist,
    pub queue_wait: Dist,
    /// Shares of the stalled time (each stalled step weighted by how long
    /// it ran): what the queue's head waited on.
    pub stall_time_share_no_free_blocks: f64,
    pub stall_time_share_max_running: f64,
    pub stall_time_share_token_budget: f64,
    /// Shares of the stalled steps (a 50 ms decode step weighs as much as
    /// a 2 s prefill step).
    pub stall_step_share_no_free_blocks: f64,
    pub stall_step_share_max_running: f64,
    pub stall_step_share_token_budget: f64,
    pub stalled_steps: u64,
    /// Duration of the stalled steps (seconds on the engine clock).
    pub stalled_seconds: Seconds,
    pub preemptions: u64,
    pub peak_block_occupancy: f64,
    /// The members of a two-peak mix (`mixed_ctx`: long and short prompts
    /// alternating), long first; empty for a one-peak case. Averaged into
    /// one row, a 25-block and a 4-block request make a 14.5-block request
    /// that no request is.
    pub members: Vec<MemberRow>,
    pub explanation: String,
}

impl CapacityRow {
    pub fn from_run(run: &CaseRun, lang_zh: bool) -> CapacityRow {
        let reqs = &run.requests;
        let n = reqs.len().max(1) as f64;
        let stats = &run.stats;
        let (kv_exact, kv_blocks) = kv_per_request(&reqs.iter().collect::<Vec<_>>(), &run.config.pool);
        let mut row = CapacityRow {
            case: run.spec.name.clone(),
            prompt_len: reqs.iter().map(|r| r.prompt_tokens as f64).sum::<f64>() / n,
            prompt_len_min: reqs.iter().map(|r| r.prompt_tokens).min().unwrap_or(0),
            prompt_len_max: reqs.iter().map(|r| r.prompt_tokens).max().unwrap_or(0),
            concurrency: run.spec.num_requests,
            arrival: run.spec.arrival.clone(),
            live_requests: stats.time_weighted_mean_live(),
            live_requests_max: stats.max_live(),
            estimated_kv: kv_exact,
            estimated_kv_block_rounded: kv_blocks,
            ttft: Dist::of(reqs.iter().map(|r| r.ttft)),
            queue_wait: Dist::of(reqs.iter().map(|r| r.queue_wait)),
            stall_time_share_no_free_blocks: stats.stall_time_share(StallReason::NoFreeBlocks),
            stall_time_share_max_running: stats.stall_time_share(StallReason::MaxRunning),
            stall_time_share_token_budget: stats.stall_time_share(StallReason::TokenBudget),
            stall_step_share_no_free_blocks: stats.stall_step_share(StallReason::NoFreeBlocks),
            stall_step_share_max_running: stats.stall_step_share(StallReason::MaxRunning),
            stall_step_share_token_budget: stats.stall_step_share(StallReason::TokenBudget),
            stalled_steps: stats.total_stalls(),
            stalled_seconds: stats.total_stall_seconds(),
            preemptions: stats.preemptions,
            peak_block_occupancy: stats.rows.iter().map(|r| r.block_occupancy()).fold(0.0, f64::max),
            members: MemberRow::of_run(run),
            explanation: String::new(),
        };
        row.explanation = explain(&row, &run.config, lang_zh);
        row
    }

    /// The reason the queue's head waited on longest (by step when the
    /// stalled steps took no time).
    pub fn binding_constraint(&self) -> Option<StallReason> {
        if self.stalled_steps == 0 {
            return None;
        }
        let shares = if self.stalled_seconds > 0.0 { self.stall_time_shares() } else { self.stall_step_shares() };
        shares.into_iter().max_by(|a, b| a.1.total_cmp(&b.1)).map(|(r, _)| r)
    }

    pub fn stall_time_shares(&self) -> [(StallReason, f64); 3] {
        [
            (StallReason::NoFreeBlocks, self.stall_time_share_no_free_blocks),
            (StallReason::MaxRunning, self.stall_time_share_max_running),
            (StallReason::TokenBudget, self.stall_time_share_token_budget),
        ]
    }

    pub fn stall_step_shares(&self) -> [(StallReason, f64); 3] {
        [
            (StallReason::NoFreeBlocks, self.stall_step_share_no_free_blocks),
            (StallReason::MaxRunning, self.stall_step_share_max_running),
            (StallReason::TokenBudget, self.stall_step_share_token_budget),
        ]
    }
}

/// The explanation column: the binding constraint and the stall shares
/// behind it (by time, then by step), how many requests of this size the
/// pool fits (of each member's size for a mix) and, for a mix, what the
/// most live requests were made of; in Chinese or English.
pub fn explain(row: &CapacityRow, cfg: &EngineConfig, zh: bool) -> String {
    let pool_tokens = cfg.pool.num_blocks * cfg.pool.block_size;
    let fits_of = |kv_block_rounded: f64| {
        if kv_block_rounded > 0.0 {
            cfg.pool.total_bytes() as f64 / kv_block_rounded
        } else {
            0.0
        }
    };
    let percent = |shares: [(StallReason, f64); 3]| {
        shares.map(|(r, x)| format!("{} {:.0}%", names::stall_reason(r, zh), 100.0 * x)).join(" / ")
    };
    let fits = match (zh, row.members.as_slice()) {
        (true, []) => format!("{:.1} 个此规模请求", fits_of(row.estimated_kv_block_rounded)),
        (false, []) => format!("{:.1} requests of this size", fits_of(row.estimated_kv_block_rounded)),
        (true, members) => members
            .iter()
            .map(|m| {
                format!(
                    "{:.1} 个{}请求 ({} 块)",
                    fits_of(m.estimated_kv_block_rounded),
                    names::member(&m.member, true),
                    m.peak_blocks
                )
            })
            .collect::<Vec<_>>()
            .join(" 或 "),
        (false, members) => {
            let each: Vec<String> = members
                .iter()
                .map(|m| {
                    format!("{:.1} {} ({} blocks)", fits_of(m.estimated_kv_block_rounded), m.member, m.peak_blocks)
                })
                .collect();
            format!("{} requests", each.join(" or "))
        }
    };
    // What the maximum was made of: "2 long + 4 short = 66 of 68 blocks".
    let mix = if row.members.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> =
            row.members.iter().map(|m| format!("{} {}", m.live_at_max, names::member(&m.member, zh))).collect();
        let blocks: usize = row.members.iter().map(|m| m.blocks_at_max).sum();
        let (of, unit) = if zh { ("/", "块") } else { ("of", "blocks") };
        format!(" ({} = {blocks} {of} {} {unit})", parts.join(" + "), cfg.pool.num_blocks)
    };
    let (max, n) = (row.live_requests_max, row.concurrency);
    match (zh, row.binding_constraint()) {
        (true, None) => format!(
            "无准入阻塞: {n} 个请求全部立即准入{mix}; 池 ({pool_tokens} tokens) 可容纳约 {fits}, 容量不是瓶颈"
        ),
        (false, None) => format!(
            "no admission stalls: all {n} requests admitted at once{mix}; the pool ({pool_tokens} tokens) fits about {fits}, capacity is not binding"
        ),
        (true, Some(r)) => format!(
            "瓶颈 = {}: 阻塞 {:.2} s ({} 步), 按时间 {}, 按步数 {}; 池约容纳 {fits}, 实测最多 {max} 个同时存活{mix} (共 {n} 个), 抢占 {} 次",
            names::stall_reason(r, true),
            row.stalled_seconds,
            row.stalled_steps,
            percent(row.stall_time_shares()),
            percent(row.stall_step_shares()),
            row.preemptions
        ),
        (false, Some(r)) => format!(
            "binding constraint = {}: stalled {:.2} s over {} steps, by time {}, by step {}; the pool fits about {fits}, at most {max} of {n} were live at once{mix}, {} preemptions",
            r.as_str(),
            row.stalled_seconds,
            row.stalled_steps,
            percent(row.stall_time_shares()),
            percent(row.stall_step_shares()),
            row.preemptions
        ),
    }
}

/// Which of a row's figures were measured. A row filled from outside an
/// engine (`kvscope lab --target`) lacks what the engine does not export;
/// capacity.csv writes those fields empty, never as a zero that would read
/// as "no stalls" or "no preemptions".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Known {
    pub live_requests: bool,
    pub estimated_kv: bool,
    /// The estimate rounded to whole blocks: only where the block size is
    /// known (a remote engine may not say it).
    pub kv_block_rounded: bool,
    pub queue_wait: bool,
    /// Admission stalls and their shares by reason.
    pub stalls: bool,
    pub preemptions: bool,
}

impl Known {
    /// A row of the lab's own engine: everything measured.
    pub const ALL: Known = Known {
        live_requests: true,
        estimated_kv: true,
        kv_block_rounded: true,
        queue_wait: true,
        stalls: true,
        preemptions: true,
    };
}

/// One line of `capacity.csv`: the row flattened, units in the column names.
#[derive(Serialize)]
struct CsvLine<'a> {
    case: &'a str,
    prompt_len_tokens: String,
    concurrency_requests: usize,
    live_requests_mean: String,
    live_requests_max: String,
    estimated_kv_bytes: String,
    estimated_kv_block_rounded_bytes: String,
    ttft_p50_s: String,
    ttft_p90_s: String,
    ttft_p99_s: String,
    queue_wait_p50_s: String,
    queue_wait_p90_s: String,
    queue_wait_p99_s: String,
    stall_time_share_no_free_blocks: String,
    stall_time_share_max_running: String,
    stall_time_share_token_budget: String,
    stall_step_share_no_free_blocks: String,
    stall_step_share_max_running: String,
    stall_step_share_token_budget: String,
    stalled_s: String,
    preemptions: String,
    explanation: &'a str,
}

impl<'a> CsvLine<'a> {
    /// `known` says which figures were measured; the others are empty.
    fn of(r: &'a CapacityRow, known: Known) -> Self {
        let f = |x: f64, digits: usize| format!("{x:.digits$}");
        // A figure, or empty when `measured` is false.
        let g = |measured: bool, x: f64, digits: usize| if measured { f(x, digits) } else { String::new() };
        let (live, stalls, queue) = (known.live_requests, known.stalls, known.queue_wait);
        CsvLine {
            case: &r.case,
            prompt_len_tokens: f(r.prompt_len, 1),
            concurrency_requests: r.concurrency,
            live_requests_mean: g(live, r.live_requests, 2),
            live_requests_max: g(live, r.live_requests_max as f64, 0),
            estimated_kv_bytes: g(known.estimated_kv, r.estimated_kv, 0),
            estimated_kv_block_rounded_bytes: g(known.kv_block_rounded, r.estimated_kv_block_rounded, 0),
            ttft_p50_s: f(r.ttft.p50, 4),
            ttft_p90_s: f(r.ttft.p90, 4),
            ttft_p99_s: f(r.ttft.p99, 4),
            queue_wait_p50_s: g(queue, r.queue_wait.p50, 4),
            queue_wait_p90_s: g(queue, r.queue_wait.p90, 4),
            queue_wait_p99_s: g(queue, r.queue_wait.p99, 4),
            stall_time_share_no_free_blocks: g(stalls, r.stall_time_share_no_free_blocks, 3),
            stall_time_share_max_running: g(stalls, r.stall_time_share_max_running, 3),
            stall_time_share_token_budget: g(stalls, r.stall_time_share_token_budget, 3),
            stall_step_share_no_free_blocks: g(stalls, r.stall_step_share_no_free_blocks, 3),
            stall_step_share_max_running: g(stalls, r.stall_step_share_max_running, 3),
            stall_step_share_token_budget: g(stalls, r.stall_step_share_token_budget, 3),
            stalled_s: g(stalls, r.stalled_seconds, 4),
            preemptions: g(known.preemptions, r.preemptions as f64, 0),
            explanation: &r.explanation,
        }
    }
}

/// `capacity.csv`: a header with units, one line per case.
pub fn to_csv(rows: &[CapacityRow]) -> String {
    to_csv_known(rows, &vec![Known::ALL; rows.len()])
}

/// `capacity.csv` of rows of which only some figures were measured
/// (`known[i]` for `rows[i]`): the others are empty fields.
pub fn to_csv_known(rows: &[CapacityRow], known: &[Known]) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    for (r, k) in rows.iter().zip(known.iter().copied().chain(std::iter::repeat(Known::ALL))) {
        out.serialize(CsvLine::of(r, k)).expect("writing CSV to memory");
    }
    if rows.is_empty() {
        out.write_record(CSV_COLUMNS).expect("writing CSV to memory");
    }
    String::from_utf8(out.into_inner().expect("flushing to memory")).expect("CSV of UTF-8 strings")
}

/// The columns of `capacity.csv`, in order.
pub const CSV_COLUMNS: [&str; 22] = [
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
    "stall_time_share_no_free_blocks",
    "stall_time_share_max_running",
    "stall_time_share_token_budget",
    "stall_step_share_no_free_blocks",
    "stall_step_share_max_running",
    "stall_step_share_token_budget",
    "stalled_s",
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
            "live_requests": "requests holding KV, each from the start of the step that admits it to the end of the step that releases it (time-weighted mean; the most in one step alongside)",
            "stall_time_share": "share of the stalled time, each stalled step weighted by its duration",
            "stall_step_share": "share of the stalled steps",
            "stalled_seconds": if executor == "sim" { "simulated seconds of stalled steps" } else { "seconds of stalled steps" },
            "members": "a two-peak mix's long and short requests, each with its own figures",
            "estimated_kv": "bytes per request, token-exact at its largest (prompt + output - 1 tokens)",
            "estimated_kv_block_rounded": "bytes per request as whole blocks held at its peak",
            "ttft": if executor == "sim" { "simulated seconds" } else { "seconds" },
            "queue_wait": if executor == "sim" { "simulated seconds" } else { "seconds" },
            "percentiles": "linear interpolation between closest ranks (numpy's default); n values behind each; tables show the maximum and n instead of a p99 of fewer than 20"
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

    fn row_of_test() -> CapacityRow {
        CapacityRow {
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
            stall_time_share_no_free_blocks: 1.0,
            stall_time_share_max_running: 0.0,
            stall_time_share_token_budget: 0.0,
            stall_step_share_no_free_blocks: 1.0,
            stall_step_share_max_running: 0.0,
            stall_step_share_token_budget: 0.0,
            stalled_steps: 10,
            stalled_seconds: 2.5,
            preemptions: 0,
            peak_block_occupancy: 1.0,
            members: Vec::new(),
            explanation: "binding, with \"quotes\", and commas".into(),
        }
    }

    #[test]
    fn csv_quotes_explanations_and_keeps_the_columns() {
        let csv = to_csv(&[row_of_test()]);
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), CSV_COLUMNS);
        let record = reader.records().next().unwrap().unwrap();
        assert_eq!(&record[0], "long_ctx");
        assert_eq!(&record[CSV_COLUMNS.len() - 1], "binding, with \"quotes\", and commas");
        assert_eq!(&record[4], "3");
        // A remote engine that does not say its block size: the estimate,
        // but no block-rounded figure.
        let unknown = Known { stalls: false, preemptions: false, kv_block_rounded: false, ..Known::ALL };
        let csv = to_csv_known(&[row_of_test()], &[unknown]);
        let record = csv::Reader::from_reader(csv.as_bytes()).records().next().unwrap().unwrap();
        let at = |name: &str| record[CSV_COLUMNS.iter().position(|c| *c == name).unwrap()].to_string();
        assert_eq!(at("stall_time_share_no_free_blocks"), "", "unknown, not 0.000");
        assert_eq!((at("stalled_s"), at("preemptions")), (String::new(), String::new()));
        assert_eq!(at("live_requests_max"), "3");
        assert_eq!(at("estimated_kv_block_rounded_bytes"), "");
        assert_ne!(at("estimated_kv_bytes"), "");
    }
}
