//! The failure conditions on a target (`--failure-budget N`, `--slo-ttft
//! S`): the local lab's search ([`crate::failure`]: its plan, load ladder
//! and bisection) over what a client can vary — the context length of the
//! causal chain's sweep, and the concurrency (all at once) or, with
//! `--arrival-rate`, the Poisson rate — at most N runs per length.
//!
//! Only what the target shows is searched: TTFT p90 above the SLO
//! (client-measured) always; a preemption where a scrape held the engine's
//! preemption counter; an admission stall never (no engine exports why
//! its queue waits), so that column says "not exposed". Every run's
//! prompts are fresh (another seed, the same lengths): the engine keeps
//! its prefix cache between runs.

use super::case::{run_case, with_fresh_prompts, CaseInput, CaseResult};
use super::poller::PollLog;
use crate::failure::{
    Bisection, Condition, FailurePlan, FailurePoint, FailureResults, LoadRun, Source, Threshold, TARGET,
};
use kvscope_experiment::workload::PromptSource;
use kvscope_wire::Quantity;
use std::sync::Mutex;

/// What the search runs on.
pub struct FailureInput<'a> {
    pub case: &'a CaseInput<'a>,
    pub source: &'a PromptSource<'a>,
    pub polls: &'a Mutex<PollLog>,
    /// A scrape held the engine's preemption counter.
    pub preemptions_exposed: bool,
}

const NOT_EXPOSED: Threshold = Threshold { load: None, source: Source::NotExposed };

/// The search; runs that could not be sent, or whose requests failed, are
/// said in `problems`.
pub async fn search(input: &FailureInput<'_>, plan: &FailurePlan, problems: &mut Vec<String>) -> FailureResults {
    let searched: Vec<(Condition, Option<i64>)> = Condition::SEARCH_ORDER
        .into_iter()
        .filter(|c| match c {
            Condition::SloTtft => true,
            Condition::Preemption => input.preemptions_exposed,
            Condition::AdmissionStall => false,
        })
        .map(|c| (c, None))
        .collect();
    let mut points = Vec::new();
    let mut runs = 0;
    for &len in &plan.prompt_lens {
        let mut bisection = Bisection::new(plan.ladder.len(), searched.clone(), plan.slo_ttft, plan.budget);
        while let Some(rung) = bisection.next_rung() {
            runs += 1;
            match measure(input, plan, len, rung, runs).await {
                Ok(run) => bisection.record(rung, run),
                Err(why) => {
                    problems.push(format!("failure search at {len} prompt tokens, load {}: {why}", plan.ladder[rung]));
                    break;
                }
            }
        }
        let threshold = |c: Condition| {
            if searched.iter().any(|(s, _)| *s == c) {
                bisection.threshold(c, None, &plan.ladder, true)
            } else {
                NOT_EXPOSED
            }
        };
        points.push(FailurePoint {
            prompt_len: len,
            admission_stall: threshold(Condition::AdmissionStall),
            preemption: threshold(Condition::Preemption),
            slo_ttft: threshold(Condition::SloTtft),
            runs: bisection.known.into_values().collect(),
        });
    }
    FailureResults {
        plan: plan.clone(),
        primary: TARGET.into(),
        narrowed_by: None,
        primary_runs: runs,
        simulated_runs: 0,
        points,
    }
}

/// Rung `rung` at `len` prompt tokens, with prompts drawn afresh (`salt`).
async fn measure(
    input: &FailureInput<'_>,
    plan: &FailurePlan,
    len: usize,
    rung: usize,
    salt: usize,
) -> Result<LoadRun, String> {
    let spec = with_fresh_prompts(plan.workload(len, rung).0, salt as u64);
    let reqs = spec.generate(input.source);
    let case = run_case(input.case, &spec, &reqs, None, input.polls).await.map_err(|e| format!("not run ({e:#})"))?;
    if case.failed > 0 {
        return Err(format!(
            "{} of {} requests failed (first: {}); the search stops at this length",
            case.failed,
            case.requests,
            case.first_error.as_deref().unwrap_or("?")
        ));
    }
    Ok(load_run(&case, plan.ladder[rung]))
}

/// A target's run as the search reads it: TTFT at the client, the
/// preemption counter's difference, the running gauge's maximum; no
/// stalls (not exported; never searched).
fn load_run(case: &CaseResult, load: f64) -> LoadRun {
    LoadRun {
        load,
        simulated: false,
        stalls_no_free_blocks: 0,
        stalls_max_running: 0,
        stalls_token_budget: 0,
        preemptions: case.delta(Quantity::Preemptions).unwrap_or(0.0).max(0.0) as u64,
        ttft_p90: case.ttft.p90,
        live_max: case.running.map_or(0, |s| s.max as usize),
    }
}
