//! The target's KV events (vLLM's protocol, read by kvscope-wire's
//! subscriber) turned into block statistics: blocks stored and removed,
//! the cached blocks over time, each block's lifetime in the cache.
//!
//! The events carry block hashes and token ids, not request ids. A block
//! is bound to a request by the tokens the client sent: the request's
//! `i`-th full block is the stored block with those `block_size` tokens
//! whose parent is the block bound to its `(i-1)`-th (the chain vLLM
//! hashes). The binding is therefore inferred, and the report says so.

use kvscope_core::TokenId;
use kvscope_wire::{KvCacheEvent, Received, Subscriber, SubscriberConfig};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Most distinct blocks remembered; later ones are counted only.
pub const MAX_BLOCKS: usize = 1 << 20;
/// Most points of the cached-blocks series.
pub const MAX_POINTS: usize = 16_384;

#[derive(Debug)]
struct Block {
    stored_at: f64,
    removed_at: Option<f64>,
}

#[derive(Debug, Default)]
pub struct BlockLog {
    pub batches: u64,
    pub stored: u64,
    pub removed: u64,
    pub cleared: u64,
    pub unknown_events: u64,
    pub block_size: Option<usize>,
    /// Blocks past [`MAX_BLOCKS`], counted but not remembered.
    pub untracked: u64,
    /// `(seconds since the start, blocks in the cache)` after each batch.
    pub cached: Vec<(f64, i64)>,
    live: i64,
    blocks: HashMap<u64, Block>,
    /// `(parent, tokens)` → hash: the chain a request's blocks are found by.
    chain: HashMap<(Option<u64>, Vec<TokenId>), u64>,
    /// Set by the reader when the subscription ends: missed and malformed.
    pub missed: u64,
    pub malformed: u64,
    pub error: Option<String>,
}

impl BlockLog {
    pub fn apply(&mut self, received: &Received, t: f64) {
        self.batches += 1;
        for event in &received.batch.events {
            match event {
                KvCacheEvent::BlockStored(s) => {
                    self.block_size.get_or_insert(s.block_size as usize);
                    let bs = s.block_size.max(1) as usize;
                    let mut parent = s.parent_block_hash.as_ref().map(|h| h.as_u64());
                    for (i, hash) in s.block_hashes.iter().enumerate() {
                        let hash = hash.as_u64();
                        self.stored += 1;
                        self.live += 1;
                        if self.blocks.len() < MAX_BLOCKS {
                            let tokens = s.token_ids.get(i * bs..(i + 1) * bs).unwrap_or(&[]).to_vec();
                            self.chain.insert((parent, tokens), hash);
                            self.blocks.insert(hash, Block { stored_at: t, removed_at: None });
                        } else {
                            self.untracked += 1;
                        }
                        parent = Some(hash);
                    }
                }
                KvCacheEvent::BlockRemoved(r) => {
                    for hash in &r.block_hashes {
                        self.removed += 1;
                        self.live -= 1;
                        if let Some(b) = self.blocks.get_mut(&hash.as_u64()) {
                            b.removed_at.get_or_insert(t);
                        }
                    }
                }
                KvCacheEvent::AllBlocksCleared => {
                    self.cleared += 1;
                    self.live = 0;
                }
                KvCacheEvent::Unknown(_) => self.unknown_events += 1,
            }
        }
        if self.cached.len() >= MAX_POINTS {
            let mut i = 0;
            self.cached.retain(|_| {
                i += 1;
                i % 2 == 1
            });
        }
        self.cached.push((t, self.live.max(0)));
    }

    /// The hashes of `prompt`'s full blocks that the events stored, in
    /// chain order, stopping at the first block not found (inferred).
    pub fn bind(&self, prompt: &[TokenId]) -> Vec<u64> {
        let Some(bs) = self.block_size.filter(|b| *b > 0) else { return Vec::new() };
        let mut parent = None;
        let mut bound = Vec::new();
        for chunk in prompt.chunks_exact(bs) {
            let Some(&hash) = self.chain.get(&(parent, chunk.to_vec())) else { break };
            bound.push(hash);
            parent = Some(hash);
        }
        bound
    }

    /// Every remembered block's prefix hash (stored at some point).
    pub fn stored_hashes(&self) -> impl Iterator<Item = u64> + '_ {
        self.blocks.keys().copied()
    }

    /// Lifetimes (stored → removed, seconds) of blocks stored in
    /// `[from, to]` and removed by the end of the run.
    pub fn lifetimes(&self, from: f64, to: f64) -> Vec<f64> {
        let stored_in = |b: &&Block| b.stored_at >= from && b.stored_at <= to;
        self.blocks.values().filter(stored_in).filter_map(|b| b.removed_at.map(|r| r - b.stored_at)).collect()
    }

    /// Blocks stored / removed in `[from, to]`, and the most cached at once.
    pub fn window(&self, from: f64, to: f64) -> (usize, usize, i64) {
        let stored = self.blocks.values().filter(|b| b.stored_at >= from && b.stored_at <= to).count();
        let removed = self.blocks.values().filter(|b| b.removed_at.is_some_and(|r| r >= from && r <= to)).count();
        let peak = self.cached.iter().filter(|(t, _)| *t >= from && *t <= to).map(|(_, n)| *n).max().unwrap_or(0);
        (stored, removed, peak)
    }
}

