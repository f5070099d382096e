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

use crate::events::{EventLog, KvEvent, ReleaseReason};
use crate::holders::Holders;
use crate::ids::{BlockId, RequestId, TokenId};
use crate::prefix_hash::{block_hash, BlockHash};
use crate::sequence::Sequence;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;

/// End of the cached-free list.
const NIL: u32 = u32::MAX;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PoolConfig {
    pub num_blocks: usize,
    /// Token slots per block.
    pub block_size: usize,
    pub enable_prefix_caching: bool,
    /// Real bytes of KV one block holds (all layers, K and V); 0 if unknown.
    pub bytes_per_block: u64,
}

impl PoolConfig {
    /// `num_blocks` blocks of `block_size` token slots, each slot holding
    /// `bytes_per_token` of real KV (0 if unknown).
    pub fn new(num_blocks: usize, block_size: usize, bytes_per_token: u64, enable_prefix_caching: bool) -> Self {
        PoolConfig {
            num_blocks,
            block_size,
            enable_prefix_caching,
            bytes_per_block: bytes_per_token.saturating_mul(block_size as u64),
        }
    }

    /// Real bytes of KV one token takes (0 if unknown).
    pub fn bytes_per_token(&self) -> u64 {
        self.bytes_per_block / self.block_size as u64
    }
    /// Real bytes the whole pool holds.
    pub fn total_bytes(&self) -> u64 {
        self.bytes_per_block * self.num_blocks as u64
    }
}

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

/// Where a block stands; used by views such as `/kv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockState {
    Free,
    /// Free, but its KV is still indexed and can be reused.
    Cached,
    Held,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BlockView {
    pub block: BlockId,
    pub state: BlockState,
    pub ref_count: usize,
    pub holders: Vec<RequestId>,
    pub filled: usize,
}

/// Prefix blocks a waiting sequence would reuse, and how many fresh blocks
/// it needs on top.
#[derive(Clone, Debug, PartialEq)]
pub struct AdmissionPlan {
    pub cached: Vec<BlockId>,
    pub new_blocks: usize,
    /// Of `cached`, how many are currently free (taking them shrinks the
    /// free pool just as a fresh block does).
    cached_free: usize,
}

impl AdmissionPlan {
    /// Free blocks this admission consumes.
    pub fn free_blocks_needed(&self) -> usize {
        self.new_blocks + self.cached_free
    }

    /// The plan of a manager that decides its hits inside its own
    /// `allocate` (a plug-in): it only says how many free blocks the
    /// admission takes.
    pub fn opaque(free_blocks_needed: usize) -> Self {
        AdmissionPlan { cached: Vec::new(), new_blocks: free_blocks_needed, cached_free: 0 }
    }
}

