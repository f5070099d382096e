//! Validation: a simulation calibrated on an executor predicts that
//! executor's latencies on the lab's quick workloads.
//!
//! The "real" side is the paged test executor (it really stores and reads
//! KV through the block tables) whose step time follows a ground truth the
//! linear model cannot represent exactly: decode cost grows as batch^0.9
//! (batching amortises weight reads) and every step has ±4 % deterministic
//! jitter. The simulated side is the `cpu` profile calibrated on it by
//! [`calibrate`] and [`fit`], exactly as `kvscope sim --calibrate` does
//! with the real model.
//!
//! Why the tolerance is defensible: the quick workloads arrive in a burst
//! and end by length, so the scheduler takes the same decisions on both
//! sides (time never feeds back into scheduling) and every TTFT and
//! end-to-end latency is a sum of the same steps. A sum of positive terms
//! each predicted within relative error e is predicted within e, so each
//! request's error is bounded by the worst per-step error `e_max` measured
//! on the run — which the test also checks is under 15 %.

use kvscope_core::testing::PagedTokenExecutor;
use kvscope_core::{BatchOutput, Executor, ExecutorError, ScheduledBatch, SimClock};
use kvscope_experiment::workload::{standard_cases, PromptSource, Scale, WorkloadRequest};
use kvscope_experiment::{run_case, CaseRun, CaseSpec, RunOptions};
use kvscope_sim::{
    calibrate, fit, hardware_preset, model_preset, BatchShape, CalibrationPlan, CostModel, SimConfig, StepSample,
};

fn true_seconds(shape: &BatchShape, step: u64) -> f64 {
    let mut h = step.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 29;
    let u = (h % 2001) as f64 / 1000.0 - 1.0;
    let base = 0.006
        + 0.0030 * shape.prefill_tokens as f64
        + 0.0040 * (shape.decode_seqs as f64).powf(0.9)
        + 1.2e-7 * shape.prefill_attention_pairs as f64
        + 1.5e-6 * shape.decode_context_tokens as f64;
    base * (1.0 + 0.04 * u)
}

struct Reference {
    inner: PagedTokenExecutor,
    clock: SimClock,
    steps: Vec<StepSample>,
}

impl Executor for Reference {
    fn execute(&mut self, batch: &ScheduledBatch) -> Result<BatchOutput, ExecutorError> {
        let shape = BatchShape::of(batch);
        let seconds = true_seconds(&shape, self.steps.len() as u64);
        self.clock.advance(seconds);
        self.steps.push(StepSample { shape, seconds });
        self.inner.execute(batch)
    }
}

const BLOCK_SIZE: usize = 16;
/// The lab's quick KV budget: 48 MiB of SmolLM2 f32 KV = 68 blocks.
const KV_BLOCKS: usize = (48 << 20) / (46_080 * BLOCK_SIZE);

/// The lab's quick cases (short_ctx 10 × ~48 tokens, long_ctx 5 × ~384,
/// mixed_ctx 8 alternating; 16 output tokens; all arriving at once), with
/// synthetic prompts.
fn quick_cases() -> Vec<(CaseSpec, Vec<WorkloadRequest>)> {
    standard_cases(Scale::Quick, 0, 11)
        .into_iter()
        .map(|spec| {
            let requests = spec.generate(&PromptSource::Synthetic { vocab: 49_152 });
            (spec, requests)
        })
        .collect()
}

fn sim_config() -> SimConfig {
    let mut config = SimConfig::new(model_preset("smollm2-135m").unwrap(), hardware_preset("cpu").unwrap());
    config.kv_blocks = Some(KV_BLOCKS);
    config.block_size = BLOCK_SIZE;
    config.max_running = 16;
    config.max_batched_tokens = 512;
    config.max_model_len = Some(2048);
    config
}

fn by_index(run: &CaseRun) -> Vec<(f64, f64)> {
    run.requests.iter().map(|r| (r.ttft, r.e2e)).collect()
}

#[test]
fn calibrated_simulation_predicts_the_reference_executor_on_quick_workloads() {
    // 1. Calibrate, as `kvscope sim --calibrate` does.
    let plan = CalibrationPlan { block_size: BLOCK_SIZE, ..Default::default() };
    let clock = SimClock::new();
    let mut reference = Reference {
        inner: PagedTokenExecutor::new(plan.required_blocks(), BLOCK_SIZE, 49_152),
        clock: clock.clone(),
        steps: vec![],
    };
    let samples = calibrate(&mut reference, &clock, &plan, |_, _| {}).unwrap();
    let calibration = fit("smollm2-135m", &samples).unwrap();
    assert!(calibration.rms_relative_error < 0.1, "{calibration:?}");

    let mut config = sim_config();
    config.hardware = config.hardware.clone().with_calibration(calibration.coefficients.clone());
    let cost = CostModel::new(config.model.clone(), config.hardware.clone());

    for (spec, arrivals) in quick_cases() {
        let name = &spec.name;
        // 2. The reference run.
        let (engine_config, _) = config.engine_config().unwrap();
        let clock = SimClock::new();
        let reference = Reference {
            inner: PagedTokenExecutor::new(KV_BLOCKS, BLOCK_SIZE, 49_152),
            clock: clock.clone(),
            steps: vec![],
        };
        let (real_summary, reference) = run_case(
            reference,
            clock,
            &engine_config,
            &spec,
            arrivals.iter().cloned(),
            RunOptions::EVERY_STEP,
            &mut |_, _| {},
        )
        .unwrap();

        // 3. The simulated run (its fast path on: the same steps, summed in closed form).
        let sim_summary = config.run(&spec, arrivals.iter().cloned(), RunOptions::SUMMARY).unwrap();

        // Same scheduling on both sides: same number of steps and requests.
        assert_eq!(sim_summary.steps, real_summary.steps, "{name}");
        assert_eq!(sim_summary.requests.len(), arrivals.len(), "{name}");

        // The worst per-step error of the calibrated model on this run.
        let e_max = reference
            .steps
            .iter()
            .map(|s| (cost.step_seconds(&s.shape) - s.seconds).abs() / s.seconds)
            .fold(0.0, f64::max);
        assert!(e_max < 0.15, "{name}: worst step error {e_max:.3}");

        let (real_r, sim_r) = (by_index(&real_summary), by_index(&sim_summary));
        let mut sum_abs = 0.0;
        let mut sum_real = 0.0;
        for ((rt, re), (st, se)) in real_r.iter().zip(&sim_r) {
            assert!((st - rt).abs() <= e_max * rt + 1e-9, "{name}: ttft sim {st} vs real {rt}");
            assert!((se - re).abs() <= e_max * re + 1e-9, "{name}: e2e sim {se} vs real {re}");
            sum_abs += (st - rt).abs();
            sum_real += rt;
        }
        let mean_ttft_error = sum_abs / sum_real;
        eprintln!("{name}: worst step error {e_max:.3}, mean TTFT error {mean_ttft_error:.3}");
        assert!(mean_ttft_error < 0.10, "{name}: mean TTFT error {mean_ttft_error:.3}");
        let makespan_error = (sim_summary.duration - real_summary.duration).abs() / real_summary.duration;
        assert!(makespan_error < 0.10, "{name}: makespan error {makespan_error:.3}");
    }
}
