//! How much KV a device holds: memory × utilisation − weights − activation
//! reserve, cut into blocks. This is the number that decides how many
//! requests can be live at once.

use crate::error::SimError;
use crate::hardware::HardwareProfile;
use crate::model_preset::ModelPreset;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The pool's arithmetic, every term kept so it can be printed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvPoolPlan {
    pub model: String,
    pub hardware: String,
    pub memory_bytes: u64,
    /// Share of memory the engine may use (vLLM's `gpu_memory_utilization`).
    pub memory_utilization: f64,
    /// `memory_bytes × memory_utilization`.
    pub usable_bytes: u64,
    pub weight_bytes: u64,
    pub activation_reserve_bytes: u64,
    /// `usable − weights − activation reserve`.
    pub pool_bytes: u64,
    /// How K and V are stored.
    pub kv_dtype: kvscope_core::KvDtype,
    pub kv_bytes_per_token: u64,
    pub block_size: usize,
    pub bytes_per_block: u64,
    pub num_blocks: usize,
}

impl KvPoolPlan {
    /// Token slots in the pool.
    pub fn kv_tokens(&self) -> u64 {
        self.num_blocks as u64 * self.block_size as u64
    }
}

/// Plans the KV pool of `model` on `hw`. Fails when the weights and the
/// reserve leave no room for even one block.
pub fn kv_pool(
    model: &ModelPreset,
    hw: &HardwareProfile,
    memory_utilization: f64,
    activation_reserve_bytes: u64,
    block_size: usize,
) -> Result<KvPoolPlan, SimError> {
    if !(memory_utilization > 0.0 && memory_utilization <= 1.0) {
        return Err(SimError::BadUtilization(memory_utilization));
    }
    if block_size == 0 {
        return Err(SimError::BadBlockSize);
    }
    let usable_bytes = (hw.memory_bytes as f64 * memory_utilization) as u64;
    let weight_bytes = model.weight_bytes();
    let pool_bytes = usable_bytes.saturating_sub(weight_bytes).saturating_sub(activation_reserve_bytes);
    let kv_bytes_per_token = model.kv_bytes_per_token();
    let bytes_per_block = kv_bytes_per_token * block_size as u64;
    let num_blocks = (pool_bytes / bytes_per_block) as usize;
    if num_blocks == 0 {
        return Err(SimError::NoRoomForKv {
            model: model.name.clone(),
            hardware: hw.name.clone(),
            usable_bytes,
            weight_bytes,
            activation_reserve_bytes,
        });
    }
    Ok(KvPoolPlan {
        model: model.name.clone(),
        hardware: hw.name.clone(),
        memory_bytes: hw.memory_bytes,
        memory_utilization,
        usable_bytes,
        weight_bytes,
        activation_reserve_bytes,
        pool_bytes,
        kv_dtype: model.kv_dtype,
        kv_bytes_per_token,
        block_size,
        bytes_per_block,
        num_blocks,
    })
}

/// An estimate of the activation memory a step needs at most, as a
/// reserve: per batched token, the hidden state, residual, QKV/attention
/// output (≈ 4 · hidden) and the MLP's gate and up projections
/// (2 · intermediate) at 2 bytes; plus f32 logits for every running
/// sequence. vLLM measures this by a profiling run; this is the
/// order-of-magnitude stand-in.
pub fn activation_reserve_estimate(model: &ModelPreset, max_batched_tokens: usize, max_running: usize) -> u64 {
    let per_token = (4 * model.hidden + 2 * model.intermediate) as u64 * 2;
    let logits = (max_running * model.vocab) as u64 * 4;
    max_batched_tokens as u64 * per_token + logits
}

fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

impl fmt::Display for KvPoolPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "KV pool for {} on {}:", self.model, self.hardware)?;
        writeln!(
            f,
            "  memory {:.2} GiB × utilization {:.2} = {:.2} GiB usable",
            gib(self.memory_bytes),
            self.memory_utilization,
            gib(self.usable_bytes)
        )?;
        writeln!(f, "  − weights            {:.2} GiB", gib(self.weight_bytes))?;
        writeln!(f, "  − activation reserve {:.2} GiB", gib(self.activation_reserve_bytes))?;
        writeln!(f, "  = KV pool            {:.2} GiB ({} bytes)", gib(self.pool_bytes), self.pool_bytes)?;
        writeln!(
            f,
            "  KV per token {} B ({}); block of {} tokens = {} B",
            self.kv_bytes_per_token, self.kv_dtype, self.block_size, self.bytes_per_block
        )?;
        write!(f, "  {} blocks = {} tokens of KV", self.num_blocks, self.kv_tokens())
    }
}
