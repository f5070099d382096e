//! Activation rows quantized to int8 per 32-value block (Q8_1-style).
//!
//! Every ISA computes the same values: the block maximum is exact, `d` and
//! `1 / d` are single IEEE divisions, `x · (1 / d)` one rounded multiply, and
//! rounding to the nearest integer breaks ties to even everywhere (the
//! portable path uses the 1.5·2²³ trick, exact for |v| < 2²², which these
//! values, at most 127.5, are far below).

use rayon::prelude::*;

/// Values per quantization block (the GGUF block size of Q4_1 and Q8_0).
pub const BLOCK: usize = 32;

/// Up to this many values are quantized on the calling thread: waking the
/// pool costs more than the work (a decode step's few rows).
const SERIAL_VALUES: usize = 1 << 16;

/// `rows` activation rows of `k` values (k a multiple of 32), quantized.
#[derive(Default)]
pub struct QuantizedRows {
    pub rows: usize,
    pub k: usize,
    /// `rows × k` int8 values, row-major.
    pub q: Vec<i8>,
    /// Per row and block (`r * k/32 + b`): the scale `d`.
    pub d: Vec<f32>,
    /// Per row and block: `Σq`.
    pub qsum: Vec<i32>,
    /// Per row and block: `d · Σq`, the weight of Q4_1's min term.
    pub s: Vec<f32>,
}

impl QuantizedRows {
    pub fn blocks_per_row(&self) -> usize {
        self.k / BLOCK
    }

    /// Quantize `x` (`rows × k`, row-major), reusing this buffer's memory.
    pub fn quantize(&mut self, x: &[f32], rows: usize, k: usize) {
        assert!(k.is_multiple_of(BLOCK), "int8 rows need k divisible by {BLOCK}, got {k}");
        assert!(x.len() >= rows * k, "activation shape");
        let nb = k / BLOCK;
        self.rows = rows;
        self.k = k;
        self.q.resize(rows * k, 0);
        self.d.resize(rows * nb, 0.0);
        self.qsum.resize(rows * nb, 0);
        self.s.resize(rows * nb, 0.0);
        let isa = super::int8_isa();
        let rows_per_task = (4096 / k).max(1);
        if rows * k <= SERIAL_VALUES {
            let blocks = self.q.chunks_exact_mut(BLOCK).zip(x.chunks_exact(BLOCK));
            for (i, (qb, xb)) in blocks.enumerate() {
                let (db, sum) = quantize_block(isa, xb.try_into().expect("block"), qb.try_into().expect("block"));
                (self.d[i], self.qsum[i], self.s[i]) = (db, sum, db * sum as f32);
            }
            return;
        }
        self.q
            .par_chunks_mut(k * rows_per_task)
            .zip(self.d.par_chunks_mut(nb * rows_per_task))
            .zip(self.qsum.par_chunks_mut(nb * rows_per_task))
            .zip(self.s.par_chunks_mut(nb * rows_per_task))
            .zip(x[..rows * k].par_chunks(k * rows_per_task))
            .for_each(|((((q, d), qsum), s), x)| {
                for (i, xb) in x.chunks_exact(BLOCK).enumerate() {
                    let qb: &mut [i8; BLOCK] = (&mut q[i * BLOCK..][..BLOCK]).try_into().expect("block");
                    let xb: &[f32; BLOCK] = xb.try_into().expect("block");
                    let (db, sum) = quantize_block(isa, xb, qb);
                    d[i] = db;
                    qsum[i] = sum;
                    s[i] = db * sum as f32;
                }
            });
    }
}

impl QuantizedRows {
    /// `x − d·q` per element, into `out`: what the quantization of `x` left
    /// out.
    pub fn residual_into(&self, x: &[f32], out: &mut Vec<f32>) {
        out.clear();
        for ((xb, qb), &d) in x[..self.rows * self.k].chunks_exact(BLOCK).zip(self.q.chunks_exact(BLOCK)).zip(&self.d) {
            out.extend(xb.iter().zip(qb).map(|(&xi, &qi)| xi - d * qi as f32));
        }
    }
}

/// One block: returns `(d, Σq)` and writes `q`.
fn quantize_block(isa: super::Int8Isa, x: &[f32; BLOCK], q: &mut [i8; BLOCK]) -> (f32, i32) {
    #[cfg(target_arch = "x86_64")]
    if matches!(isa, super::Int8Isa::Avx512Vnni | super::Int8Isa::AmxInt8) {
        // SAFETY: both paths are only chosen when avx512f/bw are present
        // (AmxInt8 requires Avx512Vnni available).
        return unsafe { quantize_block_avx512(x, q) };
    }
    #[cfg(target_arch = "x86_64")]
    if matches!(isa, super::Int8Isa::AvxVnni | super::Int8Isa::Avx2) {
        // SAFETY: both paths are only chosen when avx2 and fma are present.
        return unsafe { quantize_block_avx2(x, q) };
    }
    let _ = isa;
    quantize_block_portable(x, q)
}

