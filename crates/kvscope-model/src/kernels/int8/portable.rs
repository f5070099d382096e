//! The int8 kernel in plain Rust: the reference every SIMD path must match
//! bit for bit (see the module docs of `int8` for the order it fixes).
//!
//! It is written for the autovectoriser, so that a target without a
//! hand-written path (ARM's NEON, or x86 below AVX2) still runs vector
//! code, and the operations it needs are ones every vector unit has:
//!
//! - A block's weights are decoded once into f32 (`Decoded`) and shared by
//!   up to `ROWS` activation rows.
//! - The integer products are computed in f32 lanes. That is exact: each
//!   product is an integer of magnitude ≤ 128 · 127, each lane sums 8 of
//!   them and each column 4 lanes, all below 2²⁴, where f32 holds every
//!   integer; so a column's f32 sum *is* `isum as f32`, whatever the order.
//!   A record row's 64 bytes are 16 columns × 4 consecutive values, and its
//!   activations are the same 4 values repeated, so the multiply-adds run
//!   over plain 8-lane chunks against one repeated pattern.
//! - The fold into the output uses `mul_add`, one fused instruction
//!   wherever the target has FMA (the order the SIMD paths keep).

use super::act::QuantizedRows;
use super::pack::{record_halves, PackKind, PackedInt8, COLS};
use crate::kernels::SendPtr;

/// Bytes of one record row: 16 columns × 4 consecutive values.
const ROW: usize = 64;

/// Record rows of one block once decoded: Q8_0's 8 rows, or Q4_1's 4 rows
/// of low nibbles then their 4 rows of high nibbles. Decoded row `m` meets
/// the activations `4m .. 4m + 4` of the block either way (Q4_1's high
/// nibbles hold values 16.. of their rows).
const DECODED_ROWS: usize = 8;

/// Activation rows that share one decoding of a block's weights.
const ROWS: usize = 4;

/// One block's weights as f32 (exact: small integers). Filled in place:
/// returned by value, its 2 KB were copied once per block (6 % of a
/// portable prefill).
struct Decoded([[f32; ROW]; DECODED_ROWS]);

impl Decoded {
    fn new() -> Self {
        Decoded([[0.0; ROW]; DECODED_ROWS])
    }

    #[inline(always)]
    fn fill(&mut self, kind: PackKind, rec: &[u8]) {
        match kind {
            PackKind::Q8_0 => {
                for (m, row) in self.0.iter_mut().enumerate() {
                    for (o, &byte) in row.iter_mut().zip(&rec[m * ROW..][..ROW]) {
                        *o = ((byte ^ 0x80) as i8) as f32;
                    }
                }
            }
            PackKind::Q4_1 => {
                let (low, high) = self.0.split_at_mut(4);
                for kg in 0..4 {
                    for (j, &byte) in rec[kg * ROW..][..ROW].iter().enumerate() {
                        low[kg][j] = (byte & 0x0f) as f32;
                        high[kg][j] = (byte >> 4) as f32;
                    }
                }
            }
        }
    }

    /// Each column's `Σ q_x · q_w` over the block (`x` its 32 values),
    /// exact (see the module docs). Plain loops, not `array::from_fn`,
    /// whose closures LLVM left as calls here.
    #[inline(always)]
    fn column_sums(&self, x: &[i8]) -> [f32; COLS] {
        let mut lanes = [0f32; ROW];
        for (m, w) in self.0.iter().enumerate() {
            let x4 = &x[4 * m..][..4];
            let mut pattern = [0f32; 8];
            for l in 0..8 {
                pattern[l] = x4[l % 4] as f32;
            }
            for (lane, wc) in lanes.chunks_exact_mut(8).zip(w.chunks_exact(8)) {
                for l in 0..8 {
                    lane[l] += wc[l] * pattern[l];
                }
            }
        }
        let mut sums = [0f32; COLS];
        for (c, s) in sums.iter_mut().enumerate() {
            *s = (lanes[4 * c] + lanes[4 * c + 1]) + (lanes[4 * c + 2] + lanes[4 * c + 3]);
        }
        sums
    }
}

/// Column groups `g0..g1` for every row.
///
/// # Safety
/// `y` must point to `a.rows × n` writable floats that no one else writes in
/// columns `16·g0 .. 16·g1` during the call.
pub(super) unsafe fn columns(a: &QuantizedRows, w: &PackedInt8, g0: usize, g1: usize, y: SendPtr, n: usize) {
    let kind = w.kind();
    let nb = a.blocks_per_row();
    let (qb, rb) = (kind.quant_bytes(), kind.record_bytes());
    let mut decoded = Decoded::new();
    for g in g0..g1 {
        let recs = w.group(g);
        let live = COLS.min(n - g * COLS);
        for r in (0..a.rows).step_by(ROWS) {
            let rows = (a.rows - r).min(ROWS);
            let mut acc = [[0f32; COLS]; ROWS];
            for b in 0..nb {
                let rec = &recs[b * rb..][..rb];
                decoded.fill(kind, rec);
                let dw = record_halves(rec, qb);
                let mw = if kind == PackKind::Q4_1 { record_halves(rec, qb + 32) } else { [0.0; COLS] };
                for (i, acc) in acc[..rows].iter_mut().enumerate() {
                    let m = (r + i) * nb + b;
                    let isum = decoded.column_sums(&a.q[(r + i) * a.k + b * 32..][..32]);
                    for c in 0..COLS {
                        acc[c] = isum[c].mul_add(a.d[m] * dw[c], acc[c]);
                    }
                    if kind == PackKind::Q4_1 {
                        for c in 0..COLS {
                            acc[c] = mw[c].mul_add(a.s[m], acc[c]);
                        }
                    }
                }
            }
            for (i, acc) in acc[..rows].iter().enumerate() {
                // SAFETY: row r + i, columns 16g .. 16g + live lie inside y (caller).
                unsafe { std::ptr::copy_nonoverlapping(acc.as_ptr(), y.get().add((r + i) * n + g * COLS), live) };
            }
        }
    }
}
