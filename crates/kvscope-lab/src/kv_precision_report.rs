//! The KV-precision extension as the report shows it (the figures of its
//! subsection; the words are the report templates') and as `kv_dtype.svg`.
//! Every figure comes from [`KvPrecision`]; the report states the
//! trade-off in both directions and what the measurement does not show.

use crate::kv_precision::{KvAccuracy, KvDtypeRow, KvPrecision};
use crate::svg::{Anchor, Svg};
use kvscope_core::{KvDtype, StallReason};
use kvscope_experiment::capacity::CapacityRow;
use serde::Serialize;

/// The report's KV-precision subsection (a level-3 heading under 12.5, the
/// extensions): every format in the same pool bytes, its capacity and its
/// price against the f32 KV path.
#[derive(Serialize)]
pub struct KvPrecisionSection {
    /// Capacities are simulated and no logits were scored.
    pub simulated: bool,
    pub pool: String,
    pub case: String,
    pub num_requests: usize,
    pub main_dtype: KvDtype,
    pub formats: Vec<FormatLine>,
    /// The most compact format against the first (widest) one.
    pub tradeoff: Option<Tradeoff>,
    pub accuracy_prompts: usize,
    pub accuracy_positions: usize,
}

#[derive(Serialize)]
pub struct FormatLine {
    pub kv_dtype: KvDtype,
    pub bytes_per_token: u64,
    pub blocks: usize,
    pub token_slots: usize,
    /// `None`: the pool cannot hold one request of the case.
    pub capacity: Option<FormatCapacity>,
    /// `None`: not scored (f32 itself is the reference, see `reference`).
    pub accuracy: Option<FormatAccuracy>,
    pub reference: bool,
}

#[derive(Serialize)]
pub struct FormatCapacity {
    pub live_max: usize,
    pub live_mean: String,
    pub queue_wait_p50: String,
    pub queue_wait_p90: String,
    pub ttft_p50: String,
    pub ttft_p90: String,
    pub preemptions: u64,
    /// What held the queue in this run: `kv` (no free blocks), `max_running`,
    /// `token_budget` (the step's compute) or `compute` (nothing did). On a
    /// CPU the step's compute often bounds a format with room to spare, so
    /// its TTFT says nothing about KV: the report must say which it was.
    pub bound: &'static str,
    /// Seconds the head of the queue waited for free blocks.
    pub kv_wait_s: String,
}

#[derive(Serialize)]
pub struct FormatAccuracy {
    pub positions: usize,
    /// Percent, over every position and over the decisive ones.
    pub top1_agreement: String,
    pub decisive_positions: usize,
    pub decisive_top1_agreement: String,
    pub mean_abs_logprob_diff: String,
    pub max_abs_logprob_diff: String,
}

/// Both directions of the trade-off, from the run's own figures.
#[derive(Serialize)]
pub struct Tradeoff {
    pub wide: KvDtype,
    pub narrow: KvDtype,
    /// Token slots of the narrow format per slot of the wide one.
    pub ratio: String,
    /// Both formats ran the case: what changed.
    pub shift: Option<CapacityShift>,
    /// Only the narrow format could run the case.
    pub only_narrow_runs: bool,
    pub price: Option<FormatAccuracy>,
}

#[derive(Serialize)]
pub struct CapacityShift {
    pub live_mean: [String; 2],
    pub queue_wait_p90: [String; 2],
    pub ttft_p90: [String; 2],
}

impl KvPrecisionSection {
    pub fn new(kp: &KvPrecision, simulated: bool) -> KvPrecisionSection {
        KvPrecisionSection {
            simulated,
            pool: format!("{:.1}", kp.pool_bytes as f64 / (1u64 << 20) as f64),
            case: kp.case.clone(),
            num_requests: kp.num_requests,
            main_dtype: kp.main_dtype,
            formats: kp.rows.iter().map(FormatLine::new).collect(),
            tradeoff: Tradeoff::new(kp),
            accuracy_prompts: kp.accuracy_prompts,
            accuracy_positions: kp.accuracy_positions,
        }
    }
}

impl FormatLine {
    fn new(r: &KvDtypeRow) -> FormatLine {
        FormatLine {
            kv_dtype: r.kv_dtype,
            bytes_per_token: r.bytes_per_token,
            blocks: r.blocks,
            token_slots: r.token_slots,
            capacity: r.capacity.as_ref().map(|c| FormatCapacity {
                live_max: c.live_requests_max,
                live_mean: format!("{:.2}", c.live_requests),
                queue_wait_p50: format!("{:.2}", c.queue_wait.p50),
                queue_wait_p90: format!("{:.2}", c.queue_wait.p90),
                ttft_p50: format!("{:.2}", c.ttft.p50),
                ttft_p90: format!("{:.2}", c.ttft.p90),
                preemptions: c.preemptions,
                bound: match c.binding_constraint() {
                    Some(StallReason::NoFreeBlocks) => "kv",
                    Some(StallReason::MaxRunning) => "max_running",
                    Some(StallReason::TokenBudget | StallReason::MaxPartialPrefills) => "token_budget",
                    None => "compute",
                },
                kv_wait_s: format!("{:.2}", c.stalled_seconds * c.stall_time_share_no_free_blocks),
            }),
            accuracy: r.accuracy.as_ref().map(FormatAccuracy::new),
            reference: r.accuracy.is_none() && r.kv_dtype == KvDtype::F32,
        }
    }
}

