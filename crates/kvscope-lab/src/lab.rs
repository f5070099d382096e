//! The whole experiment: the three capacity cases, the causal-chain sweep,
//! the probe beside realized reuse — run on one backend with one pool, and
//! written out as the artifacts DESIGN.md lists.

use crate::backend::{BackendInfo, LabBackend};
use crate::capacity::CapacityRow;
use crate::causal::SweepPoint;
use crate::probe_compare::{compare, ProbeComparison};
use crate::runner::{run_case, CaseRun, RunConfig, RunError};
use crate::workload::{shared_prefix_case, standard_cases, Arrival, CaseSpec, PromptLengths, TextSource};
use kvscope_core::probe::PrefixProbe;
use serde::Serialize;

#[derive(Clone, Debug)]
pub struct LabConfig {
    pub quick: bool,
    pub seed: u64,
    pub block_size: usize,
    /// Pool size in blocks; when `None`, derived from `kv_memory_bytes`.
    pub kv_blocks: Option<usize>,
    pub kv_memory_bytes: Option<u64>,
    pub max_running: Option<usize>,
    pub max_batched_tokens: usize,
    /// Prompts from a dataset instead of the generator.
    pub dataset: Option<Vec<String>>,
    /// Poisson arrivals at this rate (requests/s) for the three cases and
    /// the sweep; `None` submits each case's requests all at once.
    pub arrival_rate: Option<f64>,
}

impl LabConfig {
    fn arrival(&self) -> Arrival {
        self.arrival_rate.map_or(Arrival::Burst, |rate| Arrival::Poisson { rate })
    }
}

impl LabConfig {
    /// The default KV budget: big enough for dozens of short requests, small
    /// enough that a few long ones fill it (the capacity effect).
    pub fn default_kv_memory(quick: bool) -> u64 {
        if quick {
            48 << 20
        } else {
            256 << 20
        }
    }

    /// Blocks in the pool: `kv_blocks` if given, else the memory budget
    /// divided by the real size of one block.
    pub fn num_blocks(&self, kv_bytes_per_token: u64) -> usize {
        let bytes_per_block = (kv_bytes_per_token * self.block_size as u64).max(1);
        self.kv_blocks.unwrap_or_else(|| {
            (self.kv_memory_bytes.unwrap_or(Self::default_kv_memory(self.quick)) / bytes_per_block) as usize
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LabResults {
    pub backend: BackendInfo,
    pub run_config: RunConfig,
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
}

/// Progress callback: stage name, done, total.
pub type Progress<'a> = &'a mut dyn FnMut(&str, usize, usize);

pub fn run_lab<B: LabBackend>(backend: &mut B, cfg: &LabConfig, progress: Progress) -> Result<LabResults, LabError> {
    let started = std::time::Instant::now();
    let info = backend.info();
    let bytes_per_block = info.kv_bytes_per_token * cfg.block_size as u64;
    let num_blocks = cfg.num_blocks(info.kv_bytes_per_token);
    let run_config = RunConfig {
        num_blocks,
        block_size: cfg.block_size,
        bytes_per_block,
        enable_prefix_caching: true,
        max_running: cfg.max_running.unwrap_or(if cfg.quick { 16 } else { 32 }),
        max_batched_tokens: cfg.max_batched_tokens,
        max_model_len: info.max_model_len,
        vocab_size: Some(info.vocab_size),
    };
    let source = match &cfg.dataset {
        Some(texts) => TextSource::Dataset(texts),
        None => TextSource::Generated,
    };
    let sweep_spec = SweepSpec {
        prompt_lens: if cfg.quick { vec![32, 128, 384] } else { vec![128, 512, 1024, 1536] },
        num_requests: if cfg.quick { 6 } else { 8 },
        output_tokens: if cfg.quick { 8 } else { 32 },
    };
    // Every workload is built (and tokenized) before anything runs.
    let (workloads, sweeps, (probe_spec, probe_reqs)) = {
        let tokenize = |t: &str| backend.tokenize(t);
        let workloads: Vec<_> = standard_cases(cfg.quick, cfg.seed)
            .into_iter()
            .map(|spec| CaseSpec { arrival: cfg.arrival(), ..spec })
            .map(|spec| {
                let reqs = spec.generate(&tokenize, &source);
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
                    prompt_lengths: PromptLengths::Around { tokens: len, jitter: 0 },
                    output_tokens: sweep_spec.output_tokens,
                    arrival: cfg.arrival(),
                    shared_prefix_tokens: 0,
                    seed: cfg.seed + 10 + len as u64,
                };
                let reqs = spec.generate(&tokenize, &TextSource::Generated);
                (spec, reqs)
            })
            .collect();
        let spec = shared_prefix_case(cfg.quick, cfg.seed);
        let reqs = spec.generate(&tokenize, &TextSource::Generated);
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
        cases.push(run_one(backend, &run_config, spec, reqs, progress)?);
    }
    let capacity = cases.iter().map(|c| CapacityRow::from_run(c, false)).collect();

    let mut sweep = Vec::new();
    for (spec, reqs) in &sweeps {
        let run = run_one(backend, &run_config, spec, reqs, progress)?;
        sweep.push(SweepPoint::from_run(&run));
    }

    // The probe (caching off, only watching) beside realized reuse (caching on).
    let mut probe = PrefixProbe::new(cfg.block_size);
    for r in &probe_reqs {
        probe.observe(&r.prompt);
    }
    let off_config = RunConfig { enable_prefix_caching: false, ..run_config.clone() };
    let off_spec = CaseSpec { name: format!("{}_caching_off", probe_spec.name), ..probe_spec.clone() };
    let off = run_one(backend, &off_config, &off_spec, &probe_reqs, progress)?;
    let on_spec = CaseSpec { name: format!("{}_caching_on", probe_spec.name), ..probe_spec.clone() };
    let on = run_one(backend, &run_config, &on_spec, &probe_reqs, progress)?;
    let probe = compare(&off, probe.report, &on);

    Ok(LabResults {
        backend: info,
        run_config,
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
    config: &RunConfig,
    spec: &CaseSpec,
    reqs: &[crate::workload::LabRequest],
    progress: Progress,
) -> Result<CaseRun, LabError> {
    let (exec, clock) = backend.start(config.num_blocks, config.block_size).map_err(LabError::Backend)?;
    let blocks = backend.block_manager(&config.engine_config().pool).map_err(LabError::Backend)?;
    let total = reqs.len();
    progress(&spec.name, 0, total);
    let (run, exec) =
        run_case(exec, clock, config, spec, reqs, blocks, &mut |done, total| progress(&spec.name, done, total))?;
    backend.finish(exec);
    Ok(run)
}
