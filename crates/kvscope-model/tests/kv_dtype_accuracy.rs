//! What storing the KV cache in f16 or int8 costs, isolated from every other
//! approximation: the exact f32 kernels, teacher-forced on the 12 dev
//! prompts × 48 steps against HF transformers' f32 logits (as
//! `int8_accuracy.rs` measures the int8 kernels).
//!
//! Measured when the formats were built (mean |top-1/top-2 margin error|):
//! f32 KV 0.0000, f16 KV 0.0016, int8 KV 0.062 (for scale: the int8 kernels
//! alone cost 0.096, llama.cpp 0.118). The bounds below leave room for
//! rounding noise, not for a broken format: a wrong scale or a misplaced
//! row moves these figures by whole units.

mod common;

use common::{argmax, margin, Kernels};
use kvscope_core::KvDtype;

/// Mean |margin error| and the steps where the top-1 flips although the
/// reference leads by at least 0.5.
fn measure(dtype: KvDtype) -> (f32, Vec<String>) {
    let m = common::llama_with(Kernels::F32);
    let (mut err, mut steps, mut decisive_flips) = (0f64, 0usize, vec![]);
    for p in &common::transformers().prompts {
        let rows = common::teacher_forced_kv(m, dtype, p, &p.generated_token_ids);
        for (s, (row, top5)) in rows.iter().zip(&p.top5_per_step).enumerate() {
            let reference = margin(top5);
            err += ((row[top5[0].0 as usize] - row[top5[1].0 as usize]) - reference).abs() as f64;
            steps += 1;
            if argmax(row) != top5[0].0 && reference >= 0.5 {
                decisive_flips.push(format!("{} step {s}: reference {top5:?}", p.id));
            }
        }
    }
    ((err / steps as f64) as f32, decisive_flips)
}

#[test]
fn f16_and_int8_kv_cost_what_they_were_measured_to_cost() {
    for (dtype, bound) in [(KvDtype::F16, 0.005), (KvDtype::Int8, 0.08)] {
        let (mean, flips) = measure(dtype);
        eprintln!("{dtype} KV on f32 kernels: mean |margin error| {mean:.4}");
        assert!(flips.is_empty(), "{dtype} KV flips decisive steps:\n{}", flips.join("\n"));
        assert!(mean <= bound, "{dtype} KV: mean |margin error| {mean:.4} > {bound}");
    }
}
