//! How a KV store is laid out: the one fact the engine's pool and an
//! executor's storage must share.

/// How a KV store is laid out: what the engine's pool and an executor's
/// storage must agree on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvGeometry {
    pub num_blocks: usize,
    /// Token slots per block.
    pub block_size: usize,
}

impl std::fmt::Display for KvGeometry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} blocks of {} tokens", self.num_blocks, self.block_size)
    }
}
