//! kvscope-experiment: one definition of an experiment, used by the lab
//! (`kvscope lab`), the simulator (`kvscope sim`) and the load generator
//! (`kvscope bench serve --lab-workload`).
//!
//! - [`workload`]: named cases (`short_ctx`, `long_ctx`, `mixed_ctx`, the
//!   shared-prefix case, the fleet's `shared_prefix_chats`) at a
//!   [`workload::Scale`]; fixed, jittered,
//!   alternating or uniform-random lengths; all-at-once, Poisson or gamma
//!   arrivals; prompts from kvscope's prose generator ([`textgen`]), a
//!   dataset file ([`dataset`]) or synthetic token ids.
//! - [`driver`]: the one arrival loop: submits each request at its time on
//!   the engine's clock, steps any executor until everything finished, and
//!   keeps what the tables need (with every step's events, or only the
//!   summary, which lets the simulator advance decode runs in one go).
//! - [`capacity`]: the capacity row and table (CSV via `csv`, JSON via
//!   `serde`), [`mix`]: a two-peak mix's members, each with its own
//!   figures, [`throughput`]: a run's throughput under vLLM's key names,
//!   and [`dist`]: the one percentile convention; [`names`]: what a
//!   report calls a stall reason or a mix member in each language.

#![forbid(unsafe_code)]

pub mod capacity;
pub mod dataset;
pub mod dist;
pub mod driver;
mod kv_size;
pub mod mix;
pub mod names;
pub mod textgen;
pub mod throughput;
pub mod workload;

pub use capacity::CapacityRow;
pub use dist::Dist;
pub use driver::{run_case, CaseRun, Detail, RequestResult, RunError, RunOptions, Stop};
pub use throughput::Throughput;
pub use workload::{
    Arrival, CaseSpec, ChatTurn, ChatsCase, Lengths, PromptSource, Scale, WorkloadRequest, CASE_NAMES, CHATS_CASE,
};
