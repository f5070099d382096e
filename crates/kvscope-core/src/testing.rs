//! A deterministic executor for tests and examples that stores "KV" for
//! real: each slot of the paged pool holds the token written there, and the
//! next token is a hash of the context *read back through the block table*.
//! A block-table bug (a wrong prefix hit, a block freed too early, a slot
//! overwritten by another request) therefore changes the output, just as
//! it would corrupt a real model's attention. It scores prompts too (a
//! made-up log-probability per position), so prompt scoring can be tested
//! without a model.

use crate::block_manager::PoolConfig;
use crate::executor::{BatchOutput, Executor, ExecutorError, PromptLogprob, SampledToken, ScheduledBatch};
use crate::ids::TokenId;
use crate::kv_geometry::KvGeometry;

/// The paged test executor (see the module docs).
pub struct PagedTokenExecutor {
    block_size: usize,
    vocab: u32,
    slots: Vec<Option<TokenId>>,
}

impl PagedTokenExecutor {
    /// A pool of `num_blocks` blocks of `block_size` slots, sampling ids
    /// below `vocab` — the numbers the block manager is configured with.
    pub fn new(num_blocks: usize, block_size: usize, vocab: u32) -> Self {
        PagedTokenExecutor { block_size, vocab, slots: vec![None; num_blocks * block_size] }
    }

    /// A pool laid out as the engine's `pool`: the geometry from the one
    /// configuration value.
    pub fn for_pool(pool: &PoolConfig, vocab: u32) -> Self {
        Self::new(pool.num_blocks, pool.block_size, vocab)
    }

    /// The made-up score of `token` at `position`: a function of both only,
    /// so a chunked, preempted or batched prompt is scored the same.
    pub fn prompt_score(&self, position: usize, token: TokenId, k: usize) -> PromptLogprob {
        let logprob = -(((position as u64 * 31 + u64::from(token)) % 997) as f32) / 100.0;
        let top_logprobs = (0..k as u32).map(|j| ((token + j) % self.vocab, logprob - j as f32)).collect();
        PromptLogprob { position, token, logprob, top_logprobs }
    }
}

impl Executor for PagedTokenExecutor {
    fn kv_geometry(&self) -> Option<KvGeometry> {
        Some(KvGeometry { num_blocks: self.slots.len() / self.block_size.max(1), block_size: self.block_size })
    }

    fn execute(&mut self, batch: &ScheduledBatch) -> Result<BatchOutput, ExecutorError> {
        let bs = self.block_size;
        let slot = |table: &[crate::ids::BlockId], pos: usize| table[pos / bs].index() * bs + pos % bs;
        let mut out = BatchOutput { sampled: Vec::with_capacity(batch.seqs.len()), prompt_logprobs: Vec::new() };
        for seq in &batch.seqs {
            for (i, &t) in seq.tokens.iter().enumerate() {
                self.slots[slot(&seq.block_table, seq.start_pos + i)] = Some(t);
            }
            if let (true, Some(k)) = (seq.is_prefill, seq.sampling.prompt_logprobs) {
                // Position start_pos + i + 1 is scored from the chunk's row i.
                let next = seq.tokens.iter().skip(1).copied().map(Some).chain([seq.next_prompt_token]);
                let scores = next
                    .enumerate()
                    .filter_map(|(i, t)| t.map(|t| self.prompt_score(seq.start_pos + i + 1, t, k)))
                    .collect();
                out.prompt_logprobs.push((seq.request_id, scores));
            }
            if !seq.sample {
                out.sampled.push(None);
                continue;
            }
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for pos in 0..seq.context_tokens() {
                let t = self.slots[slot(&seq.block_table, pos)]
                    .ok_or_else(|| ExecutorError(format!("request {} reads unwritten KV at {pos}", seq.request_id)))?;
                h = (h ^ u64::from(t)).wrapping_mul(0x0100_0000_01b3);
            }
            let seed = seq.sampling.seed.unwrap_or(0);
            h = (h ^ seed ^ seq.output_index as u64).wrapping_mul(0x0100_0000_01b3);
            out.sampled.push(Some(SampledToken::plain((h % u64::from(self.vocab)) as TokenId)));
        }
        Ok(out)
    }
}
