//! The failure conditions as the report, failure.csv and failure.svg show
//! them; every threshold names its source (real, simulated, a bound).

use crate::failure::{Condition, FailureResults, LoadKind, LoadRun, Source, Threshold, TARGET};
use crate::figure_text::fill;
use crate::lang::Lang;
use crate::plots::panel_row_svg;
use crate::svg::{Chart, Marker, Series};
use serde::Serialize;

/// The condition's name in the plot's legend (the report's names are the
/// templates').
fn name(c: Condition, lang: Lang) -> &'static str {
    let tx = crate::figure_text::of(lang);
    match c {
        Condition::AdmissionStall => tx.cond_stall,
        Condition::Preemption => tx.cond_preemption,
        Condition::SloTtft => tx.cond_slo,
    }
}

fn key(c: Condition) -> &'static str {
    match c {
        Condition::AdmissionStall => "admission_stall",
        Condition::Preemption => "preemption",
        Condition::SloTtft => "slo_ttft",
    }
}

/// The report's failure-condition subsection: the search's setup and one
/// line per context length, every threshold with its source.
#[derive(Serialize)]
pub struct FailureSection {
    /// The lab ran on the simulator: every threshold is simulated.
    pub all_simulated: bool,
    /// The simulator that searched before the real engine, if one did.
    pub narrowed_by: Option<String>,
    pub simulated_runs: usize,
    pub primary_runs: usize,
    /// Runs per context length on the lab's own engine.
    pub budget: usize,
    pub output_tokens: usize,
    pub load: LoadKind,
    pub ladder: String,
    pub slo_ttft: String,
    pub rows: Vec<FailureLine>,
}

#[derive(Serialize)]
pub struct FailureLine {
    pub prompt_len: usize,
    /// (a) admission stall, (b) preemption, (c) SLO, in that order.
    pub thresholds: Vec<ThresholdCell>,
}

/// A threshold as a table cell.
#[derive(Serialize)]
pub struct ThresholdCell {
    /// `3`, `≤ 3` (an upper bound) or `> 32` (not reached up to the
    /// ladder's top); `None` when not settled within the budget.
    pub load: Option<String>,
    pub source: Source,
    /// What produced the condition in the run at the threshold (`None`:
    /// no run there): `kv` (blocks ran out), `max_running` (the cap on
    /// running requests), `kv+max_running`, `token_budget` (the step's
    /// token budget: compute, not KV, held the queue) or `compute` (nothing
    /// held admission; TTFT is the prompt's own compute).
    pub bound: Option<&'static str>,
    /// What showed the condition, tagged with its source (a target's
    /// report: the client's TTFT, the engine's preemption counter); `None`
    /// in the lab's own report, whose runs are in failure.json.
    pub evidence: Option<String>,
}

