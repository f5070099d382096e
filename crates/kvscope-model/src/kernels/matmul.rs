//! `y = x · Wᵀ`: activations `x` [rows, k] times weights `w` [n, k]
//! (row-major, one row per output feature, as GGUF stores them), either f32
//! or compact `Weights` dequantized on the fly to the same f32 values: a
//! panel of rows at a time, or in registers for a single row (decode).
//!
//! Each output element is `simd::dot(x[r], w[j])` bit for bit: the tiles only
//! decide how many such dot products run side by side in registers, not the
//! order of any one of them. So a row's outputs are the same whether it is
//! computed alone (decode), among 512 others (prefill), or in any chunk.

use super::simd::{self, Isa};
use super::weights::Weights;
use super::SendPtr;
use rayon::prelude::*;

/// Rows and columns of one register tile: 16 accumulators of 16 lanes on
/// AVX-512 (32 registers), 4 pairs of 8-lane halves on AVX2 (16 registers).
fn tile(isa: Isa) -> (usize, usize) {
    match isa {
        Isa::Avx2 => (2, 2),
        _ => (4, 4),
    }
}
/// Columns whose weights stay cache-resident while all row tiles pass. With
/// few rows (decode) one column tile at a time suffices: its weights sit in
/// L1 while every row passes, and the weights stream from memory once, in
/// order.
fn col_block(rows: usize, tile_c: usize) -> usize {
    if rows <= 32 {
        tile_c
    } else {
        64
    }
}

/// `y[r * n + j] = dot(x[r * k ..][..k], w[j * k ..][..k])`.
pub fn matmul(x: &[f32], w: &[f32], y: &mut [f32], rows: usize, k: usize, n: usize) {
    assert!(w.len() >= n * k, "matmul shapes");
    run(x, Src::F32(w), y, rows, k, n);
}

/// `matmul` over `Weights`: compact rows are dequantized a panel at a time
/// into exactly the f32 values `matmul` would read, so every output has the
/// bits `matmul` gives on the dequantized matrix.
///
/// Weights repacked for the int8 kernels (`Weights::into_int8`) run there
/// instead (`int8`): other numerics, the same invariances.
pub fn matmul_w(x: &[f32], w: &Weights, y: &mut [f32], rows: usize) {
    if let Some(p) = w.as_int8() {
        return super::int8::matmul_int8(x, p, y, rows);
    }
    let src = match w.as_f32() {
        Some(f) => Src::F32(f),
        None => Src::Packed(w),
    };
    run(x, src, y, rows, w.k(), w.n());
}

