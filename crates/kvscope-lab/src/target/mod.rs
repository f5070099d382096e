//! `kvscope lab --target URL`: the lab's cases sent to a running engine
//! over its OpenAI streaming completions API, measured at the client, with
//! the engine's `/metrics` polled and (where it publishes them) its KV
//! events read.
//!
//! The cases, their scales, lengths and arrival schedules are the
//! experiment layer's ([`kvscope_experiment::workload`]), the same the
//! local lab runs; the capacity row is the experiment layer's
//! [`kvscope_experiment::CapacityRow`] with a mask of what a remote
//! engine cannot show (blank in capacity.csv, "—" in the report, listed
//! in its "not exposed" section). Load sweeps (`--sweep concurrency=…|rate=…`) and the
//! failure-condition search vary only what a client can. Nothing here
//! waits without a deadline: every request has a timeout, the poller and
//! the subscriber are stopped when the runs end.

pub mod block_events;
pub mod block_lifecycle;
pub mod capacity;
pub mod case;
pub mod chats;
pub mod engine_id;
pub mod exposed;
pub mod failure_search;
mod finish;
pub mod kv_estimate;
pub mod load_sweep;
pub mod poller;
pub mod replica_case;
pub mod replica_report;
pub mod replicas;
pub mod report;
pub mod report_model;
pub mod report_sections;
mod setup;
pub mod source_tags;
pub mod watch;
pub mod words;

use block_events::CaseBlocks;
use case::{run_case, CaseInput, CaseResult, PromptForm};
use engine_id::EngineIdentity;
use exposed::Exposed;
use failure_search::FailureInput;
use kv_estimate::KvEstimate;
use kvscope_client::CompletionClient;
use kvscope_experiment::capacity::Known;
use kvscope_experiment::workload::{
    shared_prefix_case, standard_cases, CaseSpec, PromptSource, Scale, WorkloadRequest,
};
use kvscope_wire::{EngineFamily, Quantity};
use load_sweep::{LoadSweep, LoadSweepResult, SweepInput};
use replica_case::ReplicaCase;
use replicas::{ReplicaPlan, ReplicaResults, ReplicaWatch};
use serde::Serialize;
use std::time::{Duration, Instant};
pub use watch::KvEventsSummary;
use watch::{Watch, WatchPlan};

#[derive(Clone, Debug)]
pub struct TargetConfig {
    /// The engine's base URL (`http://host:port`, no `/v1`).
    pub url: String,
    pub api_key: Option<String>,
    /// `None`: detect the family from `/metrics`.
    pub engine: Option<EngineFamily>,
    /// `--model-config`: its path and text (an HF `config.json`).
    pub model_config: Option<(String, String)>,
    pub metrics_interval: Duration,
    pub kv_events: Option<String>,
    pub kv_events_replay: Option<String>,
    pub scale: Scale,
    pub seed: u64,
    pub arrival_rate: Option<f64>,
    /// Every request (and scrape) is given up after this long.
    pub request_timeout: Duration,
    /// The local model's GGUF architecture (`--model`, or the cached
    /// default), used when the target serves the same model and neither
    /// `--model-config` nor the engine gives a KV size.
    pub local_model: Option<kv_estimate::LocalModel>,
    /// `--sweep concurrency=…` / `--sweep rate=…`.
    pub sweeps: Vec<LoadSweep>,
    /// `--slo-ttft` (seconds) and `--failure-budget` (runs per context
    /// length; 0: no failure-condition search).
    pub slo_ttft: f64,
    pub failure_budget: usize,
    /// `--replica-metrics` / `--replica-kv-events`: replicas behind the target.
    pub replicas: ReplicaPlan,
    pub workload: TargetWorkload,
}

/// What the target is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetWorkload {
    /// The lab's capacity cases and its shared-prefix case.
    LabCases,
    /// `shared_prefix_chats` as text, the fleet experiment's case (chats.rs).
    Chats,
}

