//! The simulated fleet: every request finishes on exactly one replica, the
//! run is deterministic, and on `shared_prefix_chats` cache-aware routing
//! realizes more prefix hits (and computes fewer prefill tokens) than
//! round-robin — the same claim the loopback fleet test makes of the real
//! gateway.

use kvscope_experiment::workload::{ChatsCase, PromptSource, Scale};
use kvscope_sim::{run_fleet, CacheAwareConfig, FleetRun, Router, RouterKind, SimConfig};

fn run(kind: RouterKind, replicas: usize) -> FleetRun {
    let config = SimConfig::from_names("qwen3-0.6b", "l4").unwrap();
    let engines = (0..replicas).map(|_| config.build().unwrap().0).collect();
    let case = ChatsCase::at(Scale::Lab, 3);
    let requests = case.requests(&PromptSource::Synthetic { vocab: 150_000 });
    let mut router = Router::new(kind, replicas, CacheAwareConfig::default(), 7);
    run_fleet(engines, &mut router, kind, requests).unwrap()
}

#[test]
fn every_request_finishes_once_and_runs_repeat_exactly() {
    let case = ChatsCase::at(Scale::Lab, 3);
    for kind in [RouterKind::RoundRobin, RouterKind::LeastLoad, RouterKind::PowerOfTwo, RouterKind::CacheAware] {
        let fleet = run(kind, 2);
        assert!(fleet.rejected.is_empty(), "{:?}", fleet.rejected);
        let mut ids: Vec<u64> = fleet.replicas.iter().flat_map(|r| r.requests.iter().map(|q| q.request_id.0)).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..(case.conversations * case.turns) as u64).collect::<Vec<_>>(), "{kind:?}");
        let again = run(kind, 2);
        assert_eq!(fleet.hit_tokens(), again.hit_tokens());
        assert_eq!(fleet.ttft().p90, again.ttft().p90);
    }
}

#[test]
fn cache_aware_realizes_more_hits_than_round_robin_on_shared_prefix_chats() {
    let aware = run(RouterKind::CacheAware, 2);
    let robin = run(RouterKind::RoundRobin, 2);
    assert!(aware.hit_tokens() > robin.hit_tokens(), "{} vs {}", aware.hit_tokens(), robin.hit_tokens());
    assert!(aware.prefill_tokens() < robin.prefill_tokens());
}

/// Requests per replica when all of shared_prefix_chats arrives at once.
fn split_all_at_once(kind: RouterKind, router_seed: u64) -> Vec<usize> {
    let config = SimConfig::from_names("qwen3-0.6b", "l4").unwrap();
    let engines = (0..2).map(|_| config.build().unwrap().0).collect();
    let mut requests = ChatsCase::at(Scale::Lab, 3).requests(&PromptSource::Synthetic { vocab: 150_000 });
    for r in &mut requests {
        r.arrival = 0.0;
    }
    let mut router = Router::new(kind, 2, CacheAwareConfig::default(), router_seed);
    let fleet = run_fleet(engines, &mut router, kind, requests).unwrap();
    fleet.replicas.iter().map(|r| r.requests.len()).collect()
}

/// The gateway counts in-flight requests only under cache_aware (and
/// manual), so power_of_two without a polled load is a coin flip: with
/// every request in flight at once it does not balance them. least_load,
/// which reads live counts, alternates exactly.
#[test]
fn power_of_two_without_a_poll_ignores_requests_in_flight() {
    assert_eq!(split_all_at_once(RouterKind::LeastLoad, 1), [10, 10]);
    let splits: Vec<Vec<usize>> = (0..8).map(|seed| split_all_at_once(RouterKind::PowerOfTwo, seed)).collect();
    assert!(splits.iter().any(|s| s != &[10, 10]), "balanced in every draw: it read the live counts: {splits:?}");
}
