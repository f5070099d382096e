//! The paged KV pool: which physical block holds whose KV.
//!
//! A fixed pool of `num_blocks` blocks of `block_size` token slots. Each
//! block has holders (the requests whose block tables contain it; its
//! reference count is their number). A block with no holder is free. With
//! prefix caching on, a full block's content key stays indexed after its
//! last holder leaves, so a later request with the same prefix can take it
//! back without recomputing; such a *cached-free* block is evicted only when
//! the pool needs it for someone else, least recently released first.
//!
//! A random prompt's tokens past its shared prefix are its request's own
//! (`Prompt::private_from`): a full block of them is cached exactly like an
//! indexed one — it stays cached-free after release, is counted in
//! `released.cached` and evicted in the same order — but it is tagged with
//! its owner and position instead of being hashed into the index, because
//! only that request, readmitted after a preemption, can ever take it back.
//! A simulation of 100,000 long random prompts fills and evicts tens of
//! millions of such blocks; the index holds only what a lookup can find.

use crate::block_manager_api::KvBlockManager;
use crate::events::{EventLog, KvEvent, ReleaseReason};
use crate::holders::Holders;
use crate::ids::{BlockId, RequestId, TokenId};
use crate::prefix_hash::{block_hash, BlockHash};
use crate::seq_kv::{SeqKv, SeqView};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;

// Part of this module's public face since before they had a file of their own.
pub use crate::pool::{AdmissionPlan, BlockState, BlockView, PoolConfig, PrefixCacheCounters};

/// End of the cached-free list.
const NIL: u32 = u32::MAX;

/// What a full block's KV is kept for after its holders leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Content {
    /// Nothing worth keeping (not full, or a second copy of KV another
    /// block already keeps).
    Scratch,
    /// Listed in the prefix-cache index: its tokens are in
    /// `BlockManager::tokens` and its parent's key in `BlockManager::parents`.
    Indexed(BlockHash),
    /// Private KV of `owner` at block `position` of its table, found only
    /// through the owner's `Sequence::private_blocks`.
    Private { owner: RequestId, position: u32 },
}

/// One block's bookkeeping, packed into one cache line: a simulation takes,
/// fills, releases and evicts every block of every request, and each of
/// those touches only this line (the parent keys and the tokens of indexed
/// blocks live in separate, colder arrays).
#[derive(Clone, Debug)]
#[repr(align(64))]
struct Block {
    holders: Holders,
    /// Set once the block is full (and prefix caching is on).
    content: Content,
    /// Slots holding computed KV.
    filled: u32,
    /// Neighbours in the cached-free list (`NIL` at the ends): a prefix hit
    /// takes a block out of the middle in O(1).
    lru_prev: u32,
    lru_next: u32,
    /// Whether the block is in the cached-free list (free and indexed).
    in_lru: bool,
}

impl Default for Block {
    fn default() -> Self {
        Block {
            holders: Holders::default(),
            content: Content::Scratch,
            filled: 0,
            lru_prev: NIL,
            lru_next: NIL,
            in_lru: false,
        }
    }
}

const _: () = assert!(std::mem::size_of::<Block>() == 64, "a block's bookkeeping is one cache line");

#[derive(Debug)]
pub struct BlockManager {
    config: PoolConfig,
    blocks: Vec<Block>,
    /// Free blocks with nothing worth keeping: handed out first.
    clean_free: VecDeque<BlockId>,
    /// Free blocks whose content is indexed, oldest release first: a list
    /// threaded through the blocks (`lru_prev`/`lru_next`), head and tail.
    lru_head: u32,
    lru_tail: u32,
    cached_free_count: usize,
    index: FxHashMap<BlockHash, BlockId>,
    /// The tokens of indexed blocks, `block_size` per block, at the block's
    /// index. One buffer for the pool: a simulation indexes and evicts
    /// millions of blocks, and none of them allocates.
    tokens: Vec<TokenId>,
    /// The key of each indexed block's parent (`None` for a first block):
    /// with the tokens, the proof that a hash hit is a real one.
    parents: Vec<Option<BlockHash>>,
    used: usize,
    used_tokens: usize,
    counters: PrefixCacheCounters,
}