/// What the KV events say about one case.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CaseBlocks {
    pub stored: usize,
    pub removed: usize,
    pub peak_cached: i64,
    /// Requests with at least one block bound to them (inferred).
    pub requests_bound: usize,
    pub blocks_bound: usize,
    /// Blocks bound to two requests or more: a prefix the events show
    /// shared (inferred; observation only).
    pub shared_blocks: usize,
    pub lifetime_s: kvscope_experiment::Dist,
}

impl CaseBlocks {
    pub fn of(log: &BlockLog, prompts: &[Vec<TokenId>], from: f64, to: f64) -> CaseBlocks {
        let (stored, removed, peak_cached) = log.window(from, to);
        let mut uses: HashMap<u64, usize> = HashMap::new();
        let mut requests_bound = 0;
        for prompt in prompts {
            let bound = log.bind(prompt);
            requests_bound += usize::from(!bound.is_empty());
            for h in bound {
                *uses.entry(h).or_default() += 1;
            }
        }
        CaseBlocks {
            stored,
            removed,
            peak_cached,
            requests_bound,
            blocks_bound: uses.len(),
            shared_blocks: uses.values().filter(|n| **n >= 2).count(),
            lifetime_s: kvscope_experiment::Dist::of(log.lifetimes(from, to)),
        }
    }
}

/// Subscribes and feeds `log` until the handle is aborted; with a replay
/// endpoint, the batches published before the run come first (at time 0). A connection
/// failure is recorded in the log, not fatal to the lab.
pub fn spawn(config: SubscriberConfig, start: SystemTime, log: Arc<Mutex<BlockLog>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut sub = match Subscriber::connect(config).await {
            Ok(s) => s,
            Err(e) => {
                log.lock().expect("block log").error = Some(e.to_string());
                return;
            }
        };
        // What the cache already held: the replay ring's batches from the
        // first, so that blocks cached before this run still bind.
        if let Ok(history) = sub.replay_from(0, u64::MAX).await {
            let mut log = log.lock().expect("block log");
            history.iter().for_each(|r| log.apply(r, 0.0));
        }
        loop {
            match sub.next(Duration::from_millis(500)).await {
                Ok(Some(received)) => {
                    let t = received.received_at.duration_since(start).map_or(0.0, |d| d.as_secs_f64());
                    let mut log = log.lock().expect("block log");
                    log.apply(&received, t);
                    (log.missed, log.malformed) = (sub.missed(), sub.malformed());
                }
                Ok(None) => {}
                Err(e) => {
                    log.lock().expect("block log").error = Some(e.to_string());
                    return;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvscope_wire::{BlockHash, BlockRemoved, BlockStored, EventBatch};

    fn batch(events: Vec<KvCacheEvent>) -> Received {
        let batch = EventBatch { ts: 0.0, events, data_parallel_rank: None };
        Received { seq: 0, batch, received_at: SystemTime::now(), replayed: false }
    }

    fn stored(hashes: &[u64], parent: Option<u64>, tokens: Vec<u32>) -> KvCacheEvent {
        KvCacheEvent::BlockStored(BlockStored {
            block_hashes: hashes.iter().map(|h| BlockHash::Int(*h)).collect(),
            parent_block_hash: parent.map(BlockHash::Int),
            token_ids: tokens,
            block_size: 2,
            lora_id: None,
            medium: None,
            lora_name: None,
            group_idx: None,
        })
    }

    #[test]
    fn blocks_bind_to_requests_by_their_token_chain() {
        let mut log = BlockLog::default();
        log.apply(&batch(vec![stored(&[10, 11], None, vec![1, 2, 3, 4])]), 1.0);
        // Same tokens under another parent: a different chain.
        log.apply(&batch(vec![stored(&[20], Some(99), vec![3, 4])]), 2.0);
        assert_eq!(log.bind(&[1, 2, 3, 4, 5]), vec![10, 11]);
        assert_eq!(log.bind(&[3, 4]), Vec::<u64>::new(), "a chain starts at a block without parent");
        let removed = KvCacheEvent::BlockRemoved(BlockRemoved {
            block_hashes: vec![BlockHash::Int(11)],
            medium: None,
            group_idx: None,
        });
        log.apply(&batch(vec![removed]), 3.5);
        assert_eq!(log.window(0.0, 10.0), (3, 1, 3));
        assert_eq!(log.lifetimes(0.0, 10.0), vec![2.5]);
        let case = CaseBlocks::of(&log, &[vec![1, 2, 3, 4], vec![1, 2, 7, 7]], 0.0, 10.0);
        assert_eq!((case.requests_bound, case.blocks_bound, case.shared_blocks), (2, 2, 1));
    }
}