/// Everything a target run found, and what it could not.
#[derive(Debug, Serialize)]
pub struct TargetResults {
    pub url: String,
    pub engine: Option<EngineIdentity>,
    /// Token-id prompts (token-exact) or text (the engine's counts).
    pub token_exact: bool,
    pub kv_estimate: Option<KvEstimate>,
    pub cases: Vec<CaseResult>,
    pub case_blocks: Vec<Option<CaseBlocks>>,
    pub capacity: Vec<kvscope_experiment::CapacityRow>,
    /// What of each capacity row was measured (the rest is unknown).
    pub capacity_known: Vec<Known>,
    /// TTFT of one request of each case sent alone (the queue-wait
    /// fallback), where the engine has no queue-time metric.
    pub solo_ttft: Vec<Option<f64>>,
    /// Every quantity some scrape held, with the metric it was read from.
    pub exposed: Exposed,
    pub load_sweeps: Vec<LoadSweepResult>,
    pub failure: Option<crate::failure::FailureResults>,
    pub metrics_samples: usize,
    /// Every kept scrape (written as metrics.csv, not into target.json).
    #[serde(skip)]
    pub samples: Vec<poller::MetricsSample>,
    pub metrics_failed: u64,
    pub metrics_last_error: Option<String>,
    pub kv_events: Option<KvEventsSummary>,
    /// Each replica's figures, with `--replica-metrics`.
    pub replicas: Option<ReplicaResults>,
    /// Why the run or a part of it is missing (a partial report).
    pub problems: Vec<String>,
    pub wall_seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("the target {url} does not answer /v1/models ({reason}): is the engine running there, and is the URL its base (http://HOST:PORT, without /v1)?")]
    Unreachable { url: String, reason: String },
    #[error("{0}")]
    Setup(String),
}

/// The cases the target runs: the local lab's three capacity cases and
/// its shared-prefix case (realized reuse), at `cfg`'s scale and seed.
pub fn target_cases(cfg: &TargetConfig, pool_tokens: usize) -> Vec<CaseSpec> {
    let arrival = cfg.arrival_rate.map(|rate| kvscope_experiment::Arrival::Poisson { rate });
    let mut cases: Vec<CaseSpec> = standard_cases(cfg.scale, pool_tokens, cfg.seed)
        .into_iter()
        .map(|spec| CaseSpec { arrival: arrival.clone().unwrap_or(spec.arrival.clone()), ..spec })
        .collect();
    cases.push(shared_prefix_case(cfg.scale, cfg.seed));
    cases
}

/// The capacity cases of [`target_cases`] (the shared-prefix case, last,
/// is not swept or searched).
fn capacity_cases<T>(all: &[T]) -> &[T] {
    &all[..all.len().saturating_sub(1)]
}

/// Runs the lab against the target. `Err` only when the target cannot be
/// reached at all; everything else that goes wrong is in `problems`.
pub async fn run_target(cfg: &TargetConfig, progress: &mut dyn FnMut(&str)) -> Result<TargetResults, TargetError> {
    let started = Instant::now();
    let client = CompletionClient::with_timeout(&cfg.url, cfg.api_key.as_deref(), Some(cfg.request_timeout))
        .map_err(|e| TargetError::Setup(e.to_string()))?;
    let card = client
        .first_model()
        .await
        .map_err(|e| TargetError::Unreachable { url: cfg.url.clone(), reason: format!("{e:#}") })?;
    let mut problems = Vec::new();
    let found = setup::identify(cfg, &client, &card, &mut problems).await;
    let (kv_estimate, config_vocab) = setup::estimate(cfg, found.engine.as_ref(), &mut problems)?;
    // Chats go as text: a gateway's cache-aware policy matches text.
    let send_chats = cfg.workload == TargetWorkload::Chats;
    let vocab = card.vocab_size.or(config_vocab).filter(|_| !send_chats);
    if vocab.is_none() && !send_chats {
        problems.push("the target's vocabulary is unknown (no vocab_size in /v1/models or --model-config): prompts were sent as text, their lengths are the engine's usage.prompt_tokens".into());
    }
    let words = words::Words::default();
    let tokenize = |t: &str| words.tokenize(t);
    let detok = |t: &[kvscope_core::TokenId]| words.text(t);
    let prompts = Prompts {
        source: match vocab {
            Some(v) => PromptSource::Synthetic { vocab: v as u32 },
            None => PromptSource::Generated { tokenize: &tokenize },
        },
        form: if vocab.is_some() { PromptForm::Tokens } else { PromptForm::Text(&detok) },
        vocab,
        words: &words,
    };
    let model = card.id.clone().unwrap_or_default();
    let replicas = ReplicaWatch::start(&cfg.replicas, cfg.metrics_interval, cfg.request_timeout, started)
        .await
        .map_err(|e| TargetError::Setup(format!("{e:#}")))?;
    let input = CaseInput { client: &client, family: found.family, start: started, model: &model, form: &prompts.form };
    let mut run = run_all(cfg, &input, &found, &replicas, &prompts, progress, &mut problems).await;
    let replicas = replicas.finish(std::mem::take(&mut run.replica_cases));
    let outcome = finish::Outcome { found, token_exact: vocab.is_some(), kv_estimate, run, replicas, problems };
    Ok(finish::finish(cfg, outcome, started))
}