impl FailureSection {
    pub fn new(f: &FailureResults) -> FailureSection {
        FailureSection {
            all_simulated: f.primary == "sim",
            narrowed_by: f.narrowed_by.clone(),
            simulated_runs: f.simulated_runs,
            primary_runs: f.primary_runs,
            budget: f.plan.budget,
            output_tokens: f.plan.output_tokens,
            load: f.plan.load,
            ladder: ladder_text(f),
            slo_ttft: f.plan.slo_ttft.to_string(),
            rows: f
                .points
                .iter()
                .map(|p| FailureLine {
                    prompt_len: p.prompt_len,
                    thresholds: Condition::ALL
                        .iter()
                        .map(|&c| {
                            let t = p.threshold(c);
                            // A target's stalls are not exported: what bound it is unknown.
                            let bound = if f.primary == TARGET { None } else { bound(c, &t, &p.runs) };
                            ThresholdCell { bound, ..ThresholdCell::new(&t, f) }
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl ThresholdCell {
    fn new(t: &Threshold, f: &FailureResults) -> ThresholdCell {
        let top = f.plan.ladder.last().copied().unwrap_or(0.0);
        let fmt = |x: f64| if x.fract() == 0.0 { format!("{x:.0}") } else { format!("{x:.2}") };
        let load = match (t.load, t.source) {
            (_, Source::Unknown | Source::NotExposed) => None,
            (None, _) => Some(format!("> {}", fmt(top))),
            (Some(x), Source::RealUpperBound) => Some(format!("≤ {}", fmt(x))),
            (Some(x), _) => Some(fmt(x)),
        };
        ThresholdCell { load, source: t.source, bound: None, evidence: None }
    }
}

/// The constraint behind condition `c` in the run at its threshold (the
/// real run where the threshold is real, else the simulated one).
/// A preemption is always KV: a decode needed a block and none was free.
fn bound(c: Condition, t: &Threshold, runs: &[LoadRun]) -> Option<&'static str> {
    if matches!(t.source, Source::Unknown | Source::NotExposed) {
        return None;
    }
    let load = t.load?;
    let real = matches!(t.source, Source::Real | Source::RealUpperBound);
    let run = runs
        .iter()
        .filter(|r| r.load == load)
        .find(|r| r.simulated != real)
        .or_else(|| runs.iter().find(|r| r.load == load))?;
    let (kv, cap) = (run.stalls_no_free_blocks > 0, run.stalls_max_running > 0);
    Some(match (c, kv, cap) {
        (Condition::Preemption, _, _) => "kv",
        (_, true, true) => "kv+max_running",
        (_, true, false) => "kv",
        (_, false, true) => "max_running",
        (_, false, false) if run.stalls_token_budget > 0 => "token_budget",
        _ => "compute",
    })
}

fn ladder_text(f: &FailureResults) -> String {
    let (Some(a), Some(b)) = (f.plan.ladder.first(), f.plan.ladder.last()) else { return "[]".into() };
    match f.plan.load {
        LoadKind::Concurrency => format!("{a:.0}..={b:.0}"),
        LoadKind::PoissonRate { .. } => format!("{a:.3}..{b:.3} (×√2)"),
    }
}

/// failure.csv: one line per context length and condition.
pub fn csv(f: &FailureResults) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["prompt_len_tokens", "condition", "load_kind", "load", "reached", "source", "slo_ttft_s"])
        .expect("writing CSV to memory");
    let kind = match f.plan.load {
        LoadKind::Concurrency => "concurrency",
        LoadKind::PoissonRate { .. } => "poisson_rate_per_s",
    };
    for p in &f.points {
        for c in Condition::ALL {
            let t = p.threshold(c);
            let source = serde_json::to_value(t.source).expect("json");
            w.write_record([
                p.prompt_len.to_string(),
                key(c).into(),
                kind.into(),
                t.load.map_or(String::new(), |x| x.to_string()),
                t.load.is_some().to_string(),
                source.as_str().unwrap_or_default().into(),
                f.plan.slo_ttft.to_string(),
            ])
            .expect("writing CSV to memory");
        }
    }
    String::from_utf8(w.into_inner().expect("flushing to memory")).expect("UTF-8")
}

/// failure.svg: the load at which each condition first appears, against
/// the context length. Real thresholds are filled, simulated ones hollow
/// and dashed, upper bounds (seen here, lower loads not settled) a
/// downward triangle; conditions not reached are left out (the table says
/// "> top"). Each condition has its own shape, and the preemption is drawn
/// last: it often coincides with the stall (a preemption needs a full
/// pool), and must stay visible on top of it.
pub fn svg(f: &FailureResults, lang: Lang) -> String {
    let tx = crate::figure_text::of(lang);
    // Drawing order = stacking order, bottom first.
    let styles = [
        (Condition::SloTtft, "#c0392b", Marker::Diamond, 5.0),
        (Condition::AdmissionStall, "#2f6fbf", Marker::Square, 7.0),
        (Condition::Preemption, "#7d4fc0", Marker::Circle, 4.5),
    ];
    let mut series = Vec::new();
    for (c, color, shape, r) in styles {
        let pts = |want: &[Source]| -> Vec<(f64, f64)> {
            f.points
                .iter()
                .filter_map(|p| {
                    let t = p.threshold(c);
                    t.load.filter(|_| want.contains(&t.source)).map(|x| (p.prompt_len as f64, x))
                })
                .collect()
        };
        let label = |template: &str| fill(template, &[&name(c, lang)]);
        let (real, bound, sim) = (pts(&[Source::Real]), pts(&[Source::RealUpperBound]), pts(&[Source::Simulated]));
        if !sim.is_empty() {
            series.push(Series::new(&label(tx.simulated), color, sim).marker(shape).dot_radius(r).hollow().dashed());
        }
        if !real.is_empty() {
            series.push(Series::new(&label(tx.real), color, real).marker(shape).dot_radius(r));
        }
        if !bound.is_empty() {
            series.push(
                Series::new(&label(tx.upper_bound), color, bound).marker(Marker::TriangleDown).dot_radius(r).unjoined(),
            );
        }
    }
    let y_label = match f.plan.load {
        LoadKind::Concurrency => tx.concurrent,
        LoadKind::PoissonRate { .. } => tx.arrival_rate,
    };
    panel_row_svg(
        tx.failure_title,
        &fill(tx.failure_sub, &[&f.plan.slo_ttft, &f.plan.ladder.last().copied().unwrap_or(0.0)]),
        &[(
            Chart {
                title: tx.failure_chart.into(),
                x_label: tx.prompt_len.into(),
                y_label: y_label.into(),
                y_min: Some(0.0),
                x_ticks: f.points.iter().map(|p| p.prompt_len as f64).collect(),
                ..Default::default()
            },
            series,
        )],
    )
}
