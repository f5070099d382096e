//! `exp` and the softmax of attention scores, vectorised and with one fixed
//! evaluation order, so every instruction set and every batch gives the
//! same bits.
//!
//! `exp(x)` is computed as `2ⁿ · p(r)` with `n = round(x · log₂e)` and
//! `r = x − n·ln2` (ln2 split in two for exactness), `p` a degree-7
//! polynomial evaluated by Horner's rule with fused multiply-adds (the
//! Cephes `expf` scheme; ≤ 2 ulp on the softmax range). Each step is one IEEE
//! operation, so the portable path (`f32::mul_add`, a true fused operation)
//! and the SIMD paths agree bit for bit. Inputs are clamped to
//! [−87, 88], where `2ⁿ` stays a normal number; softmax inputs are ≤ 0, and
//! e⁻⁸⁷ ≈ 1.6·10⁻³⁸ is as good as zero beside the row's 1.
//!
//! A softmax row's sum runs in 16 lanes over positions in order (lane
//! `j mod 16` takes position `j`), then the fixed tree of `simd::tree_sum`.

use super::simd::{tree_sum, Isa, LANES};

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const ROUND: f32 = 12_582_912.0; // 1.5 · 2²³: v + ROUND − ROUND rounds v half to even
const LO: f32 = -87.0;
const HI: f32 = 88.0;
/// Cephes `expf` coefficients: p(r) = 1 + r + r²·(P0 + r·(P1 + …)).
const P: [f32; 6] = [0.5, 1.666_666_5e-1, 4.166_579_6e-2, 8.333_452e-3, 1.398_199_9e-3, 1.987_569_1e-4];

/// `exp(x)`, the portable definition of the bits every path gives.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // x86's `maxps`/`minps` (what the AVX-512 path runs) return their
    // second operand when either is NaN; this is that, so a NaN score gives
    // the same bits on every path.
    let x = if x > LO { x } else { LO };
    let x = if x < HI { x } else { HI };
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = n.mul_add(-LN2_HI, x);
    let r = n.mul_add(-LN2_LO, r);
    let mut p = P[5];
    for &c in P[..5].iter().rev() {
        p = p.mul_add(r, c);
    }
    let p = p.mul_add(r * r, r) + 1.0;
    // `shifted` lies in [2²³, 2²⁴), where one unit is one ulp, so its bits
    // minus ROUND's are `n` as an integer: the same value as `n as i32`
    // without a float-to-int conversion, which vectorises badly (Rust's
    // conversion saturates).
    let k = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    p * f32::from_bits(((k + 127) as u32) << 23)
}

/// `scores[j] = exp(scores[j] − max)` over a row; returns the row's sum.
pub fn softmax_row(isa: Isa, scores: &mut [f32]) -> f32 {
    match isa {
        // SAFETY: Isa::Avx512 is chosen only when avx512f is present.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::softmax_row(scores) },
        // SAFETY: Isa::Avx2 is chosen only when avx2 and fma are present.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { softmax_row_avx2(scores) },
        _ => softmax_row_lanes(scores),
    }
}

/// The portable body compiled for AVX2 + FMA: LLVM turns its 16-lane loops
/// into 256-bit code and each `mul_add` into one `vfmadd` (on the x86-64
/// baseline it is a call to libm's `fmaf`, per element).
///
/// # Safety
/// The CPU must support avx2 and fma.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_row_avx2(scores: &mut [f32]) -> f32 {
    softmax_row_lanes(scores)
}

