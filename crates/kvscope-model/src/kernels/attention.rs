//! Causal attention read through block tables (paged attention on CPU).
//!
//! A query at position `p` attends to keys `0..=p` of its own sequence,
//! visited in position order through the block table: position `j` lives in
//! slot `table[j / block_size] * block_size + j % block_size`. The scores,
//! the softmax sum and the weighted sum over values all run in that order,
//! so the result depends only on the sequence's KV contents — not on what
//! else is batched, how the prompt was chunked, or whether the prefix blocks
//! were computed now or reused from an earlier request.

use super::kv_elem::{KvElem, Plane};
use super::simd;
use super::SendPtr;
use rayon::prelude::*;

/// One layer's paged K and V, `[num_blocks * block_size, kv_heads * head_dim]`
/// values in the pool's format.
#[derive(Clone, Copy)]
pub struct KvView<'a> {
    pub planes: KvPlanes<'a>,
    pub block_size: usize,
}

/// K and V planes of one format.
#[derive(Clone, Copy)]
pub enum KvPlanes<'a> {
    F32 { k: Plane<'a, f32>, v: Plane<'a, f32> },
    F16 { k: Plane<'a, half::f16>, v: Plane<'a, half::f16> },
    Int8 { k: Plane<'a, i8>, v: Plane<'a, i8> },
}

