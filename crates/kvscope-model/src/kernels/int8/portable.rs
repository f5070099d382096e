//! The int8 kernel in plain Rust: the reference every SIMD path must match
//! bit for bit (see the module docs of `int8` for the order it fixes).
//!
//! It is written for the autovectoriser, so that a target without a
//! hand-written path (ARM's NEON, or x86 below AVX2) still runs vector
//! code: a record row's 64 bytes (16 columns × 4 consecutive values) are
//! multiplied lane by lane with the matching 4 activations repeated 16
//! times, into 64 int32 lanes; each column's 4 lanes are added at the end
//! of the block (integer sums are exact in any order), and the fold into
//! f32 runs over 16 column lanes with `mul_add` — one fused instruction
//! wherever the target has FMA.

use super::act::QuantizedRows;
use super::pack::{record_halves, PackKind, PackedInt8, COLS};
use crate::kernels::SendPtr;

/// Bytes of one record row: 16 columns × 4 values.
const ROW: usize = 64;

/// Four activations repeated over a record row's 64 lanes.
#[inline(always)]
fn repeat4(x: &[i8]) -> [i32; ROW] {
    std::array::from_fn(|j| x[j % 4] as i32)
}

/// Each column's exact `Σ q_x · q_w` over one block (`x` is its 32 values).
#[inline(always)]
fn block_sums(kind: PackKind, rec: &[u8], x: &[i8]) -> [i32; COLS] {
    let mut lanes = [0i32; ROW];
    match kind {
        PackKind::Q8_0 => {
            for kg in 0..8 {
                let (w, xr) = (&rec[kg * ROW..][..ROW], repeat4(&x[kg * 4..]));
                for j in 0..ROW {
                    lanes[j] += ((w[j] ^ 0x80) as i8 as i32) * xr[j];
                }
            }
        }
        PackKind::Q4_1 => {
            for kg in 0..4 {
                let w = &rec[kg * ROW..][..ROW];
                let (lo, hi) = (repeat4(&x[kg * 4..]), repeat4(&x[16 + kg * 4..]));
                for j in 0..ROW {
                    lanes[j] += (w[j] & 0x0f) as i32 * lo[j] + (w[j] >> 4) as i32 * hi[j];
                }
            }
        }
    }
    std::array::from_fn(|c| lanes[4 * c] + lanes[4 * c + 1] + lanes[4 * c + 2] + lanes[4 * c + 3])
}

/// Column groups `g0..g1` for every row.
///
/// # Safety
/// `y` must point to `a.rows × n` writable floats that no one else writes in
/// columns `16·g0 .. 16·g1` during the call.
#[inline(always)]
pub(super) unsafe fn columns(a: &QuantizedRows, w: &PackedInt8, g0: usize, g1: usize, y: SendPtr, n: usize) {
    let kind = w.kind();
    let nb = a.blocks_per_row();
    let (qb, rb) = (kind.quant_bytes(), kind.record_bytes());
    for g in g0..g1 {
        let recs = w.group(g);
        let live = COLS.min(n - g * COLS);
        for r in 0..a.rows {
            let x = &a.q[r * a.k..][..a.k];
            let mut acc = [0f32; COLS];
            for b in 0..nb {
                let rec = &recs[b * rb..][..rb];
                let isum = block_sums(kind, rec, &x[b * 32..][..32]);
                let i = r * nb + b;
                let dw = record_halves(rec, qb);
                for c in 0..COLS {
                    acc[c] = (isum[c] as f32).mul_add(a.d[i] * dw[c], acc[c]);
                }
                if kind == PackKind::Q4_1 {
                    let mw = record_halves(rec, qb + 32);
                    for c in 0..COLS {
                        acc[c] = mw[c].mul_add(a.s[i], acc[c]);
                    }
                }
            }
            // SAFETY: row r, columns 16g .. 16g + live lie inside y (caller).
            unsafe { std::ptr::copy_nonoverlapping(acc.as_ptr(), y.get().add(r * n + g * COLS), live) };
        }
    }
}
