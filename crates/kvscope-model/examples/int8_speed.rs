//! The int8 matrix kernels on SmolLM2-135M's shapes, every path this CPU
//! has, in one run: `cargo run --release -p kvscope-model --example int8_speed`.
//!
//! Medians of 7 timed repetitions per case (each repetition long enough to
//! take ≥ 20 ms); the paths alternate inside each case, so a busy minute
//! hits them alike.

use kvscope_model::kernels::int8::gemm::matmul_int8_on;
use kvscope_model::kernels::int8::pack::{PackKind, PackedInt8};
use kvscope_model::kernels::int8::Int8Isa;
use std::time::Instant;

fn raw_blocks(kind: PackKind, blocks: usize) -> Vec<u8> {
    let bytes = match kind {
        PackKind::Q4_1 => 20,
        PackKind::Q8_0 => 34,
    };
    (0..blocks)
        .flat_map(|b| {
            let mut blk = vec![0u8; bytes];
            blk[1] = 0x2c; // f16 scale ≈ 0.06
            if kind == PackKind::Q4_1 {
                blk[3] = 0xac;
            }
            let skip = if kind == PackKind::Q4_1 { 4 } else { 2 };
            for (i, v) in blk.iter_mut().enumerate().skip(skip) {
                *v = (b * 31 + i * 7) as u8;
            }
            blk
        })
        .collect()
}

fn main() {
    let paths: Vec<Int8Isa> = [Int8Isa::Avx512Vnni, Int8Isa::AvxVnni, Int8Isa::Avx2, Int8Isa::Portable]
        .into_iter()
        .filter(|p| p.available())
        .collect();
    println!("threads {}", rayon::current_num_threads());
    // (rows, k, n, kind, two-term): the fused QKV (two-term), attention out,
    // gate+up, down, the Q8_0 output head.
    let cases = [
        (512, 576, 960, PackKind::Q4_1, true),
        (512, 576, 3072, PackKind::Q4_1, false),
        (512, 1536, 576, PackKind::Q4_1, false),
        (16, 576, 3072, PackKind::Q4_1, false),
        (1, 576, 3072, PackKind::Q4_1, false),
        (16, 576, 49152, PackKind::Q8_0, false),
        (1, 576, 49152, PackKind::Q8_0, false),
    ];
    for (rows, k, n, kind, two_term) in cases {
        let mut w = PackedInt8::from_gguf(kind, &raw_blocks(kind, n * k / 32), n, k);
        w.set_two_term(two_term);
        let x: Vec<f32> = (0..rows * k).map(|i| ((i * 7919) % 2000) as f32 / 1000.0 - 1.0).collect();
        let mut y = vec![0f32; rows * n];
        let macs = (rows * k * n * if two_term { 2 } else { 1 }) as f64;
        let reps = (2e7 / macs).clamp(1.0, 2000.0) as usize;
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
        for _ in 0..7 {
            for (p, &isa) in paths.iter().enumerate() {
                if isa == Int8Isa::Portable && rows > 16 && !cfg!(target_feature = "fma") {
                    continue; // minutes on the baseline build
                }
                matmul_int8_on(isa, &x, &w, &mut y, rows);
                let t = Instant::now();
                for _ in 0..reps {
                    matmul_int8_on(isa, &x, &w, &mut y, rows);
                }
                times[p].push(t.elapsed().as_secs_f64() / reps as f64);
            }
        }
        for (p, isa) in paths.iter().enumerate() {
            let t = &mut times[p];
            if t.is_empty() {
                continue;
            }
            t.sort_by(f64::total_cmp);
            let median = t[t.len() / 2];
            println!(
                "{rows:4} x {k:4} x {n:5} {kind:?}{}  {:12}  {:8.3} ms  {:6.1} GOP/s",
                if two_term { " two-term" } else { "" },
                isa.name(),
                median * 1e3,
                2.0 * macs / median / 1e9
            );
        }
    }
}
