//! The engine on its own thread. HTTP handlers never touch the engine: they
//! send commands (submit, abort, snapshot) and read each request's updates
//! from its own channel. The thread owns `Engine<E, WallClock>`, so the
//! executor never needs to be `Send`.

use crate::kv_view::KvSnapshot;
use kvscope_core::{
    Engine, EngineConfig, Executor, FinishReason, KvBlockManager, Observer, RequestId, SampledToken, SamplingParams,
    SubmitError, TokenId, WallClock,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// What a request hears from the engine, in order: its prompt's scores as
/// each prefill chunk computes them (when it asked: echo + logprobs), its
/// tokens, then one end.
#[derive(Debug)]
pub enum Update {
    /// Scores of prompt positions computed in one step, in position order.
    PromptScores(Vec<kvscope_core::PromptLogprob>),
    Token(SampledToken),
    Finished(Finish),
    /// The executor failed; the request was aborted.
    Failed(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Finish {
    pub reason: FinishReason,
    pub prompt_tokens: usize,
    pub output_tokens: usize,
    /// Prompt tokens served from the prefix cache at first admission.
    pub cached_tokens: usize,
}

/// Why the engine did not take a request.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error(transparent)]
    Invalid(#[from] SubmitError),
    #[error("server overloaded: {waiting} requests are already waiting (limit {limit}); retry later")]
    Overloaded { waiting: usize, limit: usize },
    #[error("the engine has stopped")]
    Stopped,
}

enum Command {
    Submit {
        prompt: Vec<TokenId>,
        params: SamplingParams,
        updates: mpsc::UnboundedSender<Update>,
        reply: oneshot::Sender<Result<RequestId, AdmitError>>,
    },
    Abort(RequestId),
    /// A stop string matched: the engine does not know stop strings, so the
    /// request is aborted there, and logged as stopped.
    StopString(RequestId),
    Snapshot(oneshot::Sender<KvSnapshot>),
    /// `POST /flush_cache`: frees the prefix cache's unheld blocks.
    FlushCache {
        force: bool,
        reply: oneshot::Sender<Result<Flushed, FlushRefused>>,
    },
    /// `GET /get_load`: the queues and the tokens they stand for.
    Load(oneshot::Sender<Load>),
}

/// What a flush freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flushed {
    pub blocks: usize,
    /// Requests that were live (and kept every block they hold).
    pub live_requests: usize,
}

/// A flush asked for while requests are live, without `force`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{running} requests are running and {waiting} waiting: the prefix cache is flushed only when the engine is idle; retry then, or POST /flush_cache?force=true to free the cached blocks now (running requests keep every block they hold)"
)]
pub struct FlushRefused {
    pub running: usize,
    pub waiting: usize,
}

/// The engine's load as SGLang's `/get_load` reports it (one entry per
/// data-parallel rank; kvscope has one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    pub running: usize,
    pub waiting: usize,
    /// Tokens of KV held by live requests (shared blocks once), plus the
    /// prompt tokens of the waiting queue: what the engine still owes.
    pub tokens: usize,
}

/// A cheap, cloneable way to talk to the engine thread.
#[derive(Clone)]
pub struct EngineHandle {
    tx: std_mpsc::Sender<Command>,
    status: Arc<EngineStatus>,
}

/// What the engine thread publishes for readers that must not wait for a
/// step (`/health`, `/ready`): plain atomics, written by the thread after
/// every command batch and step.
#[derive(Debug, Default)]
pub struct EngineStatus {
    alive: AtomicBool,
    waiting: AtomicUsize,
    running: AtomicUsize,
    /// When the loop last finished an iteration (ms since the Unix epoch).
    beat_ms: AtomicU64,
    used_blocks: AtomicUsize,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl EngineStatus {
    /// Whether the engine thread is still running its loop.
    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }
    /// KV blocks held by requests (not counting cached free ones).
    pub fn used_blocks(&self) -> usize {
        self.used_blocks.load(Ordering::Relaxed)
    }
    /// Seconds since the engine loop last finished an iteration while it
    /// has work (`None` when idle: an idle engine sleeps until a command).
    pub fn busy_for(&self) -> Option<f64> {
        if self.waiting() + self.running() == 0 {
            return None;
        }
        Some(now_ms().saturating_sub(self.beat_ms.load(Ordering::Relaxed)) as f64 / 1000.0)
    }
}

