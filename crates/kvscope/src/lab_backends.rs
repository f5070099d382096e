//! The lab's two backends: the real model on this CPU (wall clock), and the
//! simulator (simulated clock).

use crate::real_model::LoadedModel;
use kvscope_core::{PoolConfig, SimClock, TokenId, WallClock};
use kvscope_lab::backend::{BackendInfo, LabBackend};
use kvscope_model::executor::ModelExecutor;
use kvscope_sim::cost::CostModel;
use kvscope_sim::executor::SimExecutor;

pub struct RealBackend {
    pub model: LoadedModel,
}

impl LabBackend for RealBackend {
    type Exec = ModelExecutor;
    type Clk = WallClock;

    fn info(&self) -> BackendInfo {
        let c = self.model.llama.config();
        BackendInfo {
            executor: "real".into(),
            model: self.model.name(),
            kv_bytes_per_token: kvscope_model::kv_storage::bytes_per_token(c) as u64,
            kv_dtype: "f32".into(),
            max_model_len: c.context_length,
            vocab_size: c.vocab_size,
            details: vec![format!(
                "{} layers, {} KV heads × head_dim {}, {} threads",
                c.n_layers,
                c.n_kv_heads,
                c.head_dim,
                std::thread::available_parallelism().map_or(1, |n| n.get())
            )],
        }
    }

    fn tokenize(&self, text: &str) -> Vec<TokenId> {
        self.model.tokenizer.encode(text).unwrap_or_default()
    }

    fn start(&mut self, num_blocks: usize, block_size: usize) -> Result<(ModelExecutor, WallClock), String> {
        let bytes_per_token = kvscope_model::kv_storage::bytes_per_token(self.model.llama.config()) as u64;
        let pool = PoolConfig {
            num_blocks,
            block_size,
            enable_prefix_caching: false,
            bytes_per_block: bytes_per_token.saturating_mul(block_size as u64),
        };
        if let Some(available) = kvscope_model::host_memory::available_bytes() {
            pool.check_memory(available).map_err(|e| e.to_string())?;
        }
        let exec =
            ModelExecutor::new(self.model.llama.clone(), num_blocks, block_size, 0).map_err(|e| e.to_string())?;
        Ok((exec, WallClock::new()))
    }

    fn finish(&mut self, _executor: ModelExecutor) {}
}

/// The simulator with the real model's tokenizer (so prompts are the same
/// token sequences as in a real run).
pub struct SimBackend {
    pub model: LoadedModel,
    pub cost: CostModel,
    pub kv_bytes_per_token: u64,
    pub description: String,
}

impl LabBackend for SimBackend {
    type Exec = SimExecutor;
    type Clk = SimClock;

    fn info(&self) -> BackendInfo {
        let c = self.model.llama.config();
        BackendInfo {
            executor: "sim".into(),
            model: self.model.name(),
            kv_bytes_per_token: self.kv_bytes_per_token,
            kv_dtype: "f32 (as the real executor stores it)".into(),
            max_model_len: c.context_length,
            vocab_size: c.vocab_size,
            details: vec![self.description.clone()],
        }
    }

    fn tokenize(&self, text: &str) -> Vec<TokenId> {
        self.model.tokenizer.encode(text).unwrap_or_default()
    }

    fn start(&mut self, _num_blocks: usize, _block_size: usize) -> Result<(SimExecutor, SimClock), String> {
        let clock = SimClock::new();
        Ok((SimExecutor::new(self.cost.clone(), clock.clone()), clock))
    }

    fn finish(&mut self, _executor: SimExecutor) {}
}