/// How prompts are drawn and sent.
struct Prompts<'a> {
    source: PromptSource<'a>,
    form: PromptForm<'a>,
    vocab: Option<usize>,
    words: &'a words::Words,
}

impl Prompts<'_> {
    /// The ids a synthetic prompt is drawn below (the failure search's
    /// fixed-length prompts): the vocabulary, else the words numbered so
    /// far (sent as those words).
    fn synthetic_vocab(&self) -> u32 {
        self.vocab.unwrap_or_else(|| self.words.len().max(1)) as u32
    }
}

/// What every run left.
struct Runs {
    workloads: Vec<(CaseSpec, Vec<WorkloadRequest>)>,
    measured: Measured,
    /// Each replica's figures per case (`--replica-metrics`).
    replica_cases: Vec<ReplicaCase>,
    load_sweeps: Vec<LoadSweepResult>,
    failure: Option<crate::failure::FailureResults>,
    watch: Watch,
    kv_events: Option<KvEventsSummary>,
}

/// The cases, then the sweeps, then the failure search, all watched.
async fn run_all(
    cfg: &TargetConfig,
    input: &CaseInput<'_>,
    found: &setup::Identified,
    replicas: &ReplicaWatch,
    prompts: &Prompts<'_>,
    progress: &mut dyn FnMut(&str),
    problems: &mut Vec<String>,
) -> Runs {
    let pool_tokens = found.engine.as_ref().and_then(|e| e.pool.tokens()).unwrap_or(0);
    let workloads = workloads(cfg, pool_tokens, prompts);
    let plan = WatchPlan {
        family: found.family,
        interval: cfg.metrics_interval,
        kv_events: cfg.kv_events.clone(),
        kv_events_replay: cfg.kv_events_replay.clone(),
    };
    let watch = Watch::start(input.client, &plan, input.start);
    let queue_metric = found.exposed.metric(Quantity::QueueTime).is_some() || found.engine.is_none();
    let mut measured = Measured::default();
    let mut replica_cases = Vec::new();
    for (spec, reqs) in &workloads {
        progress(&format!("case {}", spec.name));
        // Each replica scraped just before and after the case.
        let before = replicas.scrape_all(input.start).await;
        measure_case(input, spec, reqs, &watch, queue_metric, &mut measured, problems).await;
        if let Some(case) = measured.cases.last().filter(|c| c.case == spec.name) {
            replica_cases.extend(replicas.case_figures(case, &before, input.start).await);
        }
    }
    let sweep_input = SweepInput {
        case: input,
        cases: capacity_cases(&workloads),
        solo: capacity_cases(&measured.solo),
        source: &prompts.source,
        polls: &watch.polls,
    };
    let mut load_sweeps = Vec::new();
    for sweep in &cfg.sweeps {
        let values: Vec<String> = sweep.values.iter().map(|v| v.to_string()).collect();
        progress(&format!("--sweep {}={}", sweep.knob.name(), values.join(",")));
        load_sweeps.push(load_sweep::run(&sweep_input, sweep, problems).await);
    }
    let failure = if cfg.failure_budget > 0 {
        progress("failure conditions");
        let synthetic = PromptSource::Synthetic { vocab: prompts.synthetic_vocab() };
        let preemptions_exposed = watch.polls.lock().expect("poll log").exposed.metric(Quantity::Preemptions).is_some()
            || found.exposed.metric(Quantity::Preemptions).is_some();
        let failure_input = FailureInput { case: input, source: &synthetic, polls: &watch.polls, preemptions_exposed };
        let plan = failure_plan(cfg, pool_tokens, prompts.synthetic_vocab());
        Some(failure_search::search(&failure_input, &plan, problems).await)
    } else {
        None
    };
    let kv_events = watch.stop(cfg.kv_events.as_ref());
    Runs { workloads, measured, replica_cases, load_sweeps, failure, watch, kv_events }
}

