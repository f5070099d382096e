//! What one KV slot costs: the number format K and V are stored in.
//!
//! The pool's capacity is bytes divided by bytes per token, so the storage
//! format is a capacity knob as real as the pool size (vLLM's
//! `--kv-cache-dtype`, llama.cpp's `-ctk/-ctv`). This module only names the
//! formats and sizes them; the real engine's storage (kvscope-model) and the
//! simulator's pool plan both size slots with [`KvDtype::bytes_per_head`], so
//! the two can never disagree about how many tokens a pool holds.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvDtype {
    /// IEEE single precision: exact, the reference.
    F32,
    /// IEEE half precision, round to nearest even.
    F16,
    /// bfloat16 (the GPU presets' native KV format; simulator only).
    Bf16,
    /// Symmetric int8 with one f32 scale per token and KV head.
    Int8,
    /// 8-bit float with a per-tensor scale, as vLLM stores it (simulator only).
    Fp8,
}

impl KvDtype {
    /// Every format, in the order reports list them.
    pub const ALL: [KvDtype; 5] = [KvDtype::F32, KvDtype::F16, KvDtype::Bf16, KvDtype::Int8, KvDtype::Fp8];
    /// The formats the CPU engine stores (the others exist only as sizes in
    /// the simulator's GPU presets).
    pub const CPU: [KvDtype; 3] = [KvDtype::F32, KvDtype::F16, KvDtype::Int8];

    pub fn as_str(self) -> &'static str {
        match self {
            KvDtype::F32 => "f32",
            KvDtype::F16 => "f16",
            KvDtype::Bf16 => "bf16",
            KvDtype::Int8 => "int8",
            KvDtype::Fp8 => "fp8",
        }
    }

    /// Bytes of one stored value.
    pub fn value_bytes(self) -> u64 {
        match self {
            KvDtype::F32 => 4,
            KvDtype::F16 | KvDtype::Bf16 => 2,
            KvDtype::Int8 | KvDtype::Fp8 => 1,
        }
    }

    /// Bytes of per-token metadata per KV head: int8 keeps one f32 scale
    /// for each token's head vector; fp8's scale is one per tensor, which
    /// rounds to nothing per token.
    pub fn scale_bytes_per_head(self) -> u64 {
        match self {
            KvDtype::Int8 => 4,
            _ => 0,
        }
    }

    /// Bytes one token's K (or V) takes for one KV head of `head_dim` values.
    pub fn bytes_per_head(self, head_dim: usize) -> u64 {
        head_dim as u64 * self.value_bytes() + self.scale_bytes_per_head()
    }

    /// Bytes one token's K and V take across `layers` layers of `kv_heads`
    /// heads.
    pub fn bytes_per_token(self, layers: usize, kv_heads: usize, head_dim: usize) -> u64 {
        2 * layers as u64 * kv_heads as u64 * self.bytes_per_head(head_dim)
    }

    /// Whether the CPU engine can store this format.
    pub fn runs_on_cpu(self) -> bool {
        Self::CPU.contains(&self)
    }
}

impl fmt::Display for KvDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown KV dtype {0:?}: use one of f32, f16, bf16, int8, fp8 (the CPU engine stores f32, f16 and int8)")]
pub struct UnknownKvDtype(pub String);

impl FromStr for KvDtype {
    type Err = UnknownKvDtype;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let alias = match lower.as_str() {
            "float32" | "fp32" => "f32",
            "float16" | "fp16" | "half" => "f16",
            "bfloat16" => "bf16",
            "q8" | "q8_0" | "i8" => "int8",
            "fp8_e4m3" | "fp8_e5m2" => "fp8",
            other => other,
        };
        Self::ALL.into_iter().find(|d| d.as_str() == alias).ok_or_else(|| UnknownKvDtype(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_of_the_default_model() {
        // SmolLM2-135M: 30 layers, 3 KV heads of 64.
        assert_eq!(KvDtype::F32.bytes_per_token(30, 3, 64), 46_080);
        assert_eq!(KvDtype::F16.bytes_per_token(30, 3, 64), 23_040);
        // 64 bytes + one f32 scale per head and token
        assert_eq!(KvDtype::Int8.bytes_per_token(30, 3, 64), 12_240);
        assert_eq!(KvDtype::Fp8.bytes_per_token(30, 3, 64), 11_520);
    }

    #[test]
    fn names_round_trip_and_unknown_names_say_what_exists() {
        for d in KvDtype::ALL {
            assert_eq!(d.as_str().parse::<KvDtype>().unwrap(), d);
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{d}\""));
        }
        assert_eq!("FP16".parse::<KvDtype>().unwrap(), KvDtype::F16);
        let err = "int4".parse::<KvDtype>().unwrap_err().to_string();
        assert!(err.contains("int4") && err.contains("f16"), "{err}");
    }
}
