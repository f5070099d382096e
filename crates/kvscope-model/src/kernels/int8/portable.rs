//! The int8 kernel in plain Rust: the reference every SIMD path must match
//! bit for bit (see the module docs of `int8` for the order it fixes).
//!
//! It is written for the autovectoriser, so that a target without a
//! hand-written path (ARM's NEON, or x86 below AVX2) still runs vector
//! code, and the operations it needs are ones every vector unit has:
//!
//! - A column group's weights are decoded into f32 once per call, value-
//!   major (`DecodedBlock`), and then shared by every activation row; the
//!   activations are converted to f32 once per call. Calls of fewer rows
//!   than a tile (decode steps) take `few_rows`, which skips the decoding
//!   pass that one row cannot pay for.
//! - The integer products are computed in f32 lanes, one activation value
//!   broadcast against 16 columns' weights. That is exact: each product is
//!   an integer of magnitude ≤ 128 · 127 and a column sums 32 of them, below
//!   2²⁴, where f32 holds every integer; so a column's f32 sum *is*
//!   `isum as f32`, whatever the order and whether or not a multiply-add is
//!   fused.
//! - The fold into the output uses `mul_add`, one fused instruction
//!   wherever the target has FMA (the order the SIMD paths keep).

use super::act::QuantizedRows;
use super::pack::{PackKind, PackedInt8, COLS};
use crate::kernels::SendPtr;

mod few_rows;

/// Bytes of one record row: 16 columns × 4 consecutive values.
const ROW: usize = 64;

/// Values of one block.
const BLOCK: usize = 32;

/// Activation rows multiplied together: each decoded weight row is loaded
/// once for all of them, and their 2 · ROWS accumulators (8-lane) are
/// independent chains that keep the multiply and add pipes busy, with room
/// left in 16 vector registers for the weights and the broadcast. (Six
/// rows measured no faster.)
const ROWS: usize = 4;

/// One block's weights as f32 (exact: small integers), value-major: row `k`
/// holds value `k` of the block for each of the 16 columns, so a row's
/// products are one broadcast activation times two 8-lane vectors. Its
/// scales beside it.
#[derive(Clone)]
struct DecodedBlock {
    w: [[f32; COLS]; BLOCK],
    /// The weights' scales `dw` per column.
    d: [f32; COLS],
    /// Q4_1's minimums `mw` per column (zero for Q8_0, never read).
    m: [f32; COLS],
}

impl DecodedBlock {
    const ZERO: DecodedBlock = DecodedBlock { w: [[0.0; COLS]; BLOCK], d: [0.0; COLS], m: [0.0; COLS] };

    /// Decodes one record. A record row `g` holds, per column, 4 bytes: Q8_0
    /// values `4g .. 4g + 4`, or Q4_1 nibbles whose low halves are values
    /// `4g .. 4g + 4` and high halves values `16 + 4g ..` (see `pack`).
    #[inline(always)]
    fn fill(&mut self, kind: PackKind, rec: &[u8], scales: &[f32]) {
        match kind {
            PackKind::Q8_0 => {
                for g in 0..8 {
                    let row = &rec[g * ROW..][..ROW];
                    for i in 0..4 {
                        for c in 0..COLS {
                            self.w[4 * g + i][c] = ((row[4 * c + i] ^ 0x80) as i8) as f32;
                        }
                    }
                }
            }
            PackKind::Q4_1 => {
                for g in 0..4 {
                    let row = &rec[g * ROW..][..ROW];
                    for i in 0..4 {
                        for c in 0..COLS {
                            let byte = row[4 * c + i];
                            self.w[4 * g + i][c] = (byte & 0x0f) as f32;
                            self.w[16 + 4 * g + i][c] = (byte >> 4) as f32;
                        }
                    }
                }
                self.m.copy_from_slice(&scales[COLS..]);
            }
        }
        self.d.copy_from_slice(&scales[..COLS]);
    }
}

