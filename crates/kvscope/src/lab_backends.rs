//! The lab's backends: the real model on this CPU (wall clock), and the
//! simulator (simulated clock) — either the calibrated `cpu` profile of the
//! default model, with its tokenizer, or any model and hardware preset,
//! with synthetic prompts and the GPU's own KV pool.

use anyhow::Context;
use kvscope_core::{KvBlockManager, KvDtype, PoolConfig, SimClock, TokenId, WallClock};
use kvscope_exercise::checker::Checker;
use kvscope_exercise::{HostConfig, PyBlockManager};
use kvscope_lab::backend::{BackendInfo, LabBackend, NextToken};
use kvscope_model::executor::ModelExecutor;
use kvscope_model::LoadedModel;
use kvscope_sim::{default_calibration_path, CalibrationFile, CostModel, SimConfig, SimExecutor};
use std::sync::{Arc, Mutex};

pub struct RealBackend {
    pub model: LoadedModel,
    /// A student's Python block manager to run instead of kvscope's
    /// (`--block-manager`).
    pub block_manager: Option<HostConfig>,
}

impl LabBackend for RealBackend {
    type Exec = ModelExecutor;
    type Clk = WallClock;

    fn info(&self) -> BackendInfo {
        let c = self.model.llama.config();
        BackendInfo {
            executor: "real".into(),
            model: self.model.name(),
            kv_bytes_per_token: self.model.kv_bytes_per_token(),
            kv_dtype: self.model.kv_dtype,
            max_model_len: c.context_length,
            vocab_size: c.vocab_size,
            details: vec![format!(
                "{} layers, {} KV heads × head_dim {}, {} threads, {} kernels",
                c.n_layers,
                c.n_kv_heads,
                c.head_dim,
                kvscope_model::kernels::threads(),
                self.model.kernels()
            )],
            pool_blocks: None,
        }
    }

    fn tokenize(&self, text: &str) -> Vec<TokenId> {
        self.model.tokenizer.encode(text).unwrap_or_default()
    }

    fn start(&mut self, num_blocks: usize, block_size: usize) -> Result<(ModelExecutor, WallClock), String> {
        let pool = PoolConfig::new(num_blocks, block_size, self.model.kv_bytes_per_token(), false);
        if let Some(available) = kvscope_model::host_memory::available_bytes() {
            pool.check_memory(available).map_err(|e| e.to_string())?;
        }
        let exec = self.model.executor(&pool).map_err(|e| e.to_string())?;
        Ok((exec, WallClock::new()))
    }

    fn finish(&mut self, _executor: ModelExecutor) {}

    fn kv_dtypes(&self) -> Vec<KvDtype> {
        KvDtype::CPU.to_vec()
    }

    fn set_kv_dtype(&mut self, dtype: KvDtype) -> Result<(), String> {
        kvscope_model::kv_storage::check_cpu_dtype(dtype).map_err(|e| e.to_string())?;
        self.model.kv_dtype = dtype;
        Ok(())
    }

    fn next_token_scores(&mut self, dtype: KvDtype, tokens: &[TokenId]) -> Option<Result<Vec<NextToken>, String>> {
        let scored = kvscope_model::teacher_forcing::next_token_scores(&self.model.llama, dtype, tokens);
        Some(
            scored
                .map(|v| {
                    v.into_iter()
                        .map(|p| NextToken { top1: p.top1, margin: p.margin, logprob: p.next_logprob })
                        .collect()
                })
                .map_err(|e| e.to_string()),
        )
    }

    /// The student's manager for every run with prefix caching on; the
    /// probe's caching-off baseline stays native (a nano-vLLM BlockManager
    /// has no switch for prefix caching).
    fn block_manager(&mut self, pool: &PoolConfig) -> Result<Option<Box<dyn KvBlockManager>>, String> {
        let Some(host) = &self.block_manager else { return Ok(None) };
        if !pool.enable_prefix_caching {
            return Ok(None);
        }
        // The lab keeps only the checks that protect the engine (valid ids,
        // a slot for every token); grading is `kvscope exercise check`'s job.
        let checker = Arc::new(Mutex::new(Checker::new(pool.num_blocks, pool.block_size)));
        let manager = PyBlockManager::start(host.clone(), pool.clone(), checker).map_err(|e| e.to_string())?;
        Ok(Some(Box::new(manager)))
    }
}

/// The simulator as a lab backend.
pub struct SimBackend {
    pub cost: CostModel,
    /// The real model's tokenizer (prompts are then the same token
    /// sequences as in a real run); `None`: synthetic prompts.
    pub tokenizer_of: Option<LoadedModel>,
    pub description: String,
    /// The preset's own pool (blocks of 16 tokens), when it has one.
    pub pool_blocks: Option<usize>,
}

