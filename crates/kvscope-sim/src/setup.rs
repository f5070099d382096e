//! Puts a simulated engine together from presets: the KV pool sized from
//! memory, the scheduler's limits, the cost model and a shared clock.

use crate::cost::CostModel;
use crate::error::SimError;
use crate::executor::SimExecutor;
use crate::hardware::{hardware_preset, HardwareProfile};
use crate::kv_pool::{activation_reserve_estimate, kv_pool, KvPoolPlan};
use crate::model_preset::{model_preset, ModelPreset};
use kvscope_core::{
    Engine, EngineConfig, PoolConfig, SchedulerConfig, SimClock, DEFAULT_BLOCK_SIZE, VLLM_MAX_NUM_BATCHED_TOKENS,
    VLLM_MAX_NUM_SEQS,
};
use kvscope_experiment::workload::{CaseSpec, WorkloadRequest};
use kvscope_experiment::{run_case, CaseRun, RunError, RunOptions};

/// A simulated run failed: its setup, or the run itself.
#[derive(Debug, thiserror::Error)]
pub enum SimRunError {
    #[error(transparent)]
    Setup(#[from] SimError),
    #[error(transparent)]
    Run(#[from] RunError),
}

pub type SimEngine = Engine<SimExecutor, SimClock>;

/// Everything a simulated run is configured by. Defaults follow vLLM's:
/// 90 % memory utilisation, its block size and scheduler limits
/// (`kvscope_core::config`, where they are cited), prefix caching on.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub model: ModelPreset,
    pub hardware: HardwareProfile,
    pub memory_utilization: f64,
    pub block_size: usize,
    pub max_running: usize,
    pub max_batched_tokens: usize,
    pub enable_prefix_caching: bool,
    /// `None`: [`activation_reserve_estimate`] for these limits.
    pub activation_reserve_bytes: Option<u64>,
    /// Use exactly this many KV blocks instead of sizing from memory.
    pub kv_blocks: Option<usize>,
    /// `None`: the model's maximum context.
    pub max_model_len: Option<usize>,
}

impl SimConfig {
    pub fn new(model: ModelPreset, hardware: HardwareProfile) -> Self {
        SimConfig {
            model,
            hardware,
            memory_utilization: 0.9,
            block_size: DEFAULT_BLOCK_SIZE,
            max_running: VLLM_MAX_NUM_SEQS,
            max_batched_tokens: VLLM_MAX_NUM_BATCHED_TOKENS,
            enable_prefix_caching: true,
            activation_reserve_bytes: None,
            kv_blocks: None,
            max_model_len: None,
        }
    }

    /// From preset names, e.g. `("qwen3-0.6b", "h100")`.
    pub fn from_names(model: &str, hardware: &str) -> Result<Self, SimError> {
        let m = model_preset(model).ok_or_else(|| SimError::UnknownModel(model.into()))?;
        let h = hardware_preset(hardware).ok_or_else(|| SimError::UnknownHardware(hardware.into()))?;
        Ok(Self::new(m, h))
    }

    /// The KV pool from memory (what `kvscope sim` prints). With
    /// `kv_blocks` set, the number of blocks is that override.
    pub fn pool_plan(&self) -> Result<KvPoolPlan, SimError> {
        let reserve = self
            .activation_reserve_bytes
            .unwrap_or_else(|| activation_reserve_estimate(&self.model, self.max_batched_tokens, self.max_running));
        let mut plan = kv_pool(&self.model, &self.hardware, self.memory_utilization, reserve, self.block_size)?;
        if let Some(n) = self.kv_blocks {
            plan.num_blocks = n;
        }
        Ok(plan)
    }

    pub fn engine_config(&self) -> Result<(EngineConfig, KvPoolPlan), SimError> {
        let plan = self.pool_plan()?;
        let config = EngineConfig::new(
            SchedulerConfig::new(
                self.max_running,
                self.max_batched_tokens,
                self.max_model_len.unwrap_or(self.model.max_context),
            ),
            PoolConfig {
                num_blocks: plan.num_blocks,
                block_size: self.block_size,
                enable_prefix_caching: self.enable_prefix_caching,
                bytes_per_block: plan.bytes_per_block,
            },
            Some(self.model.vocab),
        );
        config.validate()?;
        Ok((config, plan))
    }

    pub fn cost_model(&self) -> CostModel {
        CostModel::new(self.model.clone(), self.hardware.clone())
    }

    /// A simulated executor and the fresh clock (t = 0) it advances, for
    /// an engine built elsewhere (the experiment runner).
    pub fn executor(&self) -> (SimExecutor, SimClock) {
        let clock = SimClock::new();
        (SimExecutor::new(self.cost_model(), clock.clone()), clock)
    }

    /// Runs a workload on a fresh simulated engine: the experiment layer's
    /// one driver, on this configuration.
    pub fn run<I: IntoIterator<Item = WorkloadRequest>>(
        &self,
        spec: &CaseSpec,
        requests: I,
        options: RunOptions,
    ) -> Result<CaseRun, SimRunError> {
        let (config, _) = self.engine_config()?;
        let (executor, clock) = self.executor();
        Ok(run_case(executor, clock, &config, spec, requests, options, &mut |_, _| {})?.0)
    }

    /// A ready engine on a fresh simulated clock at t = 0.
    pub fn build(&self) -> Result<(SimEngine, KvPoolPlan), SimError> {
        let (config, plan) = self.engine_config()?;
        let (executor, clock) = self.executor();
        Ok((Engine::new(config, executor, clock)?, plan))
    }
}
