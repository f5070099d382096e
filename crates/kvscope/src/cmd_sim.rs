//! The simulator on the lab's side: a backend whose executor is the
//! calibrated `cpu` cost model of the default model.

use crate::lab_backends::SimBackend;
use crate::real_model::LoadedModel;
use anyhow::Context;
use kvscope_sim::{default_calibration_path, hardware_preset, model_preset, CalibrationFile, CostModel};

/// The default model's preset with KV stored as the real executor stores it
/// (f32), priced by the `cpu` profile fitted by `kvscope sim --calibrate`.
pub fn lab_sim_backend(model: LoadedModel) -> anyhow::Result<SimBackend> {
    let path = default_calibration_path()?;
    let file = CalibrationFile::load_if_present(&path)?.with_context(|| {
        format!("no CPU calibration at {}: run `kvscope sim --calibrate` first", path.display())
    })?;
    let preset = model_preset("smollm2-135m").context("the smollm2-135m preset is missing")?.with_kv_dtype_bytes(4);
    let hardware = hardware_preset("cpu").context("the cpu profile is missing")?.with_calibration(file.fit.coefficients.clone());
    Ok(SimBackend {
        kv_bytes_per_token: preset.kv_bytes_per_token(),
        cost: CostModel::new(preset, hardware),
        description: format!("calibrated `cpu` profile from {} ({})", path.display(), file.description),
        model,
    })
}

#[derive(clap::Args, Debug)]
pub struct SimArgs {}

pub fn run(_args: SimArgs) -> anyhow::Result<()> {
    anyhow::bail!("kvscope sim: being wired")
}
