//! The seam between the scheduler and a block manager: what the scheduler
//! asks of whoever decides which physical block holds whose KV.
//!
//! The native [`BlockManager`] is the default and is called directly (no
//! virtual call on the hot path: [`AnyBlockManager::Native`] is matched, and
//! the compiler inlines the native methods as before). Anything else — the
//! course exercise's Python manager, hosted by `kvscope-exercise` — plugs in
//! as [`AnyBlockManager::External`] behind [`KvBlockManager`].
//!
//! The operations follow nano-vLLM's `BlockManager`, in the order its
//! scheduler calls them:
//!
//! | here | nano-vLLM | when |
//! |---|---|---|
//! | `can_allocate` | `can_allocate(seq)` | the head of the waiting queue is considered for admission |
//! | `allocate` | `allocate(seq)` | it is admitted: its table gets prefix hits, then fresh blocks for every token |
//! | `append_slot` | `can_append(seq)` then `may_append(seq)` | a running sequence is scheduled for decode, after its newest token was appended and before that token's KV is computed |
//! | `commit_computed` | `hash_blocks(seq)` (newer versions) | after a step computed KV for some of its tokens |
//! | `release` | `deallocate(seq)` | it finishes, is preempted or is aborted |

use crate::block_manager::{AdmissionPlan, BlockManager, BlockView, PoolConfig, PrefixCacheCounters};
use crate::events::{EventLog, ReleaseReason};
use crate::ids::{BlockId, TokenId};
use crate::sequence::Sequence;
use std::fmt;

/// A block manager the scheduler can drive. Implementations own every
/// decision about blocks; the scheduler owns the queues, and the sequence's
/// `block_table` and `num_computed` are how the two talk.
pub trait KvBlockManager: Send + fmt::Debug {
    fn config(&self) -> &PoolConfig;
    fn free_blocks(&self) -> usize;
    fn used_blocks(&self) -> usize;
    /// Free blocks whose content is still indexed for reuse (0 if unknown).
    fn cached_free_blocks(&self) -> usize;
    /// Tokens of KV stored in held blocks (shared blocks counted once).
    fn used_tokens(&self) -> usize;
    fn counters(&self) -> PrefixCacheCounters;
    /// Every block with its holders, for `/kv` and the invariant checks.
    fn view(&self) -> Vec<BlockView>;
    /// The tokens an indexed block is known to hold, if the manager knows.
    fn indexed_tokens(&self, block: BlockId) -> Option<&[TokenId]>;

    /// Can the waiting `seq` get blocks for every token it has, now? `Ok`
    /// carries what `allocate` needs; `Err` says how many free blocks the
    /// admission would take (for the `stalled` event).
    fn can_allocate(&mut self, seq: &Sequence) -> Result<AdmissionPlan, usize>;
    /// Gives `seq` its block table and sets `seq.num_computed` to the tokens
    /// whose KV the prefix hits already hold. Returns the number of hits.
    fn allocate(&mut self, seq: &mut Sequence, plan: AdmissionPlan, log: &mut EventLog) -> usize;
    /// Makes sure the newest token of `seq` has a slot. `None` when that
    /// needs a block and the pool has none (the scheduler then preempts).
    fn append_slot(&mut self, seq: &mut Sequence, log: &mut EventLog) -> Option<()>;
    /// `seq.num_computed` grew: its KV now exists up to there.
    fn commit_computed(&mut self, seq: &mut Sequence);
    /// Drops `seq`'s hold on its blocks; leaves its table empty and
    /// `num_computed` at 0.
    fn release(&mut self, seq: &mut Sequence, reason: ReleaseReason, log: &mut EventLog);
    /// Counts a first admission's prefix lookup.
    fn count_prefix_query(&mut self, prompt_tokens: usize, hit_tokens: usize);
    /// Frees every block kept only for reuse (ref count 0, still cached),
    /// emitting an `evicted` event for each; never touches a held block.
    /// Returns how many were freed. A manager that keeps no such blocks
    /// (or cannot drop them) frees none.
    fn flush_cached(&mut self, _log: &mut EventLog) -> usize {
        0
    }
    /// Why this manager can go on no longer (a plug-in whose code raised or
    /// broke the contract); the engine's step then fails with this message.
    fn failure(&self) -> Option<String> {
        None
    }
}

