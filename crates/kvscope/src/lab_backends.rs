//! The lab's two backends: the real model on this CPU (wall clock), and the
//! simulator (simulated clock).

use crate::real_model::LoadedModel;
use kvscope_core::{KvBlockManager, PoolConfig, SimClock, TokenId, WallClock};
use kvscope_exercise::checker::Checker;
use kvscope_exercise::{HostConfig, PyBlockManager};
use kvscope_lab::backend::{BackendInfo, LabBackend};
use kvscope_model::executor::ModelExecutor;
use kvscope_sim::cost::CostModel;
use kvscope_sim::executor::SimExecutor;
use std::sync::{Arc, Mutex};

pub struct RealBackend {
    pub model: LoadedModel,
    /// A student's Python block manager to run instead of kvscope's
    /// (`--block-manager`).
    pub block_manager: Option<HostConfig>,
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
                "{} layers, {} KV heads × head_dim {}, {} threads, {} kernels",
                c.n_layers,
                c.n_kv_heads,
                c.head_dim,
                std::thread::available_parallelism().map_or(1, |n| n.get()),
                self.model.kernels()
            )],
        }
    }

    fn tokenize(&self, text: &str) -> Vec<TokenId> {
        self.model.tokenizer.encode(text).unwrap_or_default()
    }

    fn start(&mut self, num_blocks: usize, block_size: usize) -> Result<(ModelExecutor, WallClock), String> {
        let exec =
            ModelExecutor::new(self.model.llama.clone(), num_blocks, block_size, 0).map_err(|e| e.to_string())?;
        Ok((exec, WallClock::new()))
    }

    fn finish(&mut self, _executor: ModelExecutor) {}

    /// The student's manager for every run with prefix caching on; the
    /// probe's caching-off baseline stays native (a nano-vLLM BlockManager
    /// has no switch for prefix caching).
    fn block_manager(&mut self, pool: &PoolConfig) -> Result<Option<Box<dyn KvBlockManager>>, String> {
        let Some(host) = &self.block_manager else { return Ok(None) };
        if !pool.enable_prefix_caching {
            return Ok(None);
        }
        // The lab keeps only the checks that protect the engine (valid ids,
        // a slot for every token); grading is `kvscope exercise check`'s job.
        let checker = Arc::new(Mutex::new(Checker::new(pool.num_blocks, pool.block_size)));
        let manager = PyBlockManager::start(host.clone(), pool.clone(), checker).map_err(|e| e.to_string())?;
        Ok(Some(Box::new(manager)))
    }
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
