//! The pool's shape and what a block manager reports about it: the
//! configuration every manager is built from, the per-block view behind
//! `/kv` and the invariant checks, an admission plan, and the prefix-cache
//! counters. Shared by the seam (`block_manager_api.rs`) and the native
//! manager (`block_manager.rs`), which re-exports them.

use crate::ids::{BlockId, RequestId};

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
    pub(crate) cached_free: usize,
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