/// Prefix-cache counters, in tokens, over first admissions only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PrefixCacheCounters {
    pub queried_tokens: u64,
    pub hit_tokens: u64,
    pub evictions: u64,
}

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

    pub fn config(&self) -> &PoolConfig {
        &self.config
    }
    pub fn block_size(&self) -> usize {
        self.config.block_size
    }
    pub fn total_blocks(&self) -> usize {
        self.config.num_blocks
    }
    pub fn used_blocks(&self) -> usize {
        self.used
    }
    pub fn free_blocks(&self) -> usize {
        self.clean_free.len() + self.cached_free_count
    }
    pub fn cached_free_blocks(&self) -> usize {
        self.cached_free_count
    }
    /// Tokens of KV stored in held blocks (shared blocks counted once).
    pub fn used_tokens(&self) -> usize {
        self.used_tokens
    }
    pub fn counters(&self) -> PrefixCacheCounters {
        self.counters
    }
    pub fn blocks_for_tokens(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.config.block_size)
    }
    pub fn ref_count(&self, block: BlockId) -> usize {
        self.blocks[block.index()].holders.len()
    }

    pub fn view(&self) -> Vec<BlockView> {
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

    /// The tokens an indexed block holds, if it is indexed.
    pub fn indexed_tokens(&self, block: BlockId) -> Option<&[TokenId]> {
        match self.blocks[block.index()].content {
            Content::Indexed(_) => Some(self.block_tokens(block.index())),
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
    pub fn cached_prefix(&self, seq: &Sequence) -> Vec<BlockId> {
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
                match seq.private_blocks.get(position) {
                    Some(&id) if self.keeps_private(id, seq.id, position) => hits.push(id),
                    _ => break,
                }
            }
        }
        hits
    }

    /// The first block of `seq` holding any of its private tokens
    /// (`usize::MAX` when it has none).
    fn private_from_block(&self, seq: &Sequence) -> usize {
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
    pub fn plan_admission(&self, seq: &Sequence) -> AdmissionPlan {
        // A first admission's tokens are its prompt; a readmission's include
        // the output generated before its preemption (`seq.len()` counts
        // both). A request scoring its prompt needs logits at every prompt
        // position, so it takes no hits.
        let cached = if seq.params.prompt_logprobs.is_some() { Vec::new() } else { self.cached_prefix(seq) };
        let cached_free = cached.iter().filter(|b| self.blocks[b.index()].holders.is_empty()).count();
        AdmissionPlan { new_blocks: self.blocks_for_tokens(seq.len()) - cached.len(), cached, cached_free }
    }

    pub fn can_admit(&self, plan: &AdmissionPlan) -> bool {
        plan.free_blocks_needed() <= self.free_blocks()
    }

    /// `plan_admission` and `can_admit` in one: the plan if it fits now,
    /// else the free blocks it would need.
    pub fn can_allocate(&self, seq: &Sequence) -> Result<AdmissionPlan, usize> {
        let plan = self.plan_admission(seq);
        if self.can_admit(&plan) {
            Ok(plan)
        } else {
            Err(plan.free_blocks_needed())
        }
    }

    /// Gives `seq` its block table: the planned prefix hits, then fresh
    /// blocks for the rest of its tokens. Returns how many blocks were hits.
    pub fn allocate(&mut self, seq: &mut Sequence, plan: AdmissionPlan, log: &mut EventLog) -> usize {
        const SITE: &str = "block_manager::allocate";
        debug_assert!(seq.block_table.is_empty(), "a waiting sequence holds no blocks");
        let hits = plan.cached.len();
        seq.block_table.reserve(hits + plan.new_blocks);
        for id in plan.cached {
            self.hold(id, seq.id);
            seq.block_table.push(id);
        }
        for _ in 0..plan.new_blocks {
            let id = self.take_free_block(log, SITE);
            self.hold(id, seq.id);
            seq.block_table.push(id);
        }
        seq.num_computed = hits * self.config.block_size;
        hits
    }

    /// Makes sure the newest token of `seq` has a slot, taking one more
    /// block when the last one is full. `None` when the pool is exhausted.
    pub fn append_slot(&mut self, seq: &mut Sequence, log: &mut EventLog) -> Option<()> {
        if seq.block_table.len() * self.config.block_size >= seq.len() {
            return Some(());
        }
        if self.free_blocks() == 0 {
            return None;
        }
        self.append_block(seq, log);
        Some(())
    }

    /// Takes one more block for `seq` (evicting a cached one if no clean
    /// block is left). The caller checked that a free block exists.
    pub(crate) fn append_block(&mut self, seq: &mut Sequence, log: &mut EventLog) {
        const SITE: &str = "block_manager::append_slot";
        let id = self.take_free_block(log, SITE);
        self.hold(id, seq.id);
        seq.block_table.push(id);
        log.emit(SITE, KvEvent::BlockAppended { request_id: seq.id, block: id });
    }

    /// Records that `seq` now has KV for its first `seq.num_computed` tokens:
    /// updates slot occupancy and indexes blocks that just became full (or
    /// tags them, if private). Resumes after the blocks already committed,
    /// so a decode step costs O(1), not O(context).
    pub fn commit_computed(&mut self, seq: &mut Sequence) {
        let bs = self.config.block_size;
        let private_from = self.private_from_block(seq);
        for i in seq.full_blocks..seq.block_table.len() {
            let id = seq.block_table[i];
            let filled = seq.num_computed.saturating_sub(i * bs).min(bs);
            let block = &mut self.blocks[id.index()];
            if filled > block.filled as usize {
                self.used_tokens += filled - block.filled as usize;
                block.filled = filled as u32;
            }
            if filled < bs {
                break;
            }
            seq.full_blocks = i + 1;
            if !self.config.enable_prefix_caching {
                continue;
            }
            match block.content {
                Content::Indexed(hash) => {
                    seq.last_full_hash = Some(hash);
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
                let kept = seq.private_blocks.get(i).is_some_and(|&old| self.keeps_private(old, seq.id, i));
                if !kept {
                    self.blocks[id.index()].content = Content::Private { owner: seq.id, position: i as u32 };
                }
                continue;
            }
            let parent = seq.last_full_hash;
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
            seq.last_full_hash = Some(hash);
        }
    }

    /// Drops `seq`'s hold on all its blocks and clears its table. Blocks no
    /// one holds become free; indexed ones stay reusable until evicted. The
    /// last block is queued for eviction first: a later request sharing a
    /// prefix needs the first blocks most.
    pub fn release(&mut self, seq: &mut Sequence, reason: ReleaseReason, log: &mut EventLog) {
        let site = match reason {
            ReleaseReason::Finished => "block_manager::release_finished",
            ReleaseReason::Preempted => "block_manager::release_preempted",
            ReleaseReason::Aborted => "block_manager::release_aborted",
        };
        let blocks = std::mem::take(&mut seq.block_table);
        if reason == ReleaseReason::Preempted && self.config.enable_prefix_caching && seq.private_from() != usize::MAX {
            self.keep_private_blocks(seq, &blocks);
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
        seq.num_computed = 0;
        seq.full_blocks = 0;
        seq.last_full_hash = None;
        log.emit(site, KvEvent::Released { request_id: seq.id, blocks, reason, cached });
    }

    /// Remembers, for each position of a preempted `seq`, the block that
    /// keeps its private KV there: the one in its table if it was kept, else
    /// the one remembered from an earlier preemption (still kept while its
    /// tag says so).
    fn keep_private_blocks(&self, seq: &mut Sequence, table: &[BlockId]) {
        let mut kept = table.to_vec();
        for (position, block) in kept.iter_mut().enumerate() {
            if !self.keeps_private(*block, seq.id, position) {
                if let Some(&old) = seq.private_blocks.get(position) {
                    *block = old;
                }
            }
        }
        seq.private_blocks = kept;
    }

    /// Counts a first admission's prefix lookup (recomputation after a
    /// preemption is never counted as a hit).
    pub fn count_prefix_query(&mut self, prompt_tokens: usize, hit_tokens: usize) {
        self.counters.queried_tokens += prompt_tokens as u64;
        self.counters.hit_tokens += hit_tokens as u64;
    }

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

    /// Frees every cached-free block (SGLang's `/flush_cache`): each loses
    /// its index entry or private tag, is counted and reported as an
    /// eviction, and becomes clean. Held blocks are never in the cached-free
    /// list, so a running request keeps every block it holds. Returns how
    /// many blocks were freed.
    pub fn flush_cached(&mut self, log: &mut EventLog) -> usize {
        const SITE: &str = "block_manager::flush_cached";
        let mut freed = 0;
        while self.lru_head != NIL {
            let id = self.evict_oldest_cached(log, SITE);
            self.clean_free.push_back(id);
            freed += 1;
        }
        freed
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
