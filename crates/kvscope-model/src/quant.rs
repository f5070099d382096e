//! GGML tensor element types and their dequantizers.
//!
//! `dequantize` defines every weight's f32 value. Q4_1 and Q8_0 matrices stay
//! compact in memory and are dequantized on the fly by `kernels::weights`,
//! which reproduces these values exactly; the kernels then see only f32 and
//! their reduction order is easy to keep fixed (see `kernels::matmul`).
//! Block layouts follow ggml's `ggml-common.h`.

/// A ggml tensor type id as stored in GGUF tensor infos.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q8_0,
    BF16,
}

/// The tensor type is one this engine cannot dequantize.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantError {
    #[error("ggml tensor type {0} is not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1); use a GGUF quantized with one of these")]
    UnsupportedType(u32),
    #[error("{n} elements is not a whole number of {ty:?} blocks of {block}")]
    PartialBlock { ty: GgmlType, n: usize, block: usize },
    #[error("{ty:?} data for {n} elements needs {need} bytes, got {got}")]
    WrongLength { ty: GgmlType, n: usize, need: usize, got: usize },
}

impl GgmlType {
    pub fn from_id(id: u32) -> Result<Self, QuantError> {
        Ok(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            30 => GgmlType::BF16,
            other => return Err(QuantError::UnsupportedType(other)),
        })
    }

    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q8_0 => 8,
            GgmlType::BF16 => 30,
        }
    }

    /// Elements per block.
    pub fn block_elems(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 => 32,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 2 + 16,
            GgmlType::Q4_1 => 2 + 2 + 16,
            GgmlType::Q8_0 => 2 + 32,
        }
    }

    /// Bytes needed for `n` elements, or an error when `n` splits a block.
    pub fn bytes_for(self, n: usize) -> Result<usize, QuantError> {
        let b = self.block_elems();
        if !n.is_multiple_of(b) {
            return Err(QuantError::PartialBlock { ty: self, n, block: b });
        }
        Ok(n / b * self.block_bytes())
    }
}

/// `f16_to_f32` without a branch or a call per value, so that a loop of it
/// vectorises (the portable kernels and the AMX kernel's scales): the
/// magnitude's bits moved into f32 position and scaled by 2¹¹² (exact, and
/// it makes f16 subnormals normal f32 values), or for infinities and NaNs
/// the exponent set to all ones; then the sign put back.
#[inline(always)]
pub fn f16_to_f32_lanes(h: u16) -> f32 {
    const TWO_POW_112: f32 = f32::from_bits((112 + 127) << 23);
    let h = h as u32;
    let magnitude = (h & 0x7fff) << 13;
    let finite = f32::from_bits(magnitude) * TWO_POW_112;
    let bits = if h & 0x7c00 == 0x7c00 { magnitude | 0x7f80_0000 } else { finite.to_bits() };
    f32::from_bits(bits | ((h & 0x8000) << 16))
}

