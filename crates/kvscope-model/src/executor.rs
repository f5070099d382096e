//! `ModelExecutor`: the real model behind kvscope-core's `Executor` trait.
//!
//! It owns the weights, the paged KV storage and the sampler. The scheduler
//! tells it which tokens to run and where their KV lives; it never decides
//! block ownership itself.

use crate::kv_storage::{KvStorageError, PagedKvCache};
use crate::llama::{LlamaModel, LogitsFor, SeqChunk};
use crate::sampler::{self, mix64};
use kvscope_core::executor::{BatchOutput, Executor, ExecutorError, PromptLogprob, ScheduledBatch};
use kvscope_core::ids::RequestId;
use kvscope_core::{KvDtype, KvGeometry, PoolConfig};
use std::sync::Arc;

pub struct ModelExecutor {
    model: Arc<LlamaModel>,
    kv: PagedKvCache,
    engine_seed: u64,
}

impl ModelExecutor {
    /// An executor with a KV pool of `num_blocks` blocks of `block_size`
    /// tokens stored as `kv_dtype` — the same numbers the block manager is configured with.
    /// `engine_seed` seeds requests that bring no seed of their own.
    pub fn new(
        model: Arc<LlamaModel>,
        kv_dtype: KvDtype,
        num_blocks: usize,
        block_size: usize,
        engine_seed: u64,
    ) -> Result<Self, KvStorageError> {
        let kv = PagedKvCache::new(model.config(), kv_dtype, num_blocks, block_size)?;
        Ok(ModelExecutor { model, kv, engine_seed })
    }

    /// An executor whose KV storage is laid out as the engine's `pool`:
    /// the geometry read from the one configuration value.
    pub fn for_pool(
        model: Arc<LlamaModel>,
        kv_dtype: KvDtype,
        pool: &PoolConfig,
        engine_seed: u64,
    ) -> Result<Self, KvStorageError> {
        Self::new(model, kv_dtype, pool.num_blocks, pool.block_size, engine_seed)
    }

    pub fn model(&self) -> &LlamaModel {
        &self.model
    }

    pub fn kv(&self) -> &PagedKvCache {
        &self.kv
    }

    /// The random stream of a request without its own seed: fixed per
    /// request, so a preempted and recomputed request draws the same tokens.
    pub fn default_seed(&self, id: RequestId) -> u64 {
        mix64(self.engine_seed ^ mix64(id.0))
    }
}

impl Executor for ModelExecutor {
    /// Where K/V are written into their slots and read back through the
    /// block table: the forward pass.
    const KV_SITE: &'static str = "llama::forward";

    fn kv_geometry(&self) -> Option<KvGeometry> {
        Some(KvGeometry { num_blocks: self.kv.num_blocks(), block_size: self.kv.block_size() })
    }

    fn execute(&mut self, batch: &ScheduledBatch) -> Result<BatchOutput, ExecutorError> {
        for s in batch.seqs.iter().filter(|s| s.sample) {
            s.sampling.validate().map_err(|e| ExecutorError(format!("request {}: {e}", s.request_id)))?;
        }
        let chunks: Vec<SeqChunk> = batch
            .seqs
            .iter()
            .map(|s| SeqChunk {
                tokens: &s.tokens,
                start_pos: s.start_pos,
                block_table: &s.block_table,
                logits: if wants_prompt_scores(s) {
                    LogitsFor::All
                } else if s.sample {
                    LogitsFor::Last
                } else {
                    LogitsFor::None
                },
            })
            .collect();
        let logits = self.model.forward(&mut self.kv, &chunks).map_err(|e| {
            let culprit = match &e {
                crate::llama::ForwardError::EmptyChunk { chunk }
                | crate::llama::ForwardError::TokenOutOfRange { chunk, .. }
                | crate::llama::ForwardError::PositionOutOfRange { chunk, .. }
                | crate::llama::ForwardError::BlockTableTooShort { chunk, .. }
                | crate::llama::ForwardError::BlockOutOfRange { chunk, .. } => batch.seqs[*chunk].request_id,
            };
            ExecutorError(format!("request {culprit}: {e}"))
        })?;
        let mut rows = logits.iter();
        let mut out = BatchOutput { sampled: Vec::with_capacity(batch.seqs.len()), prompt_logprobs: Vec::new() };
        for s in &batch.seqs {
            if wants_prompt_scores(s) {
                // Row i predicts the token at position start_pos + i + 1.
                let k = s.sampling.prompt_logprobs.unwrap_or(0);
                let n = s.tokens.len();
                let mut scores = Vec::with_capacity(n);
                for i in 0..n {
                    let row = if i + 1 == n && s.sample { rows.clone().next() } else { rows.next() };
                    let row = row.expect("one logits row per chunk position");
                    let next = if i + 1 < n { Some(s.tokens[i + 1]) } else { s.next_prompt_token };
                    if let Some(token) = next {
                        let (logprob, top_logprobs) = sampler::score(row, token, k);
                        scores.push(PromptLogprob { position: s.start_pos + i + 1, token, logprob, top_logprobs });
                    }
                }
                out.prompt_logprobs.push((s.request_id, scores));
            }
            if !s.sample {
                out.sampled.push(None);
                continue;
            }
            let row = rows.next().expect("one logits row per sampled sequence");
            let seed = s.sampling.seed.unwrap_or_else(|| self.default_seed(s.request_id));
            let tok = sampler::sample(row, &s.sampling, seed, s.output_index)
                .map_err(|e| ExecutorError(format!("request {}: {e}", s.request_id)))?;
            out.sampled.push(Some(tok));
        }
        Ok(out)
    }
}

/// Prompt chunks of requests that score their prompt need every row's logits.
fn wants_prompt_scores(s: &kvscope_core::executor::ScheduledSeq) -> bool {
    s.is_prefill && s.sampling.prompt_logprobs.is_some()
}
