//! The prefix-hit probe beside the realized reuse. The probe runs with
//! prefix caching OFF and only watches prompts: it reports what *could*
//! have been reused. The same workload with prefix caching ON reports what
//! *was* reused. The two are different kinds of evidence and stay apart.

use kvscope_core::probe::ProbeReport;
use kvscope_core::KvEvent;
use kvscope_experiment::dist::Dist;
use kvscope_experiment::driver::CaseRun;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Realized {
    /// Prefix-cache hit blocks at first admissions.
    pub hit_blocks: u64,
    /// Prompt tokens whose KV was reused instead of computed.
    pub prefill_tokens_saved: u64,
    pub prompt_tokens: u64,
    pub hit_rate: f64,
    /// Prefill tokens actually computed (including recompute after preemption).
    pub prefill_tokens_computed: u64,
    pub evictions: u64,
    pub ttft: Dist,
    pub requests_with_hits: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProbeComparison {
    pub case: String,
    pub block_size: usize,
    /// Signal only: measured with prefix caching off.
    pub potential: ProbeReport,
    pub potential_ttft_with_caching_off: Dist,
    /// Benefit actually realized with prefix caching on.
    pub realized: Realized,
    /// Potential hit blocks that were not realized.
    pub unrealized_blocks: i64,
    /// TTFT p50 with caching on minus with caching off (seconds; negative = faster).
    pub ttft_p50_change: f64,
    pub prefill_tokens_computed_off: u64,
}

pub fn prefill_tokens_computed(run: &CaseRun) -> u64 {
    run.events
        .iter()
        .map(|e| match e.event {
            KvEvent::Prefill { tokens, .. } => tokens as u64,
            _ => 0,
        })
        .sum()
}

pub fn compare(off: &CaseRun, potential: ProbeReport, on: &CaseRun) -> ProbeComparison {
    let mut hit_blocks = 0;
    let mut requests_with_hits = 0;
    for e in &on.events {
        if let KvEvent::Admitted { cached_blocks, readmission: false, .. } = e.event {
            hit_blocks += cached_blocks as u64;
            requests_with_hits += u64::from(cached_blocks > 0);
        }
    }
    let ttft_on = Dist::of(on.requests.iter().map(|r| r.ttft));
    let ttft_off = Dist::of(off.requests.iter().map(|r| r.ttft));
    let realized = Realized {
        hit_blocks,
        prefill_tokens_saved: on.prefix.hit_tokens,
        prompt_tokens: on.prefix.queried_tokens,
        hit_rate: if on.prefix.queried_tokens == 0 {
            0.0
        } else {
            on.prefix.hit_tokens as f64 / on.prefix.queried_tokens as f64
        },
        prefill_tokens_computed: prefill_tokens_computed(on),
        evictions: on.prefix.evictions,
        ttft: ttft_on,
        requests_with_hits,
    };
    ProbeComparison {
        case: on.spec.name.clone(),
        block_size: on.config.pool.block_size,
        unrealized_blocks: potential.potential_hit_blocks as i64 - hit_blocks as i64,
        potential,
        potential_ttft_with_caching_off: ttft_off,
        ttft_p50_change: ttft_on.p50 - ttft_off.p50,
        prefill_tokens_computed_off: prefill_tokens_computed(off),
        realized,
    }
}
