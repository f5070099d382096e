//! The int8 kernel on 256-bit vectors: each 64-byte record row is two
//! 32-byte halves of 8 columns.
//!
//! - AVX-VNNI (`vpdpbusd` on 32 bytes, e.g. Alder Lake and later client
//!   CPUs): as `vnni512`, half as wide — Q8_0 bytes are `q + 128`, so each
//!   sum starts at −128 · Σq_x.
//! - AVX2: `vpmaddubsw` multiplies unsigned by signed bytes into pairs of
//!   int16 and `vpmaddwd` by ones sums the pairs into int32 groups of 4.
//!   Neither may saturate, and here neither does:
//!   - Q4_1: nibbles (≤ 15) times |q_x| ≤ 127 give pairs of at most
//!     2 · 15 · 127 = 3810, so all 8 `vpmaddubsw` of a block (its 32 values)
//!     are summed in int16 (≤ 30,480 < 2¹⁵) and widened once: one
//!     `vpmaddwd` per block and half instead of four. On Zen both
//!     instructions share the same pipes, so each one saved is speed.
//!   - Q8_0: the unsigned operand is |q_w| (≤ 128, which fits a byte) and
//!     the signed one q_x with q_w's sign (|q_x| ≤ 127), so pairs reach at
//!     most 2 · 128 · 127 = 32,512: exact for every Q8_0 value, −128
//!     included.
//!
//! Either way the block sums are exact, then folded in `portable`'s order.
//!
//! Register blocking: a tile is R rows × C column groups (`columns` picks
//! them; the measurements that chose them are in BENCHMARKS.md).

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
    for_each_tile(a, w, g0, g1, y, n, false);
}

/// Column groups `g0..g1` for every row, on AVX-VNNI.
///
/// # Safety
/// The CPU must support avx2, avxvnni, f16c and fma; `y` as for `columns`.
pub(super) unsafe fn columns_vnni(a: &QuantizedRows, w: &PackedInt8, g0: usize, g1: usize, y: SendPtr, n: usize) {
    for_each_tile(a, w, g0, g1, y, n, true);
}

/// Most rows one tile holds. Measured (`examples/int8_speed`, AVX2 forced on
/// a Zen 5, machine otherwise quiet): with both halves of a group in
/// flight, 2 and 3 rows ran within 3 % of each other and 4 spilled (15–25 %
/// slower); one half at a time (`run_half`), 3 and 4 rows tie and both run
/// 10–18 % faster than before on the prefill shapes.
const MAX_ROWS: usize = 3;

/// Runs every tile of groups `g0..g1` × all rows: up to `MAX_ROWS` rows at
/// a time, and a lone row (a decode) two column groups at a time, so that
/// more weight loads are in flight.
///
/// # Safety
/// As `columns` (and avxvnni when `vnni`).
unsafe fn for_each_tile(a: &QuantizedRows, w: &PackedInt8, g0: usize, g1: usize, y: SendPtr, n: usize, vnni: bool) {
    let q4 = w.kind() == PackKind::Q4_1;
    let mut g = g0;
    while g < g1 {
        let mut r = 0;
        let cc = if a.rows == 1 { (g1 - g).min(2) } else { 1 };
        while r < a.rows {
            let rr = (a.rows - r).min(MAX_ROWS);
            let t = Tile { a, w, r, g, y: y.get(), n };
            macro_rules! dispatch {
                ($($r:literal, $c:literal);*) => {
                    match (rr, cc, q4, vnni) {
                        $(
                            ($r, $c, true, false) => t.run_avx2::<$r, $c, true>(),
                            ($r, $c, false, false) => t.run_avx2::<$r, $c, false>(),
                            ($r, $c, true, true) => t.run_vnni::<$r, $c, true>(),
                            ($r, $c, false, true) => t.run_vnni::<$r, $c, false>(),
                        )*
                        _ => unreachable!("tile {rr}x{cc}"),
                    }
                };
            }
            dispatch!(1, 1; 1, 2; 2, 1; 3, 1);
            r += rr;
        }
        g += cc;
    }
}