impl KvBlockManager for BlockManager {
    fn config(&self) -> &PoolConfig {
        BlockManager::config(self)
    }
    fn free_blocks(&self) -> usize {
        BlockManager::free_blocks(self)
    }
    fn used_blocks(&self) -> usize {
        BlockManager::used_blocks(self)
    }
    fn cached_free_blocks(&self) -> usize {
        BlockManager::cached_free_blocks(self)
    }
    fn used_tokens(&self) -> usize {
        BlockManager::used_tokens(self)
    }
    fn counters(&self) -> PrefixCacheCounters {
        BlockManager::counters(self)
    }
    fn view(&self) -> Vec<BlockView> {
        BlockManager::view(self)
    }
    fn indexed_tokens(&self, block: BlockId) -> Option<&[TokenId]> {
        BlockManager::indexed_tokens(self, block)
    }
    fn can_allocate(&mut self, seq: &Sequence) -> Result<AdmissionPlan, usize> {
        BlockManager::can_allocate(self, seq)
    }
    fn allocate(&mut self, seq: &mut Sequence, plan: AdmissionPlan, log: &mut EventLog) -> usize {
        BlockManager::allocate(self, seq, plan, log)
    }
    fn append_slot(&mut self, seq: &mut Sequence, log: &mut EventLog) -> Option<()> {
        BlockManager::append_slot(self, seq, log)
    }
    fn commit_computed(&mut self, seq: &mut Sequence) {
        BlockManager::commit_computed(self, seq)
    }
    fn release(&mut self, seq: &mut Sequence, reason: ReleaseReason, log: &mut EventLog) {
        BlockManager::release(self, seq, reason, log)
    }
    fn count_prefix_query(&mut self, prompt_tokens: usize, hit_tokens: usize) {
        BlockManager::count_prefix_query(self, prompt_tokens, hit_tokens)
    }
    fn flush_cached(&mut self, log: &mut EventLog) -> usize {
        BlockManager::flush_cached(self, log)
    }
}

/// The block manager a scheduler runs: the native one (the default, called
/// statically) or a plug-in.
#[derive(Debug)]
#[allow(clippy::large_enum_variant, reason = "one per engine; the native manager stays inline on the hot path")]
pub enum AnyBlockManager {
    Native(BlockManager),
    External(Box<dyn KvBlockManager>),
}

/// Calls the same method on either variant: a direct (inlinable) call on
/// the native manager, a virtual one on a plug-in.
macro_rules! dispatch {
    ($self:expr, $b:ident => $call:expr) => {
        match $self {
            AnyBlockManager::Native($b) => $call,
            AnyBlockManager::External($b) => $call,
        }
    };
}

impl AnyBlockManager {
    /// The native manager, when it is the one running (for views that need
    /// more than the seam offers, such as per-block reference counts).
    pub fn native(&self) -> Option<&BlockManager> {
        match self {
            AnyBlockManager::Native(b) => Some(b),
            AnyBlockManager::External(_) => None,
        }
    }
    pub(crate) fn native_mut(&mut self) -> Option<&mut BlockManager> {
        match self {
            AnyBlockManager::Native(b) => Some(b),
            AnyBlockManager::External(_) => None,
        }
    }
    pub fn is_native(&self) -> bool {
        self.native().is_some()
    }

    pub fn config(&self) -> &PoolConfig {
        dispatch!(self, b => b.config())
    }
    pub fn block_size(&self) -> usize {
        self.config().block_size
    }
    pub fn total_blocks(&self) -> usize {
        self.config().num_blocks
    }
    pub fn blocks_for_tokens(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size())
    }
    pub fn free_blocks(&self) -> usize {
        dispatch!(self, b => b.free_blocks())
    }
    pub fn used_blocks(&self) -> usize {
        dispatch!(self, b => b.used_blocks())
    }
    pub fn cached_free_blocks(&self) -> usize {
        dispatch!(self, b => b.cached_free_blocks())
    }
    pub fn used_tokens(&self) -> usize {
        dispatch!(self, b => b.used_tokens())
    }
    pub fn counters(&self) -> PrefixCacheCounters {
        dispatch!(self, b => b.counters())
    }
    pub fn view(&self) -> Vec<BlockView> {
        dispatch!(self, b => b.view())
    }
    pub fn indexed_tokens(&self, block: BlockId) -> Option<&[TokenId]> {
        dispatch!(self, b => b.indexed_tokens(block))
    }
    pub(crate) fn can_allocate(&mut self, seq: &Sequence) -> Result<AdmissionPlan, usize> {
        dispatch!(self, b => b.can_allocate(seq))
    }
    pub(crate) fn allocate(&mut self, seq: &mut Sequence, plan: AdmissionPlan, log: &mut EventLog) -> usize {
        dispatch!(self, b => b.allocate(seq, plan, log))
    }
    pub(crate) fn append_slot(&mut self, seq: &mut Sequence, log: &mut EventLog) -> Option<()> {
        dispatch!(self, b => b.append_slot(seq, log))
    }
    pub(crate) fn commit_computed(&mut self, seq: &mut Sequence) {
        dispatch!(self, b => b.commit_computed(seq))
    }
    pub(crate) fn release(&mut self, seq: &mut Sequence, reason: ReleaseReason, log: &mut EventLog) {
        dispatch!(self, b => b.release(seq, reason, log))
    }
    pub(crate) fn count_prefix_query(&mut self, prompt_tokens: usize, hit_tokens: usize) {
        dispatch!(self, b => b.count_prefix_query(prompt_tokens, hit_tokens))
    }
    pub(crate) fn flush_cached(&mut self, log: &mut EventLog) -> usize {
        dispatch!(self, b => b.flush_cached(log))
    }
    /// The native manager never fails; a plug-in may.
    pub fn failure(&self) -> Option<String> {
        match self {
            AnyBlockManager::Native(_) => None,
            AnyBlockManager::External(b) => b.failure(),
        }
    }
}
