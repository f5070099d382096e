//! The whole experiment: the three capacity cases, the causal-chain sweep,
//! the probe beside realized reuse — run on one backend with one pool, and
//! written out as the artifacts DESIGN.md lists.

use crate::backend::{BackendInfo, LabBackend};
use crate::causal::SweepPoint;
use crate::probe_compare::{compare, ProbeComparison};
use kvscope_core::probe::PrefixProbe;
use kvscope_core::{Engine, EngineConfig, PoolConfig, SchedulerConfig};
use kvscope_experiment::capacity::CapacityRow;
use kvscope_experiment::driver::{run_engine, CaseRun, RunError, RunOptions};
use kvscope_experiment::workload::{
    shared_prefix_case, standard_cases, Arrival, CaseSpec, Lengths, PromptSource, Scale, WorkloadRequest,
};
use serde::Serialize;

#[derive(Clone, Debug)]
pub struct LabConfig {
    /// Sizes of the workloads (and, for `Quick` and `Lab`, of the default
    /// pool and limits).
    pub scale: Scale,
    pub seed: u64,
    pub block_size: usize,
    /// Pool size in blocks; when `None`, derived from `kv_memory_bytes`.
    pub kv_blocks: Option<usize>,
    pub kv_memory_bytes: Option<u64>,
    pub max_running: Option<usize>,
    /// Token budget of one step; `None`: 512 on the CPU model's scales,
    /// vLLM's 8192 at the GPU scale.
    pub max_batched_tokens: Option<usize>,
    /// Prompts from a dataset instead of the generator.
    pub dataset: Option<Vec<String>>,
    /// Poisson arrivals at this rate (requests/s) for the three cases and
    /// the sweep; `None` submits each case's requests all at once.
    pub arrival_rate: Option<f64>,
}

impl LabConfig {
    fn arrival(&self) -> Arrival {
        self.arrival_rate.map_or(Arrival::AllAtOnce, |rate| Arrival::Poisson { rate })
    }

    fn quick(&self) -> bool {
        self.scale == Scale::Quick
    }

    /// The default KV budget on the CPU model: big enough for dozens of
    /// short requests, small enough that a few long ones fill it (the
    /// capacity effect).
    pub fn default_kv_memory(quick: bool) -> u64 {
        if quick {
            48 << 20
        } else {
            256 << 20
        }
    }

    /// Blocks in the pool: `kv_blocks` if given, else the memory budget
    /// divided by the real size of one block, else the backend's own pool
    /// (a GPU preset's), else the default budget.
    pub fn num_blocks(&self, info: &BackendInfo) -> usize {
        let bytes_per_block = (info.kv_bytes_per_token * self.block_size as u64).max(1);
        self.kv_blocks
            .or(self.kv_memory_bytes.map(|m| (m / bytes_per_block) as usize))
            .or(info.pool_blocks)
            .unwrap_or((Self::default_kv_memory(self.quick()) / bytes_per_block) as usize)
    }

