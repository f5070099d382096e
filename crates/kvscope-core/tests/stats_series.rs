//! The state time series: a step-0 row with the queue as it was before
//! the first step, and time-weighted figures that count each step as the
//! state it computed with, checked on a scripted clock (every step's
//! duration known in advance).

mod common;

use kvscope_core::events::EventRecorder;
use kvscope_core::executor::{BatchOutput, Executor, ExecutorError, ScheduledBatch};
use kvscope_core::stats::StatsCollector;
use kvscope_core::testing::PagedTokenExecutor;
use kvscope_core::{
    Engine, EngineConfig, PoolConfig, RequestId, SamplingParams, SchedulerConfig, SimClock, StallReason,
};
use std::sync::{Arc, Mutex};

#[test]
fn series_starts_at_t0_with_the_queue() {
    let mut rig = common::rig(64, 4, false, 2, 64);
    let stats = Arc::new(Mutex::new(StatsCollector::default()));
    rig.engine.add_observer(Box::new(stats.clone()));
    for i in 0..3u64 {
        let params = SamplingParams { max_tokens: 3, ignore_eos: true, ..Default::default() };
        rig.engine.submit(RequestId(i), vec![1, 2, 3, 4, 5], params).unwrap();
    }
    let clock = rig.engine.clock().clone();
    while rig.engine.has_work() {
        rig.engine.step().unwrap();
        clock.advance(0.5);
    }
    let s = stats.lock().unwrap().clone();
    let first = &s.rows[0];
    assert_eq!((first.step, first.t, first.waiting, first.running, first.used_blocks), (0, 0.0, 3, 0, 0));
    assert_eq!(s.rows.iter().filter(|r| r.step == 0).count(), 1, "one step-0 row, before the first step only");
    assert_eq!(s.step_rows().len(), s.rows.len() - 1);
    assert_eq!(s.max_live(), 2);
}

/// Each step takes 50 ms plus 10 ms per prompt token it prefills: a
/// prefill of 200 tokens is a long step, a decode a short one.
struct Scripted {
    inner: PagedTokenExecutor,
    clock: SimClock,
}

const STEP_S: f64 = 0.05;
const PREFILL_TOKEN_S: f64 = 0.01;

impl Executor for Scripted {
    fn execute(&mut self, batch: &ScheduledBatch) -> Result<BatchOutput, ExecutorError> {
        self.clock.advance(STEP_S + PREFILL_TOKEN_S * batch.prefill_tokens() as f64);
        self.inner.execute(batch)
    }
}

struct Run {
    stats: StatsCollector,
    events: Vec<kvscope_core::EventRecord>,
}

/// `requests` (prompt tokens, output tokens), all arriving at t = 0, run
/// to the end on the scripted clock.
fn run(max_running: usize, budget: usize, requests: &[(usize, usize)]) -> Run {
    let (num_blocks, block_size) = (256, 16);
    let config = EngineConfig {
        scheduler: SchedulerConfig::new(max_running, budget, 4096),
        pool: PoolConfig { num_blocks, block_size, enable_prefix_caching: false, bytes_per_block: 1024 },
        vocab_size: Some(common::VOCAB as usize),
    };
    let clock = SimClock::new();
    let exec = Scripted { inner: PagedTokenExecutor::new(num_blocks, block_size, common::VOCAB), clock: clock.clone() };
    let mut engine = Engine::new(config, exec, clock).unwrap();
    let stats = Arc::new(Mutex::new(StatsCollector::default()));
    let recorder = Arc::new(Mutex::new(EventRecorder::default()));
    engine.add_observer(Box::new(stats.clone()));
    engine.add_observer(Box::new(recorder.clone()));
    for (i, &(prompt, out)) in requests.iter().enumerate() {
        let params = SamplingParams { max_tokens: out, ignore_eos: true, ..Default::default() };
        // Distinct first tokens: no two prompts share a block by accident.
        let tokens = (0..prompt).map(|j| ((i * 97 + j) % 900 + 1) as u32).collect();
        engine.submit(RequestId(i as u64), tokens, params).unwrap();
    }
    while engine.has_work() {
        engine.step().unwrap();
    }
    drop(engine);
    let stats = stats.lock().unwrap().clone();
    let events = std::mem::take(&mut recorder.lock().unwrap().events);
    Run { stats, events }
}

