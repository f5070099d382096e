//! The whole experiment: the three capacity cases, the causal-chain sweep,
//! the probe beside realized reuse — run on one backend with one pool, and
//! written out as the artifacts DESIGN.md lists.

use crate::backend::{BackendInfo, LabBackend};
use crate::causal::{agreement, median_point, ChainAgreement, SweepPoint};
use crate::failure::FailureResults;
use crate::knob_sweep::{KnobSweep, KnobSweepResult};
use crate::kv_precision::{run_kv_precision, KvPrecision, MainRun, ACCURACY_PROMPTS_PER_CASE, PRECISION_CASE};
use crate::probe_compare::{compare, ProbeComparison};
use crate::repeat::median_row;
use kvscope_core::probe::PrefixProbe;
use kvscope_core::{Engine, EngineConfig, PoolConfig, SchedulerConfig};
use kvscope_experiment::capacity::{explain, CapacityRow};
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
    /// How many times every case, sweep point and probe runs, each time on
    /// a fresh engine (at least 1).
    pub repeat: usize,
    /// Knob sweeps (`--sweep block-size=8,16,32`): the three cases again at
    /// each value of one knob.
    pub knob_sweeps: Vec<KnobSweep>,
}

impl LabConfig {
    /// The lab at `scale` with `seed` and every knob at its default: blocks
    /// of 16, the scale's pool and limits, generated prompts arriving all
    /// at once, one repeat, no knob sweep.
    pub fn at_scale(scale: Scale, seed: u64) -> Self {
        LabConfig {
            scale,
            seed,
            block_size: 16,
            kv_blocks: None,
            kv_memory_bytes: None,
            max_running: None,
            max_batched_tokens: None,
            dataset: None,
            arrival_rate: None,
            repeat: 1,
            knob_sweeps: Vec::new(),
        }
    }

    pub fn arrival(&self) -> Arrival {
        self.arrival_rate.map_or(Arrival::AllAtOnce, |rate| Arrival::Poisson { rate })
    }

    fn quick(&self) -> bool {
        self.scale == Scale::Quick
    }

    /// The default KV budget on the CPU model: big enough for dozens of
    /// short requests, small enough that a few long ones fill it (the
    /// capacity effect). In the default f16 KV: 1,088 tokens quick, 5,824
    /// tokens otherwise.
    pub fn default_kv_memory(quick: bool) -> u64 {
        if quick {
            24 << 20
        } else {
            128 << 20
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
            scheduler: SchedulerConfig::new(
                self.max_running.unwrap_or(default_max_running),
                self.max_batched_tokens.unwrap_or(default_budget),
                info.max_model_len,
            ),
            pool: PoolConfig::new(self.num_blocks(info), self.block_size, info.kv_bytes_per_token, true),
            vocab_size: Some(info.vocab_size),
        }
    }
}

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