#[derive(Clone, Copy)]
enum Src<'a> {
    F32(&'a [f32]),
    Packed(&'a Weights),
}

fn run(x: &[f32], w: Src, y: &mut [f32], rows: usize, k: usize, n: usize) {
    assert!(x.len() >= rows * k && y.len() >= rows * n, "matmul shapes");
    if rows == 0 || n == 0 {
        return;
    }
    // Enough tasks for load balance on any thread count; the split never
    // changes a value (see the module comment).
    let threads = crate::kernels::threads();
    let per_task = (n.div_ceil(threads * 4)).next_multiple_of(4).max(16);
    let tasks = n.div_ceil(per_task);
    let yp = SendPtr(y.as_mut_ptr());
    let isa = simd::isa();
    (0..tasks).into_par_iter().for_each(|t| {
        let c0 = t * per_task;
        let c1 = (c0 + per_task).min(n);
        // SAFETY: tasks write disjoint column ranges of y; shapes checked above.
        unsafe { columns(isa, x, w, yp, rows, k, n, c0, c1) };
    });
}

/// # Safety
/// `x` holds `rows × k` floats, `w` `n × k` values, `y` points to `rows × n` writable floats of which no one else writes columns `c0..c1` during the call, and `isa` is available on this CPU.
#[allow(clippy::too_many_arguments)]
unsafe fn columns(isa: Isa, x: &[f32], w: Src, y: SendPtr, rows: usize, k: usize, n: usize, c0: usize, c1: usize) {
    let (tile_r, tile_c) = tile(isa);
    let block = col_block(rows, tile_c);
    let mut panel = Vec::new();
    let mut cb = c0;
    while cb < c1 {
        let ce = (cb + block).min(c1);
        #[cfg(target_arch = "x86_64")]
        if let Src::Packed(q) = w {
            if isa == Isa::Avx512 && rows <= FUSED_ROWS && super::weights::f16c() {
                let (q8, raw, row_bytes) = q.packed().expect("packed");
                fused_block(q8, rows, x.as_ptr(), raw.as_ptr(), row_bytes, y.0, k, n, cb, ce);
                cb = ce;
                continue;
            }
        }
        // The block's weight rows as f32: in place, or dequantized once here
        // and reused by every row tile.
        let wb = match w {
            Src::F32(f) => f.as_ptr().add(cb * k),
            Src::Packed(q) => {
                panel.resize((ce - cb) * k, 0.0);
                q.dequant_rows(isa, cb, ce, &mut panel);
                panel.as_ptr()
            }
        };
        let mut r = 0;
        while r < rows {
            let rr = (rows - r).min(tile_r);
            let mut c = cb;
            while c < ce {
                let cc = (ce - c).min(tile_c);
                let xp = x.as_ptr().add(r * k);
                let wp = wb.add((c - cb) * k);
                let yp = y.0.add(r * n + c);
                match isa {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => avx512_tile(rr, cc, xp, wp, yp, k, n),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => avx2_tile(rr, cc, xp, wp, yp, k, n),
                    _ => portable_tile(rr, cc, xp, wp, yp, k, n),
                }
                c += cc;
            }
            r += rr;
        }
        cb = ce;
    }
}

/// Up to this many rows, compact weights are dequantized in registers right
/// before their FMAs (no f32 panel); more rows share one panel instead,
/// which measured faster from two rows on (both give the same bits).
const FUSED_ROWS: usize = 1;

/// Columns `cb..ce` of compact weights for all rows, dequantizing each
/// block in registers per row tile.
///
/// # Safety
/// The CPU must support avx512f and f16c; `x` holds `rows × k` floats, `raw` the compact rows `cb..ce` of `row_bytes` each, and `y` `rows × n` writable floats of which this call alone writes columns `cb..ce`.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn fused_block(
    q8: bool,
    rows: usize,
    x: *const f32,
    raw: *const u8,
    row_bytes: usize,
    y: *mut f32,
    k: usize,
    n: usize,
    cb: usize,
    ce: usize,
) {
    macro_rules! dispatch {
        ($rr:expr, $cc:expr, $($args:expr),*) => {
            match ($rr, $cc, q8) {
                (1, 1, false) => qtile512::<1, 1, false>($($args),*),
                (1, 2, false) => qtile512::<1, 2, false>($($args),*),
                (1, 3, false) => qtile512::<1, 3, false>($($args),*),
                (1, 4, false) => qtile512::<1, 4, false>($($args),*),
                (2, 1, false) => qtile512::<2, 1, false>($($args),*),
                (2, 2, false) => qtile512::<2, 2, false>($($args),*),
                (2, 3, false) => qtile512::<2, 3, false>($($args),*),
                (2, 4, false) => qtile512::<2, 4, false>($($args),*),
                (3, 1, false) => qtile512::<3, 1, false>($($args),*),
                (3, 2, false) => qtile512::<3, 2, false>($($args),*),
                (3, 3, false) => qtile512::<3, 3, false>($($args),*),
                (3, 4, false) => qtile512::<3, 4, false>($($args),*),
                (4, 1, false) => qtile512::<4, 1, false>($($args),*),
                (4, 2, false) => qtile512::<4, 2, false>($($args),*),
                (4, 3, false) => qtile512::<4, 3, false>($($args),*),
                (4, 4, false) => qtile512::<4, 4, false>($($args),*),
                (1, 1, true) => qtile512::<1, 1, true>($($args),*),
                (1, 2, true) => qtile512::<1, 2, true>($($args),*),
                (1, 3, true) => qtile512::<1, 3, true>($($args),*),
                (1, 4, true) => qtile512::<1, 4, true>($($args),*),
                (2, 1, true) => qtile512::<2, 1, true>($($args),*),
                (2, 2, true) => qtile512::<2, 2, true>($($args),*),
                (2, 3, true) => qtile512::<2, 3, true>($($args),*),
                (2, 4, true) => qtile512::<2, 4, true>($($args),*),
                (3, 1, true) => qtile512::<3, 1, true>($($args),*),
                (3, 2, true) => qtile512::<3, 2, true>($($args),*),
                (3, 3, true) => qtile512::<3, 3, true>($($args),*),
                (3, 4, true) => qtile512::<3, 4, true>($($args),*),
                (4, 1, true) => qtile512::<4, 1, true>($($args),*),
                (4, 2, true) => qtile512::<4, 2, true>($($args),*),
                (4, 3, true) => qtile512::<4, 3, true>($($args),*),
                (4, 4, true) => qtile512::<4, 4, true>($($args),*),
                _ => unreachable!(),
            }
        };
    }
    let mut c = cb;
    while c < ce {
        let cc = (ce - c).min(4);
        let mut r = 0;
        while r < rows {
            let rr = (rows - r).min(4);
            dispatch!(rr, cc, x.add(r * k), raw.add(c * row_bytes), row_bytes, y.add(r * n + c), k, n);
            r += rr;
        }
        c += cc;
    }
}