impl BlockManager {
    pub fn new(config: PoolConfig) -> Self {
        assert!(config.block_size > 0 && config.num_blocks > 0, "pool must have blocks of size > 0");
        BlockManager {
            blocks: vec![Block::default(); config.num_blocks],
            clean_free: (0..config.num_blocks as u32).map(BlockId).collect(),
            lru_head: NIL,
            lru_tail: NIL,
            cached_free_count: 0,
            // Every block can be indexed at once; sized up front so the
            // index never rehashes in the middle of a run.
            index: if config.enable_prefix_caching {
                FxHashMap::with_capacity_and_hasher(config.num_blocks, Default::default())
            } else {
                FxHashMap::default()
            },
            tokens: if config.enable_prefix_caching {
                vec![0; config.num_blocks * config.block_size]
            } else {
                Vec::new()
            },
            parents: if config.enable_prefix_caching { vec![None; config.num_blocks] } else { Vec::new() },
            used: 0,
            used_tokens: 0,
            counters: PrefixCacheCounters::default(),
            config,
        }
    }

    pub fn ref_count(&self, block: BlockId) -> usize {
        self.blocks[block.index()].holders.len()
    }

    /// An indexed block's prefix-cache key and its parent's (`None` for a
    /// first block): what an outside index (vLLM's KV events) names it by.
    pub fn indexed_key(&self, block: BlockId) -> Option<(BlockHash, Option<BlockHash>)> {
        match self.blocks[block.index()].content {
            Content::Indexed(hash) => Some((hash, self.parents[block.index()])),
            Content::Scratch | Content::Private { .. } => None,
        }
    }

    /// The request and block position whose private KV `block` keeps, if
    /// it keeps some (see the module documentation).
    pub fn private_owner(&self, block: BlockId) -> Option<(RequestId, usize)> {
        match self.blocks[block.index()].content {
            Content::Private { owner, position } => Some((owner, position as usize)),
            Content::Scratch | Content::Indexed(_) => None,
        }
    }

    /// Whether `block` keeps `owner`'s private KV at `position`.
    fn keeps_private(&self, block: BlockId, owner: RequestId, position: usize) -> bool {
        self.blocks[block.index()].content == Content::Private { owner, position: position as u32 }
    }

    fn block_tokens(&self, index: usize) -> &[TokenId] {
        let bs = self.config.block_size;
        &self.tokens[index * bs..(index + 1) * bs]
    }

    /// Leading blocks of `seq` already in the pool: its shareable blocks
    /// through the index, then — if every one of those hit — its private
    /// blocks kept since a preemption. At least one token is always left to
    /// compute, because the executor needs the last position's output to
    /// sample from.
    pub fn cached_prefix(&self, seq: SeqView<'_>, kv: &SeqKv) -> Vec<BlockId> {
        if !self.config.enable_prefix_caching || seq.is_empty() {
            return Vec::new();
        }
        let bs = self.config.block_size;
        let usable = (seq.len() - 1) / bs;
        let private_from = self.private_from_block(seq);
        let shareable = seq.shareable_tokens();
        let shared = usable.min(private_from).min(shareable.len() / bs);
        let mut hits = self.lookup_blocks(&shareable[..shared * bs]);
        if hits.len() == private_from {
            for position in hits.len()..usable {
                match kv.private_blocks.get(position) {
                    Some(&id) if self.keeps_private(id, seq.id, position) => hits.push(id),
                    _ => break,
                }
            }
        }
        hits
    }

    /// The first block of `seq` holding any of its private tokens
    /// (`usize::MAX` when it has none).
    fn private_from_block(&self, seq: SeqView<'_>) -> usize {
        match seq.private_from() {
            usize::MAX => usize::MAX,
            from => from / self.config.block_size,
        }
    }

    /// Leading blocks of `usable` (whole blocks) found in the index.
    fn lookup_blocks(&self, usable: &[TokenId]) -> Vec<BlockId> {
        let bs = self.config.block_size;
        let mut hits = Vec::new();
        let mut parent = None;
        // Hashed block by block: a prompt's first miss ends the walk, so a
        // prompt with nothing cached costs one block's hash, not all of them.
        for block_tokens in usable.chunks_exact(bs) {
            let hash = block_hash(parent, block_tokens);
            let Some(&id) = self.index.get(&hash) else { break };
            debug_assert_eq!(self.blocks[id.index()].content, Content::Indexed(hash), "the index lists indexed blocks");
            // The hash is only a hint; equal tokens after an equal parent is the proof.
            if self.parents[id.index()] != parent || self.block_tokens(id.index()) != block_tokens {
                break;
            }
            hits.push(id);
            parent = Some(hash);
        }
        hits
    }

