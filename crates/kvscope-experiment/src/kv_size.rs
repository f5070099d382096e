//! How much KV a request holds at its largest, shared by the capacity
//! row and each mix member's row.

use crate::driver::RequestResult;
use kvscope_core::PoolConfig;

/// KV per request at its largest: token-exact and in whole blocks (bytes,
/// means over `reqs`).
pub(crate) fn kv_per_request(reqs: &[&RequestResult], pool: &PoolConfig) -> (f64, f64) {
    let n = reqs.len().max(1) as f64;
    let bpt = pool.bytes_per_token() as f64;
    let exact =
        reqs.iter().map(|r| (r.prompt_tokens + r.output_tokens).saturating_sub(1) as f64 * bpt).sum::<f64>() / n;
    let blocks = reqs.iter().map(|r| (r.peak_blocks as u64 * pool.bytes_per_block) as f64).sum::<f64>() / n;
    (exact, blocks)
}
