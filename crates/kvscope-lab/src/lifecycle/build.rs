//! Events → the request state machine: each request's state is read from
//! the event stream's one per-request tracker (`kvscope_core::replay`), and
//! every transition it takes is counted with the code sites that performed
//! it. No drawing here.

use super::{LifecycleGraph, State, Transition};
use kvscope_core::replay::{Phase, Replay};
use kvscope_core::{EventRecord, FinishReason, KvEvent, ReleaseReason};
use std::collections::{BTreeMap, BTreeSet};

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

/// (from, to, counted event kind, display name): one arrow of the diagram.
type Key = (State, State, String, String);

impl State {
    /// The diagram's state of a request in `phase` (before its arrival:
    /// waiting).
    fn of(phase: Option<Phase>) -> State {
        match phase {
            None | Some(Phase::Queued | Phase::Preempted) => State::Waiting,
            Some(Phase::Prefill | Phase::Recompute) => State::Prefill,
            Some(Phase::Decode) => State::Decode,
            Some(Phase::Finished) => State::Finished,
        }
    }
}

fn key(from: State, to: State, event: &str, name: &str) -> Key {
    (from, to, event.to_string(), name.to_string())
}

/// The arrows as they are counted, in the order they were first taken.
#[derive(Default)]
struct Arrows {
    accs: BTreeMap<Key, Acc>,
    order: Vec<Key>,
}

impl Arrows {
    fn get(&mut self, key: Key) -> &mut Acc {
        if !self.accs.contains_key(&key) {
            self.order.push(key.clone());
        }
        self.accs.entry(key).or_default()
    }

    /// Counts one event of a request that was in state `cur` before it;
    /// `g` takes the run-wide side counts.
    fn count(&mut self, g: &mut LifecycleGraph, rec: &EventRecord, cur: State) {
        let site = rec.site.to_string();
        let (key, counted) = match &rec.event {
            KvEvent::Arrived { .. } => {
                g.num_requests += 1;
                (key(State::Start, State::Waiting, "arrived", "arrived"), true)
            }
            KvEvent::Stalled { reason, .. } => {
                (key(cur, cur, "stalled", &format!("stalled ({})", reason.as_str())), true)
            }
            KvEvent::Admitted { blocks, cached_blocks, readmission, .. } => {
                g.readmissions += u64::from(*readmission);
                let a = self.get(key(cur, State::Prefill, "admitted", "admitted"));
                a.blocks += blocks.len() as u64;
                a.cached_blocks += *cached_blocks as u64;
                a.readmissions += u64::from(*readmission);
                (key(cur, State::Prefill, "admitted", "admitted"), true)
            }
            KvEvent::Prefill { tokens, .. } => {
                self.get(key(cur, State::Prefill, "prefill", "prefill chunk")).tokens += *tokens as u64;
                (key(cur, State::Prefill, "prefill", "prefill chunk"), true)
            }
            KvEvent::FirstToken { .. } => (key(cur, State::Decode, "first_token", "first_token"), true),
            KvEvent::Decode { context_tokens, .. } => {
                // A readmitted request that had already produced tokens
                // goes back to decode without a new first_token.
                let name = if cur == State::Decode { "decode step" } else { "decode (resumed after recompute)" };
                self.get(key(cur, State::Decode, "decode", name)).tokens += *context_tokens as u64;
                (key(cur, State::Decode, "decode", name), true)
            }
            KvEvent::BlockAppended { .. } => {
                // Shown on the state's own loop: decode (or prefill) steps.
                let (ev, name) =
                    if cur == State::Decode { ("decode", "decode step") } else { ("prefill", "prefill chunk") };
                self.get(key(cur, cur, ev, name)).block_appends += 1;
                (key(cur, cur, ev, name), false)
            }
            KvEvent::Preempted { .. } => (key(cur, State::Waiting, "preempted", "preempted"), true),
            KvEvent::Released { blocks, reason, cached, .. } => {
                g.released_cached_blocks += *cached as u64;
                let k = match reason {
                    ReleaseReason::Preempted => key(cur, State::Waiting, "preempted", "preempted"),
                    ReleaseReason::Finished => key(cur, State::Finished, "finished", "finished"),
                    ReleaseReason::Aborted => key(cur, State::Finished, "finished", "aborted"),
                };
                let a = self.get(k.clone());
                a.blocks += blocks.len() as u64;
                a.cached_blocks += *cached as u64;
                (k, false)
            }
            KvEvent::Finished { reason, .. } => {
                let name = if *reason == FinishReason::Abort { "aborted" } else { "finished" };
                let k = key(cur, State::Finished, "finished", name);
                *self.get(k.clone()).reasons.entry(reason.as_str().to_string()).or_default() += 1;
                (k, true)
            }
            KvEvent::Evicted { .. } => return,
        };
        let a = self.get(key);
        a.count += u64::from(counted);
        a.sites.insert(site);
    }
}

impl LifecycleGraph {
    /// The state machine the events walk through, transitions in the order
    /// they were first taken.
    pub fn from_events(events: &[EventRecord]) -> LifecycleGraph {
        let mut g = LifecycleGraph { num_events: events.len(), ..Default::default() };
        let mut replay = Replay::default();
        let mut arrows = Arrows::default();
        for rec in events {
            let kind = rec.event.kind();
            *g.kind_counts.entry(kind.to_string()).or_default() += 1;
            g.kind_sites.entry(kind.to_string()).or_default().insert(rec.site.to_string());
            let Some(id) = rec.event.request_id() else {
                if let KvEvent::Evicted { .. } = rec.event {
                    g.evicted_blocks += 1;
                    g.evicted_sites.insert(rec.site.to_string());
                }
                let _ = replay.apply(rec);
                continue;
            };
            // The state before this event: a preemption and a finish are
            // counted from where the request was when its blocks went.
            let cur = State::of(replay.phase_of(id));
            arrows.count(&mut g, rec, cur);
            // A stream that contradicts itself is still drawn as far as it goes.
            let _ = replay.apply(rec);
        }
        for key in arrows.order {
            let a = &arrows.accs[&key];
            let (from, to, event, name) = key;
            let details = details(a, from, to, &event, &name);
            g.transitions.push(Transition { from, to, name, event, count: a.count, sites: a.sites.clone(), details });
        }
        g
    }
}

/// Quantities carried by an arrow's events, for its label.
fn details(a: &Acc, from: State, to: State, event: &str, name: &str) -> Vec<String> {
    let mut details = Vec::new();
    match event {
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
    details
}

#[cfg(test)]
mod tests {
    use super::super::tests::{small_run, small_run_with};
    use super::*;

    /// A stall of the partial-prefill limit is one more waiting self-loop,
    /// named by its reason, and the diagram's counts still add up.
    #[test]
    fn partial_prefill_stalls_are_kept_apart_by_their_reason() {
        let run = small_run_with(80, 16, 4, 1);
        let g = LifecycleGraph::from_run(&run);
        let held = g.transition_count(State::Waiting, State::Waiting, "stalled (max_partial_prefills)");
        assert!(held > 0, "{:?}", g.between(State::Waiting, State::Waiting));
        let stalls: u64 = g.between(State::Waiting, State::Waiting).iter().map(|t| t.count).sum();
        assert_eq!(stalls, g.count("stalled"));
        assert_eq!(g.count("admitted"), 12 + g.count("preempted"));
        assert_eq!(g.transition_count(State::Prefill, State::Decode, "first_token"), 12);
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
    }
}
