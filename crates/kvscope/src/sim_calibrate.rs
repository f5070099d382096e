//! `kvscope sim --calibrate`: measure the real default model on this CPU
//! and fit the `cpu` profile's coefficients.
//!
//! The fit sees two kinds of steps: the plan's synthetic batches (prefills
//! and decodes over a grid of lengths and batch sizes, each timed three
//! times) and every step of two of the lab's own workloads run for real
//! (the batches its scheduler forms: chunks beside decodes, recomputes).
//! A third lab workload is run the same way and held out: the fit is
//! checked on it and the check is printed and saved with the fit.

use crate::lab_backends::RealBackend;
use crate::machine::machine_description;
use kvscope_core::{Engine, EngineConfig, WallClock};
use kvscope_experiment::driver::{run_engine, RunOptions};
use kvscope_experiment::workload::{standard_cases, CaseSpec, PromptSource, Scale};
use kvscope_lab::backend::LabBackend;
use kvscope_lab::lab::LabConfig;
use kvscope_model::LoadedModel;
use kvscope_sim::{
    calibrate, default_calibration_path, fit, CalibrationFile, CalibrationPlan, HeldOutCheck, StepSample, StepTimer,
};

/// The lab's cases run during calibration, with fewer requests than the
/// lab runs (the same prompt lengths, outputs, pool and limits), and the
/// one held out of the fit.
const LAB_CASES: [(&str, usize); 3] = [("short_ctx", 8), ("long_ctx", 4), ("mixed_ctx", 6)];
const HELD_OUT_CASE: &str = "mixed_ctx";
/// Not the lab's default seed: other draws from the same workloads.
const SEED: u64 = 7;

/// Times the model `args` name (the default model, int8 kernels, f16 KV
/// unless told otherwise).
pub fn run(args: &kvscope_model::ModelArgs) -> anyhow::Result<()> {
    let model = LoadedModel::load(args)?;
    let plan = CalibrationPlan::default();
    let pool = kvscope_core::PoolConfig::new(plan.required_blocks(), plan.block_size, 0, false);
    let mut executor = model.executor(&pool).map_err(|e| anyhow::anyhow!("building the executor: {e}"))?;
    let clock = WallClock::new();
    eprintln!("calibrating {} on this CPU ({} blocks of {})", model.name(), plan.required_blocks(), plan.block_size);
    let mut samples = calibrate(&mut executor, &clock, &plan, |done, total| {
        eprint!("\r  synthetic step {done}/{total}");
        if done == total {
            eprintln!();
        }
    })?;
    drop(executor);

    let mut backend = RealBackend { model, block_manager: None };
    let mut held_out = Vec::new();
    for (spec, config) in lab_cases(&backend, plan.block_size) {
        eprintln!("  the lab's {} ({} requests), every step timed", spec.name, spec.num_requests);
        let steps = time_lab_case(&mut backend, &spec, &config)?;
        if spec.name == HELD_OUT_CASE {
            held_out = steps;
        } else {
            samples.extend(steps);
        }
    }

    let fitted = fit("smollm2-135m", &samples)?;
    let check = HeldOutCheck::new(
        format!("the lab's {HELD_OUT_CASE} case (seed {SEED}), run for real, every step timed once"),
        &fitted.coefficients,
        &held_out,
    );
    let description = format!("{} on {}", backend.model.name(), machine_description());
    let path = default_calibration_path()?;
    CalibrationFile::new(description, fitted.clone(), samples).with_held_out(check.clone(), held_out).save(&path)?;
    println!("coefficients: {:#?}", fitted.coefficients);
    println!(
        "fit: rms relative error {:.1}%, max relative error {:.1}%",
        100.0 * fitted.rms_relative_error,
        100.0 * fitted.max_relative_error
    );
    println!(
        "held out ({}): {} steps, rms relative error {:.1}%, max {:.1}%; whole run measured {:.2} s, predicted {:.2} s ({:+.1}%)",
        check.description,
        check.steps,
        100.0 * check.rms_relative_error,
        100.0 * check.max_relative_error,
        check.measured_s,
        check.predicted_s,
        100.0 * check.total_relative_error()
    );
    println!("saved to {}", path.display());
    Ok(())
}

/// The lab's three cases at its full scale, with its engine configuration,
/// cut to `LAB_CASES`' request counts.
fn lab_cases(backend: &RealBackend, block_size: usize) -> Vec<(CaseSpec, EngineConfig)> {
    let lab = LabConfig { block_size, ..LabConfig::at_scale(Scale::Lab, SEED) };
    let config = lab.engine_config(&backend.info());
    standard_cases(Scale::Lab, 0, SEED)
        .into_iter()
        .filter_map(|spec| {
            let (_, requests) = LAB_CASES.iter().find(|(name, _)| *name == spec.name)?;
            Some((CaseSpec { num_requests: *requests, ..spec }, config.clone()))
        })
        .collect()
}

/// Runs one case on the real model through the engine and returns every
/// step it took, timed.
fn time_lab_case(backend: &mut RealBackend, spec: &CaseSpec, config: &EngineConfig) -> anyhow::Result<Vec<StepSample>> {
    let tokenize = |text: &str| backend.tokenize(text);
    let requests = spec.generate(&PromptSource::Generated { tokenize: &tokenize });
    let (executor, clock) =
        backend.start(config.pool.num_blocks, config.pool.block_size).map_err(|e| anyhow::anyhow!("{e}"))?;
    let engine = Engine::new(config.clone(), StepTimer::new(executor, WallClock::new()), clock)?;
    let (_, timer) = run_engine(engine, config, spec, requests, RunOptions::SUMMARY, &mut |_, _| {})?;
    Ok(timer.into_parts().1)
}
