//! The int8 kernel on 256-bit vectors: each 64-byte record row is two
//! 32-byte halves of 8 columns.
//!
//! - AVX-VNNI (`vpdpbusd` on 32 bytes, e.g. Alder Lake and later client
//!   CPUs): as `vnni512`, half as wide — Q8_0 bytes are `q + 128`, so each
//!   sum starts at −128 · Σq_x.
//! - AVX2: `vpmaddubsw` multiplies unsigned by signed bytes into pairs of
//!   int16 and `vpmaddwd` by ones sums the pairs into int32 groups of 4.
//!   Neither saturates here: Q4_1 nibbles (≤ 15) times |q_x| ≤ 127 stay far
//!   below 2¹⁵, and Q8_0 uses the sign trick (|q_x| unsigned, q_w with the
//!   sign of q_x), whose pairs reach at most 2 · 127 · 127 — but a Q8_0
//!   value of −128 would wrap, so matrices holding one go to the portable
//!   kernel.
//!
//! Either way the block sums are exact, then folded in `portable`'s order.

use super::act::QuantizedRows;
use super::pack::{PackKind, PackedInt8, COLS};
use super::tile::Tile;
use crate::kernels::SendPtr;
use std::arch::x86_64::*;

/// Column groups `g0..g1` for every row, on AVX2.
///
/// # Safety
/// The CPU must support avx2, f16c and fma; `y` must point to `a.rows × n`
/// writable floats that no one else writes in columns `16·g0 .. 16·g1`
/// during the call.
pub(super) unsafe fn columns(a: &QuantizedRows, w: &PackedInt8, g0: usize, g1: usize, y: SendPtr, n: usize) {
    if w.has_q8_min() {
        // SAFETY: the caller's guarantee, passed on.
        return super::portable::columns(a, w, g0, g1, y, n);
    }
    for_each_tile(a, w, g0, g1, y, n, |t, two| {
        // SAFETY: the caller's guarantee (avx2, f16c, fma; y as stated).
        unsafe {
            if two {
                t.run_avx2::<2>()
            } else {
                t.run_avx2::<1>()
            }
        }
    });
}

/// Column groups `g0..g1` for every row, on AVX-VNNI.
///
/// # Safety
/// The CPU must support avx2, avxvnni, f16c and fma; `y` as for `columns`.
pub(super) unsafe fn columns_vnni(a: &QuantizedRows, w: &PackedInt8, g0: usize, g1: usize, y: SendPtr, n: usize) {
    for_each_tile(a, w, g0, g1, y, n, |t, two| {
        // SAFETY: the caller's guarantee (avx2, avxvnni, f16c, fma; y as stated).
        unsafe {
            if two {
                t.run_vnni::<2>()
            } else {
                t.run_vnni::<1>()
            }
        }
    });
}

/// Calls `run(tile, two_rows)` over every group × row pair (or last row).
fn for_each_tile(
    a: &QuantizedRows,
    w: &PackedInt8,
    g0: usize,
    g1: usize,
    y: SendPtr,
    n: usize,
    run: impl Fn(Tile, bool),
) {
    for g in g0..g1 {
        let mut r = 0;
        while r < a.rows {
            let two = a.rows - r >= 2;
            run(Tile { a, w, r, g, y: y.get(), n }, two);
            r += if two { 2 } else { 1 };
        }
    }
}

