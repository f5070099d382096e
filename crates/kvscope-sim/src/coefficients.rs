//! The calibrated linear cost model's coefficients (see the `cost` module):
//! seconds per unit of each feature of a [`BatchShape`], fitted on one
//! machine for one model and carried over to others.

use crate::batch_shape::{BatchShape, FEATURES};
use crate::model_preset::{model_preset, ModelPreset};
use serde::{Deserialize, Serialize};

/// Fitted seconds per unit of each feature of [`BatchShape::features`],
/// for the model they were measured on. All are >= 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearCoefficients {
    /// Preset name of the model the steps were measured on.
    pub model: String,
    /// Seconds per step.
    pub overhead_s: f64,
    /// Seconds per prompt token computed.
    pub per_prefill_token_s: f64,
    /// Seconds per decoding sequence.
    pub per_decode_seq_s: f64,
    /// Seconds per prefill (query, key) attention pair.
    pub per_prefill_attention_pair_s: f64,
    /// Seconds per context token a decoding sequence reads.
    pub per_decode_context_token_s: f64,
    /// Seconds per tile of `row_tile` computed tokens (0 in files written
    /// before this term existed).
    #[serde(default)]
    pub per_row_tile_s: f64,
    /// Tokens the kernels run per pass over the weights, as fitted.
    #[serde(default = "default_row_tile")]
    pub row_tile: u64,
}

fn default_row_tile() -> u64 {
    4
}

impl LinearCoefficients {
    pub fn as_array(&self) -> [f64; FEATURES] {
        [
            self.overhead_s,
            self.per_prefill_token_s,
            self.per_decode_seq_s,
            self.per_prefill_attention_pair_s,
            self.per_decode_context_token_s,
            self.per_row_tile_s,
        ]
    }

    pub fn from_array(model: &str, c: [f64; FEATURES], row_tile: u64) -> Self {
        LinearCoefficients {
            model: model.into(),
            overhead_s: c[0],
            per_prefill_token_s: c[1],
            per_decode_seq_s: c[2],
            per_prefill_attention_pair_s: c[3],
            per_decode_context_token_s: c[4],
            per_row_tile_s: c[5],
            row_tile,
        }
    }

    pub fn seconds(&self, shape: &BatchShape) -> f64 {
        self.as_array().iter().zip(shape.features(self.row_tile)).map(|(c, x)| c * x).sum()
    }

    /// The coefficients carried over to another model on the same machine:
    /// per-token terms scale with the linear FLOPs per token, attention
    /// terms with the attention FLOPs per pair, the overhead stays. A
    /// first-order transfer (it ignores cache effects and weight formats);
    /// unchanged when the source model is not a known preset.
    pub fn scaled_to(&self, target: &ModelPreset) -> Self {
        let Some(source) = model_preset(&self.model) else { return self.clone() };
        let token = target.linear_flops_per_token() / source.linear_flops_per_token();
        let attn = target.attention_flops_per_pair() / source.attention_flops_per_pair();
        LinearCoefficients {
            model: target.name.clone(),
            overhead_s: self.overhead_s,
            per_prefill_token_s: self.per_prefill_token_s * token,
            per_decode_seq_s: self.per_decode_seq_s * token,
            per_prefill_attention_pair_s: self.per_prefill_attention_pair_s * attn,
            per_decode_context_token_s: self.per_decode_context_token_s * attn,
            // A pass over the weights: it scales as the weights do.
            per_row_tile_s: self.per_row_tile_s * token,
            row_tile: self.row_tile,
        }
    }
}
