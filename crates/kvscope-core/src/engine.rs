//! The step loop: schedule, execute, commit, observe.
//!
//! One `step` is one forward pass over a batch. Before it, the scheduler
//! decides the batch and the KV placement (allocations, appends,
//! preemptions); the executor writes and reads KV; after it, the engine
//! records the KV now computed, appends sampled tokens, finishes requests
//! and releases their blocks. Every transition reaches the observers as a
//! stamped event, then a snapshot of the pool closes the step.

use crate::block_manager::{BlockManager, PoolConfig};
use crate::block_manager_api::KvBlockManager;
use crate::clock::Clock;
use crate::config::{ConfigError, EngineConfig};
use crate::events::{EventLog, FinishReason, KvEvent, Observer, ReleaseReason, StepSnapshot};
use crate::executor::{BatchOutput, Executor, ExecutorError, PromptLogprob, SampledToken};
use crate::ids::{RequestId, Seconds, TokenId};
use crate::prompt::{first_at_or_above, Prompt};
use crate::request::{InvalidParams, Request, SamplingParams};
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::sequence::{Sequence, SequenceStatus};

/// When a step began and how many requests it computed with, for its
/// snapshot.
#[derive(Clone, Copy)]
pub(crate) struct StepStart {
    t: Seconds,
    live: usize,
}

/// Why a request was refused at submission. Refusing early is the point: a
/// request that can never run must not wait forever or block others.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmitError {
    #[error("the prompt is empty: give at least one token")]
    EmptyPrompt,
    #[error("invalid sampling parameters: {0}")]
    InvalidParams(#[from] InvalidParams),
    #[error(
        "prompt ({prompt} tokens) plus max_tokens ({max_tokens}) exceeds the model's context of {max_model_len} tokens: shorten the prompt or lower max_tokens"
    )]
    ContextExceeded { prompt: usize, max_tokens: usize, max_model_len: usize },
    #[error(
        "prompt plus max_tokens needs {needed_blocks} KV blocks of {block_size} tokens but the whole pool has {total_blocks}: it could never run; lower max_tokens or enlarge the KV pool"
    )]
    NeverFitsPool { needed_blocks: usize, total_blocks: usize, block_size: usize },
    #[error("token id {token} is outside the vocabulary (size {vocab_size})")]
    TokenOutOfVocab { token: TokenId, vocab_size: usize },
    #[error("request id {0} is already live")]
    DuplicateId(RequestId),
}

/// What one step produced.
#[derive(Debug, Default)]
pub struct StepOutcome {
    pub step: u64,
    /// Tokens sampled this step, in batch order.
    pub new_tokens: Vec<(RequestId, SampledToken)>,
    /// Requests that finished this step (their blocks are already released).
    pub finished: Vec<Sequence>,
    /// Prompt scores computed this step, per request, in position order —
    /// each position once, even when a preempted request recomputes it.
    pub prompt_logprobs: Vec<(RequestId, Vec<PromptLogprob>)>,
}

/// The step loop over executor `E`, clock `C` and block manager `B` (the
/// native one unless a plug-in is given: `Engine::with_block_manager`).
pub struct Engine<E: Executor, C: Clock, B: KvBlockManager = BlockManager> {
    pub(crate) scheduler: Scheduler<B>,
    pub(crate) executor: E,
    pub(crate) clock: C,
    vocab_size: Option<usize>,
    pub(crate) log: EventLog,
    pub(crate) observers: Vec<Box<dyn Observer + Send>>,
    pub(crate) step: u64,
    /// Set once the executor declined a decode run (it cannot price one).
    pub(crate) decode_runs_declined: bool,
    /// Whether each decoded token emits a `decode` event (see
    /// [`Engine::set_decode_events`]).
    decode_events: bool,
    /// Whether prompt scores are also kept on their sequence (see
    /// [`Engine::set_keep_prompt_logprobs`]).
    keep_prompt_logprobs: bool,
}

impl EngineConfig {
    /// What [`Engine::submit`] would say about this request, answered
    /// before any engine (and its KV pool) exists: a command checks its one
    /// request before it allocates.
    pub fn check_request(&self, prompt: &[TokenId], params: &SamplingParams) -> Result<(), SubmitError> {
        let out_of_vocab = |limit| first_at_or_above(prompt, limit);
        check_request(&self.scheduler, &self.pool, self.vocab_size, prompt.len(), out_of_vocab, params)
    }
}

