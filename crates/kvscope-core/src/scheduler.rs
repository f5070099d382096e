//! Continuous batching: who runs this step, how many tokens each, and who
//! waits — and why.
//!
//! Every step first serves the running sequences (in admission order: the
//! rest of a chunked prefill, or one decode token each). A decode whose last
//! block is full needs a new block; when the pool has none, the most
//! recently admitted running sequence is preempted (its blocks are released
//! and it returns to the head of the waiting queue to recompute later).
//! Then, if nothing was preempted, waiting sequences are admitted in arrival
//! order while three limits allow: free blocks for the whole prompt, the
//! maximum number of running sequences, and the step's token budget. A long
//! prompt is prefilled in chunks that fit the budget — and, with a
//! long-prefill threshold set, chunks of at most that many tokens while
//! other requests wait or run, so they are admitted between its chunks.
//! With a partial-prefill limit, at most that many requests are part-way
//! through their prefill at once: a request that could not finish its
//! prefill this step waits while the limit is reached, and a later request
//! whose prefill fits in this step is admitted past it (vLLM's
//! `max_num_partial_prefills`: short prompts are not stuck behind long ones).

use crate::batch_writer::BatchWriter;
use crate::block_manager::{AdmissionPlan, BlockManager, PoolConfig};
use crate::block_manager_api::KvBlockManager;
use crate::events::{EventLog, KvEvent, ReleaseReason, StallReason};
use crate::executor::{ScheduledBatch, ScheduledSeq};
use crate::ids::RequestId;
use crate::sequence::{Sequence, SequenceStatus};
use rustc_hash::FxHashMap;
use std::any::Any;
use std::collections::VecDeque;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SchedulerConfig {
    /// Most sequences running at once (vLLM's `max_num_seqs`).
    pub max_running: usize,
    /// Most tokens (prefill + decode) in one step (`max_num_batched_tokens`).
    pub max_batched_tokens: usize,
    /// The model's context: prompt plus output never exceeds it.
    pub max_model_len: usize,
    /// Most prompt tokens one request's prefill may take in a step while
    /// other requests wait or run (vLLM's `long_prefill_token_threshold`);
    /// 0 is no cap. With a cap, a long prompt is prefilled in chunks that
    /// leave room in every step for the others: a short request behind it
    /// is admitted between chunks instead of after the whole prompt.
    pub long_prefill_token_threshold: usize,
    /// Most requests part-way through a chunked prefill at once (vLLM's
    /// `max_num_partial_prefills`); 0 is no limit. It binds only with a
    /// long-prefill threshold: without one a prefill left part-way has
    /// used the step's whole budget (the configuration check says so).
    #[serde(default)]
    pub max_num_partial_prefills: usize,
}

impl SchedulerConfig {
    /// Limits of `max_running` sequences and `max_batched_tokens` per step
    /// for a model of `max_model_len`, with the long-prompt knobs off (set
    /// them by field where wanted): one constructor, so a new knob does not
    /// touch every command that builds an engine.
    pub fn new(max_running: usize, max_batched_tokens: usize, max_model_len: usize) -> Self {
        SchedulerConfig {
            max_running,
            max_batched_tokens,
            max_model_len,
            long_prefill_token_threshold: 0,
            max_num_partial_prefills: 0,
        }
    }
}

/// Why the head of the queue could not be admitted at a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stall {
    pub request_id: RequestId,
    pub reason: StallReason,
    pub free_blocks: usize,
    pub needed_blocks: usize,
}

/// The queues and the sequences in them, over block manager `B` (the
/// native one unless a plug-in is given: see `block_manager_api`).
#[derive(Debug)]
pub struct Scheduler<B: KvBlockManager = BlockManager> {
    config: SchedulerConfig,
    blocks: B,
    /// Live sequences (waiting or running), by id.
    seqs: FxHashMap<RequestId, Sequence>,
    waiting: VecDeque<RequestId>,
    /// Running sequences in admission order (the last one is preempted first).
    running: Vec<RequestId>,
    admissions: u64,
    preemptions: u64,
    last_stall: Option<Stall>,
    /// The last batch's entries, written over by the next one
    /// (`BatchWriter`), and older entries kept for their buffers.
    last_batch: Vec<ScheduledSeq>,
    spare: Vec<ScheduledSeq>,
    /// Whether scheduled entries carry their tokens and a copy of their
    /// block table (see `Executor::reads_batch_contents`).
    fill_contents: bool,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig, pool: PoolConfig) -> Self {
        Self::with_block_manager(config, BlockManager::new(pool))
    }
}

