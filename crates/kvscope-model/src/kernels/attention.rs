//! Causal attention read through block tables (paged attention on CPU).
//!
//! A query at position `p` attends to keys `0..=p` of its own sequence,
//! visited in position order through the block table: position `j` lives in
//! slot `table[j / block_size] * block_size + j % block_size`. The scores,
//! the softmax sum and the weighted sum over values all run in that order,
//! so the result depends only on the sequence's KV contents — not on what
//! else is batched, how the prompt was chunked, or whether the prefix blocks
//! were computed now or reused from an earlier request.

use super::simd;
use super::SendPtr;
use rayon::prelude::*;

/// One layer's paged K and V: `[num_blocks * block_size, kv_heads * head_dim]`.
#[derive(Clone, Copy)]
pub struct KvView<'a> {
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub block_size: usize,
}

/// A query row's context: its position and its sequence's block table
/// (block indices into the pool).
#[derive(Clone, Copy)]
pub struct QueryCtx<'a> {
    pub pos: usize,
    pub block_table: &'a [usize],
}

#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

/// `out[t][h]` = softmax(q[t][h] · Kᵀ / sqrt(d)) · V over the context of
/// query `t`, with query head `h` reading KV head `h / (n_heads / n_kv_heads)`.
/// `q` and `out` are `[queries.len(), n_heads * head_dim]`.
pub fn paged_attention(q: &[f32], queries: &[QueryCtx], kv: KvView, heads: Heads, out: &mut [f32]) {
    let Heads { n_heads, n_kv_heads, head_dim: hd } = heads;
    let width = n_heads * hd;
    let kv_width = n_kv_heads * hd;
    assert!(q.len() == queries.len() * width && out.len() == q.len());
    let group = n_heads / n_kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let op = SendPtr(out.as_mut_ptr());
    (0..queries.len() * n_heads).into_par_iter().for_each_init(Vec::new, |scores: &mut Vec<f32>, task| {
        let (t, h) = (task / n_heads, task % n_heads);
        let ctx = queries[t];
        let qh = &q[t * width + h * hd..][..hd];
        let kv_off = (h / group) * hd;
        let slot = |j: usize| ctx.block_table[j / kv.block_size] * kv.block_size + j % kv.block_size;

        scores.clear();
        for j in 0..=ctx.pos {
            let kj = &kv.k[slot(j) * kv_width + kv_off..][..hd];
            scores.push(simd::dot(qh, kj) * scale);
        }
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        // SAFETY: each task owns the disjoint head slice out[t][h].
        let o = unsafe { std::slice::from_raw_parts_mut(op.get().add(t * width + h * hd), hd) };
        o.fill(0.0);
        for (j, &p) in scores.iter().enumerate() {
            simd::axpy(o, p, &kv.v[slot(j) * kv_width + kv_off..][..hd]);
        }
        let inv = 1.0 / sum;
        for x in o.iter_mut() {
            *x *= inv;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 997) as f32 / 498.0 - 1.0).collect()
    }

    /// Plain causal attention over contiguous K/V, in f64.
    fn reference(q: &[f32], k: &[f32], v: &[f32], pos: usize, heads: Heads) -> Vec<f32> {
        let Heads { n_heads, n_kv_heads, head_dim: hd } = heads;
        let mut out = vec![0f32; n_heads * hd];
        for h in 0..n_heads {
            let kh = h / (n_heads / n_kv_heads);
            let s: Vec<f64> = (0..=pos)
                .map(|j| (0..hd).map(|d| q[h * hd + d] as f64 * k[j * n_kv_heads * hd + kh * hd + d] as f64).sum::<f64>() / (hd as f64).sqrt())
                .collect();
            let m = s.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for d in 0..hd {
                out[h * hd + d] = ((0..=pos).map(|j| e[j] * v[j * n_kv_heads * hd + kh * hd + d] as f64).sum::<f64>() / z) as f32;
            }
        }
        out
    }

    #[test]
    fn paged_reads_equal_contiguous_attention_with_gqa() {
        let heads = Heads { n_heads: 6, n_kv_heads: 2, head_dim: 8 };
        let (bs, len) = (4, 11);
        let kvw = heads.n_kv_heads * heads.head_dim;
        // the sequence's 3 blocks are scattered in a pool of 8
        let table = [5usize, 0, 6];
        let k_seq = data(len * kvw, 1);
        let v_seq = data(len * kvw, 2);
        let mut k_pool = vec![f32::NAN; 8 * bs * kvw];
        let mut v_pool = vec![f32::NAN; 8 * bs * kvw];
        for j in 0..len {
            let s = table[j / bs] * bs + j % bs;
            k_pool[s * kvw..][..kvw].copy_from_slice(&k_seq[j * kvw..][..kvw]);
            v_pool[s * kvw..][..kvw].copy_from_slice(&v_seq[j * kvw..][..kvw]);
        }
        let width = heads.n_heads * heads.head_dim;
        let q = data(len * width, 3);
        let queries: Vec<QueryCtx> = (0..len).map(|pos| QueryCtx { pos, block_table: &table }).collect();
        let mut out = vec![0f32; len * width];
        paged_attention(&q, &queries, KvView { k: &k_pool, v: &v_pool, block_size: bs }, heads, &mut out);
        for pos in 0..len {
            let want = reference(&q[pos * width..][..width], &k_seq, &v_seq, pos, heads);
            for (a, b) in out[pos * width..][..width].iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "pos {pos}: {a} vs {b}");
            }
        }
        // one query alone gives the same bits as inside the batch
        let mut one = vec![0f32; width];
        paged_attention(&q[7 * width..][..width], &queries[7..8], KvView { k: &k_pool, v: &v_pool, block_size: bs }, heads, &mut one);
        assert_eq!(one, out[7 * width..][..width]);
    }
}
