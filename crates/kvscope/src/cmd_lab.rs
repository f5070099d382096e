//! `kvscope lab`: Lab 4 end to end on the real model (or the simulator).

use crate::lab_args::{CompareArgs, ExecutorKind, LabAction, LabArgs, LangArg, ScaleArg};
use crate::lab_backends::{RealBackend, SimBackend};
use crate::machine::{commit, cpu_flags, machine_description, ram, today, LoadSampler};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use kvscope_exercise::HostConfig;
use kvscope_experiment::driver::RunOptions;
use kvscope_experiment::workload::{CaseSpec, WorkloadRequest};
use kvscope_lab::backend::LabBackend;
use kvscope_lab::failure::FailurePlan;
use kvscope_lab::lab::{run_lab, run_one, LabConfig, LabResults};
use kvscope_lab::report::{Environment, Lang, ReportContext, StudentBlockManager};
use kvscope_model::LoadedModel;
use kvscope_sim::SimConfig;
use std::path::Path;

fn compare(args: CompareArgs) -> anyhow::Result<()> {
    let c = kvscope_lab::compare::compare(&args.dir_a, &args.dir_b, args.force)?;
    let md = kvscope_lab::compare::markdown(&c);
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("compare.md"), &md).with_context(|| format!("writing into {}", dir.display()))?;
        std::fs::write(dir.join("compare.json"), serde_json::to_string_pretty(&c)?)
            .with_context(|| format!("writing into {}", dir.display()))?;
    }
    print!("{md}");
    Ok(())
}

