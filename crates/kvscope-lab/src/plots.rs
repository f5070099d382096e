//! Charts: the state statistics over time and the causal chain sweep, both
//! drawn with [`crate::svg::line_chart`].

use crate::causal::SweepPoint;
use crate::svg::{line_chart, Anchor, Chart, Series, Svg};
use kvscope_core::stats::StatsCollector;

const BLUE: &str = "#2f6fbf";
const ORANGE: &str = "#e08a1e";
const GREEN: &str = "#3a9a48";
const GREY: &str = "#8a8a8a";
const RED: &str = "#c0392b";
const PURPLE: &str = "#7d4fc0";
/// One colour per series of a multi-case chart, in order.
pub const PALETTE: [&str; 6] = [BLUE, ORANGE, GREEN, RED, PURPLE, GREY];

/// Panels side by side under one title: the knob sweeps' and the failure
/// conditions' figures.
pub fn panel_row_svg(title: &str, subtitle: &str, panels: &[(Chart, Vec<Series>)]) -> String {
    let pw = if panels.len() == 1 { 640.0 } else { 320.0 };
    let (ph, gap) = (300.0, 30.0);
    let top = 60.0;
    let n = panels.len().max(1) as f64;
    let mut svg = Svg::new(n * pw + (n - 1.0) * gap + 20.0, top + ph + 20.0);
    svg.text(20.0, 26.0, title, 17.0, Anchor::Start, "#111", true);
    svg.text(20.0, 44.0, subtitle, 11.0, Anchor::Start, "#444", false);
    for (i, (chart, series)) in panels.iter().enumerate() {
        line_chart(&mut svg, 10.0 + i as f64 * (pw + gap), top, pw, ph, chart, series);
    }
    svg.finish()
}

/// The state statistics over time: queues, pool blocks, and block- vs
/// token-level occupancy, one panel each, x = engine-clock seconds.
pub fn stats_svg(stats: &StatsCollector, title: &str) -> String {
    let rows = &stats.rows;
    let (w, panel_h) = (1000.0, 250.0);
    let top = 56.0;
    let mut svg = Svg::new(w, top + 3.0 * panel_h + 10.0);
    svg.text(20.0, 26.0, title, 17.0, Anchor::Start, "#111", true);
    let total = rows.iter().map(|r| r.total_blocks).max().unwrap_or(0);
    let sub = format!(
        "{} engine steps (from t = 0, the queue before the first), pool of {} blocks; {} stalled steps ({:.2} s), {} preemptions, {} evictions",
        stats.step_rows().len(),
        total,
        stats.total_stalls(),
        stats.total_stall_seconds(),
        stats.preemptions,
        stats.evictions
    );
    svg.text(20.0, 44.0, &sub, 11.0, Anchor::Start, "#444", false);
    let pts = |f: &dyn Fn(&kvscope_core::StepSnapshot) -> f64| -> Vec<(f64, f64)> {
        rows.iter().map(|r| (r.t, f(r))).collect()
    };
    let x_label = "t (s, engine clock)";
    let (x_min, x_max) = match (rows.first(), rows.last()) {
        (Some(a), Some(b)) if b.t > a.t => (Some(a.t.min(0.0)), Some(b.t)),
        _ => (None, None),
    };
    // A step shows the requests it computed with, from its start to its
    // end: a long prefill's request is live while the prefill runs.
    let counts =
        |series: Vec<(f64, usize)>| -> Vec<(f64, f64)> { series.into_iter().map(|(t, v)| (t, v as f64)).collect() };
    let c1 = Chart {
        title: "Requests: waiting vs live (holding KV, admission step to release step)".into(),
        x_label: x_label.into(),
        y_label: "requests".into(),
        x_min,
        x_max,
        ..Default::default()
    };
    line_chart(
        &mut svg,
        0.0,
        top,
        w,
        panel_h,
        &c1,
        &[
            Series::new("waiting", ORANGE, counts(stats.series(|r| r.waiting, |r| r.waiting))).stepped(),
            Series::new("live", BLUE, counts(stats.live_series())).stepped(),
        ],
    );
    let c2 = Chart {
        title: "KV pool blocks (as each step left them)".into(),
        x_label: x_label.into(),
        y_label: "blocks".into(),
        y_max: (total > 0).then_some(total as f64 * 1.05),
        x_min,
        x_max,
        ..Default::default()
    };
    line_chart(
        &mut svg,
        0.0,
        top + panel_h,
        w,
        panel_h,
        &c2,
        &[
            Series::new("used (held by requests)", BLUE, pts(&|r| r.used_blocks as f64)).stepped(),
            Series::new("free, cached prefix (evictable)", PURPLE, pts(&|r| r.cached_free_blocks as f64)).stepped(),
            Series::new("free (all)", GREY, pts(&|r| r.free_blocks as f64)).stepped().dashed(),
        ],
    );
    let c3 = Chart {
        title: "Occupancy as each step left it: block level vs token level (gap = unfilled tail slots)".into(),
        x_label: x_label.into(),
        y_label: "% of pool".into(),
        y_min: Some(0.0),
        y_max: Some(100.0),
        x_min,
        x_max,
    };
    line_chart(
        &mut svg,
        0.0,
        top + 2.0 * panel_h,
        w,
        panel_h,
        &c3,
        &[
            Series::new("block occupancy", BLUE, pts(&|r| 100.0 * r.block_occupancy())).stepped(),
            Series::new("token occupancy", GREEN, pts(&|r| 100.0 * r.token_occupancy())).stepped(),
        ],
    );
    svg.finish()
}

