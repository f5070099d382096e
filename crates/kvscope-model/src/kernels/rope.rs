//! Rotary position embeddings with precomputed cos/sin tables.
//!
//! Angles are computed in f64 and rounded once, so positions far into the
//! context (8k) keep full f32 precision.

use crate::config::RopeStyle;

#[derive(Debug, Clone)]
pub struct RopeTable {
    half: usize,
    max_pos: usize,
    style: RopeStyle,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    /// Tables for positions `0..max_pos` of heads `head_dim` wide; pair `i`
    /// turns at `pos * base^(-2i / head_dim)`.
    pub fn new(head_dim: usize, base: f32, max_pos: usize, style: RopeStyle) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(max_pos * half);
        let mut sin = Vec::with_capacity(max_pos * half);
        for p in 0..max_pos {
            for i in 0..half {
                let theta = (base as f64).powf(-2.0 * i as f64 / head_dim as f64);
                let a = p as f64 * theta;
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        RopeTable { half, max_pos, style, cos, sin }
    }

    pub fn max_pos(&self) -> usize {
        self.max_pos
    }

    /// Rotate one head's vector in place for position `pos` (< `max_pos`).
    pub fn apply(&self, head: &mut [f32], pos: usize) {
        #[cfg(target_arch = "x86_64")]
        if crate::kernels::simd::isa() == crate::kernels::simd::Isa::Avx2 {
            // SAFETY: the process ISA is AVX2, so avx2 and fma are present.
            return unsafe { self.apply_avx2(head, pos) };
        }
        self.apply_lanes(head, pos)
    }

    /// `apply_lanes` compiled for AVX2 (the same multiplies and adds, 8 lanes
    /// at a time; no FMA is contracted, so the same bits).
    ///
    /// # Safety
    /// The CPU must support avx2 and fma.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn apply_avx2(&self, head: &mut [f32], pos: usize) {
        self.apply_lanes(head, pos)
    }

    #[inline(always)]
    fn apply_lanes(&self, head: &mut [f32], pos: usize) {
        assert!(head.len() == 2 * self.half && pos < self.max_pos);
        let cos = &self.cos[pos * self.half..][..self.half];
        let sin = &self.sin[pos * self.half..][..self.half];
        for i in 0..self.half {
            let (a, b) = match self.style {
                RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                RopeStyle::Neox => (i, i + self.half),
            };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * cos[i] - x1 * sin[i];
            head[b] = x0 * sin[i] + x1 * cos[i];
        }
    }

    /// Rotate every head of every row: `rows` is `[n, heads * head_dim]`,
    /// `positions[r]` the position of row `r`.
    pub fn apply_rows(&self, rows: &mut [f32], row_width: usize, positions: &[usize]) {
        let hd = 2 * self.half;
        for (row, &pos) in rows.chunks_mut(row_width).zip(positions) {
            for head in row.chunks_mut(hd) {
                self.apply(head, pos);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_zero_is_identity() {
        let t = RopeTable::new(8, 10000.0, 4, RopeStyle::Interleaved);
        let mut h = [1.0f32, 2., 3., 4., 5., 6., 7., 8.];
        t.apply(&mut h, 0);
        assert_eq!(h, [1.0, 2., 3., 4., 5., 6., 7., 8.]);
    }

    #[test]
    fn interleaved_rotates_adjacent_pairs_by_position_times_frequency() {
        let t = RopeTable::new(4, 100.0, 8, RopeStyle::Interleaved);
        let mut h = [1.0f32, 0.0, 1.0, 0.0];
        t.apply(&mut h, 3);
        // pair 0 turns by 3 rad, pair 1 by 3 * 100^(-1/2) = 0.3 rad
        assert!((h[0] - 3f32.cos()).abs() < 1e-6 && (h[1] - 3f32.sin()).abs() < 1e-6);
        assert!((h[2] - 0.3f32.cos()).abs() < 1e-6 && (h[3] - 0.3f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn neox_pairs_first_and_second_halves() {
        let t = RopeTable::new(4, 100.0, 8, RopeStyle::Neox);
        let mut h = [1.0f32, 1.0, 0.0, 0.0];
        t.apply(&mut h, 3);
        assert!((h[0] - 3f32.cos()).abs() < 1e-6 && (h[2] - 3f32.sin()).abs() < 1e-6);
        assert!((h[1] - 0.3f32.cos()).abs() < 1e-6 && (h[3] - 0.3f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn rotation_preserves_norm_and_relative_angle() {
        // q·k after RoPE depends only on the position difference.
        let t = RopeTable::new(8, 10000.0, 64, RopeStyle::Interleaved);
        let q0 = [0.3f32, -1.2, 0.5, 0.9, -0.1, 0.4, 1.1, -0.7];
        let k0 = [1.0f32, 0.2, -0.3, 0.8, 0.6, -0.5, 0.1, 0.9];
        let dotp = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let at = |p: usize, q: usize| {
            let (mut a, mut b) = (q0, k0);
            t.apply(&mut a, p);
            t.apply(&mut b, q);
            dotp(&a, &b)
        };
        assert!((at(10, 4) - at(30, 24)).abs() < 1e-5);
        let mut a = q0;
        t.apply(&mut a, 17);
        assert!((dotp(&a, &a) - dotp(&q0, &q0)).abs() < 1e-5);
    }
}
