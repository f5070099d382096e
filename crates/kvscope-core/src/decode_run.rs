//! The simulator's fast path: a run of identical decode-only steps advanced
//! in one go.
//!
//! Between two events that change the schedule — an arrival, an admission,
//! a finish, a preemption, a prefix-cache entry the waiting queue's head
//! could hit — every step decodes the same sequences, one token each, and
//! the head of the queue (if any) stalls for the same reason. Such a run is
//! advanced at once: the executor prices all its steps together (the
//! simulator sums its cost model in closed form) and samples their tokens;
//! the block tables grow by exactly the blocks the steps would have
//! appended, in the same order, from the same free list; observers get one
//! [`DecodeRunReport`] instead of a snapshot, `decode` and `stalled` events
//! per step. A step-by-step run and a run with decode runs therefore end in
//! the same state, up to the rounding of summed step times.

use crate::block_manager_api::KvBlockManager;
use crate::clock::Clock;
use crate::engine::Engine;
use crate::events::{DecodeRunReport, EventLog, StallReason};
use crate::executor::{DecodeRun, DecodeRunSeq, Executor, ExecutorError};
use crate::ids::{RequestId, Seconds};
use crate::prefix_hash::chain;
use crate::scheduler::Scheduler;
use crate::sequence::Sequence;
use std::sync::Arc;

/// Shorter runs are not worth the bookkeeping: step them one by one.
const MIN_RUN_STEPS: usize = 2;

/// How far a decode run may go from the current state.
struct RunPlan {
    max_steps: usize,
    stall: Option<StallReason>,
}

impl<E: Executor, C: Clock, B: KvBlockManager> Engine<E, C, B> {
    /// Advances a run of identical decode-only steps in one call when the
    /// state allows one and the executor can price it; no step of it starts
    /// at or after `start_before` (the caller's next arrival). `Ok(None)`
    /// when there is no such run: step normally then.
    ///
    /// Callers that need every step's events and snapshots (the lab's
    /// `events.jsonl`, a live view) must not use it.
    pub fn try_decode_run(&mut self, start_before: Seconds) -> Result<Option<DecodeRunReport>, ExecutorError> {
        if self.decode_runs_declined || self.clock.now() >= start_before {
            return Ok(None);
        }
        let Some(plan) = plan_decode_run(&self.scheduler) else { return Ok(None) };
        let seqs: Vec<DecodeRunSeq> = running(&self.scheduler)
            .map(|seq| DecodeRunSeq {
                request_id: seq.id,
                context_tokens: seq.kv.num_computed + 1,
                output_index: seq.output.len(),
                sampling: Arc::clone(&seq.params),
            })
            .collect();
        let run = DecodeRun { seqs: &seqs, max_steps: plan.max_steps, start_before };
        let t_start = self.clock.now();
        let output = match self.executor.execute_decode_run(&run) {
            None => {
                self.decode_runs_declined = true;
                return Ok(None);
            }
            Some(result) => result?,
        };
        let steps = output.steps;
        assert!(
            (1..=plan.max_steps).contains(&steps) && output.tokens.len() == steps * seqs.len(),
            "a decode run executes 1..=max_steps steps and samples one token per sequence and step"
        );
        let first_step = self.step + 1;
        self.log.set_stamp(first_step, t_start);
        append_blocks_for_run(&mut self.scheduler, steps, first_step, t_start, &mut self.log);
        let now = self.clock.now();
        for (i, s) in seqs.iter().enumerate() {
            let seq = self.scheduler.seq_mut(s.request_id).expect("running ids are live");
            seq.output.extend_from_slice(&output.tokens[i * steps..(i + 1) * steps]);
            seq.timeline.last_token = Some(now);
            // The KV of every token but the newest now exists.
            self.scheduler.commit(s.request_id, steps);
        }
        self.step += steps as u64;
        self.scheduler.recheck_stall(self.scheduler.config().max_batched_tokens - seqs.len());
        self.log.set_stamp(self.step, now);
        self.flush_events();
        let mut end = self.snapshot();
        end.t_start = t_start;
        end.live = seqs.len();
        end.batch_tokens = seqs.len();
        end.decode_seqs = seqs.len();
        let report = DecodeRunReport { first_step, steps: steps as u64, t_start, stall: plan.stall, end };
        for observer in &mut self.observers {
            observer.on_decode_run(&report);
        }
        Ok(Some(report))
    }
}

/// The running sequences, in admission order.
fn running<B: KvBlockManager>(s: &Scheduler<B>) -> impl DoubleEndedIterator<Item = &Sequence> + '_ {
    s.running_ids().map(|id| s.sequence(id).expect("running ids are live"))
}

