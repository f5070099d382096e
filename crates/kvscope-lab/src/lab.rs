//! The whole experiment: the three capacity cases, the causal-chain sweep,
//! the probe beside realized reuse — run on one backend with one pool, and
//! written out as the artifacts DESIGN.md lists.

use crate::backend::LabBackend;
use crate::causal::{agreement, median_point, SweepPoint};
use crate::kv_precision::{run_kv_precision, KvPrecision, MainRun, ACCURACY_PROMPTS_PER_CASE, PRECISION_CASE};
use crate::probe_compare::{compare, ProbeComparison};
use crate::repeat::median_row;
use crate::workloads::{LabWorkloads, Workload};
use kvscope_core::probe::PrefixProbe;
use kvscope_core::EngineConfig;
use kvscope_experiment::capacity::{explain, CapacityRow};
use kvscope_experiment::driver::{CaseRun, RunOptions};
use kvscope_experiment::workload::CaseSpec;

pub use crate::config::LabConfig;
pub use crate::results::{CaseIdentity, LabResults, WorkloadIdentity};
pub use crate::run::{run_one, LabError, Progress};
pub use crate::workloads::SweepSpec;

pub fn run_lab<B: LabBackend>(backend: &mut B, cfg: &LabConfig, progress: Progress) -> Result<LabResults, LabError> {
    let started = std::time::Instant::now();
    let info = backend.info();
    let engine = cfg.engine_config(&info);
    // Before any workload is built or any KV allocated.
    engine.validate()?;
    let pool_tokens = engine.pool.num_blocks * cfg.block_size;
    let sweep_spec = SweepSpec::at(cfg.scale, pool_tokens);
    // Every workload is built (and tokenized) before anything runs.
    let workloads = LabWorkloads::build(backend, cfg, &sweep_spec, pool_tokens);
    workloads.check_fit(engine.pool.num_blocks, cfg.block_size)?;
    // Every knob value is checked (pool, limits) before anything runs.
    let knob_configs = crate::knob_sweep::configs(cfg, &info, &workloads.cases)?;

    let repeat = cfg.repeat.max(1);
    let runs = run_repeats(backend, &engine, &workloads, repeat, progress)?;
    let capacity = runs
        .capacity
        .iter()
        .map(|rows| {
            let mut row = median_row(rows);
            row.explanation = explain(&row, &engine, false);
            row
        })
        .collect();
    let knob_sweeps = crate::knob_sweep::run(backend, &knob_configs, &workloads.cases, repeat, progress)?;
    let kv_precision = kv_precision(backend, &engine, &workloads.cases, &runs.cases, progress)?;
    Ok(LabResults {
        backend: info,
        cases: runs.cases,
        capacity,
        capacity_repeats: runs.capacity,
        sweep: runs.sweep.iter().map(|p| median_point(p)).collect(),
        chain: agreement(&runs.sweep),
        sweep_repeats: runs.sweep,
        probe: runs.probe[0].clone(),
        probe_repeats: runs.probe,
        probe_runs: runs.probe_runs,
        repeat,
        workload: WorkloadIdentity::of(cfg, &workloads.cases, &sweep_spec),
        sweep_spec,
        engine,
        knob_sweeps,
        failure: None,
        kv_precision,
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Every run of every repeat: the first repeat's runs kept whole, every
/// repeat's figures.
struct Repeats {
    cases: Vec<CaseRun>,
    /// `capacity[case][repeat]`.
    capacity: Vec<Vec<CapacityRow>>,
    /// `sweep[point][repeat]`.
    sweep: Vec<Vec<SweepPoint>>,
    probe: Vec<ProbeComparison>,
    probe_runs: Vec<CaseRun>,
}

/// Runs the cases, the sweep and the probe `repeat` times. Repeats
/// outermost: a slow drift of the machine then touches every case alike
/// instead of biasing the cases run last.
fn run_repeats<B: LabBackend>(
    backend: &mut B,
    engine: &EngineConfig,
    workloads: &LabWorkloads,
    repeat: usize,
    progress: Progress,
) -> Result<Repeats, LabError> {
    let mut out = Repeats {
        cases: Vec::new(),
        capacity: vec![Vec::new(); workloads.cases.len()],
        sweep: vec![Vec::new(); workloads.sweeps.len()],
        probe: Vec::new(),
        probe_runs: Vec::new(),
    };
    let mut probe_observed = PrefixProbe::new(engine.pool.block_size);
    for r in &workloads.probe.1 {
        probe_observed.observe(&r.prompt);
    }
    for r in 0..repeat {
        for (i, (spec, reqs)) in workloads.cases.iter().enumerate() {
            let run = run_one(backend, engine, spec, reqs, RunOptions::EVERY_STEP, progress)?;
            out.capacity[i].push(CapacityRow::from_run(&run, false));
            if r == 0 {
                out.cases.push(run);
            }
        }
        for (i, (spec, reqs)) in workloads.sweeps.iter().enumerate() {
            let run = run_one(backend, engine, spec, reqs, RunOptions::EVERY_STEP, progress)?;
            out.sweep[i].push(SweepPoint::from_run(&run));
        }
        let (off, on) = run_probe(backend, engine, &workloads.probe, progress)?;
        out.probe.push(compare(&off, probe_observed.report.clone(), &on));
        if r == 0 {
            out.probe_runs = vec![off, on];
        }
    }
    Ok(out)
}

/// The probe's case with caching off (only watching), then on (realized
/// reuse).
fn run_probe<B: LabBackend>(
    backend: &mut B,
    engine: &EngineConfig,
    (probe_spec, probe_reqs): &Workload,
    progress: Progress,
) -> Result<(CaseRun, CaseRun), LabError> {
    let mut off_config = engine.clone();
    off_config.pool.enable_prefix_caching = false;
    let off_spec = CaseSpec { name: format!("{}_caching_off", probe_spec.name), ..probe_spec.clone() };
    let off = run_one(backend, &off_config, &off_spec, probe_reqs, RunOptions::EVERY_STEP, progress)?;
    let on_spec = CaseSpec { name: format!("{}_caching_on", probe_spec.name), ..probe_spec.clone() };
    let on = run_one(backend, engine, &on_spec, probe_reqs, RunOptions::EVERY_STEP, progress)?;
    Ok((off, on))
}

/// The KV-precision extension over the precision case's main run (`None`
/// without that case, or when the backend stores one format only).
fn kv_precision<B: LabBackend>(
    backend: &mut B,
    engine: &EngineConfig,
    workloads: &[Workload],
    cases: &[CaseRun],
    progress: Progress,
) -> Result<Option<KvPrecision>, LabError> {
    let Some(((spec, reqs), run)) = workloads.iter().zip(cases).find(|((spec, _), _)| spec.name == PRECISION_CASE)
    else {
        return Ok(None);
    };
    let prompts = workloads
        .iter()
        .flat_map(|(_, reqs)| reqs.iter().take(ACCURACY_PROMPTS_PER_CASE).map(|r| r.prompt.to_vec()))
        .collect();
    let main = MainRun { engine, spec, requests: reqs, run, prompts };
    run_kv_precision(backend, main, progress)
}
