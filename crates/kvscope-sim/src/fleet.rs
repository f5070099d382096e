//! A simulated fleet: N replicas, each the ordinary simulated engine (its
//! own KV pool and clock, over the cost model), behind one [`Router`].
//!
//! Time is the workload's: before a request is routed at its arrival time,
//! every replica is stepped until its clock reaches that time (or it runs
//! out of work; an idle replica's clock jumps to it), so the router sees
//! each replica's load as the gateway would then ([`LoadMonitor`]: live
//! request counts where the gateway keeps them, and for `power_of_two` the
//! last 30-second poll of token loads, taken on the way). After the last arrival every replica
//! runs to the end. A replica's realized prefix hits are its own block
//! manager's counters: a hit counts only where that engine reused blocks.

use crate::load_monitor::LoadMonitor;
use crate::router::{Router, RouterKind};
use crate::setup::SimEngine;
use kvscope_core::block_manager::PrefixCacheCounters;
use kvscope_core::{Clock, ExecutorError, KvBlockManager, RequestId, SamplingParams, Seconds};
use kvscope_experiment::{Dist, RequestResult, WorkloadRequest};

/// One replica's share of a fleet run.
#[derive(Clone, Debug)]
pub struct ReplicaRun {
    pub requests: Vec<RequestResult>,
    pub prefix: PrefixCacheCounters,
    /// Engine-clock seconds until its last finish.
    pub duration: Seconds,
}

#[derive(Clone, Debug)]
pub struct FleetRun {
    pub router: RouterKind,
    pub replicas: Vec<ReplicaRun>,
    /// Requests a replica refused at submission: (index, reason).
    pub rejected: Vec<(usize, String)>,
}

impl FleetRun {
    /// Prompt tokens served from prefix caches, over the fleet.
    pub fn hit_tokens(&self) -> u64 {
        self.replicas.iter().map(|r| r.prefix.hit_tokens).sum()
    }
    /// Prompt tokens computed (not served from a cache), over the fleet.
    pub fn prefill_tokens(&self) -> u64 {
        self.replicas.iter().map(|r| r.prefix.queried_tokens - r.prefix.hit_tokens).sum()
    }
    fn all(&self, f: impl Fn(&RequestResult) -> f64) -> Dist {
        Dist::of(self.replicas.iter().flat_map(|r| r.requests.iter()).map(f))
    }
    pub fn ttft(&self) -> Dist {
        self.all(|r| r.ttft)
    }
    pub fn queue_wait(&self) -> Dist {
        self.all(|r| r.queue_wait)
    }
}

/// Routes `requests` (in arrival order) over `engines` and runs them all to
/// the end.
pub fn run_fleet(
    mut engines: Vec<SimEngine>,
    router: &mut Router,
    kind: RouterKind,
    requests: impl IntoIterator<Item = WorkloadRequest>,
) -> Result<FleetRun, ExecutorError> {
    let mut finished: Vec<Vec<RequestResult>> = vec![Vec::new(); engines.len()];
    let mut rejected = Vec::new();
    let mut monitor = LoadMonitor::for_router(kind);
    for r in requests {
        while let Some(poll) = monitor.poll_due_by(r.arrival) {
            run_all_until(&mut engines, poll, &mut finished)?;
            monitor.poll(&engines);
        }
        run_all_until(&mut engines, r.arrival, &mut finished)?;
        let loads = monitor.loads(&engines);
        let chosen = router.route(r.prompt.shareable(), r.prompt.len(), &loads);
        let params = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(r.max_tokens) };
        if let Err(e) = engines[chosen].submit_at(RequestId(r.index as u64), r.prompt, params, r.arrival) {
            rejected.push((r.index, e.to_string()));
        }
    }
    run_all_until(&mut engines, Seconds::INFINITY, &mut finished)?;
    let replicas = engines
        .iter()
        .zip(finished)
        .map(|(engine, requests)| ReplicaRun {
            requests,
            prefix: engine.scheduler().block_manager().counters(),
            duration: engine.clock().now(),
        })
        .collect();
    Ok(FleetRun { router: kind, replicas, rejected })
}

fn run_all_until(
    engines: &mut [SimEngine],
    t: Seconds,
    finished: &mut [Vec<RequestResult>],
) -> Result<(), ExecutorError> {
    engines.iter_mut().zip(finished).try_for_each(|(engine, done)| run_until(engine, t, done))
}

/// Steps `engine` while it has work and its clock is before `t`; an idle
/// engine waits until `t` (unless `t` is the end of time).
fn run_until(engine: &mut SimEngine, t: Seconds, done: &mut Vec<RequestResult>) -> Result<(), ExecutorError> {
    let block_size = engine.scheduler().block_manager().block_size();
    while engine.has_work() && engine.clock().now() < t {
        let outcome = engine.step()?;
        done.extend(outcome.finished.iter().map(|seq| RequestResult::of(seq, block_size)));
    }
    if t.is_finite() {
        engine.clock().wait_until(t);
    }
    Ok(())
}
