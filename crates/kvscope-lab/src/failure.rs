//! Failure conditions (失败条件), measured: for each context length of the
//! causal-chain sweep, the smallest offered load — concurrency (all at
//! once) or arrival rate (Poisson) — at which (a) the first admission stall
//! for KV blocks or for max_running appears, (b) the first preemption
//! happens, (c) TTFT p90 exceeds the SLO.
//!
//! Found by bisection over a fixed ladder of loads, on the engine that ran
//! the lab, with a bounded number of runs per context length. When a
//! second, simulated engine is given, it searches first (its runs cost
//! almost nothing) and its answers are where the real engine looks first;
//! every threshold says whether the real engine established it, or only
//! the simulator did. Token-budget stalls are not failures: they only
//! defer part of a prefill to the next step (chunked prefill).

use crate::run::LabError;
use kvscope_core::StallReason;
use kvscope_experiment::dist::Dist;
use kvscope_experiment::driver::CaseRun;
use kvscope_experiment::workload::{Arrival, CaseSpec, Lengths, PromptSource, WorkloadRequest};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    AdmissionStall,
    Preemption,
    SloTtft,
}

impl Condition {
    /// In the order the report lists them: (a), (b), (c).
    pub const ALL: [Condition; 3] = [Condition::AdmissionStall, Condition::Preemption, Condition::SloTtft];
    /// In the order the search serves them: the SLO first, because the
    /// simulator's timing is the least certain guess.
    pub(crate) const SEARCH_ORDER: [Condition; 3] =
        [Condition::SloTtft, Condition::AdmissionStall, Condition::Preemption];
}

/// What the load ladder counts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoadKind {
    /// Requests submitted at once; the load is their number.
    Concurrency,
    /// `requests` requests arriving as a Poisson process; the load is its rate (requests/s).
    PoissonRate { requests: usize },
}

/// What to search: the context lengths, the ladder of loads, the SLO and
/// the budget.
#[derive(Clone, Debug, Serialize)]
pub struct FailurePlan {
    pub prompt_lens: Vec<usize>,
    pub output_tokens: usize,
    pub load: LoadKind,
    /// Offered loads, ascending; a threshold is one of them.
    pub ladder: Vec<f64>,
    /// Seconds.
    pub slo_ttft: f64,
    /// Runs on the lab's own engine per context length.
    pub budget: usize,
    pub seed: u64,
    /// Prompts are synthetic token ids below this (only their lengths
    /// matter here, and the simulator then sees the same requests).
    pub vocab: u32,
}

impl FailurePlan {
    /// The lab's plan: the sweep's lengths and output, a ladder up to twice
    /// what the scheduler or the sweep admit at once (all-at-once), or from
    /// an eighth to eight times the lab's arrival rate (Poisson).
    pub fn new(
        sweep: &crate::workloads::SweepSpec,
        max_running: usize,
        arrival_rate: Option<f64>,
        slo_ttft: f64,
        budget: usize,
        seed: u64,
        vocab: u32,
    ) -> FailurePlan {
        let (load, ladder) = match arrival_rate {
            Some(rate) => (
                LoadKind::PoissonRate { requests: 2 * sweep.num_requests },
                (0..=12).map(|k| rate / 8.0 * 2f64.powf(k as f64 / 2.0)).collect(),
            ),
            None => {
                let top = 2 * max_running.max(sweep.num_requests);
                (LoadKind::Concurrency, (1..=top).map(|c| c as f64).collect())
            }
        };
        FailurePlan {
            prompt_lens: sweep.prompt_lens.clone(),
            output_tokens: sweep.output_tokens,
            load,
            ladder,
            slo_ttft,
            budget,
            seed,
            vocab,
        }
    }

