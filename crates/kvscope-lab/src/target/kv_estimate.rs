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

/// A local GGUF's architecture, to estimate a target serving the same
/// model: the file's stem (what `kvscope serve` names it) and its estimate.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalModel {
    pub name: String,
    pub estimate: KvEstimate,
}

/// From a GGUF header's figures, KV stored in 16 bits (the usual serving
/// format; an engine storing fp8 or int8 KV holds about half).
pub fn from_gguf_header(path: &str, layers: usize, kv_heads: usize, head_dim: usize) -> KvEstimate {
    KvEstimate {
        bytes_per_token: (2 * layers * kv_heads * head_dim * 2) as u64,
        from: format!(
            "the GGUF header of {path}: 2 × {layers} layers × {kv_heads} KV heads × {head_dim} dims × 2 bytes (16-bit KV assumed)"
        ),
    }
}

impl LocalModel {
    /// Whether the target serves this model: its id is the file's stem or
    /// name, or a path ending in that name (llama-server's id is the path
    /// it loaded).
    pub fn serves(&self, model_id: Option<&str>) -> bool {
        model_id.is_some_and(|id| {
            let file = id.rsplit(['/', '\\']).next().unwrap_or(id);
            file.trim_end_matches(".gguf") == self.name
        })
    }
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

#[cfg(test)]
mod local_tests {
    use super::*;

    #[test]
    fn a_local_gguf_estimates_a_target_serving_the_same_model() {
        let local = LocalModel { name: "m.Q4_1".into(), estimate: from_gguf_header("m.Q4_1.gguf", 30, 3, 64) };
        assert_eq!(local.estimate.bytes_per_token, 2 * 30 * 3 * 64 * 2);
        assert!(local.serves(Some("m.Q4_1")) && local.serves(Some("m.Q4_1.gguf")));
        assert!(local.serves(Some("/root/.cache/kvscope/m.Q4_1.gguf")), "llama-server names the path it loaded");
        assert!(!local.serves(Some("other")) && !local.serves(None) && !local.serves(Some("/m.Q4_1/other.gguf")));
    }
}