    /// The engine configuration every case of the run shares.
    pub fn engine_config(&self, info: &BackendInfo) -> EngineConfig {
        // vLLM's defaults at the GPU scale; the CPU model's own otherwise.
        let (default_max_running, default_budget) = match self.scale {
            Scale::Quick => (16, 512),
            Scale::Lab => (32, 512),
            Scale::Gpu => (256, 8192),
        };
        EngineConfig {
            scheduler: SchedulerConfig {
                max_running: self.max_running.unwrap_or(default_max_running),
                max_batched_tokens: self.max_batched_tokens.unwrap_or(default_budget),
                max_model_len: info.max_model_len,
                long_prefill_token_threshold: 0,
                max_num_partial_prefills: 0,
            },
            pool: PoolConfig {
                num_blocks: self.num_blocks(info),
                block_size: self.block_size,
                enable_prefix_caching: true,
                bytes_per_block: info.kv_bytes_per_token * self.block_size as u64,
            },
            vocab_size: Some(info.vocab_size),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LabResults {
    pub backend: BackendInfo,
    pub engine: EngineConfig,
    #[serde(skip)]
    pub cases: Vec<CaseRun>,
    pub capacity: Vec<CapacityRow>,
    pub sweep: Vec<SweepPoint>,
    pub sweep_spec: SweepSpec,
    pub probe: ProbeComparison,
    #[serde(skip)]
    pub probe_runs: Vec<CaseRun>,
    pub wall_seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SweepSpec {
    pub prompt_lens: Vec<usize>,
    pub num_requests: usize,
    pub output_tokens: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("cannot start the backend: {0}")]
    Backend(String),
    #[error(
        "the KV pool ({blocks} blocks of {block_size} tokens) cannot hold one request of case {case} ({tokens} tokens): give a larger --kv-memory or --kv-blocks"
    )]
    PoolTooSmall { blocks: usize, block_size: usize, case: String, tokens: usize },
    #[error(transparent)]
    Config(#[from] kvscope_core::ConfigError),
}

/// Progress callback: stage name, done, total.
pub type Progress<'a> = &'a mut dyn FnMut(&str, usize, usize);

pub fn run_lab<B: LabBackend>(backend: &mut B, cfg: &LabConfig, progress: Progress) -> Result<LabResults, LabError> {
    let started = std::time::Instant::now();
    let info = backend.info();
    let engine = cfg.engine_config(&info);
    // Before any workload is built or any KV allocated.
    engine.validate()?;
    let num_blocks = engine.pool.num_blocks;
    let pool_tokens = num_blocks * cfg.block_size;
    let sweep_spec = match cfg.scale {
        Scale::Quick => SweepSpec { prompt_lens: vec![32, 128, 384], num_requests: 6, output_tokens: 8 },
        Scale::Lab => SweepSpec { prompt_lens: vec![128, 512, 1024, 1536], num_requests: 8, output_tokens: 32 },
        Scale::Gpu => SweepSpec {
            prompt_lens: vec![512, 1024, 2048, 4096],
            num_requests: (pool_tokens / 2048).max(8),
            output_tokens: 128,
        },
    };
    // Every workload is built (and tokenized) before anything runs.
    let (workloads, sweeps, (probe_spec, probe_reqs)) = {
        let tokenize = |t: &str| backend.tokenize(t);
        let generated = match backend.vocab_for_synthetic_prompts() {
            Some(vocab) => PromptSource::Synthetic { vocab },
            None => PromptSource::Generated { tokenize: &tokenize },
        };
        let cases_source = match (&cfg.dataset, &generated) {
            (Some(texts), _) => PromptSource::Dataset { tokenize: &tokenize, texts },
            (None, PromptSource::Synthetic { vocab }) => PromptSource::Synthetic { vocab: *vocab },
            (None, _) => PromptSource::Generated { tokenize: &tokenize },
        };
        let workloads: Vec<_> = standard_cases(cfg.scale, pool_tokens, cfg.seed)
            .into_iter()
            .map(|spec| CaseSpec { arrival: cfg.arrival(), ..spec })
            .map(|spec| {
                let reqs = spec.generate(&cases_source);
                (spec, reqs)
            })
            .collect();
        // The sweep: the same pool and load, only the prompt length changes.
        let sweeps: Vec<_> = sweep_spec
            .prompt_lens
            .iter()
            .map(|&len| {
                let spec = CaseSpec {
                    name: format!("sweep_{len}"),
                    num_requests: sweep_spec.num_requests,
                    prompt_lengths: Lengths::Fixed { tokens: len },
                    output_lengths: Lengths::Fixed { tokens: sweep_spec.output_tokens },
                    arrival: cfg.arrival(),
                    shared_prefix_tokens: 0,
                    seed: cfg.seed + 10 + len as u64,
                };
                let reqs = spec.generate(&generated);
                (spec, reqs)
            })
            .collect();
        let spec = shared_prefix_case(cfg.scale, cfg.seed);
        let reqs = spec.generate(&generated);
        (workloads, sweeps, (spec, reqs))
    };
    for (spec, reqs) in
        workloads.iter().chain(&sweeps).chain(std::iter::once(&(probe_spec.clone(), probe_reqs.clone())))
    {
        let largest = reqs.iter().map(|r| r.prompt.len() + r.max_tokens).max().unwrap_or(0);
        if largest.div_ceil(cfg.block_size) > num_blocks {
            return Err(LabError::PoolTooSmall {
                blocks: num_blocks,
                block_size: cfg.block_size,
                case: spec.name.clone(),
                tokens: largest,
            });
        }
    }

    let mut cases = Vec::new();
    for (spec, reqs) in &workloads {
        cases.push(run_one(backend, &engine, spec, reqs, progress)?);
    }
    let capacity = cases.iter().map(|c| CapacityRow::from_run(c, false)).collect();

    let mut sweep = Vec::new();
    for (spec, reqs) in &sweeps {
        let run = run_one(backend, &engine, spec, reqs, progress)?;
        sweep.push(SweepPoint::from_run(&run));
    }

    // The probe (caching off, only watching) beside realized reuse (caching on).
    let mut probe = PrefixProbe::new(cfg.block_size);
    for r in &probe_reqs {
        probe.observe(&r.prompt);
    }
    let mut off_config = engine.clone();
    off_config.pool.enable_prefix_caching = false;
    let off_spec = CaseSpec { name: format!("{}_caching_off", probe_spec.name), ..probe_spec.clone() };
    let off = run_one(backend, &off_config, &off_spec, &probe_reqs, progress)?;
    let on_spec = CaseSpec { name: format!("{}_caching_on", probe_spec.name), ..probe_spec.clone() };
    let on = run_one(backend, &engine, &on_spec, &probe_reqs, progress)?;
    let probe = compare(&off, probe.report, &on);

    Ok(LabResults {
        backend: info,
        engine,
        cases,
        capacity,
        sweep,
        sweep_spec,
        probe,
        probe_runs: vec![off, on],
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}

fn run_one<B: LabBackend>(
    backend: &mut B,
    config: &EngineConfig,
    spec: &CaseSpec,
    reqs: &[WorkloadRequest],
    progress: Progress,
) -> Result<CaseRun, LabError> {
    let (exec, clock) = backend.start(config.pool.num_blocks, config.pool.block_size).map_err(LabError::Backend)?;
    let engine = match backend.block_manager(&config.pool).map_err(LabError::Backend)? {
        Some(blocks) => Engine::with_block_manager(config.clone(), blocks, exec, clock),
        None => Engine::new(config.clone(), exec, clock),
    };
    let total = reqs.len();
    progress(&spec.name, 0, total);
    let (run, exec) =
        run_engine(engine, config, spec, reqs.iter().cloned(), RunOptions::EVERY_STEP, &mut |done, total| {
            progress(&spec.name, done, total)
        })?;
    backend.finish(exec);
    Ok(run)
}
