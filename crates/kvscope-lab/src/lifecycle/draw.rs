//! The state machine as a self-contained SVG (`lifecycle.svg`): one box per
//! state, stacked top to bottom in the order a request goes through them,
//! one arrow per transition the events took, each labelled with its count,
//! details and code sites. Forward arrows run down the middle with their
//! labels to the right, self-loops sit on the boxes' right with their labels
//! beside them, and the preemption → recompute path runs up the left.
//!
//! Sized for print: the text is at least 9 points (9.5 here) when the figure
//! is scaled to an A4 page's text width ([`A4_TEXT_PT`]), so the width and
//! the font sizes are fixed together and long labels wrap.

use super::{LifecycleGraph, State, Transition};
use crate::figure_text::{self, fill, lifecycle_phrase, FigureText};
use crate::lang::Lang;
use crate::svg::{text_width, Anchor, Svg};

/// An A4 page's text width (170 mm) in points.
pub const A4_TEXT_PT: f64 = 482.0;

/// The figure's width in user units.
const WIDTH: f64 = 1000.0;
/// Body text: 9.5 pt at A4 text width.
const F: f64 = 9.5 * WIDTH / A4_TEXT_PT;
/// Bold transition names.
const FB: f64 = F * 1.05;
/// State names and the title.
const FS: f64 = F * 1.25;
/// Line height.
const LH: f64 = F * 1.3;
/// The boxes: left edge, width, height.
const BOX_X: f64 = 370.0;
const BW: f64 = 290.0;
const BH: f64 = 80.0;
const CX: f64 = BOX_X + BW / 2.0;
/// The left lane's labels (preemption → recompute) start here, up to [`LEFT_W`].
const LEFT_X: f64 = 16.0;
const LEFT_W: f64 = 270.0;
/// Self-loop labels (and the notes beside a box) start here.
const LOOP_X: f64 = BOX_X + BW + 50.0;
/// Labels of the forward arrows start right of the middle arrow.
const FWD_X: f64 = CX + 16.0;
const PREEMPT: &str = "#b03030";

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

