//! Q4_1 and Q8_0 weights repacked once, at load, into the int8 kernels'
//! layout.
//!
//! A record holds 16 output columns × one 32-value block. Its quantized part
//! is 64-byte rows `[k-group][column][4 bytes]`, so one 64-byte row feeds a
//! `vpdpbusd` that gives each of the 16 columns 4 more products; its scales
//! follow as 16 f16 values (`d`, then `m` for Q4_1). Records run over the
//! blocks of one column group, then the next group, so a tile streams its
//! weights in address order.
//!
//! - Q8_0: 8 k-groups; each byte is `q + 128` (`q ^ 0x80`), the unsigned
//!   operand `vpdpbusd` wants (the kernel subtracts `128 · Σq_x`).
//! - Q4_1: 4 k-groups of nibble bytes: the low nibble of a byte is element
//!   `4·g + i` of the block, the high nibble element `16 + 4·g + i` — which
//!   is exactly how GGUF stores them, so a record is a transpose of 4-byte
//!   groups with nothing unpacked.
//!
//! Columns past `n` (up to the next multiple of 16) are zero: they compute
//! zeros that are never stored.

use crate::quant::f16_to_f32;

/// Output columns per record.
pub const COLS: usize = 16;

/// Which GGUF type the records came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackKind {
    Q4_1,
    Q8_0,
}

impl PackKind {
    /// Bytes of the quantized part of a record.
    pub const fn quant_bytes(self) -> usize {
        match self {
            PackKind::Q4_1 => 256,
            PackKind::Q8_0 => 512,
        }
    }

    /// Bytes of a whole record (quantized part + f16 scales).
    pub const fn record_bytes(self) -> usize {
        match self {
            PackKind::Q4_1 => 256 + 2 * 32,
            PackKind::Q8_0 => 512 + 32,
        }
    }

    /// f32 scales per record in `PackedInt8::scales_f32`: `d` per column,
    /// and `m` per column for Q4_1.
    pub const fn scales_per_record(self) -> usize {
        match self {
            PackKind::Q4_1 => 2 * COLS,
            PackKind::Q8_0 => COLS,
        }
    }

    /// Bytes of one GGUF block of 32 values.
    const fn gguf_block_bytes(self) -> usize {
        match self {
            PackKind::Q4_1 => 20,
            PackKind::Q8_0 => 34,
        }
    }
}

/// An `n × k` weight matrix in int8-kernel records.
#[derive(Clone, Debug)]
pub struct PackedInt8 {
    kind: PackKind,
    n: usize,
    k: usize,
    data: Vec<u8>,
    /// Whether any Q8_0 value is −128 (every path multiplies it exactly;
    /// tests use this to know their matrices exercise it).
    has_q8_min: bool,
    /// Quantize this matrix's activations in two int8 terms (see
    /// `gemm::matmul_int8`): twice the integer work for ~16-bit activations.
    two_term: bool,
    /// Every record's scales as f32, built the first time the portable
    /// kernel asks (`scales_f32`); never on a path with its own f16
    /// conversion.
    scales_f32: std::sync::OnceLock<Vec<f32>>,
}

impl PackedInt8 {
    /// Repack `n` rows of `k` values stored as GGUF blocks of `kind`.
    pub fn from_gguf(kind: PackKind, raw: &[u8], n: usize, k: usize) -> Self {
        assert!(k.is_multiple_of(32), "int8 packing needs k divisible by 32");
        let nb = k / 32;
        let gb = kind.gguf_block_bytes();
        assert_eq!(raw.len(), n * nb * gb, "raw weight bytes");
        let groups = n.div_ceil(COLS);
        let rec = kind.record_bytes();
        let mut data = vec![0u8; groups * nb * rec];
        let mut has_q8_min = false;
        for (j, row) in raw.chunks_exact(nb * gb).enumerate() {
            let (g, col) = (j / COLS, j % COLS);
            for (b, blk) in row.chunks_exact(gb).enumerate() {
                let r = &mut data[(g * nb + b) * rec..][..rec];
                let q = kind.quant_bytes();
                match kind {
                    PackKind::Q8_0 => {
                        for (e, &v) in blk[2..].iter().enumerate() {
                            has_q8_min |= v == 0x80;
                            r[(e / 4) * 64 + col * 4 + e % 4] = v ^ 0x80;
                        }
                        r[q + 2 * col..][..2].copy_from_slice(&blk[..2]);
                    }
                    PackKind::Q4_1 => {
                        for (e, &v) in blk[4..].iter().enumerate() {
                            r[(e / 4) * 64 + col * 4 + e % 4] = v;
                        }
                        r[q + 2 * col..][..2].copy_from_slice(&blk[..2]);
                        r[q + 32 + 2 * col..][..2].copy_from_slice(&blk[2..4]);
                    }
                }
            }
        }
        PackedInt8 { kind, n, k, data, has_q8_min, two_term: false, scales_f32: std::sync::OnceLock::new() }
    }

