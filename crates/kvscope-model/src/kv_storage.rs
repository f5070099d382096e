//! The numbers behind the KV blocks: per layer, K and V for every slot of
//! every block in the pool, in the number format the pool was made with.
//!
//! Layout per layer and plane: `[num_blocks][block_size][kv_heads][head_dim]`
//! values (f32, f16 bits or int8), so a block is one contiguous range and
//! position `p` of a sequence lives at slot
//! `block_table[p / block_size] * block_size + p % block_size`; int8 adds
//! one f32 scale per `[slot][kv_head]`. Which block belongs to whom is
//! decided by the block manager in kvscope-core; this storage only holds
//! values at the places it is told.
//!
//! Quantizing a token's K/V reads only that token's values, so a token's
//! stored KV is the same whether it was computed in a batch, in a prefill
//! chunk, or by the request that first cached the block: the formats keep
//! the engine's batch invariance.

use crate::config::ModelConfig;
use crate::kernels::attention::{KvPlanes, KvView};
pub use crate::kernels::kv_elem::quantize_int8;
use crate::kernels::kv_elem::Plane;
use kvscope_core::KvDtype;

/// The format pools use unless told otherwise. See the README's "KV
/// precision" for the measurement behind the choice.
pub const DEFAULT_KV_DTYPE: KvDtype = KvDtype::F16;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KvStorageError {
    #[error("block size must be at least 1")]
    ZeroBlockSize,
    #[error("a KV pool of {num_blocks} blocks × {block_size} tokens needs {bytes} bytes, more than this machine can address; use fewer blocks")]
    TooLarge { num_blocks: usize, block_size: usize, bytes: u128 },
    #[error("the CPU engine stores KV as f32, f16 or int8, not {0}: choose --kv-dtype f32, f16 or int8 ({0} is a simulator size for GPU presets)")]
    UnsupportedDtype(KvDtype),
}

/// `Ok` when the CPU engine stores `dtype`; the one check every command and
/// the storage itself run (bf16 and fp8 exist only as simulator sizes).
pub fn check_cpu_dtype(dtype: KvDtype) -> Result<(), KvStorageError> {
    if dtype.runs_on_cpu() {
        Ok(())
    } else {
        Err(KvStorageError::UnsupportedDtype(dtype))
    }
}

/// One of K or V for one layer: the stored values and, for int8, their
/// scales.
#[derive(Debug)]
pub enum KvPlane {
    F32(Vec<f32>),
    /// IEEE half bits.
    F16(Vec<half::f16>),
    /// `value ≈ q × scale[slot × kv_heads + head]`.
    Int8 {
        q: Vec<i8>,
        scale: Vec<f32>,
    },
}

impl KvPlane {
    fn zeroed(dtype: KvDtype, values: usize, heads: usize) -> Result<Self, KvStorageError> {
        Ok(match dtype {
            KvDtype::F32 => KvPlane::F32(vec![0.0; values]),
            KvDtype::F16 => KvPlane::F16(vec![half::f16::ZERO; values]),
            KvDtype::Int8 => KvPlane::Int8 { q: vec![0; values], scale: vec![0.0; heads] },
            other => return Err(KvStorageError::UnsupportedDtype(other)),
        })
    }

    /// Store one token's row (`kv_heads × head_dim` values) at `slot`.
    fn write(&mut self, slot: usize, row: &[f32], head_dim: usize) {
        let start = slot * row.len();
        match self {
            KvPlane::F32(v) => v[start..][..row.len()].copy_from_slice(row),
            KvPlane::F16(v) => {
                for (dst, &x) in v[start..][..row.len()].iter_mut().zip(row) {
                    *dst = half::f16::from_f32(x);
                }
            }
            KvPlane::Int8 { q, scale } => {
                let heads = row.len() / head_dim;
                let dst = q[start..][..row.len()].chunks_exact_mut(head_dim);
                for ((qh, xh), s) in dst.zip(row.chunks_exact(head_dim)).zip(&mut scale[slot * heads..][..heads]) {
                    *s = quantize_int8(xh, qh);
                }
            }
        }
    }

    /// Value `i` as attention sees it (dequantized); for tests and probes.
    pub fn value(&self, i: usize, head_dim: usize) -> f32 {
        match self {
            KvPlane::F32(v) => v[i],
            KvPlane::F16(v) => v[i].to_f32(),
            KvPlane::Int8 { q, scale } => q[i] as f32 * scale[i / head_dim],
        }
    }
}

/// K and V of one layer, made together in one format (private, so they
/// stay so; attention reads them through [`PagedKvCache::view`]).
#[derive(Debug)]
struct LayerKv {
    k: KvPlane,
    v: KvPlane,
}

