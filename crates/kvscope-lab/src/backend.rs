//! What the lab needs from an engine backend: a tokenizer for its prompts,
//! and an executor plus clock per run. The real model and the simulator
//! both provide one.

use kvscope_core::{Clock, Executor, KvBlockManager, PoolConfig, TokenId};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct BackendInfo {
    /// `real` or `sim`.
    pub executor: String,
    pub model: String,
    /// Bytes of KV per token in the executor's own storage.
    pub kv_bytes_per_token: u64,
    /// What a KV entry is stored as, e.g. "f32".
    pub kv_dtype: String,
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
}