/// Whether the next steps form a decode run, and how long it may be.
fn plan_decode_run<B: KvBlockManager>(s: &Scheduler<B>) -> Option<RunPlan> {
    // A plug-in block manager is driven step by step, call by call.
    s.native_block_manager()?;
    let n = s.num_running();
    if n == 0 || n > s.config().max_batched_tokens {
        return None;
    }
    let mut max_steps = usize::MAX;
    // Newest first: a sequence still in prefill, the usual reason there
    // is no run, is one of the last admitted.
    for seq in running(s).rev() {
        let p = &seq.params;
        // Only plain decodes whose end is decided by their length: the
        // step that finishes a request runs on its own.
        let plain = p.logprobs == 0 && p.prompt_logprobs.is_none() && (p.ignore_eos || p.stop_token_ids.is_empty());
        if seq.in_prefill() || !plain {
            return None;
        }
        max_steps = max_steps.min(p.max_tokens.saturating_sub(seq.output.len() + 1));
    }
    let stall = match s.waiting_ids().next() {
        None => None,
        Some(head) => {
            // A head that would be admitted now ends the run before it starts.
            let stall = s.peek_admission(head, s.config().max_batched_tokens - n).err()?;
            if stall.reason == StallReason::NoFreeBlocks {
                max_steps = max_steps.min(steps_until_head_could_hit(s, head));
            }
            Some(stall.reason)
        }
    };
    max_steps = steps_with_enough_free_blocks(s, max_steps);
    (max_steps >= MIN_RUN_STEPS).then_some(RunPlan { max_steps, stall })
}

/// Steps until a running sequence fills a block that could extend the
/// waiting head's prefix-cache hits (a hit could let it in); unbounded
/// when none can. Blocks filled later chain from a different parent, so
/// only the block right after the head's hits, filled by a sequence
/// whose full blocks so far are exactly the head's hits, matters — and
/// only if that block is shareable for both (a private block is
/// nobody else's to fill or to find).
fn steps_until_head_could_hit<B: KvBlockManager>(s: &Scheduler<B>, head: RequestId) -> usize {
    let pool = s.block_manager();
    if !pool.config().enable_prefix_caching {
        return usize::MAX;
    }
    let bs = pool.block_size();
    let head = s.sequence(head).expect("waiting ids are live");
    let hits = s.native_block_manager().map_or(0, |b| b.cached_prefix(head.view(), &head.kv).len());
    let shareable = |seq: &Sequence| seq.view().private_from() / bs;
    if hits == head.len().saturating_sub(1) / bs || hits >= shareable(head) {
        return usize::MAX;
    }
    let tokens = head.view().shareable_tokens();
    let head_hash = chain(&tokens[..hits * bs], bs).last().copied();
    running(s)
        .filter(|seq| seq.kv.full_blocks == hits && hits < shareable(seq) && seq.kv.last_full_hash == head_hash)
        .map(|seq| (hits + 1) * bs - seq.kv.num_computed)
        .min()
        .unwrap_or(usize::MAX)
}

/// The most steps (at most `limit`) whose block appends the free pool
/// can serve without preempting anyone.
fn steps_with_enough_free_blocks<B: KvBlockManager>(s: &Scheduler<B>, limit: usize) -> usize {
    let bs = s.block_manager().block_size();
    let free = s.block_manager().free_blocks();
    let appends = |steps: usize| -> usize {
        running(s).map(|seq| (seq.kv.num_computed + steps).div_ceil(bs).saturating_sub(seq.kv.block_table.len())).sum()
    };
    // A finite bound: no run outlives the longest remaining output.
    let (mut lo, mut hi) = (0, limit.min(s.config().max_model_len));
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if appends(mid) <= free {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// Appends the blocks `steps` decode steps need, in the order those steps
/// would have: by step, then in batch order. Each append is stamped with
/// its own step and the run's start time.
fn append_blocks_for_run<B: KvBlockManager>(
    s: &mut Scheduler<B>,
    steps: usize,
    first_step: u64,
    t_start: Seconds,
    log: &mut EventLog,
) {
    let bs = s.block_manager().block_size();
    // (step offset, batch position, request): sorted by the first two,
    // which no two appends share.
    let mut appends: Vec<(usize, usize, RequestId)> = Vec::new();
    for (i, seq) in running(s).enumerate() {
        // Step `j` computes position `num_computed + j`; block `b` is
        // needed by the step that computes position `b * bs`.
        let needed = (seq.kv.num_computed + steps).div_ceil(bs);
        for b in seq.kv.block_table.len()..needed {
            appends.push(((b * bs).saturating_sub(seq.kv.num_computed), i, seq.id));
        }
    }
    appends.sort_unstable();
    for (j, _, id) in appends {
        log.set_stamp(first_step + j as u64, t_start);
        s.append_block_for_run(id, log);
    }
}