    /// The workload at ladder rung `i` for prompts of `len` tokens.
    pub(crate) fn workload(&self, len: usize, i: usize) -> (CaseSpec, Vec<WorkloadRequest>) {
        let load = self.ladder[i];
        let (num_requests, arrival, name) = match self.load {
            LoadKind::Concurrency => (load as usize, Arrival::AllAtOnce, format!("failure_{len}_c{load}")),
            LoadKind::PoissonRate { requests } => {
                (requests, Arrival::Poisson { rate: load }, format!("failure_{len}_r{load:.3}"))
            }
        };
        let spec = CaseSpec {
            name,
            num_requests,
            prompt_lengths: Lengths::Fixed { tokens: len },
            output_lengths: Lengths::Fixed { tokens: self.output_tokens },
            arrival,
            shared_prefix_tokens: 0,
            seed: self.seed + 1000 + len as u64,
        };
        let reqs = spec.generate(&PromptSource::Synthetic { vocab: self.vocab });
        (spec, reqs)
    }
}

/// One run of the search, as much as the conditions need.
#[derive(Clone, Debug, Serialize)]
pub struct LoadRun {
    pub load: f64,
    pub simulated: bool,
    pub stalls_no_free_blocks: u64,
    pub stalls_max_running: u64,
    /// Not a failure (a prefill only moves to the next step), but it says
    /// the step's compute, not KV, held the queue (the report's "bound").
    pub stalls_token_budget: u64,
    pub preemptions: u64,
    pub ttft_p90: f64,
    pub live_max: usize,
}

impl LoadRun {
    fn of(run: &CaseRun, load: f64, simulated: bool) -> LoadRun {
        let stalls = |r| *run.stats.stalls.get(&r).unwrap_or(&0);
        LoadRun {
            load,
            simulated,
            stalls_no_free_blocks: stalls(StallReason::NoFreeBlocks),
            stalls_max_running: stalls(StallReason::MaxRunning),
            stalls_token_budget: stalls(StallReason::TokenBudget),
            preemptions: run.stats.preemptions,
            ttft_p90: Dist::of(run.requests.iter().map(|r| r.ttft)).p90,
            live_max: run.stats.max_live(),
        }
    }

    pub fn holds(&self, c: Condition, slo: f64) -> bool {
        match c {
            Condition::AdmissionStall => self.stalls_no_free_blocks + self.stalls_max_running > 0,
            Condition::Preemption => self.preemptions > 0,
            Condition::SloTtft => self.ttft_p90 > slo,
        }
    }
}

/// How a threshold was established.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// On the real engine: the condition held at this load and not at the
    /// rung below (or this is the first rung; or, not reached, it did not
    /// hold at the top).
    Real,
    /// The simulator's answer (a simulated lab, or the real runs within the
    /// budget did not contradict it but did not pin it down either).
    Simulated,
    /// The real engine saw it at this load; lower loads were not settled
    /// within the budget: an upper bound.
    RealUpperBound,
    /// Not settled within the budget.
    Unknown,
    /// Not searched: the engine (a `--target`) does not export what the
    /// condition needs (admission stalls: no engine does).
    NotExposed,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Threshold {
    /// The smallest load of the ladder at which the condition held; `None`:
    /// not reached up to the ladder's top (or unknown, see `source`).
    pub load: Option<f64>,
    pub source: Source,
}

#[derive(Clone, Debug, Serialize)]
pub struct FailurePoint {
    pub prompt_len: usize,
    pub admission_stall: Threshold,
    pub preemption: Threshold,
    pub slo_ttft: Threshold,
    /// Every run of the search at this length, both engines, by load.
    pub runs: Vec<LoadRun>,
}

