//! What a lab run measured ([`LabResults`]) and which experiment it was
//! ([`WorkloadIdentity`]): what the report, the plots and `lab compare`
//! read.

use crate::backend::BackendInfo;
use crate::causal::{ChainAgreement, SweepPoint};
use crate::config::LabConfig;
use crate::failure::FailureResults;
use crate::knob_sweep::KnobSweepResult;
use crate::kv_precision::KvPrecision;
use crate::probe_compare::ProbeComparison;
use crate::workloads::{SweepSpec, Workload};
use kvscope_core::EngineConfig;
use kvscope_experiment::capacity::CapacityRow;
use kvscope_experiment::driver::CaseRun;
use kvscope_experiment::workload::{Arrival, CaseSpec, WorkloadRequest};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct LabResults {
    pub backend: BackendInfo,
    pub engine: EngineConfig,
    #[serde(skip)]
    /// The first repeat's runs: the lifecycle diagram, the timelines and
    /// the state series are drawn from them.
    pub cases: Vec<CaseRun>,
    /// One row per case: the median of its repeats.
    pub capacity: Vec<CapacityRow>,
    /// `capacity_repeats[case][repeat]`.
    pub capacity_repeats: Vec<Vec<CapacityRow>>,
    /// One point per prompt length: the median of its repeats.
    pub sweep: Vec<SweepPoint>,
    /// `sweep_repeats[point][repeat]`.
    pub sweep_repeats: Vec<Vec<SweepPoint>>,
    pub sweep_spec: SweepSpec,
    /// Each link of the chain, over the repeats.
    pub chain: Option<ChainAgreement>,
    /// The first repeat's probe comparison.
    pub probe: ProbeComparison,
    pub probe_repeats: Vec<ProbeComparison>,
    #[serde(skip)]
    pub probe_runs: Vec<CaseRun>,
    pub repeat: usize,
    /// What a comparison of two runs checks first: were they the same
    /// experiment?
    pub workload: WorkloadIdentity,
    pub knob_sweeps: Vec<KnobSweepResult>,
    /// The failure conditions, when searched (`failure::search`).
    pub failure: Option<FailureResults>,
    /// The KV-precision extension (`None` when the backend stores one
    /// format only).
    pub kv_precision: Option<KvPrecision>,
    pub wall_seconds: f64,
}

/// The workload of a run, as far as it decides the figures: two runs with
/// equal identities ran the same requests (`kvscope lab compare`).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct WorkloadIdentity {
    pub scale: String,
    pub seed: u64,
    pub arrival: Arrival,
    pub dataset: bool,
    /// Per case: name, requests, prompt tokens and output tokens in all.
    pub cases: Vec<CaseIdentity>,
    pub sweep_spec: SweepSpec,
}

impl WorkloadIdentity {
    /// The identity of the lab `cfg` with these cases and this sweep.
    pub(crate) fn of(cfg: &LabConfig, cases: &[Workload], sweep_spec: &SweepSpec) -> WorkloadIdentity {
        WorkloadIdentity {
            scale: format!("{:?}", cfg.scale).to_lowercase(),
            seed: cfg.seed,
            arrival: cfg.arrival(),
            dataset: cfg.dataset.is_some(),
            cases: cases.iter().map(|(spec, reqs)| CaseIdentity::of(spec, reqs)).collect(),
            sweep_spec: sweep_spec.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CaseIdentity {
    pub name: String,
    pub requests: usize,
    pub prompt_tokens: usize,
    pub output_tokens: usize,
}

impl CaseIdentity {
    fn of(spec: &CaseSpec, reqs: &[WorkloadRequest]) -> CaseIdentity {
        CaseIdentity {
            name: spec.name.clone(),
            requests: reqs.len(),
            prompt_tokens: reqs.iter().map(|r| r.prompt.len()).sum(),
            output_tokens: reqs.iter().map(|r| r.max_tokens).sum(),
        }
    }
}
