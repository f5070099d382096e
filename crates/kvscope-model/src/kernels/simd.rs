//! Instruction-set selection and the reduction order all kernels share.
//!
//! One ISA is chosen per process (AVX-512 when the CPU has it, else AVX2+FMA,
//! else the portable path) so that every value in a run is computed the same
//! way. AVX2 keeps the 16 lanes of the AVX-512 accumulator as two 8-lane
//! halves and reduces them in the same tree, and the portable path keeps
//! the same 16 lanes with `f32::mul_add` (a true fused multiply-add, one
//! instruction on CPUs with FMA), so all three give identical bits.

use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Portable,
}

/// The ISA this process uses. `KVSCOPE_ISA=avx2` (or `=avx-vnni`, which
/// caps the int8 kernels there) or `=portable` caps it
/// (to test those paths on a machine that has AVX-512); the int8-only caps
/// (`avx512-vnni`, `amx-emulated`) leave it at the best.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let cap = std::env::var("KVSCOPE_ISA").unwrap_or_default();
        if cap == "portable" {
            return Isa::Portable;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if !matches!(cap.as_str(), "avx2" | "avx-vnni") && std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if available(Isa::Avx2) {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    })
}

/// Whether this CPU can run `isa`'s kernels (tests call every path the
/// machine has, whatever `isa()` chose for the process).
pub fn available(isa: Isa) -> bool {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
        }
        Isa::Portable => true,
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// Lanes of the accumulators; the portable path mirrors the AVX-512 shape.
pub const LANES: usize = 16;

/// Sum 16 lanes in a fixed tree: (i, i+8), then (i, i+4), (i, i+2), (0, 1).
#[inline(always)]
pub fn tree_sum(a: [f32; LANES]) -> f32 {
    let mut s8 = [0f32; 8];
    for i in 0..8 {
        s8[i] = a[i] + a[i + 8];
    }
    let mut s4 = [0f32; 4];
    for i in 0..4 {
        s4[i] = s8[i] + s8[i + 4];
    }
    let s2 = [s4[0] + s4[2], s4[1] + s4[3]];
    s2[0] + s2[1]
}

/// Dot product in the process-wide fixed order.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    match isa() {
        // SAFETY: isa() chose Avx512 only with avx512f present; lengths asserted equal.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::dot(a, b) },
        // SAFETY: isa() chose Avx2 only with avx2 and fma present; lengths asserted equal.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::dot(a, b) },
        _ => portable_dot(a, b),
    }
}

/// `y += alpha * x`, elementwise (no reduction, so no order to fix).
pub fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    assert_eq!(y.len(), x.len());
    match isa() {
        // SAFETY: isa() chose Avx512 only with avx512f present; lengths asserted equal.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::axpy(y, alpha, x) },
        // SAFETY: isa() chose Avx2 only with avx2 and fma present; lengths asserted equal.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::axpy(y, alpha, x) },
        _ => {
            for (yi, xi) in y.iter_mut().zip(x) {
                *yi = alpha.mul_add(*xi, *yi);
            }
        }
    }
}

/// Portable dot: lane `l` accumulates elements `l, l+16, l+32, ...`.
#[inline]
pub fn portable_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            acc[l] = x[l].mul_add(y[l], acc[l]);
        }
    }
    for (l, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        acc[l] = x.mul_add(*y, acc[l]);
    }
    tree_sum(acc)
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    /// The same tree as `tree_sum`, in registers.
    ///
    /// # Safety
    /// The CPU must support avx512f.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub unsafe fn hsum(v: __m512) -> f32 {
        let lo = _mm512_castps512_ps256(v);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        let s8 = _mm256_add_ps(lo, hi);
        let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2));
        _mm_cvtss_f32(s1)
    }

    /// Mask selecting the first `n` (< 16) lanes.
    #[inline(always)]
    pub fn tail_mask(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }

    /// # Safety
    /// The CPU must support avx512f; `a` and `b` have the same length.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let k = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = _mm512_setzero_ps();
        let full = k / 16 * 16;
        let mut i = 0;
        while i < full {
            acc = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc);
            i += 16;
        }
        if full < k {
            let m = tail_mask(k - full);
            acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, pa.add(full)), _mm512_maskz_loadu_ps(m, pb.add(full)), acc);
        }
        hsum(acc)
    }

    /// # Safety
    /// The CPU must support avx512f; `y` and `x` have the same length.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub unsafe fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
        let k = y.len();
        let (py, px) = (y.as_mut_ptr(), x.as_ptr());
        let a = _mm512_set1_ps(alpha);
        let full = k / 16 * 16;
        let mut i = 0;
        while i < full {
            let v = _mm512_fmadd_ps(a, _mm512_loadu_ps(px.add(i)), _mm512_loadu_ps(py.add(i)));
            _mm512_storeu_ps(py.add(i), v);
            i += 16;
        }
        if full < k {
            let m = tail_mask(k - full);
            let v = _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(m, px.add(full)), _mm512_maskz_loadu_ps(m, py.add(full)));
            _mm512_mask_storeu_ps(py.add(full), m, v);
        }
    }
}

