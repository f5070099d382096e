//! SwiGLU: `silu(gate) * up`, elementwise.

use rayon::prelude::*;

/// `x · sigmoid(x)`, with the shared `softmax::exp` (so the AVX-512 path,
/// 16 lanes at a time, gives the same bits).
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + super::softmax::exp(-x))
}

/// `gate_up` rows are `[gate (f) | up (f)]` (the fused projection's output);
/// `out` rows are `f` wide.
pub fn silu_mul(gate_up: &[f32], f: usize, out: &mut [f32]) {
    assert_eq!(gate_up.len(), 2 * out.len());
    if out.len() <= super::SERIAL_VALUES {
        out.chunks_mut(f).zip(gate_up.chunks(2 * f)).for_each(|(o, gu)| silu_mul_row(o, gu, f));
        return;
    }
    out.par_chunks_mut(f).zip(gate_up.par_chunks(2 * f)).with_min_len(4).for_each(|(o, gu)| silu_mul_row(o, gu, f));
}

fn silu_mul_row(out: &mut [f32], gate_up: &[f32], f: usize) {
    let (g, u) = gate_up.split_at(f);
    match super::simd::isa() {
        #[cfg(target_arch = "x86_64")]
        super::simd::Isa::Avx512 => {
            // SAFETY: the process ISA is AVX-512, so avx512f is present.
            let done = unsafe { silu_mul_avx512(out, g, u) };
            silu_mul_lanes(&mut out[done..], &g[done..], &u[done..]);
        }
        // SAFETY: the process ISA is AVX2, so avx2 and fma are present.
        #[cfg(target_arch = "x86_64")]
        super::simd::Isa::Avx2 => unsafe { silu_mul_avx2(out, g, u) },
        _ => silu_mul_lanes(out, g, u),
    }
}

/// `out[i] = silu(g[i]) · u[i]`, written so that it vectorises on any
/// target (each lane the same operations as the scalar `silu`).
#[inline(always)]
fn silu_mul_lanes(out: &mut [f32], g: &[f32], u: &[f32]) {
    for ((o, g), u) in out.iter_mut().zip(g).zip(u) {
        *o = silu(*g) * u;
    }
}

/// The portable body compiled for AVX2 + FMA (vector `exp`, hardware FMA
/// instead of libm's `fmaf`).
///
/// # Safety
/// The CPU must support avx2 and fma.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu_mul_avx2(out: &mut [f32], g: &[f32], u: &[f32]) {
    silu_mul_lanes(out, g, u)
}

/// `silu_mul_row` over the whole 16-lane chunks; returns how many values it
/// wrote.
///
/// # Safety
/// The CPU must support avx512f.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn silu_mul_avx512(out: &mut [f32], g: &[f32], u: &[f32]) -> usize {
    use std::arch::x86_64::*;
    let n = out.len().min(g.len()).min(u.len()) / 16 * 16;
    let one = _mm512_set1_ps(1.0);
    for i in (0..n).step_by(16) {
        let x = _mm512_loadu_ps(g.as_ptr().add(i));
        let e = super::softmax::avx512::exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
        let silu = _mm512_div_ps(x, _mm512_add_ps(one, e));
        _mm512_storeu_ps(out.as_mut_ptr().add(i), _mm512_mul_ps(silu, _mm512_loadu_ps(u.as_ptr().add(i))));
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silu_known_values() {
        assert_eq!(silu(0.0), 0.0);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!((silu(-20.0)).abs() < 1e-7);
        assert!(silu(-100.0).is_finite() && silu(100.0) == 100.0);
    }

    /// Every vector path gives the scalar `silu(g) · u` bit for bit.
    #[test]
    fn every_path_equals_the_scalar_rows() {
        use crate::kernels::simd::{available, Isa};
        let f = 40;
        let gu: Vec<f32> = (0..2 * f).map(|i| (i as f32 * 0.731).sin() * 12.0).collect();
        let (g, u) = gu.split_at(f);
        let slow: Vec<f32> = (0..f).map(|i| silu(g[i]) * u[i]).collect();
        let mut fast = vec![0f32; f];
        silu_mul(&gu, f, &mut fast);
        assert!(fast.iter().zip(&slow).all(|(a, b)| a.to_bits() == b.to_bits()));
        let mut lanes = vec![0f32; f];
        silu_mul_lanes(&mut lanes, g, u);
        assert!(lanes.iter().zip(&slow).all(|(a, b)| a.to_bits() == b.to_bits()));
        #[cfg(target_arch = "x86_64")]
        {
            if available(Isa::Avx2) {
                let mut v = vec![0f32; f];
                // SAFETY: avx2 and fma were just detected.
                unsafe { silu_mul_avx2(&mut v, g, u) };
                assert!(v.iter().zip(&slow).all(|(a, b)| a.to_bits() == b.to_bits()), "avx2");
            }
            if available(Isa::Avx512) {
                let mut v = slow.clone();
                // SAFETY: avx512f was just detected.
                let done = unsafe { silu_mul_avx512(&mut v, g, u) };
                assert!(v[..done].iter().zip(&slow).all(|(a, b)| a.to_bits() == b.to_bits()), "avx512");
            }
        }
    }

    #[test]
    fn gate_times_up_per_row() {
        let gu = [1.0f32, 0.0, 2.0, 3.0, /* row 2 */ 0.0, 1.0, 5.0, 5.0];
        let mut out = [0f32; 4];
        silu_mul(&gu, 2, &mut out);
        assert_eq!(out, [silu(1.0) * 2.0, 0.0, 0.0, silu(1.0) * 5.0]);
    }
}
