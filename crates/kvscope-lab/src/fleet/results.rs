//! Everything `kvscope lab --fleet N` found (files.rs writes it).

use super::chain::{chains, FleetChain};
use super::fault::FaultPlan;
use super::policy::PolicyRun;
use kvscope_experiment::ChatsCase;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct FleetResults {
    pub replicas: usize,
    pub scale: String,
    pub case: ChatsCase,
    /// The gateway's package and the flags it was started with.
    pub gateway: String,
    pub gateway_flags: Vec<String>,
    pub metrics_interval_ms: u64,
    /// The policies asked for, in order (a policy that did not run is
    /// named in `problems`).
    pub policies_asked: Vec<String>,
    pub fault: Option<FaultPlan>,
    pub policies: Vec<PolicyRun>,
    pub chains: Vec<FleetChain>,
    /// Why a policy or a part of the run is missing.
    pub problems: Vec<String>,
}

impl FleetResults {
    /// Adds a policy's run and checks the chain again.
    pub fn push(&mut self, run: PolicyRun) {
        self.policies.push(run);
        self.chains = chains(&self.policies);
    }
}
