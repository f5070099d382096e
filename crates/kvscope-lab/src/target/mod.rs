//! `kvscope lab --target URL`: the lab's cases sent to a running engine
//! over its OpenAI streaming completions API, measured at the client, with
//! the engine's `/metrics` polled and (where it publishes them) its KV
//! events read.
//!
//! The cases, their scales, lengths and arrival schedules are the
//! experiment layer's ([`kvscope_experiment::workload`]), the same the
//! local lab runs; the capacity row is the experiment layer's
//! [`CapacityRow`] with what a remote engine cannot show left at zero and
//! listed in the report's "not exposed" section. Nothing here waits without
//! a deadline: every request has a timeout, the poller and the subscriber
//! are stopped when the cases end.

pub mod block_events;
pub mod block_lifecycle;
pub mod capacity;
pub mod case;
pub mod chats;
pub mod engine_id;
pub mod kv_estimate;
pub mod poller;
pub mod replica_case;
pub mod replica_report;
pub mod replicas;
pub mod report;
pub mod watch;
pub mod words;

use block_events::CaseBlocks;
use case::{run_case, CaseInput, CaseResult, PromptForm};
use engine_id::EngineIdentity;
use kv_estimate::KvEstimate;
use kvscope_client::CompletionClient;
use kvscope_experiment::workload::{
    shared_prefix_case, standard_cases, CaseSpec, PromptSource, Scale, WorkloadRequest,
};
use kvscope_wire::{EngineFamily, MetricsPage};
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
    /// TTFT of one request of each case sent alone (the queue-wait
    /// fallback), where the engine has no queue-time metric.
    pub solo_ttft: Vec<Option<f64>>,
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
    let (engine, family) = identify(cfg, &client, &card, &mut problems).await;
    let (kv_estimate, config_vocab) = estimate(cfg, engine.as_ref(), &mut problems)?;
    let vocab = card.vocab_size.or(config_vocab);
    let pool_tokens = engine.as_ref().and_then(|e| e.pool.tokens()).unwrap_or(0);
    let specs = target_cases(cfg, pool_tokens);
    let words = words::Words::default();
    let tokenize = |t: &str| words.tokenize(t);
    let send_chats = cfg.workload == TargetWorkload::Chats;
    let vocab = vocab.filter(|_| !send_chats);
    let source = match vocab {
        Some(v) => PromptSource::Synthetic { vocab: v as u32 },
        None => PromptSource::Generated { tokenize: &tokenize },
    };
    let workloads: Vec<(CaseSpec, Vec<WorkloadRequest>)> = if send_chats {
        vec![chats::case(cfg.scale, cfg.seed, cfg.arrival_rate, &tokenize)]
    } else {
        specs.into_iter().map(|s| (s.clone(), s.generate(&source))).collect()
    };
    let detok = |t: &[kvscope_core::TokenId]| words.text(t);
    let form = if vocab.is_some() { PromptForm::Tokens } else { PromptForm::Text(&detok) };
    if vocab.is_none() && !send_chats {
        problems.push("the target's vocabulary is unknown (no vocab_size in /v1/models or --model-config): prompts were sent as text, their lengths are the engine's usage.prompt_tokens".into());
    }
    let model = card.id.clone().unwrap_or_default();
    let plan = WatchPlan {
        family,
        interval: cfg.metrics_interval,
        kv_events: cfg.kv_events.clone(),
        kv_events_replay: cfg.kv_events_replay.clone(),
    };
    let watch = Watch::start(&client, &plan, started);
    let replicas = ReplicaWatch::start(&cfg.replicas, cfg.metrics_interval, cfg.request_timeout, started)
        .await
        .map_err(|e| TargetError::Setup(format!("{e:#}")))?;
    let input = CaseInput { client: &client, family, start: started, model: &model, form: &form };
    let watched = Watched { target: &watch, replicas: &replicas, engine: engine.as_ref() };
    let (measured, replica_cases) = run_cases(&input, &workloads, &watched, progress, &mut problems).await;
    let kv_events = watch.stop(cfg.kv_events.as_ref());
    let replicas = replicas.finish(replica_cases);
    let outcome =
        Outcome { engine, token_exact: vocab.is_some(), kv_estimate, measured, kv_events, replicas, problems };
    Ok(finish(cfg, outcome, &workloads, &watch, started))
}

