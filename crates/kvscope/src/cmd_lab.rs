//! `kvscope lab`: Lab 4 end to end on the real model (or the simulator).

use crate::lab_backends::{RealBackend, SimBackend};
use crate::machine::{machine_description, today};
use crate::real_model::LoadedModel;
use crate::ModelArg;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use kvscope_exercise::HostConfig;
use kvscope_experiment::workload::Scale;
use kvscope_lab::backend::LabBackend;
use kvscope_lab::lab::{run_lab, LabConfig, LabResults};
use kvscope_lab::report::{Lang, ReportContext, StudentBlockManager};
use kvscope_sim::SimConfig;
use std::path::{Path, PathBuf};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecutorKind {
    Real,
    Sim,
}

/// The workloads' sizes (see kvscope-experiment's `Scale`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleArg {
    /// The quick lab's sizes (CPU model, about a minute).
    Quick,
    /// The full lab's sizes (CPU model).
    Lab,
    /// The same cases grown to a GPU's KV pool (4096-token long prompts,
    /// about twice as many requests as the pool holds).
    Gpu,
}

impl From<ScaleArg> for Scale {
    fn from(s: ScaleArg) -> Scale {
        match s {
            ScaleArg::Quick => Scale::Quick,
            ScaleArg::Lab => Scale::Lab,
            ScaleArg::Gpu => Scale::Gpu,
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LangArg {
    Zh,
    En,
}

#[derive(clap::Args, Debug)]
pub struct LabArgs {
    /// Where the artifacts go.
    #[arg(long, default_value = "lab-out")]
    pub out: PathBuf,
    /// Small workloads (about a minute on 2 cores); the tests use this.
    #[arg(long)]
    pub quick: bool,
    /// Language of report.md.
    #[arg(long, value_enum, default_value = "zh")]
    pub lang: LangArg,
    #[arg(long, value_enum, default_value = "real")]
    pub executor: ExecutorKind,
    /// With `--executor sim`: run the lab on this model preset (e.g.
    /// qwen3-0.6b) instead of the calibrated CPU model; needs --hardware.
    #[arg(long, requires = "hardware")]
    pub model_preset: Option<String>,
    /// With --model-preset: the GPU (e.g. h100, rtx-4070-laptop, l4); the
    /// KV pool is what its memory leaves.
    #[arg(long, requires = "model_preset")]
    pub hardware: Option<String>,
    /// Workload sizes (default: quick with --quick, gpu with a preset, else lab).
    #[arg(long, value_enum)]
    pub scale: Option<ScaleArg>,
    /// KV pool size in blocks (overrides --kv-memory).
    #[arg(long, conflicts_with = "kv_memory")]
    pub kv_blocks: Option<usize>,
    /// KV pool size in bytes (default: 256 MiB, 48 MiB with --quick).
    #[arg(long)]
    pub kv_memory: Option<u64>,
    /// Tokens per KV block.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub block_size: u64,
    /// Most requests running at once (default 32, 16 with --quick).
    #[arg(long)]
    pub max_running: Option<usize>,
    /// Token budget of one engine step (chunked prefill splits longer
    /// prompts; default 512 on the CPU model, vLLM's 8192 at the gpu scale).
    #[arg(long)]
    pub max_batched_tokens: Option<usize>,
    /// Prompts from a dataset file (JSONL with "prompt"/"text", or ShareGPT JSON).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Poisson arrivals at this many requests per second (default: each
    /// case's requests all arrive at once).
    #[arg(long, value_parser = positive_rate)]
    pub arrival_rate: Option<f64>,
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Run the lab on a student's nano-vLLM-style Python BlockManager
    /// (`kvscope exercise init` writes the skeleton) instead of kvscope's.
    #[arg(long, value_name = "FILE.py")]
    pub block_manager: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArg,
}

pub fn run(args: LabArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.model_preset.is_none() || args.executor == ExecutorKind::Sim,
        "--model-preset runs the simulator: add --executor sim"
    );
    crate::preflight::check_out_dir(&args.out)?;
    let dataset = match &args.dataset {
        Some(p) => Some(kvscope_experiment::dataset::load_prompts(p)?),
        None => None,
    };
    let default_scale = match (args.quick, &args.model_preset) {
        (true, _) => ScaleArg::Quick,
        (false, Some(_)) => ScaleArg::Gpu,
        (false, None) => ScaleArg::Lab,
    };
    let cfg = LabConfig {
        scale: args.scale.unwrap_or(default_scale).into(),
        seed: args.seed,
        block_size: args.block_size as usize,
        kv_blocks: args.kv_blocks,
        kv_memory_bytes: args.kv_memory,
        max_running: args.max_running,
        max_batched_tokens: args.max_batched_tokens,
        dataset,
        arrival_rate: args.arrival_rate,
    };
    let student = match &args.block_manager {
        Some(_) if args.executor == ExecutorKind::Sim => {
            anyhow::bail!("--block-manager runs on the real model: drop --executor sim")
        }
        Some(file) => Some(student_block_manager(file, args.block_size as usize)?),
        None => None,
    };
    let (results, validation) = match (args.executor, &args.model_preset, &args.hardware) {
        (ExecutorKind::Sim, Some(model), Some(hardware)) => {
            let mut sim = SimConfig::from_names(model, hardware)?;
            sim.block_size = cfg.block_size;
            if let Some(dtype) = args.model.kv_dtype {
                sim.model = sim.model.with_kv_dtype(dtype);
            }
            (run_with(&mut SimBackend::preset(&sim)?, &cfg)?, None)
        }
        (ExecutorKind::Sim, _, _) => {
            let model = LoadedModel::load(&args.model)?;
            (run_with(&mut SimBackend::calibrated_cpu(model)?, &cfg)?, None)
        }
        (ExecutorKind::Real, _, _) => {
            let model = LoadedModel::load(&args.model)?;
            let block_manager = student.as_ref().map(|(host, _)| host.clone());
            let mut backend = RealBackend { model, block_manager };
            let results = run_with(&mut backend, &cfg)?;
            let validation = validate_with_sim(backend.model, &cfg, &results);
            (results, Some(validation))
        }
    };
    let ctx = ReportContext {
        date: today(),
        kvscope_version: env!("CARGO_PKG_VERSION").into(),
        machine: machine_description(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        sim_validation: validation.as_ref().map(|v| v.markdown.clone()),
        block_manager: student.map(|(_, sites)| sites),
    };
    let lang = if args.lang == LangArg::Zh { Lang::Zh } else { Lang::En };
    let written = kvscope_lab::artifacts::write_all(&results, &args.out, &ctx, lang)
        .with_context(|| format!("writing the lab's artifacts into {}", args.out.display()))?;
    if let Some(json) = validation.and_then(|v| v.json) {
        let path = args.out.join("sim_validation.json");
        std::fs::write(&path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    crate::capacity_table::print(&results.capacity, results.backend.executor == "sim");
    eprintln!("\nwrote {} files into {}/ in {:.0} s:", written.len(), args.out.display(), results.wall_seconds);
    for p in written {
        eprintln!("  {}", p.display());
    }
    Ok(())
}

/// Starts the student's manager once before the lab, so an import error or
/// a crash in the constructor is reported before any model work, and reads
/// where its methods are for the report.
fn student_block_manager(file: &Path, block_size: usize) -> anyhow::Result<(HostConfig, StudentBlockManager)> {
    if !file.is_file() {
        anyhow::bail!(
            "{} is not a file: give your block_manager.py (`kvscope exercise init DIR` writes one)",
            file.display()
        );
    }
    let host = HostConfig::new(file);
    let (_probe, api, _) = kvscope_exercise::host::PythonHost::start(host.clone(), 1, block_size)
        .with_context(|| format!("cannot start the block manager in {}", file.display()))?;
    let name = file.file_name().map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned());
    let site = |m: &str| match api.lines.iter().find(|(n, _)| n == m) {
        Some((_, line)) => format!("{name}:{line}::{m}"),
        None => format!("{name}::{m}"),
    };
    let sites = StudentBlockManager {
        file: file.display().to_string(),
        allocate: site("allocate"),
        may_append: site("may_append"),
        deallocate: site("deallocate"),
    };
    eprintln!("block manager: {} (the student's, via python3)", file.display());
    Ok((host, sites))
}

fn run_with<B: LabBackend>(backend: &mut B, cfg: &LabConfig) -> anyhow::Result<LabResults> {
    let info = backend.info();
    let bytes_per_block = info.kv_bytes_per_token * cfg.block_size as u64;
    let blocks = cfg.num_blocks(&info);
    eprintln!(
        "KV pool: {blocks} blocks × {} tokens, {} bytes/token ({}), {} bytes/block, {:.1} MiB total — executor: {}, model: {}",
        cfg.block_size,
        info.kv_bytes_per_token,
        info.kv_dtype,
        bytes_per_block,
        (blocks as u64 * bytes_per_block) as f64 / (1u64 << 20) as f64,
        info.executor,
        info.model
    );
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos}/{len} requests  {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut stage = String::new();
    let results = run_lab(backend, cfg, &mut |name, done, total| {
        if name != stage {
            stage = name.to_string();
            bar.set_prefix(stage.clone());
            bar.set_length(total as u64);
        }
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    Ok(results)
}

fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("expected a positive number of requests per second, got {s:?}")),
    }
}

struct SimValidation {
    markdown: String,
    json: Option<serde_json::Value>,
}

/// Runs the same lab on the calibrated simulator and compares it with the
/// real run. Without a calibration file it says how to make one.
fn validate_with_sim(model: LoadedModel, cfg: &LabConfig, real: &LabResults) -> SimValidation {
    let mut backend = match SimBackend::calibrated_cpu(model) {
        Ok(b) => b,
        Err(e) => {
            return SimValidation {
                markdown: format!("Not run: {e}. (`kvscope sim --calibrate` fits this machine in about a minute.)"),
                json: None,
            }
        }
    };
    eprintln!("validating the simulator on the same workloads ...");
    let description = backend.description.clone();
    match run_lab(&mut backend, cfg, &mut |_, _, _| {}) {
        Ok(sim) => {
            let rows = kvscope_lab::validation::compare(real, &sim);
            SimValidation {
                markdown: kvscope_lab::validation::markdown(&rows, &description),
                json: serde_json::to_value(&rows).ok(),
            }
        }
        Err(e) => SimValidation { markdown: format!("Not run: the simulated lab failed: {e}"), json: None },
    }
}
