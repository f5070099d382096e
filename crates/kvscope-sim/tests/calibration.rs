//! Calibration: the fit recovers known coefficients, the measuring routine
//! drives an executor correctly, and the file round-trips.

use kvscope_core::rng::SplitMix64;
use kvscope_core::testing::PagedTokenExecutor;
use kvscope_core::{BatchOutput, Executor, ExecutorError, ScheduledBatch, SimClock};
use kvscope_sim::{
    calibrate, fit, BatchShape, CalibrationFile, CalibrationPlan, LinearCoefficients, SimError, StepSample,
};

fn synthetic_samples(truth: &LinearCoefficients, noise: f64, seed: u64) -> Vec<StepSample> {
    let mut rng = SplitMix64::new(seed);
    let mut shapes = Vec::new();
    for len in [16, 64, 128, 256, 512] {
        shapes.push(BatchShape::prefill(0, len));
        shapes.push(BatchShape::prefill(len, 128));
    }
    for b in [1, 2, 4, 8, 16] {
        for c in [64, 512, 2048] {
            shapes.push(BatchShape::decode(b, c));
        }
    }
    shapes.push(BatchShape::prefill(0, 100).merged(BatchShape::decode(4, 300)));
    shapes
        .into_iter()
        .map(|shape| {
            let jitter = 1.0 + noise * (2.0 * rng.next_f64() - 1.0);
            StepSample { shape, seconds: truth.seconds(&shape) * jitter }
        })
        .collect()
}

#[test]
fn fit_recovers_known_coefficients_exactly_without_noise() {
    let truth = LinearCoefficients::from_array("smollm2-135m", [0.012, 0.0031, 0.0045, 2.0e-7, 1.5e-6, 0.0016], 4);
    let f = fit("smollm2-135m", &synthetic_samples(&truth, 0.0, 1)).unwrap();
    for (got, want) in f.coefficients.as_array().iter().zip(truth.as_array()) {
        assert!((got - want).abs() <= 1e-6 * want, "got {got}, want {want}");
    }
    assert!(f.rms_relative_error < 1e-9);
}

#[test]
fn fit_keeps_coefficients_non_negative_and_close_under_noise() {
    // A feature that costs nothing must come out as 0, not negative.
    let truth = LinearCoefficients::from_array("smollm2-135m", [0.01, 0.003, 0.004, 0.0, 1e-6, 0.0], 4);
    let f = fit("smollm2-135m", &synthetic_samples(&truth, 0.05, 2)).unwrap();
    assert!(f.coefficients.as_array().iter().all(|&c| c >= 0.0), "{f:?}");
    assert!(f.rms_relative_error < 0.05, "{f:?}");
    assert!((f.coefficients.per_prefill_token_s / 0.003 - 1.0).abs() < 0.05, "{f:?}");
    assert!((f.coefficients.per_decode_seq_s / 0.004 - 1.0).abs() < 0.15, "{f:?}");
    assert!(matches!(fit("x", &[]), Err(SimError::TooFewSamples { .. })));
}

/// The paged test executor (it really writes and reads KV through the block
/// tables, and fails on unwritten KV) with a known linear step time.
struct TimedExecutor {
    inner: PagedTokenExecutor,
    clock: SimClock,
    truth: LinearCoefficients,
}

impl Executor for TimedExecutor {
    fn execute(&mut self, batch: &ScheduledBatch) -> Result<BatchOutput, ExecutorError> {
        // Each decoding sequence reads its own context, as in a real run (a
        // shared one stays in cache and times decode too fast).
        let mut seen = std::collections::HashSet::new();
        for seq in batch.seqs.iter().filter(|s| !s.is_prefill) {
            assert!(seq.block_table.iter().all(|b| seen.insert(*b)), "decoding sequences share a KV block");
        }
        self.clock.advance(self.truth.seconds(&BatchShape::of(batch)));
        self.inner.execute(batch)
    }
}

