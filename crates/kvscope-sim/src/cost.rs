//! The cost of one engine step, from the shape of its batch.
//!
//! Two ways to price a step, both monotone in every input (more tokens,
//! more sequences or more context never take less time):
//!
//! - **Roofline** (GPU presets and the uncalibrated `cpu`):
//!   `t = overhead + max(FLOPs / (peak × compute_eff), bytes / (bandwidth × bandwidth_eff))`
//!   where FLOPs = 2 · non-embedding params · computed tokens
//!   \+ 2 · hidden · vocab · sampled tokens (LM head)
//!   \+ 4 · layers · heads · head_dim · attention (query, key) pairs, and
//!   bytes = weight bytes (read once per step)
//!   \+ KV bytes per token · (context tokens read + tokens written).
//! - **Calibrated linear** (the `cpu` profile after calibration):
//!   `t = c0 + c1 · prefill tokens + c2 · decode sequences
//!          + c3 · prefill attention pairs + c4 · decode context tokens
//!          + c5 · ⌈computed tokens / row tile⌉`
//!   with non-negative coefficients fitted to measured steps. The last
//!   term is the batch's composition as the int8 kernels see it: they run
//!   a tile of rows (tokens) at a time and unpack every weight once per
//!   tile, so a step of 5 decoding sequences costs nearly what 8 do (the
//!   fit picks the tile height that explains the measurements best).

use crate::batch_shape::BatchShape;
use crate::coefficients::LinearCoefficients;
use crate::hardware::HardwareProfile;
use crate::model_preset::ModelPreset;
use serde::{Deserialize, Serialize};

/// Which limit decided a step's time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    Compute,
    Memory,
    /// Priced by fitted coefficients.
    Calibrated,
}

/// One step's price with its parts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepCost {
    pub flops: f64,
    pub bytes: f64,
    /// FLOPs at effective peak, seconds.
    pub compute_s: f64,
    /// Bytes at effective bandwidth, seconds.
    pub memory_s: f64,
    pub overhead_s: f64,
    /// The step's duration, seconds.
    pub total_s: f64,
    pub bound: Bound,
}

/// Prices steps of one model on one piece of hardware.
#[derive(Clone, Debug)]
pub struct CostModel {
    model: ModelPreset,
    hardware: HardwareProfile,
    linear: Option<LinearCoefficients>,
    // Precomputed per-unit figures (the simulator prices every step).
    flops_per_token: f64,
    flops_per_sample: f64,
    flops_per_pair: f64,
    weight_bytes: f64,
    kv_bytes_per_token: f64,
    flops_rate: f64,
    bytes_rate: f64,
}

impl CostModel {
    pub fn new(model: ModelPreset, hardware: HardwareProfile) -> Self {
        let linear = hardware.calibrated.as_ref().map(|c| c.scaled_to(&model));
        CostModel {
            flops_per_token: model.linear_flops_per_token(),
            flops_per_sample: model.lm_head_flops_per_sample(),
            flops_per_pair: model.attention_flops_per_pair(),
            weight_bytes: model.weight_bytes() as f64,
            kv_bytes_per_token: model.kv_bytes_per_token() as f64,
            flops_rate: hardware.peak_flops * hardware.compute_efficiency,
            bytes_rate: hardware.bandwidth_bytes_per_s * hardware.bandwidth_efficiency,
            model,
            hardware,
            linear,
        }
    }

    pub fn model(&self) -> &ModelPreset {
        &self.model
    }

    /// The same costs with KV stored as `dtype` (only the KV bytes change).
    pub fn with_kv_dtype(&self, dtype: kvscope_core::KvDtype) -> CostModel {
        CostModel::new(self.model.clone().with_kv_dtype(dtype), self.hardware.clone())
    }
    pub fn hardware(&self) -> &HardwareProfile {
        &self.hardware
    }
    /// The fitted coefficients in use (scaled to this model), if any.
    pub fn linear(&self) -> Option<&LinearCoefficients> {
        self.linear.as_ref()
    }

    /// Seconds one step of this shape takes.
    pub fn step_seconds(&self, shape: &BatchShape) -> f64 {
        self.breakdown(shape).total_s
    }