impl Tile<'_> {
    /// # Safety
    /// As `columns`; rows `r..r+R` and group `g` exist.
    #[target_feature(enable = "avx2,f16c,fma")]
    unsafe fn run_avx2<const R: usize>(self) {
        self.run_256::<R, false>()
    }

    /// # Safety
    /// As `columns_vnni`; rows `r..r+R` and group `g` exist.
    #[target_feature(enable = "avx2,avxvnni,f16c,fma")]
    unsafe fn run_vnni<const R: usize>(self) {
        self.run_256::<R, true>()
    }

    /// The tile's body, inlined into each wrapper above so that it is
    /// compiled with that wrapper's instruction set.
    ///
    /// # Safety
    /// As the wrapper that calls it.
    #[inline(always)]
    unsafe fn run_256<const R: usize, const VNNI: bool>(self) {
        let Tile { a, w, r, g, y, n } = self;
        let nb = a.blocks_per_row();
        let q4 = w.kind() == PackKind::Q4_1;
        let (qb, rb) = (w.kind().quant_bytes(), w.kind().record_bytes());
        let recs = w.group(g).as_ptr();
        let ones = _mm256_set1_epi16(1);
        let low = _mm256_set1_epi8(0x0f);
        let flip = _mm256_set1_epi8(-128);
        // [row][half]: columns 0..8 and 8..16 of the group.
        let mut facc = [[_mm256_setzero_ps(); 2]; R];
        for b in 0..nb {
            let rec = recs.add(b * rb);
            let mut acc = [[_mm256_setzero_si256(); 2]; R];
            macro_rules! x4 {
                ($i:expr, $off:expr) => {
                    _mm256_set1_epi32(std::ptr::read_unaligned(
                        a.q.as_ptr().add((r + $i) * a.k + b * 32 + $off) as *const i32
                    ))
                };
            }
            if VNNI {
                if !q4 {
                    // The weights are q + 128: start each sum at −128 · Σq_x.
                    for i in 0..R {
                        acc[i] = [_mm256_set1_epi32(-128 * *a.qsum.get_unchecked((r + i) * nb + b)); 2];
                    }
                }
                for kg in 0..if q4 { 4 } else { 8 } {
                    for h in 0..2 {
                        let raw = _mm256_loadu_si256(rec.add(kg * 64 + h * 32) as *const _);
                        if q4 {
                            let lo = _mm256_and_si256(raw, low);
                            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), low);
                            for i in 0..R {
                                acc[i][h] = _mm256_dpbusd_avx_epi32(acc[i][h], lo, x4!(i, kg * 4));
                                acc[i][h] = _mm256_dpbusd_avx_epi32(acc[i][h], hi, x4!(i, 16 + kg * 4));
                            }
                        } else {
                            for i in 0..R {
                                acc[i][h] = _mm256_dpbusd_avx_epi32(acc[i][h], raw, x4!(i, kg * 4));
                            }
                        }
                    }
                }
            } else if q4 {
                for kg in 0..4 {
                    for h in 0..2 {
                        let raw = _mm256_loadu_si256(rec.add(kg * 64 + h * 32) as *const _);
                        let lo = _mm256_and_si256(raw, low);
                        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), low);
                        for i in 0..R {
                            // Two products of ≤ 15 · 127 per int16, two such
                            // added: ≤ 7620, no overflow.
                            let p = _mm256_add_epi16(
                                _mm256_maddubs_epi16(lo, x4!(i, kg * 4)),
                                _mm256_maddubs_epi16(hi, x4!(i, 16 + kg * 4)),
                            );
                            acc[i][h] = _mm256_add_epi32(acc[i][h], _mm256_madd_epi16(p, ones));
                        }
                    }
                }
            } else {
                for kg in 0..8 {
                    for h in 0..2 {
                        let wv = _mm256_xor_si256(_mm256_loadu_si256(rec.add(kg * 64 + h * 32) as *const _), flip);
                        for i in 0..R {
                            let xb = x4!(i, kg * 4);
                            let p = _mm256_maddubs_epi16(_mm256_abs_epi8(xb), _mm256_sign_epi8(wv, xb));
                            acc[i][h] = _mm256_add_epi32(acc[i][h], _mm256_madd_epi16(p, ones));
                        }
                    }
                }
            }
            for h in 0..2 {
                let dw = _mm256_cvtph_ps(_mm_loadu_si128(rec.add(qb + h * 16) as *const _));
                let mw = if q4 { _mm256_cvtph_ps(_mm_loadu_si128(rec.add(qb + 32 + h * 16) as *const _)) } else { dw };
                for i in 0..R {
                    let m = (r + i) * nb + b;
                    let t = _mm256_mul_ps(_mm256_set1_ps(*a.d.get_unchecked(m)), dw);
                    facc[i][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[i][h]), t, facc[i][h]);
                    if q4 {
                        facc[i][h] = _mm256_fmadd_ps(mw, _mm256_set1_ps(*a.s.get_unchecked(m)), facc[i][h]);
                    }
                }
            }
        }
        let col = g * COLS;
        let live = (n - col).min(COLS);
        for i in 0..R {
            let mut out = [0f32; COLS];
            _mm256_storeu_ps(out.as_mut_ptr(), facc[i][0]);
            _mm256_storeu_ps(out.as_mut_ptr().add(8), facc[i][1]);
            std::ptr::copy_nonoverlapping(out.as_ptr(), y.add((r + i) * n + col), live);
        }
    }
}
