//! A minimal open-loop driver: requests arrive at given times on the
//! engine's clock and the engine steps until all of them are done. When
//! nothing is runnable the clock jumps (simulated) or sleeps (wall) to the
//! next arrival.

use kvscope_core::{Clock, Engine, Executor, ExecutorError, RequestId, SamplingParams, Seconds, SubmitError, TokenId};
use serde::Serialize;

/// One request of an arrival process.
#[derive(Clone, Debug)]
pub struct Arrival {
    pub at: Seconds,
    pub prompt: Vec<TokenId>,
    pub params: SamplingParams,
}

/// What one finished request experienced, in engine-clock seconds.
#[derive(Clone, Debug, Serialize)]
pub struct RequestMetrics {
    /// Index into the arrivals (also its `RequestId`).
    pub index: usize,
    pub arrival: Seconds,
    pub queue_wait: Seconds,
    pub ttft: Seconds,
    pub e2e: Seconds,
    pub prompt_tokens: usize,
    pub output_tokens: usize,
    pub preemptions: u32,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RunSummary {
    /// Finished requests, in finishing order.
    pub requests: Vec<RequestMetrics>,
    /// Arrivals refused at submission, with the reason.
    #[serde(skip)]
    pub rejected: Vec<(usize, SubmitError)>,
    /// Clock time when the last request finished.
    pub makespan: Seconds,
    pub steps: u64,
}

impl RunSummary {
    /// The `q`-quantile (0..=1, nearest rank) of a metric over finished
    /// requests; 0 when none finished.
    pub fn quantile(&self, q: f64, metric: impl Fn(&RequestMetrics) -> Seconds) -> Seconds {
        let mut v: Vec<f64> = self.requests.iter().map(metric).collect();
        quantile(&mut v, q)
    }
}

/// Nearest-rank quantile; sorts `v`. 0 for an empty slice.
pub fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize;
    v[rank.saturating_sub(1).min(v.len() - 1)]
}

#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error(transparent)]
    Executor(#[from] ExecutorError),
    #[error("arrivals must be in time order: arrival {index} at {at} s comes before its predecessor")]
    Unordered { index: usize, at: Seconds },
    #[error("the engine stopped making progress with {waiting} requests waiting and none running")]
    Stuck { waiting: usize },
}

/// Submits `arrivals` (sorted by time; request id = index) at their times
/// and steps the engine until every accepted request finished.
pub fn run_arrivals<E: Executor, C: Clock>(
    engine: &mut Engine<E, C>,
    arrivals: &[Arrival],
) -> Result<RunSummary, DriveError> {
    if let Some(i) = (1..arrivals.len()).find(|&i| arrivals[i].at < arrivals[i - 1].at) {
        return Err(DriveError::Unordered { index: i, at: arrivals[i].at });
    }
    let mut summary = RunSummary::default();
    let mut next = 0;
    loop {
        let now = engine.clock().now();
        while next < arrivals.len() && arrivals[next].at <= now {
            let a = &arrivals[next];
            if let Err(e) = engine.submit_at(RequestId(next as u64), a.prompt.clone(), a.params.clone(), a.at) {
                summary.rejected.push((next, e));
            }
            next += 1;
        }
        if !engine.has_work() {
            match arrivals.get(next) {
                Some(a) => {
                    engine.clock().wait_until(a.at);
                    continue;
                }
                None => break,
            }
        }
        let outcome = engine.step()?;
        summary.steps += 1;
        for seq in outcome.finished {
            let t = &seq.timeline;
            summary.requests.push(RequestMetrics {
                index: seq.id.0 as usize,
                arrival: t.arrival,
                queue_wait: t.queue_wait().unwrap_or(0.0),
                ttft: t.ttft().unwrap_or(0.0),
                e2e: t.e2e().unwrap_or(0.0),
                prompt_tokens: seq.prompt.len(),
                output_tokens: seq.output.len(),
                preemptions: seq.preemptions,
            });
        }
        let scheduler = engine.scheduler();
        if scheduler.num_running() == 0 && scheduler.num_waiting() > 0 && next >= arrivals.len() {
            return Err(DriveError::Stuck { waiting: scheduler.num_waiting() });
        }
    }
    summary.makespan = engine.clock().now();
    Ok(summary)
}
