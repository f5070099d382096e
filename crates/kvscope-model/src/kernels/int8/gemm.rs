//! `y = x · Wᵀ` on the int8 path: quantize the activation rows once, then
//! split the weight's column groups over threads (never the reduction) and
//! run the chosen instruction set's kernel on each share.

use super::act::QuantizedRows;
use super::pack::PackedInt8;
use super::Int8Isa;
use crate::kernels::SendPtr;
use rayon::prelude::*;
use std::cell::RefCell;

/// Buffers of the last call on this thread, kept so that each call (30 of
/// each kind per forward pass) reuses the memory instead of allocating and
/// faulting it in again.
#[derive(Default)]
struct Scratch {
    act: QuantizedRows,
    /// Two-term matrices: the first term's rounding error, then the second
    /// term's products.
    residual: Vec<f32>,
    y2: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// `y[r * n + j] = Σ x[r] · w[j]` for `rows` rows, on the best int8 path.
pub fn matmul_int8(x: &[f32], w: &PackedInt8, y: &mut [f32], rows: usize) {
    matmul_int8_on(super::int8_isa(), x, w, y, rows);
}

/// `matmul_int8` on a given instruction set (tests compare them all).
///
/// # Panics
/// When `isa` is not available on this CPU, or the shapes disagree.
pub fn matmul_int8_on(isa: Int8Isa, x: &[f32], w: &PackedInt8, y: &mut [f32], rows: usize) {
    assert!(isa.available(), "{} kernels need CPU features this machine lacks", isa.name());
    let (k, n) = (w.k(), w.n());
    assert!(x.len() >= rows * k && y.len() >= rows * n, "matmul shapes");
    if rows == 0 || n == 0 {
        return;
    }
    let mut s = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    s.act.quantize(x, rows, k);
    run(isa, &s.act, w, y, n);
    if w.two_term() {
        // The second term: the first term's rounding error, quantized the
        // same way and multiplied the same way; added once per output.
        s.act.residual_into(x, &mut s.residual);
        s.act.quantize(&s.residual, rows, k);
        s.y2.resize(rows * n, 0.0);
        run(isa, &s.act, w, &mut s.y2, n);
        for (a, b) in y[..rows * n].iter_mut().zip(&s.y2) {
            *a += b;
        }
    }
    SCRATCH.with(|cell| *cell.borrow_mut() = s);
}

fn run(isa: Int8Isa, act: &QuantizedRows, w: &PackedInt8, y: &mut [f32], n: usize) {
    let groups = w.groups();
    // Enough tasks for load balance; the split never changes a value.
    let threads = crate::kernels::threads();
    let per_task = groups.div_ceil(threads * 4).max(1);
    let tasks = groups.div_ceil(per_task);
    let yp = SendPtr(y.as_mut_ptr());
    let a = act;
    (0..tasks).into_par_iter().for_each(|t| {
        let g0 = t * per_task;
        let g1 = (g0 + per_task).min(groups);
        // SAFETY: tasks write disjoint column groups of y, whose shape was
        // checked above; `isa` is available (asserted; for AmxInt8 that is
        // AMX granted plus AVX-512 VNNI, what `columns_hw` requires).
        unsafe {
            match isa {
                #[cfg(target_arch = "x86_64")]
                Int8Isa::AmxInt8 => super::amx::columns_hw(a, w, g0, g1, yp, n),
                Int8Isa::AmxEmulated => super::amx::columns_emulated(a, w, g0, g1, yp, n),
                #[cfg(target_arch = "x86_64")]
                Int8Isa::Avx512Vnni => super::vnni512::columns(a, w, g0, g1, yp, n),
                #[cfg(target_arch = "x86_64")]
                Int8Isa::AvxVnni => super::avx2::columns_vnni(a, w, g0, g1, yp, n),
                #[cfg(target_arch = "x86_64")]
                Int8Isa::Avx2 => super::avx2::columns(a, w, g0, g1, yp, n),
                _ => super::portable::columns(a, w, g0, g1, yp, n),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::int8::pack::PackKind;
    use crate::quant::{self, GgmlType};
    use crate::test_blocks::blocks;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 2000) as f32 / 1000.0 - 1.0)
            .collect()
    }

    fn paths() -> Vec<Int8Isa> {
        let all = [
            Int8Isa::AmxInt8,
            Int8Isa::AmxEmulated,
            Int8Isa::Avx512Vnni,
            Int8Isa::AvxVnni,
            Int8Isa::Avx2,
            Int8Isa::Portable,
        ];
        let (have, lack): (Vec<_>, Vec<_>) = all.into_iter().partition(|i| i.available());
        if !lack.is_empty() {
            eprintln!("not checked on this CPU: {lack:?}");
        }
        if let Some(why) = super::super::amx_unavailable_reason() {
            eprintln!("AMX-INT8 hardware skipped: {why} (its kernel logic ran on emulated tiles)");
        }
        have
    }

    const SHAPES: [(usize, usize, usize); 6] =
        [(1, 64, 16), (1, 576, 70), (3, 96, 9), (5, 160, 33), (16, 64, 130), (37, 96, 48)];

    /// Every path gives the portable kernel's bits, for every tile shape and
    /// ragged column count.
    #[test]
    fn every_instruction_set_gives_the_portable_bits() {
        for (kind, ty) in [(PackKind::Q4_1, GgmlType::Q4_1), (PackKind::Q8_0, GgmlType::Q8_0)] {
            for ((rows, k, n), two_term) in SHAPES.into_iter().flat_map(|s| [(s, false), (s, true)]) {
                let mut w = PackedInt8::from_gguf(kind, &blocks(ty, n * k / 32, 7), n, k);
                w.set_two_term(two_term);
                let x = data(rows * k, 3);
                let mut want = vec![0f32; rows * n];
                matmul_int8_on(Int8Isa::Portable, &x, &w, &mut want, rows);
                for isa in paths() {
                    let mut got = vec![f32::NAN; rows * n];
                    matmul_int8_on(isa, &x, &w, &mut got, rows);
                    assert!(
                        got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{kind:?} {isa:?} ({rows},{k},{n}) two-term {two_term}"
                    );
                }
            }
        }
    }

    /// A row's outputs are the same alone as inside any batch.
    #[test]
    fn a_row_alone_equals_the_same_row_in_a_batch() {
        let (rows, k, n) = (23, 128, 80);
        let w = PackedInt8::from_gguf(PackKind::Q4_1, &blocks(GgmlType::Q4_1, n * k / 32, 9), n, k);
        let x = data(rows * k, 5);
        for isa in paths() {
            let mut all = vec![0f32; rows * n];
            matmul_int8_on(isa, &x, &w, &mut all, rows);
            for r in 0..rows {
                let mut one = vec![0f32; n];
                matmul_int8_on(isa, &x[r * k..][..k], &w, &mut one, 1);
                assert_eq!(one, all[r * n..][..n], "{isa:?} row {r}");
            }
        }
    }

    /// The int8 product is close to the f32 product of the dequantized
    /// weights: the only error is the activations' rounding (≤ d/2 each).
    #[test]
    fn close_to_the_f32_product() {
        for (kind, ty) in [(PackKind::Q4_1, GgmlType::Q4_1), (PackKind::Q8_0, GgmlType::Q8_0)] {
            let (rows, k, n) = (4, 256, 20);
            let raw = blocks(ty, n * k / 32, 13);
            let mut wf = vec![0f32; n * k];
            quant::dequantize(ty, &raw, &mut wf).unwrap();
            let w = PackedInt8::from_gguf(kind, &raw, n, k);
            let x = data(rows * k, 17);
            let mut y = vec![0f32; rows * n];
            matmul_int8(&x, &w, &mut y, rows);
            for r in 0..rows {
                for j in 0..n {
                    let (xr, wj) = (&x[r * k..][..k], &wf[j * k..][..k]);
                    let exact: f64 = xr.iter().zip(wj).map(|(a, b)| *a as f64 * *b as f64).sum();
                    // each x moves by at most half a step (max|x| / 254 per block)
                    let bound: f64 = xr
                        .chunks(32)
                        .zip(wj.chunks(32))
                        .map(|(xb, wb)| {
                            let step = xb.iter().fold(0f32, |m, v| m.max(v.abs())) as f64 / 254.0;
                            wb.iter().map(|v| v.abs() as f64 * step).sum::<f64>()
                        })
                        .sum();
                    let got = y[r * n + j] as f64;
                    assert!(
                        (got - exact).abs() <= bound * 1.01 + 1e-3 * exact.abs().max(1.0),
                        "{kind:?} ({r},{j}): {got} vs {exact}, bound {bound}"
                    );
                }
            }
        }
    }

    /// Q8_0 values of −128 (outside what llama.cpp's quantizer writes, but
    /// legal in a file) are multiplied exactly on every path.
    #[test]
    fn q8_minimum_values_are_exact_on_every_path() {
        let (rows, k, n) = (2, 64, 16);
        let mut raw = blocks(GgmlType::Q8_0, n * k / 32, 19);
        for blk in raw.chunks_mut(34) {
            blk[5] = 0x80;
        }
        let w = PackedInt8::from_gguf(PackKind::Q8_0, &raw, n, k);
        assert!(w.has_q8_min());
        let x = data(rows * k, 23);
        let mut want = vec![0f32; rows * n];
        matmul_int8_on(Int8Isa::Portable, &x, &w, &mut want, rows);
        for isa in paths() {
            let mut got = vec![0f32; rows * n];
            matmul_int8_on(isa, &x, &w, &mut got, rows);
            assert_eq!(got, want, "{isa:?}");
        }
    }
}
