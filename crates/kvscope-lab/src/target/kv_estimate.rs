//! KV bytes per token, estimated from a model's architecture: 2 (K and V)
//! × layers × KV heads × head dimension × bytes per element. Read from a
//! Hugging Face `config.json` (`--model-config`), or from the bytes per
//! block an engine reports. Always labelled an estimate: an engine may
//! pad, quantize or share KV across layers.

use serde::Serialize;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct KvEstimate {
    pub bytes_per_token: u64,
    /// How it was found, for the report.
    pub from: String,
}

/// From an HF `config.json`: `num_hidden_layers`, `num_key_value_heads`
/// (else `num_attention_heads`), `head_dim` (else `hidden_size` /
/// `num_attention_heads`), `torch_dtype` (2 bytes unless `float32`).
pub fn from_hf_config(text: &str, path: &str) -> Result<(KvEstimate, Option<usize>), String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("{path} is not JSON: {e}"))?;
    let num = |k: &str| v[k].as_u64();
    let need = |k: &str| num(k).ok_or_else(|| format!("{path} has no {k}: give a Hugging Face config.json"));
    let layers = need("num_hidden_layers")?;
    let heads = need("num_attention_heads")?;
    let kv_heads = num("num_key_value_heads").unwrap_or(heads);
    let head_dim = match num("head_dim") {
        Some(d) => d,
        None => need("hidden_size")? / heads.max(1),
    };
    let dtype = v["torch_dtype"].as_str().unwrap_or("bfloat16");
    let elem = if dtype == "float32" { 4 } else { 2 };
    let bytes_per_token = 2 * layers * kv_heads * head_dim * elem;
    let from = format!("{path}: 2 × {layers} layers × {kv_heads} KV heads × {head_dim} dims × {elem} bytes ({dtype})");
    Ok((KvEstimate { bytes_per_token, from }, num("vocab_size").map(|v| v as usize)))
}

/// From the engine's own bytes per block.
pub fn from_engine(bytes_per_block: u64, block_size: usize, metric: &str) -> KvEstimate {
    KvEstimate {
        bytes_per_token: bytes_per_block / block_size.max(1) as u64,
        from: format!("{metric}{{bytes_per_block}} / block_size as the engine reports them"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen3_0_6b_from_its_config() {
        let config = r#"{"num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
            "head_dim": 128, "hidden_size": 1024, "torch_dtype": "bfloat16", "vocab_size": 151936}"#;
        let (est, vocab) = from_hf_config(config, "config.json").unwrap();
        assert_eq!(est.bytes_per_token, 2 * 28 * 8 * 128 * 2);
        assert_eq!(vocab, Some(151936));
        assert!(from_hf_config("{}", "x.json").unwrap_err().contains("num_hidden_layers"));
    }
}