/// `out_of_vocab(limit)`: a prompt token at or above `limit`, if any (a
/// random prompt answers it without drawing its tokens).
fn check_request(
    scheduler: &SchedulerConfig,
    pool: &PoolConfig,
    vocab_size: Option<usize>,
    prompt_len: usize,
    out_of_vocab: impl FnOnce(TokenId) -> Option<TokenId>,
    params: &SamplingParams,
) -> Result<(), SubmitError> {
    if prompt_len == 0 {
        return Err(SubmitError::EmptyPrompt);
    }
    params.validate()?;
    // A vocabulary past `TokenId::MAX` holds every id.
    if let Some(limit) = vocab_size.and_then(|v| TokenId::try_from(v).ok()) {
        if let Some(token) = out_of_vocab(limit) {
            return Err(SubmitError::TokenOutOfVocab { token, vocab_size: limit as usize });
        }
    }
    let max_model_len = scheduler.max_model_len;
    if prompt_len.saturating_add(params.max_tokens) > max_model_len {
        return Err(SubmitError::ContextExceeded { prompt: prompt_len, max_tokens: params.max_tokens, max_model_len });
    }
    // The last sampled token never needs KV of its own.
    let needed_blocks = (prompt_len + params.max_tokens - 1).div_ceil(pool.block_size.max(1));
    if needed_blocks > pool.num_blocks {
        return Err(SubmitError::NeverFitsPool {
            needed_blocks,
            total_blocks: pool.num_blocks,
            block_size: pool.block_size,
        });
    }
    Ok(())
}

impl<E: Executor, C: Clock> Engine<E, C> {
    /// An engine over the native block manager. Refuses an executor whose
    /// KV storage is laid out otherwise than `config.pool`
    /// ([`Executor::kv_geometry`]): build both from the one configuration.
    pub fn new(config: EngineConfig, executor: E, clock: C) -> Result<Self, ConfigError> {
        config.check_executor(executor.kv_geometry())?;
        let scheduler = Scheduler::new(config.scheduler, config.pool);
        Ok(Self::with_scheduler(scheduler, config.vocab_size, executor, clock))
    }
}

impl<E: Executor, C: Clock, B: KvBlockManager> Engine<E, C, B> {
    /// An engine whose blocks are managed by `blocks` instead of the native
    /// manager (`config.pool` is then `blocks.config()`'s business): a
    /// plug-in, or a `Box<dyn KvBlockManager>` chosen at run time. Decode
    /// runs (the simulator's fast path) are native-only: a plug-in is
    /// driven step by step.
    ///
    /// Refused, as by [`Engine::new`], when the executor's KV geometry
    /// differs from `config.pool`'s.
    pub fn with_block_manager(config: EngineConfig, blocks: B, executor: E, clock: C) -> Result<Self, ConfigError> {
        config.check_executor(executor.kv_geometry())?;
        let scheduler = Scheduler::with_block_manager(config.scheduler, blocks);
        Ok(Self::with_scheduler(scheduler, config.vocab_size, executor, clock))
    }

    fn with_scheduler(mut scheduler: Scheduler<B>, vocab_size: Option<usize>, executor: E, clock: C) -> Self {
        scheduler.fill_batch_contents(executor.reads_batch_contents());
        Engine {
            scheduler,
            executor,
            clock,
            vocab_size,
            log: EventLog::new(),
            observers: Vec::new(),
            step: 0,
            decode_runs_declined: false,
            decode_events: true,
            keep_prompt_logprobs: true,
        }
    }

    pub fn add_observer(&mut self, observer: Box<dyn Observer + Send>) {
        self.observers.push(observer);
    }
    pub fn scheduler(&self) -> &Scheduler<B> {
        &self.scheduler
    }
    pub fn executor(&self) -> &E {
        &self.executor
    }
    pub fn executor_mut(&mut self) -> &mut E {
        &mut self.executor
    }
    /// Ends the engine and hands back its executor (and the model and KV
    /// storage inside it) for the next run.
    pub fn into_executor(self) -> E {
        self.executor
    }
    pub fn clock(&self) -> &C {
        &self.clock
    }
    pub fn current_step(&self) -> u64 {
        self.step
    }
    pub fn has_work(&self) -> bool {
        self.scheduler.has_work()
    }

    /// Turns the per-token `decode` events off (or back on). They are one
    /// event per running sequence per step; a caller that keeps only
    /// summaries (the simulator's tables) does not ask for them. Every
    /// other event is still emitted.
    pub fn set_decode_events(&mut self, on: bool) {
        self.decode_events = on;
    }

