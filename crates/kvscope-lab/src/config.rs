//! The lab's configuration: scale, seed, pool and limits, workload source,
//! repeats and knob sweeps, and the engine configuration they give.

use crate::backend::BackendInfo;
use crate::knob::{Knob, KnobSweep};
use kvscope_core::{
    EngineConfig, PoolConfig, SchedulerConfig, DEFAULT_BLOCK_SIZE, VLLM_MAX_NUM_BATCHED_TOKENS, VLLM_MAX_NUM_SEQS,
};
use kvscope_experiment::workload::{Arrival, Scale};

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
            block_size: DEFAULT_BLOCK_SIZE,
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
            Scale::Gpu => (VLLM_MAX_NUM_SEQS, VLLM_MAX_NUM_BATCHED_TOKENS),
        };
        EngineConfig::new(
            SchedulerConfig::new(
                self.max_running.unwrap_or(default_max_running),
                self.max_batched_tokens.unwrap_or(default_budget),
                info.max_model_len,
            ),
            PoolConfig::new(self.num_blocks(info), self.block_size, info.kv_bytes_per_token, true),
            Some(info.vocab_size),
        )
    }

    /// This configuration with one knob set to `v` (a `--sweep` point).
    pub fn with_knob(&self, knob: Knob, v: u64) -> LabConfig {
        let mut c = self.clone();
        match knob {
            Knob::BlockSize => c.block_size = v as usize,
            Knob::KvMemory => {
                c.kv_memory_bytes = Some(v);
                c.kv_blocks = None;
            }
            Knob::MaxRunning => c.max_running = Some(v as usize),
        }
        c
    }
}
