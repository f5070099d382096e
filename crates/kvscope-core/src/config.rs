//! The engine configuration ([`EngineConfig`]: one value the engine and
//! its executor are both built from), its one check, run by every command
//! before it allocates a KV pool or loads a model, and the named defaults
//! every command starts from.
//!
//! A configuration that is accepted must be able to run a request to the
//! end: a zero limit makes every step empty (the engine spins, the lab's
//! statistics grow without bound), a zero-block pool cannot admit anyone,
//! and an absurd block size or pool asks the allocator for more than the
//! machine has. Each refusal names the setting and the fix; the flag names
//! differ per command (`lab --max-running` is `serve --max-num-seqs`), so
//! the message gives both spellings.

use crate::block_manager::PoolConfig;
use crate::kv_geometry::KvGeometry;
use crate::scheduler::SchedulerConfig;

/// Token slots per KV block when a command is not told otherwise: vLLM's
/// (its CUDA platform sets an unset `block_size` to 16,
/// `vllm/platforms/cuda.py`, `check_and_update_config`).
pub const DEFAULT_BLOCK_SIZE: usize = 16;

/// vLLM's `max_num_seqs`: most requests running at once, the value
/// `EngineArgs._set_default_args` (`vllm/engine/arg_utils.py`) gives where
/// it does not raise it for large GPUs (newer releases give 1024 on GPUs of
/// 70 GiB or more). The simulator and the lab's GPU scale use it.
pub const VLLM_MAX_NUM_SEQS: usize = 256;

/// vLLM's `max_num_batched_tokens` for the OpenAI server on GPUs of 70 GiB
/// or more other than the A100 (`EngineArgs._set_default_args`,
/// `vllm/engine/arg_utils.py`; 2048 on smaller GPUs, 16384 for the offline
/// `LLM` class). The simulator and the lab's GPU scale use it.
pub const VLLM_MAX_NUM_BATCHED_TOKENS: usize = 8192;

/// Largest block size accepted. vLLM's CUDA backends take 1..=128 (some
/// 256); larger blocks only waste KV at every sequence's tail.
pub const MAX_BLOCK_SIZE: usize = 256;

/// Everything an engine is configured by; serialised as it is into the
/// artifacts that describe a run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EngineConfig {
    pub scheduler: SchedulerConfig,
    pub pool: PoolConfig,
    /// Token ids must be below this (when known).
    pub vocab_size: Option<usize>,
}

/// Why a configuration could never work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "the most running requests (--max-running / --max-num-seqs) is 0: no request could ever run; give at least 1"
    )]
    NoRunningSlots,
    #[error(
        "the step token budget (--max-batched-tokens / --max-num-batched-tokens) is 0: no step could compute a token; give at least 1 (the default is 512)"
    )]
    NoTokenBudget,
    #[error(
        "the step token budget ({budget}, --max-batched-tokens / --max-num-batched-tokens) is below the most running requests ({max_running}, --max-running / --max-num-seqs): the running requests could not all decode in one step; raise the budget to at least {max_running} or lower the running limit"
    )]
    BudgetBelowRunning { budget: usize, max_running: usize },
    #[error(
        "the partial-prefill limit ({limit}, --max-num-partial-prefills) is above the most running requests ({max_running}, --max-running / --max-num-seqs), so it could never hold a request back: give at most {max_running}, or 0 for no limit"
    )]
    PartialPrefillsAboveRunning { limit: usize, max_running: usize },
    #[error(
        "a partial-prefill limit (--max-num-partial-prefills {0}) needs a long-prefill cap (--long-prefill-token-threshold): without one, a prefill left part-way has taken the whole step's budget and no one could be admitted anyway, so the limit would never hold a request back; give a cap (vLLM's default is 4% of the context) or drop the limit"
    )]
    PartialPrefillsWithoutCap(usize),
    #[error("the model's context (max_model_len) is 0 tokens: no prompt fits; check the model file")]
    NoContext,
    #[error("the vocabulary size is 0: no token id is valid; check the model file")]
    NoVocabulary,
    #[error(
        "the KV pool has 0 blocks (--kv-blocks / --kv-memory): no request could be admitted; give at least 1 block"
    )]
    NoBlocks,
    #[error("the block size (--block-size) is {0} tokens: give 1 to {MAX_BLOCK_SIZE} (16 is the default)")]
    BlockSize(usize),
    #[error(
        "a KV pool of {num_blocks} blocks × {block_size} tokens is larger than this machine can address: give fewer blocks (--kv-blocks / --kv-memory)"
    )]
    PoolOverflow { num_blocks: usize, block_size: usize },
    #[error(
        "the KV pool needs {needed_mib} MiB ({num_blocks} blocks × {bytes_per_block} bytes) but only {available_mib} MiB of memory are available: give fewer blocks (--kv-blocks / --kv-memory) or a smaller --block-size"
    )]
    PoolExceedsMemory { num_blocks: usize, bytes_per_block: u64, needed_mib: u64, available_mib: u64 },
    #[error(
        "the executor's KV storage holds {executor} but the engine's pool has {pool}: block ids and slots would not match; build the executor from the engine configuration's pool (`EngineConfig::pool`) so both come from one value"
    )]
    ExecutorGeometry { executor: KvGeometry, pool: KvGeometry },
}

