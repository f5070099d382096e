//! The numbers behind the KV blocks: per layer, K and V for every slot of
//! every block in the pool.
//!
//! Layout per layer: `[num_blocks][block_size][kv_heads][head_dim]` f32, so a
//! block is one contiguous range and position `p` of a sequence lives at slot
//! `block_table[p / block_size] * block_size + p % block_size`. Which block
//! belongs to whom is decided by the block manager in kvscope-core; this
//! storage only holds values at the places it is told.

use crate::config::ModelConfig;

/// Values are stored as f32: exact, simple, and twice the bytes of the f16
/// caches most engines use — the sizing functions report what is actually
/// allocated here.
const BYTES_PER_VALUE: usize = std::mem::size_of::<f32>();

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KvStorageError {
    #[error("block size must be at least 1")]
    ZeroBlockSize,
    #[error("a KV pool of {num_blocks} blocks × {block_size} tokens needs {bytes} bytes, more than this machine can address; use fewer blocks")]
    TooLarge { num_blocks: usize, block_size: usize, bytes: u128 },
}

#[derive(Debug)]
pub struct LayerKv {
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

#[derive(Debug)]
pub struct PagedKvCache {
    layers: Vec<LayerKv>,
    num_blocks: usize,
    block_size: usize,
    kv_dim: usize,
}

/// Bytes one token's K and V take across all layers.
pub fn bytes_per_token(config: &ModelConfig) -> usize {
    2 * config.n_layers * config.kv_dim() * BYTES_PER_VALUE
}

/// How many blocks of `block_size` tokens fit in `bytes`.
pub fn num_blocks_for_memory(config: &ModelConfig, bytes: usize, block_size: usize) -> usize {
    bytes / (bytes_per_token(config) * block_size.max(1))
}

impl PagedKvCache {
    /// A zeroed pool of `num_blocks` blocks of `block_size` tokens. Pages are
    /// touched (and so become resident) only when KV is written into them.
    pub fn new(config: &ModelConfig, num_blocks: usize, block_size: usize) -> Result<Self, KvStorageError> {
        if block_size == 0 {
            return Err(KvStorageError::ZeroBlockSize);
        }
        let kv_dim = config.kv_dim();
        let per_layer = (num_blocks as u128) * (block_size as u128) * (kv_dim as u128);
        let bytes = per_layer * 2 * config.n_layers as u128 * BYTES_PER_VALUE as u128;
        if bytes > isize::MAX as u128 / 2 {
            return Err(KvStorageError::TooLarge { num_blocks, block_size, bytes });
        }
        let per_layer = per_layer as usize;
        let layers =
            (0..config.n_layers).map(|_| LayerKv { k: vec![0.0; per_layer], v: vec![0.0; per_layer] }).collect();
        Ok(PagedKvCache { layers, num_blocks, block_size, kv_dim })
    }

    pub fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Floats per token per layer in K (and in V).
    pub fn kv_dim(&self) -> usize {
        self.kv_dim
    }

    pub fn bytes_per_token(&self) -> usize {
        2 * self.layers.len() * self.kv_dim * BYTES_PER_VALUE
    }

    pub fn bytes_per_block(&self) -> usize {
        self.bytes_per_token() * self.block_size
    }

    pub fn total_bytes(&self) -> usize {
        self.bytes_per_block() * self.num_blocks
    }

    pub fn layer(&self, i: usize) -> &LayerKv {
        &self.layers[i]
    }

    pub fn layer_mut(&mut self, i: usize) -> &mut LayerKv {
        &mut self.layers[i]
    }

    /// The slot of position `pos` under `block_table`, if the table covers it
    /// and names a block of this pool.
    pub fn slot(&self, block_table: &[usize], pos: usize) -> Option<usize> {
        let block = *block_table.get(pos / self.block_size)?;
        (block < self.num_blocks).then(|| block * self.block_size + pos % self.block_size)
    }

    /// Write one token's K and V rows (`kv_dim` wide) into `slot` of `layer`.
    pub fn write(&mut self, layer: usize, slot: usize, k: &[f32], v: &[f32]) {
        let d = self.kv_dim;
        let l = &mut self.layers[layer];
        l.k[slot * d..][..d].copy_from_slice(k);
        l.v[slot * d..][..d].copy_from_slice(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RopeStyle;

    pub(crate) fn smollm_like() -> ModelConfig {
        ModelConfig {
            arch: "llama".into(),
            n_layers: 30,
            hidden: 576,
            n_heads: 9,
            n_kv_heads: 3,
            head_dim: 64,
            ffn_hidden: 1536,
            vocab_size: 49152,
            context_length: 8192,
            rope_base: 100000.0,
            rope_style: RopeStyle::Interleaved,
            rms_eps: 1e-5,
            attn_bias: false,
            qk_norm: false,
        }
    }

    #[test]
    fn sizes_follow_layers_heads_and_f32() {
        let c = smollm_like();
        // 2 (K, V) × 30 layers × 3 heads × 64 dims × 4 bytes
        assert_eq!(bytes_per_token(&c), 46_080);
        let kv = PagedKvCache::new(&c, 10, 16).unwrap();
        assert_eq!(kv.bytes_per_token(), 46_080);
        assert_eq!(kv.bytes_per_block(), 46_080 * 16);
        assert_eq!(kv.total_bytes(), 46_080 * 16 * 10);
        assert_eq!(kv.layer(0).k.len(), 10 * 16 * 192);
        assert_eq!(num_blocks_for_memory(&c, kv.total_bytes() + 5, 16), 10);
        assert_eq!(num_blocks_for_memory(&c, kv.total_bytes() - 1, 16), 9);
    }

    #[test]
    fn slots_follow_the_block_table() {
        let mut kv = PagedKvCache::new(&smollm_like(), 4, 2).unwrap();
        let table = [3usize, 1];
        assert_eq!(kv.slot(&table, 0), Some(6));
        assert_eq!(kv.slot(&table, 3), Some(3));
        assert_eq!(kv.slot(&table, 4), None);
        assert_eq!(kv.slot(&[9], 0), None);
        let k = vec![1.0; 192];
        let v = vec![2.0; 192];
        kv.write(5, 3, &k, &v);
        assert_eq!(kv.layer(5).k[3 * 192..4 * 192], k[..]);
        assert_eq!(kv.layer(5).v[3 * 192], 2.0);
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert_eq!(PagedKvCache::new(&smollm_like(), 1, 0).unwrap_err(), KvStorageError::ZeroBlockSize);
        assert!(matches!(PagedKvCache::new(&smollm_like(), usize::MAX / 4, 16), Err(KvStorageError::TooLarge { .. })));
    }
}