/// AVX2 + FMA with the AVX-512 accumulator split in halves: `lo` holds lanes
/// 0..8, `hi` lanes 8..16, each fed the same elements with the same fused
/// multiply-adds, so every value equals the AVX-512 path's bit for bit.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    /// The 16-lane tree of `tree_sum` starting from the two halves.
    ///
    /// # Safety
    /// The CPU must support avx2 and fma.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn hsum(lo: __m256, hi: __m256) -> f32 {
        let s8 = _mm256_add_ps(lo, hi);
        let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2));
        _mm_cvtss_f32(s1)
    }

    /// Load mask for the first `n` of 8 lanes (`n` may exceed 8 or be 0).
    ///
    /// # Safety
    /// The CPU must support avx2 and fma.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn mask(n: usize) -> __m256i {
        let n = n.min(8) as i32;
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
    }

    /// The tail (< 16 elements) as the two halves a masked 16-lane load gives.
    ///
    /// # Safety
    /// The CPU must support avx2 and fma; `p` points to at least `n.min(16)` readable floats.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn load_tail(p: *const f32, n: usize) -> (__m256, __m256) {
        let lo = _mm256_maskload_ps(p, mask(n));
        let hi = if n > 8 { _mm256_maskload_ps(p.add(8), mask(n - 8)) } else { _mm256_setzero_ps() };
        (lo, hi)
    }

    /// # Safety
    /// The CPU must support avx2 and fma; `a` and `b` have the same length.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let k = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let full = k / 16 * 16;
        let mut i = 0;
        while i < full {
            lo = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), lo);
            hi = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)), hi);
            i += 16;
        }
        if full < k {
            let (al, ah) = load_tail(pa.add(full), k - full);
            let (bl, bh) = load_tail(pb.add(full), k - full);
            lo = _mm256_fmadd_ps(al, bl, lo);
            hi = _mm256_fmadd_ps(ah, bh, hi);
        }
        hsum(lo, hi)
    }

    /// # Safety
    /// The CPU must support avx2 and fma; `y` and `x` have the same length.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
        let k = y.len();
        let (py, px) = (y.as_mut_ptr(), x.as_ptr());
        let a = _mm256_set1_ps(alpha);
        let full = k / 8 * 8;
        let mut i = 0;
        while i < full {
            _mm256_storeu_ps(py.add(i), _mm256_fmadd_ps(a, _mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i))));
            i += 8;
        }
        if full < k {
            let m = mask(k - full);
            let v = _mm256_fmadd_ps(a, _mm256_maskload_ps(px.add(full), m), _mm256_maskload_ps(py.add(full), m));
            _mm256_maskstore_ps(py.add(full), m, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_a_plain_sum_closely_for_every_tail_length() {
        for k in [1, 7, 15, 16, 17, 33, 64, 100] {
            let a: Vec<f32> = (0..k).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..k).map(|i| (i as f32 * 0.11).cos()).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - want).abs() < 1e-4, "k={k}");
            assert!((portable_dot(&a, &b) as f64 - want).abs() < 1e-4, "k={k}");
        }
    }

    #[test]
    fn axpy_adds_scaled_vector() {
        for k in [3, 16, 21] {
            let mut y: Vec<f32> = (0..k).map(|i| i as f32).collect();
            let x = vec![2.0f32; k];
            axpy(&mut y, 0.5, &x);
            assert!(y.iter().enumerate().all(|(i, v)| *v == i as f32 + 1.0));
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_path_gives_the_avx512_bits() {
        if !(std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma")) {
            return;
        }
        for k in [1, 5, 8, 9, 15, 16, 17, 31, 64, 100, 576] {
            let a: Vec<f32> = (0..k).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
            let b: Vec<f32> = (0..k).map(|i| (i as f32 * 0.11).cos()).collect();
            // SAFETY: the test returned early unless the CPU has avx512f, avx2 and fma.
            let (x, y) = unsafe { (avx512::dot(&a, &b), avx2::dot(&a, &b)) };
            assert_eq!(x.to_bits(), y.to_bits(), "k={k}");
            let (mut y1, mut y2) = (b.clone(), b.clone());
            // SAFETY: as above.
            unsafe {
                avx512::axpy(&mut y1, 0.3, &a);
                avx2::axpy(&mut y2, 0.3, &a);
            }
            assert_eq!(y1, y2);
        }
    }
}
