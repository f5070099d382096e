//! Kernel throughput on this machine: `cargo run --release -p kvscope-model --example kernel_speed`.

use kvscope_model::kernels::attention::{paged_attention, Heads, KvView, QueryCtx};
use kvscope_model::kernels::matmul::{matmul, matmul_w};
use kvscope_model::kernels::weights::Weights;
use kvscope_model::quant::GgmlType;
use std::time::Instant;

fn main() {
    for (rows, k, n) in [
        (512, 576, 960),
        (512, 576, 3072),
        (512, 1536, 576),
        (1, 576, 3072),
        (16, 576, 3072),
        (1, 576, 49152),
        (16, 576, 49152),
    ] {
        let x = vec![0.5f32; rows * k];
        let w = vec![0.25f32; n * k];
        let mut y = vec![0f32; rows * n];
        matmul(&x, &w, &mut y, rows, k, n);
        let reps = (2e9 / (2.0 * (rows * k * n) as f64)).clamp(3.0, 200.0) as usize;
        let t = Instant::now();
        for _ in 0..reps {
            matmul(&x, &w, &mut y, rows, k, n);
        }
        let dt = t.elapsed().as_secs_f64() / reps as f64;
        println!(
            "matmul {rows:4}x{k}x{n:5}: {:7.2} ms  {:6.1} GFLOP/s  {:5.1} GB/s weights",
            dt * 1e3,
            2.0 * (rows * k * n) as f64 / dt / 1e9,
            (n * k * 4) as f64 / dt / 1e9
        );
    }
    // The model's layout: Q4_1 layers, Q8_0 output head, dequantized on the fly.
    for (rows, k, n, ty) in [
        (512, 576, 3072, GgmlType::Q4_1),
        (1, 576, 3072, GgmlType::Q4_1),
        (16, 576, 3072, GgmlType::Q4_1),
        (1, 576, 49152, GgmlType::Q8_0),
        (16, 576, 49152, GgmlType::Q8_0),
    ] {
        let raw: Vec<u8> = (0..n * k / 32)
            .flat_map(|b| {
                let mut blk = vec![0u8; ty.block_bytes()];
                blk[1] = 0x2c; // f16 scale ~0.06
                if ty == GgmlType::Q4_1 {
                    blk[3] = 0xac;
                }
                for (i, v) in blk.iter_mut().enumerate().skip(if ty == GgmlType::Q4_1 { 4 } else { 2 }) {
                    *v = (b * 31 + i * 7) as u8;
                }
                blk
            })
            .collect();
        let w = Weights::from_ggml(ty, &raw, n, k).unwrap();
        let x = vec![0.5f32; rows * k];
        let mut y = vec![0f32; rows * n];
        matmul_w(&x, &w, &mut y, rows);
        let reps = (2e9 / (2.0 * (rows * k * n) as f64)).clamp(3.0, 200.0) as usize;
        let t = Instant::now();
        for _ in 0..reps {
            matmul_w(&x, &w, &mut y, rows);
        }
        let dt = t.elapsed().as_secs_f64() / reps as f64;
        println!(
            "matmul {rows:4}x{k}x{n:5} {ty:?}: {:7.2} ms  {:6.1} GFLOP/s  {:5.1} GB/s weights",
            dt * 1e3,
            2.0 * (rows * k * n) as f64 / dt / 1e9,
            w.bytes() as f64 / dt / 1e9
        );
    }
    let heads = Heads { n_heads: 9, n_kv_heads: 3, head_dim: 64 };
    for (nq, ctx) in [(512usize, 512usize), (16, 512)] {
        let bs = 16;
        let nb = ctx.div_ceil(bs) * if nq == 16 { 16 } else { 1 };
        let k = vec![0.1f32; nb * bs * 192];
        let v = vec![0.2f32; nb * bs * 192];
        let tables: Vec<Vec<usize>> =
            (0..16).map(|s| (0..ctx.div_ceil(bs)).map(|b| (s * ctx.div_ceil(bs) + b) % nb).collect()).collect();
        let queries: Vec<QueryCtx> = (0..nq)
            .map(|i| {
                if nq == 16 {
                    QueryCtx { pos: ctx - 1, block_table: &tables[i] }
                } else {
                    QueryCtx { pos: i, block_table: &tables[0] }
                }
            })
            .collect();
        let q = vec![0.3f32; nq * 576];
        let mut out = vec![0f32; nq * 576];
        let t = Instant::now();
        for _ in 0..5 {
            paged_attention(&q, &queries, KvView::f32(&k, &v, bs), heads, &mut out);
        }
        println!("attention {nq} queries ctx {ctx}: {:.2} ms per layer", t.elapsed().as_secs_f64() / 5.0 * 1e3);
    }
}
