//! The target's runs assembled into its results: each case's block
//! statistics from the KV events, its capacity row and what of it is
//! known, and every problem a partial report must say.

use super::block_events::CaseBlocks;
use super::kv_estimate::KvEstimate;
use super::replicas::ReplicaResults;
use super::setup::Identified;
use super::{capacity, Runs, TargetConfig, TargetResults};
use std::time::Instant;

/// What the runs left, before the per-case figures are assembled.
pub(super) struct Outcome {
    pub found: Identified,
    pub token_exact: bool,
    pub kv_estimate: Option<KvEstimate>,
    pub run: Runs,
    pub replicas: Option<ReplicaResults>,
    pub problems: Vec<String>,
}

pub(super) fn finish(cfg: &TargetConfig, outcome: Outcome, started: Instant) -> TargetResults {
    let Outcome { found, token_exact, kv_estimate, run, replicas, mut problems } = outcome;
    let Runs { workloads, measured, load_sweeps, failure, watch, kv_events, .. } = run;
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
    kv_event_problems(kv_events.as_ref(), &mut problems);
    for r in replicas.iter().flat_map(|r| r.replicas.iter()) {
        if let Some(gap) = &r.gap {
            problems.push(format!("replica {} ({}): {gap}; its figures are blank", r.index, r.url));
        }
        // A subscription that failed; no batch at all is no problem here:
        // routing may leave a replica idle.
        if let Some(e) = r.kv_events.as_ref().and_then(|k| k.error.as_ref()) {
            problems.push(format!("replica {} ({}) KV events: {e}", r.index, r.url));
        }
    }
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
    let Identified { engine, mut exposed, .. } = found;
    exposed.merge(&polls.exposed);
    let (capacity, capacity_known) =
        capacity::rows(&measured.cases, engine.as_ref(), kv_estimate.as_ref(), &measured.solo);
    TargetResults {
        url: cfg.url.clone(),
        engine,
        token_exact,
        kv_estimate,
        cases: measured.cases,
        case_blocks,
        capacity,
        capacity_known,
        solo_ttft: measured.solo,
        exposed,
        load_sweeps,
        failure,
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

fn kv_event_problems(kv_events: Option<&super::KvEventsSummary>, problems: &mut Vec<String>) {
    if let Some(e) = kv_events.and_then(|k| k.error.clone()) {
        problems.push(format!("KV events: {e}"));
    } else if let Some(k) = kv_events.filter(|k| k.batches == 0) {
        problems.push(format!(
            "KV events: no batch arrived from {} (is the engine publishing there? vLLM: --kv-events-config with enable_kv_cache_events; kvscope serve: --kv-events-endpoint); block statistics left blank",
            k.endpoint
        ));
    }
}
