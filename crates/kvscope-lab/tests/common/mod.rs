//! The lab on the simulator, shared by the integration tests: the
//! uncalibrated `cpu` preset (no model, no calibration), the lab's config
//! at a scale, and a lab run followed by the failure-condition search.

use kvscope_core::{KvDtype, SimClock, TokenId};
use kvscope_experiment::driver::RunOptions;
use kvscope_experiment::workload::{CaseSpec, Scale, WorkloadRequest};
use kvscope_lab::backend::{BackendInfo, LabBackend};
use kvscope_lab::failure::{search, FailurePlan};
use kvscope_lab::lab::{run_lab, run_one, LabConfig, LabResults};
use kvscope_sim::{CostModel, SimConfig, SimExecutor};

struct Sim(CostModel);

impl Sim {
    fn new() -> Sim {
        let mut config = SimConfig::from_names("smollm2-135m", "cpu").unwrap();
        config.model = config.model.with_kv_dtype(KvDtype::F16);
        Sim(config.cost_model())
    }
}

impl LabBackend for Sim {
    type Exec = SimExecutor;
    type Clk = SimClock;
    fn info(&self) -> BackendInfo {
        let m = self.0.model();
        BackendInfo {
            executor: "sim".into(),
            model: m.name.clone(),
            kv_bytes_per_token: m.kv_bytes_per_token(),
            kv_dtype: self.0.model().kv_dtype,
            max_model_len: m.max_context,
            vocab_size: m.vocab,
            details: vec![],
            pool_blocks: None,
        }
    }
    fn tokenize(&self, _: &str) -> Vec<TokenId> {
        Vec::new()
    }
    fn vocab_for_synthetic_prompts(&self) -> Option<u32> {
        Some(self.0.model().vocab as u32)
    }
    fn start(&mut self, _: usize, _: usize) -> Result<(SimExecutor, SimClock), String> {
        let clock = SimClock::new();
        Ok((SimExecutor::new(self.0.clone(), clock.clone()), clock))
    }
    fn finish(&mut self, _: SimExecutor) {}
}

pub fn config(scale: Scale, repeat: usize, sweeps: &[&str]) -> LabConfig {
    LabConfig {
        repeat,
        knob_sweeps: sweeps.iter().map(|s| s.parse().unwrap()).collect(),
        ..LabConfig::at_scale(scale, 2026)
    }
}

/// The lab, then the failure search on the same (simulated) engine.
pub fn lab(cfg: &LabConfig) -> LabResults {
    let mut backend = Sim::new();
    let mut res = run_lab(&mut backend, cfg, &mut |_, _, _| {}).unwrap();
    let vocab = res.backend.vocab_size as u32;
    let plan = FailurePlan::new(&res.sweep_spec, res.engine.scheduler.max_running, None, 2.0, 4, cfg.seed, vocab);
    let engine = res.engine.clone();
    let mut primary = |spec: &CaseSpec, reqs: &[WorkloadRequest]| {
        run_one(&mut backend, &engine, spec, reqs, RunOptions::SUMMARY, &mut |_, _, _| {})
    };
    res.failure = Some(search(&plan, &mut primary, false, None).unwrap());
    res
}
