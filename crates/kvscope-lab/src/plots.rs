//! Charts: the state statistics over time and the causal chain sweep, both
//! drawn with [`crate::svg::line_chart`].

use crate::causal::SweepPoint;
use crate::figure_text::{self, fill};
use crate::lang::Lang;
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
    // One line of the subtitle per '\n': a single panel is too narrow for
    // a long one.
    let sub_lines: Vec<&str> = subtitle.lines().collect();
    let top = 46.0 + 14.0 * sub_lines.len() as f64;
    let n = panels.len().max(1) as f64;
    let mut svg = Svg::new(n * pw + (n - 1.0) * gap + 20.0, top + ph + 20.0);
    svg.text(20.0, 26.0, title, 17.0, Anchor::Start, "#111", true);
    for (i, line) in sub_lines.iter().enumerate() {
        svg.text(20.0, 44.0 + 14.0 * i as f64, line, 11.0, Anchor::Start, "#444", false);
    }
    for (i, (chart, series)) in panels.iter().enumerate() {
        line_chart(&mut svg, 10.0 + i as f64 * (pw + gap), top, pw, ph, chart, series);
    }
    svg.finish()
}

/// A row's value over time, piecewise constant, for the block and
/// occupancy panels: `during` a step (its `t_start..t`: the blocks it
/// computes with are allocated when it starts) and `between` steps (as the
/// step left them). Without the `during` half the first prefill step would
/// show the queue emptying into a pool that holds nothing.
fn over_steps(
    rows: &[kvscope_core::StepSnapshot],
    during: &dyn Fn(&kvscope_core::StepSnapshot, Option<&kvscope_core::StepSnapshot>) -> f64,
    between: &dyn Fn(&kvscope_core::StepSnapshot) -> f64,
) -> Vec<(f64, f64)> {
    let Some(first) = rows.first() else { return Vec::new() };
    let mut out = vec![(first.t, between(first))];
    for w in rows.windows(2) {
        let (prev, r) = (&w[0], &w[1]);
        if r.t_start > prev.t {
            out.push((prev.t, between(prev)));
        }
        out.push((r.t_start.max(prev.t), during(r, Some(prev))));
    }
    if let Some(last) = rows.last() {
        out.push((last.t, between(last)));
    }
    out
}

/// The state statistics over time: queues, pool blocks, and blocks held
/// vs token slots written, one panel each, x = engine-clock seconds. A
/// step in progress is drawn as its own state: the requests it computes
/// with are live, their blocks held, their new KV not yet written.
pub fn stats_svg(stats: &StatsCollector, case: &str, lang: Lang) -> String {
    let tx = figure_text::of(lang);
    let rows = &stats.rows;
    let (w, panel_h) = (1000.0, 250.0);
    let top = 56.0;
    let mut svg = Svg::new(w, top + 3.0 * panel_h + 10.0);
    svg.text(20.0, 26.0, &fill(tx.stats_title, &[&case]), 17.0, Anchor::Start, "#111", true);
    let total = rows.iter().map(|r| r.total_blocks).max().unwrap_or(0);
    let sub = fill(
        tx.stats_sub,
        &[
            &stats.step_rows().len(),
            &total,
            &stats.total_stalls(),
            &format!("{:.2}", stats.total_stall_seconds()),
            &stats.preemptions,
            &stats.evictions,
        ],
    );
    svg.text(20.0, 44.0, &sub, 11.0, Anchor::Start, "#444", false);
    let (x_min, x_max) = match (rows.first(), rows.last()) {
        (Some(a), Some(b)) if b.t > a.t => (Some(a.t.min(0.0)), Some(b.t)),
        _ => (None, None),
    };
    let counts =
        |series: Vec<(f64, usize)>| -> Vec<(f64, f64)> { series.into_iter().map(|(t, v)| (t, v as f64)).collect() };
    let chart = |title: &str, y_label: &str| Chart {
        title: title.into(),
        x_label: tx.t_engine.into(),
        y_label: y_label.into(),
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
        &chart(tx.stats_requests, tx.requests),
        &[
            Series::new(tx.waiting, ORANGE, counts(stats.series(|r| r.waiting, |r| r.waiting))).stepped(),
            Series::new(tx.holding, BLUE, counts(stats.series(|r| r.live, |r| r.running))).stepped(),
        ],
    );
    let same = |f: fn(&kvscope_core::StepSnapshot) -> f64| over_steps(rows, &|r, _| f(r), &f);
    line_chart(
        &mut svg,
        0.0,
        top + panel_h,
        w,
        panel_h,
        &Chart { y_max: (total > 0).then_some(total as f64 * 1.05), ..chart(tx.stats_blocks, tx.blocks) },
        &[
            Series::new(tx.used_blocks, BLUE, same(|r| r.used_blocks as f64)).stepped(),
            Series::new(tx.cached_free, PURPLE, same(|r| r.cached_free_blocks as f64)).stepped(),
            Series::new(tx.free_all, GREY, same(|r| r.free_blocks as f64)).stepped().dashed(),
        ],
    );
    // During a step its tokens are being written: the slots written are
    // still the previous step's.
    let written =
        over_steps(rows, &|r, prev| 100.0 * prev.map_or(r.token_occupancy(), |p| p.token_occupancy()), &|r| {
            100.0 * r.token_occupancy()
        });
    line_chart(
        &mut svg,
        0.0,
        top + 2.0 * panel_h,
        w,
        panel_h,
        &Chart { y_min: Some(0.0), y_max: Some(100.0), ..chart(tx.stats_occupancy, tx.pct_pool) },
        &[
            Series::new(tx.block_occ, BLUE, same(|r| 100.0 * r.block_occupancy())).stepped(),
            Series::new(tx.token_occ, GREEN, written).stepped(),
        ],
    );
    svg.finish()
}

