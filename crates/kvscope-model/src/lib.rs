//! The real executor on CPU: GGUF reader, tokenizer, chat template, paged KV
//! storage, attention over block tables, the Llama-family forward, sampler.
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]
// The kernels index rows, heads and lanes explicitly: the loop index *is*
// the fixed reduction order that batch invariance depends on.
#![allow(clippy::needless_range_loop)]

pub mod chat_template;
pub mod config;
pub mod executor;
pub mod fetch;
pub mod gguf;
pub mod host_memory;
pub mod kernels;
pub mod kv_storage;
pub mod llama;
pub mod loaded;
pub mod model;
pub mod model_args;
pub mod quant;
pub mod sampler;
pub mod teacher_forcing;
#[cfg(test)]
mod test_blocks;
pub mod tokenizer;

pub use executor::ModelExecutor;
pub use loaded::{LoadError, LoadedModel};
pub use model::Model;
pub use model_args::ModelArgs;
