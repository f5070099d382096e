//! The cost model: monotone in everything a batch contains, and the
//! roofline's regimes where a reader expects them.

use kvscope_core::{BlockId, RequestId, SamplingParams, ScheduledBatch, ScheduledSeq};
use kvscope_sim::{
    hardware_preset, model_preset, BatchShape, Bound, CostModel, LinearCoefficients, HARDWARE_NAMES, MODEL_NAMES,
};
use proptest::prelude::*;

fn seq(id: u64, start_pos: usize, n: usize, is_prefill: bool) -> ScheduledSeq {
    ScheduledSeq {
        request_id: RequestId(id),
        tokens: vec![1; n],
        num_tokens: n,
        start_pos,
        block_table: vec![BlockId(0)],
        sample: true,
        output_index: 0,
        sampling: std::sync::Arc::new(SamplingParams::default()),
        is_prefill,
        next_prompt_token: None,
    }
}

fn models() -> Vec<CostModel> {
    let mut out = Vec::new();
    for m in MODEL_NAMES {
        for h in HARDWARE_NAMES {
            out.push(CostModel::new(model_preset(m).unwrap(), hardware_preset(h).unwrap()));
        }
    }
    let calibrated = LinearCoefficients::from_array("smollm2-135m", [0.01, 3e-3, 8e-3, 1e-7, 2e-6, 1e-3], 4);
    for m in MODEL_NAMES {
        let hw = hardware_preset("cpu").unwrap().with_calibration(calibrated.clone());
        out.push(CostModel::new(model_preset(m).unwrap(), hw));
    }
    out
}

fn arb_seq() -> impl Strategy<Value = (usize, usize, bool)> {
    (0usize..4096, 1usize..1024, any::<bool>()).prop_map(|(s, n, p)| if p { (s, n, true) } else { (s, 1, false) })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// More tokens, more context or one more sequence never takes less time.
    #[test]
    fn more_work_never_takes_less_time(
        seqs in prop::collection::vec(arb_seq(), 0..24),
        extra in arb_seq(),
        pick in any::<prop::sample::Index>(),
        grow in 1usize..512,
    ) {
        let batch = ScheduledBatch {
            seqs: seqs.iter().enumerate().map(|(i, &(s, n, p))| seq(i as u64, s, n, p)).collect(),
        };
        let mut more_seqs = batch.clone();
        more_seqs.seqs.push(seq(999, extra.0, extra.1, extra.2));
        let mut more_tokens = batch.clone();
        let mut more_context = batch.clone();
        if !batch.seqs.is_empty() {
            let i = pick.index(batch.seqs.len());
            if more_tokens.seqs[i].is_prefill {
                more_tokens.seqs[i].tokens.extend(std::iter::repeat_n(1, grow));
            }
            more_context.seqs[i].start_pos += grow;
        }
        for model in models() {
            let t = model.step_seconds(&BatchShape::of(&batch));
            prop_assert!(t > 0.0 && t.is_finite());
            for bigger in [&more_seqs, &more_tokens, &more_context] {
                let t2 = model.step_seconds(&BatchShape::of(bigger));
                prop_assert!(t2 >= t, "{} on {}: {t2} < {t}", model.model().name, model.hardware().name);
            }
        }
    }
}

#[test]
fn decode_is_memory_bound_and_long_prefill_compute_bound_on_a_gpu() {
    let model = CostModel::new(model_preset("llama-3.1-8b").unwrap(), hardware_preset("h100").unwrap());
    let decode = model.breakdown(&BatchShape::decode(8, 1024));
    assert_eq!(decode.bound, Bound::Memory);
    // Reading 16.06 GB of weights at 80 % of 3.35 TB/s ≈ 6.0 ms, plus KV
    // and the 1.5 ms overhead.
    assert!((decode.total_s - (16.06e9 / (0.8 * 3.35e12) + 1.5e-3)).abs() < 0.5e-3, "{decode:?}");
    let prefill = model.breakdown(&BatchShape::prefill(0, 4096));
    assert_eq!(prefill.bound, Bound::Compute);
    // ≈ 2 × 6.98e9 × 4096 FLOPs + attention, at 50 % of 989 TFLOP/s ≈ 0.12 s.
    assert!(prefill.total_s > 0.1 && prefill.total_s < 0.15, "{prefill:?}");
}

#[test]
fn batch_shape_counts_prefill_pairs_and_decode_context() {
    let batch = ScheduledBatch { seqs: vec![seq(1, 10, 4, true), seq(2, 99, 1, false)] };
    let shape = BatchShape::of(&batch);
    assert_eq!(shape.prefill_tokens, 4);
    // Queries at positions 10..14 see 11, 12, 13, 14 keys.
    assert_eq!(shape.prefill_attention_pairs, 11 + 12 + 13 + 14);
    assert_eq!(shape.decode_seqs, 1);
    assert_eq!(shape.decode_context_tokens, 100);
    assert_eq!(shape.context_tokens_read, 14 + 100);
    assert_eq!(shape.sampled, 2);
    assert_eq!(shape, BatchShape::prefill(10, 4).merged(BatchShape::decode(1, 100)));
}

#[test]
fn calibrated_coefficients_scale_to_a_bigger_model() {
    let c = LinearCoefficients::from_array("smollm2-135m", [0.01, 1e-3, 2e-3, 1e-8, 1e-7, 5e-4], 4);
    let qwen = model_preset("qwen3-0.6b").unwrap();
    let s = c.scaled_to(&qwen);
    let smol = model_preset("smollm2-135m").unwrap();
    let ratio = qwen.linear_flops_per_token() / smol.linear_flops_per_token();
    assert!((s.per_prefill_token_s / c.per_prefill_token_s - ratio).abs() < 1e-9);
    assert_eq!(s.overhead_s, c.overhead_s);
    assert_eq!(c.scaled_to(&smol), c);
}