    /// Seconds of `steps` consecutive decode-only steps of `seqs` sequences
    /// whose contexts total `context` tokens at the first step (each step
    /// reads `seqs` more): the per-step prices of [`Self::step_seconds`],
    /// summed in closed form. Each step's price is affine in its context
    /// (or, on the roofline, the larger of two affine terms), so the sum is
    /// one or two arithmetic series.
    pub fn decode_run_seconds(&self, seqs: u64, context: u64, steps: u64) -> f64 {
        if steps == 0 {
            return 0.0;
        }
        let (n, c0) = (seqs as f64, context as f64);
        // Step j reads context c0 + n·j: its price is affine in j.
        if let Some(l) = &self.linear {
            // The first step's price, from the same features a single step
            // is priced by; each later step reads `seqs` more context.
            let first = BatchShape {
                decode_context_tokens: context,
                context_tokens_read: context,
                ..BatchShape::decode(seqs, 0)
            };
            return affine_sum(l.seconds(&first), l.per_decode_context_token_s * n, 0, steps);
        }
        let compute_a =
            ((self.flops_per_token + self.flops_per_sample) * n + self.flops_per_pair * c0) / self.flops_rate;
        let compute_b = self.flops_per_pair * n / self.flops_rate;
        let memory_a = (self.weight_bytes + self.kv_bytes_per_token * (c0 + n)) / self.bytes_rate;
        let memory_b = self.kv_bytes_per_token * n / self.bytes_rate;
        let overhead = self.hardware.per_step_overhead_s * steps as f64;
        // The steps where compute is the larger term form one contiguous range.
        let compute_bound = |j: u64| compute_a + compute_b * j as f64 >= memory_a + memory_b * j as f64;
        // Steps in the same regime as the first one: a prefix of the run.
        let split = partition_point(steps, |j| compute_bound(j) == compute_bound(0));
        let (first, second) = if compute_bound(0) {
            ((compute_a, compute_b), (memory_a, memory_b))
        } else {
            ((memory_a, memory_b), (compute_a, compute_b))
        };
        overhead + affine_sum(first.0, first.1, 0, split) + affine_sum(second.0, second.1, split, steps)
    }

    /// How many of at most `max_steps` decode-only steps (shaped as in
    /// [`Self::decode_run_seconds`]) start within `seconds` from now: at
    /// least 1 when `seconds > 0`.
    pub fn decode_run_steps_within(&self, seqs: u64, context: u64, max_steps: u64, seconds: f64) -> u64 {
        // Step k starts after the first k steps; count the k with that below `seconds`.
        partition_point(max_steps, |k| self.decode_run_seconds(seqs, context, k) < seconds)
    }

    pub fn breakdown(&self, shape: &BatchShape) -> StepCost {
        let flops = self.flops_per_token * shape.tokens_computed() as f64
            + self.flops_per_sample * shape.sampled as f64
            + self.flops_per_pair * (shape.prefill_attention_pairs + shape.decode_context_tokens) as f64;
        let bytes =
            self.weight_bytes + self.kv_bytes_per_token * (shape.context_tokens_read + shape.tokens_computed()) as f64;
        let compute_s = flops / self.flops_rate;
        let memory_s = bytes / self.bytes_rate;
        if let Some(linear) = &self.linear {
            return StepCost {
                flops,
                bytes,
                compute_s,
                memory_s,
                overhead_s: linear.overhead_s,
                total_s: linear.seconds(shape),
                bound: Bound::Calibrated,
            };
        }
        let overhead_s = self.hardware.per_step_overhead_s;
        let (bound, busy) = if compute_s >= memory_s { (Bound::Compute, compute_s) } else { (Bound::Memory, memory_s) };
        StepCost { flops, bytes, compute_s, memory_s, overhead_s, total_s: overhead_s + busy, bound }
    }
}

/// Σ_{j=from}^{to−1} (a + b·j).
fn affine_sum(a: f64, b: f64, from: u64, to: u64) -> f64 {
    if to <= from {
        return 0.0;
    }
    let count = (to - from) as f64;
    let index_sum = (from + to - 1) as f64 * count / 2.0;
    a * count + b * index_sum
}

/// The first `j` in `0..n` where `holds` turns false (`n` if never), for a
/// predicate that is true on a prefix.
fn partition_point(n: u64, holds: impl Fn(u64) -> bool) -> u64 {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if holds(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::hardware_preset;
    use crate::model_preset::model_preset;

    fn stepwise(cost: &CostModel, seqs: u64, context: u64, steps: u64) -> f64 {
        (0..steps).map(|j| cost.step_seconds(&BatchShape::decode(seqs, context / seqs + j))).sum()
    }

    #[test]
    fn a_decode_run_costs_the_sum_of_its_steps() {
        let roofline = CostModel::new(model_preset("qwen3-0.6b").unwrap(), hardware_preset("h100").unwrap());
        let calibrated = CostModel::new(
            model_preset("smollm2-135m").unwrap(),
            hardware_preset("cpu").unwrap().with_calibration(LinearCoefficients::from_array(
                "smollm2-135m",
                [4e-3, 1e-4, 2e-3, 2e-9, 3e-7, 6e-4],
                4,
            )),
        );
        // Small batches are memory-bound; large batches over long contexts
        // cross over to compute-bound partway through a run.
        for cost in [&roofline, &calibrated] {
            for (seqs, per_seq_context, steps) in [(1, 100, 50), (8, 4096, 300), (256, 2000, 1000), (512, 30_000, 700)]
            {
                let context = seqs * per_seq_context;
                let (run, sum) = (cost.decode_run_seconds(seqs, context, steps), stepwise(cost, seqs, context, steps));
                assert!((run - sum).abs() <= 1e-9 * sum, "{seqs} seqs: {run} vs {sum}");
                // The steps starting within half the run's time are those whose prefix sum is below it.
                let half = cost.decode_run_steps_within(seqs, context, steps, run / 2.0);
                assert!(stepwise(cost, seqs, context, half - 1) < run / 2.0);
                assert!(stepwise(cost, seqs, context, half) >= run / 2.0 * (1.0 - 1e-9));
            }
        }
    }
}