#[test]
fn one_long_prefill_step_is_one_live_request_for_its_whole_duration() {
    // One step: admits the request, prefills 200 tokens in 2.05 s,
    // samples its only token and releases it.
    let r = run(4, 256, &[(200, 1)]);
    let rows = r.stats.step_rows();
    assert_eq!(rows.len(), 1);
    let step = &rows[0];
    assert!((step.t_start, step.t) == (0.0, 2.05), "the step ran 0 → 2.05 s: {step:?}");
    // After the step nothing is running; during it, the request was live.
    assert_eq!((step.running, step.live), (0, 1));
    assert_eq!(r.stats.max_live(), 1);
    assert!((r.stats.time_weighted_mean_live() - 1.0).abs() < 1e-12, "{}", r.stats.time_weighted_mean_live());
    assert_eq!(r.stats.live_series(), vec![(0.0, 0), (0.0, 1), (2.05, 0)]);
}

#[test]
fn requests_run_one_after_another_are_one_live_request_all_along() {
    // max_running 1: B waits while A prefills (2.05 s) and decodes twice
    // (0.05 s each), then runs (0.13 s prefill, one decode). Counting the
    // state after each step over the next one gives 0.54 here; the
    // requests ran back to back, so one was live at every moment.
    let r = run(1, 256, &[(200, 3), (8, 2)]);
    let s = &r.stats;
    let total = 2.05 + 0.05 + 0.05 + 0.13 + 0.05;
    assert!((s.rows.last().unwrap().t - total).abs() < 1e-9);
    assert!((s.time_weighted_mean_live() - 1.0).abs() < 1e-9, "{}", s.time_weighted_mean_live());
    assert_eq!(s.max_live(), 1);
    assert_eq!(s.peak_live, vec![(RequestId(0), 13)], "200 prompt tokens in blocks of 16");
    // B stalled on max_running for A's three steps: 2.15 s.
    assert_eq!(s.stalls.get(&StallReason::MaxRunning), Some(&3));
    assert!((s.stall_seconds[&StallReason::MaxRunning] - 2.15).abs() < 1e-9, "{:?}", s.stall_seconds);
    assert!((independent_live_mean(&r.events) - 1.0).abs() < 1e-9);
}

#[test]
fn stall_shares_weigh_each_stalled_step_by_its_duration() {
    // Budget 64: A's 200-token prefill takes four steps (64, 64, 64, 8);
    // B stalls on the token budget for the first three, long steps (0.69 s
    // each), and is admitted in the fourth beside A's last chunk; C then
    // stalls on max_running for two short steps (0.21 s and 0.05 s) until
    // B finishes.
    let r = run(2, 64, &[(200, 4), (8, 2), (8, 2)]);
    let s = &r.stats;
    assert_eq!(s.stalls.get(&StallReason::TokenBudget), Some(&3));
    assert_eq!(s.stalls.get(&StallReason::MaxRunning), Some(&2));
    let (budget_s, running_s) = (3.0 * 0.69, 0.21 + 0.05);
    assert!((s.stall_seconds[&StallReason::TokenBudget] - budget_s).abs() < 1e-9, "{:?}", s.stall_seconds);
    assert!((s.stall_seconds[&StallReason::MaxRunning] - running_s).abs() < 1e-9, "{:?}", s.stall_seconds);
    assert!((s.stall_step_share(StallReason::TokenBudget) - 0.6).abs() < 1e-12);
    let by_time = budget_s / (budget_s + running_s);
    assert!((s.stall_time_share(StallReason::TokenBudget) - by_time).abs() < 1e-9);
    assert!((s.stall_time_share(StallReason::MaxRunning) - (1.0 - by_time)).abs() < 1e-9);
    // Live: A alone for three steps, then A and B, then A and C.
    assert_eq!(s.max_live(), 2);
    assert!((s.time_weighted_mean_live() - independent_live_mean(&r.events)).abs() < 1e-9);
}

/// The mean of live requests from the events alone: each request live
/// from its `admitted` event (stamped when its step began) to its
/// `released` event (stamped when its step ended), over the run from the
/// first step's start to the last event.
fn independent_live_mean(events: &[kvscope_core::EventRecord]) -> f64 {
    use kvscope_core::KvEvent;
    let mut open = std::collections::HashMap::new();
    let mut lived = 0.0;
    for e in events {
        match &e.event {
            KvEvent::Admitted { request_id, .. } => {
                open.insert(*request_id, e.t);
            }
            KvEvent::Released { request_id, .. } => lived += e.t - open.remove(request_id).unwrap(),
            _ => {}
        }
    }
    let start = events.iter().filter(|e| e.step >= 1).map(|e| e.t).fold(f64::INFINITY, f64::min);
    let end = events.iter().map(|e| e.t).fold(0.0, f64::max);
    lived / (end - start)
}
