//! `kvscope serve --kv-events-endpoint`: kvscope's prefix cache published
//! as vLLM's KV events (`kvscope_wire`), so vLLM-ecosystem consumers (KV-
//! aware routers, indexers, kvscope's own remote lab) can watch it.
//!
//! What is mapped how:
//! - `BlockStored` when a full block enters kvscope's prefix-cache index:
//!   `block_hashes` are kvscope's own 64-bit prefix keys
//!   (`kvscope_core::prefix_hash`, a chain over the parent's key and the
//!   block's tokens — not vLLM's sha256, so a consumer cannot recompute
//!   them, only compare them), `parent_block_hash` the first block's
//!   parent key, `token_ids` the blocks' tokens, `block_size` the pool's,
//!   `lora_id` / `lora_name` nil (no adapters), `medium` `"CPU"` (kvscope's
//!   pool lives in host memory; vLLM says `"GPU"` for its own pool and
//!   `"CPU"` for an offload tier), `group_idx` left out (one KV group).
//!   Blocks of one chain stored in the same step share one event, parent
//!   first, as vLLM sends a request's new blocks.
//! - `BlockRemoved` when an indexed block leaves the index (eviction).
//! - `AllBlocksCleared` is never sent: kvscope has no whole-cache reset.
//!   Duplicate copies of a block (two requests computing the same prefix
//!   at once) stay out of the index and are not published, as in vLLM.
//!
//! After every engine step the index is compared with what was published
//! (O(pool blocks) per step); the differences go out as one batch stamped
//! with the wall clock and `data_parallel_rank` 0. The engine thread only
//! queues the batch: a full queue drops it and counts it in
//! `kvscope:kv_events_dropped_total`; the sockets run on the publisher's
//! own thread.

use kvscope_core::{BlockId, BlockManager, KvBlockManager};
use kvscope_wire::{BlockHash, BlockRemoved, BlockStored, EventBatch, KvCacheEvent, Publisher, PublisherConfig};
use std::collections::HashMap;

/// vLLM's `--kv-events-config` fields, as `kvscope serve` flags.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct KvEventsArgs {
    /// Publish the prefix cache as vLLM's KV events (ZMQ PUB, msgpack) on
    /// this endpoint, e.g. tcp://127.0.0.1:5557 (vLLM's `endpoint`;
    /// tcp://*:PORT binds every interface). Off when not given.
    #[arg(long)]
    pub kv_events_endpoint: Option<String>,
    /// ZMQ ROUTER endpoint answering replay requests for missed batches
    /// (vLLM's `replay_endpoint`).
    #[arg(long, requires = "kv_events_endpoint")]
    pub kv_events_replay_endpoint: Option<String>,
    /// First frame of every message (vLLM's `topic`; default empty).
    #[arg(long, default_value = "", requires = "kv_events_endpoint")]
    pub kv_events_topic: String,
    /// Batches kept for replay (vLLM's `buffer_steps`).
    #[arg(long, default_value_t = 10_000, requires = "kv_events_endpoint")]
    pub kv_events_buffer_steps: usize,
}

impl KvEventsArgs {
    /// The publisher's configuration, `None` when KV events are off.
    pub fn config(&self) -> anyhow::Result<Option<PublisherConfig>> {
        let Some(endpoint) = &self.kv_events_endpoint else { return Ok(None) };
        for e in std::iter::once(endpoint).chain(&self.kv_events_replay_endpoint) {
            kvscope_wire::check_tcp_endpoint(e).map_err(anyhow::Error::msg)?;
        }
        let mut config = PublisherConfig::new(endpoint);
        config.replay_endpoint = self.kv_events_replay_endpoint.clone();
        config.topic = self.kv_events_topic.clone();
        config.buffer_steps = self.kv_events_buffer_steps;
        Ok(Some(config))
    }
}

/// What one indexed block was published as.
#[derive(Clone, Copy, PartialEq)]
struct Published {
    hash: u64,
}

/// Lives on the engine thread; [`after_step`](Self::after_step) is called
/// once per step.
pub struct KvEventsPublisher {
    publisher: Publisher,
    dropped: prometheus::IntCounter,
    /// By block id: the key published as stored, until it is removed.
    published: Vec<Option<Published>>,
}

impl KvEventsPublisher {
    pub fn new(publisher: Publisher, dropped: prometheus::IntCounter) -> Self {
        KvEventsPublisher { publisher, dropped, published: Vec::new() }
    }

    /// The PUB endpoint actually bound.
    pub fn endpoint(&self) -> &str {
        self.publisher.endpoint()
    }

    /// Publishes how the prefix-cache index changed since the last call.
    pub fn after_step(&mut self, blocks: &BlockManager) {
        let events = self.changes(blocks);
        if events.is_empty() {
            return;
        }
        let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        if !self.publisher.publish(EventBatch { ts, events, data_parallel_rank: Some(0) }) {
            self.dropped.inc();
        }
    }

