//! The KV lifecycle diagram, drawn from a run's event stream.
//!
//! Only the state names are fixed here; every transition, its count and the
//! code sites that performed it come from the events. Each request's state
//! is followed through its own event sequence (arrived → admitted → prefill
//! … → first_token → decode … → released/finished), so a preemption during
//! decode is told apart from one during prefill, and a readmitted request's
//! recompute counts as prefill again.

use crate::svg::{Anchor, Svg};
use kvscope_core::{EventRecord, FinishReason, KvEvent, ReleaseReason, RequestId};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A request's KV state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Before arrival (the diagram's `[*]`).
    Start,
    /// In the waiting queue: no KV.
    Waiting,
    /// Running, KV being written for the prompt (or recomputed).
    Prefill,
    /// Running, reading the whole context's KV, appending one slot a step.
    Decode,
    /// Done: blocks released.
    Finished,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Start => "[*]",
            State::Waiting => "Waiting",
            State::Prefill => "Prefill",
            State::Decode => "Decode",
            State::Finished => "Finished",
        }
    }
    /// What the state means for KV.
    pub fn kv_note(self) -> &'static str {
        match self {
            State::Start => "",
            State::Waiting => "no KV held",
            State::Prefill => "writing prompt KV",
            State::Decode => "read all KV, +1 slot/step",
            State::Finished => "KV released",
        }
    }
    fn column(self) -> usize {
        match self {
            State::Start => 0,
            State::Waiting => 1,
            State::Prefill => 2,
            State::Decode => 3,
            State::Finished => 4,
        }
    }
}

/// One observed transition of the request state machine.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    /// Display name: the event kind, qualified where one kind splits
    /// (`stalled (no_free_blocks)`, `resumed after recompute`).
    pub name: String,
    /// The event kind whose occurrences are counted.
    pub event: String,
    pub count: u64,
    /// Distinct code sites of every event that took part (the counted event
    /// and the block releases that go with it), sorted.
    pub sites: BTreeSet<String>,
    /// Quantities carried by the events (blocks, tokens), for the label.
    pub details: Vec<String>,
}

#[derive(Default, Clone, Debug)]
struct Acc {
    count: u64,
    sites: BTreeSet<String>,
    blocks: u64,
    cached_blocks: u64,
    tokens: u64,
    readmissions: u64,
    block_appends: u64,
    reasons: BTreeMap<String, u64>,
}

/// The request-level KV state machine of one run, with block-level side
/// counts (cached blocks kept at release, evictions).
#[derive(Clone, Debug, Default)]
pub struct LifecycleGraph {
    /// Run (case) name for the legend; empty when unknown.
    pub run_name: String,
    pub num_events: usize,
    pub num_requests: usize,
    pub transitions: Vec<Transition>,
    /// Per event kind: how many events.
    pub kind_counts: BTreeMap<String, u64>,
    /// Per event kind: the distinct sites that emitted it.
    pub kind_sites: BTreeMap<String, BTreeSet<String>>,
    /// Blocks that stayed indexed for prefix reuse when released.
    pub released_cached_blocks: u64,
    /// Cached free blocks reclaimed for someone else.
    pub evicted_blocks: u64,
    pub evicted_sites: BTreeSet<String>,
}

type Key = (State, State, String, String);

