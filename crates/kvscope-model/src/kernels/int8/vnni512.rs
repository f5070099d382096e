//! The int8 kernel on AVX-512 VNNI: one `vpdpbusd` gives 16 columns 4 more
//! products each. A tile holds R rows × C column groups of int32 block sums
//! and f32 accumulators in registers; each block's integer sums are folded
//! into the f32 accumulators in the order `portable` fixes.

use super::act::QuantizedRows;
use super::pack::{PackKind, PackedInt8, COLS};
use super::tile::Tile;
use crate::kernels::SendPtr;
use std::arch::x86_64::*;

/// Column groups whose records stay in cache while all row tiles pass.
fn groups_per_block(rows: usize) -> usize {
    if rows <= 4 {
        1
    } else {
        4
    }
}

/// Column groups `g0..g1` for every row.
///
/// # Safety
/// The CPU must support avx512f, avx512bw, avx512vnni, f16c and fma; `y`
/// must point to `a.rows × n` writable floats that no one else writes in
/// columns `16·g0 .. 16·g1` during the call.
pub(super) unsafe fn columns(a: &QuantizedRows, w: &PackedInt8, g0: usize, g1: usize, y: SendPtr, n: usize) {
    let q4 = w.kind() == PackKind::Q4_1;
    let rows = a.rows;
    let step = groups_per_block(rows);
    let mut gb = g0;
    while gb < g1 {
        let ge = (gb + step).min(g1);
        let mut r = 0;
        while r < rows {
            let rr = (rows - r).min(4);
            let mut g = gb;
            while g < ge {
                // One row streams more groups at once (more loads in flight).
                let cc = if rr == 1 { (ge - g).min(4) } else { (ge - g).min(2) };
                let t = Tile { a, w, r, g, y: y.get(), n };
                match (rr, cc, q4) {
                    (1, 1, true) => t.run_512::<1, 1, true>(),
                    (1, 2, true) => t.run_512::<1, 2, true>(),
                    (1, 3, true) => t.run_512::<1, 3, true>(),
                    (1, 4, true) => t.run_512::<1, 4, true>(),
                    (2, 1, true) => t.run_512::<2, 1, true>(),
                    (2, 2, true) => t.run_512::<2, 2, true>(),
                    (3, 1, true) => t.run_512::<3, 1, true>(),
                    (3, 2, true) => t.run_512::<3, 2, true>(),
                    (4, 1, true) => t.run_512::<4, 1, true>(),
                    (4, 2, true) => t.run_512::<4, 2, true>(),
                    (1, 1, false) => t.run_512::<1, 1, false>(),
                    (1, 2, false) => t.run_512::<1, 2, false>(),
                    (1, 3, false) => t.run_512::<1, 3, false>(),
                    (1, 4, false) => t.run_512::<1, 4, false>(),
                    (2, 1, false) => t.run_512::<2, 1, false>(),
                    (2, 2, false) => t.run_512::<2, 2, false>(),
                    (3, 1, false) => t.run_512::<3, 1, false>(),
                    (3, 2, false) => t.run_512::<3, 2, false>(),
                    (4, 1, false) => t.run_512::<4, 1, false>(),
                    (4, 2, false) => t.run_512::<4, 2, false>(),
                    _ => unreachable!("tile {rr}x{cc}"),
                }
                g += cc;
            }
            r += rr;
        }
        gb = ge;
    }
}

impl Tile<'_> {
    /// # Safety
    /// As `columns`; rows `r..r+R` and groups `g..g+C` exist.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c,fma")]
    unsafe fn run_512<const R: usize, const C: usize, const Q4: bool>(self) {
        let Tile { a, w, r, g, y, n } = self;
        let nb = a.blocks_per_row();
        let kind = w.kind();
        let (qb, rb) = (kind.quant_bytes(), kind.record_bytes());
        let recs: [*const u8; C] = std::array::from_fn(|c| w.group(g + c).as_ptr());
        let xq: [*const i8; R] = std::array::from_fn(|i| a.q.as_ptr().add((r + i) * a.k));
        let meta = (r * nb) as isize;
        let low = _mm512_set1_epi8(0x0f);
        let mut facc = [[_mm512_setzero_ps(); C]; R];
        for b in 0..nb {
            let mut acc = [[_mm512_setzero_si512(); C]; R];
            // Four int8 activations of row i at offset off (< 32) in block b,
            // broadcast to every lane. (A macro: closures would not inherit
            // the target features.)
            macro_rules! x4 {
                ($i:expr, $off:expr) => {
                    _mm512_set1_epi32(std::ptr::read_unaligned(xq[$i].add(b * 32 + $off) as *const i32))
                };
            }
            if Q4 {
                for kg in 0..4 {
                    let mut lo = [_mm512_setzero_si512(); C];
                    let mut hi = [_mm512_setzero_si512(); C];
                    for c in 0..C {
                        let raw = _mm512_loadu_si512(recs[c].add(b * rb + kg * 64) as *const _);
                        lo[c] = _mm512_and_si512(raw, low);
                        hi[c] = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), low);
                    }
                    for i in 0..R {
                        let (xl, xh) = (x4!(i, kg * 4), x4!(i, 16 + kg * 4));
                        for c in 0..C {
                            acc[i][c] = _mm512_dpbusd_epi32(acc[i][c], lo[c], xl);
                            acc[i][c] = _mm512_dpbusd_epi32(acc[i][c], hi[c], xh);
                        }
                    }
                }
            } else {
                // The weights are q + 128: start each sum at −128 · Σq_x.
                for i in 0..R {
                    let init = _mm512_set1_epi32(-128 * *a.qsum.as_ptr().offset(meta + (i * nb + b) as isize));
                    acc[i] = [init; C];
                }
                for kg in 0..8 {
                    let mut wv = [_mm512_setzero_si512(); C];
                    for c in 0..C {
                        wv[c] = _mm512_loadu_si512(recs[c].add(b * rb + kg * 64) as *const _);
                    }
                    for i in 0..R {
                        let xb = x4!(i, kg * 4);
                        for c in 0..C {
                            acc[i][c] = _mm512_dpbusd_epi32(acc[i][c], wv[c], xb);
                        }
                    }
                }
            }
            let mut dw = [_mm512_setzero_ps(); C];
            let mut mw = [_mm512_setzero_ps(); C];
            for c in 0..C {
                dw[c] = _mm512_cvtph_ps(_mm256_loadu_si256(recs[c].add(b * rb + qb) as *const _));
                if Q4 {
                    mw[c] = _mm512_cvtph_ps(_mm256_loadu_si256(recs[c].add(b * rb + qb + 32) as *const _));
                }
            }
            for i in 0..R {
                let m = (meta + (i * nb + b) as isize) as usize;
                let dx = _mm512_set1_ps(*a.d.get_unchecked(m));
                let sx = _mm512_set1_ps(*a.s.get_unchecked(m));
                for c in 0..C {
                    let t = _mm512_mul_ps(dx, dw[c]);
                    facc[i][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[i][c]), t, facc[i][c]);
                    if Q4 {
                        facc[i][c] = _mm512_fmadd_ps(mw[c], sx, facc[i][c]);
                    }
                }
            }
        }
        for i in 0..R {
            for c in 0..C {
                let col = (g + c) * COLS;
                let live = (n - col).min(COLS);
                let mask: __mmask16 = if live == COLS { 0xffff } else { (1u16 << live) - 1 };
                _mm512_mask_storeu_ps(y.add((r + i) * n + col), mask, facc[i][c]);
            }
        }
    }
}