impl Tile<'_> {
    /// # Safety
    /// As `columns`; rows `r..r+R` and groups `g..g+C` exist.
    #[target_feature(enable = "avx2,f16c,fma")]
    unsafe fn run_avx2<const R: usize, const C: usize, const Q4: bool>(self) {
        self.run_256::<R, C, Q4, false>()
    }

    /// # Safety
    /// As `columns_vnni`; rows `r..r+R` and groups `g..g+C` exist.
    #[target_feature(enable = "avx2,avxvnni,f16c,fma")]
    unsafe fn run_vnni<const R: usize, const C: usize, const Q4: bool>(self) {
        self.run_256::<R, C, Q4, true>()
    }

    /// The tile's body, inlined into each wrapper above so that it is
    /// compiled with that wrapper's instruction set.
    ///
    /// # Safety
    /// As the wrapper that calls it.
    #[inline(always)]
    unsafe fn run_256<const R: usize, const C: usize, const Q4: bool, const VNNI: bool>(self) {
        // One half of each group at a time (columns 0..8, then 8..16): one
        // half's accumulators, its int16 sums and the fold's operands fit
        // the 16 ymm registers; both halves at once spilled the accumulators
        // to the stack every block (10–18 % slower on the prefill shapes).
        for h in 0..2 {
            self.run_half::<R, C, Q4, VNNI>(h);
        }
    }

    /// Columns `8h .. 8h + 8` of the tile's groups, every block.
    ///
    /// # Safety
    /// As the wrapper that calls `run_256`.
    #[inline(always)]
    unsafe fn run_half<const R: usize, const C: usize, const Q4: bool, const VNNI: bool>(&self, h: usize) {
        let Tile { a, w, r, g, y, n } = *self;
        let nb = a.blocks_per_row();
        let (qb, rb) = (w.kind().quant_bytes(), w.kind().record_bytes());
        let recs: [*const u8; C] = std::array::from_fn(|c| w.group(g + c).as_ptr());
        let xq: [*const i8; R] = std::array::from_fn(|i| a.q.as_ptr().add((r + i) * a.k));
        let ones = _mm256_set1_epi16(1);
        let low = _mm256_set1_epi8(0x0f);
        let flip = _mm256_set1_epi8(-128);
        // [row][group]: this half's columns of each group.
        let mut facc = [[_mm256_setzero_ps(); C]; R];
        for b in 0..nb {
            // Four int8 activations of row i at offset off (< 32) in block b,
            // broadcast to every lane. (A macro: closures would not inherit
            // the target features.)
            macro_rules! x4 {
                ($i:expr, $off:expr) => {
                    _mm256_set1_epi32(std::ptr::read_unaligned(xq[$i].add(b * 32 + $off) as *const i32))
                };
            }
            macro_rules! weights {
                ($c:expr, $kg:expr) => {
                    _mm256_loadu_si256(recs[$c].add(b * rb + $kg * 64 + h * 32) as *const _)
                };
            }
            let mut acc = [[_mm256_setzero_si256(); C]; R];
            if VNNI {
                if !Q4 {
                    // The weights are q + 128: start each sum at −128 · Σq_x.
                    for i in 0..R {
                        acc[i] = [_mm256_set1_epi32(-128 * *a.qsum.get_unchecked((r + i) * nb + b)); C];
                    }
                }
                for kg in 0..if Q4 { 4 } else { 8 } {
                    for c in 0..C {
                        let raw = weights!(c, kg);
                        if Q4 {
                            let lo = _mm256_and_si256(raw, low);
                            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), low);
                            for i in 0..R {
                                acc[i][c] = _mm256_dpbusd_avx_epi32(acc[i][c], lo, x4!(i, kg * 4));
                                acc[i][c] = _mm256_dpbusd_avx_epi32(acc[i][c], hi, x4!(i, 16 + kg * 4));
                            }
                        } else {
                            for i in 0..R {
                                acc[i][c] = _mm256_dpbusd_avx_epi32(acc[i][c], raw, x4!(i, kg * 4));
                            }
                        }
                    }
                }
            } else if Q4 {
                // int16 sums of the whole block (≤ 30,480, see the module
                // docs), widened once.
                let mut p16 = [[_mm256_setzero_si256(); C]; R];
                for kg in 0..4 {
                    for c in 0..C {
                        let raw = weights!(c, kg);
                        let lo = _mm256_and_si256(raw, low);
                        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), low);
                        for i in 0..R {
                            p16[i][c] = _mm256_add_epi16(p16[i][c], _mm256_maddubs_epi16(lo, x4!(i, kg * 4)));
                            p16[i][c] = _mm256_add_epi16(p16[i][c], _mm256_maddubs_epi16(hi, x4!(i, 16 + kg * 4)));
                        }
                    }
                }
                for i in 0..R {
                    for c in 0..C {
                        acc[i][c] = _mm256_madd_epi16(p16[i][c], ones);
                    }
                }
            } else {
                for kg in 0..8 {
                    for c in 0..C {
                        let wv = _mm256_xor_si256(weights!(c, kg), flip);
                        let wabs = _mm256_abs_epi8(wv);
                        for i in 0..R {
                            let p = _mm256_maddubs_epi16(wabs, _mm256_sign_epi8(x4!(i, kg * 4), wv));
                            acc[i][c] = _mm256_add_epi32(acc[i][c], _mm256_madd_epi16(p, ones));
                        }
                    }
                }
            }
            for c in 0..C {
                let dw = _mm256_cvtph_ps(_mm_loadu_si128(recs[c].add(b * rb + qb + h * 16) as *const _));
                let mw = if Q4 {
                    _mm256_cvtph_ps(_mm_loadu_si128(recs[c].add(b * rb + qb + 32 + h * 16) as *const _))
                } else {
                    dw
                };
                for i in 0..R {
                    let m = (r + i) * nb + b;
                    let t = _mm256_mul_ps(_mm256_set1_ps(*a.d.get_unchecked(m)), dw);
                    facc[i][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[i][c]), t, facc[i][c]);
                    if Q4 {
                        facc[i][c] = _mm256_fmadd_ps(mw, _mm256_set1_ps(*a.s.get_unchecked(m)), facc[i][c]);
                    }
                }
            }
        }
        for c in 0..C {
            let col = (g + c) * COLS + h * 8;
            let live = n.saturating_sub(col).min(8);
            if live == 0 {
                continue; // a ragged last group's second half lies past the row
            }
            for i in 0..R {
                let mut out = [0f32; 8];
                _mm256_storeu_ps(out.as_mut_ptr(), facc[i][c]);
                std::ptr::copy_nonoverlapping(out.as_ptr(), y.add((r + i) * n + col), live);
            }
        }
    }
}
