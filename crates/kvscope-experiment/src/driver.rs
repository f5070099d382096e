//! The one arrival loop: submits each request of a workload at its arrival
//! time on the engine's clock, steps the engine (any executor: the real
//! model, the simulator, a test double) until every accepted request
//! finished, and keeps what the tables need.

use crate::workload::{CaseSpec, WorkloadRequest};
use kvscope_core::block_manager::PrefixCacheCounters;
use kvscope_core::events::EventRecorder;
use kvscope_core::stats::StatsCollector;
use kvscope_core::{
    Clock, Engine, EngineConfig, EventRecord, Executor, KvBlockManager, RequestId, SamplingParams, Seconds, Sequence,
};
use serde::Serialize;
use std::sync::{Arc, Mutex};

/// How much of the run to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// Every event and a statistics row per step (the lab's artifacts).
    EveryStep,
    /// Only what the capacity table needs: requests, stall counts, a
    /// statistics row per step or per decode run; no per-token `decode`
    /// events. Lets an executor that can (the simulator) advance runs of
    /// identical decode steps in one go.
    Summary,
    /// What [`Detail::Summary`] keeps, but every engine step run on its
    /// own: checks the decode-run fast path at any size, since no event is
    /// kept (`kvscope sim --step-by-step`).
    StepByStep,
}

/// How to run a case: how much to keep, and when to end.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunOptions {
    pub detail: Detail,
    pub stop: Stop,
}

impl RunOptions {
    /// Every step's events, every request to the end (the lab).
    pub const EVERY_STEP: RunOptions = RunOptions { detail: Detail::EveryStep, stop: Stop::AtTheEnd };
    /// What the tables need, every request to the end (the simulator).
    pub const SUMMARY: RunOptions = RunOptions { detail: Detail::Summary, stop: Stop::AtTheEnd };
}

/// When a run ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stop {
    /// When every request finished.
    AtTheEnd,
    /// As soon as `count` finished requests had a TTFT above `seconds`, or
    /// at the end: a rate search needs to know that an objective is missed,
    /// not by how much, and an overloaded run is the slowest to finish.
    WhenTtftAbove { seconds: Seconds, count: usize },
}

/// What happened to one request.
#[derive(Clone, Debug, Serialize)]
pub struct RequestResult {
    pub request_id: RequestId,
    pub prompt_tokens: usize,
    pub output_tokens: usize,
    pub arrival: Seconds,
    pub queue_wait: Seconds,
    pub ttft: Seconds,
    pub tpot: Option<Seconds>,
    pub e2e: Seconds,
    pub cached_prompt_tokens: usize,
    pub preemptions: u32,
    /// Most blocks the request's table held at once: its whole KV but the
    /// last sampled token's, in blocks.
    pub peak_blocks: usize,
}

impl RequestResult {
    pub fn of(seq: &Sequence, block_size: usize) -> RequestResult {
        let t = &seq.timeline;
        RequestResult {
            request_id: seq.id,
            prompt_tokens: seq.prompt.len(),
            output_tokens: seq.output.len(),
            arrival: t.arrival,
            queue_wait: t.queue_wait().unwrap_or(0.0),
            ttft: t.ttft().unwrap_or(0.0),
            tpot: seq.tpot(),
            e2e: t.e2e().unwrap_or(0.0),
            cached_prompt_tokens: seq.num_cached_prompt_tokens,
            preemptions: seq.preemptions,
            peak_blocks: (seq.len().saturating_sub(1)).div_ceil(block_size),
        }
    }
}

/// One case run to completion.
#[derive(Clone, Debug)]
pub struct CaseRun {
    pub spec: CaseSpec,
    pub config: EngineConfig,
    /// Every event (empty unless [`Detail::EveryStep`]).
    pub events: Vec<EventRecord>,
    pub stats: StatsCollector,
    /// Finished requests, by id.
    pub requests: Vec<RequestResult>,
    /// Requests the engine refused at submission, with the reason.
    pub rejected: Vec<(usize, String)>,
    pub prefix: PrefixCacheCounters,
    /// Engine-clock seconds from start to the last finish.
    pub duration: Seconds,
    pub steps: u64,
    /// Decode runs advanced in one go (0 unless [`Detail::Summary`] on an
    /// executor that prices them).
    pub decode_runs: u64,
    /// The run ended early under [`Stop::WhenTtftAbove`]: `requests` holds
    /// only those that finished by then.
    pub stopped_early: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("case {case}: {source}")]
    Executor { case: String, source: kvscope_core::ExecutorError },
    #[error("case {case}: arrival {index} at {at} s comes before its predecessor: sort the workload by arrival time")]
    Unordered { case: String, index: usize, at: Seconds },
    #[error("case {case}: {source}")]
    Config { case: String, source: kvscope_core::ConfigError },
}