impl<'a> KvView<'a> {
    /// Plain f32 planes without scales.
    pub fn f32(k: &'a [f32], v: &'a [f32], block_size: usize) -> Self {
        KvView {
            planes: KvPlanes::F32 { k: Plane { values: k, scales: &[] }, v: Plane { values: v, scales: &[] } },
            block_size,
        }
    }
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

/// Longest head the scalar path widens on the stack.
const MAX_HEAD_DIM: usize = 512;

/// `out[t][h]` = softmax(q[t][h] · Kᵀ / sqrt(d)) · V over the context of
/// query `t`, with query head `h` reading KV head `h / (n_heads / n_kv_heads)`.
/// `q` and `out` are `[queries.len(), n_heads * head_dim]`.
///
/// One task handles one query and one KV head with all the query heads that
/// share it, so each key and value row is read once per group. Within a task
/// each head's scores, softmax and weighted sum run in position order.
pub fn paged_attention(q: &[f32], queries: &[QueryCtx], kv: KvView, heads: Heads, out: &mut [f32]) {
    match kv.planes {
        KvPlanes::F32 { k, v } => attend(q, queries, k, v, kv.block_size, heads, out),
        KvPlanes::F16 { k, v } => attend(q, queries, k, v, kv.block_size, heads, out),
        KvPlanes::Int8 { k, v } => attend(q, queries, k, v, kv.block_size, heads, out),
    }
}

fn attend<E: KvElem>(
    q: &[f32],
    queries: &[QueryCtx],
    k: Plane<E>,
    v: Plane<E>,
    block_size: usize,
    heads: Heads,
    out: &mut [f32],
) {
    let Heads { n_heads, n_kv_heads, head_dim: hd } = heads;
    let width = n_heads * hd;
    assert!(q.len() == queries.len() * width && out.len() == q.len());
    let group = n_heads / n_kv_heads;
    assert!(group <= MAX_GROUP, "more than {MAX_GROUP} query heads per KV head");
    assert!(hd <= MAX_HEAD_DIM, "head_dim above {MAX_HEAD_DIM}");
    let op = SendPtr(out.as_mut_ptr());
    let isa = simd::isa();
    // A query alone in the batch with its block table (a decode) reads a
    // context nothing else brings into cache, so it prefetches; a prefill
    // chunk's queries share one table (the same slice), and the first of
    // them to run leaves it cached for the rest.
    let shares = |a: usize, b: usize| std::ptr::eq(queries[a].block_table, queries[b].block_table);
    let alone = |t: usize| {
        let with_previous = t > 0 && shares(t - 1, t);
        let with_next = t + 1 < queries.len() && shares(t, t + 1);
        !(with_previous || with_next)
    };
    (0..queries.len() * n_kv_heads).into_par_iter().for_each_init(Vec::new, |scores: &mut Vec<f32>, task| {
        let (t, g) = (task / n_kv_heads, task % n_kv_heads);
        let ctx = queries[t];
        let qg = &q[t * width + g * group * hd..][..group * hd];
        // SAFETY: each task owns the disjoint slice out[t][heads of group g].
        let og = unsafe { std::slice::from_raw_parts_mut(op.get().add(t * width + g * group * hd), group * hd) };
        let rows = Rows { block_size, kv_width: n_kv_heads * hd, kv_off: g * hd, n_kv_heads, g, prefetch: alone(t) };
        let job = GroupJob { q: qg, out: og, ctx, k, v, rows, group, hd };
        match isa {
            // SAFETY: simd::isa() chose Avx512, so avx512f is present; validate() checked the block tables.
            #[cfg(target_arch = "x86_64")]
            simd::Isa::Avx512 => unsafe { job.run_avx512_dispatch(scores) },
            // SAFETY: simd::isa() chose Avx2, so avx2, fma and f16c are present.
            #[cfg(target_arch = "x86_64")]
            simd::Isa::Avx2 => unsafe { job.run_avx2(scores) },
            _ => job.run(scores),
        }
    });
}

/// How many blocks ahead a decode query prefetches: one block of rows is
/// too little work to hide a miss to memory (16 × 1,024-token decode: 1
/// ahead 660–680 tok/s, 3 ahead 715–727, 4 ahead 701–731, 6 ahead 692–711).
const PREFETCH_AHEAD: usize = 3;

/// Where one KV head's rows of a sequence live.
#[derive(Clone, Copy)]
struct Rows {
    block_size: usize,
    /// Values per slot (all KV heads).
    kv_width: usize,
    /// This head's first value within a slot.
    kv_off: usize,
    n_kv_heads: usize,
    /// This KV head.
    g: usize,
    /// Whether to prefetch the rows of blocks ahead (see `attend`).
    prefetch: bool,
}

impl Rows {
    /// Calls `f(j, value_offset, scale_index)` for the row of each position
    /// `j` in `0..=ctx.pos`, in position order, reading `plane`.
    ///
    /// With `prefetch`, this head's rows of the block `PREFETCH_AHEAD`
    /// further on are prefetched before a block's rows: a sequence's blocks
    /// lie anywhere in the pool, and the hardware prefetcher follows address
    /// streams, not block tables (a decode at 1,536 tokens over scattered
    /// blocks took 1.6× as long without it). Prefetching changes no value.
    #[inline(always)]
    fn for_each<E: KvElem>(self, ctx: QueryCtx, plane: &Plane<E>, mut f: impl FnMut(usize, usize, usize)) {
        let n = ctx.pos + 1;
        let mut j = 0;
        for (b, &block) in ctx.block_table.iter().enumerate() {
            if self.prefetch {
                // The first block asks for the next few, every later one
                // for the block that far ahead.
                let first = if b == 0 { 1 } else { b + PREFETCH_AHEAD };
                for ahead in first..=b + PREFETCH_AHEAD {
                    match ctx.block_table.get(ahead) {
                        Some(&next) if ahead * self.block_size < n => self.prefetch_block(plane, next),
                        _ => break,
                    }
                }
            }
            let base = block * self.block_size;
            for s in 0..self.block_size.min(n - j) {
                let slot = base + s;
                f(j, slot * self.kv_width + self.kv_off, slot * self.n_kv_heads + self.g);
                j += 1;
            }
            if j == n {
                break;
            }
        }
    }

