//! kvscope-server: the engine behind HTTP.
//!
//! - [`serve`] / [`start`]: an OpenAI-compatible server (`/v1/completions`,
//!   `/v1/chat/completions`, `/v1/models`, `/health`) with the KV cache in
//!   view: `/metrics` (Prometheus, vLLM's names under `kvscope:`), `/kv` (the
//!   pool block by block), `/events` (the KV event stream live) and a web
//!   view at `/`.
//!
//! The load generator that measures such a server (`kvscope bench serve`)
//! is a client: it lives in kvscope-client.
//!
//! The engine runs on its own thread ([`engine_loop`]); handlers talk to it
//! through channels. A model plugs in as a [`TextModel`] (tokenizer, chat
//! template) and an executor factory.

#![forbid(unsafe_code)]

pub mod api;
pub mod detok;
pub mod engine_loop;
pub mod error;
pub mod events_feed;
pub mod generate;
pub mod head_refusal;
pub mod intake;
pub mod kv_events_publish;
pub mod kv_view;
pub mod limits;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod observe;
pub mod openai;
pub mod real_model;
pub mod security;
pub mod series;
pub mod state;
pub mod stop;
pub mod worker_api;

pub use model::{ChatMessage, TextModel};

use axum::routing::{get, post};
use axum::Router;
use kvscope_core::{EngineConfig, Executor, Observer};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, oneshot};

/// How the server listens and how much it queues.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    /// Requests allowed in the waiting queue; beyond it the answer is 503.
    pub max_waiting: usize,
    /// The name `/v1/models` lists; the model's own name when `None`.
    pub served_model_name: Option<String>,
    pub engine: EngineConfig,
    /// Bounds on what one client may ask of the server.
    pub limits: limits::Limits,
    /// When set, `/v1/*` and the state endpoints need `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// When set, the prefix cache is published as vLLM's KV events.
    pub kv_events: Option<kvscope_wire::PublisherConfig>,
}

/// `kvscope serve`'s options that belong to the server (the binary adds
/// the model's).
#[derive(clap::Args, Clone, Debug)]
pub struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Requests allowed to wait for admission; more are answered 503.
    #[arg(long, default_value_t = 256)]
    pub max_waiting: usize,
    /// The model name clients use (default: the model's own).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// KV blocks in the pool.
    #[arg(long, default_value_t = 512)]
    pub kv_blocks: usize,
    /// Token slots per KV block.
    #[arg(long, default_value_t = kvscope_core::DEFAULT_BLOCK_SIZE)]
    pub block_size: usize,
    /// Most requests running at once (vLLM's max_num_seqs).
    #[arg(long, default_value_t = 16)]
    pub max_num_seqs: usize,
    /// Most tokens in one engine step (vLLM's max_num_batched_tokens).
    #[arg(long, default_value_t = 512)]
    pub max_num_batched_tokens: usize,
    /// Turn prefix caching off.
    #[arg(long)]
    pub no_prefix_caching: bool,
    /// `--model`, `--kernels` and `--kv-dtype` (vLLM's --kv-cache-dtype
    /// also accepted; it decides how many tokens `--kv-blocks` blocks cost
    /// in memory): the group every command that runs the model shares.
    #[command(flatten)]
    pub model: kvscope_model::ModelArgs,
    /// Most prompt tokens one request's prefill takes per step while others
    /// wait or run (vLLM's long_prefill_token_threshold; 0: no cap). Short
    /// requests are then admitted between a long prompt's chunks.
    #[arg(long, default_value_t = 0)]
    pub long_prefill_token_threshold: usize,
    /// Most requests part-way through a chunked prefill at once (vLLM's
    /// max_num_partial_prefills; 0: no limit; needs
    /// --long-prefill-token-threshold). A request whose prefill would be
    /// left unfinished waits while the limit is reached; shorter ones behind
    /// it that finish their prefill in one step go first.
    #[arg(long, default_value_t = 0)]
    pub max_num_partial_prefills: usize,
    /// Require `Authorization: Bearer KEY` on /v1/* and the state
    /// endpoints (/kv, /events, /api/series), as vLLM's --api-key does.
    #[arg(long, env = "KVSCOPE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    #[command(flatten)]
    pub limits: limits::LimitArgs,
    #[command(flatten)]
    pub kv_events: kv_events_publish::KvEventsArgs,
}

