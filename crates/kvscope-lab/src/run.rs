//! The run machinery every part of the lab shares: one workload on a fresh
//! engine ([`run_one`]), the progress callback, and the lab's errors.

use crate::backend::LabBackend;
use kvscope_core::{Engine, EngineConfig};
use kvscope_experiment::driver::{run_engine, CaseRun, RunError, RunOptions};
use kvscope_experiment::workload::{CaseSpec, WorkloadRequest};

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
            let engine = Engine::with_block_manager(config.clone(), blocks, exec, clock)?;
            run_engine(engine, config, spec, requests, options, tick)
        }
        None => run_engine(Engine::new(config.clone(), exec, clock)?, config, spec, requests, options, tick),
    }?;
    backend.finish(exec);
    Ok(run)
}
