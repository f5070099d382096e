//! Weight matrices kept in their compact GGUF form and dequantized on the fly.
//!
//! A `Weights` is `n` rows of `k` elements (one row per output feature). Q4_1
//! and Q8_0 rows stay as their ggml blocks (0.625 and 1.06 bytes per weight
//! instead of 4); the matmul dequantizes a few rows at a time into a small
//! f32 panel right before it uses them. Every dequantized value is exactly
//! what `quant::dequantize` gives (`d * q + m` and `d * q`, a rounded multiply
//! then a rounded add, never fused), so the matmul sees the same f32 weights
//! as a fully dequantized model and every output keeps its bits.
//! Other types are dequantized to f32 at load.

use super::int8::pack::{PackKind, PackedInt8};
use super::simd::Isa;
use crate::quant::{self, GgmlType, QuantError};

#[derive(Clone, Debug)]
enum Data {
    F32(Vec<f32>),
    /// Raw Q4_1 blocks: f16 d, f16 m, 16 bytes of nibbles (20 bytes / 32).
    Q4_1(Vec<u8>),
    /// Raw Q8_0 blocks: f16 d, 32 × i8 (34 bytes / 32).
    Q8_0(Vec<u8>),
    /// Q4_1 or Q8_0 repacked for the int8 kernels.
    Int8(PackedInt8),
}

#[derive(Clone, Debug)]
pub struct Weights {
    n: usize,
    k: usize,
    data: Data,
}

impl Weights {
    /// `n` rows of `k` f32 values, row-major.
    pub fn from_f32(values: Vec<f32>, n: usize, k: usize) -> Self {
        assert_eq!(values.len(), n * k, "weights shape");
        Weights { n, k, data: Data::F32(values) }
    }

    /// `n` rows of `k` elements of ggml type `ty`, as stored in GGUF. Q4_1
    /// and Q8_0 stay compact; other types are dequantized now.
    pub fn from_ggml(ty: GgmlType, bytes: &[u8], n: usize, k: usize) -> Result<Self, QuantError> {
        let need = ty.bytes_for(n * k)?;
        if bytes.len() != need {
            return Err(QuantError::WrongLength { ty, n: n * k, need, got: bytes.len() });
        }
        let compact = k.is_multiple_of(32);
        let data = match ty {
            GgmlType::Q4_1 if compact => Data::Q4_1(bytes.to_vec()),
            GgmlType::Q8_0 if compact => Data::Q8_0(bytes.to_vec()),
            _ => {
                let mut out = vec![0f32; n * k];
                quant::dequantize(ty, bytes, &mut out)?;
                Data::F32(out)
            }
        };
        Ok(Weights { n, k, data })
    }

    /// The same matrix for the int8 kernels: Q4_1 and Q8_0 repacked (their
    /// values unchanged); other types stay as they are and keep the f32 path.
    pub fn into_int8(self) -> Weights {
        let kind = match &self.data {
            Data::Q4_1(_) => PackKind::Q4_1,
            Data::Q8_0(_) => PackKind::Q8_0,
            Data::F32(_) | Data::Int8(_) => return self,
        };
        let packed = PackedInt8::from_gguf(kind, self.raw(), self.n, self.k);
        Weights { n: self.n, k: self.k, data: Data::Int8(packed) }
    }

    /// On the int8 path, feed this matrix its activations as two int8 terms
    /// (value and rounding residual): about 16-bit inputs for twice the
    /// integer work. No effect on other paths.
    pub fn with_two_term_activations(mut self) -> Weights {
        if let Data::Int8(p) = &mut self.data {
            p.set_two_term(true);
        }
        self
    }

    /// The int8 records, when the matrix was repacked for the int8 kernels.
    pub(crate) fn as_int8(&self) -> Option<&PackedInt8> {
        match &self.data {
            Data::Int8(p) => Some(p),
            _ => None,
        }
    }

    /// The same matrix dequantized to f32 (tests and comparisons).
    pub fn to_f32(&self) -> Weights {
        let mut out = vec![0f32; self.n * self.k];
        self.dequant_rows(super::simd::isa(), 0, self.n, &mut out);
        Weights::from_f32(out, self.n, self.k)
    }