/// The causal chain, one panel per link, x = prompt length in every panel,
/// ticked at the sweep's lengths: KV per request ⇒ live requests ⇒ queue
/// wait ⇒ TTFT. With the pool's size known, the live-requests panel shows
/// how many requests' KV the whole pool holds at each length: the ceiling
/// the measured live count runs into.
pub fn causal_chain_svg(points: &[SweepPoint], pool_bytes: Option<f64>, lang: Lang) -> String {
    let tx = figure_text::of(lang);
    let (pw, ph, gap) = (300.0, 300.0, 64.0);
    let top = 60.0;
    let width = 4.0 * pw + 3.0 * gap + 20.0;
    let mut svg = Svg::new(width, top + ph + 20.0);
    svg.text(20.0, 26.0, tx.causal_title, 17.0, Anchor::Start, "#111", true);
    svg.text(20.0, 44.0, &fill(tx.causal_sub, &[&points.len()]), 11.0, Anchor::Start, "#444", false);
    let xs = |f: &dyn Fn(&SweepPoint) -> f64| -> Vec<(f64, f64)> {
        points.iter().map(|p| (p.prompt_len as f64, f(p))).collect()
    };
    let chart = |title: &str, y_label: &str| Chart {
        title: title.into(),
        x_label: tx.prompt_len.into(),
        y_label: y_label.into(),
        x_ticks: points.iter().map(|p| p.prompt_len as f64).collect(),
        ..Default::default()
    };
    let mut live = vec![
        Series::new(tx.mean, GREEN, xs(&|p| p.live_mean)).dotted(),
        Series::new(tx.max, GREEN, xs(&|p| p.live_max as f64)).dotted().dashed(),
    ];
    let mut live_chart = chart(tx.live_requests, tx.requests);
    if let Some(pool) = pool_bytes.filter(|b| *b > 0.0) {
        let fits = xs(&|p| if p.kv_per_request > 0.0 { pool / p.kv_per_request } else { 0.0 });
        // The ceiling can be far above the measured counts at short
        // prompts: the axis stops at twice the largest count, and the
        // line is clipped there.
        let most = points.iter().map(|p| p.live_max as f64).fold(1.0, f64::max);
        live_chart.y_max = Some(fits.iter().map(|p| p.1).fold(most * 1.08, f64::max).min(2.0 * most));
        live.push(Series::new(tx.pool_line, GREY, fits).dashed());
    }
    let panels: Vec<(Chart, Vec<Series>)> = vec![
        (
            chart(tx.kv_per_req, "MiB"),
            vec![Series::new(tx.kv_largest, BLUE, xs(&|p| p.kv_per_request / (1024.0 * 1024.0))).dotted()],
        ),
        (live_chart, live),
        (
            chart(tx.queue_wait, tx.seconds),
            vec![
                Series::new("p50", ORANGE, xs(&|p| p.queue_wait_p50)).dotted(),
                Series::new("p90", ORANGE, xs(&|p| p.queue_wait_p90)).dotted().dashed(),
            ],
        ),
        (
            chart("TTFT", tx.seconds),
            vec![
                Series::new("p50", RED, xs(&|p| p.ttft_p50)).dotted(),
                Series::new("p90", RED, xs(&|p| p.ttft_p90)).dotted().dashed(),
                Series::new(tx.prefill_compute, GREY, xs(&|p| p.prefill_time_p50)).dashed(),
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
    use crate::figure_text::EN;
    use crate::lifecycle::tests::small_run;

    #[test]
    fn stats_chart() {
        let run = small_run(40);
        let svg = stats_svg(&run.stats, "test_case", Lang::En);
        crate::svg::assert_wellformed(&svg);
        assert!(svg.contains("token slots written"));
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
        let svg = causal_chain_svg(&pts, Some(64.0 * 1024.0 * 1024.0), Lang::En);
        crate::svg::assert_wellformed(&svg);
        assert_eq!(svg.matches("⇒").count(), 3);
        // Every panel is ticked at the swept lengths, and only there.
        for l in [32, 64, 128, 256] {
            assert_eq!(svg.matches(&format!(">{l}</text>")).count(), 4, "ticks at {l}");
        }
        assert!(!svg.contains(">50</text>") && !svg.contains(">100</text>"), "round ticks left over");
        assert!(svg.contains(EN.pool_line));
    }
}