    /// Whether prompt scores are also collected on their sequence (the
    /// default) or only handed out in each step's outcome. A caller that
    /// streams them as they come (the server) turns this off, so a scored
    /// prompt is not held twice until its request ends.
    pub fn set_keep_prompt_logprobs(&mut self, keep: bool) {
        self.keep_prompt_logprobs = keep;
    }

    /// Checks a request against everything that would make it unrunnable.
    pub fn validate(&self, prompt: &Prompt, params: &SamplingParams) -> Result<(), SubmitError> {
        let out_of_vocab = |limit| prompt.token_at_or_above(limit);
        let (scheduler, pool) = (self.scheduler.config(), self.scheduler.block_manager().config());
        check_request(scheduler, pool, self.vocab_size, prompt.len(), out_of_vocab, params)
    }

    /// Queues a request that arrives now.
    pub fn submit(&mut self, id: RequestId, prompt: Vec<TokenId>, params: SamplingParams) -> Result<(), SubmitError> {
        let now = self.clock.now();
        self.submit_at(id, prompt, params, now)
    }

    /// Queues a request whose arrival time the caller knows (a driver that
    /// replays an arrival process). The prompt may be random tokens drawn
    /// only when the request reaches the head of the queue ([`Prompt::random`]).
    pub fn submit_at(
        &mut self,
        id: RequestId,
        prompt: impl Into<Prompt>,
        params: SamplingParams,
        arrival: Seconds,
    ) -> Result<(), SubmitError> {
        let prompt = prompt.into();
        if self.scheduler.sequence(id).is_some() {
            return Err(SubmitError::DuplicateId(id));
        }
        self.validate(&prompt, &params)?;
        self.log.set_stamp(self.step, arrival);
        self.log.emit("engine::submit", KvEvent::Arrived { request_id: id, prompt_tokens: prompt.len() });
        self.scheduler.enqueue(Sequence::new(Request { id, prompt, params, arrival }));
        self.flush_events();
        Ok(())
    }

    /// Stops a request wherever it is; its blocks are released at once.
    /// Returns it, or `None` if no such request is live.
    pub fn abort(&mut self, id: RequestId) -> Option<Sequence> {
        self.log.set_stamp(self.step, self.clock.now());
        let mut seq = self.scheduler.remove(id, ReleaseReason::Aborted, &mut self.log)?;
        self.finish(&mut seq, FinishReason::Abort);
        self.flush_events();
        Some(seq)
    }

    /// Frees every prefix-cache block no request holds (SGLang's
    /// `flush_cache`), telling observers with an `evicted` event per block.
    /// Running requests keep their blocks; only later hits on the flushed
    /// prefixes are lost. Returns how many blocks were freed.
    pub fn flush_prefix_cache(&mut self) -> usize {
        self.log.set_stamp(self.step, self.clock.now());
        let freed = self.scheduler.flush_cached(&mut self.log);
        self.flush_events();
        freed
    }