/// IEEE half to f32, exact (every f16 is representable in f32).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal half: renormalise into an f32 normal.
            let mut e: i32 = -1;
            let mut m = m;
            loop {
                e += 1;
                m <<= 1;
                if m & 0x400 != 0 {
                    break;
                }
            }
            sign | (((127 - 15 - e) as u32) << 23) | ((m & 0x3ff) << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// bfloat16 is the top half of an f32.
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

fn le_u16(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

/// Dequantize `out.len()` elements of type `ty` from `data` into `out`.
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    let n = out.len();
    let need = ty.bytes_for(n)?;
    if data.len() != need {
        return Err(QuantError::WrongLength { ty, n, need, got: data.len() });
    }
    match ty {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        GgmlType::BF16 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = bf16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        GgmlType::Q8_0 => {
            // block: f16 scale d, 32 × i8 q; x = d * q
            for (o, b) in out.chunks_exact_mut(32).zip(data.chunks_exact(34)) {
                let d = f16_to_f32(le_u16(b, 0));
                for (j, x) in o.iter_mut().enumerate() {
                    *x = d * (b[2 + j] as i8) as f32;
                }
            }
        }
        GgmlType::Q4_0 => {
            // block: f16 d, 16 bytes; element j is the low nibble of byte j,
            // element j+16 the high nibble; x = d * (q - 8)
            for (o, b) in out.chunks_exact_mut(32).zip(data.chunks_exact(18)) {
                let d = f16_to_f32(le_u16(b, 0));
                for j in 0..16 {
                    let q = b[2 + j];
                    o[j] = d * ((q & 0x0f) as i32 - 8) as f32;
                    o[j + 16] = d * ((q >> 4) as i32 - 8) as f32;
                }
            }
        }
        GgmlType::Q4_1 => {
            // block: f16 d, f16 m, 16 bytes (nibbles as in Q4_0); x = d * q + m
            for (o, b) in out.chunks_exact_mut(32).zip(data.chunks_exact(20)) {
                let d = f16_to_f32(le_u16(b, 0));
                let m = f16_to_f32(le_u16(b, 2));
                for j in 0..16 {
                    let q = b[4 + j];
                    o[j] = d * (q & 0x0f) as f32 + m;
                    o[j + 16] = d * (q >> 4) as f32 + m;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_branch_free_conversion_equals_f16_to_f32_for_every_bit_pattern() {
        for h in 0..=u16::MAX {
            assert_eq!(f16_to_f32_lanes(h).to_bits(), f16_to_f32(h).to_bits(), "{h:#06x}");
        }
    }

    const ONE_F16: u16 = 0x3c00;
    const HALF_F16: u16 = 0x3800;
    const MINUS_TWO_F16: u16 = 0xc000;

    #[test]
    fn f16_conversion_covers_normals_subnormals_and_specials() {
        assert_eq!(f16_to_f32(ONE_F16), 1.0);
        assert_eq!(f16_to_f32(HALF_F16), 0.5);
        assert_eq!(f16_to_f32(MINUS_TWO_F16), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn bf16_is_the_top_half_of_f32() {
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0xc040), -3.0);
    }

    #[test]
    fn f32_f16_bf16_round_trip_plain_values() {
        let mut out = [0f32; 2];
        let data: Vec<u8> = [1.5f32, -7.25].iter().flat_map(|v| v.to_le_bytes()).collect();
        dequantize(GgmlType::F32, &data, &mut out).unwrap();
        assert_eq!(out, [1.5, -7.25]);
        let data: Vec<u8> = [ONE_F16, MINUS_TWO_F16].iter().flat_map(|v| v.to_le_bytes()).collect();
        dequantize(GgmlType::F16, &data, &mut out).unwrap();
        assert_eq!(out, [1.0, -2.0]);
        let data: Vec<u8> = [0x3f80u16, 0xc040].iter().flat_map(|v| v.to_le_bytes()).collect();
        dequantize(GgmlType::BF16, &data, &mut out).unwrap();
        assert_eq!(out, [1.0, -3.0]);
    }

    #[test]
    fn q8_0_block_is_scale_times_signed_bytes() {
        let mut b = HALF_F16.to_le_bytes().to_vec();
        b.extend((0..32).map(|j| (j as i8 - 16) as u8));
        let mut out = [0f32; 32];
        dequantize(GgmlType::Q8_0, &b, &mut out).unwrap();
        for (j, x) in out.iter().enumerate() {
            assert_eq!(*x, 0.5 * (j as f32 - 16.0));
        }
    }

    #[test]
    fn q4_0_block_puts_low_nibbles_first_and_subtracts_eight() {
        let mut b = MINUS_TWO_F16.to_le_bytes().to_vec();
        // byte j: low nibble j, high nibble 15 - j
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let mut out = [0f32; 32];
        dequantize(GgmlType::Q4_0, &b, &mut out).unwrap();
        for j in 0..16 {
            assert_eq!(out[j], -2.0 * (j as f32 - 8.0));
            assert_eq!(out[j + 16], -2.0 * ((15 - j) as f32 - 8.0));
        }
    }

    #[test]
    fn q4_1_block_is_scale_times_nibble_plus_min() {
        let mut b = HALF_F16.to_le_bytes().to_vec();
        b.extend(MINUS_TWO_F16.to_le_bytes());
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let mut out = [0f32; 32];
        dequantize(GgmlType::Q4_1, &b, &mut out).unwrap();
        for j in 0..16 {
            assert_eq!(out[j], 0.5 * j as f32 - 2.0);
            assert_eq!(out[j + 16], 0.5 * (15 - j) as f32 - 2.0);
        }
    }

    #[test]
    fn wrong_sizes_and_types_are_errors() {
        let mut out = [0f32; 31];
        assert!(matches!(dequantize(GgmlType::Q8_0, &[0; 34], &mut out), Err(QuantError::PartialBlock { .. })));
        let mut out = [0f32; 32];
        assert!(matches!(dequantize(GgmlType::Q8_0, &[0; 33], &mut out), Err(QuantError::WrongLength { .. })));
        assert_eq!(GgmlType::from_id(12), Err(QuantError::UnsupportedType(12)));
        for ty in [GgmlType::F32, GgmlType::F16, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::BF16] {
            assert_eq!(GgmlType::from_id(ty.id()), Ok(ty));
        }
    }
}
