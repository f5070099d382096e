//! Hardware profiles: memory size, bandwidth and peak compute, from vendor
//! datasheets, plus the efficiencies and per-step overhead the roofline
//! cost model needs. The `cpu` profile describes this machine and is
//! replaced by a fitted linear model once `kvscope sim --calibrate` ran.

use crate::coefficients::LinearCoefficients;
use serde::{Deserialize, Serialize};

const MIB: u64 = 1 << 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HardwareProfile {
    pub name: String,
    /// Device memory in bytes (what `nvidia-smi` reports as total).
    pub memory_bytes: u64,
    /// Peak memory bandwidth, bytes per second.
    pub bandwidth_bytes_per_s: f64,
    /// Peak dense FLOP/s at the weights' precision.
    pub peak_flops: f64,
    /// Fixed time every engine step pays (scheduling, kernel launches,
    /// sampling), in seconds.
    pub per_step_overhead_s: f64,
    /// Share of `peak_flops` that large matmuls reach (model FLOPs
    /// utilisation).
    pub compute_efficiency: f64,
    /// Share of `bandwidth_bytes_per_s` that streaming weights and KV reach.
    pub bandwidth_efficiency: f64,
    /// Measured coefficients that replace the roofline (the calibrated `cpu`
    /// profile); `None` uses the roofline.
    pub calibrated: Option<LinearCoefficients>,
}

/// Names accepted by [`hardware_preset`].
pub const HARDWARE_NAMES: [&str; 8] =
    ["h100", "h200", "a100-80g", "a100-40g", "l4", "rtx-4090", "rtx-4070-laptop", "cpu"];

/// Overhead of one GPU engine step. Not a datasheet number: an assumption
/// of the order of a CUDA-graph-captured decode step's host-side cost in
/// vLLM (scheduler, input preparation, sampling), ~1.5 ms.
const GPU_STEP_OVERHEAD_S: f64 = 1.5e-3;
/// Typical MFU of prefill-heavy serving steps and achievable share of HBM
/// bandwidth for streaming reads; assumptions, stated as such.
const GPU_COMPUTE_EFFICIENCY: f64 = 0.5;
const GPU_BANDWIDTH_EFFICIENCY: f64 = 0.8;

fn gpu(name: &str, memory_bytes: u64, bandwidth_bytes_per_s: f64, peak_flops: f64) -> HardwareProfile {
    HardwareProfile {
        name: name.into(),
        memory_bytes,
        bandwidth_bytes_per_s,
        peak_flops,
        per_step_overhead_s: GPU_STEP_OVERHEAD_S,
        compute_efficiency: GPU_COMPUTE_EFFICIENCY,
        bandwidth_efficiency: GPU_BANDWIDTH_EFFICIENCY,
        calibrated: None,
    }
}

/// A preset by name (case-insensitive), or `None`. `cpu` is the
/// uncalibrated default; see [`HardwareProfile::with_calibration`].
pub fn hardware_preset(name: &str) -> Option<HardwareProfile> {
    let hw = match name.to_ascii_lowercase().as_str() {
        // NVIDIA H100 SXM5 datasheet: 80 GB HBM3 (nvidia-smi: 81559 MiB),
        // 3.35 TB/s, 989 TFLOP/s dense BF16 (1979 with sparsity).
        "h100" => gpu("h100", 81_559 * MIB, 3.35e12, 989e12),
        // NVIDIA H200 SXM datasheet: 141 GB HBM3e (nvidia-smi: 143771 MiB),
        // 4.8 TB/s, same compute as H100: 989 TFLOP/s dense BF16.
        "h200" => gpu("h200", 143_771 * MIB, 4.8e12, 989e12),
        // NVIDIA A100 80GB SXM datasheet: 80 GB HBM2e (nvidia-smi: 81920
        // MiB), 2.039 TB/s, 312 TFLOP/s dense BF16.
        "a100-80g" => gpu("a100-80g", 81_920 * MIB, 2.039e12, 312e12),
        // NVIDIA A100 40GB SXM datasheet: 40 GB HBM2 (nvidia-smi: 40960
        // MiB), 1.555 TB/s, 312 TFLOP/s dense BF16.
        "a100-40g" => gpu("a100-40g", 40_960 * MIB, 1.555e12, 312e12),
        // NVIDIA L4 datasheet: 24 GB GDDR6 (nvidia-smi: 23034 MiB), 300
        // GB/s, 242 TFLOP/s BF16 with sparsity, so 121 dense.
        "l4" => gpu("l4", 23_034 * MIB, 300e9, 121e12),
        // NVIDIA Ada whitepaper, GeForce RTX 4090: 24 GB GDDR6X (nvidia-smi:
        // 24564 MiB), 1008 GB/s, 165.2 TFLOP/s dense BF16 with FP32
        // accumulate (330 with FP16 accumulate, which frameworks avoid).
        "rtx-4090" => gpu("rtx-4090", 24_564 * MIB, 1.008e12, 165.2e12),
        // GeForce RTX 4070 Laptop GPU (nano-vLLM's own benchmark machine),
        // NVIDIA's product page: 8 GB GDDR6 on a 128-bit bus (nvidia-smi:
        // 8188 MiB) at 16 Gbps = 256 GB/s; 321 AI TOPS (FP8, sparse). On
        // Ada GeForce parts dense BF16 with FP32 accumulate is 1/8 of that
        // figure (the 4090: 1321 AI TOPS, 165.2 TFLOP/s), so ≈ 40 TFLOP/s.
        // Laptop clocks vary with the power limit; an estimate.
        "rtx-4070-laptop" => gpu("rtx-4070-laptop", 8_188 * MIB, 256e9, 40.1e12),
        // This machine: 2 vCPUs of an AMD EPYC with AVX2 + FMA, 24 GB RAM.
        // Peak f32: 2 cores × 2 FMA pipes × 8 lanes × 2 FLOP × ~2.5 GHz ≈
        // 160 GFLOP/s; a 2-vCPU slice streams ~20 GB/s. Q4 dequantisation
        // and small-batch kernels reach a fraction of peak, and a step has
        // ~1 ms of host work; calibration replaces all of this with
        // measured coefficients.
        "cpu" => HardwareProfile {
            name: "cpu".into(),
            memory_bytes: 24_684_096 * 1024,
            bandwidth_bytes_per_s: 20e9,
            peak_flops: 160e9,
            per_step_overhead_s: 1e-3,
            compute_efficiency: 0.25,
            bandwidth_efficiency: 0.5,
            calibrated: None,
        },
        _ => return None,
    };
    Some(hw)
}

impl HardwareProfile {
    /// This profile with step times from fitted coefficients instead of the
    /// roofline.
    pub fn with_calibration(mut self, coefficients: LinearCoefficients) -> Self {
        self.calibrated = Some(coefficients);
        self
    }
}