/// One line of a label: text, bold, colour.
type Line = (String, bool, &'static str);

/// `text` broken into lines no wider than `max` at `size`: after ", " or
/// "；", else at a space, else after "::" (code sites); a word wider than
/// `max` stays whole.
fn wrap(text: &str, size: f64, max: f64) -> Vec<String> {
    if text_width(text, size) <= max {
        return vec![text.to_string()];
    }
    // Break points: byte offsets just after a separator.
    let mut breaks: Vec<usize> = Vec::new();
    for sep in [", ", "；", "，", "：", " ", "::"] {
        breaks.extend(text.match_indices(sep).map(|(i, m)| i + m.len()));
    }
    breaks.sort_unstable();
    breaks.dedup();
    // The last break that keeps the first line within `max`.
    let cut = breaks.iter().copied().filter(|&b| text_width(text[..b].trim_end(), size) <= max).max();
    match cut {
        Some(b) if b < text.len() => {
            let mut out = vec![text[..b].trim_end().to_string()];
            out.extend(wrap(&format!("  {}", text[b..].trim_start()), size, max));
            out
        }
        _ => vec![text.to_string()],
    }
}

/// The label lines of some transitions: "name ×count" in bold, its details,
/// then "@ site" lines, each wrapped to `max`.
fn label_lines(ts: &[&Transition], lang: Lang, max: f64) -> Vec<Line> {
    let mut lines: Vec<Line> = Vec::new();
    for t in ts {
        let name = format!("{} ×{}", lifecycle_phrase(&t.name, lang), t.count);
        let color = if t.name == "preempted" { PREEMPT } else { "#111" };
        lines.extend(wrap(&name, FB, max).into_iter().map(|l| (l, true, color)));
        for d in &t.details {
            lines.extend(wrap(&lifecycle_phrase(d, lang), F, max).into_iter().map(|l| (l, false, "#333")));
        }
        for s in &t.sites {
            lines.extend(site_lines(s, max));
        }
    }
    lines
}

/// "@ site", wrapped: a continuation reads "@ …rest", still a site.
fn site_lines(site: &str, max: f64) -> Vec<Line> {
    let parts = wrap(&format!("@ {site}"), F, max).into_iter().enumerate();
    parts.map(|(i, l)| (if i == 0 { l } else { format!("@ …{}", l.trim_start()) }, false, "#1f5f9f")).collect()
}

/// Plain lines of one colour, wrapped.
fn plain(texts: &[String], bold: bool, color: &'static str, max: f64) -> Vec<Line> {
    let size = if bold { FB } else { F };
    texts.iter().flat_map(|t| wrap(t, size, max)).map(|l| (l, bold, color)).collect()
}

/// Draws `lines` from the baseline `y` down, starting at `x`.
fn draw_lines(svg: &mut Svg, x: f64, y: f64, lines: &[Line]) {
    for (i, (text, bold, color)) in lines.iter().enumerate() {
        let yy = y + i as f64 * LH;
        if *bold {
            svg.label_bold(x, yy, text, FB, Anchor::Start, color);
        } else {
            svg.label(x, yy, text, F, Anchor::Start, color);
        }
    }
}

fn height_of(lines: &[Line]) -> f64 {
    lines.len() as f64 * LH
}

impl LifecycleGraph {
    /// A self-contained SVG of the state machine, states top to bottom.
    pub fn to_svg(&self, lang: Lang) -> String {
        let layout = Layout::new(self, lang);
        let mut svg = Svg::new(WIDTH, layout.height);
        layout.draw_heading(&mut svg);
        layout.draw_boxes(&mut svg);
        layout.draw_arrival(&mut svg);
        layout.draw_loops(&mut svg);
        for i in 0..layout.gaps.len() {
            layout.draw_gap(&mut svg, i);
        }
        svg.finish()
    }
}

/// The boxes top to bottom.
const STATES: [State; 4] = [State::Waiting, State::Prefill, State::Decode, State::Finished];
const EDGE: &str = "#444";

/// A gap between two boxes: its top, its height, the left lane's lines and
/// the forward arrows' lines.
type Gap = (f64, f64, Vec<Line>, Vec<Line>);

/// Where everything goes, measured before anything is drawn.
struct Layout<'a> {
    g: &'a LifecycleGraph,
    lang: Lang,
    tx: &'static FigureText,
    fwd_max: f64,
    loop_max: f64,
    /// Title and legend: baseline, lines, size, bold, colour.
    heading: Vec<(f64, Vec<String>, f64, bool, &'static str)>,
    block_table: Vec<Line>,
    any_preempted: bool,
    recompute_lines: Vec<Line>,
    /// Transitions that skip a state (e.g. prefill → finished), drawn on
    /// the right of the boxes' column, from source to target.
    skips: Vec<(State, State)>,
    arrival_lines: Vec<Line>,
    start_y: f64,
    box_y: [f64; 4],
    gaps: Vec<Gap>,
    height: f64,
}

impl<'a> Layout<'a> {
    fn new(g: &'a LifecycleGraph, lang: Lang) -> Layout<'a> {
        let tx = figure_text::of(lang);
        let loop_max = WIDTH - 16.0 - LOOP_X;
        let mut layout = Layout {
            g,
            lang,
            tx,
            fwd_max: WIDTH - 16.0 - FWD_X,
            loop_max,
            heading: Vec::new(),
            block_table: Vec::new(),
            any_preempted: [State::Prefill, State::Decode].iter().any(|&s| !g.between(s, State::Waiting).is_empty()),
            recompute_lines: Vec::new(),
            skips: skips(g),
            arrival_lines: Vec::new(),
            start_y: 0.0,
            box_y: [0.0; 4],
            gaps: Vec::new(),
            height: 0.0,
        };
        let y = layout.measure_heading();
        layout.block_table = plain(&[tx.block_table.to_string()], true, "#5a3d8a", loop_max - 20.0);
        layout.block_table.extend(plain(
            &[tx.block_table_admit.to_string(), tx.block_table_release.to_string()],
            false,
            "#333",
            loop_max - 20.0,
        ));
        // The left lane: its heading and the recompute edge between
        // Waiting and Prefill, each preemption beside its source's gap.
        layout.recompute_lines = plain(&[tx.preempt_recompute.to_string()], true, PREEMPT, LEFT_W);
        if layout.any_preempted {
            layout.recompute_lines.extend(plain(&[fill(tx.recompute_edge, &[&g.readmissions])], false, "#333", LEFT_W));
        } else {
            layout.recompute_lines.extend(plain(&[tx.not_in_run.to_string()], false, "#666", LEFT_W));
        }
        layout.measure_rows(y);
        layout
    }

    /// The title and the legend; returns where the diagram starts.
    fn measure_heading(&mut self) -> f64 {
        let tx = self.tx;
        let title = wrap(tx.lifecycle_title, FS, WIDTH - 40.0);
        let run = if self.g.run_name.is_empty() { String::new() } else { fill(tx.of_run, &[&self.g.run_name]) };
        let legend =
            wrap(&fill(tx.lifecycle_legend, &[&self.g.num_events, &run, &self.g.num_requests]), F, WIDTH - 40.0);
        let mut y = 20.0 + FS;
        self.heading.push((y, title.clone(), FS, true, "#111"));
        y += title.len() as f64 * FS * 1.25;
        self.heading.push((y, legend.clone(), F, false, "#444"));
        y + legend.len() as f64 * LH + 10.0
    }

    /// Vertical layout from `y`: arrival gap, then box, gap, box, …
    fn measure_rows(&mut self, y: f64) {
        self.arrival_lines = label_lines(&self.g.between(State::Start, State::Waiting), self.lang, self.fwd_max);
        self.start_y = y + 10.0;
        let mut y = self.start_y + (height_of(&self.arrival_lines) + 10.0).max(50.0);
        for (i, &s) in STATES.iter().enumerate() {
            self.box_y[i] = y;
            let mut side = height_of(&self.beside(s));
            if s == State::Prefill {
                side += height_of(&self.block_table) + 24.0;
            }
            y += BH.max(side + 8.0);
            if let Some(&next) = STATES.get(i + 1) {
                let mut right = label_lines(&self.g.between(s, next), self.lang, self.fwd_max);
                for &(a, b) in &self.skips {
                    if a == s {
                        right.extend(label_lines(&self.g.between(a, b), self.lang, self.fwd_max));
                    }
                }
                let left = self.left_of_gap(s);
                let h = (height_of(&right).max(height_of(&left)) + 24.0).max(60.0);
                self.gaps.push((y, h, left, right));
                y += h;
            }
        }
        self.height = y + 20.0;
    }

    /// What goes beside a box: its self-loops and, beside Finished, the
    /// block-level notes.
    fn beside(&self, s: State) -> Vec<Line> {
        let (tx, g, loop_max) = (self.tx, self.g, self.loop_max);
        let mut lines = label_lines(&g.between(s, s), self.lang, loop_max);
        if s == State::Finished {
            let notes =
                vec![fill(tx.kept_cached, &[&g.released_cached_blocks]), fill(tx.evicted, &[&g.evicted_blocks])];
            lines.extend(plain(&[tx.block_side.to_string()], true, "#555", loop_max));
            lines.extend(plain(&notes, false, "#333", loop_max));
            lines.extend(g.evicted_sites.iter().flat_map(|s| site_lines(s, loop_max)));
        }
        lines
    }

    /// The left lane beside the gap below `a`.
    fn left_of_gap(&self, a: State) -> Vec<Line> {
        match a {
            State::Waiting => self.recompute_lines.clone(),
            State::Prefill | State::Decode => label_lines(&self.g.between(a, State::Waiting), self.lang, LEFT_W),
            _ => Vec::new(),
        }
    }

    fn draw_heading(&self, svg: &mut Svg) {
        for (yy, lines, size, bold, color) in &self.heading {
            for (i, l) in lines.iter().enumerate() {
                svg.text(20.0, yy + i as f64 * size * 1.25, l, *size, Anchor::Start, color, *bold);
            }
        }
    }

    fn draw_boxes(&self, svg: &mut Svg) {
        let colors = |s: State| match s {
            State::Waiting => "#fde9c9",
            State::Prefill => "#cfe3fb",
            State::Decode => "#d4f0d4",
            State::Finished => "#e4e4e4",
            State::Start => "#fff",
        };
        for (i, &s) in STATES.iter().enumerate() {
            let by = self.box_y[i];
            svg.raw(&format!(r#"<g class="state" data-state="{}">"#, s.name()));
            svg.rect(BOX_X, by, BW, BH, colors(s), Some("#555"), 10.0);
            let (name, note) = state_text(s, self.tx);
            svg.text(CX, by + 12.0 + FS, name, FS, Anchor::Middle, "#111", true);
            svg.text(CX, by + 20.0 + FS + LH, note, F, Anchor::Middle, "#333", false);
            svg.raw("</g>");
        }
    }

    /// Arrival: a dot above Waiting.
    fn draw_arrival(&self, svg: &mut Svg) {
        if !self.g.between(State::Start, State::Waiting).is_empty() {
            svg.circle(CX, self.start_y, 8.0, "#111");
            open_edge(svg, State::Start, State::Waiting);
            svg.arrow(CX, self.start_y + 9.0, CX, self.box_y[0] - 2.0, EDGE, 1.8);
            draw_lines(svg, FWD_X, self.start_y + F, &self.arrival_lines);
            svg.raw("</g>");
        }
    }

    /// Self-loops on the boxes' right, labels beside them; the block table
    /// beside Prefill.
    fn draw_loops(&self, svg: &mut Svg) {
        for (i, &s) in STATES.iter().enumerate() {
            let lines = self.beside(s);
            let by = self.box_y[i];
            let ts = self.g.between(s, s);
            if !ts.is_empty() {
                let x = BOX_X + BW;
                let (y1, y2) = (by + BH * 0.25, by + BH * 0.75);
                open_edge(svg, s, s);
                svg.path(
                    &format!("M{x},{y1} C{},{} {},{} {},{y2}", x + 45.0, y1 - 10.0, x + 45.0, y2 + 10.0, x + 2.0),
                    EDGE,
                    1.8,
                    true,
                    None,
                );
                let own = label_lines(&ts, self.lang, self.loop_max);
                draw_lines(svg, LOOP_X, by + F, &own);
                svg.raw("</g>");
                draw_lines(svg, LOOP_X, by + F + height_of(&own), &lines[own.len()..]);
            } else {
                draw_lines(svg, LOOP_X, by + F, &lines);
            }
            if s == State::Prefill {
                self.draw_block_table(svg, by, height_of(&lines));
            }
        }
    }

    /// The block table, bound to the request id at admission.
    fn draw_block_table(&self, svg: &mut Svg, by: f64, beside_height: f64) {
        let top = by + beside_height + 12.0;
        let h = height_of(&self.block_table) + 10.0;
        svg.raw(r#"<g class="link" data-link="block_table">"#);
        svg.rect(LOOP_X - 8.0, top, self.loop_max + 8.0, h, "#f1ebfa", Some("#5a3d8a"), 6.0);
        svg.path(
            &format!("M{},{} L{},{}", BOX_X + BW, by + BH - 8.0, LOOP_X - 8.0, top + h / 2.0),
            "#5a3d8a",
            1.6,
            false,
            Some("5,4"),
        );
        draw_lines(svg, LOOP_X, top + F + 2.0, &self.block_table);
        svg.raw("</g>");
    }

    /// The gap below box `i`: forward neighbours down the middle, labels on
    /// the right, skipping arrows, the left lane.
    fn draw_gap(&self, svg: &mut Svg, i: usize) {
        let (gy, _, left, _) = &self.gaps[i];
        let (a, b) = (STATES[i], STATES[i + 1]);
        let ts = self.g.between(a, b);
        let (y1, y2) = (self.box_y[i] + BH, self.box_y[i + 1]);
        let mut drawn_right = 0;
        if !ts.is_empty() {
            open_edge(svg, a, b);
            svg.arrow(CX, y1 + 2.0, CX, y2 - 2.0, EDGE, 1.8);
            let own = label_lines(&ts, self.lang, self.fwd_max);
            drawn_right = own.len();
            draw_lines(svg, FWD_X, gy + 12.0 + F, &own);
            svg.raw("</g>");
        }
        // Skipping arrows (a → beyond b) on the right of the column.
        let mut yy = gy + 12.0 + F + drawn_right as f64 * LH;
        for &(sa, sb) in self.skips.iter().filter(|(sa, _)| *sa == a) {
            let own = label_lines(&self.g.between(sa, sb), self.lang, self.fwd_max);
            let x = BOX_X + BW - 20.0;
            open_edge(svg, sa, sb);
            svg.arrow(x, y1 + 2.0, x, self.box_y[index(sb) - 1] - 2.0, EDGE, 1.6);
            draw_lines(svg, FWD_X, yy, &own);
            svg.raw("</g>");
            yy += height_of(&own);
        }
        self.draw_left_lane(svg, i, *gy, left);
    }

    /// The left lane beside the gap below box `i`: the recompute edge, or
    /// a preemption's arc back to Waiting.
    fn draw_left_lane(&self, svg: &mut Svg, i: usize, gy: f64, left: &[Line]) {
        let a = STATES[i];
        let (y1, y2) = (self.box_y[i] + BH, self.box_y[i + 1]);
        match a {
            State::Waiting => {
                // Readmission: prefill recomputes the KV it lost.
                let x = BOX_X + 40.0;
                let (color, dash) = if self.any_preempted { (PREEMPT, Some("7,4")) } else { ("#999", Some("3,4")) };
                svg.raw(r#"<g class="link" data-link="recompute">"#);
                svg.path(&format!("M{x},{} L{x},{}", y1 + 2.0, y2 - 2.0), color, 1.8, true, dash);
                draw_lines(svg, LEFT_X, gy + 12.0 + F, left);
                svg.raw("</g>");
            }
            State::Prefill | State::Decode => {
                let ts = self.g.between(a, State::Waiting);
                let depth = if a == State::Prefill { 30.0 } else { 60.0 };
                let wy = self.box_y[0] + BH * if a == State::Prefill { 0.4 } else { 0.7 };
                let (sy, x) = (self.box_y[i] + BH * 0.5, BOX_X);
                let arc = format!("M{x},{sy} C{},{sy} {},{wy} {},{wy}", x - depth, x - depth, x - 2.0);
                if !ts.is_empty() {
                    open_edge(svg, a, State::Waiting);
                    svg.path(&arc, PREEMPT, 1.8, true, None);
                    draw_lines(svg, LEFT_X, gy + 12.0 + F, left);
                    svg.raw("</g>");
                } else if !self.any_preempted && a == State::Decode {
                    // The path a preemption would take, drawn faint.
                    svg.raw(r#"<g class="link" data-link="preemption">"#);
                    svg.path(&arc, "#999", 1.4, true, Some("3,4"));
                    svg.raw("</g>");
                }
            }
            _ => {}
        }
    }
}

/// Transitions that skip a state, each pair once, in the order first taken.
fn skips(g: &LifecycleGraph) -> Vec<(State, State)> {
    let mut v: Vec<(State, State)> = Vec::new();
    for t in &g.transitions {
        let (fi, ti) = (index(t.from), index(t.to));
        if t.from != State::Start && ti > fi + 1 && !v.contains(&(t.from, t.to)) {
            v.push((t.from, t.to));
        }
    }
    v
}

/// The state's place top to bottom.
fn index(s: State) -> usize {
    match s {
        State::Start | State::Waiting => 0,
        State::Prefill => 1,
        State::Decode => 2,
        State::Finished => 3,
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

    /// The drawn words of a group, lines joined by a space (a wrapped label
    /// reads as one), halos left out.
    fn words(group: &str) -> String {
        let mut out: Vec<&str> = Vec::new();
        for chunk in group.split("<text").skip(1) {
            if chunk.contains(r#"stroke="white""#) {
                continue;
            }
            let body = &chunk[chunk.find('>').unwrap() + 1..chunk.find("</text>").unwrap()];
            out.push(body.trim());
        }
        out.join(" ")
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
                words(edge).contains(&format!("{} ×{}", t.name, t.count)),
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
        assert!(words(arrival).contains(&format!("arrived ×{arrived}")), "{arrival}");
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
        assert!(!svg.contains("preempted ×"), "a preemption label without preemptions");
        let lane = group(&svg, r#"<g class="link" data-link="recompute">"#).expect("the lane is drawn");
        assert!(words(lane).contains("not seen in this run"), "{lane}");
        assert!(group(&svg, &edge_tag(State::Decode, State::Finished)).is_some());
    }

    /// The smallest text of an SVG in points, the figure scaled to an A4
    /// page's text width.
    fn min_text_pt(svg: &str) -> f64 {
        let attr = |s: &str, name: &str| -> f64 {
            let at = s.find(&format!("{name}=\"")).expect("attribute") + name.len() + 2;
            s[at..at + s[at..].find('"').unwrap()].parse().expect("a number")
        };
        let width = attr(svg, "width");
        let smallest = svg.split("<text").skip(1).map(|t| attr(t, "font-size")).fold(f64::INFINITY, f64::min);
        smallest * A4_TEXT_PT / width
    }

    #[test]
    fn text_is_at_least_9_pt_at_a4_width_with_the_recompute_and_block_table_links() {
        for blocks in [40, 400, 20] {
            let g = LifecycleGraph::from_run(&small_run(blocks));
            for lang in [Lang::En, Lang::Zh] {
                let svg = g.to_svg(lang);
                assert_wellformed(&svg);
                let pt = min_text_pt(&svg);
                assert!(pt >= 9.0, "{blocks} blocks, {lang:?}: smallest text {pt:.1} pt at A4 width");
                let tx = figure_text::of(lang);
                let recompute = group(&svg, r#"<g class="link" data-link="recompute">"#).expect("recompute edge");
                assert!(words(recompute).contains(tx.preempt_recompute), "{recompute}");
                assert!(recompute.contains("marker-end="));
                let table = group(&svg, r#"<g class="link" data-link="block_table">"#).expect("block table link");
                assert!(words(table).contains(tx.block_table), "{table}");
            }
        }
        // With preemptions the recompute edge counts the readmissions.
        let g = LifecycleGraph::from_run(&small_run(40));
        assert!(g.readmissions > 0 && g.readmissions == g.count("preempted"));
        let svg = g.to_svg(Lang::En);
        assert!(words(&svg).contains(&format!("readmitted ×{}", g.readmissions)));
        let zh = words(&g.to_svg(Lang::Zh));
        assert!(zh.contains(&format!("重新准入 ×{}", g.readmissions)) && zh.contains("被抢占 ×"), "{zh}");
    }

    /// `KVSCOPE_LIFECYCLE_PNG=DIR cargo test -p kvscope-lab lifecycle_png`
    /// writes the figure in both languages for a look.
    #[test]
    fn lifecycle_png_for_a_look() {
        let Ok(dir) = std::env::var("KVSCOPE_LIFECYCLE_PNG") else { return };
        for blocks in [40, 400] {
            let g = LifecycleGraph::from_run(&small_run(blocks));
            for (lang, name) in [(Lang::En, "en"), (Lang::Zh, "zh")] {
                let png = crate::png::svg_to_png(&g.to_svg(lang)).expect("renders");
                std::fs::write(format!("{dir}/lifecycle_{blocks}_{name}.png"), png).unwrap();
            }
        }
    }
}