/// The portable block compiled for AVX2 (the same operations, 8 lanes at
/// a time).
///
/// # Safety
/// The CPU must support avx2 and fma.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_block_avx2(x: &[f32; BLOCK], q: &mut [i8; BLOCK]) -> (f32, i32) {
    quantize_block_portable(x, q)
}

/// The scale `d = amax / 127` and `1 / d`, or 0 for an all-zero block
/// (then every q is 0). Also the KV cache's int8 rule (`kv_storage`).
#[inline(always)]
pub(crate) fn scales(amax: f32) -> (f32, f32) {
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    (d, id)
}

/// One block in plain Rust, in lane arrays so that it vectorises on any
/// target (the maximum is exact in any order).
#[inline(always)]
pub(crate) fn quantize_block_portable(x: &[f32; BLOCK], q: &mut [i8; BLOCK]) -> (f32, i32) {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2²³: v + ROUND − ROUND rounds v half to even
    const L: usize = 8;
    let mut top = [0f32; L];
    for chunk in x.chunks_exact(L) {
        for l in 0..L {
            top[l] = top[l].max(chunk[l].abs());
        }
    }
    let amax = top.into_iter().fold(0f32, f32::max);
    let (d, id) = scales(amax);
    let mut r = [0i32; BLOCK];
    for (ri, &xi) in r.iter_mut().zip(x) {
        *ri = ((xi * id + ROUND) - ROUND) as i32;
    }
    for (qi, &ri) in q.iter_mut().zip(&r) {
        *qi = ri as i8;
    }
    (d, r.iter().sum())
}

/// # Safety
/// The CPU must support avx512f and avx512bw.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_block_avx512(x: &[f32; BLOCK], q: &mut [i8; BLOCK]) -> (f32, i32) {
    use std::arch::x86_64::*;
    let a = _mm512_loadu_ps(x.as_ptr());
    let b = _mm512_loadu_ps(x.as_ptr().add(16));
    let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
    let (d, id) = scales(amax);
    let idv = _mm512_set1_ps(id);
    const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    let qa = _mm512_cvt_roundps_epi32::<NEAREST>(_mm512_mul_ps(a, idv));
    let qb = _mm512_cvt_roundps_epi32::<NEAREST>(_mm512_mul_ps(b, idv));
    let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb));
    _mm_storeu_si128(q.as_mut_ptr() as *mut __m128i, _mm512_cvtepi32_epi8(qa));
    _mm_storeu_si128(q.as_mut_ptr().add(16) as *mut __m128i, _mm512_cvtepi32_epi8(qb));
    (d, sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(seed: u32, scale: f32) -> [f32; BLOCK] {
        std::array::from_fn(|i| {
            let h = (i as u32 + 1).wrapping_mul(2_654_435_761).wrapping_add(seed.wrapping_mul(40_503));
            ((h % 2001) as f32 / 1000.0 - 1.0) * scale
        })
    }

    #[test]
    fn blocks_round_half_to_even_and_keep_the_maximum_at_127() {
        let mut x = [0f32; BLOCK];
        x[0] = 127.0;
        x[1] = 2.5; // a tie: rounds to 2
        x[2] = -3.5; // a tie: rounds to -4
        x[3] = -127.0;
        let mut q = [0i8; BLOCK];
        let (d, sum) = quantize_block_portable(&x, &mut q);
        assert_eq!(d, 1.0);
        assert_eq!(&q[..4], &[127, 2, -4, -127]);
        assert_eq!(sum, 127 + 2 - 4 - 127);
        let (d, sum) = quantize_block_portable(&[0.0; BLOCK], &mut q);
        assert_eq!((d, sum), (0.0, 0));
        assert!(q.iter().all(|&v| v == 0));
    }

    #[test]
    fn quantized_values_reconstruct_within_half_a_step() {
        for seed in 0..50 {
            let x = block(seed, 10f32.powi(seed as i32 % 7 - 3));
            let mut q = [0i8; BLOCK];
            let (d, _) = quantize_block_portable(&x, &mut q);
            for (xi, qi) in x.iter().zip(q) {
                assert!((xi - d * qi as f32).abs() <= 0.5 * d * 1.0001, "{xi} vs {}", d * qi as f32);
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_blocks_equal_portable_blocks() {
        if !super::super::Int8Isa::Avx512Vnni.available() {
            eprintln!("no AVX-512 VNNI on this CPU: only the portable quantizer was checked");
            return;
        }
        for seed in 0..500 {
            let mut x = block(seed, 10f32.powi(seed as i32 % 9 - 4));
            if seed % 7 == 0 {
                x[seed as usize % BLOCK] = 0.5 * (x[0].abs() + 1e-3); // ties appear
            }
            let (mut a, mut b) = ([0i8; BLOCK], [0i8; BLOCK]);
            let pa = quantize_block_portable(&x, &mut a);
            // SAFETY: the test returned early unless the CPU has AVX-512 VNNI (and so avx512f/bw).
            let pb = unsafe { quantize_block_avx512(&x, &mut b) };
            assert_eq!((pa.0.to_bits(), pa.1, a), (pb.0.to_bits(), pb.1, b), "seed {seed}");
        }
    }
}
