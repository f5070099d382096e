//! One case of the lab sent to the target: its requests on its arrival
//! schedule through kvscope-client, timed at the client, with the engine's
//! counters read just before and just after.

use super::poller::{scrape, MetricsSample, PollLog};
use kvscope_client::{replay, BenchPrompt, CompletionClient, CompletionRequest, Endpoint, RequestTiming};
use kvscope_experiment::workload::{CaseSpec, WorkloadRequest};
use kvscope_experiment::Dist;
use kvscope_wire::{EngineFamily, HistogramSample, Quantity};
use serde::Serialize;
use std::time::Instant;

/// How prompts go to the target.
pub enum PromptForm<'a> {
    /// Token ids (`prompt: [int]`): token-exact.
    Tokens,
    /// Text made from the words the stand-in tokenizer numbered; the
    /// engine's `usage.prompt_tokens` is what it saw.
    Text(&'a dyn Fn(&[kvscope_core::TokenId]) -> String),
}

/// What one case measured.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub case: String,
    pub arrival: kvscope_experiment::Arrival,
    pub requests: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    /// Seconds since the lab's start.
    pub from: f64,
    pub to: f64,
    /// Client-measured.
    pub ttft: Dist,
    pub itl: Dist,
    pub e2e: Dist,
    /// The engine's `usage.completion_tokens`, per request; where a
    /// stream carried no usage, its chunks with text (one token each in
    /// every engine checked), counted in `output_from_chunks`.
    pub output_tokens: Vec<usize>,
    pub output_from_chunks: usize,
    /// The engine's `usage.prompt_tokens`, per request.
    pub engine_prompt_tokens: Vec<usize>,
    /// The tokens the client sent, per request (token-id prompts).
    pub sent_prompt_tokens: Vec<usize>,
    pub max_tokens: Vec<usize>,
    /// Counter deltas over the case (engine metrics), by quantity.
    #[serde(serialize_with = "by_name")]
    pub deltas: Vec<(Quantity, f64)>,
    /// Gauge extremes over the case's samples.
    pub running: Option<Series>,
    pub waiting: Option<Series>,
    pub kv_usage: Option<Series>,
    /// The queue-time histogram's delta over the case.
    #[serde(skip)]
    pub queue_time: Option<HistogramSample>,
    /// Per request: TTFT at the client (for the queue-wait fallback).
    pub ttfts: Vec<f64>,
}

/// A gauge over a case: its time-weighted mean (over samples) and max.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Series {
    pub mean: f64,
    pub max: f64,
    pub samples: usize,
}

impl CaseResult {
    pub fn delta(&self, q: Quantity) -> Option<f64> {
        self.deltas.iter().find(|(d, _)| *d == q).map(|(_, v)| *v)
    }

    /// What the partial report says when some of the run's requests
    /// failed (`None`: none did); `run` names the run.
    pub fn failures(&self, run: &str) -> Option<String> {
        (self.failed > 0).then(|| {
            let first = self.first_error.as_deref().unwrap_or("?");
            format!("{run}: {} of {} requests failed (first: {first})", self.failed, self.requests)
        })
    }
}

/// A gauge's mean and max over `samples` (`None`: never on the page).
pub fn series(samples: &[&MetricsSample], q: Quantity) -> Option<Series> {
    let values: Vec<f64> = samples.iter().filter_map(|s| s.get(q)).collect();
    if values.is_empty() {
        return None;
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    Some(Series { mean, max: values.iter().copied().fold(f64::MIN, f64::max), samples: values.len() })
}

/// The case's requests as completions: greedy, exactly `max_tokens` out.
pub fn requests(model: &str, reqs: &[WorkloadRequest], form: &PromptForm) -> Vec<CompletionRequest> {
    reqs.iter()
        .map(|r| CompletionRequest {
            endpoint: Endpoint::Completions,
            model: model.to_string(),
            prompt: match form {
                PromptForm::Tokens => BenchPrompt::Tokens(r.prompt.to_vec()),
                PromptForm::Text(detok) => BenchPrompt::Text(detok(&r.prompt)),
            },
            max_tokens: r.max_tokens,
            ignore_eos: true,
        })
        .collect()
}

/// `spec` with its prompts drawn from another seed (`salt`), the same
/// lengths: a remote engine keeps its prefix cache between runs, and a run
/// that found an earlier run's prompts cached would measure the cache.
pub fn with_fresh_prompts(spec: CaseSpec, salt: u64) -> CaseSpec {
    CaseSpec { seed: spec.seed.wrapping_add(7919 * salt), ..spec }
}

pub struct CaseInput<'a> {
    pub client: &'a CompletionClient,
    pub family: Option<EngineFamily>,
    pub start: Instant,
    pub model: &'a str,
    pub form: &'a PromptForm<'a>,
}