pub fn run(args: LabArgs) -> anyhow::Result<()> {
    if let Some(LabAction::Compare(c)) = args.action {
        return compare(c);
    }
    if args.fleet.fleet.is_some() {
        return crate::cmd_lab_fleet::run(&args);
    }
    if args.target.target.is_some() {
        return crate::cmd_lab_target::run(&args);
    }
    if let Some(load) = args.load_sweeps().first() {
        anyhow::bail!(
            "--sweep {}=…: the client's load is swept on a running engine (add --target URL); the lab's own engine sweeps block-size, kv-memory or max-running",
            load.knob.name()
        );
    }
    let block_size = args.block_size.unwrap_or(kvscope_core::DEFAULT_BLOCK_SIZE as u64);
    anyhow::ensure!(
        args.model_preset.is_none() || args.executor == ExecutorKind::Sim,
        "--model-preset runs the simulator: add --executor sim"
    );
    crate::preflight::check_out_dir(&args.out)?;
    let cfg = lab_config(&args, block_size)?;
    let failure = FailureArgs { slo_ttft: args.slo_ttft, budget: args.failure_budget };
    let student = match &args.block_manager {
        Some(_) if args.executor == ExecutorKind::Sim => {
            anyhow::bail!("--block-manager runs on the real model: drop --executor sim")
        }
        Some(file) => Some(student_block_manager(file, block_size as usize)?),
        None => None,
    };
    // Sampled before any model work and during the lab: 12.1 says whether
    // other work shared the CPUs with it.
    let mut load = LoadSampler::start();
    let (results, validation) = run_backend(&args, &cfg, &failure, student.as_ref().map(|(host, _)| host), &mut load)?;
    let ctx = report_context(cfg.seed, validation.as_ref(), student.map(|(_, sites)| sites), load);
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

/// The lab on the backend its flags name: a simulated preset, the
/// simulator calibrated on this CPU, or the real model (then checked
/// against the simulator).
fn run_backend(
    args: &LabArgs,
    cfg: &LabConfig,
    failure: &FailureArgs,
    student: Option<&HostConfig>,
    load: &mut LoadSampler,
) -> anyhow::Result<(LabResults, Option<SimValidation>)> {
    match (args.executor, &args.model_preset, &args.hardware) {
        (ExecutorKind::Sim, Some(model), Some(hardware)) => {
            let mut sim = SimConfig::from_names(model, hardware)?;
            sim.block_size = cfg.block_size;
            if let Some(dtype) = args.model.kv_dtype {
                sim.model = sim.model.with_kv_dtype(dtype);
            }
            Ok((run_with(&mut SimBackend::preset(&sim)?, cfg, failure, None, load)?, None))
        }
        (ExecutorKind::Sim, _, _) => {
            let model = LoadedModel::load(&args.model)?;
            Ok((run_with(&mut SimBackend::calibrated_cpu(model)?, cfg, failure, None, load)?, None))
        }
        (ExecutorKind::Real, _, _) => {
            let model = LoadedModel::load(&args.model)?;
            let block_manager = student.cloned();
            let mut backend = RealBackend { model, block_manager };
            let mut narrow = SimBackend::narrowing(backend.model.kv_dtype).ok();
            let results = run_with(&mut backend, cfg, failure, narrow.as_mut(), load)?;
            let validation = validate_with_sim(backend.model, cfg, &results);
            Ok((results, Some(validation)))
        }
    }
}

/// The local lab's configuration from its flags.
fn lab_config(args: &LabArgs, block_size: u64) -> anyhow::Result<LabConfig> {
    let dataset = match &args.dataset {
        Some(p) => Some(kvscope_experiment::dataset::load_prompts(p)?),
        None => None,
    };
    let default_scale = match (args.quick, &args.model_preset) {
        (true, _) => ScaleArg::Quick,
        (false, Some(_)) => ScaleArg::Gpu,
        (false, None) => ScaleArg::Lab,
    };
    Ok(LabConfig {
        scale: args.scale.unwrap_or(default_scale).into(),
        seed: args.seed,
        block_size: block_size as usize,
        kv_blocks: args.kv_blocks.map(|b| b as usize),
        kv_memory_bytes: args.kv_memory,
        max_running: args.max_running,
        max_batched_tokens: args.max_batched_tokens,
        dataset,
        arrival_rate: args.arrival_rate,
        repeat: args.repeat as usize,
        knob_sweeps: args.engine_sweeps(),
    })
}

/// What the report says about the run beside its results: date, machine,
/// command, environment, the simulator's validation, the student's manager.
fn report_context(
    seed: u64,
    validation: Option<&SimValidation>,
    block_manager: Option<StudentBlockManager>,
    load: LoadSampler,
) -> ReportContext {
    ReportContext {
        date: today(),
        kvscope_version: env!("CARGO_PKG_VERSION").into(),
        machine: machine_description(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        sim_validation: validation.map(|v| v.markdown.clone()),
        block_manager,
        environment: Environment {
            ram: ram(),
            cpu_flags: cpu_flags(),
            commit: commit(),
            seed: Some(seed),
            load: load.finish(),
        },
    }
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

/// The failure-condition search's settings.
struct FailureArgs {
    slo_ttft: f64,
    budget: usize,
}

fn run_with<B: LabBackend>(
    backend: &mut B,
    cfg: &LabConfig,
    failure: &FailureArgs,
    narrow: Option<&mut SimBackend>,
    load: &mut LoadSampler,
) -> anyhow::Result<LabResults> {
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
    let mut progress = |name: &str, done: usize, total: usize| {
        load.tick();
        if name != stage {
            stage = name.to_string();
            bar.set_prefix(stage.clone());
            bar.set_length(total as u64);
        }
        bar.set_position(done as u64);
    };
    let mut results = run_lab(backend, cfg, &mut progress)?;
    if failure.budget > 0 {
        let started = std::time::Instant::now();
        let plan = FailurePlan::new(
            &results.sweep_spec,
            results.engine.scheduler.max_running,
            cfg.arrival_rate,
            failure.slo_ttft,
            failure.budget,
            cfg.seed,
            results.backend.vocab_size as u32,
        );
        let engine = &results.engine.clone();
        let is_real = results.backend.executor == "real";
        let mut primary = |spec: &CaseSpec, reqs: &[WorkloadRequest]| {
            run_one(backend, engine, spec, reqs, RunOptions::SUMMARY, &mut progress)
        };
        let narrow_name = narrow.as_ref().map(|n| n.description.clone());
        let mut narrow_run = narrow.map(|sim| {
            move |spec: &CaseSpec, reqs: &[WorkloadRequest]| {
                run_one(sim, engine, spec, reqs, RunOptions::SUMMARY, &mut |_, _, _| {})
            }
        });
        let narrow_arg = match (&mut narrow_run, narrow_name) {
            (Some(f), Some(name)) => Some((f as kvscope_lab::failure::Runner, name)),
            _ => None,
        };
        results.failure = Some(kvscope_lab::failure::search(&plan, &mut primary, is_real, narrow_arg)?);
        results.wall_seconds += started.elapsed().as_secs_f64();
    }
    bar.finish_and_clear();
    Ok(results)
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
                markdown: kvscope_lab::validation::markdown(&rows, &description, real.repeat),
                json: serde_json::to_value(&rows).ok(),
            }
        }
        Err(e) => SimValidation { markdown: format!("Not run: the simulated lab failed: {e}"), json: None },
    }
}
