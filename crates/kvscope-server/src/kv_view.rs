//! `/kv`: the pool block by block and every live request, as JSON.

use kvscope_core::block_manager::BlockView;
use kvscope_core::{BlockId, Clock, Engine, Executor, KvBlockManager, RequestId, Seconds, SequenceStatus};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct KvSnapshot {
    pub step: u64,
    /// Seconds on the engine clock.
    pub t: Seconds,
    pub block_size: usize,
    /// Real bytes one block's KV takes (all layers, K and V, in the pool's
    /// storage format; 0 when unknown).
    pub bytes_per_block: u64,
    pub total_blocks: usize,
    pub used_blocks: usize,
    pub free_blocks: usize,
    pub cached_free_blocks: usize,
    /// Tokens whose KV the held blocks store.
    pub kv_tokens: usize,
    /// Each block: `free`, `cached` (free but reusable) or `held`, its
    /// reference count and holders.
    pub blocks: Vec<BlockView>,
    /// Waiting queue, head first.
    pub waiting: Vec<RequestId>,
    /// Running requests, in admission order.
    pub running: Vec<RequestId>,
    pub requests: Vec<RequestView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RequestView {
    pub request_id: RequestId,
    pub status: SequenceStatus,
    pub blocks: Vec<BlockId>,
    pub prompt_tokens: usize,
    pub output_tokens: usize,
    /// Tokens whose KV exists.
    pub tokens_computed: usize,
    /// Prompt tokens served from the prefix cache at first admission.
    pub cached_tokens: usize,
    pub preemptions: u32,
    /// Time in the waiting queue before the first admission; still
    /// growing while the request has never been admitted.
    pub queue_wait: Seconds,
    pub ttft: Option<Seconds>,
}

impl KvSnapshot {
    pub fn of<E: Executor, C: Clock>(engine: &Engine<E, C>) -> Self {
        let now = engine.clock().now();
        let scheduler = engine.scheduler();
        let pool = scheduler.block_manager();
        let waiting: Vec<RequestId> = scheduler.waiting_ids().collect();
        let running: Vec<RequestId> = scheduler.running_ids().collect();
        let requests = waiting
            .iter()
            .chain(running.iter())
            .filter_map(|&id| scheduler.sequence(id))
            .map(|seq| RequestView {
                request_id: seq.id,
                status: seq.status,
                blocks: seq.kv.block_table.clone(),
                prompt_tokens: seq.prompt.len(),
                output_tokens: seq.output.len(),
                tokens_computed: seq.kv.num_computed,
                cached_tokens: seq.num_cached_prompt_tokens,
                preemptions: seq.preemptions,
                queue_wait: seq.timeline.queue_wait().unwrap_or(now - seq.timeline.arrival),
                ttft: seq.timeline.ttft(),
            })
            .collect();
        KvSnapshot {
            step: engine.current_step(),
            t: now,
            block_size: pool.block_size(),
            bytes_per_block: pool.config().bytes_per_block,
            total_blocks: pool.total_blocks(),
            used_blocks: pool.used_blocks(),
            free_blocks: pool.free_blocks(),
            cached_free_blocks: pool.cached_free_blocks(),
            kv_tokens: pool.used_tokens(),
            blocks: pool.view(),
            waiting,
            running,
            requests,
        }
    }
}
