//! A two-peak mix (`mixed_ctx`: long and short prompts alternating) seen
//! member by member. Averaged into one row, a 25-block and a 4-block
//! request make a 14.5-block request that no request is, and a TTFT that
//! neither kind had; each member gets its own figures beside the case's.

use crate::dist::Dist;
use crate::driver::{CaseRun, RequestResult};
use crate::kv_size::kv_per_request;
use crate::workload::{CaseSpec, Lengths};
use kvscope_core::RequestId;
use serde::Serialize;

/// One member of a two-peak mix, with its own figures beside the case's.
#[derive(Clone, Debug, Serialize)]
pub struct MemberRow {
    /// `long` or `short`.
    pub member: String,
    /// Mean prompt length over the member's requests (tokens).
    pub prompt_len: f64,
    pub requests: usize,
    /// Token-exact KV per request at its largest (bytes; mean).
    pub estimated_kv: f64,
    /// The same in whole blocks as the pool held it (bytes; mean).
    pub estimated_kv_block_rounded: f64,
    /// Blocks a request of the member holds at its largest (the most over
    /// its requests).
    pub peak_blocks: usize,
    pub ttft: Dist,
    pub queue_wait: Dist,
    /// The member's requests among those live in the step with the most
    /// live requests, and the blocks they held at its end.
    pub live_at_max: usize,
    pub blocks_at_max: usize,
}

/// Which member of a two-peak mix request `index` is, when the case is one
/// (prompt lengths alternating between two different values).
pub fn member_of(spec: &CaseSpec, index: usize) -> Option<&'static str> {
    match spec.prompt_lengths {
        Lengths::Alternating { first, second } if first != second => {
            let is_first = index.is_multiple_of(2);
            Some(if is_first == (first > second) { "long" } else { "short" })
        }
        _ => None,
    }
}

impl MemberRow {
    /// The members of `run`, long first; none for a one-peak case.
    pub fn of_run(run: &CaseRun) -> Vec<MemberRow> {
        let member = |id: RequestId| member_of(&run.spec, id.0 as usize);
        if member(RequestId(0)).is_none() {
            return Vec::new();
        }
        ["long", "short"]
            .into_iter()
            .map(|name| {
                let reqs: Vec<&RequestResult> =
                    run.requests.iter().filter(|r| member(r.request_id) == Some(name)).collect();
                let (kv, kv_blocks) = kv_per_request(&reqs, &run.config.pool);
                let at_max: Vec<usize> =
                    run.stats.peak_live.iter().filter(|(id, _)| member(*id) == Some(name)).map(|(_, b)| *b).collect();
                MemberRow {
                    member: name.into(),
                    prompt_len: reqs.iter().map(|r| r.prompt_tokens as f64).sum::<f64>() / reqs.len().max(1) as f64,
                    requests: reqs.len(),
                    estimated_kv: kv,
                    estimated_kv_block_rounded: kv_blocks,
                    peak_blocks: reqs.iter().map(|r| r.peak_blocks).max().unwrap_or(0),
                    ttft: Dist::of(reqs.iter().map(|r| r.ttft)),
                    queue_wait: Dist::of(reqs.iter().map(|r| r.queue_wait)),
                    live_at_max: at_max.len(),
                    blocks_at_max: at_max.iter().sum(),
                }
            })
            .collect()
    }
}
