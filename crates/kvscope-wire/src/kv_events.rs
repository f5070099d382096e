//! vLLM's KV-event messages as Rust values (`vllm/distributed/kv_events.py`:
//! `EventBatch` / `KVEventBatch`, `BlockStored`, `BlockRemoved`,
//! `AllBlocksCleared`). Field names and order are vLLM's; how they are laid
//! out in msgpack is [`crate::msgpack_layout`]'s business.

/// A block's key as vLLM sends it (`ExternalBlockHash = bytes | int`): an
/// integer by default (`VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1`, the low 64
/// bits of the digest), the whole digest as bytes otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BlockHash {
    Int(u64),
    Bytes(Vec<u8>),
}

/// A block's key that kvscope can compare across events: an integer as
/// itself, a digest by its low 64 bits (what vLLM's integer form keeps).
impl BlockHash {
    pub fn as_u64(&self) -> u64 {
        match self {
            BlockHash::Int(v) => *v,
            BlockHash::Bytes(b) => {
                let tail = &b[b.len().saturating_sub(8)..];
                tail.iter().fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte))
            }
        }
    }
}

/// Full blocks entered the prefix cache: `block_hashes` in chain order, the
/// first one's parent, and their tokens (`block_size` per block).
#[derive(Clone, Debug, PartialEq)]
pub struct BlockStored {
    pub block_hashes: Vec<BlockHash>,
    pub parent_block_hash: Option<BlockHash>,
    pub token_ids: Vec<u32>,
    pub block_size: u32,
    /// Deprecated in vLLM in favour of `lora_name`; still a required field.
    pub lora_id: Option<i64>,
    /// Where the blocks live (vLLM: `"GPU"` for its main pool, `"CPU"` for
    /// an offload tier).
    pub medium: Option<String>,
    pub lora_name: Option<String>,
    /// Optional in vLLM's schema (omitted when absent): the KV-cache group.
    pub group_idx: Option<i64>,
}

/// Blocks left the prefix cache (evicted).
#[derive(Clone, Debug, PartialEq)]
pub struct BlockRemoved {
    pub block_hashes: Vec<BlockHash>,
    pub medium: Option<String>,
    pub group_idx: Option<i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum KvCacheEvent {
    BlockStored(BlockStored),
    BlockRemoved(BlockRemoved),
    /// The whole prefix cache was reset.
    AllBlocksCleared,
    /// A tag this crate does not know (a newer engine's event): kept by name
    /// so a reader can count it instead of failing the batch.
    Unknown(String),
}

impl KvCacheEvent {
    /// The msgspec tag: the class name.
    pub fn tag(&self) -> &str {
        match self {
            KvCacheEvent::BlockStored(_) => "BlockStored",
            KvCacheEvent::BlockRemoved(_) => "BlockRemoved",
            KvCacheEvent::AllBlocksCleared => "AllBlocksCleared",
            KvCacheEvent::Unknown(tag) => tag,
        }
    }
}

/// One published message: the events of one engine step.
#[derive(Clone, Debug, PartialEq)]
pub struct EventBatch {
    /// Wall-clock seconds since the Unix epoch when the batch was made.
    pub ts: f64,
    pub events: Vec<KvCacheEvent>,
    /// vLLM's publisher stamps its data-parallel rank (0 without DP).
    pub data_parallel_rank: Option<i64>,
}