/// Marks the engine dead when its thread ends, by return or by panic.
struct AliveGuard(Arc<EngineStatus>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::Release);
    }
}

/// An accepted request. Dropping it before the end aborts the request in
/// the engine at once, which releases its blocks: that is how a client
/// that goes away stops costing KV.
pub struct Submitted {
    pub id: RequestId,
    pub updates: mpsc::UnboundedReceiver<Update>,
    guard: AbortGuard,
}

impl Submitted {
    /// The request ended in the engine; nothing to abort any more.
    pub fn mark_done(&mut self) {
        self.guard.armed = false;
    }
    /// Ends the request now.
    pub fn abort(&mut self) {
        if self.guard.armed {
            self.guard.armed = false;
            let _ = self.guard.tx.send(Command::Abort(self.id));
        }
    }
    /// Ends the request now because a stop string matched.
    pub fn stop(&mut self) {
        if self.guard.armed {
            self.guard.armed = false;
            let _ = self.guard.tx.send(Command::StopString(self.id));
        }
    }
}

struct AbortGuard {
    tx: std_mpsc::Sender<Command>,
    id: RequestId,
    armed: bool,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.tx.send(Command::Abort(self.id));
        }
    }
}

impl EngineHandle {
    pub async fn submit(&self, prompt: Vec<TokenId>, params: SamplingParams) -> Result<Submitted, AdmitError> {
        let (updates_tx, updates) = mpsc::unbounded_channel();
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Submit { prompt, params, updates: updates_tx, reply })
            .map_err(|_| AdmitError::Stopped)?;
        let id = answer.await.map_err(|_| AdmitError::Stopped)??;
        Ok(Submitted { id, updates, guard: AbortGuard { tx: self.tx.clone(), id, armed: true } })
    }

    /// The engine's liveness and queue lengths, read without waiting.
    pub fn status(&self) -> &EngineStatus {
        &self.status
    }
    pub fn status_arc(&self) -> Arc<EngineStatus> {
        self.status.clone()
    }

    /// Frees the prefix cache's unheld blocks; refused while requests are
    /// live unless `force` (which still never frees a held block).
    pub async fn flush_cache(&self, force: bool) -> Result<Result<Flushed, FlushRefused>, AdmitError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Command::FlushCache { force, reply }).map_err(|_| AdmitError::Stopped)?;
        answer.await.map_err(|_| AdmitError::Stopped)
    }

    pub async fn load(&self) -> Option<Load> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Command::Load(reply)).ok()?;
        answer.await.ok()
    }

    pub async fn snapshot(&self) -> Option<KvSnapshot> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Command::Snapshot(reply)).ok()?;
        answer.await.ok()
    }
}

/// Something that wants the pool's state even when no step runs (after a
/// submission or an abort while idle): the metrics gauges.
pub type Refresh = Arc<Mutex<dyn Observer + Send>>;

pub struct EngineThreadConfig {
    pub engine: EngineConfig,
    /// Requests allowed to wait; one more is answered 503.
    pub max_waiting: usize,
    /// `--kv-events-endpoint`: the prefix cache published after each step.
    pub kv_events: Option<crate::kv_events_publish::KvEventsPublisher>,
}

/// Starts the engine thread. `make_executor` runs on that thread; its error
/// (a model that fails to load, say) is returned here.
pub fn spawn<E, F>(
    config: EngineThreadConfig,
    make_executor: F,
    observers: Vec<Box<dyn Observer + Send>>,
    refresh: Vec<Refresh>,
) -> anyhow::Result<(EngineHandle, std::thread::JoinHandle<()>)>
where
    E: Executor + 'static,
    F: FnOnce() -> anyhow::Result<E> + Send + 'static,
{
    let (tx, rx) = std_mpsc::channel();
    let (ready_tx, ready_rx) = std_mpsc::sync_channel::<anyhow::Result<()>>(1);
    let status = Arc::new(EngineStatus::default());
    let thread_status = status.clone();
    let thread = std::thread::Builder::new().name("kvscope-engine".into()).spawn(move || {
        let executor = match make_executor() {
            Ok(e) => e,
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        let mut engine = match Engine::new(config.engine, executor, WallClock::new()) {
            Ok(engine) => engine,
            Err(e) => {
                let _ = ready_tx.send(Err(e.into()));
                return;
            }
        };
        // Prompt scores go to their request as each step computes them
        // (`Update::PromptScores`); the engine does not keep a second copy.
        engine.set_keep_prompt_logprobs(false);
        for observer in observers {
            engine.add_observer(observer);
        }
        thread_status.beat_ms.store(now_ms(), Ordering::Relaxed);
        thread_status.alive.store(true, Ordering::Release);
        let _alive = AliveGuard(thread_status.clone());
        let _ = ready_tx.send(Ok(()));
        EngineLoop {
            engine,
            live: HashMap::new(),
            next_id: 0,
            max_waiting: config.max_waiting,
            refresh,
            status: thread_status,
            kv_events: config.kv_events,
        }
        .run(rx);
    })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok((EngineHandle { tx, status }, thread)),
        Ok(Err(e)) => Err(e.context("starting the engine")),
        Err(_) => Err(anyhow::anyhow!("the engine thread died while starting")),
    }
}

