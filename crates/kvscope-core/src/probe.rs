//! The observation-only prefix-hit probe (lab extension option 2).
//!
//! It watches prompts go by and keeps a *shadow* index of every full block
//! it has seen, with no capacity limit and no effect on the engine. For each
//! new prompt it counts how many leading blocks were seen before: the
//! *potential* overlap. That is a signal, not a benefit: the real prefix
//! cache can only reuse blocks that are computed and not yet evicted when
//! the request is admitted, and only if prefix caching is on.

use crate::ids::TokenId;
use crate::prefix_hash::{chain, BlockHash};
use serde::Serialize;
use std::collections::HashSet;

#[derive(Debug, Clone)]
pub struct PrefixProbe {
    block_size: usize,
    seen: HashSet<BlockHash>,
    pub report: ProbeReport,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProbeReport {
    pub prompts: u64,
    pub prompt_tokens: u64,
    pub prompt_full_blocks: u64,
    /// Leading full blocks that an unbounded, always-warm cache would have
    /// held already.
    pub potential_hit_blocks: u64,
    pub potential_hit_tokens: u64,
    /// Prompts with at least one potential hit.
    pub prompts_with_overlap: u64,
}

impl ProbeReport {
    pub fn potential_hit_rate(&self) -> f64 {
        if self.prompt_tokens == 0 {
            0.0
        } else {
            self.potential_hit_tokens as f64 / self.prompt_tokens as f64
        }
    }
}

impl PrefixProbe {
    pub fn new(block_size: usize) -> Self {
        PrefixProbe { block_size, seen: HashSet::new(), report: ProbeReport::default() }
    }

    /// Observes one prompt on arrival; returns its potential hit blocks.
    pub fn observe(&mut self, prompt: &[TokenId]) -> usize {
        // The same rule as the real cache: the last prompt token is always computed.
        let usable = if prompt.is_empty() { 0 } else { (prompt.len() - 1) / self.block_size * self.block_size };
        let keys = chain(&prompt[..usable], self.block_size);
        let hits = keys.iter().take_while(|k| self.seen.contains(k)).count();
        self.seen.extend(chain(prompt, self.block_size));
        let r = &mut self.report;
        r.prompts += 1;
        r.prompt_tokens += prompt.len() as u64;
        r.prompt_full_blocks += (prompt.len() / self.block_size) as u64;
        r.potential_hit_blocks += hits as u64;
        r.potential_hit_tokens += (hits * self.block_size) as u64;
        r.prompts_with_overlap += u64::from(hits > 0);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_leading_blocks_seen_before() {
        let mut probe = PrefixProbe::new(4);
        assert_eq!(probe.observe(&[1, 2, 3, 4, 5, 6, 7, 8, 9]), 0);
        assert_eq!(probe.observe(&[1, 2, 3, 4, 5, 6, 7, 8, 10]), 2);
        assert_eq!(probe.observe(&[9, 2, 3, 4, 5, 6, 7, 8, 10]), 0);
        // A prompt that is exactly two seen blocks reuses only the first:
        // its last token must be computed.
        assert_eq!(probe.observe(&[1, 2, 3, 4, 5, 6, 7, 8]), 1);
        assert_eq!(probe.report.potential_hit_tokens, 12);
        assert_eq!(probe.report.prompts_with_overlap, 2);
    }
}