#[derive(Debug)]
pub struct PagedKvCache {
    layers: Vec<LayerKv>,
    dtype: KvDtype,
    num_blocks: usize,
    block_size: usize,
    kv_dim: usize,
    head_dim: usize,
}

/// Bytes one token's K and V take across all layers when stored as `dtype`.
pub fn bytes_per_token(config: &ModelConfig, dtype: KvDtype) -> usize {
    dtype.bytes_per_token(config.n_layers, config.n_kv_heads, config.head_dim) as usize
}

/// How many blocks of `block_size` tokens of `dtype` fit in `bytes`.
pub fn num_blocks_for_memory(config: &ModelConfig, dtype: KvDtype, bytes: usize, block_size: usize) -> usize {
    bytes / (bytes_per_token(config, dtype) * block_size.max(1))
}

impl PagedKvCache {
    /// A zeroed pool of `num_blocks` blocks of `block_size` tokens stored as
    /// `dtype`. Pages are touched (and so become resident) only when KV is
    /// written into them.
    pub fn new(
        config: &ModelConfig,
        dtype: KvDtype,
        num_blocks: usize,
        block_size: usize,
    ) -> Result<Self, KvStorageError> {
        if block_size == 0 {
            return Err(KvStorageError::ZeroBlockSize);
        }
        check_cpu_dtype(dtype)?;
        let kv_dim = config.kv_dim();
        let slots = (num_blocks as u128) * (block_size as u128);
        let bytes = slots * bytes_per_token(config, dtype) as u128;
        if bytes > isize::MAX as u128 / 2 {
            return Err(KvStorageError::TooLarge { num_blocks, block_size, bytes });
        }
        let (values, heads) = (slots as usize * kv_dim, slots as usize * config.n_kv_heads);
        let layers = (0..config.n_layers)
            .map(|_| {
                Ok(LayerKv { k: KvPlane::zeroed(dtype, values, heads)?, v: KvPlane::zeroed(dtype, values, heads)? })
            })
            .collect::<Result<_, KvStorageError>>()?;
        Ok(PagedKvCache { layers, dtype, num_blocks, block_size, kv_dim, head_dim: config.head_dim })
    }

    pub fn dtype(&self) -> KvDtype {
        self.dtype
    }

    pub fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Values per token per layer in K (and in V).
    pub fn kv_dim(&self) -> usize {
        self.kv_dim
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Bytes one token takes here: what the allocation holds, divided by
    /// the slots (scales included).
    pub fn bytes_per_token(&self) -> usize {
        let per_plane = |p: &KvPlane| match p {
            KvPlane::F32(v) => v.len() * 4,
            KvPlane::F16(v) => v.len() * 2,
            KvPlane::Int8 { q, scale } => q.len() + scale.len() * 4,
        };
        let total: usize = self.layers.iter().map(|l| per_plane(&l.k) + per_plane(&l.v)).sum();
        total / (self.num_blocks * self.block_size).max(1)
    }

    pub fn bytes_per_block(&self) -> usize {
        self.bytes_per_token() * self.block_size
    }

    pub fn total_bytes(&self) -> usize {
        self.bytes_per_block() * self.num_blocks
    }

    /// The slot of position `pos` under `block_table`, if the table covers it
    /// and names a block of this pool.
    pub fn slot(&self, block_table: &[usize], pos: usize) -> Option<usize> {
        let block = *block_table.get(pos / self.block_size)?;
        (block < self.num_blocks).then(|| block * self.block_size + pos % self.block_size)
    }

    /// Layer `i`'s K and V as attention reads them.
    pub fn view(&self, i: usize) -> KvView<'_> {
        let planes = match &self.layers[i] {
            LayerKv { k: KvPlane::F32(k), v: KvPlane::F32(v) } => {
                KvPlanes::F32 { k: Plane { values: k, scales: &[] }, v: Plane { values: v, scales: &[] } }
            }
            LayerKv { k: KvPlane::F16(k), v: KvPlane::F16(v) } => {
                KvPlanes::F16 { k: Plane { values: k, scales: &[] }, v: Plane { values: v, scales: &[] } }
            }
            LayerKv { k: KvPlane::Int8 { q: kq, scale: ks }, v: KvPlane::Int8 { q: vq, scale: vs } } => {
                KvPlanes::Int8 { k: Plane { values: kq, scales: ks }, v: Plane { values: vq, scales: vs } }
            }
            _ => unreachable!("K and V of a layer are made in one format"),
        };
        KvView { planes, block_size: self.block_size }
    }

