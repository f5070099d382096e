//! Runs one case of a workload on an engine and keeps what the lab needs:
//! the event stream, the per-step statistics and per-request latencies.

use crate::workload::{CaseSpec, LabRequest};
use kvscope_core::block_manager::PrefixCacheCounters;
use kvscope_core::events::EventRecorder;
use kvscope_core::stats::StatsCollector;
use kvscope_core::{
    Clock, Engine, EngineConfig, EventRecord, Executor, KvBlockManager, KvEvent, PoolConfig, RequestId, SamplingParams,
    SchedulerConfig,
};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The engine configuration every case of a lab run shares.
#[derive(Clone, Debug, Serialize)]
pub struct RunConfig {
    pub num_blocks: usize,
    pub block_size: usize,
    pub bytes_per_block: u64,
    pub enable_prefix_caching: bool,
    pub max_running: usize,
    pub max_batched_tokens: usize,
    pub max_model_len: usize,
    pub vocab_size: Option<usize>,
}

impl RunConfig {
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            scheduler: SchedulerConfig {
                max_running: self.max_running,
                max_batched_tokens: self.max_batched_tokens,
                max_model_len: self.max_model_len,
            },
            pool: PoolConfig {
                num_blocks: self.num_blocks,
                block_size: self.block_size,
                enable_prefix_caching: self.enable_prefix_caching,
                bytes_per_block: self.bytes_per_block,
            },
            vocab_size: self.vocab_size,
        }
    }
    pub fn bytes_per_token(&self) -> u64 {
        self.bytes_per_block / self.block_size as u64
    }
    pub fn pool_bytes(&self) -> u64 {
        self.bytes_per_block * self.num_blocks as u64
    }
}

/// What happened to one request.
#[derive(Clone, Debug, Serialize)]
pub struct RequestResult {
    pub request_id: RequestId,
    pub prompt_tokens: usize,
    pub output_tokens: usize,
    pub arrival: f64,
    pub queue_wait: f64,
    pub ttft: f64,
    pub tpot: Option<f64>,
    pub e2e: f64,
    pub cached_prompt_tokens: usize,
    pub preemptions: u32,
    /// Most blocks the request's table held at once.
    pub peak_blocks: usize,
}

#[derive(Clone, Debug)]
pub struct CaseRun {
    pub spec: CaseSpec,
    pub config: RunConfig,
    pub events: Vec<EventRecord>,
    pub stats: StatsCollector,
    pub requests: Vec<RequestResult>,
    /// Requests the engine refused at submission, with the reason.
    pub rejected: Vec<(usize, String)>,
    pub prefix: PrefixCacheCounters,
    /// Engine-clock seconds from start to the last finish.
    pub duration: f64,
    pub steps: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("case {case}: {source}")]
    Executor { case: String, source: kvscope_core::ExecutorError },
}

/// Runs `requests` to completion, submitting each at its arrival time on the
/// engine clock, on `blocks` (or the native block manager). Returns the run
/// and the executor, for the next case.
pub fn run_case<E: Executor, C: Clock>(
    executor: E,
    clock: C,
    config: &RunConfig,
    spec: &CaseSpec,
    requests: &[LabRequest],
    blocks: Option<Box<dyn KvBlockManager>>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(CaseRun, E), RunError> {
    let mut engine = match blocks {
        Some(blocks) => Engine::with_block_manager(config.engine_config(), blocks, executor, clock),
        None => Engine::new(config.engine_config(), executor, clock),
    };
    let recorder = Arc::new(Mutex::new(EventRecorder::default()));
    let stats = Arc::new(Mutex::new(StatsCollector::default()));
    engine.add_observer(Box::new(recorder.clone()));
    engine.add_observer(Box::new(stats.clone()));

    let mut results = Vec::new();
    let mut rejected = Vec::new();
    let mut next = 0;
    let mut done = 0;
    loop {
        let now = engine.clock().now();
        while next < requests.len() && requests[next].arrival <= now {
            let r = &requests[next];
            let params = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(r.max_tokens) };
            if let Err(e) = engine.submit_at(RequestId(r.index as u64), r.prompt.clone(), params, r.arrival) {
                rejected.push((r.index, e.to_string()));
                done += 1;
            }
            next += 1;
        }
        if engine.has_work() {
            let outcome = engine.step().map_err(|source| RunError::Executor { case: spec.name.clone(), source })?;
            for seq in outcome.finished {
                done += 1;
                results.push(seq);
            }
            progress(done, requests.len());
        } else if next < requests.len() {
            engine.clock().wait_until(requests[next].arrival);
        } else {
            break;
        }
    }
    let duration = engine.clock().now();
    let steps = engine.current_step();
    let prefix = engine.scheduler().block_manager().counters();
    let executor = engine.into_executor();
    let events = std::mem::take(&mut recorder.lock().unwrap_or_else(|e| e.into_inner()).events);
    let stats = stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let peaks = peak_blocks(&events);
    let mut requests: Vec<RequestResult> = results
        .into_iter()
        .map(|seq| {
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
                peak_blocks: peaks.get(&seq.id).copied().unwrap_or(0),
            }
        })
        .collect();
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
    };
    Ok((run, executor))
}

/// Most blocks each request held at once, rebuilt from the event stream.
fn peak_blocks(events: &[EventRecord]) -> HashMap<RequestId, usize> {
    let mut held: HashMap<RequestId, usize> = HashMap::new();
    let mut peak: HashMap<RequestId, usize> = HashMap::new();
    for e in events {
        match &e.event {
            KvEvent::Admitted { request_id, blocks, .. } => {
                held.insert(*request_id, blocks.len());
            }
            KvEvent::BlockAppended { request_id, .. } => *held.entry(*request_id).or_default() += 1,
            KvEvent::Released { request_id, .. } => {
                held.insert(*request_id, 0);
            }
            _ => continue,
        }
        let id = e.event.request_id().expect("these events name a request");
        let p = peak.entry(id).or_default();
        *p = (*p).max(held[&id]);
    }
    peak
}