impl FailurePoint {
    pub fn threshold(&self, c: Condition) -> Threshold {
        match c {
            Condition::AdmissionStall => self.admission_stall,
            Condition::Preemption => self.preemption,
            Condition::SloTtft => self.slo_ttft,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct FailureResults {
    pub plan: FailurePlan,
    /// `real` or `sim`: the engine the lab ran on; [`TARGET`]: a running
    /// engine measured from outside (`kvscope lab --target`).
    pub primary: String,
    /// The simulator that searched first, when one did.
    pub narrowed_by: Option<String>,
    pub primary_runs: usize,
    pub simulated_runs: usize,
    pub points: Vec<FailurePoint>,
}

/// [`FailureResults::primary`] of a search on a `--target`.
pub const TARGET: &str = "target";

/// Runs one workload on an engine and returns its run.
pub type Runner<'a> = &'a mut dyn FnMut(&CaseSpec, &[WorkloadRequest]) -> Result<CaseRun, LabError>;

/// The search. `primary` is the lab's own engine (`primary_is_real` says
/// whether it is the real model); `narrow`, a simulator that searches first.
pub fn search(
    plan: &FailurePlan,
    primary: Runner,
    primary_is_real: bool,
    mut narrow: Option<(Runner, String)>,
) -> Result<FailureResults, LabError> {
    let n = plan.ladder.len();
    let slo = plan.slo_ttft;
    let holds = |r: &LoadRun, c: Condition| r.holds(c, slo);
    // Enough for three bisections over the ladder, and a little more.
    let sim_budget = 3 * (usize::BITS - n.leading_zeros()) as usize + 6;
    let mut points = Vec::new();
    let (mut primary_runs, mut simulated_runs) = (0, 0);
    for &len in &plan.prompt_lens {
        let mut guesses = [None; 3];
        let mut sim_known = BTreeMap::new();
        if let Some((runner, _)) = narrow.as_mut() {
            let mut run = |i: usize| -> Result<LoadRun, LabError> {
                let (spec, reqs) = plan.workload(len, i);
                Ok(LoadRun::of(&runner(&spec, &reqs)?, plan.ladder[i], true))
            };
            simulated_runs += bisect(n, &[None; 3], &mut sim_known, sim_budget, &mut run, slo)?;
            for (g, c) in guesses.iter_mut().zip(Condition::SEARCH_ORDER) {
                let (lo, hi) = bracket(&sim_known, n, |r| holds(r, c));
                *g = (hi - lo == 1).then_some(hi);
            }
        }
        let mut known = BTreeMap::new();
        let budget = if primary_is_real { plan.budget } else { plan.budget.max(sim_budget) };
        let mut run = |i: usize| -> Result<LoadRun, LabError> {
            let (spec, reqs) = plan.workload(len, i);
            Ok(LoadRun::of(&primary(&spec, &reqs)?, plan.ladder[i], !primary_is_real))
        };
        primary_runs += bisect(n, &guesses, &mut known, budget, &mut run, slo)?;
        let threshold = |c: Condition| {
            let gi = Condition::SEARCH_ORDER.iter().position(|&x| x == c).expect("every condition");
            let (lo, hi) = bracket(&known, n, |r| holds(r, c));
            settle(lo, hi, guesses[gi], &plan.ladder, primary_is_real)
        };
        let (admission_stall, preemption, slo_ttft) =
            (threshold(Condition::AdmissionStall), threshold(Condition::Preemption), threshold(Condition::SloTtft));
        let mut runs: Vec<LoadRun> = sim_known.into_values().chain(known.into_values()).collect();
        runs.sort_by(|a, b| a.load.total_cmp(&b.load).then(a.simulated.cmp(&b.simulated)));
        points.push(FailurePoint { prompt_len: len, admission_stall, preemption, slo_ttft, runs });
    }
    Ok(FailureResults {
        plan: plan.clone(),
        primary: if primary_is_real { "real" } else { "sim" }.into(),
        narrowed_by: narrow.map(|(_, name)| name),
        primary_runs,
        simulated_runs,
        points,
    })
}

/// The open bracket of a condition over the known runs: `lo`, the highest
/// rung known not to hold below `hi`, the lowest known to hold (−1 and
/// `n`, "held above the top", when unknown). Settled when `hi − lo = 1`.
fn bracket(known: &BTreeMap<usize, LoadRun>, n: usize, held: impl Fn(&LoadRun) -> bool) -> (i64, i64) {
    let hi = known.iter().filter(|(_, r)| held(r)).map(|(&i, _)| i as i64).min().unwrap_or(n as i64);
    let lo = known.iter().filter(|(&i, r)| !held(r) && (i as i64) < hi).map(|(&i, _)| i as i64).max().unwrap_or(-1);
    (lo, hi)
}

/// The bisection's state: the runs known so far and whose turn it is.
/// A caller asks for the next rung, runs it (blocking, as the lab's engine
/// does, or awaiting a remote target) and records the run; so the search
/// is written once for both. Every searched condition is bisected at once,
/// sharing runs, within `budget` runs; a guess (a simulator's threshold)
/// is tried first, then the rung below it.
pub struct Bisection {
    n: usize,
    /// The conditions searched, in turn, each with its guess.
    searched: Vec<(Condition, Option<i64>)>,
    slo: f64,
    budget: usize,
    pub known: BTreeMap<usize, LoadRun>,
    pub spent: usize,
    turn: usize,
    progressed: bool,
}

impl Bisection {
    pub fn new(n: usize, searched: Vec<(Condition, Option<i64>)>, slo: f64, budget: usize) -> Bisection {
        Bisection { n, searched, slo, budget, known: BTreeMap::new(), spent: 0, turn: 0, progressed: false }
    }

    /// The rung to run next; `None` when every condition is settled, the
    /// budget is spent, or a whole turn made no progress.
    pub fn next_rung(&mut self) -> Option<usize> {
        let n = self.n as i64;
        loop {
            if self.turn == self.searched.len() {
                if !self.progressed {
                    return None;
                }
                (self.turn, self.progressed) = (0, false);
            }
            let (c, guess) = self.searched[self.turn];
            self.turn += 1;
            if self.spent >= self.budget {
                return None;
            }
            let (lo, hi) = bracket(&self.known, self.n, |r| r.holds(c, self.slo));
            if hi - lo <= 1 {
                continue;
            }
            let inside = |i: i64| lo < i && i < hi && i < n;
            let next = match guess {
                // "Not reached": check the top.
                Some(g) if g >= n && inside(n - 1) => n - 1,
                Some(g) if inside(g) => g,
                Some(g) if inside(g - 1) => g - 1,
                _ => (lo + hi) / 2,
            };
            return Some(next.clamp(lo + 1, (hi - 1).min(n - 1)) as usize);
        }
    }

    pub fn record(&mut self, rung: usize, run: LoadRun) {
        self.known.insert(rung, run);
        self.spent += 1;
        self.progressed = true;
    }

    /// Condition `c`'s threshold from the runs made (`guess`: a
    /// simulator's, for what the runs left open).
    pub fn threshold(&self, c: Condition, guess: Option<i64>, ladder: &[f64], primary_is_real: bool) -> Threshold {
        let (lo, hi) = bracket(&self.known, self.n, |r| r.holds(c, self.slo));
        settle(lo, hi, guess, ladder, primary_is_real)
    }
}

/// Bisects the three conditions on a blocking runner; returns the runs made.
fn bisect(
    n: usize,
    guesses: &[Option<i64>; 3],
    known: &mut BTreeMap<usize, LoadRun>,
    budget: usize,
    run: &mut dyn FnMut(usize) -> Result<LoadRun, LabError>,
    slo: f64,
) -> Result<usize, LabError> {
    let searched = Condition::SEARCH_ORDER.into_iter().zip(guesses.iter().copied()).collect();
    let mut b = Bisection::new(n, searched, slo, budget);
    b.known = std::mem::take(known);
    while let Some(i) = b.next_rung() {
        let r = run(i)?;
        b.record(i, r);
    }
    *known = b.known;
    Ok(b.spent)
}

fn settle(lo: i64, hi: i64, guess: Option<i64>, ladder: &[f64], primary_is_real: bool) -> Threshold {
    let n = ladder.len() as i64;
    let at = |i: i64| (i < n).then(|| ladder[i as usize]);
    if hi - lo == 1 {
        let source = if primary_is_real { Source::Real } else { Source::Simulated };
        return Threshold { load: at(hi), source };
    }
    match guess {
        Some(g) if lo < g && g <= hi => Threshold { load: at(g), source: Source::Simulated },
        _ if hi < n => Threshold { load: at(hi), source: Source::RealUpperBound },
        _ => Threshold { load: None, source: Source::Unknown },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(load: f64, stall_at: f64, preempt_at: f64, slo_at: f64, simulated: bool) -> LoadRun {
        LoadRun {
            load,
            simulated,
            stalls_no_free_blocks: u64::from(load >= stall_at),
            stalls_max_running: 0,
            stalls_token_budget: 0,
            preemptions: u64::from(load >= preempt_at),
            ttft_p90: if load >= slo_at { 3.0 } else { 1.0 },
            live_max: 1,
        }
    }

    fn find(budget: usize, guesses: [Option<i64>; 3], truth: (f64, f64, f64)) -> ([Threshold; 3], usize) {
        let ladder: Vec<f64> = (1..=32).map(f64::from).collect();
        let mut known = BTreeMap::new();
        let mut run = |i: usize| Ok(fake(ladder[i], truth.0, truth.1, truth.2, false));
        let holds = |r: &LoadRun, c: Condition| r.holds(c, 2.0);
        let spent = bisect(ladder.len(), &guesses, &mut known, budget, &mut run, 2.0).unwrap();
        let t = Condition::SEARCH_ORDER.map(|c| {
            let gi = Condition::SEARCH_ORDER.iter().position(|&x| x == c).unwrap();
            let (lo, hi) = bracket(&known, ladder.len(), |r| holds(r, c));
            settle(lo, hi, guesses[gi], &ladder, true)
        });
        (t, spent)
    }

    #[test]
    fn bisection_finds_every_threshold_and_not_reached() {
        // SLO at 7, stall at 3, preemption never (beyond 32).
        let (t, spent) = find(100, [None; 3], (3.0, 99.0, 7.0));
        assert_eq!(t[0], Threshold { load: Some(7.0), source: Source::Real });
        assert_eq!(t[1], Threshold { load: Some(3.0), source: Source::Real });
        assert_eq!(t[2], Threshold { load: None, source: Source::Real });
        assert!(spent <= 3 * 6, "{spent} runs");
    }

    #[test]
    fn a_right_guess_settles_in_two_runs_each_and_a_short_budget_says_so() {
        // Guesses as indices: stall at load 3 = index 2, SLO at 7 = index 6, no preemption = n.
        let (t, spent) = find(100, [Some(6), Some(2), Some(32)], (3.0, 99.0, 7.0));
        assert_eq!(spent, 5, "g and g−1 for two conditions, the top for the third");
        assert!(t.iter().all(|t| t.source == Source::Real));
        // One run: the SLO guess is confirmed as held there, nothing below it.
        let (t, _) = find(1, [Some(6), Some(2), Some(32)], (3.0, 99.0, 7.0));
        assert_eq!(t[0], Threshold { load: Some(7.0), source: Source::Simulated });
        // A guess the one real run did not contradict stays the simulator's.
        let (t, _) = find(1, [Some(9), None, None], (3.0, 99.0, 7.0));
        assert_eq!(t[0], Threshold { load: Some(10.0), source: Source::Simulated });
        // No guess, one run: the real run bounds it from above; the rest is unknown.
        let (t, _) = find(1, [None; 3], (3.0, 99.0, 7.0));
        assert_eq!(t[0], Threshold { load: Some(16.0), source: Source::RealUpperBound });
        assert_eq!(t[2], Threshold { load: None, source: Source::Unknown });
    }
}
