//! Load sweeps on a target (`--sweep concurrency=1,4,16`, `--sweep
//! rate=0.5,1,2`): the knobs a client can turn. The lab's three capacity
//! cases run again at each value: at most C requests in flight
//! (kvscope-client's concurrency-limited replay), or arrivals drawn as a
//! Poisson process at the rate (the experiment layer's `Arrival`). What
//! the engine decides (block size, KV memory, max running) is refused with
//! the engine's flag instead (`kvscope lab`'s `cmd_lab_target`).
//!
//! Each value's prompts are fresh (`with_fresh_prompts`): the same
//! lengths, drawn from another seed.

use super::case::{run_case, with_fresh_prompts, CaseInput, CaseResult};
use super::poller::PollLog;
use crate::knob::sweep_values;
use kvscope_experiment::workload::{Arrival, CaseSpec, PromptSource, WorkloadRequest};
use kvscope_experiment::Dist;
use serde::Serialize;
use std::str::FromStr;
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadKnob {
    /// The most requests in flight at once.
    Concurrency,
    /// Poisson arrivals, requests per second.
    Rate,
}

impl LoadKnob {
    pub const ALL: [LoadKnob; 2] = [LoadKnob::Concurrency, LoadKnob::Rate];

    pub fn name(self) -> &'static str {
        match self {
            LoadKnob::Concurrency => "concurrency",
            LoadKnob::Rate => "rate",
        }
    }

    /// A value as the report writes it.
    pub fn show(self, v: f64) -> String {
        match self {
            LoadKnob::Concurrency => format!("{v:.0}"),
            LoadKnob::Rate => format!("{v} req/s"),
        }
    }

    fn parse(self, v: &str) -> Result<f64, String> {
        let bad = |why: &str| format!("--sweep {}: {v:?} {why}", self.name());
        match self {
            LoadKnob::Concurrency => match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(n as f64),
                _ => Err(bad("is not a positive whole number of requests in flight")),
            },
            LoadKnob::Rate => match v.parse::<f64>() {
                Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
                _ => Err(bad("is not a positive number of requests per second")),
            },
        }
    }
}

/// One `--sweep concurrency=…` or `--sweep rate=…`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoadSweep {
    pub knob: LoadKnob,
    pub values: Vec<f64>,
}

impl FromStr for LoadSweep {
    type Err = String;

    fn from_str(s: &str) -> Result<LoadSweep, String> {
        let (name, list) = s.split_once('=').ok_or_else(|| format!("expected KNOB=V1,V2,...; got {s:?}"))?;
        let knob = LoadKnob::ALL
            .into_iter()
            .find(|k| k.name() == name.trim())
            .ok_or_else(|| format!("unknown load knob {name:?}: give concurrency or rate"))?;
        let values = sweep_values(s, list, "e.g. concurrency=1,4,16 or rate=0.5,1,2", |v| knob.parse(v))?;
        Ok(LoadSweep { knob, values })
    }
}

/// One value: each capacity case as it ran, and its queue waits.
#[derive(Debug, Serialize)]
pub struct LoadPoint {
    pub value: f64,
    pub label: String,
    pub cases: Vec<CaseResult>,
    pub queue_wait: Vec<Dist>,
}

#[derive(Debug, Serialize)]
pub struct LoadSweepResult {
    pub knob: LoadKnob,
    pub points: Vec<LoadPoint>,
}

/// What a sweep runs on: the cases with each one's TTFT alone (the
/// queue-wait fallback), the prompts' source and where the scrapes go.
pub struct SweepInput<'a> {
    pub case: &'a CaseInput<'a>,
    pub cases: &'a [(CaseSpec, Vec<WorkloadRequest>)],
    pub solo: &'a [Option<f64>],
    pub source: &'a PromptSource<'a>,
    pub polls: &'a Mutex<PollLog>,
}

/// `spec` at value `v` of `knob`, with fresh prompts drawn from `salt`:
/// its requests and the most in flight.
pub fn at_value(
    knob: LoadKnob,
    v: f64,
    spec: &CaseSpec,
    source: &PromptSource,
    salt: u64,
) -> (CaseSpec, Vec<WorkloadRequest>, Option<usize>) {
    let arrival = match knob {
        LoadKnob::Rate => Arrival::Poisson { rate: v },
        LoadKnob::Concurrency => spec.arrival.clone(),
    };
    let spec = with_fresh_prompts(CaseSpec { arrival, ..spec.clone() }, salt);
    let reqs = spec.generate(source);
    let in_flight = (knob == LoadKnob::Concurrency).then_some(v as usize);
    (spec, reqs, in_flight)
}

/// Runs every case at every value of `sweep`; a case that cannot be sent
/// is left out of its point and said in `problems`.
pub async fn run(input: &SweepInput<'_>, sweep: &LoadSweep, problems: &mut Vec<String>) -> LoadSweepResult {
    let mut points = Vec::new();
    for (k, &v) in sweep.values.iter().enumerate() {
        let mut point = LoadPoint { value: v, label: sweep.knob.show(v), cases: Vec::new(), queue_wait: Vec::new() };
        for ((spec, _), solo) in input.cases.iter().zip(input.solo) {
            let (spec, reqs, in_flight) = at_value(sweep.knob, v, spec, input.source, k as u64 + 1);
            match run_case(input.case, &spec, &reqs, in_flight, input.polls).await {
                Ok(result) => {
                    problems.extend(result.failures(&format!(
                        "--sweep {}={}: {}",
                        sweep.knob.name(),
                        point.label,
                        spec.name
                    )));
                    point.queue_wait.push(super::capacity::queue_wait(&result, *solo));
                    point.cases.push(result);
                }
                Err(e) => problems.push(format!("--sweep {}={}: {}: not run ({e:#})", sweep.knob.name(), v, spec.name)),
            }
        }
        points.push(point);
    }
    LoadSweepResult { knob: sweep.knob, points }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_client_knobs_and_refuses_bad_values_by_name() {
        let c: LoadSweep = "concurrency=1,4,16".parse().unwrap();
        assert_eq!((c.knob, c.values), (LoadKnob::Concurrency, vec![1.0, 4.0, 16.0]));
        let r: LoadSweep = "rate=0.5,2".parse().unwrap();
        assert_eq!(r.values, vec![0.5, 2.0]);
        let err = |s: &str| s.parse::<LoadSweep>().unwrap_err();
        assert!(err("concurrency=0,4").contains("positive whole number"));
        assert!(err("rate=1,inf").contains("requests per second"));
        assert!(err("rate=1").contains("at least two"));
        assert!(err("rate=1,1").contains("twice"));
        assert!(err("speed=1,2").contains("concurrency or rate"));
    }

    #[test]
    fn a_rate_draws_poisson_arrivals_and_a_concurrency_caps_in_flight() {
        let spec = CaseSpec::uniform("c", 6, (8, 8), (2, 2), Arrival::AllAtOnce, 1);
        let source = PromptSource::Synthetic { vocab: 100 };
        let (_, reqs, cap) = at_value(LoadKnob::Rate, 2.0, &spec, &source, 1);
        assert!(cap.is_none() && reqs.last().unwrap().arrival > 0.0);
        let (_, again, cap) = at_value(LoadKnob::Concurrency, 4.0, &spec, &source, 2);
        assert_eq!(cap, Some(4));
        assert!(again.iter().all(|r| r.arrival == 0.0));
        assert_ne!(reqs[0].prompt.to_vec(), again[0].prompt.to_vec(), "fresh prompts per value");
    }
}
