//! The Llama-family forward pass over a batch of sequence chunks, with KV read
//! and written through block tables.
//!
//! One call runs any mix of prefill chunks and decode tokens: all their rows
//! go through each matmul together (so a 512-token prefill and a 16-sequence
//! decode are matrix–matrix products), while attention runs per query row over
//! that row's own sequence. Every kernel is batch-invariant (see `kernels`),
//! so a row's logits never depend on what it was batched with.

use crate::config::{ModelConfig, RopeStyle};
use crate::gguf::{Gguf, GgufError};
use crate::kernels::attention::{paged_attention, Heads, QueryCtx};
use crate::kernels::weights::Weights;
use crate::kernels::{activation, matmul::matmul_w, rmsnorm, rope::RopeTable, Kernels};
use crate::kv_storage::PagedKvCache;
use kvscope_core::ids::{BlockId, TokenId};
use rayon::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("tensor {name} has shape {got:?}, expected {want:?}; the file does not match its own metadata")]
    Shape { name: String, want: Vec<u64>, got: Vec<u64> },
}

/// A request the forward pass cannot run; nothing has been written when it
/// is returned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForwardError {
    #[error("chunk {chunk} has no tokens")]
    EmptyChunk { chunk: usize },
    #[error("chunk {chunk}: token id {id} is outside the vocabulary of {vocab}")]
    TokenOutOfRange { chunk: usize, id: TokenId, vocab: usize },
    #[error(
        "chunk {chunk}: position {pos} is beyond the model's context length {max}; shorten the prompt or max_tokens"
    )]
    PositionOutOfRange { chunk: usize, pos: usize, max: usize },
    #[error("chunk {chunk}: the block table ({blocks} blocks of {block_size}) does not cover position {pos}")]
    BlockTableTooShort { chunk: usize, blocks: usize, block_size: usize, pos: usize },
    #[error("chunk {chunk}: block {block} is outside the KV pool of {num_blocks} blocks")]
    BlockOutOfRange { chunk: usize, block: u32, num_blocks: usize },
}

/// Which positions of a chunk need logits. The output head is the most
/// expensive matmul per row (vocab 49152), so it runs only where asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitsFor {
    None,
    Last,
    All,
}

/// One sequence's share of a forward call: `tokens` at positions
/// `start_pos..`, KV for `0..start_pos` already in the blocks of `block_table`.
#[derive(Clone, Copy, Debug)]
pub struct SeqChunk<'a> {
    pub tokens: &'a [TokenId],
    pub start_pos: usize,
    pub block_table: &'a [BlockId],
    pub logits: LogitsFor,
}

struct Layer {
    attn_norm: Vec<f32>,
    /// Q, K and V projections stacked: `[qkv_dim, hidden]`.
    wqkv: Weights,
    wo: Weights,
    ffn_norm: Vec<f32>,
    /// Gate and up projections stacked: `[2 * ffn, hidden]`.
    w_gate_up: Weights,
    w_down: Weights,
}

pub struct LlamaModel {
    config: ModelConfig,
    /// `[vocab, hidden]`; also the output head when `output` is None (tied).
    embed: Weights,
    output: Option<Weights>,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
    rope: RopeTable,
    kernels: Kernels,
}

impl std::fmt::Debug for LlamaModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaModel").field("config", &self.config).finish_non_exhaustive()
    }
}

/// A tensor as f32 after checking its ggml shape (`[in, out]` for matrices).
fn tensor(g: &Gguf, name: &str, dims: &[usize]) -> Result<Vec<f32>, LoadError> {
    check_shape(g, name, dims)?;
    Ok(g.tensor_f32(name)?)
}

fn check_shape(g: &Gguf, name: &str, dims: &[usize]) -> Result<(), LoadError> {
    let info = g.tensor_info(name).ok_or_else(|| GgufError::MissingTensor(name.to_string()))?;
    let want: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
    if info.dims != want {
        return Err(LoadError::Shape { name: name.to_string(), want, got: info.dims.clone() });
    }
    Ok(())
}

/// A weight matrix `[out, in]` (ggml dims `[in, out]`), kept compact where
/// its type allows (see `kernels::weights`).
fn matrix(g: &Gguf, name: &str, k: usize, n: usize) -> Result<Weights, LoadError> {
    check_shape(g, name, &[k, n])?;
    let info = g.tensor_info(name).expect("checked");
    Weights::from_ggml(info.ty, g.tensor_bytes(name)?, n, k)
        .map_err(|source| LoadError::Gguf(GgufError::Tensor { name: name.to_string(), source }))
}

impl LlamaModel {
    /// Load the weights: Q4_1 and Q8_0 matrices stay compact (≈ 100 MB for
    /// SmolLM2-135M Q4_1, against ≈ 540 MB as f32), the rest become f32.
    pub fn load(g: &Gguf) -> Result<Self, LoadError> {
        Self::load_with(g, Kernels::default())
    }