/// The causal chain, one panel per link, x = prompt length in every panel:
/// KV per request ⇒ live requests ⇒ queue wait ⇒ TTFT.
pub fn causal_chain_svg(points: &[SweepPoint], title: &str) -> String {
    let (pw, ph, gap) = (300.0, 300.0, 64.0);
    let top = 60.0;
    let width = 4.0 * pw + 3.0 * gap + 20.0;
    let mut svg = Svg::new(width, top + ph + 20.0);
    svg.text(20.0, 26.0, title, 17.0, Anchor::Start, "#111", true);
    svg.text(
        20.0,
        44.0,
        &format!(
            "{} sweep points at a fixed pool and offered load; x = prompt length (tokens) in every panel",
            points.len()
        ),
        11.0,
        Anchor::Start,
        "#444",
        false,
    );
    let xs = |f: &dyn Fn(&SweepPoint) -> f64| -> Vec<(f64, f64)> {
        points.iter().map(|p| (p.prompt_len as f64, f(p))).collect()
    };
    let x_label = "prompt length (tokens)";
    let panels: Vec<(Chart, Vec<Series>)> = vec![
        (
            Chart {
                title: "KV per request".into(),
                x_label: x_label.into(),
                y_label: "MiB".into(),
                ..Default::default()
            },
            vec![Series::new("KV at its largest", BLUE, xs(&|p| p.kv_per_request / (1024.0 * 1024.0))).dotted()],
        ),
        (
            Chart {
                title: "Live requests".into(),
                x_label: x_label.into(),
                y_label: "requests".into(),
                ..Default::default()
            },
            vec![
                Series::new("mean", GREEN, xs(&|p| p.live_mean)).dotted(),
                Series::new("max", GREEN, xs(&|p| p.live_max as f64)).dotted().dashed(),
            ],
        ),
        (
            Chart {
                title: "Queue wait".into(),
                x_label: x_label.into(),
                y_label: "seconds".into(),
                ..Default::default()
            },
            vec![
                Series::new("p50", ORANGE, xs(&|p| p.queue_wait_p50)).dotted(),
                Series::new("p90", ORANGE, xs(&|p| p.queue_wait_p90)).dotted().dashed(),
            ],
        ),
        (
            Chart { title: "TTFT".into(), x_label: x_label.into(), y_label: "seconds".into(), ..Default::default() },
            vec![
                Series::new("p50", RED, xs(&|p| p.ttft_p50)).dotted(),
                Series::new("p90", RED, xs(&|p| p.ttft_p90)).dotted().dashed(),
                Series::new("prefill p50 (compute)", GREY, xs(&|p| p.prefill_time_p50)).dashed(),
            ],
        ),
    ];
    for (i, (chart, series)) in panels.iter().enumerate() {
        let x = 10.0 + i as f64 * (pw + gap);
        line_chart(&mut svg, x, top, pw, ph, chart, series);
        if i + 1 < panels.len() {
            let cx = x + pw + gap / 2.0 - 8.0;
            svg.text(cx, top + ph / 2.0, "⇒", 30.0, Anchor::Middle, "#555", true);
        }
    }
    svg.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::tests::small_run;

    #[test]
    fn stats_chart() {
        let run = small_run(40);
        let svg = stats_svg(&run.stats, "State statistics: test_case");
        crate::svg::assert_wellformed(&svg);
        assert!(svg.contains("token occupancy"));
    }

    #[test]
    fn causal_chart() {
        let pts: Vec<SweepPoint> = [32usize, 64, 128, 256]
            .iter()
            .enumerate()
            .map(|(i, &l)| SweepPoint {
                prompt_len: l,
                kv_per_request: l as f64 * 24576.0,
                live_mean: 16.0 / (i + 1) as f64,
                live_max: 16 / (i + 1),
                stalls_no_free_blocks: i as u64,
                stalls_max_running: 0,
                stalls_token_budget: 0,
                preemptions: 0,
                queue_wait_p50: 0.1 * i as f64,
                queue_wait_p90: 0.2 * i as f64,
                ttft_p50: 0.1 * i as f64 + 0.01 * l as f64 / 32.0,
                ttft_p90: 0.2 * i as f64 + 0.02 * l as f64 / 32.0,
                prefill_time_p50: 0.01 * l as f64 / 32.0,
            })
            .collect();
        let svg = causal_chain_svg(&pts, "Causal chain: context length ⇒ TTFT");
        crate::svg::assert_wellformed(&svg);
        assert_eq!(svg.matches("⇒").count(), 4);
    }
}
