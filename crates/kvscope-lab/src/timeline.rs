//! Per-request timelines (Gantt-like), rebuilt from the event stream: queue
//! wait, prefill, decode, preemption gaps and recompute, with the blocks each
//! request held over time drawn as a step line across its row.

use crate::figure_text::{self, fill};
use crate::lang::Lang;
use crate::svg::{x_axis, Anchor, Scale, Svg};
use kvscope_core::replay::{Phase, Replay};
use kvscope_core::{EventRecord, KvEvent, RequestId};
use kvscope_experiment::driver::CaseRun;
use std::collections::BTreeMap;

/// The phases a row draws, in the legend's order; a finished request's row
/// ends.
const DRAWN: [Phase; 5] = [Phase::Queued, Phase::Prefill, Phase::Decode, Phase::Preempted, Phase::Recompute];

fn color(phase: Phase) -> &'static str {
    match phase {
        Phase::Queued => "#f2b24c",
        Phase::Prefill => "#4a86d8",
        Phase::Decode => "#52b05e",
        Phase::Preempted => "#d9534f",
        Phase::Recompute => "#9b6fd6",
        Phase::Finished => "#ffffff",
    }
}

fn label(phase: Phase, lang: Lang) -> &'static str {
    let tx = figure_text::of(lang);
    match phase {
        Phase::Queued => tx.phase_queued,
        Phase::Prefill => tx.phase_prefill,
        Phase::Decode => tx.phase_decode,
        Phase::Preempted => tx.phase_preempted,
        Phase::Recompute => tx.phase_recompute,
        Phase::Finished => "",
    }
}

/// One request's life as segments and its block count over time.
#[derive(Clone, Debug, Default)]
pub struct RequestTimeline {
    pub segments: Vec<(f64, f64, Option<Phase>)>,
    /// (t, blocks held from t on).
    pub blocks: Vec<(f64, usize)>,
    pub end: Option<f64>,
}

/// Every request's timeline, read from the event stream's one per-request
/// tracker ([`Replay`]): a segment per phase, a point per change of the
/// blocks held.
pub fn request_timelines(events: &[EventRecord]) -> BTreeMap<RequestId, RequestTimeline> {
    let mut out: BTreeMap<RequestId, RequestTimeline> = BTreeMap::new();
    let mut replay = Replay::default();
    for e in events {
        let Some(id) = e.event.request_id() else {
            // Evictions change no request; the tracker checks them.
            let _ = replay.apply(e);
            continue;
        };
        let before = replay.phase.get(&id).copied();
        // A stream that contradicts itself is still drawn as far as it goes.
        let _ = replay.apply(e);
        let tl = out.entry(id).or_default();
        let after = replay.phase.get(&id).copied();
        if after != before {
            if let Some((p, t0)) = before.filter(|(p, _)| DRAWN.contains(p)) {
                tl.segments.push((t0, e.t, Some(p)));
            }
        }
        if let KvEvent::Arrived { .. }
        | KvEvent::Admitted { .. }
        | KvEvent::BlockAppended { .. }
        | KvEvent::Released { .. } = e.event
        {
            tl.blocks.push((e.t, replay.blocks_of(id).len()));
        }
        if let KvEvent::Finished { .. } = e.event {
            tl.end = Some(e.t);
        }
    }
    // Anything still open ends at the last event.
    let t_end = events.last().map_or(0.0, |e| e.t);
    for (id, tl) in out.iter_mut() {
        if let Some(&(p, t0)) = replay.phase.get(id).filter(|(p, _)| DRAWN.contains(p)) {
            tl.segments.push((t0, t_end, Some(p)));
        }
    }
    out
}