    /// What admitting `seq` (every token it has, prompt and any output
    /// from before a preemption) would take from the pool.
    pub fn plan_admission(&self, seq: SeqView<'_>, kv: &SeqKv) -> AdmissionPlan {
        // A first admission's tokens are its prompt; a readmission's include
        // the output generated before its preemption (`seq.len()` counts
        // both). A request scoring its prompt needs logits at every prompt
        // position, so it takes no hits.
        let cached = if seq.takes_prefix_hits { self.cached_prefix(seq, kv) } else { Vec::new() };
        let cached_free = cached.iter().filter(|b| self.blocks[b.index()].holders.is_empty()).count();
        AdmissionPlan { new_blocks: self.blocks_for_tokens(seq.len()) - cached.len(), cached, cached_free }
    }

    /// `can_allocate` without acting on anything (decode runs plan with
    /// it): the plan if it fits now, else the free blocks it would need.
    pub fn admission(&self, seq: SeqView<'_>, kv: &SeqKv) -> Result<AdmissionPlan, usize> {
        let plan = self.plan_admission(seq, kv);
        if plan.free_blocks_needed() <= self.free_blocks() {
            Ok(plan)
        } else {
            Err(plan.free_blocks_needed())
        }
    }

    /// Takes one more block for `seq` (evicting a cached one if no clean
    /// block is left). The caller checked that a free block exists.
    pub(crate) fn append_block(&mut self, seq: SeqView<'_>, kv: &mut SeqKv, log: &mut EventLog) {
        const SITE: &str = "block_manager::append_slot";
        let id = self.take_free_block(log, SITE);
        self.hold(id, seq.id);
        kv.block_table.push(id);
        log.emit(SITE, KvEvent::BlockAppended { request_id: seq.id, block: id });
    }

    /// Remembers, for each position of a preempted `seq`, the block that
    /// keeps its private KV there: the one in its table if it was kept, else
    /// the one remembered from an earlier preemption (still kept while its
    /// tag says so).
    fn keep_private_blocks(&self, seq: SeqView<'_>, kv: &mut SeqKv, table: &[BlockId]) {
        let mut kept = table.to_vec();
        for (position, block) in kept.iter_mut().enumerate() {
            if !self.keeps_private(*block, seq.id, position) {
                if let Some(&old) = kv.private_blocks.get(position) {
                    *block = old;
                }
            }
        }
        kv.private_blocks = kept;
    }
}

impl KvBlockManager for BlockManager {
    fn config(&self) -> &PoolConfig {
        &self.config
    }
    fn used_blocks(&self) -> usize {
        self.used
    }
    fn free_blocks(&self) -> usize {
        self.clean_free.len() + self.cached_free_count
    }
    fn cached_free_blocks(&self) -> usize {
        self.cached_free_count
    }
    fn used_tokens(&self) -> usize {
        self.used_tokens
    }
    fn counters(&self) -> PrefixCacheCounters {
        self.counters
    }

    fn view(&self) -> Vec<BlockView> {
        self.blocks
            .iter()
            .enumerate()
            .map(|(i, b)| BlockView {
                block: BlockId(i as u32),
                state: if !b.holders.is_empty() {
                    BlockState::Held
                } else if b.in_lru {
                    BlockState::Cached
                } else {
                    BlockState::Free
                },
                ref_count: b.holders.len(),
                holders: b.holders.to_vec(),
                filled: b.filled as usize,
            })
            .collect()
    }

    fn indexed_tokens(&self, block: BlockId) -> Option<&[TokenId]> {
        match self.blocks[block.index()].content {
            Content::Indexed(_) => Some(self.block_tokens(block.index())),
            Content::Scratch | Content::Private { .. } => None,
        }
    }

    fn can_allocate(&mut self, seq: SeqView<'_>, kv: &SeqKv) -> Result<AdmissionPlan, usize> {
        self.admission(seq, kv)
    }

    /// The planned prefix hits, then fresh blocks for the rest of the tokens.
    fn allocate(&mut self, seq: SeqView<'_>, kv: &mut SeqKv, plan: AdmissionPlan, log: &mut EventLog) -> usize {
        const SITE: &str = "block_manager::allocate";
        debug_assert!(kv.block_table.is_empty(), "a waiting sequence holds no blocks");
        let hits = plan.cached.len();
        kv.block_table.reserve(hits + plan.new_blocks);
        for id in plan.cached {
            self.hold(id, seq.id);
            kv.block_table.push(id);
        }
        for _ in 0..plan.new_blocks {
            let id = self.take_free_block(log, SITE);
            self.hold(id, seq.id);
            kv.block_table.push(id);
        }
        kv.num_computed = hits * self.config.block_size;
        hits
    }