    /// Load for the given kernels: with `Kernels::Int8` the Q4_1/Q8_0
    /// matrices are repacked once for the int8 engine (same size).
    pub fn load_with(g: &Gguf, kernels: Kernels) -> Result<Self, LoadError> {
        let c = ModelConfig::from_gguf(g)?;
        let prep = |w: Weights| if kernels == Kernels::Int8 { w.into_int8() } else { w };
        let (d, hd) = (c.hidden, c.head_dim);
        let layers = (0..c.n_layers)
            .into_par_iter()
            .map(|i| -> Result<Layer, LoadError> {
                let t = |n: &str, dims: &[usize]| tensor(g, &format!("blk.{i}.{n}.weight"), dims);
                let w = |n: &str, k: usize, out: usize| matrix(g, &format!("blk.{i}.{n}.weight"), k, out);
                let wqkv = Weights::stack(vec![
                    w("attn_q", d, c.n_heads * hd)?,
                    w("attn_k", d, c.kv_dim())?,
                    w("attn_v", d, c.kv_dim())?,
                ]);
                let w_gate_up = Weights::stack(vec![w("ffn_gate", d, c.ffn_hidden)?, w("ffn_up", d, c.ffn_hidden)?]);
                Ok(Layer {
                    attn_norm: t("attn_norm", &[d])?,
                    // The Q/K/V projection is the layer whose outputs suffer most
                    // from rounding its inputs to int8. Teacher-forced against
                    // transformers (tests/int8_accuracy.rs), the mean top-1/top-2
                    // margin error is 0.119 with every layer single-term and 0.096
                    // with this one two-term (~16-bit inputs, 16 % more integer
                    // work). Also two-term attn_output gave 0.092, qkv + ffn_down
                    // 0.078 (25 % more work); not taken.
                    wqkv: prep(wqkv).with_two_term_activations(),
                    wo: prep(w("attn_output", c.n_heads * hd, d)?),
                    ffn_norm: t("ffn_norm", &[d])?,
                    w_gate_up: prep(w_gate_up),
                    w_down: prep(w("ffn_down", c.ffn_hidden, d)?),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The embedding is also the output head when the two are tied.
        let embed = prep(matrix(g, "token_embd.weight", d, c.vocab_size)?);
        let output = match g.tensor_info("output.weight") {
            Some(_) => Some(prep(matrix(g, "output.weight", d, c.vocab_size)?)),
            None => None,
        };
        let output_norm = tensor(g, "output_norm.weight", &[d])?;
        let rope = RopeTable::new(hd, c.rope_base, c.context_length, c.rope_style);
        debug_assert!(c.rope_style == RopeStyle::Interleaved);
        Ok(LlamaModel { config: c, embed, output, output_norm, layers, rope, kernels })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The kernels the linear layers run on.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Bytes the weights occupy in memory.
    pub fn weight_bytes(&self) -> usize {
        let f = |v: &[f32]| v.len() * 4;
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                f(&l.attn_norm)
                    + f(&l.ffn_norm)
                    + l.wqkv.bytes()
                    + l.wo.bytes()
                    + l.w_gate_up.bytes()
                    + l.w_down.bytes()
            })
            .sum();
        layers + self.embed.bytes() + self.output.as_ref().map_or(0, Weights::bytes) + f(&self.output_norm)
    }

    /// Check every chunk against the vocabulary, the context length and the
    /// KV pool before anything is written.
    fn validate(&self, kv: &PagedKvCache, chunks: &[SeqChunk]) -> Result<(), ForwardError> {
        let bs = kv.block_size();
        for (i, ch) in chunks.iter().enumerate() {
            if ch.tokens.is_empty() {
                return Err(ForwardError::EmptyChunk { chunk: i });
            }
            if let Some(&id) = ch.tokens.iter().find(|&&t| t as usize >= self.config.vocab_size) {
                return Err(ForwardError::TokenOutOfRange { chunk: i, id, vocab: self.config.vocab_size });
            }
            let last = ch.start_pos + ch.tokens.len() - 1;
            if last >= self.rope.max_pos() {
                return Err(ForwardError::PositionOutOfRange { chunk: i, pos: last, max: self.rope.max_pos() });
            }
            let needed = last / bs + 1;
            if ch.block_table.len() < needed {
                return Err(ForwardError::BlockTableTooShort {
                    chunk: i,
                    blocks: ch.block_table.len(),
                    block_size: bs,
                    pos: last,
                });
            }
            if let Some(b) = ch.block_table[..needed].iter().find(|b| b.index() >= kv.num_blocks()) {
                return Err(ForwardError::BlockOutOfRange { chunk: i, block: b.0, num_blocks: kv.num_blocks() });
            }
        }
        Ok(())
    }

    /// Run the chunks through the model, writing their KV into `kv`. Returns
    /// one logits row (vocab wide) per requested position, in chunk order.
    pub fn forward(&self, kv: &mut PagedKvCache, chunks: &[SeqChunk]) -> Result<Vec<Vec<f32>>, ForwardError> {
        self.validate(kv, chunks)?;
        // The whole pass runs on a pool thread: each of its ~150 parallel
        // loops then splits work inside the pool, instead of handing a job to
        // the pool and putting this thread to sleep ~150 times per step
        // (measured: ~40 % of a single-sequence decode step was spent so).
        rayon::scope(|_| self.forward_on_pool(kv, chunks))
    }

    fn forward_on_pool(&self, kv: &mut PagedKvCache, chunks: &[SeqChunk]) -> Result<Vec<Vec<f32>>, ForwardError> {
        let c = &self.config;
        let (d, hd, f) = (c.hidden, c.head_dim, c.ffn_hidden);
        let (qw, kvw, qkvw) = (c.n_heads * hd, c.kv_dim(), c.qkv_dim());

        let tables: Vec<Vec<usize>> =
            chunks.iter().map(|ch| ch.block_table.iter().map(|b| b.index()).collect()).collect();
        let mut tokens = Vec::new();
        let mut positions = Vec::new();
        let mut queries = Vec::new();
        let mut logit_rows = Vec::new();
        for (ch, table) in chunks.iter().zip(&tables) {
            let n = ch.tokens.len();
            for (i, &t) in ch.tokens.iter().enumerate() {
                let pos = ch.start_pos + i;
                if ch.logits == LogitsFor::All || (ch.logits == LogitsFor::Last && i == n - 1) {
                    logit_rows.push(tokens.len());
                }
                tokens.push(t);
                positions.push(pos);
                queries.push(QueryCtx { pos, block_table: table });
            }
        }
        let slots: Vec<usize> = queries.iter().map(|q| kv.slot(q.block_table, q.pos).expect("validated")).collect();
        let n = tokens.len();

        let mut x = vec![0f32; n * d];
        for (row, &t) in x.chunks_mut(d).zip(&tokens) {
            self.embed.row(t as usize, row);
        }
        let mut h = vec![0f32; n * d];
        let mut qkv = vec![0f32; n * qkvw];
        let mut q = vec![0f32; n * qw];
        let mut attn = vec![0f32; n * qw];
        let mut proj = vec![0f32; n * d];
        let mut gu = vec![0f32; n * 2 * f];
        let mut act = vec![0f32; n * f];
        let heads = Heads { n_heads: c.n_heads, n_kv_heads: c.n_kv_heads, head_dim: hd };

        for (li, layer) in self.layers.iter().enumerate() {
            rmsnorm::rmsnorm_rows(&x, &layer.attn_norm, c.rms_eps, &mut h, d);
            matmul_w(&h, &layer.wqkv, &mut qkv, n);
            // q and k heads are adjacent in the fused row; v is not rotated.
            let rotate =
                |(row, &pos): (&mut [f32], &usize)| self.rope.apply_rows(&mut row[..qw + kvw], qw + kvw, &[pos]);
            if n <= 32 {
                qkv.chunks_mut(qkvw).zip(&positions).for_each(rotate);
            } else {
                qkv.par_chunks_mut(qkvw).zip(&positions).with_min_len(16).for_each(rotate);
            }
            for (i, row) in qkv.chunks(qkvw).enumerate() {
                kv.write(li, slots[i], &row[qw..qw + kvw], &row[qw + kvw..]);
                q[i * qw..][..qw].copy_from_slice(&row[..qw]);
            }
            paged_attention(&q, &queries, kv.view(li), heads, &mut attn);
            matmul_w(&attn, &layer.wo, &mut proj, n);
            add_in_place(&mut x, &proj);

            rmsnorm::rmsnorm_rows(&x, &layer.ffn_norm, c.rms_eps, &mut h, d);
            matmul_w(&h, &layer.w_gate_up, &mut gu, n);
            activation::silu_mul(&gu, f, &mut act);
            matmul_w(&act, &layer.w_down, &mut proj, n);
            add_in_place(&mut x, &proj);
        }

        let r = logit_rows.len();
        let mut last = vec![0f32; r * d];
        for (dst, &row) in last.chunks_mut(d).zip(&logit_rows) {
            rmsnorm::rmsnorm(&x[row * d..][..d], &self.output_norm, c.rms_eps, dst);
        }
        let head = self.output.as_ref().unwrap_or(&self.embed);
        let mut logits = vec![0f32; r * c.vocab_size];
        matmul_w(&last, head, &mut logits, r);
        Ok(logits.chunks(c.vocab_size).map(<[f32]>::to_vec).collect())
    }
}

fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