impl LifecycleGraph {
    pub fn from_events(events: &[EventRecord]) -> LifecycleGraph {
        let mut g = LifecycleGraph { num_events: events.len(), ..Default::default() };
        let mut state: HashMap<RequestId, State> = HashMap::new();
        // The state a request left when its blocks were released
        // (released precedes finished; preempted precedes released).
        let mut left_from: HashMap<RequestId, State> = HashMap::new();
        let mut accs: BTreeMap<Key, Acc> = BTreeMap::new();
        let mut order: Vec<Key> = Vec::new();
        fn get<'a>(accs: &'a mut BTreeMap<Key, Acc>, order: &mut Vec<Key>, key: Key) -> &'a mut Acc {
            if !accs.contains_key(&key) {
                order.push(key.clone());
            }
            accs.entry(key).or_default()
        }
        macro_rules! acc {
            ($k:expr) => {
                get(&mut accs, &mut order, $k)
            };
        }
        for rec in events {
            let kind = rec.event.kind();
            *g.kind_counts.entry(kind.to_string()).or_default() += 1;
            g.kind_sites.entry(kind.to_string()).or_default().insert(rec.site.to_string());
            let site = rec.site.to_string();
            let Some(id) = rec.event.request_id() else {
                if let KvEvent::Evicted { .. } = rec.event {
                    g.evicted_blocks += 1;
                    g.evicted_sites.insert(site);
                }
                continue;
            };
            let cur = *state.get(&id).unwrap_or(&State::Waiting);
            match &rec.event {
                KvEvent::Arrived { .. } => {
                    g.num_requests += 1;
                    state.insert(id, State::Waiting);
                    let a = acc!((State::Start, State::Waiting, "arrived".into(), "arrived".into()));
                    a.count += 1;
                    a.sites.insert(site);
                }
                KvEvent::Stalled { reason, .. } => {
                    let a = acc!((cur, cur, "stalled".into(), format!("stalled ({})", reason.as_str())));
                    a.count += 1;
                    a.sites.insert(site);
                }
                KvEvent::Admitted { blocks, cached_blocks, readmission, .. } => {
                    state.insert(id, State::Prefill);
                    let a = acc!((cur, State::Prefill, "admitted".into(), "admitted".into()));
                    a.count += 1;
                    a.sites.insert(site);
                    a.blocks += blocks.len() as u64;
                    a.cached_blocks += *cached_blocks as u64;
                    a.readmissions += u64::from(*readmission);
                }
                KvEvent::Prefill { tokens, .. } => {
                    state.insert(id, State::Prefill);
                    let a = acc!((cur, State::Prefill, "prefill".into(), "prefill chunk".into()));
                    a.count += 1;
                    a.sites.insert(site);
                    a.tokens += *tokens as u64;
                }
                KvEvent::FirstToken { .. } => {
                    state.insert(id, State::Decode);
                    let a = acc!((cur, State::Decode, "first_token".into(), "first_token".into()));
                    a.count += 1;
                    a.sites.insert(site);
                }
                KvEvent::Decode { context_tokens, .. } => {
                    state.insert(id, State::Decode);
                    // A readmitted request that had already produced tokens
                    // goes back to decode without a new first_token.
                    let name = if cur == State::Decode { "decode step" } else { "decode (resumed after recompute)" };
                    let a = acc!((cur, State::Decode, "decode".into(), name.into()));
                    a.count += 1;
                    a.sites.insert(site);
                    a.tokens += *context_tokens as u64;
                }
                KvEvent::BlockAppended { .. } => {
                    // Shown on the state's own loop: decode (or prefill) steps.
                    let loop_name = if cur == State::Decode { "decode step" } else { "prefill chunk" };
                    let ev = if cur == State::Decode { "decode" } else { "prefill" };
                    let a = acc!((cur, cur, ev.into(), loop_name.into()));
                    a.block_appends += 1;
                    a.sites.insert(site);
                }
                KvEvent::Preempted { .. } => {
                    state.insert(id, State::Waiting);
                    left_from.insert(id, cur);
                    let a = acc!((cur, State::Waiting, "preempted".into(), "preempted".into()));
                    a.count += 1;
                    a.sites.insert(site);
                }
                KvEvent::Released { blocks, reason, cached, .. } => {
                    g.released_cached_blocks += *cached as u64;
                    let key = match reason {
                        ReleaseReason::Preempted => {
                            let from = left_from.remove(&id).unwrap_or(cur);
                            (from, State::Waiting, "preempted".to_string(), "preempted".to_string())
                        }
                        ReleaseReason::Finished => {
                            left_from.insert(id, cur);
                            (cur, State::Finished, "finished".into(), "finished".into())
                        }
                        ReleaseReason::Aborted => {
                            left_from.insert(id, cur);
                            (cur, State::Finished, "finished".into(), "aborted".into())
                        }
                    };
                    let a = acc!(key);
                    a.sites.insert(site);
                    a.blocks += blocks.len() as u64;
                    a.cached_blocks += *cached as u64;
                }
                KvEvent::Finished { reason, .. } => {
                    let from = left_from.remove(&id).unwrap_or(cur);
                    state.insert(id, State::Finished);
                    let name = if *reason == FinishReason::Abort { "aborted" } else { "finished" };
                    let a = acc!((from, State::Finished, "finished".into(), name.into()));
                    a.count += 1;
                    a.sites.insert(site);
                    *a.reasons.entry(reason.as_str().to_string()).or_default() += 1;
                }
                KvEvent::Evicted { .. } => {}
            }
        }
        for key in order {
            let a = &accs[&key];
            let (from, to, event, name) = key;
            let mut details = Vec::new();
            match event.as_str() {
                "admitted" => {
                    details.push(format!("{} blocks allocated, {} prefix-cache hits", a.blocks, a.cached_blocks));
                    if a.readmissions > 0 {
                        details.push(format!("{} readmissions (recompute)", a.readmissions));
                    }
                }
                "prefill" => {
                    details.push(format!("{} prompt tokens written", a.tokens));
                    if a.block_appends > 0 {
                        details.push(format!("block_appended ×{}", a.block_appends));
                    }
                }
                "decode" => {
                    details.push(format!("{} context tokens read", a.tokens));
                    if a.block_appends > 0 || from == to {
                        details.push(format!("block_appended ×{}", a.block_appends));
                    }
                }
                "preempted" => details.push(format!("{} blocks released", a.blocks)),
                "finished" => {
                    details.push(format!("{} blocks released, {} kept cached", a.blocks, a.cached_blocks));
                    if name == "finished" && !a.reasons.is_empty() {
                        let rs: Vec<String> = a.reasons.iter().map(|(r, n)| format!("{r} ×{n}")).collect();
                        details.push(format!("reason {}", rs.join(", ")));
                    }
                }
                _ => {}
            }
            g.transitions.push(Transition { from, to, name, event, count: a.count, sites: a.sites.clone(), details });
        }
        g
    }

    /// The graph of one case run, named after the case.
    pub fn from_run(run: &kvscope_experiment::driver::CaseRun) -> LifecycleGraph {
        let mut g = LifecycleGraph::from_events(&run.events);
        g.run_name = run.spec.name.clone();
        g
    }

    /// How many events of this kind the run emitted (`"admitted"`, …).
    pub fn count(&self, event_kind: &str) -> u64 {
        self.kind_counts.get(event_kind).copied().unwrap_or(0)
    }

    /// The distinct code sites that emitted this kind of event, sorted.
    pub fn sites(&self, event_kind: &str) -> Vec<String> {
        self.kind_sites.get(event_kind).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    /// Transitions between two states.
    pub fn between(&self, from: State, to: State) -> Vec<&Transition> {
        self.transitions.iter().filter(|t| t.from == from && t.to == to).collect()
    }

    /// Total count of the transitions named `name` (e.g. `"preempted"`).
    pub fn transition_count(&self, from: State, to: State, name: &str) -> u64 {
        self.between(from, to).iter().filter(|t| t.name == name).map(|t| t.count).sum()
    }

    fn legend(&self) -> String {
        let run = if self.run_name.is_empty() { String::new() } else { format!(" of run {}", self.run_name) };
        format!(
            "Drawn by kvscope from {} KV events{run} ({} requests); counts and code sites come from the event stream.",
            self.num_events, self.num_requests
        )
    }

    /// Mermaid `stateDiagram-v2` text.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("stateDiagram-v2\n    direction LR\n");
        for s in [State::Waiting, State::Prefill, State::Decode, State::Finished] {
            out.push_str(&format!("    {} : {}<br/>{}\n", s.name(), s.name(), mermaid_text(s.kv_note())));
        }
        for t in &self.transitions {
            let mut label = format!("{} ×{}", t.name, t.count);
            for d in &t.details {
                label.push_str("<br/>");
                label.push_str(d);
            }
            for s in &t.sites {
                label.push_str("<br/>@ ");
                label.push_str(s);
            }
            out.push_str(&format!("    {} --> {} : {}\n", t.from.name(), t.to.name(), mermaid_text(&label)));
        }
        out.push_str("    note right of Finished\n");
        out.push_str(&format!(
            "        block side — {} released blocks kept cached (evictable)\n",
            self.released_cached_blocks
        ));
        let sites: Vec<String> = self.evicted_sites.iter().map(|s| mermaid_text(s)).collect();
        let at = if sites.is_empty() { String::new() } else { format!(" @ {}", sites.join(", ")) };
        out.push_str(&format!("        cached free block evicted ×{}{}\n", self.evicted_blocks, at));
        out.push_str("    end note\n");
        out.push_str(&format!("    %% {}\n", mermaid_text(&self.legend())));
        out
    }

    /// A self-contained SVG of the state machine, states left to right.
    pub fn to_svg(&self) -> String {
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
            self.transitions.iter().filter(|t| t.from != t.to && t.to.column() <= t.from.column()).collect();
        let skips: Vec<&Transition> =
            self.transitions.iter().filter(|t| t.from != State::Start && t.to.column() > t.from.column() + 1).collect();
        // Group arcs below the boxes by (from, to): each group gets a depth.
        let mut arcs: Vec<(State, State)> = Vec::new();
        for t in lower.iter().chain(skips.iter()) {
            if !arcs.contains(&(t.from, t.to)) {
                arcs.push((t.from, t.to));
            }
        }
        arcs.sort_by_key(|(f, t)| (f.column() as i64 - t.column() as i64).abs());
        let depth_step = 110.0;
        let arc_lines = arcs.iter().map(|(a, b)| lines(&self.between(*a, *b))).fold(0.0, f64::max);
        let height = (box_y + bh + 40.0 + depth_step * arcs.len().saturating_sub(1) as f64 + 30.0 + arc_lines * 14.0)
            .max(box_y + bh + 110.0 + 14.0 * self.evicted_sites.len() as f64);
        let mut svg = Svg::new(width, height);
        svg.text(
            20.0,
            28.0,
            "KV lifecycle of a request (state machine observed in the run)",
            18.0,
            Anchor::Start,
            "#111",
            true,
        );
        svg.text(20.0, 50.0, &self.legend(), 12.0, Anchor::Start, "#444", false);

        let colors = |s: State| match s {
            State::Waiting => "#fde9c9",
            State::Prefill => "#cfe3fb",
            State::Decode => "#d4f0d4",
            State::Finished => "#e4e4e4",
            State::Start => "#fff",
        };
        for s in [State::Waiting, State::Prefill, State::Decode, State::Finished] {
            let x = col_x(s.column());
            svg.rect(x, box_y, bw, bh, colors(s), Some("#555"), 10.0);
            svg.text(x + bw / 2.0, box_y + 27.0, s.name(), 17.0, Anchor::Middle, "#111", true);
            svg.text(x + bw / 2.0, box_y + 47.0, s.kv_note(), 11.0, Anchor::Middle, "#333", false);
        }
        let edge = "#444";
        // Start dot and arrival.
        let start_x = col_x(1) - 110.0;
        svg.circle(start_x, cy, 8.0, "#111");
        for t in self.between(State::Start, State::Waiting) {
            svg.arrow(start_x + 9.0, cy, col_x(1) - 2.0, cy, edge, 1.6);
            draw_label(&mut svg, (start_x + col_x(1)) / 2.0 - 8.0, cy - 12.0, &[t], Anchor::Middle, true);
        }
        // Self loops above the boxes, labels stacked above the loop.
        for s in [State::Waiting, State::Prefill, State::Decode] {
            let ts = self.between(s, s);
            if ts.is_empty() {
                continue;
            }
            let x = col_x(s.column());
            let (x1, x2) = (x + bw * 0.3, x + bw * 0.7);
            let top = box_y - 55.0;
            svg.path(
                &format!("M{x1},{box_y} C{},{top} {},{top} {x2},{}", x1 - 30.0, x2 + 30.0, box_y - 2.0),
                edge,
                1.6,
                true,
                None,
            );
            draw_label(&mut svg, x + bw / 2.0, top - 6.0, &ts, Anchor::Middle, true);
        }
        // Forward neighbours: straight arrows, labels above.
        for (a, b) in
            [(State::Waiting, State::Prefill), (State::Prefill, State::Decode), (State::Decode, State::Finished)]
        {
            let ts = self.between(a, b);
            if ts.is_empty() {
                continue;
            }
            let (x1, x2) = (col_x(a.column()) + bw, col_x(b.column()));
            svg.arrow(x1 + 2.0, cy, x2 - 2.0, cy, edge, 1.6);
            draw_label(&mut svg, (x1 + x2) / 2.0, cy - 12.0, &ts, Anchor::Middle, true);
        }
        // Backward and skipping arcs below the boxes.
        for (i, (a, b)) in arcs.iter().enumerate() {
            let ts = self.between(*a, *b);
            let depth = box_y + bh + 40.0 + depth_step * i as f64;
            let xa = col_x(a.column()) + bw * if b.column() < a.column() { 0.35 } else { 0.65 };
            let xb = col_x(b.column()) + bw * if b.column() < a.column() { 0.65 } else { 0.35 };
            let by = box_y + bh;
            let color = if ts.iter().any(|t| t.name == "preempted") { "#b03030" } else { edge };
            svg.path(&format!("M{xa},{by} C{xa},{depth} {xb},{depth} {xb},{}", by + 2.0), color, 1.6, true, None);
            let mid = (xa + xb) / 2.0;
            let apex = by + (depth - by) * 0.75;
            draw_label(&mut svg, mid, apex + 16.0, &ts, Anchor::Middle, false);
        }
        // Block side.
        let fx = col_x(4);
        let note_y = box_y + bh + 30.0;
        let ev_sites: Vec<&str> = self.evicted_sites.iter().map(String::as_str).collect();
        svg.text(fx + bw / 2.0, note_y, "block side", 12.0, Anchor::Middle, "#555", true);
        svg.text(
            fx + bw / 2.0,
            note_y + 16.0,
            &format!("{} released blocks kept cached", self.released_cached_blocks),
            11.0,
            Anchor::Middle,
            "#333",
            false,
        );
        svg.text(
            fx + bw / 2.0,
            note_y + 31.0,
            &format!("cached free → evicted ×{}", self.evicted_blocks),
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

/// Label block: for each transition, "name ×count" in bold, its details,
/// then "@ site" lines. Lines stack upward from `y` when `upward`.
fn draw_label(svg: &mut Svg, x: f64, y: f64, ts: &[&Transition], anchor: Anchor, upward: bool) {
    let mut lines: Vec<(String, bool)> = Vec::new();
    for t in ts {
        lines.push((format!("{} ×{}", t.name, t.count), true));
        for d in &t.details {
            lines.push((d.clone(), false));
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

/// Text safe inside a Mermaid state-diagram label: the description token
/// stops at '#', ';' and newlines, and ':' separates the label, so code
/// sites are written `scheduler·admit_waiting`.
fn mermaid_text(s: &str) -> String {
    s.replace("::", "·").replace([':', ';', '#', '\n'], " ").replace(['{', '}'], "")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kvscope_core::testing::PagedTokenExecutor;
    use kvscope_core::{BatchOutput, Executor, ExecutorError, ScheduledBatch, SimClock};
    use kvscope_core::{EngineConfig, PoolConfig, SchedulerConfig};
    use kvscope_experiment::driver::{run_case, CaseRun, RunOptions};
    use kvscope_experiment::workload::{Arrival, CaseSpec, Lengths, WorkloadRequest};

    /// The test executor, advancing a simulated clock per step so that
    /// timelines have a time axis.
    struct Timed {
        inner: PagedTokenExecutor,
        clock: SimClock,
    }
    impl Executor for Timed {
        fn execute(&mut self, batch: &ScheduledBatch) -> Result<BatchOutput, ExecutorError> {
            self.clock.advance(0.002 + 0.0001 * batch.num_tokens() as f64);
            self.inner.execute(batch)
        }
    }

    /// A small run under memory pressure: 12 requests, 40 blocks of 4.
    pub(crate) fn small_run(num_blocks: usize) -> CaseRun {
        small_run_with(num_blocks, 64, 0, 0)
    }

    /// [`small_run`] with a step budget, a long-prefill cap and a
    /// partial-prefill limit.
    fn small_run_with(num_blocks: usize, budget: usize, cap: usize, max_num_partial_prefills: usize) -> CaseRun {
        let config = EngineConfig {
            scheduler: SchedulerConfig {
                max_running: 6,
                max_batched_tokens: budget,
                max_model_len: 256,
                long_prefill_token_threshold: cap,
                max_num_partial_prefills,
            },
            pool: PoolConfig { num_blocks, block_size: 4, enable_prefix_caching: true, bytes_per_block: 4096 },
            vocab_size: None,
        };
        let spec = CaseSpec {
            name: "test_case".into(),
            num_requests: 12,
            prompt_lengths: Lengths::Fixed { tokens: 30 },
            output_lengths: Lengths::Fixed { tokens: 24 },
            arrival: Arrival::AllAtOnce,
            shared_prefix_tokens: 0,
            seed: 1,
        };
        let requests: Vec<WorkloadRequest> = (0..12)
            .map(|i| WorkloadRequest {
                index: i,
                arrival: i as f64 * 0.01,
                prompt: (0..(20 + 3 * i as u32)).map(|t| (t * 7 + i as u32 % 3) % 97).collect(),
                max_tokens: 24,
            })
            .collect();
        let clock = SimClock::new();
        let exec = Timed { inner: PagedTokenExecutor::new(num_blocks, 4, 97), clock: clock.clone() };
        let (run, _) =
            run_case(exec, clock, &config, &spec, requests.iter().cloned(), RunOptions::EVERY_STEP, &mut |_, _| {})
                .expect("runs");
        assert_eq!(run.requests.len(), 12);
        run
    }

    /// A stall of the partial-prefill limit is one more waiting self-loop,
    /// named by its reason, and the diagram's counts still add up.
    #[test]
    fn partial_prefill_stalls_are_drawn_with_their_reason() {
        let run = small_run_with(80, 16, 4, 1);
        let g = LifecycleGraph::from_run(&run);
        let held = g.transition_count(State::Waiting, State::Waiting, "stalled (max_partial_prefills)");
        assert!(held > 0, "{:?}", g.between(State::Waiting, State::Waiting));
        let stalls: u64 = g.between(State::Waiting, State::Waiting).iter().map(|t| t.count).sum();
        assert_eq!(stalls, g.count("stalled"));
        assert_eq!(g.count("admitted"), 12 + g.count("preempted"));
        assert_eq!(g.transition_count(State::Prefill, State::Decode, "first_token"), 12);
        assert!(g.to_mermaid().contains("stalled (max_partial_prefills)"));
        crate::svg::assert_wellformed(&g.to_svg());
    }

    #[test]
    fn counts_come_from_the_run() {
        let run = small_run(40);
        let g = LifecycleGraph::from_run(&run);
        assert_eq!(g.count("arrived"), 12);
        assert_eq!(g.transition_count(State::Start, State::Waiting, "arrived"), 12);
        let admitted: u64 = g.transitions.iter().filter(|t| t.name == "admitted").map(|t| t.count).sum();
        assert_eq!(admitted, g.count("admitted"));
        assert_eq!(g.count("admitted"), 12 + g.count("preempted"), "every preemption is readmitted once");
        let preempted: u64 = g.transitions.iter().filter(|t| t.name == "preempted").map(|t| t.count).sum();
        assert_eq!(preempted, run.stats.preemptions);
        assert!(preempted > 0, "the small pool forces preemptions");
        assert_eq!(g.transition_count(State::Prefill, State::Decode, "first_token"), 12);
        let finished: u64 = g.between(State::Decode, State::Finished).iter().map(|t| t.count).sum::<u64>()
            + g.between(State::Prefill, State::Finished).iter().map(|t| t.count).sum::<u64>();
        assert_eq!(finished, 12);
        assert_eq!(g.sites("arrived"), vec!["engine::submit".to_string()]);
        assert!(g.sites("admitted").iter().any(|s| s.contains("admit")));
        let stalls: u64 = g.between(State::Waiting, State::Waiting).iter().map(|t| t.count).sum();
        assert_eq!(stalls, g.count("stalled"));
        let decode_steps = g.transition_count(State::Decode, State::Decode, "decode step");
        let resumed = g.transition_count(State::Prefill, State::Decode, "decode (resumed after recompute)");
        assert_eq!(decode_steps + resumed, g.count("decode"));

        let m = g.to_mermaid();
        assert!(m.starts_with("stateDiagram-v2"));
        assert!(m.contains("[*] --> Waiting : arrived ×12<br/>@ engine·submit"));
        for line in m.lines().filter(|l| l.contains("-->")) {
            let label = line.split_once(" : ").expect("labelled").1;
            assert!(!label.contains([':', ';', '#']), "{line}");
        }
        let svg = g.to_svg();
        crate::svg::assert_wellformed(&svg);
        assert!(svg.contains("from 12") || svg.contains(&format!("from {} KV events", g.num_events)));
    }

    #[test]
    fn render_samples_to_tmp() {
        let run = small_run(40);
        let g = LifecycleGraph::from_run(&run);
        let _ = std::fs::write(std::env::temp_dir().join("kvscope_lifecycle.svg"), g.to_svg());
        let _ = std::fs::write(std::env::temp_dir().join("kvscope_lifecycle.mmd"), g.to_mermaid());
    }
}