    /// Takes one more block when the last one is full.
    fn append_slot(&mut self, seq: SeqView<'_>, kv: &mut SeqKv, log: &mut EventLog) -> Option<()> {
        if kv.block_table.len() * self.config.block_size >= seq.len() {
            return Some(());
        }
        if self.free_blocks() == 0 {
            return None;
        }
        self.append_block(seq, kv, log);
        Some(())
    }

    /// Updates slot occupancy and indexes blocks that just became full (or
    /// tags them, if private). Resumes after the blocks already committed,
    /// so a decode step costs O(1), not O(context).
    fn commit_computed(&mut self, seq: SeqView<'_>, kv: &mut SeqKv) {
        let bs = self.config.block_size;
        let private_from = self.private_from_block(seq);
        for i in kv.full_blocks..kv.block_table.len() {
            let id = kv.block_table[i];
            let filled = kv.num_computed.saturating_sub(i * bs).min(bs);
            let block = &mut self.blocks[id.index()];
            if filled > block.filled as usize {
                self.used_tokens += filled - block.filled as usize;
                block.filled = filled as u32;
            }
            if filled < bs {
                break;
            }
            kv.full_blocks = i + 1;
            if !self.config.enable_prefix_caching {
                continue;
            }
            match block.content {
                Content::Indexed(hash) => {
                    kv.last_full_hash = Some(hash);
                    continue;
                }
                // A private hit: already kept.
                Content::Private { .. } => continue,
                Content::Scratch => {}
            }
            if i >= private_from {
                // As with an index entry, the copy kept first stays the one
                // kept (see below); a readmission that recomputed this block
                // while its old copy is still cached leaves the new one scratch.
                let kept = kv.private_blocks.get(i).is_some_and(|&old| self.keeps_private(old, seq.id, i));
                if !kept {
                    self.blocks[id.index()].content = Content::Private { owner: seq.id, position: i as u32 };
                }
                continue;
            }
            let parent = kv.last_full_hash;
            let (start, end) = (i * bs, (i + 1) * bs);
            let slot_tokens = &mut self.tokens[id.index() * bs..(id.index() + 1) * bs];
            // Hashed from the prompt itself, not from the copy: reading
            // back a block just written waits on the store.
            let hash = if end <= seq.prompt.len() {
                let tokens = &seq.prompt[start..end];
                slot_tokens.copy_from_slice(tokens);
                block_hash(parent, tokens)
            } else {
                for (slot, p) in slot_tokens.iter_mut().zip(start..end) {
                    *slot = seq.token_at(p);
                }
                block_hash(parent, slot_tokens)
            };
            // Two requests may compute the same content at once; the first
            // one indexed stays the canonical copy, the other stays private
            // (its slot tokens are scratch, read only while it is indexed).
            if let std::collections::hash_map::Entry::Vacant(slot) = self.index.entry(hash) {
                slot.insert(id);
                block.content = Content::Indexed(hash);
                self.parents[id.index()] = parent;
            }
            kv.last_full_hash = Some(hash);
        }
    }

    /// Blocks no one holds become free; indexed ones stay reusable until
    /// evicted. The last block is queued for eviction first: a later
    /// request sharing a prefix needs the first blocks most.
    fn release(&mut self, seq: SeqView<'_>, kv: &mut SeqKv, reason: ReleaseReason, log: &mut EventLog) {
        let site = match reason {
            ReleaseReason::Finished => "block_manager::release_finished",
            ReleaseReason::Preempted => "block_manager::release_preempted",
            ReleaseReason::Aborted => "block_manager::release_aborted",
        };
        let blocks = std::mem::take(&mut kv.block_table);
        if reason == ReleaseReason::Preempted && self.config.enable_prefix_caching && seq.private_from() != usize::MAX {
            self.keep_private_blocks(seq, kv, &blocks);
        }
        let mut cached = 0;
        for (i, &id) in blocks.iter().enumerate().rev() {
            // A finished request's blocks were last touched long ago, and
            // each one's miss would otherwise wait for the one before.
            if let Some(ahead) = i.checked_sub(RELEASE_PREFETCH_AHEAD) {
                prefetch(&self.blocks[blocks[ahead].index()]);
            }
            let block = &mut self.blocks[id.index()];
            assert!(block.holders.remove(seq.id), "a block table only lists held blocks");
            let kept = block.content != Content::Scratch;
            if kept {
                cached += 1;
            }
            if block.holders.is_empty() {
                self.used -= 1;
                self.used_tokens -= block.filled as usize;
                if kept {
                    self.lru_push_back(id);
                } else {
                    block.filled = 0;
                    self.clean_free.push_back(id);
                }
            }
        }
        kv.num_computed = 0;
        kv.full_blocks = 0;
        kv.last_full_hash = None;
        log.emit(site, KvEvent::Released { request_id: seq.id, blocks, reason, cached });
    }