    /// Asks for this head's rows of `block` in `plane` to be brought into
    /// cache.
    #[inline(always)]
    fn prefetch_block<E: KvElem>(self, plane: &Plane<E>, block: usize) {
        let row_bytes = self.head_dim_bytes::<E>();
        for s in 0..self.block_size {
            let offset = (block * self.block_size + s) * self.kv_width + self.kv_off;
            let row = plane.values.as_ptr().wrapping_add(offset).cast::<u8>();
            // Every line the row touches, also the last one of a row that
            // does not start on a line boundary.
            for line in (0..row_bytes).step_by(64) {
                prefetch(row.wrapping_add(line));
            }
            prefetch(row.wrapping_add(row_bytes - 1));
        }
    }

    /// Bytes of one head's row (`kv_width / n_kv_heads` values).
    #[inline(always)]
    fn head_dim_bytes<E>(self) -> usize {
        self.kv_width / self.n_kv_heads * std::mem::size_of::<E>()
    }
}

/// A hint that the cache line at `p` will be read soon; never faults.
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints the cache; it never dereferences `p`
    // (an address outside any mapping is ignored), and SSE is part of the
    // x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// A key's score before the 1/sqrt(d) factor: the dot product with the
/// stored row, times the row's scale for int8. Every path uses this.
#[inline(always)]
fn key_score<E: KvElem>(dot: f32, k: &Plane<E>, scale_index: usize) -> f32 {
    if E::SCALED {
        dot * k.scale(scale_index)
    } else {
        dot
    }
}

/// A value row's weight: the softmax numerator, times the row's scale for
/// int8. Every path uses this.
#[inline(always)]
fn value_weight<E: KvElem>(p: f32, v: &Plane<E>, scale_index: usize) -> f32 {
    if E::SCALED {
        p * v.scale(scale_index)
    } else {
        p
    }
}

/// Softmax of each head's row of `scores` (`n` wide) in place
/// (`softmax::softmax_row`); returns each row's sum for the final division.
#[inline(always)]
fn softmax_rows(isa: simd::Isa, scores: &mut [f32], n: usize, sums: &mut [f32]) {
    for (row, sum) in scores.chunks_mut(n).zip(sums.iter_mut()) {
        *sum = super::softmax::softmax_row(isa, row);
    }
}

#[inline(always)]
fn divide_by_sums(out: &mut [f32], sums: &[f32], hd: usize) {
    for (o, &sum) in out.chunks_mut(hd).zip(sums) {
        let inv = 1.0 / sum;
        for x in o.iter_mut() {
            *x *= inv;
        }
    }
}

/// Most query heads one KV head serves (GQA group) on the stack.
const MAX_GROUP: usize = 16;

/// One query's attention for the heads of one KV group.
struct GroupJob<'a, E> {
    q: &'a [f32],
    out: &'a mut [f32],
    ctx: QueryCtx<'a>,
    k: Plane<'a, E>,
    v: Plane<'a, E>,
    rows: Rows,
    group: usize,
    hd: usize,
}