    pub fn kind(&self) -> PackKind {
        self.kind
    }
    pub fn n(&self) -> usize {
        self.n
    }
    pub fn k(&self) -> usize {
        self.k
    }
    pub fn bytes(&self) -> usize {
        self.data.len()
    }
    pub fn groups(&self) -> usize {
        self.n.div_ceil(COLS)
    }
    /// Whether activations go in as two int8 terms (value + residual).
    pub fn two_term(&self) -> bool {
        self.two_term
    }

    pub fn set_two_term(&mut self, on: bool) {
        self.two_term = on;
    }

    pub fn has_q8_min(&self) -> bool {
        self.has_q8_min
    }

    /// Every record's scales as f32, `scales_per_record` of them per record
    /// in record order: its 16 `d`, then for Q4_1 its 16 `m`. Converted once,
    /// on first use: without F16C an f16 conversion is a dozen integer
    /// operations, and one per scale per record cost the portable kernel a
    /// third of its one-row time. Costs 4 bytes per scale (an eighth more
    /// memory than the records for Q4_1), only where it is used.
    pub(crate) fn scales_f32(&self) -> &[f32] {
        self.scales_f32.get_or_init(|| {
            let (qb, rb) = (self.kind.quant_bytes(), self.kind.record_bytes());
            let mut out = Vec::with_capacity(self.data.len() / rb * self.kind.scales_per_record());
            for rec in self.data.chunks_exact(rb) {
                out.extend(record_halves(rec, qb));
                if self.kind == PackKind::Q4_1 {
                    out.extend(record_halves(rec, qb + 32));
                }
            }
            out
        })
    }

    /// The records of column group `g`, block after block.
    pub fn group(&self, g: usize) -> &[u8] {
        let len = self.k / 32 * self.kind.record_bytes();
        &self.data[g * len..][..len]
    }

    /// Row `j` as f32: the values `quant::dequantize` gives (`d·q + m`, a
    /// rounded multiply then a rounded add), for embedding lookups.
    pub fn dequant_row(&self, j: usize, out: &mut [f32]) {
        assert!(j < self.n && out.len() >= self.k, "row {j} of {}", self.n);
        let (g, col) = (j / COLS, j % COLS);
        let q = self.kind.quant_bytes();
        for (b, r) in self.group(g).chunks_exact(self.kind.record_bytes()).enumerate() {
            let half = |off: usize| f16_to_f32(u16::from_le_bytes([r[off + 2 * col], r[off + 2 * col + 1]]));
            let d = half(q);
            let out = &mut out[b * 32..][..32];
            for e in 0..32 {
                out[e] = match self.kind {
                    PackKind::Q8_0 => d * ((r[(e / 4) * 64 + col * 4 + e % 4] ^ 0x80) as i8) as f32,
                    PackKind::Q4_1 => {
                        let byte = r[(e % 16 / 4) * 64 + col * 4 + e % 4];
                        let nib = if e < 16 { byte & 0x0f } else { byte >> 4 };
                        d * nib as f32 + half(q + 32)
                    }
                };
            }
        }
    }
}

/// The 16 f16 scales at byte `off` of a record (`quant_bytes` for `d`,
/// `quant_bytes + 32` for Q4_1's `m`), as f32, vectorisably.
#[inline(always)]
pub(crate) fn record_halves(rec: &[u8], off: usize) -> [f32; COLS] {
    let mut out = [0f32; COLS];
    for (c, o) in out.iter_mut().enumerate() {
        *o = crate::quant::f16_to_f32_lanes(u16::from_le_bytes([rec[off + 2 * c], rec[off + 2 * c + 1]]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{self, GgmlType};
    use crate::test_blocks::blocks;

    #[test]
    fn packed_rows_dequantize_to_the_gguf_values_bit_for_bit() {
        for (kind, ty) in [(PackKind::Q4_1, GgmlType::Q4_1), (PackKind::Q8_0, GgmlType::Q8_0)] {
            let (n, k) = (37, 96);
            let raw = blocks(ty, n * k / 32, 3);
            let mut want = vec![0f32; n * k];
            quant::dequantize(ty, &raw, &mut want).unwrap();
            let p = PackedInt8::from_gguf(kind, &raw, n, k);
            assert_eq!(p.groups(), 3);
            let mut row = vec![0f32; k];
            for j in 0..n {
                p.dequant_row(j, &mut row);
                for (a, b) in row.iter().zip(&want[j * k..][..k]) {
                    assert_eq!(a.to_bits(), b.to_bits(), "{kind:?} row {j}");
                }
            }
        }
    }
}
