//! The endpoints a router asks a worker for: what the SGLang Model Gateway
//! (`sglang-router` 0.3.2, crate `sgl-model-gateway` 0.3.2) reads when it
//! registers a worker, balances load and flushes caches. Checked in its
//! source (sgl-project/sglang, `sgl-model-gateway/`, the commit whose
//! Cargo.toml says 0.3.2, 000096b6efb93946b27d8a53aeb74dee0c01321f):
//!
//! - `GET /health` (`--health-check-endpoint`, default `/health`): any 2xx
//!   is healthy (`steps/worker/local/detect_connection.rs`, and the health
//!   checker every `--health-check-interval-secs`). Served by
//!   [`crate::observe::health`].
//! - `GET /server_info` and `GET /model_info` at registration
//!   (`steps/worker/local/discover_metadata.rs`): it reads `model_path` and
//!   `served_model_name` from the first, `model_type` and `architectures`
//!   from the second, and fails open (a 404 only loses the labels). The
//!   older `/get_server_info` and `/get_model_info` answer the same.
//! - `GET /get_load` (`core/worker_manager.rs`, `get_worker_load`, polled
//!   for `power_of_two`): a JSON array, one object per data-parallel rank;
//!   it sums each object's `num_tokens` and keys it by `dp_rank`.
//! - `POST /flush_cache` (`WorkerManager::flush_cache_all`, the gateway's
//!   own `/flush_cache`): a 2xx counts as flushed, anything else as failed.
//!
//! Every number here is the engine's own: the pool's blocks and tokens,
//! the scheduler's limits, the queues read on the engine thread.

use crate::engine_loop::AdmitError;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// SGLang's `/server_info`: the serving limits and the KV pool.
pub async fn server_info(State(state): State<AppState>) -> Json<Value> {
    let engine = &state.engine_config;
    let pool = &engine.pool;
    let pool_tokens = pool.num_blocks * pool.block_size;
    Json(json!({
        // The gateway reads `model_id` (alias `model`) and these two.
        "model_id": state.model_name,
        "model_path": state.model.model_path(),
        "served_model_name": state.model_name,
        "version": env!("CARGO_PKG_VERSION"),
        "engine": "kvscope",
        "dp_size": 1,
        // The gateway's spelling, then SGLang's own for the same number.
        "max_total_tokens": pool_tokens,
        "max_total_num_tokens": pool_tokens,
        "max_running_requests": engine.scheduler.max_running,
        "max_prefill_tokens": engine.scheduler.max_batched_tokens,
        "context_length": engine.scheduler.max_model_len,
        "page_size": pool.block_size,
        "disable_radix_cache": !pool.enable_prefix_caching,
        "kv_cache": {
            "num_blocks": pool.num_blocks,
            "block_size": pool.block_size,
            "num_tokens": pool_tokens,
            "bytes_per_block": pool.bytes_per_block,
            "dtype": state.model.kv_dtype(),
            "prefix_caching": pool.enable_prefix_caching,
        },
        "max_waiting": state.max_waiting,
    }))
}

/// SGLang's `/model_info`.
pub async fn model_info(State(state): State<AppState>) -> Json<Value> {
    let model_type = state.model.model_type();
    let architectures: Option<Vec<&str>> = match model_type.as_deref() {
        Some("llama") => Some(vec!["LlamaForCausalLM"]),
        _ => None,
    };
    Json(json!({
        "model_path": state.model.model_path(),
        // The GGUF file carries its tokenizer.
        "tokenizer_path": state.model.model_path(),
        "is_generation": true,
        "model_type": model_type,
        "architectures": architectures,
        "max_model_len": state.model.max_context(),
        "vocab_size": state.model.vocab_size(),
    }))
}

/// SGLang's `/get_load`: one entry, rank 0. `num_reqs` counts running and
/// waiting requests; `num_tokens` is the KV the live requests hold plus the
/// prompt tokens still waiting (see [`crate::engine_loop::Load`]).
pub async fn get_load(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let load = state.engine.load().await.ok_or_else(|| ApiError::internal("the engine has stopped".into()))?;
    Ok(Json(json!([{
        "dp_rank": 0,
        "num_reqs": load.running + load.waiting,
        "num_waiting_reqs": load.waiting,
        "num_tokens": load.tokens,
    }])))
}

#[derive(serde::Deserialize)]
pub struct FlushQuery {
    #[serde(default)]
    force: bool,
}

/// `POST /flush_cache[?force=true]`: frees every prefix-cache block no
/// request holds, each reported as an `evicted` event. Refused with 409
/// while requests are live unless forced; forced, running requests keep
/// every block they hold and only lose later hits on the flushed prefixes.
pub async fn flush_cache(State(state): State<AppState>, Query(query): Query<FlushQuery>) -> Response {
    match state.engine.flush_cache(query.force).await {
        Ok(Ok(flushed)) => Json(json!({
            "flushed": true,
            "freed_blocks": flushed.blocks,
            "freed_tokens": flushed.blocks * state.engine_config.pool.block_size,
            "live_requests": flushed.live_requests,
            "forced": query.force,
        }))
        .into_response(),
        Ok(Err(refused)) => {
            ApiError { status: StatusCode::CONFLICT, message: refused.to_string(), kind: "conflict", param: None }
                .into_response()
        }
        Err(AdmitError::Stopped | AdmitError::Invalid(_) | AdmitError::Overloaded { .. }) => {
            ApiError::internal("the engine has stopped".into()).into_response()
        }
    }
}

/// SGLang's `/health_generate` runs a one-token generation; kvscope answers
/// it with its readiness (engine alive, making progress, room in the
/// queue) instead, so a probe never adds a request to the KV state under
/// study.
pub async fn health_generate(state: State<AppState>) -> Response {
    crate::observe::ready(state).await
}
