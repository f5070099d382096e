//! The portable int8 kernel for fewer rows than a tile (decode steps): no
//! decoding pass. With one row to share it, decoding a block into
//! value-major f32 costs more than the row's products (its transpose is the
//! expensive part), so each record is converted where it lies, in record
//! order, against activations arranged to match it.
//!
//! A record row's 64 bytes are 16 columns × 4 consecutive values, so 8
//! lanes hold 2 columns × the same 4 values: the activations they meet are
//! one 4-value pattern repeated (`Patterns`, made once per row per call).
//! Each lane sums 8 exact integer products and each column 4 lanes (< 2²⁴,
//! so exact in f32 as in the tile kernel).

use super::super::act::QuantizedRows;
use super::super::pack::{PackKind, PackedInt8, COLS};
use super::BLOCK;
use crate::kernels::SendPtr;

/// Bytes of one record row: 16 columns × 4 consecutive values.
const ROW: usize = 64;

/// Record rows of a block: Q8_0's 8, or Q4_1's 4 whose high nibbles meet
/// the activations of record rows 4..8 (values 16.. of the block).
const PATTERNS_PER_BLOCK: usize = BLOCK / 4;

thread_local! {
    /// Each row's patterns: a thread's scratch, reused across calls.
    static PATTERNS: std::cell::RefCell<Vec<[f32; 8]>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Column groups `g0..g1` for every row (meant for rows < the tile's).
///
/// # Safety
/// `y` must point to `a.rows × n` writable floats that no one else writes in
/// columns `16·g0 .. 16·g1` during the call.
pub(super) unsafe fn columns(a: &QuantizedRows, w: &PackedInt8, g0: usize, g1: usize, y: SendPtr, n: usize) {
    let kind = w.kind();
    let nb = a.blocks_per_row();
    let rb = kind.record_bytes();
    let spr = kind.scales_per_record();
    let scales = w.scales_f32();
    PATTERNS.with(|patterns| {
        let patterns = &mut patterns.borrow_mut();
        for r in 0..a.rows {
            arrange(&a.q[r * a.k..][..a.k], patterns);
            for g in g0..g1 {
                let mut acc = [0f32; COLS];
                for (b, rec) in w.group(g).chunks_exact(rb).enumerate() {
                    let pat = &patterns[b * PATTERNS_PER_BLOCK..][..PATTERNS_PER_BLOCK];
                    let isum = column_sums(kind, rec, pat);
                    let m = r * nb + b;
                    let rec_scales = &scales[(g * nb + b) * spr..][..spr];
                    let dw = &rec_scales[..COLS];
                    for c in 0..COLS {
                        acc[c] = isum[c].mul_add(a.d[m] * dw[c], acc[c]);
                    }
                    if kind == PackKind::Q4_1 {
                        let mw = &rec_scales[COLS..];
                        for c in 0..COLS {
                            acc[c] = mw[c].mul_add(a.s[m], acc[c]);
                        }
                    }
                }
                let live = COLS.min(n - g * COLS);
                // SAFETY: row r, columns 16g .. 16g + live lie inside y (caller).
                unsafe { std::ptr::copy_nonoverlapping(acc.as_ptr(), y.get().add(r * n + g * COLS), live) };
            }
        }
    });
}

/// A row's activations as 8-lane patterns: pattern `j` is values
/// `4j .. 4j + 4` twice.
fn arrange(x: &[i8], patterns: &mut Vec<[f32; 8]>) {
    patterns.clear();
    patterns.extend(x.chunks_exact(4).map(|x4| {
        let mut p = [0f32; 8];
        for (l, v) in p.iter_mut().enumerate() {
            *v = x4[l % 4] as f32;
        }
        p
    }));
}

/// Each column's `Σ q_x · q_w` over one record (exact).
#[inline(always)]
fn column_sums(kind: PackKind, rec: &[u8], pat: &[[f32; 8]]) -> [f32; COLS] {
    let mut lanes = [0f32; ROW];
    match kind {
        PackKind::Q8_0 => {
            for (row, p) in rec.chunks_exact(ROW).take(8).zip(pat) {
                for (lane, bytes) in lanes.chunks_exact_mut(8).zip(row.chunks_exact(8)) {
                    for l in 0..8 {
                        lane[l] += ((bytes[l] ^ 0x80) as i8) as f32 * p[l];
                    }
                }
            }
        }
        PackKind::Q4_1 => {
            for (kg, row) in rec.chunks_exact(ROW).take(4).enumerate() {
                let (low, high) = (&pat[kg], &pat[4 + kg]);
                for (lane, bytes) in lanes.chunks_exact_mut(8).zip(row.chunks_exact(8)) {
                    for l in 0..8 {
                        lane[l] += (bytes[l] & 0x0f) as f32 * low[l];
                        lane[l] += (bytes[l] >> 4) as f32 * high[l];
                    }
                }
            }
        }
    }
    let mut sums = [0f32; COLS];
    for (c, s) in sums.iter_mut().enumerate() {
        *s = (lanes[4 * c] + lanes[4 * c + 1]) + (lanes[4 * c + 2] + lanes[4 * c + 3]);
    }
    sums
}