/// What the cases run under: the target's watch, the replicas' and the
/// engine as identified.
struct Watched<'a> {
    target: &'a Watch,
    replicas: &'a ReplicaWatch,
    engine: Option<&'a EngineIdentity>,
}

/// Every case in order, each replica scraped just before and after it.
async fn run_cases(
    input: &CaseInput<'_>,
    workloads: &[(CaseSpec, Vec<WorkloadRequest>)],
    watched: &Watched<'_>,
    progress: &mut dyn FnMut(&str),
    problems: &mut Vec<String>,
) -> (Measured, Vec<ReplicaCase>) {
    let mut out = Measured::default();
    let mut replica_cases = Vec::new();
    for (spec, reqs) in workloads {
        progress(&spec.name);
        let before = watched.replicas.scrape_all(input.start).await;
        measure_case(input, spec, reqs, watched.target, watched.engine, &mut out, problems).await;
        if let Some(case) = out.cases.last().filter(|c| c.case == spec.name) {
            replica_cases.extend(watched.replicas.case_figures(case, &before, input.start).await);
        }
    }
    (out, replica_cases)
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
    engine: Option<&EngineIdentity>,
    out: &mut Measured,
    problems: &mut Vec<String>,
) {
    let has_queue_metric =
        input.family.and_then(|f| kvscope_wire::metric_family::source(f, kvscope_wire::Quantity::QueueTime)).is_some();
    let solo = if has_queue_metric || engine.is_none() { None } else { solo_ttft(input, spec, reqs, watch).await };
    out.solo.push(solo);
    match run_case(input, spec, reqs, &watch.polls).await {
        Ok(result) => {
            if result.failed > 0 {
                problems.push(format!(
                    "{}: {} of {} requests failed (first: {})",
                    spec.name,
                    result.failed,
                    result.requests,
                    result.first_error.as_deref().unwrap_or("?")
                ));
            }
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
    let run = run_case(input, &solo_spec, std::slice::from_ref(&alone), &watch.polls).await.ok()?;
    (run.failed == 0).then_some(run.ttft.p50)
}

async fn identify(
    cfg: &TargetConfig,
    client: &CompletionClient,
    card: &kvscope_client::ModelCard,
    problems: &mut Vec<String>,
) -> (Option<EngineIdentity>, Option<EngineFamily>) {
    // A load balancer in front of `--replica-metrics` has no engine
    // metrics of its own (the SGLang gateway answers 404): expected, the
    // engines' figures are the replicas', so it is no gap to report.
    let behind_balancer = !cfg.replicas.metrics.is_empty();
    let mut problems_here = Vec::new();
    let (engine, family) = identify_target(cfg, client, card, &mut problems_here).await;
    if !(behind_balancer && family.is_none()) {
        problems.extend(problems_here);
    }
    (engine, family)
}

async fn identify_target(
    cfg: &TargetConfig,
    client: &CompletionClient,
    card: &kvscope_client::ModelCard,
    problems: &mut Vec<String>,
) -> (Option<EngineIdentity>, Option<EngineFamily>) {
    let page = match client.get_text("/metrics").await {
        Ok((200, text)) => MetricsPage::parse(&text),
        Ok((status, _)) => {
            problems.push(format!("{}/metrics answered HTTP {status}: no engine metrics in this report", cfg.url));
            MetricsPage::default()
        }
        Err(e) => {
            problems.push(format!("{e:#}: no engine metrics in this report"));
            MetricsPage::default()
        }
    };
    match engine_id::family_of(cfg.engine, &page) {
        Ok(family) => {
            let f = family.0;
            let version = engine_id::version(client).await;
            (Some(engine_id::identity(family, card, version, &page)), Some(f))
        }
        Err(why) => {
            problems.push(why);
            (None, None)
        }
    }
}

fn estimate(
    cfg: &TargetConfig,
    engine: Option<&EngineIdentity>,
    problems: &mut Vec<String>,
) -> Result<(Option<KvEstimate>, Option<usize>), TargetError> {
    if let Some((path, text)) = &cfg.model_config {
        let (est, vocab) = kv_estimate::from_hf_config(text, path).map_err(TargetError::Setup)?;
        return Ok((Some(est), vocab));
    }
    let reported = engine.and_then(|e| {
        let pool = &e.pool;
        let metric = format!("{}:cache_config_info", e.family);
        pool.bytes_per_block.zip(pool.block_size).map(|(b, s)| kv_estimate::from_engine(b, s, &metric))
    });
    let local = || {
        let local = cfg.local_model.as_ref()?;
        local.serves(engine.and_then(|e| e.model.as_deref())).then(|| local.estimate.clone())
    };
    let found = reported.or_else(local);
    // The fleet's chats report no capacity in requests: no estimate needed.
    if found.is_none() && cfg.workload == TargetWorkload::LabCases {
        problems.push("no KV size per token: give the model's config.json with --model-config to estimate it".into());
    }
    Ok((found, None))
}

/// What the cases left, before the per-case figures are assembled.
struct Outcome {
    engine: Option<EngineIdentity>,
    token_exact: bool,
    kv_estimate: Option<KvEstimate>,
    measured: Measured,
    kv_events: Option<KvEventsSummary>,
    replicas: Option<ReplicaResults>,
    problems: Vec<String>,
}

fn finish(
    cfg: &TargetConfig,
    outcome: Outcome,
    workloads: &[(CaseSpec, Vec<WorkloadRequest>)],
    watch: &Watch,
    started: Instant,
) -> TargetResults {
    let Outcome { engine, token_exact, kv_estimate, measured, kv_events, replicas, mut problems } = outcome;
    let blocks = watch.blocks.lock().expect("block log");
    let case_blocks = measured
        .cases
        .iter()
        .map(|c| {
            let prompts: Vec<Vec<_>> =
                workloads.iter().find(|(s, _)| s.name == c.case)?.1.iter().map(|r| r.prompt.to_vec()).collect();
            kv_events.as_ref().map(|_| CaseBlocks::of(&blocks, &prompts, c.from, c.to))
        })
        .collect();
    if let Some(e) = kv_events.as_ref().and_then(|k| k.error.clone()) {
        problems.push(format!("KV events: {e}"));
    } else if let Some(k) = kv_events.as_ref().filter(|k| k.batches == 0) {
        problems.push(format!(
            "KV events: no batch arrived from {} (is the engine publishing there? vLLM: --kv-events-config with enable_kv_cache_events; kvscope serve: --kv-events-endpoint); block statistics left blank",
            k.endpoint
        ));
    }
    problems.extend(replicas.iter().flat_map(|r| r.replicas.iter()).filter_map(|r| {
        r.gap.as_ref().map(|gap| format!("replica {} ({}): {gap}; its figures are blank", r.index, r.url))
    }));
    for c in measured.cases.iter().filter(|c| c.output_from_chunks > 0) {
        problems.push(format!(
            "{}: {} streams carried no usage: their output tokens are the chunks with text counted at the client",
            c.case, c.output_from_chunks
        ));
    }
    for c in measured.cases.iter().filter(|_| token_exact) {
        let differ =
            c.engine_prompt_tokens.iter().zip(&c.sent_prompt_tokens).filter(|(e, s)| *e != *s && **e > 0).count();
        if differ > 0 {
            problems.push(format!("{}: the engine counted other prompt lengths than the client sent for {differ} requests (a BOS token added?)", c.case));
        }
    }
    let polls = watch.polls.lock().expect("poll log");
    let capacity = capacity::rows(&measured.cases, engine.as_ref(), kv_estimate.as_ref(), &measured.solo);
    TargetResults {
        url: cfg.url.clone(),
        engine,
        token_exact,
        kv_estimate,
        cases: measured.cases,
        case_blocks,
        capacity,
        solo_ttft: measured.solo,
        metrics_samples: polls.samples.len(),
        samples: polls.samples.clone(),
        metrics_failed: polls.failed,
        metrics_last_error: polls.last_error.clone(),
        kv_events,
        replicas,
        problems,
        wall_seconds: started.elapsed().as_secs_f64(),
    }
}
