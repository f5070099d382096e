//! Model presets: the shape numbers that decide a model's cost per token and
//! its KV size per token, from each model's published `config.json` and
//! model card.

use kvscope_core::KvDtype;
use serde::{Deserialize, Serialize};

/// One model's architecture, as far as cost and KV size are concerned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelPreset {
    pub name: String,
    pub layers: usize,
    pub hidden: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention shares each among
    /// `heads / kv_heads` query heads).
    pub kv_heads: usize,
    pub head_dim: usize,
    /// MLP inner width.
    pub intermediate: usize,
    pub vocab: usize,
    /// Total parameters (a tied embedding counted once), as published.
    pub params: u64,
    /// Parameters outside the embedding table and the LM head: the matmuls
    /// every computed token pays for.
    pub non_embedding_params: u64,
    /// Whether the LM head reuses the embedding table.
    pub tied_embeddings: bool,
    /// Bytes per weight as stored (2 for bf16; Q4_1 is 20 bytes per 32).
    pub weight_bytes_per_param: f64,
    /// How K and V are stored (bf16 on the GPU presets, as vLLM's `auto`
    /// stores them for bf16 models; the CPU engine's default for ours).
    pub kv_dtype: KvDtype,
    /// Longest context the model supports, in tokens.
    pub max_context: usize,
}

impl ModelPreset {
    /// Bytes of KV one token occupies: K and V, every layer, every KV head.
    pub fn kv_bytes_per_token(&self) -> u64 {
        self.kv_dtype.bytes_per_token(self.layers, self.kv_heads, self.head_dim)
    }

    /// Bytes of weights held in memory (and read once per engine step).
    pub fn weight_bytes(&self) -> u64 {
        (self.params as f64 * self.weight_bytes_per_param).round() as u64
    }

    /// FLOPs of the linear layers for one computed token (a multiply-add is
    /// two FLOPs), LM head excluded.
    pub fn linear_flops_per_token(&self) -> f64 {
        2.0 * self.non_embedding_params as f64
    }

    /// FLOPs of the LM head for one sampled token.
    pub fn lm_head_flops_per_sample(&self) -> f64 {
        2.0 * (self.hidden * self.vocab) as f64
    }

    /// Attention FLOPs for one (query, key) pair over all layers and query
    /// heads: Q·K and P·V, two FLOPs per multiply-add each.
    pub fn attention_flops_per_pair(&self) -> f64 {
        4.0 * (self.layers * self.heads * self.head_dim) as f64
    }

    /// The same model with KV stored in another format (e.g. fp8).
    pub fn with_kv_dtype(mut self, dtype: KvDtype) -> Self {
        self.kv_dtype = dtype;
        self
    }
}

/// Names accepted by [`model_preset`].
pub const MODEL_NAMES: [&str; 4] = ["smollm2-135m", "qwen3-0.6b", "qwen3-8b", "llama-3.1-8b"];

/// A preset by name (case-insensitive), or `None`.
pub fn model_preset(name: &str) -> Option<ModelPreset> {
    let p = match name.to_ascii_lowercase().as_str() {
        // HuggingFaceTB/SmolLM2-135M-Instruct config.json: 30 layers, hidden
        // 576, 9 heads / 3 KV heads (head_dim 64), intermediate 1536, vocab
        // 49152, tied embeddings, 8192 positions; 134.5M parameters. Our
        // GGUF stores the weights as Q4_1 (20 bytes per 32 weights) and
        // kvscope-model keeps KV in f32.
        "smollm2-135m" => ModelPreset {
            name: "smollm2-135m".into(),
            layers: 30,
            hidden: 576,
            heads: 9,
            kv_heads: 3,
            head_dim: 64,
            intermediate: 1536,
            vocab: 49152,
            params: 134_515_008,
            non_embedding_params: 134_515_008 - 49152 * 576,
            tied_embeddings: true,
            weight_bytes_per_param: 20.0 / 32.0,
            kv_dtype: KvDtype::F16,
            max_context: 8192,
        },
        // Qwen/Qwen3-0.6B config.json and model card: 28 layers, hidden
        // 1024, 16 Q / 8 KV heads, head_dim 128, intermediate 3072, vocab
        // 151936, tied embeddings, 40960 positions; 0.6B parameters, 0.44B
        // non-embedding; bf16.
        "qwen3-0.6b" => ModelPreset {
            name: "qwen3-0.6b".into(),
            layers: 28,
            hidden: 1024,
            heads: 16,
            kv_heads: 8,
            head_dim: 128,
            intermediate: 3072,
            vocab: 151_936,
            params: 600_000_000,
            non_embedding_params: 440_000_000,
            tied_embeddings: true,
            weight_bytes_per_param: 2.0,
            kv_dtype: KvDtype::Bf16,
            max_context: 40_960,
        },
        // Qwen/Qwen3-8B config.json and model card: 36 layers, hidden 4096,
        // 32 Q / 8 KV heads, head_dim 128, intermediate 12288, vocab 151936,
        // untied; 8.2B parameters, 6.95B non-embedding; 32768 native context
        // (40960 positions in config.json); bf16.
        "qwen3-8b" => ModelPreset {
            name: "qwen3-8b".into(),
            layers: 36,
            hidden: 4096,
            heads: 32,
            kv_heads: 8,
            head_dim: 128,
            intermediate: 12_288,
            vocab: 151_936,
            params: 8_200_000_000,
            non_embedding_params: 6_950_000_000,
            tied_embeddings: false,
            weight_bytes_per_param: 2.0,
            kv_dtype: KvDtype::Bf16,
            max_context: 32_768,
        },
        // meta-llama/Llama-3.1-8B config.json: 32 layers, hidden 4096, 32 Q /
        // 8 KV heads, head_dim 128, intermediate 14336, vocab 128256, untied,
        // 131072 context; 8.03B parameters, of which 2 × 128256 × 4096 =
        // 1.05B are the embedding and LM head; bf16.
        "llama-3.1-8b" => ModelPreset {
            name: "llama-3.1-8b".into(),
            layers: 32,
            hidden: 4096,
            heads: 32,
            kv_heads: 8,
            head_dim: 128,
            intermediate: 14_336,
            vocab: 128_256,
            params: 8_030_000_000,
            non_embedding_params: 8_030_000_000 - 2 * 128_256 * 4096,
            tied_embeddings: false,
            weight_bytes_per_param: 2.0,
            kv_dtype: KvDtype::Bf16,
            max_context: 131_072,
        },
        _ => return None,
    };
    Some(p)
}
