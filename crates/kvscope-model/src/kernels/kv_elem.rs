//! How attention reads one stored KV format: the widening of a stored value
//! to f32 and, for int8, the per-(slot, head) scale.
//!
//! Widening f16 or int8 to f32 is exact, so every path (portable, AVX2 with
//! F16C's `vcvtph2ps`, AVX-512 registers) sees the same f32 values and
//! performs the same FMAs on them; which path runs never changes a bit.
//! The portable widening is written without calls or branches per value
//! (`quant::f16_to_f32_lanes`), so LLVM vectorises it on any target. The int8 scale is applied
//! once per row rather than once per value: a key's score is
//! `(q · k_int) × scale`, a value row's weight is `p × scale`.

/// A stored K/V value type.
pub trait KvElem: Copy + Send + Sync + 'static {
    /// Whether rows carry a scale (int8).
    const SCALED: bool;

    /// The row as f32: the row itself for f32, else widened into `buf`.
    fn widen<'a>(row: &'a [Self], buf: &'a mut [f32]) -> &'a [f32];

    /// `widen` with 256-bit instructions (F16C for halves).
    ///
    /// # Safety
    /// The CPU must support avx2 and f16c.
    #[cfg(target_arch = "x86_64")]
    unsafe fn widen_avx2<'a>(row: &'a [Self], buf: &'a mut [f32]) -> &'a [f32];

    /// Widens 16 values at `p`.
    ///
    /// # Safety
    /// The CPU must support avx512f and 16 values at `p` must be readable.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512;

    /// Widens 8 values at `p`.
    ///
    /// # Safety
    /// The CPU must support avx2 and f16c and 8 values at `p` must be readable.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
}

impl KvElem for f32 {
    const SCALED: bool = false;

    fn widen<'a>(row: &'a [f32], _buf: &'a mut [f32]) -> &'a [f32] {
        row
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn widen_avx2<'a>(row: &'a [f32], _buf: &'a mut [f32]) -> &'a [f32] {
        row
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const f32) -> std::arch::x86_64::__m512 {
        // SAFETY: the caller guarantees avx512f and 16 readable floats.
        unsafe { std::arch::x86_64::_mm512_loadu_ps(p) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> std::arch::x86_64::__m256 {
        // SAFETY: the caller guarantees avx and 8 readable floats.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(p) }
    }
}

impl KvElem for half::f16 {
    const SCALED: bool = false;

    #[inline(always)]
    fn widen<'a>(row: &'a [half::f16], buf: &'a mut [f32]) -> &'a [f32] {
        let out = &mut buf[..row.len()];
        for (o, h) in out.iter_mut().zip(row) {
            *o = crate::quant::f16_to_f32_lanes(h.to_bits());
        }
        out
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn widen_avx2<'a>(row: &'a [half::f16], buf: &'a mut [f32]) -> &'a [f32] {
        use std::arch::x86_64::*;
        let out = &mut buf[..row.len()];
        let full = row.len() / 8 * 8;
        for i in (0..full).step_by(8) {
            // SAFETY: i + 8 ≤ len for both (the caller guarantees f16c, avx).
            unsafe {
                let h = _mm_loadu_si128(row.as_ptr().add(i) as *const __m128i);
                _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
            }
        }
        for (o, h) in out[full..].iter_mut().zip(&row[full..]) {
            *o = crate::quant::f16_to_f32_lanes(h.to_bits());
        }
        out
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const half::f16) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees avx512f (vcvtph2ps zmm is AVX-512F)
        // and 16 readable halves (32 bytes).
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const half::f16) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees f16c and 8 readable halves (16 bytes).
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }
}

impl KvElem for i8 {
    const SCALED: bool = true;

    #[inline(always)]
    fn widen<'a>(row: &'a [i8], buf: &'a mut [f32]) -> &'a [f32] {
        let out = &mut buf[..row.len()];
        for (o, &q) in out.iter_mut().zip(row) {
            *o = q as f32;
        }
        out
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn widen_avx2<'a>(row: &'a [i8], buf: &'a mut [f32]) -> &'a [f32] {
        // Inlined into an AVX2 function, LLVM vectorises this to
        // `vpmovsxbd` + `vcvtdq2ps`.
        Self::widen(row, buf)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const i8) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees avx512f and 16 readable bytes.
        unsafe { _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p as *const __m128i))) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const i8) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees avx2 and 8 readable bytes.
        unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i))) }
    }
}

/// One layer's K or V plane as attention reads it.
#[derive(Clone, Copy)]
pub struct Plane<'a, E> {
    pub values: &'a [E],
    /// One scale per `[slot][kv_head]` when `E::SCALED`, else empty.
    pub scales: &'a [f32],
}

impl<E: KvElem> Plane<'_, E> {
    /// The scale of row `scale_index` (1 for unscaled formats: never
    /// multiplied in, see the callers).
    #[inline(always)]
    pub fn scale(&self, scale_index: usize) -> f32 {
        if E::SCALED {
            self.scales[scale_index]
        } else {
            1.0
        }
    }
}

/// Symmetric int8 of one head vector: the scale maps the largest magnitude
/// to 127 and values round to nearest (ties to even), as the int8 kernels'
/// activations (and llama.cpp's Q8_0) do per 32 values. Returns the scale. Scalar on purpose: a handful of
/// rows per step, and the same bits on every machine.
pub fn quantize_int8(x: &[f32], q: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let (d, inv) = crate::kernels::int8::act::scales(amax);
    for (qi, &v) in q.iter_mut().zip(x) {
        *qi = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_widening_equals_the_portable_one() {
        if !crate::kernels::simd::available(crate::kernels::simd::Isa::Avx2) {
            eprintln!("no AVX2 + F16C here: its widening was not checked");
            return;
        }
        let row: Vec<half::f16> = (0..77u16).map(|i| half::f16::from_bits(i.wrapping_mul(5557))).collect();
        let (mut a, mut b) = ([0f32; 80], [0f32; 80]);
        let want = <half::f16 as KvElem>::widen(&row, &mut a).to_vec();
        // SAFETY: avx2 and f16c were just detected.
        let got = unsafe { <half::f16 as KvElem>::widen_avx2(&row, &mut b) };
        assert!(want.iter().zip(got).all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())));
    }
}
