//! The int8 kernel on AMX tiles, written once over `Tiles` (hardware or
//! emulation).
//!
//! One pass covers up to 32 token rows × 2 column groups with all 8 tile
//! registers: A0/A1 = 16 token rows each × one 32-value block of int8
//! activations (32 bytes a row, the activation buffer's row stride), B0/B1 =
//! one weight record each (8 rows × 64 bytes: the packed record *is* the B
//! layout, `[k-group][column][4 bytes]`), C00..C11 = 16 tokens × 16 columns
//! of int32. Per block every C tile starts from zero, so one `tdpbsud`
//! yields exactly the block's integer sum `portable` computes; the sums are
//! stored and folded into f32 accumulators with the same two FMAs, in the
//! same block order, as every other path.

use super::super::act::QuantizedRows;
use super::super::pack::{record_halves, PackKind, PackedInt8, COLS};
use super::tiles::{TileConfig, Tiles};
use crate::kernels::SendPtr;

/// Token rows per A (and C) tile: a tile's most rows.
const TM: usize = 16;
/// Token tiles and column groups per pass: 2 A + 2 B + 4 C = the 8 tiles.
const TT: usize = 2;
const GG: usize = 2;
/// Bytes of one block of activations (a row of A) and of one B row.
const A_COLSB: usize = 32;
const B_COLSB: usize = 64;
/// B rows: 4 bytes (one `tdpbsud` k-step) each, 32 values a block.
const B_ROWS: usize = A_COLSB / 4;

// Tile numbers: Cij = Ai × Bj.
const A0: u8 = 0;
const A1: u8 = 1;
const B0: u8 = 2;
const B1: u8 = 3;
const C00: u8 = 4;
const C01: u8 = 5;
const C10: u8 = 6;
const C11: u8 = 7;

/// The configuration of a pass with `m[i]` rows in token tile i (m[1] may be
/// 0) and `cg` column groups: tiles a pass leaves unused stay unconfigured.
fn config(m: [usize; TT], cg: usize) -> TileConfig {
    let mut cfg = TileConfig::new();
    for (i, &rows) in m.iter().enumerate() {
        if rows == 0 {
            continue;
        }
        cfg.set(A0 as usize + i, rows, A_COLSB);
        for j in 0..cg {
            cfg.set(C00 as usize + GG * i + j, rows, B_COLSB);
        }
    }
    for j in 0..cg {
        cfg.set(B0 as usize + j, B_ROWS, B_COLSB);
    }
    cfg
}

/// One C tile stored: 16 rows × 16 int32, 64 bytes a row.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Sums([[i32; COLS]; TM]);

/// A Q4_1 record's nibbles as a B tile: rows 0..4 the low nibbles (values
/// 0..16 of the block), rows 4..8 the high ones (values 16..32).
#[repr(C, align(64))]
struct Unpacked([u8; B_ROWS * B_COLSB]);

#[inline(always)]
fn unpack_q4(rec: &[u8], out: &mut Unpacked) {
    let (lo, hi) = out.0.split_at_mut(4 * B_COLSB);
    for ((l, h), &v) in lo.iter_mut().zip(hi.iter_mut()).zip(&rec[..4 * B_COLSB]) {
        *l = v & 0x0f;
        *h = v >> 4;
    }
}

/// Column groups `g0..g1` for every row, on the tiles of `t`.
///
/// # Safety
/// `y` must point to `a.rows × n` writable floats that no one else writes in
/// columns `16·g0 .. 16·g1` during the call; `t`'s own contract holds (for
/// `Hw`: AMX usable, no other tile user on this thread meanwhile).
#[inline(always)]
pub(crate) unsafe fn columns<T: Tiles>(
    t: &mut T,
    a: &QuantizedRows,
    w: &PackedInt8,
    g0: usize,
    g1: usize,
    y: SendPtr,
    n: usize,
) {
    let mut loaded = None;
    let mut g = g0;
    while g < g1 {
        let cg = (g1 - g).min(GG);
        let mut r0 = 0;
        while r0 < a.rows {
            let m = [(a.rows - r0).min(TM), (a.rows - r0).saturating_sub(TM).min(TM)];
            if loaded != Some((m, cg)) {
                let cfg = config(m, cg);
                // SAFETY: `config` builds palette 1 with every tile within
                // 16 rows × 64 bytes and unused tiles at 0 × 0.
                unsafe { t.configure(&cfg) };
                loaded = Some((m, cg));
            }
            // SAFETY: the tiles are configured for (m, cg); rows r0.. r0+m0+m1
            // and groups g..g+cg exist; y as the caller guarantees.
            unsafe { pass(t, a, w, g, cg, r0, m, y, n) };
            r0 += TM * TT;
        }
        g += cg;
    }
    if loaded.is_some() {
        // SAFETY: the tiles were configured by this call; releasing them
        // leaves the thread's tile state as it found it (unconfigured).
        unsafe { t.release() };
    }
}