    /// Rows stacked in order (Q, K, V → one matrix). Parts of one compact
    /// type stay compact; a mix becomes f32.
    pub fn stack(parts: Vec<Weights>) -> Weights {
        let k = parts[0].k;
        assert!(parts.iter().all(|p| p.k == k), "stacked weights must share k");
        let n = parts.iter().map(|p| p.n).sum();
        let data = match &parts[0].data {
            Data::Q4_1(_) if parts.iter().all(|p| matches!(p.data, Data::Q4_1(_))) => {
                Data::Q4_1(parts.iter().flat_map(|p| p.raw().iter().copied()).collect())
            }
            Data::Q8_0(_) if parts.iter().all(|p| matches!(p.data, Data::Q8_0(_))) => {
                Data::Q8_0(parts.iter().flat_map(|p| p.raw().iter().copied()).collect())
            }
            _ => {
                let mut out = Vec::with_capacity(n * k);
                for p in &parts {
                    let start = out.len();
                    out.resize(start + p.n * k, 0.0);
                    p.dequant_rows(super::simd::isa(), 0, p.n, &mut out[start..]);
                }
                Data::F32(out)
            }
        };
        Weights { n, k, data }
    }

    fn raw(&self) -> &[u8] {
        match &self.data {
            Data::Q4_1(b) | Data::Q8_0(b) => b,
            Data::F32(_) | Data::Int8(_) => unreachable!("raw bytes of f32 or repacked weights"),
        }
    }

    /// Rows (output features).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Elements per row (the reduction length).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Bytes held in memory.
    pub fn bytes(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len() * 4,
            Data::Q4_1(b) | Data::Q8_0(b) => b.len(),
            Data::Int8(p) => p.bytes(),
        }
    }

    /// The raw blocks of a compact matrix: (is Q8_0, bytes, bytes per row).
    pub(crate) fn packed(&self) -> Option<(bool, &[u8], usize)> {
        match &self.data {
            Data::Q4_1(b) => Some((false, b, self.k / 32 * 20)),
            Data::Q8_0(b) => Some((true, b, self.k / 32 * 34)),
            Data::F32(_) | Data::Int8(_) => None,
        }
    }

    /// The f32 values when stored as f32 (no dequantization needed).
    pub(crate) fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }

    /// Row `j` as f32 (an embedding lookup).
    pub fn row(&self, j: usize, out: &mut [f32]) {
        self.dequant_rows(super::simd::isa(), j, j + 1, out);
    }

    /// Rows `j0..j1` as f32 into `out[..(j1 - j0) * k]`.
    pub(crate) fn dequant_rows(&self, isa: Isa, j0: usize, j1: usize, out: &mut [f32]) {
        assert!(j0 <= j1 && j1 <= self.n, "rows {j0}..{j1} of {}", self.n);
        let k = self.k;
        let out = &mut out[..(j1 - j0) * k];
        let blocks = k / 32;
        match &self.data {
            Data::F32(v) => out.copy_from_slice(&v[j0 * k..j1 * k]),
            Data::Int8(p) => {
                for (j, row) in (j0..j1).zip(out.chunks_exact_mut(k)) {
                    p.dequant_row(j, row);
                }
            }
            Data::Q4_1(b) => {
                let src = &b[j0 * blocks * 20..j1 * blocks * 20];
                #[cfg(target_arch = "x86_64")]
                if isa == Isa::Avx512 && f16c() {
                    // SAFETY: avx512f and f16c detected; src holds (j1 - j0) * blocks
                    // blocks and out as many × 32 floats.
                    unsafe { avx512::q4_1(src.as_ptr(), (j1 - j0) * blocks, out.as_mut_ptr()) };
                    return;
                }
                #[cfg(target_arch = "x86_64")]
                if isa == Isa::Avx2 && avx2_f16c() {
                    // SAFETY: avx2 and f16c detected; sizes as above.
                    unsafe { avx2::q4_1(src.as_ptr(), (j1 - j0) * blocks, out.as_mut_ptr()) };
                    return;
                }
                let _ = isa;
                quant::dequantize(GgmlType::Q4_1, src, out).expect("whole blocks");
            }
            Data::Q8_0(b) => {
                let src = &b[j0 * blocks * 34..j1 * blocks * 34];
                #[cfg(target_arch = "x86_64")]
                if isa == Isa::Avx512 && f16c() {
                    // SAFETY: as above.
                    unsafe { avx512::q8_0(src.as_ptr(), (j1 - j0) * blocks, out.as_mut_ptr()) };
                    return;
                }
                #[cfg(target_arch = "x86_64")]
                if isa == Isa::Avx2 && avx2_f16c() {
                    // SAFETY: as above.
                    unsafe { avx2::q8_0(src.as_ptr(), (j1 - j0) * blocks, out.as_mut_ptr()) };
                    return;
                }
                quant::dequantize(GgmlType::Q8_0, src, out).expect("whole blocks");
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) fn f16c() -> bool {
    static F: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *F.get_or_init(|| std::arch::is_x86_feature_detected!("f16c") && std::arch::is_x86_feature_detected!("avx512f"))
}

#[cfg(target_arch = "x86_64")]
fn avx2_f16c() -> bool {
    static F: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *F.get_or_init(|| std::arch::is_x86_feature_detected!("f16c") && std::arch::is_x86_feature_detected!("avx2"))
}

/// The 8-lane twins of the `avx512` dequantizers (same values).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support avx2 and f16c; `p` points to 4 readable bytes.
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn scales(p: *const u8) -> (__m256, __m256) {
        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(p as *const i32)));
        (_mm256_broadcastss_ps(dm), _mm256_broadcastss_ps(_mm_movehdup_ps(dm)))
    }

    /// # Safety
    /// The CPU must support avx2 and f16c; `src` holds `blocks` Q4_1 blocks and `out` has room for `32 · blocks` floats.
    #[target_feature(enable = "avx2,f16c")]
    pub unsafe fn q4_1(src: *const u8, blocks: usize, out: *mut f32) {
        let low = _mm256_set1_epi32(0x0f);
        for b in 0..blocks {
            let p = src.add(b * 20);
            let (d, m) = scales(p);
            let bytes = _mm_loadu_si128(p.add(4) as *const __m128i);
            let q0 = _mm256_cvtepu8_epi32(bytes);
            let q1 = _mm256_cvtepu8_epi32(_mm_srli_si128::<8>(bytes));
            let o = out.add(b * 32);
            // d * q, rounded, then + m, rounded.
            let f = |q: __m256i| _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(q)), m);
            _mm256_storeu_ps(o, f(_mm256_and_si256(q0, low)));
            _mm256_storeu_ps(o.add(8), f(_mm256_and_si256(q1, low)));
            _mm256_storeu_ps(o.add(16), f(_mm256_srli_epi32::<4>(q0)));
            _mm256_storeu_ps(o.add(24), f(_mm256_srli_epi32::<4>(q1)));
        }
    }

    /// # Safety
    /// The CPU must support avx2 and f16c; `src` holds `blocks` Q8_0 blocks and `out` has room for `32 · blocks` floats.
    #[target_feature(enable = "avx2,f16c")]
    pub unsafe fn q8_0(src: *const u8, blocks: usize, out: *mut f32) {
        for b in 0..blocks {
            let p = src.add(b * 34);
            let (d, _) = scales(p);
            let o = out.add(b * 32);
            for i in 0..4 {
                let q = _mm256_cvtepi8_epi32(_mm_loadl_epi64(p.add(2 + 8 * i) as *const __m128i));
                _mm256_storeu_ps(o.add(8 * i), _mm256_mul_ps(d, _mm256_cvtepi32_ps(q)));
            }
        }
    }
}

