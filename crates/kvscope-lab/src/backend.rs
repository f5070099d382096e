//! What the lab needs from an engine backend: a tokenizer for its prompts,
//! and an executor plus clock per run. The real model and the simulator
//! both provide one.

use kvscope_core::{Clock, Executor, KvBlockManager, KvDtype, PoolConfig, TokenId};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct BackendInfo {
    /// `real` or `sim`.
    pub executor: String,
    pub model: String,
    /// Bytes of KV per token in the executor's own storage.
    pub kv_bytes_per_token: u64,
    /// How K and V are stored.
    pub kv_dtype: KvDtype,
    pub max_model_len: usize,
    pub vocab_size: usize,
    /// Anything worth knowing (threads, kernels, calibration file).
    pub details: Vec<String>,
    /// Blocks of the backend's own KV pool (a GPU preset sized from its
    /// memory); `None`: the lab's default budget decides.
    pub pool_blocks: Option<usize>,
}

pub trait LabBackend {
    type Exec: Executor;
    type Clk: Clock;

    fn info(&self) -> BackendInfo;
    fn tokenize(&self, text: &str) -> Vec<TokenId>;
    /// `Some(vocab)` when the backend has no tokenizer and prompts are
    /// synthetic token ids below `vocab` (a simulated preset).
    fn vocab_for_synthetic_prompts(&self) -> Option<u32> {
        None
    }
    /// A fresh executor for a pool of `num_blocks` blocks of `block_size`
    /// tokens, and a clock reading 0.
    fn start(&mut self, num_blocks: usize, block_size: usize) -> Result<(Self::Exec, Self::Clk), String>;
    /// Takes the executor back after a run (to reuse its weights).
    fn finish(&mut self, executor: Self::Exec);
    /// The block manager a run of `pool`'s shape uses: `None` is kvscope's
    /// native one (the default); a backend may plug in another, such as a
    /// student's Python manager (`kvscope lab --block-manager`).
    fn block_manager(&mut self, _pool: &PoolConfig) -> Result<Option<Box<dyn KvBlockManager>>, String> {
        Ok(None)
    }
    /// The KV storage formats this backend can run, for the KV-precision
    /// extension (fewer than two: the extension is skipped).
    fn kv_dtypes(&self) -> Vec<KvDtype> {
        Vec::new()
    }
    /// Makes every later `start` store KV as `dtype` (`info` then reports
    /// its size).
    fn set_kv_dtype(&mut self, dtype: KvDtype) -> Result<(), String> {
        Err(format!("this backend cannot store KV as {dtype}"))
    }
    /// Teacher-forced over `tokens` with KV stored as `dtype`: for each
    /// position but the last, the top-1 token and the log-probability of the
    /// token that follows. `None`: the backend computes no logits (the
    /// simulator).
    fn next_token_scores(&mut self, _dtype: KvDtype, _tokens: &[TokenId]) -> Option<Result<Vec<NextToken>, String>> {
        None
    }
}

/// What a model predicted at one position of a teacher-forced sequence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NextToken {
    /// The most likely next token.
    pub top1: TokenId,
    /// Its lead over the second most likely, in logits (small: a near-tie
    /// that any perturbation may flip).
    pub margin: f32,
    /// Log-probability of the token that actually follows.
    pub logprob: f32,
}
