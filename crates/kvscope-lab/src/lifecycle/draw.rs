//! The state machine as a self-contained SVG (`lifecycle.svg`): one box per
//! state, left to right, one arrow per transition the events took, each
//! labelled with its count, details and code sites.

use super::{LifecycleGraph, State, Transition};
use crate::figure_text::{self, fill, lifecycle_phrase, FigureText};
use crate::report::Lang;
use crate::svg::{Anchor, Svg};

/// The state's name and what it means for KV, in the figure's language.
fn state_text(s: State, tx: &FigureText) -> (&'static str, &'static str) {
    match s {
        State::Start => ("", ""),
        State::Waiting => (tx.state_waiting, tx.note_waiting),
        State::Prefill => (tx.state_prefill, tx.note_prefill),
        State::Decode => (tx.state_decode, tx.note_decode),
        State::Finished => (tx.state_finished, tx.note_finished),
    }
}

/// The state's column, left to right in the order a request goes through.
fn column(s: State) -> usize {
    match s {
        State::Start => 0,
        State::Waiting => 1,
        State::Prefill => 2,
        State::Decode => 3,
        State::Finished => 4,
    }
}

impl LifecycleGraph {
    /// A self-contained SVG of the state machine, states left to right.
    pub fn to_svg(&self, lang: Lang) -> String {
        let tx = figure_text::of(lang);
        let (bw, bh) = (170.0, 64.0);
        let col_x = |c: usize| 70.0 + (c as f64 - 1.0) * 410.0 + 80.0;
        // Room above the boxes for the tallest stack of labels.
        let lines = |ts: &[&Transition]| ts.iter().map(|t| 1 + t.details.len() + t.sites.len()).sum::<usize>() as f64;
        let loop_need = [State::Waiting, State::Prefill, State::Decode]
            .iter()
            .map(|s| lines(&self.between(*s, *s)) * 14.0 + 62.0)
            .fold(0.0, f64::max);
        let fwd_need = [
            (State::Start, State::Waiting),
            (State::Waiting, State::Prefill),
            (State::Prefill, State::Decode),
            (State::Decode, State::Finished),
        ]
        .iter()
        .map(|(a, b)| lines(&self.between(*a, *b)) * 14.0 + 4.0)
        .fold(0.0, f64::max);
        let box_y = 70.0 + f64::max(loop_need, fwd_need);
        let cy = box_y + bh / 2.0;
        let width = col_x(4) + bw + 60.0;
        let lower: Vec<&Transition> =
            self.transitions.iter().filter(|t| t.from != t.to && column(t.to) <= column(t.from)).collect();
        let skips: Vec<&Transition> =
            self.transitions.iter().filter(|t| t.from != State::Start && column(t.to) > column(t.from) + 1).collect();
        // Group arcs below the boxes by (from, to): each group gets a depth.
        let mut arcs: Vec<(State, State)> = Vec::new();
        for t in lower.iter().chain(skips.iter()) {
            if !arcs.contains(&(t.from, t.to)) {
                arcs.push((t.from, t.to));
            }
        }
        arcs.sort_by_key(|&(f, t)| (column(f) as i64 - column(t) as i64).abs());
        let depth_step = 110.0;
        let arc_lines = arcs.iter().map(|(a, b)| lines(&self.between(*a, *b))).fold(0.0, f64::max);
        let height = (box_y + bh + 40.0 + depth_step * arcs.len().saturating_sub(1) as f64 + 30.0 + arc_lines * 14.0)
            .max(box_y + bh + 110.0 + 14.0 * self.evicted_sites.len() as f64);
        let mut svg = Svg::new(width, height);
        svg.text(20.0, 28.0, tx.lifecycle_title, 18.0, Anchor::Start, "#111", true);
        let run = if self.run_name.is_empty() { String::new() } else { fill(tx.of_run, &[&self.run_name]) };
        let legend = fill(tx.lifecycle_legend, &[&self.num_events, &run, &self.num_requests]);
        svg.text(20.0, 50.0, &legend, 12.0, Anchor::Start, "#444", false);

        let colors = |s: State| match s {
            State::Waiting => "#fde9c9",
            State::Prefill => "#cfe3fb",
            State::Decode => "#d4f0d4",
            State::Finished => "#e4e4e4",
            State::Start => "#fff",
        };
        for s in [State::Waiting, State::Prefill, State::Decode, State::Finished] {
            let x = col_x(column(s));
            svg.raw(&format!(r#"<g class="state" data-state="{}">"#, s.name()));
            svg.rect(x, box_y, bw, bh, colors(s), Some("#555"), 10.0);
            let (name, note) = state_text(s, tx);
            svg.text(x + bw / 2.0, box_y + 27.0, name, 17.0, Anchor::Middle, "#111", true);
            svg.text(x + bw / 2.0, box_y + 47.0, note, 11.0, Anchor::Middle, "#333", false);
            svg.raw("</g>");
        }
        let edge = "#444";
        // Start dot and arrival.
        let start_x = col_x(1) - 110.0;
        svg.circle(start_x, cy, 8.0, "#111");
        let arrivals = self.between(State::Start, State::Waiting);
        if !arrivals.is_empty() {
            open_edge(&mut svg, State::Start, State::Waiting);
            svg.arrow(start_x + 9.0, cy, col_x(1) - 2.0, cy, edge, 1.6);
            draw_label(&mut svg, (start_x + col_x(1)) / 2.0 - 8.0, cy - 12.0, &arrivals, Anchor::Middle, true, lang);
            svg.raw("</g>");
        }
        // Self loops above the boxes, labels stacked above the loop.
        for s in [State::Waiting, State::Prefill, State::Decode] {
            let ts = self.between(s, s);
            if ts.is_empty() {
                continue;
            }
            let x = col_x(column(s));
            let (x1, x2) = (x + bw * 0.3, x + bw * 0.7);
            let top = box_y - 55.0;
            open_edge(&mut svg, s, s);
            svg.path(
                &format!("M{x1},{box_y} C{},{top} {},{top} {x2},{}", x1 - 30.0, x2 + 30.0, box_y - 2.0),
                edge,
                1.6,
                true,
                None,
            );
            draw_label(&mut svg, x + bw / 2.0, top - 6.0, &ts, Anchor::Middle, true, lang);
            svg.raw("</g>");
        }
        // Forward neighbours: straight arrows, labels above.
        for (a, b) in
            [(State::Waiting, State::Prefill), (State::Prefill, State::Decode), (State::Decode, State::Finished)]
        {
            let ts = self.between(a, b);
            if ts.is_empty() {
                continue;
            }
            let (x1, x2) = (col_x(column(a)) + bw, col_x(column(b)));
            open_edge(&mut svg, a, b);
            svg.arrow(x1 + 2.0, cy, x2 - 2.0, cy, edge, 1.6);
            draw_label(&mut svg, (x1 + x2) / 2.0, cy - 12.0, &ts, Anchor::Middle, true, lang);
            svg.raw("</g>");
        }
        // Backward and skipping arcs below the boxes.
        for (i, &(a, b)) in arcs.iter().enumerate() {
            let ts = self.between(a, b);
            let depth = box_y + bh + 40.0 + depth_step * i as f64;
            let xa = col_x(column(a)) + bw * if column(b) < column(a) { 0.35 } else { 0.65 };
            let xb = col_x(column(b)) + bw * if column(b) < column(a) { 0.65 } else { 0.35 };
            let by = box_y + bh;
            let color = if ts.iter().any(|t| t.name == "preempted") { "#b03030" } else { edge };
            open_edge(&mut svg, a, b);
            svg.path(&format!("M{xa},{by} C{xa},{depth} {xb},{depth} {xb},{}", by + 2.0), color, 1.6, true, None);
            let mid = (xa + xb) / 2.0;
            let apex = by + (depth - by) * 0.75;
            draw_label(&mut svg, mid, apex + 16.0, &ts, Anchor::Middle, false, lang);
            svg.raw("</g>");
        }
        // Block side.
        let fx = col_x(4);
        let note_y = box_y + bh + 30.0;
        let ev_sites: Vec<&str> = self.evicted_sites.iter().map(String::as_str).collect();
        svg.text(fx + bw / 2.0, note_y, tx.block_side, 12.0, Anchor::Middle, "#555", true);
        svg.text(
            fx + bw / 2.0,
            note_y + 16.0,
            &fill(tx.kept_cached, &[&self.released_cached_blocks]),
            11.0,
            Anchor::Middle,
            "#333",
            false,
        );
        svg.text(
            fx + bw / 2.0,
            note_y + 31.0,
            &fill(tx.evicted, &[&self.evicted_blocks]),
            11.0,
            Anchor::Middle,
            "#333",
            false,
        );
        for (i, site) in ev_sites.iter().enumerate() {
            svg.text(
                fx + bw / 2.0,
                note_y + 46.0 + 14.0 * i as f64,
                &format!("@ {site}"),
                11.0,
                Anchor::Middle,
                "#1f5f9f",
                false,
            );
        }
        svg.finish()
    }
}

/// Opens the group that holds one arrow and its label (closed with
/// `</g>`): the states it joins are named on the group, so a reader of the
/// SVG, or a test, can tell which count belongs to which arrow.
fn open_edge(svg: &mut Svg, from: State, to: State) {
    svg.raw(&edge_tag(from, to));
}

fn edge_tag(from: State, to: State) -> String {
    format!(r#"<g class="transition" data-from="{}" data-to="{}">"#, from.name(), to.name())
}

/// Label block: for each transition, "name ×count" in bold, its details,
/// then "@ site" lines. Lines stack upward from `y` when `upward`.
fn draw_label(svg: &mut Svg, x: f64, y: f64, ts: &[&Transition], anchor: Anchor, upward: bool, lang: Lang) {
    let mut lines: Vec<(String, bool)> = Vec::new();
    for t in ts {
        lines.push((format!("{} ×{}", lifecycle_phrase(&t.name, lang), t.count), true));
        for d in &t.details {
            lines.push((lifecycle_phrase(d, lang), false));
        }
        for s in &t.sites {
            lines.push((format!("@ {s}"), false));
        }
    }
    let lh = 14.0;
    let n = lines.len() as f64;
    let y0 = if upward { y - (n - 1.0) * lh } else { y };
    for (i, (text, bold)) in lines.iter().enumerate() {
        let yy = y0 + i as f64 * lh;
        if *bold {
            svg.label_bold(x, yy, text, 12.5, anchor, "#111");
        } else {
            svg.label(x, yy, text, 11.0, anchor, if text.starts_with('@') { "#1f5f9f" } else { "#333" });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::small_run;
    use super::*;
    use crate::svg::assert_wellformed;
    use std::collections::BTreeSet;

    /// The content of the first group opened by `tag`, up to its `</g>`
    /// (groups here do not nest).
    fn group<'a>(svg: &'a str, tag: &str) -> Option<&'a str> {
        let start = svg.find(tag)? + tag.len();
        let end = svg[start..].find("</g>")? + start;
        Some(&svg[start..end])
    }

    #[test]
    fn every_state_and_transition_the_events_took_is_drawn_with_its_count() {
        // 40 blocks of 4 for 12 requests: stalls and preemptions happen.
        let run = small_run(40);
        let g = LifecycleGraph::from_run(&run);
        let svg = g.to_svg(Lang::En);
        assert_wellformed(&svg);
        let reached: BTreeSet<State> = g.transitions.iter().map(|t| t.to).collect();
        assert_eq!(reached.len(), 4, "the run reaches every state: {reached:?}");
        for s in reached {
            let node = group(&svg, &format!(r#"<g class="state" data-state="{}">"#, s.name()))
                .unwrap_or_else(|| panic!("no node for {}", s.name()));
            assert!(node.contains("<rect") && node.contains(&format!(">{}</text>", s.name())), "{node}");
        }
        for t in &g.transitions {
            let edge = group(&svg, &edge_tag(t.from, t.to))
                .unwrap_or_else(|| panic!("no arrow for {} ({} → {})", t.name, t.from.name(), t.to.name()));
            assert!(edge.contains("marker-end="), "{} → {} has no arrowhead", t.from.name(), t.to.name());
            assert!(
                edge.contains(&format!(">{} ×{}</text>", t.name, t.count)),
                "{} ×{} missing:\n{edge}",
                t.name,
                t.count
            );
        }
        let pairs: BTreeSet<(State, State)> = g.transitions.iter().map(|t| (t.from, t.to)).collect();
        assert_eq!(svg.matches(r#"<g class="transition""#).count(), pairs.len(), "one arrow per pair of states");
        // The counts are the event stream's, not the builder's own say-so.
        let arrived = run.events.iter().filter(|e| e.event.kind() == "arrived").count();
        let arrival = group(&svg, &edge_tag(State::Start, State::Waiting)).unwrap();
        assert!(arrival.contains(&format!(">arrived ×{arrived}</text>")), "{arrival}");
        let preempted = run.events.iter().filter(|e| e.event.kind() == "preempted").count();
        assert!(preempted > 0);
        let drawn: u64 = g.transitions.iter().filter(|t| t.name == "preempted").map(|t| t.count).sum();
        assert_eq!(drawn, preempted as u64);
    }

    #[test]
    fn a_transition_the_events_never_took_is_not_drawn() {
        // A pool that holds all 12 requests at once: nobody is preempted.
        let g = LifecycleGraph::from_run(&small_run(400));
        assert_eq!(g.count("preempted"), 0);
        let svg = g.to_svg(Lang::En);
        assert_wellformed(&svg);
        for from in [State::Prefill, State::Decode] {
            assert!(group(&svg, &edge_tag(from, State::Waiting)).is_none(), "{} → Waiting drawn", from.name());
        }
        assert!(!svg.contains("preempted"), "a preemption label without preemptions");
        assert!(group(&svg, &edge_tag(State::Decode, State::Finished)).is_some());
    }
}
