//! Events → the request state machine: each request's state is followed
//! through its own event sequence, and every transition it takes is
//! counted with the code sites that performed it. No drawing here.

use super::{LifecycleGraph, State, Transition};
use kvscope_core::{EventRecord, FinishReason, KvEvent, ReleaseReason, RequestId};
use std::collections::{BTreeMap, BTreeSet, HashMap};

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
impl LifecycleGraph {
    /// The state machine the events walk through, transitions in the order
    /// they were first taken.
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
                    g.readmissions += u64::from(*readmission);
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
