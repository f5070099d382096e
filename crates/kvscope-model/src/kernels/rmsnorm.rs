//! RMSNorm: `y = x / sqrt(mean(x²) + eps) * weight`, row by row.
//!
//! The sum of squares is `simd::dot(x, x)`, the shared fixed order, so a
//! row's norm never depends on its neighbours.

use super::simd;
use rayon::prelude::*;

/// Normalise one row.
pub fn rmsnorm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd::isa() == simd::Isa::Avx2 {
        // SAFETY: the process ISA is AVX2, so avx2 and fma are present.
        return unsafe { rmsnorm_avx2(x, weight, eps, out) };
    }
    rmsnorm_lanes(x, weight, eps, out)
}

/// The portable row compiled for AVX2 (8 lanes a multiply instead of SSE2's 4).
///
/// # Safety
/// The CPU must support avx2 and fma.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rmsnorm_avx2(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    rmsnorm_lanes(x, weight, eps, out)
}

#[inline(always)]
fn rmsnorm_lanes(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len();
    assert!(weight.len() == n && out.len() == n);
    let mean_sq = simd::dot(x, x) / n as f32;
    let scale = 1.0 / (mean_sq + eps).sqrt();
    for ((o, xi), wi) in out.iter_mut().zip(x).zip(weight) {
        // (x * scale) * w, the order HF's LlamaRMSNorm uses.
        *o = (xi * scale) * wi;
    }
}

/// Normalise every `dim`-wide row of `x` into `out`.
pub fn rmsnorm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32], dim: usize) {
    assert_eq!(x.len(), out.len());
    if x.len() <= super::SERIAL_VALUES {
        out.chunks_mut(dim).zip(x.chunks(dim)).for_each(|(o, xr)| rmsnorm(xr, weight, eps, o));
        return;
    }
    out.par_chunks_mut(dim).zip(x.par_chunks(dim)).with_min_len(8).for_each(|(o, xr)| rmsnorm(xr, weight, eps, o));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_to_unit_rms_then_scales() {
        let x = [3.0f32, -4.0, 0.0, 5.0]; // mean square 12.5
        let w = [1.0f32, 2.0, 1.0, 0.5];
        let mut y = [0f32; 4];
        rmsnorm(&x, &w, 0.0, &mut y);
        let s = 1.0 / 12.5f32.sqrt();
        assert_eq!(y, [3.0 * s, -4.0 * s * 2.0, 0.0, 5.0 * s * 0.5]);
    }

    #[test]
    fn eps_keeps_a_zero_row_finite_and_rows_are_independent() {
        let x = [0f32, 0., 0., 0., 1., 2., 3., 4.];
        let w = [1f32; 4];
        let mut y = [9f32; 8];
        rmsnorm_rows(&x, &w, 1e-5, &mut y, 4);
        assert_eq!(&y[..4], &[0.0; 4]);
        let mut one = [0f32; 4];
        rmsnorm(&x[4..], &w, 1e-5, &mut one);
        assert_eq!(&y[4..], &one);
    }
}