/// Runs `requests` (in arrival order; taken one by one as they arrive) to
/// completion on a fresh engine, submitting each at its arrival time on the
/// engine clock. Returns the run and the executor, for the next case.
pub fn run_case<E: Executor, C: Clock>(
    executor: E,
    clock: C,
    config: &EngineConfig,
    spec: &CaseSpec,
    requests: impl IntoIterator<Item = WorkloadRequest>,
    options: RunOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(CaseRun, E), RunError> {
    let engine = Engine::new(config.clone(), executor, clock)
        .map_err(|source| RunError::Config { case: spec.name.clone(), source })?;
    run_engine(engine, config, spec, requests, options, progress)
}

/// `run_case` on an engine the caller built from `config` (one whose block
/// manager is a plug-in, say: `Engine::with_block_manager`).
pub fn run_engine<E: Executor, C: Clock, B: KvBlockManager>(
    mut engine: Engine<E, C, B>,
    config: &EngineConfig,
    spec: &CaseSpec,
    requests: impl IntoIterator<Item = WorkloadRequest>,
    options: RunOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(CaseRun, E), RunError> {
    let RunOptions { detail, stop } = options;
    let mut pending = requests.into_iter().peekable();
    let mut last_arrival = f64::NEG_INFINITY;
    let recorder = Arc::new(Mutex::new(EventRecorder::default()));
    let stats = Arc::new(Mutex::new(StatsCollector::default()));
    match detail {
        Detail::EveryStep => engine.add_observer(Box::new(recorder.clone())),
        Detail::Summary | Detail::StepByStep => engine.set_decode_events(false),
    }
    engine.add_observer(Box::new(stats.clone()));
    let executor_error = |source| RunError::Executor { case: spec.name.clone(), source };

    let mut finished: Vec<RequestResult> = Vec::new();
    let mut slow_first_tokens = 0;
    let mut stopped_early = false;
    let mut rejected = Vec::new();
    let mut decode_runs = 0;
    loop {
        let now = engine.clock().now();
        while let Some(r) = pending.next_if(|r| r.arrival <= now) {
            if r.arrival < last_arrival {
                return Err(RunError::Unordered { case: spec.name.clone(), index: r.index, at: r.arrival });
            }
            last_arrival = r.arrival;
            let params = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(r.max_tokens) };
            if let Err(e) = engine.submit_at(RequestId(r.index as u64), r.prompt, params, r.arrival) {
                rejected.push((r.index, e.to_string()));
            }
        }
        let next_arrival = pending.peek().map(|r| r.arrival);
        if engine.has_work() {
            let start_before = next_arrival.unwrap_or(f64::INFINITY);
            if detail == Detail::Summary && engine.try_decode_run(start_before).map_err(executor_error)?.is_some() {
                decode_runs += 1;
                continue;
            }
            let outcome = engine.step().map_err(executor_error)?;
            // Kept as results: a finished request's tokens are not needed.
            finished.extend(outcome.finished.iter().map(|seq| RequestResult::of(seq, config.pool.block_size)));
            progress(finished.len() + rejected.len(), spec.num_requests);
            if let Stop::WhenTtftAbove { seconds, count } = stop {
                let new = &finished[finished.len() - outcome.finished.len()..];
                slow_first_tokens += new.iter().filter(|r| r.ttft > seconds).count();
                if slow_first_tokens >= count {
                    stopped_early = true;
                    break;
                }
            }
        } else if let Some(at) = next_arrival {
            engine.clock().wait_until(at);
        } else {
            break;
        }
    }
    let duration = engine.clock().now();
    let steps = engine.current_step();
    let prefix = engine.scheduler().block_manager().counters();
    let executor = engine.into_executor();
    let events = std::mem::take(&mut recorder.lock().unwrap_or_else(|e| e.into_inner()).events);
    let stats = std::mem::take(&mut *stats.lock().unwrap_or_else(|e| e.into_inner()));
    let mut requests = finished;
    requests.sort_by_key(|r| r.request_id);
    let run = CaseRun {
        spec: spec.clone(),
        config: config.clone(),
        events,
        stats,
        requests,
        rejected,
        prefix,
        duration,
        steps,
        decode_runs,
        stopped_early,
    };
    Ok((run, executor))
}
