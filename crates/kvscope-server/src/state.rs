//! What every handler shares.

use crate::engine_loop::EngineHandle;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::model::TextModel;
use crate::series::Series;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, Semaphore};

#[derive(Clone)]
pub struct AppState {
    pub engine: EngineHandle,
    pub model: Arc<dyn TextModel>,
    pub model_name: String,
    pub started_unix: u64,
    pub metrics: Arc<Metrics>,
    pub series: Arc<Mutex<Series>>,
    pub events: broadcast::Sender<Arc<str>>,
    pub limits: Limits,
    /// Tokenizations running at once off the async workers.
    pub tokenizers: Arc<Semaphore>,
    /// Longest token's text in bytes, when the model knows it: a prompt
    /// longer than the context times this cannot fit and is refused
    /// before it is tokenized.
    pub max_token_bytes: Option<usize>,
    /// Token slots in the whole KV pool.
    pub pool_tokens: usize,
    pub max_waiting: usize,
    /// The engine's configuration, for a router's `/server_info`.
    pub engine_config: Arc<kvscope_core::EngineConfig>,
}
