//! The int8 kernel in plain Rust: the reference every SIMD path must match
//! bit for bit (see the module docs of `int8` for the order it fixes).

use super::act::QuantizedRows;
use super::pack::{PackKind, PackedInt8, COLS};
use crate::kernels::SendPtr;
use crate::quant::f16_to_f32;

/// `Σ q_x · q_w` over one block, exact, for column `col` of a record.
fn block_dot(kind: PackKind, rec: &[u8], col: usize, x: &[i8]) -> i32 {
    let mut sum = 0i32;
    for e in 0..32 {
        let w = match kind {
            PackKind::Q8_0 => ((rec[(e / 4) * 64 + col * 4 + e % 4] ^ 0x80) as i8) as i32,
            PackKind::Q4_1 => {
                let byte = rec[(e % 16 / 4) * 64 + col * 4 + e % 4];
                (if e < 16 { byte & 0x0f } else { byte >> 4 }) as i32
            }
        };
        sum += w * x[e] as i32;
    }
    sum
}

fn scale(rec: &[u8], off: usize, col: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([rec[off + 2 * col], rec[off + 2 * col + 1]]))
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
    for g in g0..g1 {
        let recs = w.group(g);
        for r in 0..a.rows {
            let x = &a.q[r * a.k..][..a.k];
            for col in 0..COLS.min(n - g * COLS) {
                let mut acc = 0f32;
                for b in 0..nb {
                    let rec = &recs[b * rb..][..rb];
                    let isum = block_dot(kind, rec, col, &x[b * 32..][..32]);
                    let i = r * nb + b;
                    acc = (isum as f32).mul_add(a.d[i] * scale(rec, qb, col), acc);
                    if kind == PackKind::Q4_1 {
                        acc = scale(rec, qb + 32, col).mul_add(a.s[i], acc);
                    }
                }
                // SAFETY: row r, column 16g + col < n lies inside y (caller).
                *y.get().add(r * n + g * COLS + col) = acc;
            }
        }
    }
}