/// The cases and their requests: the lab's ([`target_cases`]), or the
/// fleet experiment's chats, sent as text.
fn workloads(cfg: &TargetConfig, pool_tokens: usize, prompts: &Prompts<'_>) -> Vec<(CaseSpec, Vec<WorkloadRequest>)> {
    match cfg.workload {
        TargetWorkload::LabCases => {
            target_cases(cfg, pool_tokens).into_iter().map(|s| (s.clone(), s.generate(&prompts.source))).collect()
        }
        TargetWorkload::Chats => {
            let tokenize = |t: &str| prompts.words.tokenize(t);
            vec![chats::case(cfg.scale, cfg.seed, cfg.arrival_rate, &tokenize)]
        }
    }
}

/// The local lab's plan (its sweep's context lengths, its ladder) for a
/// target: the client does not know the engine's cap on running requests,
/// so the concurrency ladder tops out at twice the sweep's requests.
fn failure_plan(cfg: &TargetConfig, pool_tokens: usize, vocab: u32) -> crate::failure::FailurePlan {
    let sweep = crate::workloads::SweepSpec::at(cfg.scale, pool_tokens);
    crate::failure::FailurePlan::new(&sweep, 0, cfg.arrival_rate, cfg.slo_ttft, cfg.failure_budget, cfg.seed, vocab)
}

#[derive(Default)]
struct Measured {
    cases: Vec<CaseResult>,
    solo: Vec<Option<f64>>,
}

/// One case: alone first when the engine has no queue-time metric (the
/// fallback's baseline), then the case itself.
async fn measure_case(
    input: &CaseInput<'_>,
    spec: &CaseSpec,
    reqs: &[WorkloadRequest],
    watch: &Watch,
    queue_metric: bool,
    out: &mut Measured,
    problems: &mut Vec<String>,
) {
    let solo = if queue_metric { None } else { solo_ttft(input, spec, reqs, watch).await };
    out.solo.push(solo);
    match run_case(input, spec, reqs, None, &watch.polls).await {
        Ok(result) => {
            problems.extend(result.failures(&spec.name));
            out.cases.push(result);
        }
        Err(e) => problems.push(format!("{}: not run ({e:#})", spec.name)),
    }
}

/// The TTFT of the case's first request sent alone, its tokens reversed
/// so that the case itself finds nothing of it in the prefix cache.
async fn solo_ttft(input: &CaseInput<'_>, spec: &CaseSpec, reqs: &[WorkloadRequest], watch: &Watch) -> Option<f64> {
    let first = reqs.first()?;
    let reversed: Vec<_> = first.prompt.iter().rev().copied().collect();
    let alone = WorkloadRequest { index: 0, arrival: 0.0, prompt: reversed.into(), max_tokens: first.max_tokens };
    let solo_spec = CaseSpec { name: format!("{}_alone", spec.name), num_requests: 1, ..spec.clone() };
    let run = run_case(input, &solo_spec, std::slice::from_ref(&alone), None, &watch.polls).await.ok()?;
    (run.failed == 0).then_some(run.ttft.p50)
}