const PREFETCH_TILES: usize = 2;

/// `tile512` over compact weights: each 32-weight block is dequantized in
/// registers (the values `Weights::dequant_rows` gives) and fed to the same
/// FMAs in the same order — lanes take elements `i` then `i + 16` — so every
/// element equals `tile512` on the dequantized matrix bit for bit.
///
/// # Safety
/// The CPU must support avx512f and f16c; `x` holds `R` rows of `k` floats, `w` `C` compact rows of `row_bytes`, and `y` is writable at `R` rows × `C` columns (row stride `n`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,f16c")]
unsafe fn qtile512<const R: usize, const C: usize, const Q8: bool>(
    x: *const f32,
    w: *const u8,
    row_bytes: usize,
    y: *mut f32,
    k: usize,
    n: usize,
) {
    use super::weights::avx512::{q4_1_block, q8_0_block};
    use std::arch::x86_64::*;
    let bb = if Q8 { 34 } else { 20 };
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    for b in 0..k / 32 {
        let mut lo = [_mm512_setzero_ps(); C];
        let mut hi = [_mm512_setzero_ps(); C];
        for c in 0..C {
            let p = w.add(c * row_bytes + b * bb);
            // The rows of the next column tile, which the hardware
            // prefetcher does not see coming in this interleaved walk.
            _mm_prefetch::<_MM_HINT_T0>(p.add(PREFETCH_TILES * C * row_bytes) as *const i8);
            (lo[c], hi[c]) = if Q8 { q8_0_block(p) } else { q4_1_block(p) };
        }
        for r in 0..R {
            let xv = _mm512_loadu_ps(x.add(r * k + b * 32));
            for c in 0..C {
                acc[r][c] = _mm512_fmadd_ps(xv, lo[c], acc[r][c]);
            }
        }
        for r in 0..R {
            let xv = _mm512_loadu_ps(x.add(r * k + b * 32 + 16));
            for c in 0..C {
                acc[r][c] = _mm512_fmadd_ps(xv, hi[c], acc[r][c]);
            }
        }
    }
    for r in 0..R {
        for c in 0..C {
            *y.add(r * n + c) = simd::avx512::hsum(acc[r][c]);
        }
    }
}

/// # Safety
/// `x` holds `rr` rows and `w` `cc` rows of `k` floats; `y` is writable at `rr` rows × `cc` columns (row stride `n`).
unsafe fn portable_tile(rr: usize, cc: usize, x: *const f32, w: *const f32, y: *mut f32, k: usize, n: usize) {
    for r in 0..rr {
        let xr = std::slice::from_raw_parts(x.add(r * k), k);
        for c in 0..cc {
            let wc = std::slice::from_raw_parts(w.add(c * k), k);
            *y.add(r * n + c) = simd::portable_dot(xr, wc);
        }
    }
}

/// # Safety
/// The CPU must support avx512f; `rr`, `cc` ≤ 4; otherwise as `portable_tile`.
#[cfg(target_arch = "x86_64")]
unsafe fn avx512_tile(rr: usize, cc: usize, x: *const f32, w: *const f32, y: *mut f32, k: usize, n: usize) {
    macro_rules! dispatch {
        ($($r:literal),*; $($c:literal),*) => {
            dispatch!(@rows [$($r),*] [$($c),*])
        };
        (@rows [$($r:literal),*] $cs:tt) => {
            match rr { $( $r => dispatch!(@cols $r $cs), )* _ => unreachable!() }
        };
        (@cols $r:literal [$($c:literal),*]) => {
            match cc { $( $c => tile512::<$r, $c>(x, w, y, k, n), )* _ => unreachable!() }
        };
    }
    dispatch!(1, 2, 3, 4; 1, 2, 3, 4)
}