struct EngineLoop<E: Executor> {
    engine: Engine<E, WallClock>,
    live: HashMap<RequestId, mpsc::UnboundedSender<Update>>,
    next_id: u64,
    max_waiting: usize,
    refresh: Vec<Refresh>,
    status: Arc<EngineStatus>,
    kv_events: Option<crate::kv_events_publish::KvEventsPublisher>,
}

impl<E: Executor> EngineLoop<E> {
    /// Runs until every handle is gone and no request is left; a request
    /// whose client is gone is aborted, so at the end every block is free.
    fn run(mut self, rx: std_mpsc::Receiver<Command>) {
        'serve: loop {
            let mut changed = false;
            if !self.engine.has_work() {
                // Idle: sleep until someone asks for something.
                match rx.recv() {
                    Ok(cmd) => changed |= self.handle(cmd),
                    Err(_) => break 'serve,
                }
            }
            loop {
                match rx.try_recv() {
                    Ok(cmd) => changed |= self.handle(cmd),
                    Err(std_mpsc::TryRecvError::Empty) => break,
                    Err(std_mpsc::TryRecvError::Disconnected) => {
                        if !self.engine.has_work() {
                            break 'serve;
                        }
                        break;
                    }
                }
            }
            changed |= self.reap_disconnected();
            if changed {
                self.publish_state();
            }
            if self.engine.has_work() {
                self.step();
                self.publish_kv_events();
            }
            self.publish_status();
        }
        self.publish_status();
        let pool = self.engine.scheduler().block_manager();
        tracing::info!(used_blocks = pool.used_blocks(), total_blocks = pool.total_blocks(), "engine stopped");
    }

    fn publish_status(&self) {
        let scheduler = self.engine.scheduler();
        self.status.waiting.store(scheduler.num_waiting(), Ordering::Relaxed);
        self.status.running.store(scheduler.num_running(), Ordering::Relaxed);
        self.status.used_blocks.store(scheduler.block_manager().used_blocks(), Ordering::Relaxed);
        self.status.beat_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Returns whether the pool or the queues changed.
    fn handle(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Submit { prompt, params, updates, reply } => {
                let waiting = self.engine.scheduler().num_waiting();
                if waiting >= self.max_waiting {
                    let _ = reply.send(Err(AdmitError::Overloaded { waiting, limit: self.max_waiting }));
                    return false;
                }
                self.next_id += 1;
                let id = RequestId(self.next_id);
                match self.engine.submit(id, prompt, params) {
                    Ok(()) => {
                        if reply.send(Ok(id)).is_err() {
                            self.engine.abort(id);
                        } else {
                            self.live.insert(id, updates);
                        }
                        true
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                        false
                    }
                }
            }
            Command::Abort(id) => {
                self.live.remove(&id);
                self.engine.abort(id).inspect(log_end).is_some()
            }
            Command::StopString(id) => {
                self.live.remove(&id);
                self.engine.abort(id).inspect(|seq| log_end_as(seq, "stop")).is_some()
            }
            Command::Snapshot(reply) => {
                let _ = reply.send(KvSnapshot::of(&self.engine));
                false
            }
            Command::FlushCache { force, reply } => {
                let result = self.flush_cache(force);
                let changed = result.is_ok_and(|f| f.blocks > 0);
                let _ = reply.send(result);
                changed
            }
            Command::Load(reply) => {
                let _ = reply.send(self.load());
                false
            }
        }
    }

    fn flush_cache(&mut self, force: bool) -> Result<Flushed, FlushRefused> {
        let scheduler = self.engine.scheduler();
        let (running, waiting) = (scheduler.num_running(), scheduler.num_waiting());
        if running + waiting > 0 && !force {
            return Err(FlushRefused { running, waiting });
        }
        let blocks = self.engine.flush_prefix_cache();
        tracing::info!(blocks, running, waiting, force, "prefix cache flushed");
        Ok(Flushed { blocks, live_requests: running + waiting })
    }

    fn load(&self) -> Load {
        let scheduler = self.engine.scheduler();
        let waiting_tokens: usize =
            scheduler.waiting_ids().filter_map(|id| scheduler.sequence(id)).map(|seq| seq.prompt.len()).sum();
        Load {
            running: scheduler.num_running(),
            waiting: scheduler.num_waiting(),
            tokens: scheduler.block_manager().used_tokens() + waiting_tokens,
        }
    }

    /// A request whose client is gone is aborted before the next step, even
    /// if its abort command has not arrived yet.
    fn reap_disconnected(&mut self) -> bool {
        let gone: Vec<RequestId> = self.live.iter().filter(|(_, tx)| tx.is_closed()).map(|(&id, _)| id).collect();
        for &id in &gone {
            self.live.remove(&id);
            if let Some(seq) = self.engine.abort(id) {
                log_end(&seq);
            }
        }
        !gone.is_empty()
    }

    /// The prefix cache's changes as vLLM's KV events (queued, never waited
    /// on). A plug-in block manager's index is not visible: nothing is sent.
    fn publish_kv_events(&mut self) {
        if let (Some(publisher), Some(blocks)) =
            (self.kv_events.as_mut(), Some(self.engine.scheduler().block_manager()))
        {
            publisher.after_step(blocks);
        }
    }

    fn publish_state(&self) {
        let snapshot = self.engine.snapshot();
        for observer in &self.refresh {
            observer.lock().unwrap_or_else(|e| e.into_inner()).on_step(&snapshot);
        }
    }

    fn step(&mut self) {
        let outcome = match self.engine.step() {
            Ok(outcome) => outcome,
            Err(e) => {
                let message = e.to_string();
                tracing::warn!(error = %message, live_requests = self.live.len(), "engine step failed: aborting its requests");
                for (id, tx) in std::mem::take(&mut self.live) {
                    let _ = tx.send(Update::Failed(message.clone()));
                    if let Some(seq) = self.engine.abort(id) {
                        log_end(&seq);
                    }
                }
                self.publish_state();
                return;
            }
        };
        // A request whose client is gone (the send fails) is aborted by
        // `reap_disconnected` before the next step — after the commands
        // already sent, such as the stop-string end that dropped it.
        for (id, scores) in outcome.prompt_logprobs {
            if let Some(tx) = self.live.get(&id) {
                let _ = tx.send(Update::PromptScores(scores));
            }
        }
        for (id, token) in outcome.new_tokens {
            if let Some(tx) = self.live.get(&id) {
                let _ = tx.send(Update::Token(token));
            }
        }
        for seq in &outcome.finished {
            log_end(seq);
            if let Some(tx) = self.live.remove(&seq.id) {
                let _ = tx.send(Update::Finished(Finish {
                    reason: seq.finish_reason().unwrap_or(FinishReason::Stop),
                    prompt_tokens: seq.prompt.len(),
                    output_tokens: seq.output.len(),
                    cached_tokens: seq.num_cached_prompt_tokens,
                }));
            }
        }
    }
}

/// One structured line per request that reached the engine, when it ends
/// (finished, or aborted because its client went away or a stop string
/// matched). `RUST_LOG=kvscope_server=info` shows them.
fn log_end(seq: &kvscope_core::Sequence) {
    log_end_as(seq, seq.finish_reason().map_or("none", |r| r.as_str()));
}

/// [`log_end`] with the finish reason the client was told.
fn log_end_as(seq: &kvscope_core::Sequence, finish_reason: &str) {
    let t = &seq.timeline;
    tracing::info!(
        request_id = seq.id.0,
        prompt_tokens = seq.prompt.len(),
        completion_tokens = seq.output.len(),
        cached_tokens = seq.num_cached_prompt_tokens,
        queue_wait_s = t.queue_wait(),
        ttft_s = t.ttft(),
        e2e_s = t.e2e(),
        preemptions = seq.preemptions,
        finish_reason,
        "request ended"
    );
}