    /// Write one token's K and V rows (`kv_dim` wide) into `slot` of
    /// `layer`, converting them to the pool's format.
    pub fn write(&mut self, layer: usize, slot: usize, k: &[f32], v: &[f32]) {
        assert!(k.len() == self.kv_dim && v.len() == self.kv_dim);
        let hd = self.head_dim;
        let l = &mut self.layers[layer];
        l.k.write(slot, k, hd);
        l.v.write(slot, v, hd);
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
    fn sizes_follow_layers_heads_and_dtype() {
        let c = smollm_like();
        // 2 (K, V) × 30 layers × 3 heads × 64 dims × 4 bytes
        assert_eq!(bytes_per_token(&c, KvDtype::F32), 46_080);
        // what the allocation holds agrees with core's sizing, per dtype
        for (dtype, per_token) in [(KvDtype::F32, 46_080), (KvDtype::F16, 23_040), (KvDtype::Int8, 12_240)] {
            let kv = PagedKvCache::new(&c, dtype, 10, 16).unwrap();
            assert_eq!(bytes_per_token(&c, dtype), per_token, "{dtype}");
            assert_eq!(kv.bytes_per_token(), per_token, "{dtype}");
            assert_eq!(kv.bytes_per_block(), per_token * 16);
            assert_eq!(kv.total_bytes(), per_token * 16 * 10);
            assert_eq!(num_blocks_for_memory(&c, dtype, kv.total_bytes() + 5, 16), 10);
            assert_eq!(num_blocks_for_memory(&c, dtype, kv.total_bytes() - 1, 16), 9);
        }
    }

    #[test]
    fn formats_round_trip_within_their_precision() {
        let c = smollm_like();
        let k: Vec<f32> = (0..192).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
        let v: Vec<f32> = k.iter().map(|x| -x * 0.5).collect();
        for dtype in KvDtype::CPU {
            let mut kv = PagedKvCache::new(&c, dtype, 2, 4).unwrap();
            kv.write(3, 5, &k, &v);
            for (i, &x) in k.iter().enumerate() {
                let got = kv.layers[3].k.value(5 * 192 + i, 64);
                let head_max = k[i / 64 * 64..][..64].iter().fold(0f32, |m, y| m.max(y.abs()));
                let tol = match dtype {
                    KvDtype::F32 => 0.0,
                    KvDtype::F16 => x.abs() * 2f32.powi(-11),
                    _ => head_max / 127.0 / 2.0 * 1.0001,
                };
                assert!((got - x).abs() <= tol, "{dtype} value {i}: {got} vs {x}");
            }
            // other slots and layers untouched
            assert_eq!(kv.layers[3].k.value(4 * 192, 64), 0.0);
            assert_eq!(kv.layers[2].v.value(5 * 192, 64), 0.0);
        }
    }

    #[test]
    fn int8_scales_each_head_by_its_own_largest_value() {
        let mut q = [0i8; 4];
        let d = quantize_int8(&[0.5, -1.27, 0.01, 0.0], &mut q);
        assert_eq!(d, 0.01);
        assert_eq!(q, [50, -127, 1, 0]);
        assert_eq!(quantize_int8(&[0.0; 4], &mut q), 0.0);
        assert_eq!(q, [0; 4]);
    }

    #[test]
    fn slots_follow_the_block_table() {
        let mut kv = PagedKvCache::new(&smollm_like(), KvDtype::F32, 4, 2).unwrap();
        let table = [3usize, 1];
        assert_eq!(kv.slot(&table, 0), Some(6));
        assert_eq!(kv.slot(&table, 3), Some(3));
        assert_eq!(kv.slot(&table, 4), None);
        assert_eq!(kv.slot(&[9], 0), None);
        let k = vec![1.0; 192];
        let v = vec![2.0; 192];
        kv.write(5, 3, &k, &v);
        assert!((0..192).all(|i| kv.layers[5].k.value(3 * 192 + i, 64) == 1.0));
        assert_eq!(kv.layers[5].v.value(3 * 192, 64), 2.0);
    }

    #[test]
    fn bad_sizes_are_errors() {
        let c = smollm_like();
        assert_eq!(PagedKvCache::new(&c, KvDtype::F32, 1, 0).unwrap_err(), KvStorageError::ZeroBlockSize);
        assert!(matches!(
            PagedKvCache::new(&c, KvDtype::Int8, usize::MAX / 4, 16),
            Err(KvStorageError::TooLarge { .. })
        ));
        let err = PagedKvCache::new(&c, KvDtype::Fp8, 1, 16).unwrap_err();
        assert_eq!(err, KvStorageError::UnsupportedDtype(KvDtype::Fp8));
        assert!(err.to_string().contains("--kv-dtype"));
    }
}