/// The portable softmax in fixed-width lane arrays, so that it vectorises
/// on any target: the maximum lane by lane (order-free), then each value's
/// `exp` and its lane's running sum (lane `j mod 16` takes position `j`).
#[inline(always)]
pub(crate) fn softmax_row_lanes(scores: &mut [f32]) -> f32 {
    let mut top = [f32::NEG_INFINITY; LANES];
    let mut chunks = scores.chunks_exact(LANES);
    for chunk in &mut chunks {
        for l in 0..LANES {
            top[l] = top[l].max(chunk[l]);
        }
    }
    let max = chunks.remainder().iter().fold(top.into_iter().fold(f32::NEG_INFINITY, f32::max), |m, &s| m.max(s));
    let mut acc = [0f32; LANES];
    let mut chunks = scores.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for l in 0..LANES {
            chunk[l] = exp(chunk[l] - max);
            acc[l] += chunk[l];
        }
    }
    for (lane, s) in acc.iter_mut().zip(chunks.into_remainder()) {
        *s = exp(*s - max);
        *lane += *s;
    }
    tree_sum(acc)
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use super::*;
    use std::arch::x86_64::*;

    /// `exp` on 16 lanes: the same operations as the portable `exp`.
    ///
    /// # Safety
    /// The CPU must support avx512f.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub unsafe fn exp16(x: __m512) -> __m512 {
        let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(LO)), _mm512_set1_ps(HI));
        let round = _mm512_set1_ps(ROUND);
        let n = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(LOG2E)), round), round);
        let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_HI), x);
        let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_LO), r);
        let mut p = _mm512_set1_ps(P[5]);
        for &c in P[..5].iter().rev() {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0));
        let pow2 = _mm512_slli_epi32::<23>(_mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127)));
        _mm512_mul_ps(p, _mm512_castsi512_ps(pow2))
    }

    /// # Safety
    /// The CPU must support avx512f.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn softmax_row(scores: &mut [f32]) -> f32 {
        let n = scores.len();
        let p = scores.as_mut_ptr();
        let full = n / LANES * LANES;
        let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut j = 0;
        while j < full {
            m = _mm512_max_ps(m, _mm512_loadu_ps(p.add(j)));
            j += LANES;
        }
        let mut max = _mm512_reduce_max_ps(m);
        for &s in &scores[full..] {
            max = max.max(s);
        }
        let mv = _mm512_set1_ps(max);
        let mut acc = _mm512_setzero_ps();
        j = 0;
        while j < n {
            let mask = if n - j >= LANES { 0xffff } else { crate::kernels::simd::avx512::tail_mask(n - j) };
            let e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, p.add(j)), mv));
            _mm512_mask_storeu_ps(p.add(j), mask, e);
            // Lanes past the row add nothing (their sum stays as it was).
            acc = _mm512_mask_add_ps(acc, mask, acc, e);
            j += LANES;
        }
        crate::kernels::simd::avx512::hsum(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_libm_on_the_softmax_range() {
        let mut x = -87.0f32;
        while x <= 10.0 {
            let (got, want) = (exp(x), x.exp());
            let ulp = (got.to_bits() as i64 - want.to_bits() as i64).abs();
            assert!(ulp <= 2, "exp({x}) = {got}, libm {want} ({ulp} ulp)");
            x += 0.013_7;
        }
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn softmax_rows_equal_on_every_instruction_set() {
        for n in [1usize, 5, 16, 17, 40, 333] {
            let row: Vec<f32> = (0..n).map(|i| ((i * 7919) % 113) as f32 * 0.37 - 20.0).collect();
            let mut want = row.clone();
            let want_sum = softmax_row(Isa::Portable, &mut want);
            let total: f32 = want.iter().sum();
            assert!((total - want_sum).abs() <= 1e-5 * want_sum);
            for isa in [Isa::Avx512, Isa::Avx2] {
                if !super::super::simd::available(isa) {
                    eprintln!("no {isa:?} here: its softmax was not checked");
                    continue;
                }
                let mut got = row.clone();
                let sum = softmax_row(isa, &mut got);
                assert_eq!(sum.to_bits(), want_sum.to_bits(), "{isa:?} n={n}");
                assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{isa:?} n={n}");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn exp16_equals_exp_lane_by_lane() {
        if !super::super::simd::available(Isa::Avx512) {
            eprintln!("no AVX-512 here: exp16 was not checked");
            return;
        }
        let mut xs: Vec<f32> = (0..4096).map(|i| -95.0 + i as f32 * 0.0473).collect();
        xs[100] = f32::NAN; // clamped to the same end on both paths
        for chunk in xs.chunks(16) {
            let mut out = [0f32; 16];
            // SAFETY: the test returned early unless the process ISA is AVX-512.
            unsafe {
                use std::arch::x86_64::*;
                _mm512_storeu_ps(out.as_mut_ptr(), avx512::exp16(_mm512_loadu_ps(chunk.as_ptr())));
            }
            for (x, o) in chunk.iter().zip(out) {
                assert_eq!(o.to_bits(), exp(*x).to_bits(), "exp({x})");
            }
        }
    }
}