/// The timeline picture of the first `max_requests` requests (by id).
pub fn timeline_svg(run: &CaseRun, max_requests: usize, lang: Lang) -> String {
    let tx = figure_text::of(lang);
    let all = request_timelines(&run.events);
    let shown: Vec<(&RequestId, &RequestTimeline)> = all.iter().take(max_requests).collect();
    let t_max =
        shown.iter().flat_map(|(_, tl)| tl.segments.iter().map(|s| s.1).chain(tl.end)).fold(0.0, f64::max).max(1e-6);
    let max_blocks = shown.iter().flat_map(|(_, tl)| tl.blocks.iter().map(|b| b.1)).max().unwrap_or(0).max(1);
    let used: Vec<Phase> =
        DRAWN.into_iter().filter(|p| shown.iter().any(|(_, tl)| tl.segments.iter().any(|s| s.2 == Some(*p)))).collect();

    let (left, right_pad) = (80.0, 90.0);
    let width = 1100.0;
    let row_h = 26.0;
    let bar_h = 20.0;
    let legend_top = 48.0;
    let legend_rows = (used.len() + 1).div_ceil(3);
    let top = legend_top + legend_rows as f64 * 18.0 + 14.0;
    let height = top + shown.len() as f64 * row_h + 60.0;
    let mut svg = Svg::new(width, height);
    svg.text(20.0, 24.0, &fill(tx.timeline_title, &[&run.spec.name]), 16.0, Anchor::Start, "#111", true);
    let note = fill(tx.timeline_note, &[&run.spec.name, &shown.len(), &all.len(), &max_blocks]);
    svg.text(20.0, 40.0, &note, 11.0, Anchor::Start, "#444", false);
    // Legend.
    for (i, p) in used.iter().enumerate() {
        let (lx, ly) = (20.0 + (i % 3) as f64 * 340.0, legend_top + (i / 3) as f64 * 18.0);
        svg.rect(lx, ly, 18.0, 11.0, color(*p), None, 2.0);
        svg.text(lx + 24.0, ly + 10.0, label(*p, lang), 11.0, Anchor::Start, "#222", false);
    }
    let i = used.len();
    let (lx, ly) = (20.0 + (i % 3) as f64 * 340.0, legend_top + (i / 3) as f64 * 18.0);
    svg.line(lx, ly + 6.0, lx + 18.0, ly + 6.0, "#111", 1.5, None);
    svg.text(lx + 24.0, ly + 10.0, tx.blocks_held_line, 11.0, Anchor::Start, "#222", false);

    let sx = Scale { d0: 0.0, d1: t_max, p0: left, p1: width - right_pad };
    let bottom = top + shown.len() as f64 * row_h + 4.0;
    // Grid first so bars sit on top.
    x_axis(&mut svg, sx, bottom, tx.time_engine, Some(top - 4.0));
    for (row, (id, tl)) in shown.iter().enumerate() {
        let y = top + row as f64 * row_h;
        svg.text(left - 8.0, y + bar_h / 2.0 + 5.0, &fill(tx.req, &[id]), 11.0, Anchor::End, "#222", false);
        for &(t0, t1, p) in &tl.segments {
            let Some(p) = p else { continue };
            let (x0, x1) = (sx.map(t0), sx.map(t1));
            let tip = format!("{} {}: {:.4}s → {:.4}s", fill(tx.req, &[id]), label(p, lang), t0, t1);
            svg.rect_titled(x0, y, (x1 - x0).max(1.0), bar_h, color(p), &tip);
        }
        // Blocks held: a step line across the bar.
        let map_b = |b: usize| y + bar_h - 1.0 - (b as f64 / max_blocks as f64) * (bar_h - 2.0);
        let mut pts: Vec<(f64, f64)> = Vec::new();
        for &(t, b) in &tl.blocks {
            let x = sx.map(t);
            if let Some(&(_, py)) = pts.last() {
                pts.push((x, py));
            }
            pts.push((x, map_b(b)));
        }
        if let Some(&(_, py)) = pts.last() {
            let end = tl.end.map_or(sx.p1, |t| sx.map(t));
            if pts.last().map(|p| p.0).unwrap_or(end) < end {
                pts.push((end, py));
            }
        }
        svg.polyline(&pts, "#111", 1.3, None);
        let peak = tl.blocks.iter().map(|b| b.1).max().unwrap_or(0);
        svg.text(
            width - right_pad + 6.0,
            y + bar_h / 2.0 + 4.0,
            &fill(tx.peak_blocks, &[&peak]),
            10.0,
            Anchor::Start,
            "#444",
            false,
        );
    }
    svg.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::tests::small_run;

    #[test]
    fn timelines_follow_the_events() {
        let run = small_run(40);
        let tls = request_timelines(&run.events);
        assert_eq!(tls.len(), 12);
        for r in &run.requests {
            let tl = &tls[&r.request_id];
            let queued: f64 = tl.segments.iter().filter(|s| s.2 == Some(Phase::Queued)).map(|s| s.1 - s.0).sum();
            assert!((queued - r.queue_wait).abs() < 1e-9, "queue wait {} vs {}", queued, r.queue_wait);
            let gaps = tl.segments.iter().filter(|s| s.2 == Some(Phase::Preempted)).count();
            assert_eq!(gaps as u32, r.preemptions);
            let peak = tl.blocks.iter().map(|b| b.1).max().unwrap_or(0);
            assert_eq!(peak, r.peak_blocks);
            assert_eq!(tl.blocks.last().map(|b| b.1), Some(0), "all blocks released at the end");
        }
        let svg = timeline_svg(&run, 8, Lang::En);
        crate::svg::assert_wellformed(&svg);
        assert!(svg.contains("req 7") && !svg.contains("req 8<"));
    }
}