/// # Safety
/// The CPU must support avx2 and fma; `rr`, `cc` ≤ 2; otherwise as `portable_tile`.
#[cfg(target_arch = "x86_64")]
unsafe fn avx2_tile(rr: usize, cc: usize, x: *const f32, w: *const f32, y: *mut f32, k: usize, n: usize) {
    match (rr, cc) {
        (1, 1) => tile256::<1, 1>(x, w, y, k, n),
        (1, 2) => tile256::<1, 2>(x, w, y, k, n),
        (2, 1) => tile256::<2, 1>(x, w, y, k, n),
        (2, 2) => tile256::<2, 2>(x, w, y, k, n),
        _ => unreachable!(),
    }
}

/// The AVX2 twin of `tile512`: each accumulator is a (lo, hi) pair of 8-lane
/// halves fed exactly as `simd::avx2::dot` feeds them.
///
/// # Safety
/// The CPU must support avx2 and fma; `x` holds `R` rows and `w` `C` rows of `k` floats; `y` is writable at `R` rows × `C` columns (row stride `n`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile256<const R: usize, const C: usize>(x: *const f32, w: *const f32, y: *mut f32, k: usize, n: usize) {
    use std::arch::x86_64::*;
    let mut lo = [[_mm256_setzero_ps(); C]; R];
    let mut hi = [[_mm256_setzero_ps(); C]; R];
    let full = k / 16 * 16;
    let mut i = 0;
    while i < full {
        for c in 0..C {
            let wl = _mm256_loadu_ps(w.add(c * k + i));
            let wh = _mm256_loadu_ps(w.add(c * k + i + 8));
            for r in 0..R {
                lo[r][c] = _mm256_fmadd_ps(_mm256_loadu_ps(x.add(r * k + i)), wl, lo[r][c]);
                hi[r][c] = _mm256_fmadd_ps(_mm256_loadu_ps(x.add(r * k + i + 8)), wh, hi[r][c]);
            }
        }
        i += 16;
    }
    if full < k {
        for c in 0..C {
            let (wl, wh) = simd::avx2::load_tail(w.add(c * k + full), k - full);
            for r in 0..R {
                let (xl, xh) = simd::avx2::load_tail(x.add(r * k + full), k - full);
                lo[r][c] = _mm256_fmadd_ps(xl, wl, lo[r][c]);
                hi[r][c] = _mm256_fmadd_ps(xh, wh, hi[r][c]);
            }
        }
    }
    for r in 0..R {
        for c in 0..C {
            *y.add(r * n + c) = simd::avx2::hsum(lo[r][c], hi[r][c]);
        }
    }
}