impl ServeArgs {
    /// The server configuration for a model with this context and
    /// vocabulary, whose KV takes `bytes_per_block` per block (0: unknown).
    pub fn config(
        &self,
        max_model_len: usize,
        vocab_size: usize,
        bytes_per_block: u64,
    ) -> anyhow::Result<ServerConfig> {
        let addr = listen_addr(&self.host, self.port)?;
        let config = ServerConfig {
            addr,
            max_waiting: self.max_waiting,
            served_model_name: self.served_model_name.clone(),
            limits: self.limits.limits()?,
            api_key: self.api_key.clone().filter(|k| !k.is_empty()),
            kv_events: self.kv_events.config()?,
            engine: EngineConfig::new(
                kvscope_core::SchedulerConfig {
                    max_running: self.max_num_seqs,
                    max_batched_tokens: self.max_num_batched_tokens,
                    max_model_len,
                    long_prefill_token_threshold: self.long_prefill_token_threshold,
                    max_num_partial_prefills: self.max_num_partial_prefills,
                },
                kvscope_core::PoolConfig {
                    num_blocks: self.kv_blocks,
                    block_size: self.block_size,
                    enable_prefix_caching: !self.no_prefix_caching,
                    bytes_per_block,
                },
                Some(vocab_size),
            ),
        };
        config.engine.validate()?;
        Ok(config)
    }

    /// Every flag that does not depend on the model, checked before the
    /// model loads: the address and the engine limits (with stand-in model
    /// facts that pass their own checks).
    pub fn check(&self) -> anyhow::Result<()> {
        // The KV-format check every command that runs the model makes.
        self.model.check_kv_dtype()?;
        self.config(1, 1, 0).map(|_| ())
    }
}

/// `--host` and `--port` as an address to bind: an IP address (IPv6 with or
/// without brackets), `localhost`, or a name the system resolves.
pub fn listen_addr(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    if bare.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    use std::net::ToSocketAddrs;
    (bare, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| anyhow::anyhow!("--host {host} is neither an IP address nor a name this machine resolves: give e.g. 127.0.0.1, ::1, 0.0.0.0 or localhost"))
}

/// A server started by [`start`].
pub struct RunningServer {
    /// Where it listens (the real port when 0 was asked for).
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    engine_thread: Option<std::thread::JoinHandle<()>>,
    engine_status: Arc<engine_loop::EngineStatus>,
    kv_events_endpoint: Option<String>,
}

impl RunningServer {
    /// Where KV events are published (the real port when 0 was asked for).
    pub fn kv_events_endpoint(&self) -> Option<&str> {
        self.kv_events_endpoint.as_deref()
    }

    /// Serves until the process ends or the server fails.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let task = &mut self.task;
        task.await??;
        Ok(())
    }
    /// Stops accepting, lets open responses finish within the grace
    /// period (closing the rest, which aborts their requests), then waits
    /// for the engine thread to end with every block released.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await??;
        if let Some(thread) = self.engine_thread.take() {
            tokio::task::spawn_blocking(move || thread.join())
                .await?
                .map_err(|_| anyhow::anyhow!("the engine thread panicked"))?;
        }
        Ok(())
    }

    /// The engine's published state (after [`shutdown`](Self::shutdown):
    /// its final state).
    pub fn engine_status(&self) -> Arc<engine_loop::EngineStatus> {
        self.engine_status.clone()
    }
}