/// Sends the case (at most `in_flight` requests at once, when given) and
/// reads the engine's counters around it.
pub async fn run_case(
    input: &CaseInput<'_>,
    spec: &CaseSpec,
    reqs: &[WorkloadRequest],
    in_flight: Option<usize>,
    log: &std::sync::Mutex<PollLog>,
) -> anyhow::Result<CaseResult> {
    let now = |start: Instant| start.elapsed().as_secs_f64();
    let scrape_now = || async {
        match input.family {
            Some(f) => scrape(input.client, f, now(input.start)).await.ok(),
            None => None,
        }
    };
    let before = scrape_now().await;
    let from = now(input.start);
    let arrivals: Vec<f64> = reqs.iter().map(|r| r.arrival).collect();
    let done = replay(input.client, requests(input.model, reqs, input.form), &arrivals, in_flight).await?;
    let to = now(input.start);
    let after = scrape_now().await;
    let timings = &done.timings;
    let mut log = log.lock().expect("poll log");
    before.iter().chain(&after).for_each(|s| log.note(s));
    let window: Vec<&MetricsSample> = log.between(from, to).chain(after.as_ref()).collect();
    Ok(CaseResult {
        case: spec.name.clone(),
        arrival: spec.arrival.clone(),
        requests: reqs.len(),
        failed: timings.iter().filter(|t| t.error.is_some()).count(),
        first_error: timings.iter().find_map(|t| t.error.clone()),
        from,
        to,
        ttft: Dist::of(timings.iter().filter_map(|t| t.ttft)),
        itl: Dist::of(timings.iter().flat_map(|t| t.itl.iter().copied())),
        e2e: Dist::of(timings.iter().filter(|t| t.error.is_none()).map(|t| t.e2e)),
        output_tokens: timings.iter().map(output_tokens).collect(),
        output_from_chunks: timings.iter().filter(|t| t.output_tokens == 0 && t.ttft.is_some()).count(),
        engine_prompt_tokens: timings.iter().map(|t| t.prompt_tokens).collect(),
        sent_prompt_tokens: reqs.iter().map(|r| r.prompt.len()).collect(),
        max_tokens: reqs.iter().map(|r| r.max_tokens).collect(),
        deltas: deltas(before.as_ref(), after.as_ref()),
        running: series(&window, Quantity::RunningRequests),
        waiting: series(&window, Quantity::WaitingRequests),
        kv_usage: series(&window, Quantity::KvUsage),
        queue_time: before.as_ref().zip(after.as_ref()).and_then(|(b, a)| {
            a.queue_time.as_ref().map(|q| q.since(b.queue_time.as_ref().unwrap_or(&Default::default())))
        }),
        ttfts: timings.iter().map(ttft_or_nan).collect(),
    })
}

pub fn by_name<S: serde::Serializer>(deltas: &[(Quantity, f64)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(deltas.iter().map(|(q, v)| (format!("{q:?}"), v)))
}

/// `usage.completion_tokens`, else the chunks with text (the first one and
/// one per gap after it).
fn output_tokens(t: &RequestTiming) -> usize {
    match (t.output_tokens, t.ttft) {
        (0, Some(_)) => t.itl.len() + 1,
        (n, _) => n,
    }
}

fn ttft_or_nan(t: &RequestTiming) -> f64 {
    t.ttft.unwrap_or(f64::NAN)
}

/// Counter differences between two scrapes.
pub fn deltas(before: Option<&MetricsSample>, after: Option<&MetricsSample>) -> Vec<(Quantity, f64)> {
    let (Some(b), Some(a)) = (before, after) else { return Vec::new() };
    [
        Quantity::PrefixQueries,
        Quantity::PrefixHits,
        Quantity::Preemptions,
        Quantity::PromptTokens,
        Quantity::GenerationTokens,
        Quantity::Evictions,
    ]
    .into_iter()
    .filter_map(|q| Some((q, a.get(q)? - b.get(q).unwrap_or(0.0))))
    .collect()
}