/// The general kernel's body, written once and expanded in `GroupJob::run`
/// and `GroupJob::run_avx512` with the `dot` and `axpy` each passes (the
/// dispatching ones, the AVX-512 ones: the same functions, so the same
/// bits). A macro, not a generic function: expanded inside the
/// `#[target_feature]` function, its closures are compiled for AVX-512 too,
/// and the AVX-512 `dot` and `axpy` inline into them.
macro_rules! group_attention {
    (@widen plain, $row:expr, $buf:expr) => {
        E::widen($row, $buf)
    };
    (@widen avx2, $row:expr, $buf:expr) => {
        // SAFETY: expanded only in `run_avx2`, whose contract is avx2 and f16c.
        unsafe { E::widen_avx2($row, $buf) }
    };
    ($job:expr, $scores:expr, $dot:expr, $axpy:expr) => {
        group_attention!($job, $scores, $dot, $axpy, plain)
    };
    ($job:expr, $scores:expr, $dot:expr, $axpy:expr, $widen:ident) => {{
        let (dot, axpy, scores): (_, _, &mut Vec<f32>) = ($dot, $axpy, $scores);
        let GroupJob { q, out, ctx, k, v, rows, group, hd } = $job;
        let n = ctx.pos + 1;
        let scale = 1.0 / (hd as f32).sqrt();
        let mut buf = [0f32; MAX_HEAD_DIM];
        scores.clear();
        scores.resize(group * n, 0.0);
        rows.for_each(ctx, &k, |j, off, si| {
            let kr = group_attention!(@widen $widen, &k.values[off..][..hd], &mut buf);
            for h in 0..group {
                scores[h * n + j] = key_score(dot(&q[h * hd..][..hd], kr), &k, si) * scale;
            }
        });
        let mut sums = [0f32; MAX_GROUP];
        softmax_rows(simd::isa(), scores, n, &mut sums[..group]);
        out.fill(0.0);
        rows.for_each(ctx, &v, |j, off, si| {
            let vr = group_attention!(@widen $widen, &v.values[off..][..hd], &mut buf);
            for h in 0..group {
                axpy(&mut out[h * hd..][..hd], value_weight(scores[h * n + j], &v, si), vr);
            }
        });
        divide_by_sums(out, &sums[..group], hd);
    }};
}

/// The value half of `GroupJob::run_avx2_rows` for `G` heads of `8 · H8`
/// values: `P` 8-lane chunks of every head's output per pass over the
/// values, accumulated in registers, then divided by the softmax sums.
/// Each output lane is the same chain of FMAs over positions in order as
/// `simd::avx2::axpy` computes from zero, so the same bits.
///
/// # Safety
/// The CPU must support avx2, fma and f16c; `out` and `scores` hold `G`
/// heads (`G · 8 · H8` values, `G · n` scores); every row `rows` visits
/// lies inside `v` (checked by the caller).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn values_in_registers<E: KvElem, const H8: usize, const G: usize, const P: usize>(
    rows: Rows,
    ctx: QueryCtx,
    v: &Plane<E>,
    scores: &[f32],
    out: &mut [f32],
    sums: &[f32],
) {
    use std::arch::x86_64::*;
    let (hd, n) = (H8 * 8, ctx.pos + 1);
    debug_assert!(out.len() >= G * hd && scores.len() >= G * n && sums.len() >= G);
    let vp = v.values.as_ptr();
    for first in (0..H8).step_by(P) {
        let mut acc = [[_mm256_setzero_ps(); P]; G];
        rows.for_each(ctx, v, |j, off, si| {
            let mut vr = [_mm256_setzero_ps(); P];
            for (c, r) in vr.iter_mut().enumerate() {
                *r = E::load8(vp.add(off + (first + c) * 8));
            }
            for (h, acc) in acc.iter_mut().enumerate() {
                let p = _mm256_set1_ps(value_weight(*scores.get_unchecked(h * n + j), v, si));
                for c in 0..P {
                    acc[c] = _mm256_fmadd_ps(p, vr[c], acc[c]);
                }
            }
        });
        for (h, acc) in acc.iter().enumerate() {
            let inv = _mm256_set1_ps(1.0 / sums[h]);
            for (c, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(out.as_mut_ptr().add(h * hd + (first + c) * 8), _mm256_mul_ps(*a, inv));
            }
        }
    }
}

