//! Knob sweeps (`--sweep block-size=8,16,32`, `--sweep kv-memory=32MiB,64MiB`,
//! `--sweep max-running=4,8,16`): the three capacity cases again, with the
//! same requests, at each value of one engine knob — the causal chain seen
//! from another side. Block size trades internal fragmentation (the unused
//! tail of each request's last block) against capacity; the pool size is
//! capacity itself; max-running is the scheduler's cap beside the pool's.

use crate::backend::{BackendInfo, LabBackend};
use crate::config::LabConfig;
pub use crate::knob::{Knob, KnobSweep};
use crate::lang::Lang;
use crate::plots::{panel_row_svg, PALETTE};
use crate::repeat::median_row;
use crate::run::{run_one, LabError, Progress};
use crate::svg::{Chart, Series};
use crate::workloads::largest_request;
use kvscope_core::EngineConfig;
use kvscope_experiment::capacity::{explain, CapacityRow};
use kvscope_experiment::driver::RunOptions;
use kvscope_experiment::workload::{CaseSpec, WorkloadRequest};
use serde::Serialize;

/// One knob value: the engine it configured and the three cases' rows
/// (medians of the repeats).
#[derive(Clone, Debug, Serialize)]
pub struct KnobPoint {
    pub value: u64,
    pub label: String,
    pub num_blocks: usize,
    pub block_size: usize,
    pub max_running: usize,
    pub rows: Vec<CapacityRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct KnobSweepResult {
    pub knob: Knob,
    pub points: Vec<KnobPoint>,
}

/// A knob and the engine of each of its values.
pub type KnobEngines = (Knob, Vec<(u64, EngineConfig)>);

/// The engine of every knob value, each checked (configuration, and that
/// the pool holds the largest request of every case) before anything runs.
pub fn configs(
    cfg: &LabConfig,
    info: &BackendInfo,
    workloads: &[(CaseSpec, Vec<WorkloadRequest>)],
) -> Result<Vec<KnobEngines>, LabError> {
    let mut out = Vec::new();
    for sweep in &cfg.knob_sweeps {
        let mut engines = Vec::new();
        for &v in &sweep.values {
            let err =
                |problem: String| LabError::Knob { knob: sweep.knob.name().into(), value: sweep.knob.show(v), problem };
            let engine = cfg.with_knob(sweep.knob, v).engine_config(info);
            engine.validate().map_err(|e| err(e.to_string()))?;
            let pool = &engine.pool;
            for (spec, reqs) in workloads {
                let largest = largest_request(reqs);
                if largest.div_ceil(pool.block_size) > pool.num_blocks {
                    return Err(err(format!(
                        "the pool ({} blocks of {} tokens) cannot hold one request of case {} ({largest} tokens): give a larger value",
                        pool.num_blocks, pool.block_size, spec.name
                    )));
                }
            }
            engines.push((v, engine));
        }
        out.push((sweep.knob, engines));
    }
    Ok(out)
}

/// Runs the three cases at every knob value, `repeat` times each.
pub fn run<B: LabBackend>(
    backend: &mut B,
    configs: &[KnobEngines],
    workloads: &[(CaseSpec, Vec<WorkloadRequest>)],
    repeat: usize,
    progress: Progress,
) -> Result<Vec<KnobSweepResult>, LabError> {
    let mut out = Vec::new();
    for (knob, engines) in configs {
        let mut points = Vec::new();
        for (v, engine) in engines {
            let mut rows = Vec::new();
            for (case, reqs) in workloads {
                let spec =
                    CaseSpec { name: format!("{}_{}={}", case.name, knob.name(), knob.show(*v)), ..case.clone() };
                let mut repeats = Vec::new();
                for _ in 0..repeat {
                    let run = run_one(backend, engine, &spec, reqs, RunOptions::SUMMARY, progress)?;
                    repeats.push(CapacityRow::from_run(&run, false));
                }
                let mut row = median_row(&repeats);
                // The case's own name: the table's rows are the cases at a value.
                row.case = case.name.clone();
                row.explanation = explain(&row, engine, false);
                rows.push(row);
            }
            points.push(KnobPoint {
                value: *v,
                label: knob.show(*v),
                num_blocks: engine.pool.num_blocks,
                block_size: engine.pool.block_size,
                max_running: engine.scheduler.max_running,
                rows,
            });
        }
        out.push(KnobSweepResult { knob: *knob, points });
    }
    Ok(out)
}

/// Internal fragmentation of a row: the share of the blocks a request held
/// at its peak that held no KV.
pub fn fragmentation(row: &CapacityRow) -> f64 {
    if row.estimated_kv_block_rounded > 0.0 {
        (1.0 - row.estimated_kv / row.estimated_kv_block_rounded).max(0.0)
    } else {
        0.0
    }
}

/// The report's subsection for one sweep: one line per knob value and case.
#[derive(Serialize)]
pub struct KnobSweepSection {
    pub knob: Knob,
    pub rows: Vec<KnobLine>,
}

#[derive(Serialize)]
pub struct KnobLine {
    pub value: String,
    pub case: String,
    pub num_blocks: usize,
    pub block_size: usize,
    pub live_mean: String,
    pub live_max: usize,
    /// Percent.
    pub fragmentation: String,
    pub queue_wait_p50: String,
    pub ttft_p50: String,
    pub ttft_p90: String,
    /// The binding admission constraint, `—` when none bound.
    pub binding: &'static str,
    pub preemptions: u64,
}

impl KnobSweepSection {
    pub fn new(sweep: &KnobSweepResult) -> KnobSweepSection {
        let rows = sweep
            .points
            .iter()
            .flat_map(|p| {
                p.rows.iter().map(move |r| KnobLine {
                    value: p.label.clone(),
                    case: r.case.clone(),
                    num_blocks: p.num_blocks,
                    block_size: p.block_size,
                    live_mean: format!("{:.2}", r.live_requests),
                    live_max: r.live_requests_max,
                    fragmentation: format!("{:.1}", 100.0 * fragmentation(r)),
                    queue_wait_p50: format!("{:.3}", r.queue_wait.p50),
                    ttft_p50: format!("{:.3}", r.ttft.p50),
                    ttft_p90: format!("{:.3}", r.ttft.p90),
                    binding: r.binding_constraint().map_or("—", |b| b.as_str()),
                    preemptions: r.preemptions,
                })
            })
            .collect();
        KnobSweepSection { knob: sweep.knob, rows }
    }
}

/// The sweep's figure: live requests, queue wait, TTFT and internal
/// fragmentation against the knob, one line per case.
pub fn svg(sweep: &KnobSweepResult, lang: Lang) -> String {
    let tx = crate::figure_text::of(lang);
    let k = sweep.knob.name();
    let cases: Vec<String> =
        sweep.points.first().map(|p| p.rows.iter().map(|r| r.case.clone()).collect()).unwrap_or_default();
    let x_label = match sweep.knob {
        Knob::KvMemory => "kv-memory (MiB)".to_string(),
        _ => k.to_string(),
    };
    let xv = |p: &KnobPoint| match sweep.knob {
        Knob::KvMemory => p.value as f64 / (1u64 << 20) as f64,
        _ => p.value as f64,
    };
    let panel = |title: &str, y_label: &str, f: &dyn Fn(&CapacityRow) -> f64| {
        let series = cases
            .iter()
            .enumerate()
            .map(|(i, case)| {
                let pts = sweep.points.iter().filter_map(|p| p.rows.get(i).map(|r| (xv(p), f(r)))).collect();
                Series::new(case, PALETTE[i % PALETTE.len()], pts).dotted()
            })
            .collect();
        (Chart { title: title.into(), x_label: x_label.clone(), y_label: y_label.into(), ..Default::default() }, series)
    };
    use crate::figure_text::fill;
    panel_row_svg(
        &fill(tx.sweep_title, &[&k]),
        &fill(tx.sweep_sub, &[&sweep.points.len()]),
        &[
            panel(tx.live_max, tx.requests, &|r| r.live_requests_max as f64),
            panel(tx.queue_p50, tx.seconds, &|r| r.queue_wait.p50),
            panel(tx.ttft_p50, tx.seconds, &|r| r.ttft.p50),
            panel(tx.internal_frag, tx.pct_held, &|r| 100.0 * fragmentation(r)),
        ],
    )
}