impl SchedulerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_running == 0 {
            return Err(ConfigError::NoRunningSlots);
        }
        if self.max_batched_tokens == 0 {
            return Err(ConfigError::NoTokenBudget);
        }
        // vLLM refuses the same (max_num_batched_tokens < max_num_seqs).
        if self.max_batched_tokens < self.max_running {
            return Err(ConfigError::BudgetBelowRunning {
                budget: self.max_batched_tokens,
                max_running: self.max_running,
            });
        }
        if self.max_num_partial_prefills > 0 && self.long_prefill_token_threshold == 0 {
            return Err(ConfigError::PartialPrefillsWithoutCap(self.max_num_partial_prefills));
        }
        if self.max_num_partial_prefills > self.max_running {
            return Err(ConfigError::PartialPrefillsAboveRunning {
                limit: self.max_num_partial_prefills,
                max_running: self.max_running,
            });
        }
        if self.max_model_len == 0 {
            return Err(ConfigError::NoContext);
        }
        Ok(())
    }
}

impl PoolConfig {
    /// The layout an executor's KV storage must have for this pool.
    pub fn geometry(&self) -> KvGeometry {
        KvGeometry { num_blocks: self.num_blocks, block_size: self.block_size }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.block_size == 0 || self.block_size > MAX_BLOCK_SIZE {
            return Err(ConfigError::BlockSize(self.block_size));
        }
        if self.num_blocks == 0 {
            return Err(ConfigError::NoBlocks);
        }
        self.pool_bytes().map(|_| ())
    }

    /// The whole pool's bytes (0 when the block's bytes are unknown).
    fn pool_bytes(&self) -> Result<u64, ConfigError> {
        let overflow = ConfigError::PoolOverflow { num_blocks: self.num_blocks, block_size: self.block_size };
        // Token slots must be addressable too, whatever a slot weighs.
        self.num_blocks.checked_mul(self.block_size).filter(|&s| s <= isize::MAX as usize).ok_or(overflow.clone())?;
        (self.num_blocks as u64).checked_mul(self.bytes_per_block).ok_or(overflow)
    }

    /// Refuses a pool that does not fit in `available_bytes` of memory. The
    /// storage is zeroed lazily, so an oversized pool would otherwise be
    /// accepted and fail (or be OOM-killed) only once it fills up.
    pub fn check_memory(&self, available_bytes: u64) -> Result<(), ConfigError> {
        let needed = self.pool_bytes()?;
        if needed > available_bytes {
            return Err(ConfigError::PoolExceedsMemory {
                num_blocks: self.num_blocks,
                bytes_per_block: self.bytes_per_block,
                needed_mib: needed.div_ceil(1 << 20),
                available_mib: available_bytes >> 20,
            });
        }
        Ok(())
    }
}

