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
use crate::kernels::attention::{paged_attention, Heads, KvView, QueryCtx};
use crate::kernels::{activation, matmul::matmul, rmsnorm, rope::RopeTable};
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
    wqkv: Vec<f32>,
    wo: Vec<f32>,
    ffn_norm: Vec<f32>,
    /// Gate and up projections stacked: `[2 * ffn, hidden]`.
    w_gate_up: Vec<f32>,
    w_down: Vec<f32>,
}

pub struct LlamaModel {
    config: ModelConfig,
    /// `[vocab, hidden]`; also the output head when `output` is None (tied).
    embed: Vec<f32>,
    output: Option<Vec<f32>>,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
    rope: RopeTable,
}

impl std::fmt::Debug for LlamaModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaModel").field("config", &self.config).finish_non_exhaustive()
    }
}

/// A tensor as f32 after checking its ggml shape (`[in, out]` for matrices).
fn tensor(g: &Gguf, name: &str, dims: &[usize]) -> Result<Vec<f32>, LoadError> {
    let info = g.tensor_info(name).ok_or_else(|| GgufError::MissingTensor(name.to_string()))?;
    let want: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
    if info.dims != want {
        return Err(LoadError::Shape { name: name.to_string(), want, got: info.dims.clone() });
    }
    Ok(g.tensor_f32(name)?)
}

impl LlamaModel {
    /// Load and dequantize every weight to f32 (≈ 540 MB for SmolLM2-135M).
    pub fn load(g: &Gguf) -> Result<Self, LoadError> {
        let c = ModelConfig::from_gguf(g)?;
        let (d, hd) = (c.hidden, c.head_dim);
        let layers = (0..c.n_layers)
            .into_par_iter()
            .map(|i| -> Result<Layer, LoadError> {
                let t = |n: &str, dims: &[usize]| tensor(g, &format!("blk.{i}.{n}.weight"), dims);
                let mut wqkv = t("attn_q", &[d, c.n_heads * hd])?;
                wqkv.extend(t("attn_k", &[d, c.kv_dim()])?);
                wqkv.extend(t("attn_v", &[d, c.kv_dim()])?);
                let mut w_gate_up = t("ffn_gate", &[d, c.ffn_hidden])?;
                w_gate_up.extend(t("ffn_up", &[d, c.ffn_hidden])?);
                Ok(Layer {
                    attn_norm: t("attn_norm", &[d])?,
                    wqkv,
                    wo: t("attn_output", &[c.n_heads * hd, d])?,
                    ffn_norm: t("ffn_norm", &[d])?,
                    w_gate_up,
                    w_down: t("ffn_down", &[c.ffn_hidden, d])?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let embed = tensor(g, "token_embd.weight", &[d, c.vocab_size])?;
        let output = match g.tensor_info("output.weight") {
            Some(_) => Some(tensor(g, "output.weight", &[d, c.vocab_size])?),
            None => None,
        };
        let output_norm = tensor(g, "output_norm.weight", &[d])?;
        let rope = RopeTable::new(hd, c.rope_base, c.context_length, c.rope_style);
        debug_assert!(c.rope_style == RopeStyle::Interleaved);
        Ok(LlamaModel { config: c, embed, output, output_norm, layers, rope })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
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
            row.copy_from_slice(&self.embed[t as usize * d..][..d]);
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
            matmul(&h, &layer.wqkv, &mut qkv, n, d, qkvw);
            qkv.par_chunks_mut(qkvw).zip(&positions).with_min_len(16).for_each(|(row, &pos)| {
                // q and k heads are adjacent in the fused row; v is not rotated.
                self.rope.apply_rows(&mut row[..qw + kvw], qw + kvw, &[pos]);
            });
            for (i, row) in qkv.chunks(qkvw).enumerate() {
                kv.write(li, slots[i], &row[qw..qw + kvw], &row[qw + kvw..]);
                q[i * qw..][..qw].copy_from_slice(&row[..qw]);
            }
            let lkv = kv.layer(li);
            paged_attention(
                &q,
                &queries,
                KvView { k: &lkv.k, v: &lkv.v, block_size: kv.block_size() },
                heads,
                &mut attn,
            );
            matmul(&attn, &layer.wo, &mut proj, n, qw, d);
            add_in_place(&mut x, &proj);

            rmsnorm::rmsnorm_rows(&x, &layer.ffn_norm, c.rms_eps, &mut h, d);
            matmul(&h, &layer.w_gate_up, &mut gu, n, d, 2 * f);
            activation::silu_mul(&gu, f, &mut act);
            matmul(&act, &layer.w_down, &mut proj, n, f, d);
            add_in_place(&mut x, &proj);
        }

        let r = logit_rows.len();
        let mut last = vec![0f32; r * d];
        for (dst, &row) in last.chunks_mut(d).zip(&logit_rows) {
            rmsnorm::rmsnorm(&x[row * d..][..d], &self.output_norm, c.rms_eps, dst);
        }
        let head = self.output.as_deref().unwrap_or(&self.embed);
        let mut logits = vec![0f32; r * c.vocab_size];
        matmul(&last, head, &mut logits, r, d, c.vocab_size);
        Ok(logits.chunks(c.vocab_size).map(<[f32]>::to_vec).collect())
    }
}

fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