/// Rows `r0 .. r0 + m[0] + m[1]` × groups `g .. g + cg`.
///
/// # Safety
/// The tiles hold `config(m, cg)`; those rows and groups exist; `y` as for
/// `columns`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pass<T: Tiles>(
    t: &mut T,
    a: &QuantizedRows,
    w: &PackedInt8,
    g: usize,
    cg: usize,
    r0: usize,
    m: [usize; TT],
    y: SendPtr,
    n: usize,
) {
    let kind = w.kind();
    let q4 = kind == PackKind::Q4_1;
    let nb = a.blocks_per_row();
    let (qb, rb) = (kind.quant_bytes(), kind.record_bytes());
    let recs: [&[u8]; GG] = std::array::from_fn(|j| w.group(g + j.min(cg - 1)));
    let mut facc = [[[0f32; COLS]; GG]; TT * TM];
    let mut sums = [[Sums([[0; COLS]; TM]); GG]; TT];
    let mut unpacked = [Unpacked([0; B_ROWS * B_COLSB]), Unpacked([0; B_ROWS * B_COLSB])];
    let stride = a.k;
    for b in 0..nb {
        // SAFETY: (every tile call of this block) the tiles are configured
        // for (m, cg) (caller), and each call below touches only tiles that
        // configuration shapes: A1/C1x only when m[1] > 0, B1/Cx1 only when
        // cg = 2. A rows read 32 bytes of activation row r0 + i at block b,
        // inside `a.q` (rows × k); B reads one 512-byte record (Q8_0) or its
        // unpacked copy; C stores fill one `Sums`.
        unsafe {
            let xa = a.q.as_ptr().add(r0 * stride + b * 32) as *const u8;
            t.load::<A0>(xa, stride);
            if m[1] > 0 {
                t.load::<A1>(xa.add(TM * stride), stride);
            }
            for j in 0..cg {
                let rec = &recs[j][b * rb..][..rb];
                let src = if q4 {
                    unpack_q4(rec, &mut unpacked[j]);
                    unpacked[j].0.as_ptr()
                } else {
                    rec.as_ptr()
                };
                if j == 0 {
                    t.load::<B0>(src, B_COLSB);
                } else {
                    t.load::<B1>(src, B_COLSB);
                }
            }
            macro_rules! product {
                ($c:ident, $a:ident, $b:ident, $i:expr, $j:expr) => {
                    t.zero::<$c>();
                    t.dot::<$c, $a, $b>();
                    t.store::<$c>(sums[$i][$j].0.as_mut_ptr() as *mut u8, B_COLSB);
                };
            }
            product!(C00, A0, B0, 0, 0);
            if cg > 1 {
                product!(C01, A0, B1, 0, 1);
            }
            if m[1] > 0 {
                product!(C10, A1, B0, 1, 0);
                if cg > 1 {
                    product!(C11, A1, B1, 1, 1);
                }
            }
        }
        for j in 0..cg {
            let rec = &recs[j][b * rb..][..rb];
            let dw = record_halves(rec, qb);
            let mw = if q4 { record_halves(rec, qb + 32) } else { [0.0; COLS] };
            for (ti, &rows) in m.iter().enumerate() {
                for i in 0..rows {
                    let row = ti * TM + i;
                    let meta = (r0 + row) * nb + b;
                    let (dx, sx) = (a.d[meta], a.s[meta]);
                    // Q8_0 weights went in as q + 128: take 128 · Σq_x back
                    // out (exact; the vnni512 path starts its sum there).
                    let offset = if q4 { 0 } else { (-128i32).wrapping_mul(a.qsum[meta]) };
                    let acc = &mut facc[row][j];
                    let isum = &sums[ti][j].0[i];
                    for c in 0..COLS {
                        // The same two IEEE operations, in the same order, as
                        // `portable` (dx · dw is one rounded product there too).
                        let v = isum[c].wrapping_add(offset) as f32;
                        acc[c] = v.mul_add(dx * dw[c], acc[c]);
                        if q4 {
                            acc[c] = mw[c].mul_add(sx, acc[c]);
                        }
                    }
                }
            }
        }
    }
    for (ti, &rows) in m.iter().enumerate() {
        for i in 0..rows {
            let row = ti * TM + i;
            for j in 0..cg {
                let col = (g + j) * COLS;
                let live = (n - col).min(COLS);
                for c in 0..live {
                    // SAFETY: row r0 + row < a.rows and column col + c < n lie
                    // inside y, in this call's column groups (caller).
                    unsafe { *y.get().add((r0 + row) * n + col + c) = facc[row][j][c] };
                }
            }
        }
    }
}