impl EngineConfig {
    /// The one way to assemble a configuration: limits, pool and the
    /// model's vocabulary (`None`: unknown, token ids unchecked). The
    /// executor is then built from `pool` (its geometry), and
    /// [`Engine::new`](crate::Engine::new) refuses one that disagrees.
    pub fn new(scheduler: SchedulerConfig, pool: PoolConfig, vocab_size: Option<usize>) -> Self {
        EngineConfig { scheduler, pool, vocab_size }
    }

    /// Refuses an executor whose KV storage is laid out otherwise than the
    /// pool (an executor that holds no KV, `None`, always fits).
    pub fn check_executor(&self, executor: Option<KvGeometry>) -> Result<(), ConfigError> {
        match executor {
            Some(geometry) if geometry != self.pool.geometry() => {
                Err(ConfigError::ExecutorGeometry { executor: geometry, pool: self.pool.geometry() })
            }
            _ => Ok(()),
        }
    }

    /// Every field on its own and against the others.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.scheduler.validate()?;
        self.pool.validate()?;
        if self.vocab_size == Some(0) {
            return Err(ConfigError::NoVocabulary);
        }
        Ok(())
    }

    /// [`validate`](Self::validate), and the pool within the memory the
    /// host has (`None`: unknown, not checked).
    pub fn validate_within(&self, available_bytes: Option<u64>) -> Result<(), ConfigError> {
        self.validate()?;
        match available_bytes {
            Some(bytes) => self.pool.check_memory(bytes),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EngineConfig {
        EngineConfig {
            scheduler: SchedulerConfig {
                max_running: 4,
                max_batched_tokens: 64,
                max_model_len: 128,
                long_prefill_token_threshold: 0,
                max_num_partial_prefills: 0,
            },
            pool: PoolConfig { num_blocks: 8, block_size: 16, enable_prefix_caching: true, bytes_per_block: 1024 },
            vocab_size: Some(100),
        }
    }

    #[test]
    fn a_sane_configuration_passes() {
        assert_eq!(config().validate_within(Some(1 << 30)), Ok(()));
    }

    #[test]
    fn every_unworkable_field_is_named() {
        type Breaks = fn(&mut EngineConfig);
        let cases: Vec<(Breaks, &str)> = vec![
            (|c| c.scheduler.max_running = 0, "--max-num-seqs"),
            (|c| c.scheduler.max_batched_tokens = 0, "--max-num-batched-tokens"),
            (|c| c.scheduler.max_batched_tokens = 3, "at least 4"),
            (|c| c.scheduler.max_model_len = 0, "max_model_len"),
            (|c| c.scheduler.max_num_partial_prefills = 1, "--long-prefill-token-threshold"),
            (
                |c| {
                    c.scheduler.long_prefill_token_threshold = 8;
                    c.scheduler.max_num_partial_prefills = 5;
                },
                "at most 4",
            ),
            (|c| c.pool.num_blocks = 0, "--kv-blocks"),
            (|c| c.pool.block_size = 0, "--block-size"),
            (|c| c.pool.block_size = 100_000, "--block-size"),
            (|c| c.vocab_size = Some(0), "vocabulary"),
            (|c| c.pool.num_blocks = usize::MAX, "can address"),
        ];
        for (break_it, fix) in cases {
            let mut c = config();
            break_it(&mut c);
            let message = c.validate().expect_err("refused").to_string();
            assert!(message.contains(fix), "{message:?} should name {fix:?}");
        }
    }

    #[test]
    fn a_pool_larger_than_memory_is_refused_before_allocation() {
        let mut c = config();
        c.pool.num_blocks = 1 << 20;
        let err = c.validate_within(Some(1 << 29)).unwrap_err();
        assert!(matches!(err, ConfigError::PoolExceedsMemory { needed_mib: 1024, available_mib: 512, .. }), "{err}");
        assert_eq!(c.validate_within(None), Ok(()));
    }
}
