//! The lab's requests, all built (and tokenized) before anything runs: the
//! three capacity cases, the context-length sweep behind the causal chain,
//! and the shared-prefix case of the probe.

use crate::backend::LabBackend;
use crate::config::LabConfig;
use crate::run::LabError;
use kvscope_experiment::workload::{
    shared_prefix_case, standard_cases, CaseSpec, Lengths, PromptSource, Scale, WorkloadRequest,
};
use serde::Serialize;

/// The context-length sweep: the same pool and load at each prompt length.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SweepSpec {
    pub prompt_lens: Vec<usize>,
    pub num_requests: usize,
    pub output_tokens: usize,
}

impl SweepSpec {
    /// The sweep at `scale`; at the GPU scale the load grows with the pool
    /// (`pool_tokens`), so the pool still decides how many run.
    pub fn at(scale: Scale, pool_tokens: usize) -> SweepSpec {
        match scale {
            Scale::Quick => SweepSpec { prompt_lens: vec![32, 128, 384], num_requests: 6, output_tokens: 8 },
            Scale::Lab => SweepSpec { prompt_lens: vec![128, 512, 1024, 1536], num_requests: 8, output_tokens: 32 },
            Scale::Gpu => SweepSpec {
                prompt_lens: vec![512, 1024, 2048, 4096],
                num_requests: (pool_tokens / 2048).max(8),
                output_tokens: 128,
            },
        }
    }
}

/// A case and its requests.
pub type Workload = (CaseSpec, Vec<WorkloadRequest>);

/// Every request of the lab.
pub struct LabWorkloads {
    /// `short_ctx`, `long_ctx`, `mixed_ctx`.
    pub cases: Vec<Workload>,
    /// One per prompt length of the sweep.
    pub sweeps: Vec<Workload>,
    /// The shared-prefix case the probe watches.
    pub probe: Workload,
}

impl LabWorkloads {
    /// Builds every workload of `cfg` on `backend`'s tokenizer (or its
    /// synthetic vocabulary), in a pool of `pool_tokens`.
    pub fn build<B: LabBackend>(backend: &B, cfg: &LabConfig, sweep: &SweepSpec, pool_tokens: usize) -> LabWorkloads {
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
        let cases = standard_cases(cfg.scale, pool_tokens, cfg.seed)
            .into_iter()
            .map(|spec| CaseSpec { arrival: cfg.arrival(), ..spec })
            .map(|spec| {
                let reqs = spec.generate(&cases_source);
                (spec, reqs)
            })
            .collect();
        // The sweep: the same pool and load, only the prompt length changes.
        let sweeps = sweep
            .prompt_lens
            .iter()
            .map(|&len| {
                let spec = CaseSpec {
                    name: format!("sweep_{len}"),
                    num_requests: sweep.num_requests,
                    prompt_lengths: Lengths::Fixed { tokens: len },
                    output_lengths: Lengths::Fixed { tokens: sweep.output_tokens },
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
        LabWorkloads { cases, sweeps, probe: (spec, reqs) }
    }

    /// Refuses a pool of `num_blocks` blocks of `block_size` tokens that
    /// cannot hold the largest request of some case.
    pub fn check_fit(&self, num_blocks: usize, block_size: usize) -> Result<(), LabError> {
        for (spec, reqs) in self.cases.iter().chain(&self.sweeps).chain(std::iter::once(&self.probe)) {
            let largest = largest_request(reqs);
            if largest.div_ceil(block_size) > num_blocks {
                return Err(LabError::PoolTooSmall {
                    blocks: num_blocks,
                    block_size,
                    case: spec.name.clone(),
                    tokens: largest,
                });
            }
        }
        Ok(())
    }
}

/// Tokens of the largest request (prompt and output): what the pool must
/// hold for the request to run at all.
pub fn largest_request(reqs: &[WorkloadRequest]) -> usize {
    reqs.iter().map(|r| r.prompt.len() + r.max_tokens).max().unwrap_or(0)
}