/// Binds, starts the engine thread (building the executor there) and serves
/// in the background.
pub async fn start<E, F>(
    config: ServerConfig,
    model: Arc<dyn TextModel>,
    make_executor: F,
) -> anyhow::Result<RunningServer>
where
    E: Executor + 'static,
    F: FnOnce() -> anyhow::Result<E> + Send + 'static,
{
    let model_name = config.served_model_name.clone().unwrap_or_else(|| model.model_name());
    let metrics_registry = Arc::new(metrics::Metrics::new(&model_name));
    metrics_registry.record_cache_config(&config.engine.pool, model.kv_dtype());
    let series = Arc::new(Mutex::new(series::Series::default()));
    let (events_tx, _) = broadcast::channel(4096);
    let observer = Arc::new(Mutex::new(metrics::MetricsObserver::new(
        metrics_registry.clone(),
        series.clone(),
        config.engine.pool.block_size,
    )));
    let observers: Vec<Box<dyn Observer + Send>> =
        vec![Box::new(observer.clone()), Box::new(events_feed::EventsFeed::new(events_tx.clone()))];
    let refresh: Vec<engine_loop::Refresh> = vec![observer];
    let kv_events = start_kv_events(&config, &metrics_registry)?;
    let kv_events_endpoint = kv_events.as_ref().map(|p| p.endpoint().to_owned());
    let thread_config =
        engine_loop::EngineThreadConfig { engine: config.engine.clone(), max_waiting: config.max_waiting, kv_events };
    let (engine, engine_thread) =
        tokio::task::spawn_blocking(move || engine_loop::spawn(thread_config, make_executor, observers, refresh))
            .await??;
    let engine_status = engine.status_arc();
    let pool = &config.engine.pool;
    let state = state::AppState {
        engine,
        max_token_bytes: model.max_token_bytes(),
        model,
        model_name,
        pool_tokens: pool.num_blocks.saturating_mul(pool.block_size),
        max_waiting: config.max_waiting,
        engine_config: Arc::new(config.engine.clone()),
        tokenizers: Arc::new(tokio::sync::Semaphore::new(config.limits.tokenizer_threads.max(1))),
        limits: config.limits.clone(),
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        metrics: metrics_registry,
        series,
        events: events_tx,
    };
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.addr))?;
    let addr = listener.local_addr()?;
    let app = router(state, security::Guard::new(config.api_key.clone(), addr));
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let listen = listener::ListenConfig {
        header_timeout: config.limits.header_timeout,
        shutdown_grace: config.limits.shutdown_grace,
    };
    let task = tokio::spawn(async move {
        listener::serve(listener, app, listen, async move {
            let _ = shutdown_rx.await;
        })
        .await;
        Ok(())
    });
    Ok(RunningServer {
        addr,
        shutdown: Some(shutdown_tx),
        task,
        engine_thread: Some(engine_thread),
        engine_status,
        kv_events_endpoint,
    })
}

/// Binds the KV-event sockets (when asked) and exports their drop counter.
fn start_kv_events(
    config: &ServerConfig,
    metrics: &metrics::Metrics,
) -> anyhow::Result<Option<kv_events_publish::KvEventsPublisher>> {
    let Some(publisher_config) = config.kv_events.clone() else { return Ok(None) };
    let publisher = kvscope_wire::Publisher::start(publisher_config)?;
    let dropped = prometheus::IntCounter::new(
        "kvscope:kv_events_dropped_total",
        "KV-event batches dropped because the publisher's queue was full (the engine never waits for it).",
    )?;
    metrics.register(Box::new(dropped.clone()))?;
    Ok(Some(kv_events_publish::KvEventsPublisher::new(publisher, dropped)))
}

/// `kvscope serve`: [`start`], then serve until the process ends.
pub async fn serve<E, F>(config: ServerConfig, model: Arc<dyn TextModel>, make_executor: F) -> anyhow::Result<()>
where
    E: Executor + 'static,
    F: FnOnce() -> anyhow::Result<E> + Send + 'static,
{
    logging::init();
    let server = start(config, model, make_executor).await?;
    eprintln!("kvscope serve: listening on http://{} (web view at /, metrics at /metrics)", server.addr);
    if let Some(endpoint) = server.kv_events_endpoint() {
        eprintln!("kvscope serve: publishing vLLM KV events on {endpoint}");
    }
    let mut server = server;
    let ended = tokio::select! {
        result = &mut server.task => Some(result),
        () = shutdown_signal() => None,
    };
    match ended {
        Some(result) => Ok(result??),
        None => server.shutdown().await,
    }
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    let which = tokio::select! {
        () = interrupt => "SIGINT",
        () = terminate => "SIGTERM",
    };
    tracing::info!(signal = which, "shutdown requested");
}

pub fn router(state: state::AppState, guard: security::Guard) -> Router {
    Router::new()
        .route("/", get(observe::index))
        .route("/health", get(observe::health))
        .route("/version", get(observe::version))
        .route("/ready", get(observe::ready))
        .route("/metrics", get(observe::metrics))
        .route("/kv", get(observe::kv))
        .route("/events", get(observe::events))
        .route("/api/series", get(observe::series))
        .route("/v1/models", get(api::models))
        .route("/v1/completions", post(api::completions))
        .route("/v1/chat/completions", post(api::chat_completions))
        // What a router (the SGLang Model Gateway) asks a worker: worker_api.rs.
        .route("/server_info", get(worker_api::server_info))
        .route("/get_server_info", get(worker_api::server_info))
        .route("/model_info", get(worker_api::model_info))
        .route("/get_model_info", get(worker_api::model_info))
        .route("/get_load", get(worker_api::get_load))
        .route("/health_generate", get(worker_api::health_generate))
        .route("/flush_cache", post(worker_api::flush_cache))
        .fallback(observe::not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(guard, security::guard))
        .layer(axum::middleware::map_response(error::openai_shaped))
}
