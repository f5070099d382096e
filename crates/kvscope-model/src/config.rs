//! The model's shape and numerics, read from GGUF metadata.
//!
//! Llama is the one architecture wired end to end. Qwen2 (attention biases,
//! NEOX RoPE) and Qwen3 (per-head q/k RMSNorm, NEOX RoPE) differ only in the
//! flags below, so adding them touches the loader, not this struct's shape.

use crate::gguf::{Gguf, MetaValue};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("architecture {0:?} is not supported (supported: llama); use a Llama-family GGUF")]
    UnsupportedArch(String),
    #[error("GGUF metadata lacks {0}; the file is not a complete model export")]
    Missing(String),
    #[error("GGUF metadata {key} = {value} is invalid: {why}")]
    Invalid { key: String, value: String, why: String },
}

/// How RoPE pairs up the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// ggml mode 0: rotate adjacent pairs `(2i, 2i+1)`. GGUF Llama exports
    /// permute the Q/K weights so that this matches HF's rotate-half.
    Interleaved,
    /// ggml NEOX mode: rotate `(i, i + d/2)` (Qwen2/Qwen3 GGUFs).
    Neox,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub arch: String,
    pub n_layers: usize,
    pub hidden: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_hidden: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub rope_base: f32,
    pub rope_style: RopeStyle,
    pub rms_eps: f32,
    /// Q/K/V projections carry a bias (Qwen2).
    pub attn_bias: bool,
    /// Per-head RMSNorm on q and k before RoPE (Qwen3).
    pub qk_norm: bool,
}

impl ModelConfig {
    pub fn from_gguf(g: &Gguf) -> Result<Self, ConfigError> {
        let arch = g
            .get("general.architecture")
            .and_then(MetaValue::as_str)
            .ok_or_else(|| ConfigError::Missing("general.architecture".into()))?
            .to_string();
        let rope_style = match arch.as_str() {
            "llama" => RopeStyle::Interleaved,
            other => return Err(ConfigError::UnsupportedArch(other.to_string())),
        };
        let key = |k: &str| format!("{arch}.{k}");
        let uint = |k: &str| -> Result<usize, ConfigError> {
            let full = key(k);
            let v = g.get(&full).ok_or_else(|| ConfigError::Missing(full.clone()))?;
            let n = v.as_u64().ok_or_else(|| ConfigError::Invalid {
                key: full.clone(),
                value: format!("{v:?}"),
                why: "expected a non-negative integer".into(),
            })?;
            if n == 0 || n > 1 << 24 {
                return Err(ConfigError::Invalid { key: full, value: n.to_string(), why: "out of range".into() });
            }
            Ok(n as usize)
        };
        let float = |k: &str, default: Option<f64>| -> Result<f32, ConfigError> {
            let full = key(k);
            match g.get(&full).and_then(MetaValue::as_f64).or(default) {
                Some(v) if v.is_finite() && v > 0.0 => Ok(v as f32),
                Some(v) => Err(ConfigError::Invalid { key: full, value: v.to_string(), why: "must be > 0".into() }),
                None => Err(ConfigError::Missing(full)),
            }
        };

        let hidden = uint("embedding_length")?;
        let n_heads = uint("attention.head_count")?;
        let n_kv_heads = match g.get(&key("attention.head_count_kv")) {
            Some(_) => uint("attention.head_count_kv")?,
            None => n_heads,
        };
        let head_dim = match g.get(&key("attention.key_length")) {
            Some(_) => uint("attention.key_length")?,
            None => hidden / n_heads,
        };
        let vocab_size = match g.get(&key("vocab_size")) {
            Some(_) => uint("vocab_size")?,
            None => g
                .get("tokenizer.ggml.tokens")
                .and_then(MetaValue::as_array)
                .map(|a| a.len())
                .ok_or_else(|| ConfigError::Missing(key("vocab_size")))?,
        };
        let cfg = ModelConfig {
            n_layers: uint("block_count")?,
            hidden,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_hidden: uint("feed_forward_length")?,
            vocab_size,
            context_length: uint("context_length")?,
            rope_base: float("rope.freq_base", Some(10000.0))?,
            rope_style,
            rms_eps: float("attention.layer_norm_rms_epsilon", None)?,
            attn_bias: false,
            qk_norm: false,
            arch: arch.clone(),
        };
        let invalid = |k: &str, why: &str| ConfigError::Invalid { key: key(k), value: String::new(), why: why.into() };
        if n_heads % n_kv_heads != 0 || n_heads / n_kv_heads > 16 {
            return Err(invalid(
                "attention.head_count_kv",
                "must divide attention.head_count, at most 16 query heads per KV head",
            ));
        }
        if head_dim % 2 != 0 {
            return Err(invalid("attention.key_length", "head dimension must be even for RoPE"));
        }
        if let Some(rot) = g.get(&key("rope.dimension_count")).and_then(MetaValue::as_u64) {
            if rot as usize != head_dim {
                return Err(invalid("rope.dimension_count", "partial rotary embeddings are not supported"));
            }
        }
        Ok(cfg)
    }

    /// Width of the fused q|k|v projection output.
    pub fn qkv_dim(&self) -> usize {
        (self.n_heads + 2 * self.n_kv_heads) * self.head_dim
    }

    /// Width of one token's K (or V) row across all KV heads.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Query heads sharing one KV head (grouped-query attention).
    pub fn group_size(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::tests::GgufWriter;

    fn llama_meta() -> GgufWriter {
        let mut w = GgufWriter::new();
        w.str("general.architecture", "llama")
            .u32("llama.block_count", 2)
            .u32("llama.context_length", 128)
            .u32("llama.embedding_length", 64)
            .u32("llama.feed_forward_length", 96)
            .u32("llama.attention.head_count", 4)
            .u32("llama.attention.head_count_kv", 2)
            .f32("llama.rope.freq_base", 10000.0)
            .f32("llama.attention.layer_norm_rms_epsilon", 1e-5)
            .u32("llama.vocab_size", 50);
        w
    }

    #[test]
    fn reads_llama_shape() {
        let g = Gguf::from_bytes(llama_meta().build()).unwrap();
        let c = ModelConfig::from_gguf(&g).unwrap();
        assert_eq!((c.n_layers, c.hidden, c.n_heads, c.n_kv_heads, c.head_dim), (2, 64, 4, 2, 16));
        assert_eq!((c.qkv_dim(), c.kv_dim(), c.group_size()), (128, 32, 2));
        assert_eq!(c.rope_style, RopeStyle::Interleaved);
    }

    #[test]
    fn missing_keys_and_bad_arch_are_named() {
        let mut w = GgufWriter::new();
        w.str("general.architecture", "mamba");
        let e = ModelConfig::from_gguf(&Gguf::from_bytes(w.build()).unwrap()).unwrap_err();
        assert!(e.to_string().contains("mamba"), "{e}");
        let mut w = GgufWriter::new();
        w.str("general.architecture", "llama");
        let e = ModelConfig::from_gguf(&Gguf::from_bytes(w.build()).unwrap()).unwrap_err();
        assert!(e.to_string().contains("llama.embedding_length"), "{e}");
        let mut w = llama_meta();
        w.u32("llama.attention.head_count_kv", 3);
        assert!(ModelConfig::from_gguf(&Gguf::from_bytes(w.build()).unwrap()).is_err());
    }
}
