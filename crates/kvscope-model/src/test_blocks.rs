//! Weight bytes for the kernels' tests: deterministic pseudo-random bytes
//! and GGUF blocks of them with finite scales. A file of its own, so that
//! the kernels' tests share it without importing each other's modules.

use crate::quant::GgmlType;

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

/// Random blocks with finite scales of varied magnitude (f16 exponent
/// bits kept below the inf/nan range; subnormals included).
pub fn blocks(ty: GgmlType, n_blocks: usize, seed: u64) -> Vec<u8> {
    let mut b = bytes(n_blocks * ty.block_bytes(), seed);
    let scales = if ty == GgmlType::Q4_1 { 2 } else { 1 };
    for blk in b.chunks_mut(ty.block_bytes()) {
        for s in 0..scales {
            blk[2 * s + 1] &= 0xbb; // exponent < 0x1f
        }
    }
    b
}
