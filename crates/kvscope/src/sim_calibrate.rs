//! `kvscope sim --calibrate`: measure the real default model on this CPU
//! and fit the `cpu` profile's coefficients.

use crate::machine::machine_description;
use crate::real_model::LoadedModel;
use kvscope_core::WallClock;
use kvscope_sim::{calibrate, default_calibration_path, fit, CalibrationFile, CalibrationPlan};

pub fn run() -> anyhow::Result<()> {
    let model = LoadedModel::load(&crate::ModelArg::default())?;
    let plan = CalibrationPlan::default();
    let mut executor = model
        .executor(plan.required_blocks(), plan.block_size)
        .map_err(|e| anyhow::anyhow!("building the executor: {e}"))?;
    let clock = WallClock::new();
    eprintln!("calibrating {} on this CPU ({} blocks of {})", model.name(), plan.required_blocks(), plan.block_size);
    let samples = calibrate(&mut executor, &clock, &plan, |done, total| {
        eprint!("\r  step {done}/{total}");
        if done == total {
            eprintln!();
        }
    })?;
    let fitted = fit("smollm2-135m", &samples)?;
    let description = format!("{} on {}", model.name(), machine_description());
    let path = default_calibration_path()?;
    CalibrationFile::new(description, fitted.clone(), samples).save(&path)?;
    println!("coefficients: {:#?}", fitted.coefficients);
    println!(
        "fit: rms relative error {:.1}%, max relative error {:.1}%",
        100.0 * fitted.rms_relative_error,
        100.0 * fitted.max_relative_error
    );
    println!("saved to {}", path.display());
    Ok(())
}