/// A thread's scratch, reused across calls: a column group's blocks
/// decoded, and the activations as f32 (converted once per call, not once
/// per column group).
#[derive(Default)]
struct Scratch {
    strip: Vec<DecodedBlock>,
    x: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Column groups `g0..g1` for every row.
///
/// # Safety
/// `y` must point to `a.rows × n` writable floats that no one else writes in
/// columns `16·g0 .. 16·g1` during the call.
pub(super) unsafe fn columns(a: &QuantizedRows, w: &PackedInt8, g0: usize, g1: usize, y: SendPtr, n: usize) {
    if a.rows < ROWS {
        // SAFETY: the caller's contract, passed on.
        return unsafe { few_rows::columns(a, w, g0, g1, y, n) };
    }
    SCRATCH.with(|scratch| {
        let Scratch { strip, x } = &mut *scratch.borrow_mut();
        x.clear();
        x.extend(a.q[..a.rows * a.k].iter().map(|&q| q as f32));
        for g in g0..g1 {
            decode_group(w, g, strip);
            let live = COLS.min(n - g * COLS);
            for r in (0..a.rows).step_by(ROWS) {
                let rows = (a.rows - r).min(ROWS);
                let acc = row_tile(a, x, w.kind(), strip, r, rows);
                for (i, acc) in acc[..rows].iter().enumerate() {
                    // SAFETY: row r + i, columns 16g .. 16g + live lie inside y (caller).
                    unsafe { std::ptr::copy_nonoverlapping(acc.as_ptr(), y.get().add((r + i) * n + g * COLS), live) };
                }
            }
        }
    });
}

/// Decodes column group `g`'s blocks into `strip`: once per group, shared
/// by every row tile (the decoding costs as much as several rows' products).
fn decode_group(w: &PackedInt8, g: usize, strip: &mut Vec<DecodedBlock>) {
    let kind = w.kind();
    let rb = kind.record_bytes();
    let recs = w.group(g);
    let nb = recs.len() / rb;
    let spr = kind.scales_per_record();
    let scales = &w.scales_f32()[g * nb * spr..][..nb * spr];
    strip.resize(nb, DecodedBlock::ZERO);
    for ((block, rec), sc) in strip.iter_mut().zip(recs.chunks_exact(rb)).zip(scales.chunks_exact(spr)) {
        block.fill(kind, rec, sc);
    }
}

/// Rows `r .. r + rows` (at most `ROWS`) against a decoded column group.
#[inline(always)]
fn row_tile(
    a: &QuantizedRows,
    xf: &[f32],
    kind: PackKind,
    strip: &[DecodedBlock],
    r: usize,
    rows: usize,
) -> [[f32; COLS]; ROWS] {
    let nb = a.blocks_per_row();
    let mut acc = [[0f32; COLS]; ROWS];
    // Rows past `rows` repeat the tile's first row (their sums are dropped),
    // so the inner loop always runs ROWS rows and stays unrolled.
    let row_of = |i: usize| r + if i < rows { i } else { 0 };
    for (b, block) in strip.iter().enumerate() {
        // Fixed-size arrays, so the loop below carries no bounds checks.
        let x: [&[f32; BLOCK]; ROWS] = std::array::from_fn(|i| {
            xf[row_of(i) * a.k + b * BLOCK..][..BLOCK].try_into().expect("a block is BLOCK values")
        });
        let mut isum = [[0f32; COLS]; ROWS];
        for (k, wk) in block.w.iter().enumerate() {
            for i in 0..ROWS {
                for c in 0..COLS {
                    // Not `mul_add`: LLVM left that scalar here (measured,
                    // 6× slower); the unfused sum is exact all the same.
                    isum[i][c] += wk[c] * x[i][k];
                }
            }
        }
        for i in 0..rows {
            let m = (r + i) * nb + b;
            for c in 0..COLS {
                acc[i][c] = isum[i][c].mul_add(a.d[m] * block.d[c], acc[i][c]);
            }
            if kind == PackKind::Q4_1 {
                for c in 0..COLS {
                    acc[i][c] = block.m[c].mul_add(a.s[m], acc[i][c]);
                }
            }
        }
    }
    acc
}
