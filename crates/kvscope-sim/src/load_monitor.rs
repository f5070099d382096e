//! What a simulated gateway knows of its replicas' load when it routes.
//!
//! The SGLang Model Gateway keeps two kinds of load. Its own count of the
//! requests it has in flight to each worker is live, but kept only under
//! `cache_aware` (and `manual`): the HTTP router attaches its load guard to
//! a request for those policies alone (`routers/http/router.rs`,
//! `route_typed_request_once`, read in the sglang repository's source after
//! 0.3.2; the 0.3.2 wheel routes so, below), so under `power_of_two` every
//! worker's count reads 0. The token load that `power_of_two` compares
//! (`policies/power_of_two.rs`: two distinct workers drawn, the one with
//! fewer tokens, the first drawn on ties; the in-flight counts of both when
//! either has no token figure) comes from a
//! `LoadMonitor` that polls each worker's `/get_load` and hands the policy
//! the last poll (`update_loads`). The gateway starts that monitor only for
//! `power_of_two`. Its interval in the 0.3.2 wheel is 30 s: the gateway
//! logs "Starting load monitoring with interval: 30s", and with
//! `--log-level debug` one "Fetched loads from 2 workers" in a 20 s run,
//! after which every choice compared the tokens a replica held at that
//! poll (512 against 0: ten requests in a row to the "empty" one). The
//! first poll runs as the gateway starts, before its workers are
//! registered, and finds nothing ("No loads fetched from workers").
//!
//! Until that poll, then, `power_of_two` compares two zeros and takes the
//! first worker drawn: a uniform draw. The loopback fleet showed it: of 27
//! requests sent while one replica had more requests in flight than the
//! other (the client's clock, the replicas' own events), 14 went to the
//! busier one.
//!
//! Approximation, stated: the gateway starts at the workload's time 0, so
//! the first poll that finds workers falls at one interval and the next
//! ones every interval after; until then choices compare the in-flight
//! counts the gateway keeps (none, under `power_of_two`). A real gateway
//! started earlier polls at another phase.

use crate::router::{RouterKind, WorkerLoad};
use crate::setup::SimEngine;
use kvscope_core::{KvBlockManager, Seconds};

/// The load monitor's interval in the gateway 0.3.2 (from its log line).
pub const GATEWAY_LOAD_CHECK_INTERVAL: Seconds = 30.0;

pub struct LoadMonitor {
    /// `None`: the policy reads no polled load.
    interval: Option<Seconds>,
    /// Whether the gateway counts its in-flight requests for this policy.
    counts_requests: bool,
    next_poll: Seconds,
    polled: Option<Vec<usize>>,
}

impl LoadMonitor {
    pub fn for_router(kind: RouterKind) -> LoadMonitor {
        let interval = (kind == RouterKind::PowerOfTwo).then_some(GATEWAY_LOAD_CHECK_INTERVAL);
        // least_load is the simulator's own policy (not the gateway's): it
        // reads live counts by definition.
        let counts_requests = matches!(kind, RouterKind::CacheAware | RouterKind::LeastLoad);
        LoadMonitor { interval, counts_requests, next_poll: interval.unwrap_or(Seconds::INFINITY), polled: None }
    }

    /// The next poll, if it falls at or before `t`.
    pub fn poll_due_by(&self, t: Seconds) -> Option<Seconds> {
        (self.next_poll <= t).then_some(self.next_poll)
    }

    /// Reads every replica's `/get_load` tokens, as the monitor does.
    pub fn poll(&mut self, engines: &[SimEngine]) {
        self.polled = Some(engines.iter().map(get_load_tokens).collect());
        self.next_poll += self.interval.unwrap_or(Seconds::INFINITY);
    }

    /// Each replica's load as the router sees it now.
    pub fn loads(&self, engines: &[SimEngine]) -> Vec<WorkerLoad> {
        engines
            .iter()
            .enumerate()
            .map(|(i, engine)| {
                let scheduler = engine.scheduler();
                let live = scheduler.num_running() + scheduler.num_waiting();
                WorkerLoad {
                    requests: if self.counts_requests { live } else { 0 },
                    polled_tokens: self.polled.as_ref().map(|p| p[i]),
                }
            })
            .collect()
    }
}

/// `/get_load`'s `num_tokens`, as kvscope serve computes it: the KV the
/// live requests hold plus the prompts still waiting.
fn get_load_tokens(engine: &SimEngine) -> usize {
    let scheduler = engine.scheduler();
    let waiting: usize = scheduler.waiting_ids().filter_map(|id| scheduler.sequence(id)).map(|s| s.prompt.len()).sum();
    scheduler.block_manager().used_tokens() + waiting
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_power_of_two_polls_and_then_every_interval() {
        let rr = LoadMonitor::for_router(RouterKind::RoundRobin);
        assert_eq!(rr.poll_due_by(1e9), None, "round_robin reads no polled load");
        let mut p2 = LoadMonitor::for_router(RouterKind::PowerOfTwo);
        assert_eq!(p2.poll_due_by(29.9), None, "the first poll that finds workers comes one interval in");
        assert_eq!(p2.poll_due_by(31.0), Some(GATEWAY_LOAD_CHECK_INTERVAL));
        p2.poll(&[]);
        assert_eq!(p2.poll_due_by(59.0), None);
        assert_eq!(p2.poll_due_by(60.0), Some(2.0 * GATEWAY_LOAD_CHECK_INTERVAL));
    }
}
