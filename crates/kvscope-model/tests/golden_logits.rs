//! The forward pass reproduces the reference implementations' logits.
//!
//! transformers (fp32, weights dequantized from this same GGUF) is the tight
//! reference: it computes what this engine computes — f32 matmuls on the
//! dequantized weights, f32 attention — and differs only in summation order.
//! llama.cpp quantizes activations to 8 bits for its dot products and keeps
//! KV in f16, so it sits ~0.1–1.0 away from any fp32 implementation (its
//! README measures ≤ 1.03 between llama.cpp and transformers).

mod common;

use common::{argmax, margin, Prompt};

/// vs transformers. Both sides are fp32 on identical weights; reordering a
/// 576- or 1536-term f32 sum moves it by ~1e-7 relative, and 30 layers of
/// that reach ~1e-5 on logits of magnitude ~20 (measured: ≤ 3e-5 at the
/// first position, ≤ 1.5e-4 over all steps of the 1086-token passage).
/// 1e-3 leaves headroom for another instruction set, and is still 100×
/// tighter than any real bug (a wrong RoPE pairing or norm moves logits by >1).
const TOL_TRANSFORMERS: f32 = 1e-3;
/// How closely an engine must follow one reference.
struct Rule {
    /// Max |logit difference| on the reference's top-5 ids, every step.
    tol: f32,
    /// A reference step is a near-tie when its top1 − top2 margin is below
    /// this; greedy agreement is required on every step before the first one.
    near_tie: f32,
    /// At any other step our argmax must be in the reference's top 5, at most
    /// this far below its top 1.
    within: f32,
}

/// transformers: ties are broken alike down to its own rounding noise.
const TRANSFORMERS: Rule = Rule { tol: TOL_TRANSFORMERS, near_tie: 0.1, within: 0.1 };
/// llama.cpp: its logits sit up to ~0.4 (first position) and ~1.0 (along a
/// trajectory) from any fp32 engine, so a margin under 0.35 is a tie an fp32
/// engine may break the other way — transformers itself does so at
/// zh_question step 7 (margin 0.113) and zh_en_mixed step 4 (margin 0.342),
/// and this engine, 1e-5 from transformers, with it. 1.25 and 0.5 are the
/// README's bounds for two correct but differently-rounded implementations.
const LLAMACPP: Rule = Rule { tol: 1.25, near_tie: 0.35, within: 0.5 };

/// The f32 reference kernels: these tests pin the float numerics; the int8
/// engine has its own accuracy test (`int8_accuracy.rs`).
fn teacher_forced(p: &Prompt, trajectory: &[u32]) -> Vec<Vec<f32>> {
    common::teacher_forced(common::llama_with(common::Kernels::F32), p, trajectory)
}

fn max_top5_diff(logits: &[f32], top5: &[(u32, f32)]) -> f32 {
    top5.iter().map(|&(id, v)| (logits[id as usize] - v).abs()).fold(0.0, f32::max)
}

struct Check {
    pos0: f32,
    all_steps: f32,
    agreed: usize,
    required: usize,
}

/// Compare teacher-forced logits with a reference along its own trajectory.
fn check(p: &Prompt, rule: &Rule) -> (Check, Vec<String>) {
    let tol = rule.tol;
    let rows = teacher_forced(p, &p.generated_token_ids);
    let mut failures = vec![];
    let pos0 = max_top5_diff(&rows[0], &p.top5_first_position);
    let mut all_steps: f32 = 0.0;
    let first_tie = p.top5_per_step.iter().position(|t| margin(t) < rule.near_tie).unwrap_or(48);
    let mut agreed = 0;
    for (s, row) in rows.iter().enumerate() {
        let top5 = &p.top5_per_step[s];
        all_steps = all_steps.max(max_top5_diff(row, top5));
        let ours = argmax(row);
        if ours == p.generated_token_ids[s] {
            agreed += 1;
        } else if s < first_tie {
            failures.push(format!(
                "{} step {s}: argmax {ours}, reference {} (margin {:.3})",
                p.id,
                p.generated_token_ids[s],
                margin(top5)
            ));
        } else if !top5.iter().any(|&(id, v)| id == ours && v >= top5[0].1 - rule.within) {
            failures.push(format!(
                "{} step {s}: argmax {ours} is not within {} of the reference's top 1 {:?}",
                p.id, rule.within, top5[0]
            ));
        }
    }
    if pos0 > tol || all_steps > tol {
        failures.push(format!("{}: logit diff pos0 {pos0:.2e}, all steps {all_steps:.2e} > {tol:.2e}", p.id));
    }
    (Check { pos0, all_steps, agreed, required: first_tie }, failures)
}

#[test]
fn logits_and_greedy_steps_match_transformers() {
    let mut failures = vec![];
    for p in &common::transformers().prompts {
        let (c, f) = check(p, &TRANSFORMERS);
        eprintln!(
            "transformers {:22} pos0 {:.1e}  48 steps {:.1e}  argmax agrees {}/48 (required before first near-tie: {})",
            p.id, c.pos0, c.all_steps, c.agreed, c.required
        );
        failures.extend(f);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn logits_and_greedy_steps_match_llamacpp() {
    let mut failures = vec![];
    for p in &common::llamacpp().prompts {
        let (c, f) = check(p, &LLAMACPP);
        eprintln!(
            "llama.cpp    {:22} pos0 {:.3}  48 steps {:.3}  argmax agrees {}/48 (required before first near-tie: {})",
            p.id, c.pos0, c.all_steps, c.agreed, c.required
        );
        failures.extend(f);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