    /// Runs one engine step. An idle engine returns an empty outcome.
    pub fn step(&mut self) -> Result<StepOutcome, ExecutorError> {
        if self.step == 0 {
            self.open_first_step();
        }
        self.step += 1;
        let t_start = self.clock.now();
        self.log.set_stamp(self.step, t_start);
        let batch = self.scheduler.schedule(&mut self.log);
        if let Some(failure) = self.scheduler.block_manager().failure() {
            self.flush_events();
            return Err(ExecutorError(format!("the block manager failed: {failure}")));
        }
        // The requests this step computes with: admitted ones in, preempted
        // ones out, the ones it will finish still in.
        let began = StepStart { t: t_start, live: self.scheduler.num_running() };
        let mut outcome = StepOutcome { step: self.step, ..Default::default() };
        if batch.is_empty() {
            self.close_step(&batch, began);
            self.scheduler.recycle(batch);
            return Ok(outcome);
        }
        let BatchOutput { sampled, prompt_logprobs } = self.executor.execute(&batch)?;
        outcome.new_tokens.reserve(batch.seqs.len());
        assert_eq!(sampled.len(), batch.seqs.len(), "the executor answers once per scheduled sequence");
        for (id, scores) in prompt_logprobs {
            if let Some(seq) = self.scheduler.seq_mut(id) {
                // A recompute after preemption scores the same positions again.
                let (known, prompt_len) = (seq.prompt_scored, seq.prompt.len());
                let new: Vec<PromptLogprob> =
                    scores.into_iter().filter(|p| p.position > known && p.position < prompt_len).collect();
                let Some(last) = new.last() else { continue };
                seq.prompt_scored = last.position;
                if self.keep_prompt_logprobs {
                    seq.prompt_logprobs.extend_from_slice(&new);
                }
                outcome.prompt_logprobs.push((id, new));
            }
        }
        let now = self.clock.now();
        self.log.set_stamp(self.step, now);
        let site = E::KV_SITE;
        for (item, token) in batch.seqs.iter().zip(sampled) {
            let id = item.request_id;
            self.scheduler.commit(id, item.num_tokens);
            let seq = self.scheduler.seq_mut(id).expect("scheduled ids are live");
            if item.is_prefill {
                self.log.emit(
                    site,
                    KvEvent::Prefill { request_id: id, tokens: item.num_tokens, computed: seq.kv.num_computed },
                );
            } else if self.decode_events {
                self.log.emit(site, KvEvent::Decode { request_id: id, context_tokens: item.context_tokens() });
            }
            let Some(token) = token else { continue };
            if seq.output.is_empty() {
                seq.timeline.first_token = Some(now);
                self.log.emit("engine::step", KvEvent::FirstToken { request_id: id });
            }
            seq.timeline.last_token = Some(now);
            seq.output.push(token.token);
            if seq.params.logprobs > 0 {
                seq.output_logprobs.push(token.clone());
            }
            outcome.new_tokens.push((id, token));
            if let Some(reason) = stop_reason(seq) {
                let mut seq = self.scheduler.remove(id, ReleaseReason::Finished, &mut self.log).expect("live");
                self.finish(&mut seq, reason);
                outcome.finished.push(seq);
            }
        }
        self.close_step(&batch, began);
        self.scheduler.recycle(batch);
        Ok(outcome)
    }

    /// The pool and queues as they are now.
    pub fn snapshot(&self) -> StepSnapshot {
        let pool = self.scheduler.block_manager();
        let t = self.clock.now();
        let running = self.scheduler.num_running();
        StepSnapshot {
            step: self.step,
            t,
            t_start: t,
            waiting: self.scheduler.num_waiting(),
            running,
            live: running,
            total_blocks: pool.total_blocks(),
            used_blocks: pool.used_blocks(),
            free_blocks: pool.free_blocks(),
            cached_free_blocks: pool.cached_free_blocks(),
            block_size: pool.block_size(),
            kv_tokens: pool.used_tokens(),
            used_kv_bytes: pool.used_blocks() as u64 * pool.config().bytes_per_block,
            ..Default::default()
        }
    }

    fn finish(&mut self, seq: &mut Sequence, reason: FinishReason) {
        seq.status = SequenceStatus::Finished(reason);
        seq.timeline.finished = Some(self.clock.now());
        self.log.emit(
            "engine::finish",
            KvEvent::Finished {
                request_id: seq.id,
                reason,
                prompt_tokens: seq.prompt.len(),
                output_tokens: seq.output.len(),
            },
        );
    }

    /// Before the first step, observers see the pool and the queue as they
    /// are (step 0: nothing scheduled yet), so a time series starts at the
    /// start instead of at the end of the first — possibly long — step.
    fn open_first_step(&mut self) {
        self.flush_events();
        let snapshot = self.snapshot();
        for observer in &mut self.observers {
            observer.on_step(&snapshot);
        }
    }

    pub(crate) fn close_step(&mut self, batch: &crate::executor::ScheduledBatch, began: StepStart) {
        self.flush_events();
        let mut snapshot = self.snapshot();
        snapshot.t_start = began.t;
        snapshot.live = began.live;
        snapshot.batch_tokens = batch.num_tokens();
        snapshot.prefill_tokens = batch.prefill_tokens();
        snapshot.decode_seqs = batch.decode_seqs();
        for observer in &mut self.observers {
            observer.on_step(&snapshot);
        }
    }

    pub(crate) fn flush_events(&mut self) {
        if self.log.pending().is_empty() {
            return;
        }
        for observer in &mut self.observers {
            observer.on_events(self.log.pending());
        }
        self.log.clear();
    }
}

fn stop_reason(seq: &Sequence) -> Option<FinishReason> {
    let last = *seq.output.last()?;
    if !seq.params.ignore_eos && seq.params.stop_token_ids.contains(&last) {
        Some(FinishReason::Stop)
    } else if seq.output.len() >= seq.params.max_tokens {
        Some(FinishReason::Length)
    } else {
        None
    }
}