#[derive(Clone, Debug, Serialize, PartialEq)]
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
    #[error("--sweep {knob}={value}: {problem}")]
    Knob { knob: String, value: String, problem: String },
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

    // Every knob value is checked (pool, limits) before anything runs.
    let knob_configs = crate::knob_sweep::configs(cfg, &info, &workloads)?;

    // Repeats outermost: a slow drift of the machine then touches every
    // case alike instead of biasing the cases run last.
    let repeat = cfg.repeat.max(1);
    let mut cases = Vec::new();
    let mut capacity_repeats = vec![Vec::new(); workloads.len()];
    let mut sweep_repeats = vec![Vec::new(); sweeps.len()];
    let mut probe_repeats = Vec::new();
    let mut probe_runs = Vec::new();
    let mut probe_observed = PrefixProbe::new(cfg.block_size);
    for r in &probe_reqs {
        probe_observed.observe(&r.prompt);
    }
    for r in 0..repeat {
        for (i, (spec, reqs)) in workloads.iter().enumerate() {
            let run = run_one(backend, &engine, spec, reqs, RunOptions::EVERY_STEP, progress)?;
            capacity_repeats[i].push(CapacityRow::from_run(&run, false));
            if r == 0 {
                cases.push(run);
            }
        }
        for (i, (spec, reqs)) in sweeps.iter().enumerate() {
            let run = run_one(backend, &engine, spec, reqs, RunOptions::EVERY_STEP, progress)?;
            sweep_repeats[i].push(SweepPoint::from_run(&run));
        }
        // The probe (caching off, only watching) beside realized reuse (caching on).
        let mut off_config = engine.clone();
        off_config.pool.enable_prefix_caching = false;
        let off_spec = CaseSpec { name: format!("{}_caching_off", probe_spec.name), ..probe_spec.clone() };
        let off = run_one(backend, &off_config, &off_spec, &probe_reqs, RunOptions::EVERY_STEP, progress)?;
        let on_spec = CaseSpec { name: format!("{}_caching_on", probe_spec.name), ..probe_spec.clone() };
        let on = run_one(backend, &engine, &on_spec, &probe_reqs, RunOptions::EVERY_STEP, progress)?;
        probe_repeats.push(compare(&off, probe_observed.report.clone(), &on));
        if r == 0 {
            probe_runs = vec![off, on];
        }
    }
    let capacity = capacity_repeats
        .iter()
        .map(|rows| {
            let mut row = median_row(rows);
            row.explanation = explain(&row, &engine, false);
            row
        })
        .collect();
    let sweep = sweep_repeats.iter().map(|p| median_point(p)).collect();
    let knob_sweeps = crate::knob_sweep::run(backend, &knob_configs, &workloads, repeat, progress)?;
    let workload = WorkloadIdentity {
        scale: format!("{:?}", cfg.scale).to_lowercase(),
        seed: cfg.seed,
        arrival: cfg.arrival(),
        dataset: cfg.dataset.is_some(),
        cases: workloads.iter().map(|(spec, reqs)| CaseIdentity::of(spec, reqs)).collect(),
        sweep_spec: sweep_spec.clone(),
    };

    let kv_precision = match workloads.iter().zip(&cases).find(|((spec, _), _)| spec.name == PRECISION_CASE) {
        Some(((spec, reqs), run)) => {
            let prompts = workloads
                .iter()
                .flat_map(|(_, reqs)| reqs.iter().take(ACCURACY_PROMPTS_PER_CASE).map(|r| r.prompt.to_vec()))
                .collect();
            let main = MainRun { engine: &engine, spec, requests: reqs, run, prompts };
            run_kv_precision(backend, main, progress)?
        }
        None => None,
    };

    Ok(LabResults {
        backend: info,
        engine,
        cases,
        capacity,
        capacity_repeats,
        sweep,
        chain: agreement(&sweep_repeats),
        sweep_repeats,
        sweep_spec,
        probe: probe_repeats[0].clone(),
        probe_repeats,
        probe_runs,
        repeat,
        workload,
        knob_sweeps,
        failure: None,
        kv_precision,
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs one workload on a fresh engine of `config` and hands the executor
/// back to the backend.
pub fn run_one<B: LabBackend>(
    backend: &mut B,
    config: &EngineConfig,
    spec: &CaseSpec,
    reqs: &[WorkloadRequest],
    options: RunOptions,
    progress: Progress,
) -> Result<CaseRun, LabError> {
    let (exec, clock) = backend.start(config.pool.num_blocks, config.pool.block_size).map_err(LabError::Backend)?;
    let blocks = backend.block_manager(&config.pool).map_err(LabError::Backend)?;
    let total = reqs.len();
    progress(&spec.name, 0, total);
    let (requests, tick) = (reqs.iter().cloned(), &mut |done, total| progress(&spec.name, done, total));
    // The engine's type names its block manager: the native one, or a
    // plug-in chosen at run time (boxed).
    let (run, exec) = match blocks {
        Some(blocks) => {
            let engine = Engine::with_block_manager(config.clone(), blocks, exec, clock);
            run_engine(engine, config, spec, requests, options, tick)
        }
        None => run_engine(Engine::new(config.clone(), exec, clock), config, spec, requests, options, tick),
    }?;
    backend.finish(exec);
    Ok(run)
}