    /// Recomputation after a preemption is never counted as a hit.
    fn count_prefix_query(&mut self, prompt_tokens: usize, hit_tokens: usize) {
        self.counters.queried_tokens += prompt_tokens as u64;
        self.counters.hit_tokens += hit_tokens as u64;
    }

    /// Frees every cached-free block (SGLang's `/flush_cache`): each loses
    /// its index entry or private tag, is counted and reported as an
    /// eviction, and becomes clean. Held blocks are never in the cached-free
    /// list, so a running request keeps every block it holds. Returns how
    /// many blocks were freed.
    fn flush_cached(&mut self, log: &mut EventLog) -> usize {
        const SITE: &str = "block_manager::flush_cached";
        let mut freed = 0;
        while self.lru_head != NIL {
            let id = self.evict_oldest_cached(log, SITE);
            self.clean_free.push_back(id);
            freed += 1;
        }
        freed
    }
}

/// The pool's own moves, under the seam's operations: holding a block,
/// the cached-free list, eviction.
impl BlockManager {
    fn hold(&mut self, id: BlockId, holder: RequestId) {
        let block = &mut self.blocks[id.index()];
        if block.holders.is_empty() {
            self.used += 1;
            self.used_tokens += block.filled as usize;
            if block.in_lru {
                self.lru_unlink(id);
            }
        }
        self.blocks[id.index()].holders.push(holder);
    }

    fn lru_push_back(&mut self, id: BlockId) {
        let i = id.0;
        let tail = self.lru_tail;
        let block = &mut self.blocks[id.index()];
        block.in_lru = true;
        block.lru_prev = tail;
        block.lru_next = NIL;
        if tail == NIL {
            self.lru_head = i;
        } else {
            self.blocks[tail as usize].lru_next = i;
        }
        self.lru_tail = i;
        self.cached_free_count += 1;
    }

    fn lru_unlink(&mut self, id: BlockId) {
        let block = &mut self.blocks[id.index()];
        let (prev, next) = (block.lru_prev, block.lru_next);
        block.in_lru = false;
        block.lru_prev = NIL;
        block.lru_next = NIL;
        if prev == NIL {
            self.lru_head = next;
        } else {
            self.blocks[prev as usize].lru_next = next;
        }
        if next == NIL {
            self.lru_tail = prev;
        } else {
            self.blocks[next as usize].lru_prev = prev;
        }
        self.cached_free_count -= 1;
    }

    /// A free block for new KV: a clean one if any, else the least recently
    /// released cached one, whose index entry is evicted.
    fn take_free_block(&mut self, log: &mut EventLog, site: &'static str) -> BlockId {
        if let Some(id) = self.clean_free.pop_front() {
            return id;
        }
        assert!(self.lru_head != NIL, "callers check free_blocks() first");
        self.evict_oldest_cached(log, site)
    }

    /// Takes the least recently released cached-free block out of the list
    /// and drops what it kept (the caller checked the list is not empty).
    fn evict_oldest_cached(&mut self, log: &mut EventLog, site: &'static str) -> BlockId {
        let id = BlockId(self.lru_head);
        self.lru_unlink(id);
        let block = &mut self.blocks[id.index()];
        block.filled = 0;
        match std::mem::replace(&mut block.content, Content::Scratch) {
            Content::Indexed(hash) => {
                self.index.remove(&hash);
            }
            Content::Private { .. } => {}
            Content::Scratch => unreachable!("cached-free blocks keep content"),
        }
        self.counters.evictions += 1;
        log.emit(site, KvEvent::Evicted { block: id });
        id
    }
}

/// How many blocks ahead `release` asks for a block's line.
const RELEASE_PREFETCH_AHEAD: usize = 8;

/// A hint that `block`'s line will be read soon.
#[inline(always)]
#[allow(unsafe_code)] // the crate's one unsafe block (see lib.rs)
fn prefetch(block: &Block) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints the cache and never faults; `block` is
    // a live reference; SSE is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>((block as *const Block).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = block;
}