impl<E: KvElem> GroupJob<'_, E> {
    fn run(self, scores: &mut Vec<f32>) {
        group_attention!(self, scores, simd::dot, simd::axpy)
    }

    /// Common GQA shapes get a kernel that keeps the group's queries and
    /// outputs in registers; it performs the same FMAs in the same order as
    /// `run_avx512`, so which one runs never changes a value.
    ///
    /// # Safety
    /// The CPU must support avx512f; the job's block table covers its position and lies inside the pool.
    #[cfg(target_arch = "x86_64")]
    unsafe fn run_avx512_dispatch(self, scores: &mut Vec<f32>) {
        macro_rules! shapes {
            ($(($g:literal, $hd:literal)),*) => {
                match (self.group, self.hd) {
                    $( ($g, $hd) => self.run_avx512_regs::<$g, { $hd / 16 }>(scores), )*
                    _ => self.run_avx512(scores),
                }
            };
        }
        shapes!((1, 64), (2, 64), (3, 64), (4, 64), (1, 128), (2, 128))
    }

    /// # Safety
    /// As `run_avx512_dispatch`, with `group == G` and `hd == 16 · CH`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn run_avx512_regs<const G: usize, const CH: usize>(self, scores: &mut Vec<f32>) {
        use super::simd::avx512;
        use std::arch::x86_64::*;
        let GroupJob { q, out, ctx, k, v, rows, group, hd } = self;
        debug_assert!(group == G && hd == CH * 16);
        let n = ctx.pos + 1;
        let scale = 1.0 / (hd as f32).sqrt();
        scores.clear();
        scores.resize(G * n, 0.0);
        let mut qr = [[_mm512_setzero_ps(); CH]; G];
        for h in 0..G {
            for c in 0..CH {
                qr[h][c] = _mm512_loadu_ps(q.as_ptr().add(h * hd + c * 16));
            }
        }
        let (kp, vp) = (k.values.as_ptr(), v.values.as_ptr());
        // The unchecked loads below stay inside K and V because every block
        // this query reads lies inside the pool.
        let used = &ctx.block_table[..n.div_ceil(rows.block_size)];
        let end = used.iter().map(|&b| (b + 1) * rows.block_size * rows.kv_width).max().unwrap_or(0);
        assert!(end <= k.values.len() && end <= v.values.len() && rows.kv_off + hd <= rows.kv_width);
        rows.for_each(ctx, &k, |j, off, si| {
            let mut kr = [_mm512_setzero_ps(); CH];
            for c in 0..CH {
                kr[c] = E::load16(kp.add(off + c * 16));
            }
            for h in 0..G {
                let mut acc = _mm512_setzero_ps();
                for c in 0..CH {
                    acc = _mm512_fmadd_ps(qr[h][c], kr[c], acc);
                }
                *scores.get_unchecked_mut(h * n + j) = key_score(avx512::hsum(acc), &k, si) * scale;
            }
        });
        let mut sums = [0f32; MAX_GROUP];
        softmax_rows(simd::Isa::Avx512, scores, n, &mut sums[..G]);
        let mut acc = [[_mm512_setzero_ps(); CH]; G];
        rows.for_each(ctx, &v, |j, off, si| {
            let mut vr = [_mm512_setzero_ps(); CH];
            for c in 0..CH {
                vr[c] = E::load16(vp.add(off + c * 16));
            }
            for h in 0..G {
                let p = _mm512_set1_ps(value_weight(*scores.get_unchecked(h * n + j), &v, si));
                for c in 0..CH {
                    acc[h][c] = _mm512_fmadd_ps(p, vr[c], acc[h][c]);
                }
            }
        });
        for h in 0..G {
            let inv = _mm512_set1_ps(1.0 / sums[h]);
            for c in 0..CH {
                _mm512_storeu_ps(out.as_mut_ptr().add(h * hd + c * 16), _mm512_mul_ps(acc[h][c], inv));
            }
        }
    }

    /// `run` with the AVX2 dot and axpy inlined and stored values widened
    /// eight at a time (`KvElem::widen_avx2`): the same FMAs in the same
    /// order as every other path (`simd::avx2` keeps the 16-lane
    /// accumulator as two halves), so the same bits.
    ///
    /// # Safety
    /// The CPU must support avx2, fma and f16c; the job's block table covers
    /// its position and lies inside the pool.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn run_avx2(self, scores: &mut Vec<f32>) {
        use super::simd::avx2;
        // Groups of up to 4 heads keep their outputs in registers
        // (`values_in_registers`); larger ones take the general kernel.
        match (self.hd, self.group <= 4) {
            (64, true) => return self.run_avx2_rows::<8>(scores),
            (128, true) => return self.run_avx2_rows::<16>(scores),
            _ => {}
        }
        group_attention!(
            self,
            scores,
            // SAFETY: avx2 and fma are present (this function's contract);
            // the kernel passes slices of equal length (`hd`).
            |a: &[f32], b: &[f32]| unsafe { avx2::dot(a, b) },
            // SAFETY: as above.
            |y: &mut [f32], alpha: f32, x: &[f32]| unsafe { avx2::axpy(y, alpha, x) },
            avx2
        )
    }

    /// `run_avx2` for heads of `8 · H8` values, with each key and value row
    /// widened once into registers (the general kernel stores it to a
    /// buffer and reads it back for every head: 13 % of a 512-token f16
    /// prefill). Each score is `avx2::dot`'s two half accumulators fed in
    /// the same order, each output `avx2::axpy`'s FMA, so the same bits.
    ///
    /// # Safety
    /// As `run_avx2`, with `hd == 8 · H8`, `H8` even and `group ≤ 4`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn run_avx2_rows<const H8: usize>(self, scores: &mut Vec<f32>) {
        use super::simd::avx2;
        use std::arch::x86_64::*;
        let GroupJob { q, out, ctx, k, v, rows, group, hd } = self;
        debug_assert!(hd == H8 * 8 && H8.is_multiple_of(2));
        let n = ctx.pos + 1;
        let scale = 1.0 / (hd as f32).sqrt();
        scores.clear();
        scores.resize(group * n, 0.0);
        let (kp, qp) = (k.values.as_ptr(), q.as_ptr());
        // The unchecked loads below stay inside K and V because every block
        // this query reads lies inside the pool.
        let used = &ctx.block_table[..n.div_ceil(rows.block_size)];
        let end = used.iter().map(|&b| (b + 1) * rows.block_size * rows.kv_width).max().unwrap_or(0);
        assert!(end <= k.values.len() && end <= v.values.len() && rows.kv_off + hd <= rows.kv_width);
        assert!(q.len() >= group * hd && out.len() >= group * hd);
        rows.for_each(ctx, &k, |j, off, si| {
            let mut kr = [_mm256_setzero_ps(); H8];
            for (c, r) in kr.iter_mut().enumerate() {
                *r = E::load8(kp.add(off + c * 8));
            }
            for h in 0..group {
                let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                for c in 0..H8 / 2 {
                    lo = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(h * hd + c * 16)), kr[2 * c], lo);
                    hi = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(h * hd + c * 16 + 8)), kr[2 * c + 1], hi);
                }
                *scores.get_unchecked_mut(h * n + j) = key_score(avx2::hsum(lo, hi), &k, si) * scale;
            }
        });
        let mut sums = [0f32; MAX_GROUP];
        softmax_rows(simd::Isa::Avx2, scores, n, &mut sums[..group]);
        // The outputs stay in registers, a few 8-lane chunks of each head
        // per pass over the values (accumulators, values and the weight fit
        // the 16 ymm registers); `run_avx2` sends only groups of ≤ 4 here.
        match group {
            1 => values_in_registers::<E, H8, 1, 4>(rows, ctx, &v, scores, out, &sums),
            2 => values_in_registers::<E, H8, 2, 4>(rows, ctx, &v, scores, out, &sums),
            3 => values_in_registers::<E, H8, 3, 2>(rows, ctx, &v, scores, out, &sums),
            4 => values_in_registers::<E, H8, 4, 2>(rows, ctx, &v, scores, out, &sums),
            _ => unreachable!("run_avx2 sends groups of at most 4 heads"),
        }
    }

    /// `run` with the AVX-512 dot and axpy inlined (they are
    /// `simd::avx512::{dot, axpy}`, so the values are the same bits).
    ///
    /// # Safety
    /// As `run_avx512_dispatch`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn run_avx512(self, scores: &mut Vec<f32>) {
        use super::simd::avx512;
        group_attention!(
            self,
            scores,
            // SAFETY: avx512f is present (this function's contract); the
            // kernel passes slices of equal length (`hd`).
            |a: &[f32], b: &[f32]| unsafe { avx512::dot(a, b) },
            // SAFETY: as above.
            |y: &mut [f32], alpha: f32, x: &[f32]| unsafe { avx512::axpy(y, alpha, x) }
        )
    }
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
                .map(|j| {
                    (0..hd).map(|d| q[h * hd + d] as f64 * k[j * n_kv_heads * hd + kh * hd + d] as f64).sum::<f64>()
                        / (hd as f64).sqrt()
                })
                .collect();
            let m = s.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for d in 0..hd {
                out[h * hd + d] =
                    ((0..=pos).map(|j| e[j] * v[j * n_kv_heads * hd + kh * hd + d] as f64).sum::<f64>() / z) as f32;
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
        paged_attention(&q, &queries, KvView::f32(&k_pool, &v_pool, bs), heads, &mut out);
        for pos in 0..len {
            let want = reference(&q[pos * width..][..width], &k_seq, &v_seq, pos, heads);
            for (a, b) in out[pos * width..][..width].iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "pos {pos}: {a} vs {b}");
            }
        }
        // one query alone gives the same bits as inside the batch (generic path)
        let mut one = vec![0f32; width];
        paged_attention(&q[7 * width..][..width], &queries[7..8], KvView::f32(&k_pool, &v_pool, bs), heads, &mut one);
        assert_eq!(one, out[7 * width..][..width]);
    }

    /// The general kernel's paths a test can call on this CPU.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Path {
        /// `GroupJob::run` (the process's `simd::dot`/`axpy`, plain widening).
        Generic,
        Avx2,
        Avx512,
    }

    fn paths() -> Vec<Path> {
        let mut paths = vec![Path::Generic];
        if simd::available(simd::Isa::Avx2) {
            paths.push(Path::Avx2);
        }
        if simd::available(simd::Isa::Avx512) {
            paths.push(Path::Avx512);
        }
        paths
    }

    /// Checks one stored format: `attend` (with the register kernels where
    /// the process runs AVX-512) equals the general kernel on every path
    /// this CPU has, bit for bit, and all equal plain attention over the
    /// dequantized values (`kd`, `vd`), so the scales are applied right.
    #[allow(clippy::too_many_arguments)]
    fn check_format<E: KvElem>(
        k: Plane<E>,
        v: Plane<E>,
        kd: &[f32],
        vd: &[f32],
        heads: Heads,
        table: &[usize],
        bs: usize,
        len: usize,
    ) {
        let kvw = heads.n_kv_heads * heads.head_dim;
        let width = heads.n_heads * heads.head_dim;
        let q = data(len * width, 7);
        let queries: Vec<QueryCtx> = (0..len).map(|pos| QueryCtx { pos, block_table: table }).collect();
        let mut fast = vec![0f32; len * width];
        attend(&q, &queries, k, v, bs, heads, &mut fast);
        let group = heads.n_heads / heads.n_kv_heads;
        let hd = heads.head_dim;
        for path in paths() {
            let mut general = vec![0f32; len * width];
            for (t, ctx) in queries.iter().enumerate() {
                for g in 0..heads.n_kv_heads {
                    let job = GroupJob {
                        q: &q[t * width + g * group * hd..][..group * hd],
                        out: &mut general[t * width + g * group * hd..][..group * hd],
                        ctx: *ctx,
                        k,
                        v,
                        rows: Rows {
                            block_size: bs,
                            kv_width: kvw,
                            kv_off: g * hd,
                            n_kv_heads: heads.n_kv_heads,
                            g,
                            prefetch: t % 2 == 0,
                        },
                        group,
                        hd,
                    };
                    match path {
                        Path::Generic => job.run(&mut Vec::new()),
                        // SAFETY: paths() lists Avx2 only where avx2, fma and f16c are present; the table lies in the pool.
                        #[cfg(target_arch = "x86_64")]
                        Path::Avx2 => unsafe { job.run_avx2(&mut Vec::new()) },
                        // SAFETY: paths() lists Avx512 only where avx512f is present; the table lies in the pool.
                        #[cfg(target_arch = "x86_64")]
                        Path::Avx512 => unsafe { job.run_avx512(&mut Vec::new()) },
                        #[allow(unreachable_patterns)]
                        _ => unreachable!(),
                    }
                }
            }
            assert!(fast.iter().zip(&general).all(|(a, b)| a.to_bits() == b.to_bits()), "{heads:?} {path:?}");
        }
        for pos in [0, 17, len - 1] {
            let gather = |x: &[f32]| -> Vec<f32> {
                (0..=pos).flat_map(|j| x[(table[j / bs] * bs + j % bs) * kvw..][..kvw].to_vec()).collect()
            };
            let want = reference(&q[pos * width..][..width], &gather(kd), &gather(vd), pos, heads);
            assert!(fast[pos * width..][..width].iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5));
        }
    }

    /// Every path (the register kernels, the general kernel on AVX-512,
    /// AVX2 and the process's own `dot`) computes the same bits, for the
    /// shapes the register kernels serve and every stored format.
    #[test]
    fn every_path_gives_the_same_bits_for_every_format() {
        // The last shape has no register kernel: the general kernel on each path.
        for heads in [
            Heads { n_heads: 9, n_kv_heads: 3, head_dim: 64 },
            Heads { n_heads: 4, n_kv_heads: 2, head_dim: 128 },
            Heads { n_heads: 4, n_kv_heads: 1, head_dim: 48 },
        ] {
            let (bs, len, hd) = (16, 40, heads.head_dim);
            let kvw = heads.n_kv_heads * hd;
            let table = [2usize, 0, 3];
            let k = data(4 * bs * kvw, 5);
            let v = data(4 * bs * kvw, 6);
            let (kp, vp) = (Plane { values: &k[..], scales: &[] }, Plane { values: &v[..], scales: &[] });
            check_format(kp, vp, &k, &v, heads, &table, bs, len);

            let half = |x: &[f32]| x.iter().map(|&y| half::f16::from_f32(y)).collect::<Vec<_>>();
            let (kh, vh) = (half(&k), half(&v));
            let widen = |x: &[half::f16]| x.iter().map(|y| y.to_f32()).collect::<Vec<_>>();
            let (khd, vhd) = (widen(&kh), widen(&vh));
            check_format(
                Plane { values: &kh, scales: &[] },
                Plane { values: &vh, scales: &[] },
                &khd,
                &vhd,
                heads,
                &table,
                bs,
                len,
            );

            let quant = |x: &[f32]| {
                let mut q = vec![0i8; x.len()];
                let scales: Vec<f32> = x
                    .chunks(hd)
                    .zip(q.chunks_mut(hd))
                    .map(|(xh, qh)| crate::kernels::kv_elem::quantize_int8(xh, qh))
                    .collect();
                let deq: Vec<f32> = q.iter().enumerate().map(|(i, &qi)| qi as f32 * scales[i / hd]).collect();
                (q, scales, deq)
            };
            let ((kq, ks, kd), (vq, vs, vd)) = (quant(&k), quant(&v));
            check_format(
                Plane { values: &kq, scales: &ks },
                Plane { values: &vq, scales: &vs },
                &kd,
                &vd,
                heads,
                &table,
                bs,
                len,
            );
        }
    }
}
