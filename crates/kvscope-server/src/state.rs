//! What every handler shares.

use crate::engine_loop::EngineHandle;
use crate::metrics::Metrics;
use crate::model::TextModel;
use crate::series::Series;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

#[derive(Clone)]
pub struct AppState {
    pub engine: EngineHandle,
    pub model: Arc<dyn TextModel>,
    pub model_name: String,
    pub started_unix: u64,
    pub metrics: Arc<Metrics>,
    pub series: Arc<Mutex<Series>>,
    pub events: broadcast::Sender<Arc<str>>,
}
