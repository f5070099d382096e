//! Writes the lab's artifacts into the output folder (DESIGN.md lists them).

use crate::lifecycle::LifecycleGraph;
use crate::repeat::spread_json;
use crate::report::{render, render_simulated, Lang, ReportContext};
use crate::results::LabResults;
use crate::{failure_report, html, knob_sweep, plots, png, timeline};
use kvscope_core::stats::StatsCollector;
use kvscope_core::EngineConfig;
use kvscope_core::EventRecord;
use kvscope_experiment::capacity::{self, CapacityRow};
use kvscope_experiment::CaseRun;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct WriteError {
    path: PathBuf,
    source: std::io::Error,
}

fn write(dir: &Path, name: &str, content: impl AsRef<[u8]>) -> Result<PathBuf, WriteError> {
    let path = dir.join(name);
    fs::write(&path, content).map_err(|source| WriteError { path: path.clone(), source })?;
    Ok(path)
}

/// The event stream of the three capacity cases: one JSON object per line,
/// each with a `case` field naming the run it belongs to (each case runs on
/// a fresh engine, so steps and times restart at 0).
pub fn events_jsonl(res: &LabResults) -> String {
    let mut out = String::new();
    for case in &res.cases {
        for e in &case.events {
            let mut v = serde_json::to_value(e).expect("events serialise");
            v["case"] = serde_json::Value::String(case.spec.name.clone());
            out.push_str(&v.to_string());
            out.push('\n');
        }
    }
    out
}

/// `stats.csv`: every run's statistics rows, each with its case's name.
fn stats_csv<'a>(runs: impl IntoIterator<Item = &'a CaseRun>) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = writeln!(out, "case,{}", StatsCollector::CSV_HEADER);
    for case in runs {
        let prefix = format!("{},", case.spec.name);
        case.stats.write_csv_rows(&prefix, &mut out).expect("writing to memory");
    }
    out
}

/// Writes every artifact; returns the paths written. Every SVG gets a PNG
/// beside it, and report.html is report.md with the SVGs inline.
pub fn write_all(res: &LabResults, dir: &Path, ctx: &ReportContext, lang: Lang) -> Result<Vec<PathBuf>, WriteError> {
    fs::create_dir_all(dir).map_err(|source| WriteError { path: dir.to_path_buf(), source })?;
    let all_events: Vec<EventRecord> = res.cases.iter().flat_map(|c| c.events.iter().cloned()).collect();
    let graph = LifecycleGraph::from_events(&all_events);
    let mut capacity_json = capacity::to_json(&res.capacity, &res.engine, &res.backend.executor);
    capacity_json["repeats"] = res.repeat.into();
    // Every figure of every case as {median, min, max} over the repeats.
    capacity_json["rows_spread"] = res.capacity_repeats.iter().map(|r| spread_json(r)).collect();
    let mut written = vec![
        write(dir, "events.jsonl", events_jsonl(res))?,
        write(dir, "capacity.csv", capacity::to_csv(&res.capacity))?,
        write(dir, "capacity.json", serde_json::to_string_pretty(&capacity_json).expect("json"))?,
        write(dir, "stats.csv", stats_csv(res.cases.iter().chain(&res.probe_runs)))?,
        write(dir, "lifecycle.mmd", graph.to_mermaid())?,
        write(dir, "probe.json", serde_json::to_string_pretty(&res.probe).expect("json"))?,
        write(dir, "causal_chain.json", serde_json::to_string_pretty(&(&res.sweep_spec, &res.sweep)).expect("json"))?,
        write(dir, "lab.json", serde_json::to_string_pretty(res).expect("json"))?,
    ];
    let mut svgs: Vec<(String, String)> = vec![
        ("lifecycle.svg".into(), graph.to_svg(lang)),
        ("causal_chain.svg".into(), plots::causal_chain_svg(&res.sweep, pool_bytes(&res.engine), lang)),
    ];
    for case in &res.cases {
        let name = &case.spec.name;
        svgs.push((format!("timeline_{name}.svg"), timeline::timeline_svg(case, 12, lang)));
        svgs.push((format!("stats_{name}.svg"), plots::stats_svg(&case.stats, name, lang)));
    }
    if let Some(kp) = &res.kv_precision {
        written.push(write(dir, "kv_dtype.csv", crate::kv_precision::to_csv(kp))?);
        written.push(write(dir, "kv_dtype.json", serde_json::to_string_pretty(kp).expect("json"))?);
        svgs.push(("kv_dtype.svg".into(), crate::kv_precision_report::svg(kp, lang)));
    }
    if let Some(f) = &res.failure {
        written.push(write(dir, "failure.csv", failure_report::csv(f))?);
        written.push(write(dir, "failure.json", serde_json::to_string_pretty(f).expect("json"))?);
        svgs.push(("failure.svg".into(), failure_report::svg(f, lang)));
    }
    for k in &res.knob_sweeps {
        svgs.push((format!("sweep_{}.svg", k.knob.name()), knob_sweep::svg(k, lang)));
    }
    for (name, svg) in &svgs {
        written.push(write(dir, name, svg)?);
        let png = png::svg_to_png(svg)
            .map_err(|e| WriteError { path: dir.join(name), source: std::io::Error::other(e.to_string()) })?;
        written.push(write(dir, &name.replace(".svg", ".png"), png)?);
    }
    let report = render(res, &graph, ctx, lang);
    let title = report.lines().find(|l| l.starts_with("# ")).unwrap_or("# kvscope lab").trim_start_matches("# ");
    let page = html::render(&report, title, &|name| svgs.iter().find(|(n, _)| n == name).map(|(_, s)| s.clone()));
    written.push(write(dir, "report.md", report.as_bytes())?);
    written.push(write(dir, "report.html", page)?);
    Ok(written)
}

/// The KV pool's bytes, when the executor knows its block size.
fn pool_bytes(engine: &EngineConfig) -> Option<f64> {
    let pool = &engine.pool;
    (pool.bytes_per_block > 0).then_some(pool.num_blocks as f64 * pool.bytes_per_block as f64)
}

fn capacity_json(rows: &[CapacityRow], engine: &EngineConfig, executor: &str) -> String {
    serde_json::to_string_pretty(&capacity::to_json(rows, engine, executor)).expect("json")
}

/// What `kvscope sim --out` writes: the lab's capacity.csv / capacity.json
/// and stats.csv for simulated runs, and a report.md with the lab's
/// capacity section, labelled simulated. Returns the paths written.
pub fn write_simulated(
    rows: &[CapacityRow],
    runs: &[CaseRun],
    backend: &str,
    dir: &Path,
    ctx: &ReportContext,
    lang: Lang,
) -> Result<Vec<PathBuf>, WriteError> {
    fs::create_dir_all(dir).map_err(|source| WriteError { path: dir.to_path_buf(), source })?;
    let engine = &runs.first().expect("at least one run").config;
    Ok(vec![
        write(dir, "capacity.csv", capacity::to_csv(rows))?,
        write(dir, "capacity.json", capacity_json(rows, engine, "sim"))?,
        write(dir, "stats.csv", stats_csv(runs))?,
        write(dir, "report.md", render_simulated(rows, engine, backend, ctx, lang))?,
    ])
}