impl SimBackend {
    /// The default model's preset with KV stored as the real executor would
    /// store it (`--kv-dtype`), priced by the `cpu` profile `kvscope sim --calibrate` fitted.
    pub fn calibrated_cpu(model: LoadedModel) -> anyhow::Result<SimBackend> {
        let path = default_calibration_path()?;
        let file = CalibrationFile::load_if_present(&path)?.with_context(|| {
            format!("no CPU calibration at {}: run `kvscope sim --calibrate` first", path.display())
        })?;
        let mut config = SimConfig::from_names("smollm2-135m", "cpu")?;
        config.model = config.model.with_kv_dtype(model.kv_dtype);
        config.hardware = config.hardware.with_calibration(file.fit.coefficients.clone());
        Ok(SimBackend {
            cost: config.cost_model(),
            tokenizer_of: Some(model),
            description: format!("calibrated `cpu` profile from {} ({})", path.display(), file.description),
            pool_blocks: None,
        })
    }

    /// The simulator that narrows the failure-condition search before the
    /// real engine runs: the default model's preset with KV stored as
    /// `kv_dtype` (the real run's), priced by
    /// the calibrated `cpu` profile when there is one, else by the
    /// uncalibrated preset. Either way admissions, stalls and preemptions
    /// of all-at-once arrivals are the real scheduler's; only times are
    /// guesses. Synthetic prompts (the search needs only their lengths).
    pub fn narrowing(kv_dtype: KvDtype) -> anyhow::Result<SimBackend> {
        let mut config = SimConfig::from_names("smollm2-135m", "cpu")?;
        config.model = config.model.with_kv_dtype(kv_dtype);
        let (hardware, calibration) = kvscope_sim::cpu_profile(None)?;
        config.hardware = hardware;
        let description = match calibration {
            Some(path) => format!("calibrated `cpu` profile, {}", path.display()),
            None => "uncalibrated `cpu` preset: capacity exact for all-at-once arrivals, times rough".into(),
        };
        Ok(SimBackend { cost: config.cost_model(), tokenizer_of: None, description, pool_blocks: None })
    }

    /// A model preset on a hardware preset, with the KV pool its memory
    /// leaves (vLLM's defaults: 90 % utilisation, 16-token blocks).
    pub fn preset(config: &SimConfig) -> anyhow::Result<SimBackend> {
        let plan = config.pool_plan()?;
        Ok(SimBackend {
            cost: config.cost_model(),
            tokenizer_of: None,
            description: format!(
                "simulated: {} on {} (roofline cost model over datasheet figures, synthetic prompts); KV pool {} blocks of {} tokens = {:.2} GiB after weights and activations",
                config.model.name,
                config.hardware.name,
                plan.num_blocks,
                plan.block_size,
                plan.pool_bytes as f64 / f64::from(1 << 30)
            ),
            pool_blocks: Some(plan.num_blocks),
        })
    }
}

impl LabBackend for SimBackend {
    type Exec = SimExecutor;
    type Clk = SimClock;

    fn info(&self) -> BackendInfo {
        let model = self.cost.model();
        BackendInfo {
            executor: "sim".into(),
            model: match &self.tokenizer_of {
                Some(m) => m.name(),
                None => model.name.clone(),
            },
            kv_bytes_per_token: model.kv_bytes_per_token(),
            kv_dtype: model.kv_dtype,
            max_model_len: model.max_context,
            vocab_size: model.vocab,
            details: vec![self.description.clone()],
            pool_blocks: self.pool_blocks,
        }
    }

    fn tokenize(&self, text: &str) -> Vec<TokenId> {
        self.tokenizer_of.as_ref().map(|m| m.tokenizer.encode(text).unwrap_or_default()).unwrap_or_default()
    }

    fn vocab_for_synthetic_prompts(&self) -> Option<u32> {
        self.tokenizer_of.is_none().then_some(self.cost.model().vocab as u32)
    }

    fn start(&mut self, _num_blocks: usize, _block_size: usize) -> Result<(SimExecutor, SimClock), String> {
        let clock = SimClock::new();
        Ok((SimExecutor::new(self.cost.clone(), clock.clone()), clock))
    }

    fn finish(&mut self, _executor: SimExecutor) {}

    /// The CPU engine's formats for the calibrated CPU model; vLLM's bf16
    /// (`auto`) and fp8 for a GPU preset. Accuracy is never measured here:
    /// the simulator computes no logits.
    fn kv_dtypes(&self) -> Vec<KvDtype> {
        let current = self.cost.model().kv_dtype;
        let offered: &[KvDtype] =
            if self.tokenizer_of.is_some() { &KvDtype::CPU } else { &[KvDtype::Bf16, KvDtype::Fp8] };
        KvDtype::ALL.into_iter().filter(|d| *d == current || offered.contains(d)).collect()
    }

    fn set_kv_dtype(&mut self, dtype: KvDtype) -> Result<(), String> {
        self.cost = self.cost.with_kv_dtype(dtype);
        Ok(())
    }
}
