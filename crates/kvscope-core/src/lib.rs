//! kvscope-core: the KV cache as state.
//!
//! Read it in this order — it is the lifecycle of a request's KV:
//! - [`request`]: what a client asks for (`RequestId`, `SamplingParams`);
//!   [`prompt`]: its tokens, given or drawn from a seed on first read.
//! - [`sequence`]: the per-request state object the KV is bound to;
//!   [`seq_kv`]: the part of it a block manager sees.
//! - [`kv_dtype`]: what one KV slot costs (f32, f16, int8, ...).
//! - [`block_manager`]: the paged pool — allocation, reference counts,
//!   prefix-cache index, release, eviction; [`block_manager_api`]: the seam
//!   the scheduler calls it through (`KvBlockManager`, which the scheduler
//!   and the engine are generic over), where a plug-in can replace it.
//! - [`scheduler`]: admission, chunked prefill, decode batching, preemption.
//! - [`executor`]: the contract with whatever computes the model.
//! - [`config`]: the one check of an engine configuration every command runs.
//! - [`engine`]: the step loop tying them together under an injected [`clock`]
//!   (and, for the simulator, decode runs: identical decode-only steps
//!   advanced at once, `Engine::try_decode_run`).
//! - [`events`]: the stamped event stream every observer reads.
//! - [`stats`] and [`probe`]: the lab's two extension observers.
//! - [`replay`]: rebuilds reference counts, queue waits and TTFTs from the
//!   event stream alone; [`rng`]: the seeded generator behind synthetic
//!   workloads; `testing` (feature `testing`): a paged executor for tests.
//!
//! No tensors and no I/O live here; the crate is deterministic.
//! One `unsafe` block, a cache prefetch in `block_manager::prefetch`, is
//! allowed by name; the rest of the crate may not use `unsafe`.

#![deny(unsafe_code)]

mod batch_writer;
pub mod block_manager;
pub mod block_manager_api;
pub mod clock;
pub mod config;
mod csv_text;
mod decode_run;
pub mod engine;
pub mod events;
pub mod executor;
mod holders;
pub mod ids;
mod invariants;
pub mod kv_dtype;
pub mod kv_geometry;
mod pool;
pub mod prefix_hash;
pub mod probe;
pub mod prompt;
pub mod replay;
pub mod request;
pub mod rng;
pub mod scheduler;
pub mod seq_kv;
pub mod sequence;
pub mod stats;
// Test support only: a release build of the CLI or the server never compiles
// it. Crates enable the feature in their [dev-dependencies].
#[cfg(feature = "testing")]
pub mod testing;

pub use block_manager::{BlockManager, PoolConfig};
pub use block_manager_api::KvBlockManager;
pub use clock::{Clock, SimClock, WallClock};
pub use config::{ConfigError, EngineConfig, DEFAULT_BLOCK_SIZE, VLLM_MAX_NUM_BATCHED_TOKENS, VLLM_MAX_NUM_SEQS};
pub use engine::{Engine, StepOutcome, SubmitError};
pub use events::{
    DecodeRunReport, EventRecord, FinishReason, KvEvent, Observer, ReleaseReason, StallReason, StepSnapshot,
};
pub use executor::{
    BatchOutput, DecodeRun, DecodeRunOutput, DecodeRunSeq, Executor, ExecutorError, PromptLogprob, SampledToken,
    ScheduledBatch, ScheduledSeq,
};
pub use ids::{BlockId, RequestId, Seconds, TokenId};
pub use kv_dtype::KvDtype;
pub use kv_geometry::KvGeometry;
pub use prompt::{Prompt, RandomTokens};
pub use request::{Request, SamplingParams};
pub use scheduler::{Scheduler, SchedulerConfig};
pub use seq_kv::{SeqKv, SeqView};
pub use sequence::{Sequence, SequenceStatus};