#[test]
fn calibrate_measures_valid_batches_and_the_fit_recovers_the_executor() {
    let plan = CalibrationPlan::default();
    let truth = LinearCoefficients::from_array("smollm2-135m", [0.008, 0.0033, 0.005, 1.0e-7, 2.0e-6, 0.002], 8);
    let clock = SimClock::new();
    let mut executor = TimedExecutor {
        inner: PagedTokenExecutor::new(plan.required_blocks(), plan.block_size, 1000),
        clock: clock.clone(),
        truth: truth.clone(),
    };
    let mut calls = 0;
    let samples = calibrate(&mut executor, &clock, &plan, |done, total| {
        calls += 1;
        assert!(done <= total);
    })
    .unwrap();
    assert_eq!(calls, samples.len());
    // 4 prefills + (1 + 1 + 3) context chunks for each of the 32 decoding
    // sequences' own contexts + 3 contexts × 6 batches × 4 steps.
    assert_eq!(samples.len(), 4 + 32 * 5 + 72);
    assert!(plan.max_context() >= 512);
    let f = fit("smollm2-135m", &samples).unwrap();
    for (got, want) in f.coefficients.as_array().iter().zip(truth.as_array()) {
        assert!((got - want).abs() <= 1e-6 * want, "got {got}, want {want}");
    }

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("calib/calib.json");
    let file = CalibrationFile::new("test executor", f, samples);
    file.save(&path).unwrap();
    let loaded = CalibrationFile::load(&path).unwrap();
    assert_eq!(loaded.description, file.description);
    assert_eq!(loaded.samples.len(), file.samples.len());
    assert!(loaded.samples.iter().zip(&file.samples).all(|(a, b)| a.shape == b.shape));
    // JSON keeps f64 to within an ulp or so.
    for (a, b) in loaded.fit.coefficients.as_array().iter().zip(file.fit.coefficients.as_array()) {
        assert!((a - b).abs() <= 1e-12 * b.abs());
    }
    std::fs::write(&path, "{not json").unwrap();
    let err = CalibrationFile::load(&path).unwrap_err();
    assert!(err.to_string().contains("--calibrate"), "{err}");
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    assert!(CalibrationFile::load_if_present(&path).unwrap().is_none());
}

#[test]
fn cpu_profile_uses_the_calibration_file_when_present() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calib.json");
    let (plain, used) = kvscope_sim::cpu_profile(Some(&path)).unwrap();
    assert!(plain.calibrated.is_none() && used.is_none());
    let truth = LinearCoefficients::from_array("smollm2-135m", [0.01, 0.003, 0.004, 1e-7, 1e-6, 0.0], 4);
    let f = fit("smollm2-135m", &synthetic_samples(&truth, 0.0, 3)).unwrap();
    CalibrationFile::new("test", f, vec![]).save(&path).unwrap();
    let (cpu, used) = kvscope_sim::cpu_profile(Some(&path)).unwrap();
    assert_eq!(used.as_deref(), Some(path.as_path()));
    let c = cpu.calibrated.unwrap();
    assert!((c.per_decode_seq_s - 0.004).abs() < 1e-9);
}

/// The step timer inside a real engine run: one sample per step, with the
/// shape the executor saw and the time the clock moved; the held-out check
/// of the true coefficients on those steps is exact, and a wrong fit shows.
#[test]
fn step_timer_records_every_engine_step_and_the_held_out_check_scores_a_fit() {
    use kvscope_core::{Clock, Engine, EngineConfig, PoolConfig, SchedulerConfig};
    use kvscope_experiment::driver::{run_engine, RunOptions};
    use kvscope_experiment::workload::{standard_cases, PromptSource, Scale};
    use kvscope_sim::{HeldOutCheck, StepTimer};

    let truth = LinearCoefficients::from_array("smollm2-135m", [0.008, 0.0033, 0.005, 1.0e-7, 2.0e-6, 0.002], 8);
    let clock = SimClock::new();
    let config = EngineConfig {
        scheduler: SchedulerConfig::new(8, 96, 4096),
        pool: PoolConfig { num_blocks: 64, block_size: 16, enable_prefix_caching: true, bytes_per_block: 0 },
        vocab_size: Some(1000),
    };
    let spec = standard_cases(Scale::Quick, 0, 5).into_iter().find(|c| c.name == "mixed_ctx").unwrap();
    let requests = spec.generate(&PromptSource::Synthetic { vocab: 1000 });
    let inner =
        TimedExecutor { inner: PagedTokenExecutor::new(64, 16, 1000), clock: clock.clone(), truth: truth.clone() };
    let engine = Engine::new(config.clone(), StepTimer::new(inner, clock.clone()), clock.clone()).unwrap();
    let (run, timer) = run_engine(engine, &config, &spec, requests, RunOptions::SUMMARY, &mut |_, _| {}).unwrap();
    let (_, samples) = timer.into_parts();

    assert_eq!(samples.len() as u64, run.steps, "one sample per engine step");
    assert!(samples.iter().any(|s| s.shape.prefill_tokens > 0 && s.shape.decode_seqs > 0), "chunks beside decodes");
    for s in &samples {
        assert!((s.seconds - truth.seconds(&s.shape)).abs() <= 1e-12, "{s:?}");
    }
    let exact = HeldOutCheck::new("truth", &truth, &samples);
    assert_eq!(exact.steps, samples.len());
    assert!(exact.rms_relative_error < 1e-9 && exact.total_relative_error().abs() < 1e-9, "{exact:?}");
    assert!((exact.measured_s - clock.now()).abs() < 1e-9, "the steps are the whole run");

    let slow = LinearCoefficients::from_array("smollm2-135m", truth.as_array().map(|c| 1.1 * c), truth.row_tile);
    let off = HeldOutCheck::new("10 % slow", &slow, &samples);
    assert!((off.total_relative_error() - 0.1).abs() < 1e-9 && (off.max_relative_error - 0.1).abs() < 1e-9);
}