impl<B: KvBlockManager> Scheduler<B> {
    /// A scheduler over any block manager (the native one is `new`'s).
    pub fn with_block_manager(config: SchedulerConfig, blocks: B) -> Self {
        Scheduler {
            config,
            blocks,
            seqs: FxHashMap::default(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            admissions: 0,
            preemptions: 0,
            last_stall: None,
            last_batch: Vec::new(),
            spare: Vec::new(),
            fill_contents: true,
        }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }
    pub fn block_manager(&self) -> &B {
        &self.blocks
    }
    /// The native manager, when it is the one running: decode runs and the
    /// private-block invariant need more than the seam offers (a plug-in is
    /// driven step by step). A check of `B`'s type, not a call into it.
    pub fn native_block_manager(&self) -> Option<&BlockManager> {
        (&self.blocks as &dyn Any).downcast_ref()
    }
    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }
    pub fn num_running(&self) -> usize {
        self.running.len()
    }
    pub fn num_preemptions(&self) -> u64 {
        self.preemptions
    }
    pub fn has_work(&self) -> bool {
        !self.waiting.is_empty() || !self.running.is_empty()
    }
    /// Why the queue head waited at the last step, if it did.
    pub fn last_stall(&self) -> Option<Stall> {
        self.last_stall
    }
    pub fn sequence(&self, id: RequestId) -> Option<&Sequence> {
        self.seqs.get(&id)
    }
    pub fn waiting_ids(&self) -> impl Iterator<Item = RequestId> + '_ {
        self.waiting.iter().copied()
    }
    /// In admission order (the last is preempted first).
    pub fn running_ids(&self) -> impl DoubleEndedIterator<Item = RequestId> + ExactSizeIterator + '_ {
        self.running.iter().copied()
    }
    /// Every live sequence, waiting or running, in no particular order.
    pub fn sequences(&self) -> impl ExactSizeIterator<Item = &Sequence> + '_ {
        self.seqs.values()
    }

    /// Whether scheduled entries carry their tokens and block table (see
    /// `Executor::reads_batch_contents`; on unless the engine says otherwise).
    pub(crate) fn fill_batch_contents(&mut self, on: bool) {
        self.fill_contents = on;
    }

    /// Queues a sequence that the engine has validated.
    pub(crate) fn enqueue(&mut self, seq: Sequence) {
        self.waiting.push_back(seq.id);
        self.seqs.insert(seq.id, seq);
    }

    /// Takes a finished step's batch back to reuse its buffers.
    pub fn recycle(&mut self, batch: ScheduledBatch) {
        self.last_batch = batch.seqs;
    }

    /// Picks this step's work.
    pub fn schedule(&mut self, log: &mut EventLog) -> ScheduledBatch {
        let mut budget = self.config.max_batched_tokens;
        let mut batch = BatchWriter::over(std::mem::take(&mut self.last_batch), self.fill_contents);
        let preempted = self.schedule_running(&mut budget, &mut batch, log);
        self.last_stall = if preempted {
            self.waiting.front().map(|&id| self.stall(id, StallReason::NoFreeBlocks))
        } else {
            self.admit_waiting(&mut budget, &mut batch, log)
        };
        if let Some(stall) = self.last_stall {
            log.emit(
                "scheduler::admit_waiting",
                KvEvent::Stalled {
                    request_id: stall.request_id,
                    reason: stall.reason,
                    free_blocks: stall.free_blocks,
                    needed_blocks: stall.needed_blocks,
                },
            );
        }
        batch.finish(&mut self.spare)
    }

    /// Running sequences first. Returns whether any was preempted.
    fn schedule_running(&mut self, budget: &mut usize, batch: &mut BatchWriter, log: &mut EventLog) -> bool {
        let cap = prefill_cap(&self.config, self.running.len() + self.waiting.len());
        let mut preempted = false;
        let mut i = 0;
        while i < self.running.len() && *budget > 0 {
            let id = self.running[i];
            let seq = self.seqs.get_mut(&id).expect("running ids are live");
            if seq.in_prefill() {
                let n = seq.num_uncomputed().min(*budget).min(cap);
                batch.push(seq, n, &mut self.spare);
                *budget -= n;
                i += 1;
                continue;
            }
            // Decode: the newest token needs a slot; free one up by
            // preempting the most recently admitted if the pool is empty.
            loop {
                let seq = self.seqs.get_mut(&id).expect("running ids are live");
                let (view, kv) = seq.split_kv();
                if self.blocks.append_slot(view, kv, log).is_some() {
                    batch.push(seq, 1, &mut self.spare);
                    *budget -= 1;
                    i += 1;
                    break;
                }
                let victim = *self.running.last().expect("the current sequence is running");
                self.preempt(victim, log);
                preempted = true;
                if victim == id {
                    break;
                }
            }
        }
        preempted
    }

    fn admit_waiting(&mut self, budget: &mut usize, batch: &mut BatchWriter, log: &mut EventLog) -> Option<Stall> {
        const SITE: &str = "scheduler::admit_waiting";
        // Prefills this step leaves unfinished (the running ones were all
        // scheduled: admission needs budget left).
        let mut partial = batch.written().iter().filter(|s| s.is_prefill && !s.sample).count();
        // The first request held back by the partial-prefill limit: the
        // stall reported, while later requests that fit are admitted.
        let mut held: Option<Stall> = None;
        let mut i = 0;
        while let Some(&id) = self.waiting.get(i) {
            let plan = match self.admission_check(id, *budget, partial) {
                Ok(plan) => plan,
                Err(stall) if stall.reason == StallReason::MaxPartialPrefills => {
                    held.get_or_insert(stall);
                    i += 1;
                    continue;
                }
                Err(stall) => return Some(held.unwrap_or(stall)),
            };
            self.waiting.remove(i);
            let seq = self.seqs.get_mut(&id).expect("waiting ids are live");
            let readmission = seq.preemptions > 0;
            let (view, kv) = seq.split_kv();
            let hits = self.blocks.allocate(view, kv, plan, log);
            if !readmission {
                let hit_tokens = seq.kv.num_computed;
                seq.num_cached_prompt_tokens = hit_tokens;
                self.blocks.count_prefix_query(seq.prompt.len(), hit_tokens);
            }
            seq.timeline.first_admitted.get_or_insert(log.now());
            self.admissions += 1;
            seq.admitted_order = self.admissions;
            seq.status = SequenceStatus::Running;
            log.emit(
                SITE,
                KvEvent::Admitted {
                    request_id: id,
                    blocks: seq.kv.block_table.clone(),
                    cached_blocks: hits,
                    readmission,
                },
            );
            let others = self.running.len() + self.waiting.len();
            let cap = prefill_cap(&self.config, others + 1);
            let seq = self.seqs.get_mut(&id).expect("waiting ids are live");
            let n = seq.num_uncomputed().min(*budget).min(cap);
            partial += usize::from(n < seq.num_uncomputed());
            batch.push(seq, n, &mut self.spare);
            *budget -= n;
            self.running.push(id);
        }
        held
    }

    /// Whether waiting sequence `id` can be admitted now with `budget`
    /// tokens left in the step: its admission plan, or why it stalls (the
    /// limits are checked in this order: running sequences, token budget,
    /// free blocks — the last through the block manager's `can_allocate` —
    /// then, with `partial` prefills left unfinished this step, the
    /// partial-prefill limit).
    pub(crate) fn admission_check(
        &mut self,
        id: RequestId,
        budget: usize,
        partial: usize,
    ) -> Result<AdmissionPlan, Stall> {
        self.admission_limits(id, budget)?;
        let seq = &self.seqs[&id];
        let plan = self.blocks.can_allocate(seq.view(), &seq.kv).map_err(|needed| self.no_free_blocks(id, needed))?;
        let limit = self.config.max_num_partial_prefills;
        if limit > 0 && partial >= limit && self.would_stay_partial(id, &plan, budget) {
            return Err(self.stall(id, StallReason::MaxPartialPrefills));
        }
        Ok(plan)
    }

    /// Whether admitting `id` now would leave its prefill unfinished after
    /// this step. A plug-in's plan does not say its hits; it is taken to
    /// have none (the limit then errs on holding back).
    fn would_stay_partial(&self, id: RequestId, plan: &AdmissionPlan, budget: usize) -> bool {
        let seq = &self.seqs[&id];
        let uncomputed = seq.len() - plan.cached.len() * self.blocks.block_size();
        let cap = prefill_cap(&self.config, self.running.len() + self.waiting.len());
        uncomputed.min(budget).min(cap) < uncomputed
    }

    /// The same question, asked without letting a block manager act on it:
    /// decode runs plan with it, and they run on the native manager only
    /// (no prefill is in progress then, so the partial-prefill limit never
    /// binds).
    pub(crate) fn peek_admission(&self, id: RequestId, budget: usize) -> Result<(), Stall> {
        self.admission_limits(id, budget)?;
        let native = self.native_block_manager().expect("decode runs are planned on the native block manager only");
        let seq = &self.seqs[&id];
        native.admission(seq.view(), &seq.kv).map(|_| ()).map_err(|needed| self.no_free_blocks(id, needed))
    }

    /// After a decode run: why the head of the queue still waits, asked as
    /// the run's last step would have with `budget` tokens left.
    pub(crate) fn recheck_stall(&mut self, budget: usize) {
        if let Some(&head) = self.waiting.front() {
            self.last_stall = self.peek_admission(head, budget).err();
        }
    }

    fn admission_limits(&self, id: RequestId, budget: usize) -> Result<(), Stall> {
        if self.running.len() >= self.config.max_running {
            return Err(self.stall(id, StallReason::MaxRunning));
        }
        if budget == 0 {
            return Err(self.stall(id, StallReason::TokenBudget));
        }
        Ok(())
    }

    fn no_free_blocks(&self, id: RequestId, needed_blocks: usize) -> Stall {
        let mut stall = self.stall(id, StallReason::NoFreeBlocks);
        stall.needed_blocks = needed_blocks;
        stall
    }

    fn stall(&self, id: RequestId, reason: StallReason) -> Stall {
        let seq = &self.seqs[&id];
        Stall {
            request_id: id,
            reason,
            free_blocks: self.blocks.free_blocks(),
            needed_blocks: self.blocks.blocks_for_tokens(seq.len()),
        }
    }

    /// Takes a running sequence's KV back under memory pressure: its blocks
    /// are released and it waits at the head of the queue to recompute.
    fn preempt(&mut self, id: RequestId, log: &mut EventLog) {
        const SITE: &str = "scheduler::preempt";
        self.running.retain(|r| *r != id);
        let seq = self.seqs.get_mut(&id).expect("running ids are live");
        seq.status = SequenceStatus::Waiting;
        seq.preemptions += 1;
        self.preemptions += 1;
        log.emit(SITE, KvEvent::Preempted { request_id: id });
        let (view, kv) = seq.split_kv();
        self.blocks.release(view, kv, ReleaseReason::Preempted, log);
        self.waiting.push_front(id);
    }

    /// Removes a finished or aborted sequence, releasing its blocks.
    /// Frees the blocks kept only for reuse (`Engine::flush_prefix_cache`).
    pub(crate) fn flush_cached(&mut self, log: &mut EventLog) -> usize {
        self.blocks.flush_cached(log)
    }

    pub(crate) fn remove(&mut self, id: RequestId, reason: ReleaseReason, log: &mut EventLog) -> Option<Sequence> {
        let mut seq = self.seqs.remove(&id)?;
        match seq.status {
            SequenceStatus::Running => self.running.retain(|r| *r != id),
            _ => self.waiting.retain(|r| *r != id),
        }
        if !seq.kv.block_table.is_empty() {
            let (view, kv) = seq.split_kv();
            self.blocks.release(view, kv, reason, log);
        }
        Some(seq)
    }

    pub(crate) fn seq_mut(&mut self, id: RequestId) -> Option<&mut Sequence> {
        self.seqs.get_mut(&id)
    }

    /// Records KV progress after the executor ran a sequence's chunk.
    pub(crate) fn commit(&mut self, id: RequestId, tokens: usize) {
        let seq = self.seqs.get_mut(&id).expect("scheduled ids are live");
        seq.kv.num_computed += tokens;
        let (view, kv) = seq.split_kv();
        self.blocks.commit_computed(view, kv);
    }

    /// Gives running `id` one more block, unasked: a decode run appends
    /// the blocks its steps would have, after checking the pool has them
    /// (native manager only).
    pub(crate) fn append_block_for_run(&mut self, id: RequestId, log: &mut EventLog) {
        let native = (&mut self.blocks as &mut dyn Any).downcast_mut::<BlockManager>();
        let native = native.expect("decode runs are native-only");
        let (view, kv) = self.seqs.get_mut(&id).expect("running ids are live").split_kv();
        native.append_block(view, kv, log);
    }
}

/// The most prompt tokens one prefill may take this step, with `live`
/// requests running or waiting: alone, as many as the budget allows; with
/// others around, at most the threshold (when one is set).
fn prefill_cap(config: &SchedulerConfig, live: usize) -> usize {
    match config.long_prefill_token_threshold {
        t if t > 0 && live > 1 => t,
        _ => usize::MAX,
    }
}