/// Block dequantizers, 16 lanes: element `j` of a Q4_1 block is the low
/// nibble of byte `j` (j < 16) or the high nibble of byte `j - 16`, so each
/// half-block is one zero-extended 16-byte load. The f16 scales convert
/// exactly with F16C (as `quant::f16_to_f32` does; tested over all 65536).
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support avx512f and f16c; `p` points to 4 readable bytes.
    #[target_feature(enable = "avx512f,f16c")]
    pub unsafe fn f16_pair(p: *const u8) -> __m128 {
        _mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(p as *const i32)))
    }

    /// One Q4_1 block at `p` as its two 16-lane halves.
    ///
    /// # Safety
    /// The CPU must support avx512f and f16c; `p` points to one Q4_1 block (20 bytes).
    #[target_feature(enable = "avx512f,f16c")]
    #[inline]
    pub unsafe fn q4_1_block(p: *const u8) -> (__m512, __m512) {
        let dm = f16_pair(p);
        let d = _mm512_broadcastss_ps(dm);
        let m = _mm512_broadcastss_ps(_mm_movehdup_ps(dm));
        let q = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.add(4) as *const __m128i));
        let lo = _mm512_cvtepi32_ps(_mm512_and_si512(q, _mm512_set1_epi32(0x0f)));
        let hi = _mm512_cvtepi32_ps(_mm512_srli_epi32::<4>(q));
        // d * q, rounded, then + m, rounded: quant::dequantize's order.
        (_mm512_add_ps(_mm512_mul_ps(d, lo), m), _mm512_add_ps(_mm512_mul_ps(d, hi), m))
    }

    /// One Q8_0 block at `p` as its two 16-lane halves.
    ///
    /// # Safety
    /// The CPU must support avx512f and f16c; `p` points to one Q8_0 block (34 bytes).
    #[target_feature(enable = "avx512f,f16c")]
    #[inline]
    pub unsafe fn q8_0_block(p: *const u8) -> (__m512, __m512) {
        let d = _mm512_broadcastss_ps(f16_pair(p));
        let q0 = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(2) as *const __m128i));
        let q1 = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(18) as *const __m128i));
        (_mm512_mul_ps(d, _mm512_cvtepi32_ps(q0)), _mm512_mul_ps(d, _mm512_cvtepi32_ps(q1)))
    }

    /// # Safety
    /// The CPU must support avx512f and f16c; `src` holds `blocks` Q4_1 blocks and `out` has room for `32 · blocks` floats.
    #[target_feature(enable = "avx512f,f16c")]
    pub unsafe fn q4_1(src: *const u8, blocks: usize, out: *mut f32) {
        for b in 0..blocks {
            let (lo, hi) = q4_1_block(src.add(b * 20));
            _mm512_storeu_ps(out.add(b * 32), lo);
            _mm512_storeu_ps(out.add(b * 32 + 16), hi);
        }
    }

    /// # Safety
    /// The CPU must support avx512f and f16c; `src` holds `blocks` Q8_0 blocks and `out` has room for `32 · blocks` floats.
    #[target_feature(enable = "avx512f,f16c")]
    pub unsafe fn q8_0(src: *const u8, blocks: usize, out: *mut f32) {
        for b in 0..blocks {
            let (lo, hi) = q8_0_block(src.add(b * 34));
            _mm512_storeu_ps(out.add(b * 32), lo);
            _mm512_storeu_ps(out.add(b * 32 + 16), hi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_blocks::blocks;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn f16c_converts_every_half_like_f16_to_f32() {
        if !f16c() {
            return;
        }
        for h in 0..=u16::MAX {
            let b = h.to_le_bytes();
            let p = [b[0], b[1], 0, 0];
            // SAFETY: the test returned early unless the CPU has avx512f and f16c.
            let got = unsafe { std::arch::x86_64::_mm_cvtss_f32(avx512::f16_pair(p.as_ptr())) };
            let want = quant::f16_to_f32(h);
            if want.is_nan() {
                assert!(got.is_nan(), "{h:#x}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{h:#x}");
            }
        }
    }

    #[test]
    fn compact_rows_dequantize_to_the_f32_values_bit_for_bit() {
        for ty in [GgmlType::Q4_1, GgmlType::Q8_0] {
            let (n, k) = (13, 96);
            let raw = blocks(ty, n * k / 32, 5);
            let mut want = vec![0f32; n * k];
            quant::dequantize(ty, &raw, &mut want).unwrap();
            let w = Weights::from_ggml(ty, &raw, n, k).unwrap();
            assert_eq!(w.bytes(), raw.len());
            for isa in [Isa::Avx512, Isa::Avx2, Isa::Portable] {
                if isa == Isa::Avx512 && super::super::simd::isa() != Isa::Avx512 {
                    continue;
                }
                let mut got = vec![0f32; n * k];
                w.dequant_rows(isa, 0, n, &mut got);
                assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{ty:?} {isa:?}");
                let mut row = vec![0f32; k];
                w.dequant_rows(isa, 4, 5, &mut row);
                assert_eq!(row, want[4 * k..5 * k]);
            }
        }
    }

    #[test]
    fn stacking_keeps_compact_parts_compact_and_mixes_become_f32() {
        let q = |n, seed| Weights::from_ggml(GgmlType::Q4_1, &blocks(GgmlType::Q4_1, n * 2, seed), n, 64).unwrap();
        let (a, b) = (q(3, 1), q(2, 2));
        let s = Weights::stack(vec![a.clone(), b.clone()]);
        assert_eq!((s.n(), s.k(), s.bytes()), (5, 64, a.bytes() + b.bytes()));
        let f = Weights::from_f32(vec![0.5; 64], 1, 64);
        let m = Weights::stack(vec![a.clone(), f]);
        assert_eq!((m.n(), m.bytes()), (4, 4 * 64 * 4));
        let (mut x, mut y) = (vec![0f32; 5 * 64], vec![0f32; 3 * 64]);
        s.dequant_rows(Isa::Portable, 0, 5, &mut x);
        a.dequant_rows(Isa::Portable, 0, 3, &mut y);
        assert_eq!(x[..3 * 64], y[..]);
        let mut z = vec![0f32; 4 * 64];
        m.dequant_rows(Isa::Portable, 0, 4, &mut z);
        assert_eq!(z[..3 * 64], y[..]);
        assert!(z[3 * 64..].iter().all(|&v| v == 0.5));
    }
}
