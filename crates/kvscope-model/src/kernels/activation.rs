//! SwiGLU: `silu(gate) * up`, elementwise.

use rayon::prelude::*;

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// `gate_up` rows are `[gate (f) | up (f)]` (the fused projection's output);
/// `out` rows are `f` wide.
pub fn silu_mul(gate_up: &[f32], f: usize, out: &mut [f32]) {
    assert_eq!(gate_up.len(), 2 * out.len());
    if out.len() <= super::SERIAL_VALUES {
        out.chunks_mut(f).zip(gate_up.chunks(2 * f)).for_each(|(o, gu)| silu_mul_row(o, gu, f));
        return;
    }
    out.par_chunks_mut(f).zip(gate_up.par_chunks(2 * f)).with_min_len(4).for_each(|(o, gu)| silu_mul_row(o, gu, f));
}

fn silu_mul_row(out: &mut [f32], gate_up: &[f32], f: usize) {
    let (g, u) = gate_up.split_at(f);
    for ((o, g), u) in out.iter_mut().zip(g).zip(u) {
        *o = silu(*g) * u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silu_known_values() {
        assert_eq!(silu(0.0), 0.0);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!((silu(-20.0)).abs() < 1e-7);
        assert!(silu(-100.0).is_finite() && silu(100.0) == 100.0);
    }

    #[test]
    fn gate_times_up_per_row() {
        let gu = [1.0f32, 0.0, 2.0, 3.0, /* row 2 */ 0.0, 1.0, 5.0, 5.0];
        let mut out = [0f32; 4];
        silu_mul(&gu, 2, &mut out);
        assert_eq!(out, [silu(1.0) * 2.0, 0.0, 0.0, silu(1.0) * 5.0]);
    }
}
