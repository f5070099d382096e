//! `--model`, `--kernels` and `--kv-dtype`: the one clap argument group
//! for the model and its KV, flattened into every command that runs the
//! real model or prices one (`generate`, `lab`, `serve`, `sim`, `bench
//! throughput`, `exercise check`).

use crate::kernels::Kernels;
use crate::kv_storage::{self, KvStorageError};
use kvscope_core::KvDtype;
use std::path::PathBuf;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct ModelArgs {
    /// A GGUF file to use instead of the default model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Linear-layer numerics: `int8` (the fast engine: int8 activations ×
    /// stored Q4_1/Q8_0 weights) or `f32` (dequantized weights, f32 FMAs:
    /// the reference path).
    #[arg(long, default_value = "int8")]
    pub kernels: Kernels,
    /// How the KV cache stores K and V: `f16` (the default: half the bytes
    /// of f32), `int8` (a quarter, plus one scale per token and head) or
    /// `f32` (exact: the reference path). A pool holds bytes ÷ bytes per
    /// token tokens. (With `sim` or `lab --executor sim --model-preset`,
    /// also bf16 or fp8; the preset's own bf16 when not given.)
    #[arg(long, alias = "kv-cache-dtype")]
    pub kv_dtype: Option<KvDtype>,
}

impl ModelArgs {
    /// `--kv-dtype`, or the CPU engine's default.
    pub fn kv_dtype(&self) -> KvDtype {
        self.kv_dtype.unwrap_or(kv_storage::DEFAULT_KV_DTYPE)
    }

    /// `--kv-dtype` must name a format the CPU engine stores: checked by
    /// every command that runs the real model, before the model loads.
    pub fn check_kv_dtype(&self) -> Result<(), KvStorageError> {
        kv_storage::check_cpu_dtype(self.kv_dtype())
    }
}