/// An R×C tile of dot products, one accumulator each, all stepping through k
/// together; element (r, c) sees exactly the FMA sequence of `simd::dot`.
///
/// # Safety
/// The CPU must support avx512f; `x` holds `R` rows and `w` `C` rows of `k` floats; `y` is writable at `R` rows × `C` columns (row stride `n`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile512<const R: usize, const C: usize>(x: *const f32, w: *const f32, y: *mut f32, k: usize, n: usize) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    let full = k / 16 * 16;
    let mut i = 0;
    while i < full {
        let mut wv = [_mm512_setzero_ps(); C];
        for c in 0..C {
            wv[c] = _mm512_loadu_ps(w.add(c * k + i));
        }
        for r in 0..R {
            let xv = _mm512_loadu_ps(x.add(r * k + i));
            for c in 0..C {
                acc[r][c] = _mm512_fmadd_ps(xv, wv[c], acc[r][c]);
            }
        }
        i += 16;
    }
    if full < k {
        let m = simd::avx512::tail_mask(k - full);
        let mut wv = [_mm512_setzero_ps(); C];
        for c in 0..C {
            wv[c] = _mm512_maskz_loadu_ps(m, w.add(c * k + full));
        }
        for r in 0..R {
            let xv = _mm512_maskz_loadu_ps(m, x.add(r * k + full));
            for c in 0..C {
                acc[r][c] = _mm512_fmadd_ps(xv, wv[c], acc[r][c]);
            }
        }
    }
    for r in 0..R {
        for c in 0..C {
            *y.add(r * n + c) = simd::avx512::hsum(acc[r][c]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0).collect()
    }

    #[test]
    fn every_element_is_the_reference_dot_bit_for_bit() {
        for (rows, k, n) in [(1, 16, 1), (5, 37, 9), (9, 64, 70), (4, 576, 130)] {
            let x = data(rows * k, 1);
            let w = data(n * k, 2);
            let mut y = vec![0f32; rows * n];
            matmul(&x, &w, &mut y, rows, k, n);
            for r in 0..rows {
                for j in 0..n {
                    let want = simd::dot(&x[r * k..][..k], &w[j * k..][..k]);
                    assert_eq!(y[r * n + j].to_bits(), want.to_bits(), "({rows},{k},{n}) at ({r},{j})");
                }
            }
        }
    }

    #[test]
    fn a_row_alone_equals_the_same_row_in_a_batch() {
        let (rows, k, n) = (7, 96, 50);
        let x = data(rows * k, 3);
        let w = data(n * k, 4);
        let mut all = vec![0f32; rows * n];
        matmul(&x, &w, &mut all, rows, k, n);
        for r in 0..rows {
            let mut one = vec![0f32; n];
            matmul(&x[r * k..][..k], &w, &mut one, 1, k, n);
            assert_eq!(one, all[r * n..][..n]);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_tiles_give_the_avx512_bits() {
        if !(std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma")) {
            return;
        }
        for (rows, k, n) in [(3, 40, 7), (5, 576, 33), (1, 17, 5)] {
            let x = data(rows * k, 8);
            let w = data(n * k, 9);
            let mut a = vec![0f32; rows * n];
            let mut b = vec![0f32; rows * n];
            // SAFETY: the test returned early unless the CPU has avx512f and fma; shapes match.
            unsafe {
                columns(Isa::Avx512, &x, Src::F32(&w), SendPtr(a.as_mut_ptr()), rows, k, n, 0, n);
                columns(Isa::Avx2, &x, Src::F32(&w), SendPtr(b.as_mut_ptr()), rows, k, n, 0, n);
            }
            assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()), "({rows},{k},{n})");
        }
    }

    #[test]
    fn compact_weights_give_the_bits_of_their_f32_dequantization() {
        use crate::quant::{self, GgmlType};
        for ty in [GgmlType::Q4_1, GgmlType::Q8_0] {
            for (rows, k, n) in [(1, 576, 70), (3, 64, 9), (16, 96, 130), (40, 160, 67)] {
                let raw = crate::test_blocks::blocks(ty, n * k / 32, 11);
                let q = Weights::from_ggml(ty, &raw, n, k).unwrap();
                let mut f = vec![0f32; n * k];
                quant::dequantize(ty, &raw, &mut f).unwrap();
                let x = data(rows * k, 12);
                let (mut a, mut b) = (vec![0f32; rows * n], vec![0f32; rows * n]);
                matmul(&x, &f, &mut a, rows, k, n);
                matmul_w(&x, &q, &mut b, rows);
                assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()), "{ty:?} ({rows},{k},{n})");
                for isa in [Isa::Avx2, Isa::Portable] {
                    if isa == Isa::Avx2 && simd::isa() == Isa::Portable {
                        continue;
                    }
                    let (mut c, mut e) = (vec![0f32; rows * n], vec![0f32; rows * n]);
                    // SAFETY: Avx2 is only tried when the process ISA is not portable (so avx2+fma exist); shapes match.
                    unsafe {
                        columns(isa, &x, Src::F32(&f), SendPtr(c.as_mut_ptr()), rows, k, n, 0, n);
                        columns(isa, &x, Src::Packed(&q), SendPtr(e.as_mut_ptr()), rows, k, n, 0, n);
                    }
                    assert!(c.iter().zip(&e).all(|(p, q)| p.to_bits() == q.to_bits()), "{ty:?} {isa:?}");
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn register_dequantized_tiles_give_the_panel_bits() {
        use crate::quant::{self, GgmlType};
        if !(simd::isa() == Isa::Avx512 && crate::kernels::weights::f16c()) {
            return;
        }
        for ty in [GgmlType::Q4_1, GgmlType::Q8_0] {
            for (rows, k, n) in [(1, 576, 70), (3, 64, 9), (7, 96, 13), (16, 160, 67)] {
                let raw = crate::test_blocks::blocks(ty, n * k / 32, 21);
                let q = Weights::from_ggml(ty, &raw, n, k).unwrap();
                let mut f = vec![0f32; n * k];
                quant::dequantize(ty, &raw, &mut f).unwrap();
                let x = data(rows * k, 22);
                let (mut a, mut b) = (vec![0f32; rows * n], vec![0f32; rows * n]);
                matmul(&x, &f, &mut a, rows, k, n);
                let (q8, bytes, row_bytes) = q.packed().unwrap();
                // SAFETY: the test returned early unless the CPU has avx512f and f16c; shapes match.
                unsafe { fused_block(q8, rows, x.as_ptr(), bytes.as_ptr(), row_bytes, b.as_mut_ptr(), k, n, 0, n) };
                assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()), "{ty:?} ({rows},{k},{n})");
            }
        }
    }
}