impl FormatAccuracy {
    fn new(a: &KvAccuracy) -> FormatAccuracy {
        FormatAccuracy {
            positions: a.positions,
            top1_agreement: format!("{:.2}", 100.0 * a.top1_agreement),
            decisive_positions: a.decisive_positions,
            decisive_top1_agreement: format!("{:.2}", 100.0 * a.decisive_top1_agreement),
            mean_abs_logprob_diff: format!("{:.4}", a.mean_abs_logprob_diff),
            max_abs_logprob_diff: format!("{:.3}", a.max_abs_logprob_diff),
        }
    }
}

impl Tradeoff {
    fn new(kp: &KvPrecision) -> Option<Tradeoff> {
        let wide = kp.rows.first()?;
        let narrow = kp.rows.iter().min_by_key(|r| r.bytes_per_token)?;
        let shift = match (&wide.capacity, &narrow.capacity) {
            (Some(w), Some(n)) => {
                let both = |f: fn(&CapacityRow) -> f64| [format!("{:.2}", f(w)), format!("{:.2}", f(n))];
                Some(CapacityShift {
                    live_mean: both(|c| c.live_requests),
                    queue_wait_p90: both(|c| c.queue_wait.p90),
                    ttft_p90: both(|c| c.ttft.p90),
                })
            }
            _ => None,
        };
        Some(Tradeoff {
            wide: wide.kv_dtype,
            narrow: narrow.kv_dtype,
            ratio: format!("{:.2}", narrow.token_slots as f64 / wide.token_slots.max(1) as f64),
            shift,
            only_narrow_runs: wide.capacity.is_none() && narrow.capacity.is_some(),
            price: narrow.accuracy.as_ref().map(FormatAccuracy::new),
        })
    }
}

/// `kv_dtype.svg`: one panel per figure, one bar per format.
pub fn svg(kp: &KvPrecision, lang: crate::lang::Lang) -> String {
    use crate::figure_text::fill;
    let tx = crate::figure_text::of(lang);
    type Metric = (&'static str, fn(&KvDtypeRow) -> Option<f64>);
    let metrics: [Metric; 4] = [
        (tx.kv_slots, |r| Some(r.token_slots as f64)),
        (tx.kv_live, |r| r.capacity.as_ref().map(|c| c.live_requests)),
        (tx.kv_ttft, |r| r.capacity.as_ref().map(|c| c.ttft.p90)),
        (tx.kv_top1, |r| match (&r.accuracy, r.kv_dtype) {
            (Some(a), _) => Some(100.0 * a.top1_agreement),
            (None, KvDtype::F32) => Some(100.0),
            _ => None,
        }),
    ];
    let (panel_w, panel_h, top) = (230.0, 220.0, 60.0);
    let mut s = Svg::new(panel_w * metrics.len() as f64 + 20.0, panel_h + top + 50.0);
    s.text(
        s.width / 2.0,
        26.0,
        &fill(tx.kv_title, &[&format!("{:.1}", kp.pool_bytes as f64 / (1u64 << 20) as f64), &kp.case]),
        15.0,
        Anchor::Middle,
        "#222",
        true,
    );
    let colors = ["#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756"];
    for (i, (title, get)) in metrics.iter().enumerate() {
        let x0 = 10.0 + i as f64 * panel_w;
        s.text(x0 + panel_w / 2.0, top - 8.0, title, 12.0, Anchor::Middle, "#333", true);
        let values: Vec<Option<f64>> = kp.rows.iter().map(get).collect();
        let max = values.iter().flatten().cloned().fold(0.0, f64::max).max(1e-9);
        let n = kp.rows.len().max(1) as f64;
        let bar_w = (panel_w - 40.0) / n;
        let base = top + panel_h;
        s.line(x0 + 15.0, base, x0 + panel_w - 15.0, base, "#999", 1.0, None);
        for (j, (r, v)) in kp.rows.iter().zip(&values).enumerate() {
            let x = x0 + 20.0 + j as f64 * bar_w;
            let color = colors[j % colors.len()];
            match v {
                Some(v) => {
                    let h = (panel_h - 30.0) * v / max;
                    s.rect(x + 4.0, base - h, bar_w - 8.0, h, color, None, 2.0);
                    let shown = if *v >= 100.0 { format!("{v:.0}") } else { format!("{v:.2}") };
                    s.label(x + bar_w / 2.0, base - h - 5.0, &shown, 11.0, Anchor::Middle, "#222");
                }
                None => s.label(x + bar_w / 2.0, base - 8.0, tx.not_available, 11.0, Anchor::Middle, "#777"),
            }
            s.text(x + bar_w / 2.0, base + 16.0, r.kv_dtype.as_str(), 12.0, Anchor::Middle, "#222", false);
        }
    }
    s.finish()
}