    fn changes(&mut self, blocks: &BlockManager) -> Vec<KvCacheEvent> {
        self.published.resize(blocks.total_blocks(), None);
        let mut removed = Vec::new();
        let mut stored = Vec::new();
        for (i, slot) in self.published.iter_mut().enumerate() {
            let id = BlockId(i as u32);
            let now = blocks.indexed_key(id);
            if let Some(old) = *slot {
                if now.is_some_and(|(hash, _)| hash.0 == old.hash) {
                    continue;
                }
                removed.push(BlockHash::Int(old.hash));
                *slot = None;
            }
            if let Some((hash, parent)) = now {
                *slot = Some(Published { hash: hash.0 });
                let tokens = blocks.indexed_tokens(id).unwrap_or_default().to_vec();
                stored.push(NewBlock { hash: hash.0, parent: parent.map(|p| p.0), tokens });
            }
        }
        let mut events = Vec::new();
        if !removed.is_empty() {
            events.push(KvCacheEvent::BlockRemoved(BlockRemoved {
                block_hashes: removed,
                medium: Some(MEDIUM.into()),
                group_idx: None,
            }));
        }
        events.extend(chains(stored).into_iter().map(|chain| stored_event(chain, blocks.block_size())));
        events
    }
}

/// Where kvscope's KV lives, in vLLM's `medium` words.
const MEDIUM: &str = "CPU";

struct NewBlock {
    hash: u64,
    parent: Option<u64>,
    tokens: Vec<u32>,
}

/// The step's new blocks as runs of a chain, each parent before its
/// children: a block whose parent is the run's last block joins the run.
fn chains(blocks: Vec<NewBlock>) -> Vec<Vec<NewBlock>> {
    let new: std::collections::HashSet<u64> = blocks.iter().map(|b| b.hash).collect();
    let mut children: HashMap<Option<u64>, Vec<NewBlock>> = HashMap::new();
    let mut roots = Vec::new();
    for block in blocks {
        match block.parent.filter(|p| new.contains(p)) {
            Some(parent) => children.entry(Some(parent)).or_default().push(block),
            None => roots.push(block),
        }
    }
    let mut runs: Vec<Vec<NewBlock>> = Vec::new();
    let mut stack: Vec<NewBlock> = roots.into_iter().rev().collect();
    while let Some(block) = stack.pop() {
        if let Some(kids) = children.remove(&Some(block.hash)) {
            stack.extend(kids.into_iter().rev());
        }
        match runs.last_mut() {
            Some(run) if run.last().is_some_and(|last| Some(last.hash) == block.parent) => run.push(block),
            _ => runs.push(vec![block]),
        }
    }
    runs
}

fn stored_event(run: Vec<NewBlock>, block_size: usize) -> KvCacheEvent {
    let parent_block_hash = run[0].parent.map(BlockHash::Int);
    KvCacheEvent::BlockStored(BlockStored {
        block_hashes: run.iter().map(|b| BlockHash::Int(b.hash)).collect(),
        parent_block_hash,
        token_ids: run.into_iter().flat_map(|b| b.tokens).collect(),
        block_size: block_size as u32,
        lora_id: None,
        medium: Some(MEDIUM.into()),
        lora_name: None,
        group_idx: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        kv_events: KvEventsArgs,
    }

    fn flags(args: &[&str]) -> Result<Option<PublisherConfig>, String> {
        let parsed =
            Flags::try_parse_from(std::iter::once("serve").chain(args.iter().copied())).map_err(|e| e.to_string())?;
        parsed.kv_events.config().map_err(|e| e.to_string())
    }

    #[test]
    fn flags_are_off_by_default_and_checked_when_given() {
        assert!(flags(&[]).unwrap().is_none());
        let config = flags(&["--kv-events-endpoint", "tcp://*:5557", "--kv-events-topic", "kv"]).unwrap().unwrap();
        assert_eq!(
            (config.endpoint.as_str(), config.topic.as_str(), config.buffer_steps),
            ("tcp://*:5557", "kv", 10_000)
        );
        assert!(flags(&["--kv-events-topic", "kv"]).is_err(), "a topic without an endpoint");
        let err = flags(&["--kv-events-endpoint", "ipc:///tmp/kv"]).unwrap_err();
        assert!(err.contains("tcp://127.0.0.1:5557"), "{err}");
    }

    fn block(hash: u64, parent: Option<u64>) -> NewBlock {
        NewBlock { hash, parent, tokens: vec![hash as u32] }
    }

    #[test]
    fn chains_put_parents_first_and_split_at_branches() {
        // 1 -> 2 -> 3 and 2 -> 4; 9 continues a block published earlier.
        let runs =
            chains(vec![block(3, Some(2)), block(4, Some(2)), block(9, Some(100)), block(2, Some(1)), block(1, None)]);
        let hashes: Vec<Vec<u64>> = runs.iter().map(|r| r.iter().map(|b| b.hash).collect()).collect();
        assert_eq!(hashes, vec![vec![9], vec![1, 2, 3], vec![4]]);
    }
}
