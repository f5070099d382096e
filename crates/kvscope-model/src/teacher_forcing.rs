//! Scoring a fixed token sequence (teacher forcing): at each position, what
//! the model predicts next and how likely it finds the token that does
//! follow. The lab uses it to price a KV storage format against f32 KV.

use crate::kv_storage::{KvStorageError, PagedKvCache};
use crate::llama::{ForwardError, LlamaModel, LogitsFor, SeqChunk};
use crate::sampler;
use kvscope_core::{BlockId, KvDtype, TokenId};

/// Positions per forward pass: bounds the logits held at once (each row is
/// vocab-wide) without changing a bit (chunked prefill is batch-invariant).
const CHUNK: usize = 128;
const BLOCK_SIZE: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum TeacherForcingError {
    #[error(transparent)]
    Storage(#[from] KvStorageError),
    #[error(transparent)]
    Forward(#[from] ForwardError),
}

/// What the model predicts after one prefix of the sequence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    /// The most likely next token.
    pub top1: TokenId,
    /// Its lead over the second most likely (logits; small = near-tie).
    pub margin: f32,
    /// Log-probability of the token that actually follows.
    pub next_logprob: f32,
}

/// For each position `i < tokens.len() - 1`: the prediction after
/// `tokens[..=i]`, scored against `tokens[i + 1]`, with KV stored as `dtype`
/// in a fresh pool.
pub fn next_token_scores(
    model: &LlamaModel,
    dtype: KvDtype,
    tokens: &[TokenId],
) -> Result<Vec<Prediction>, TeacherForcingError> {
    let blocks = tokens.len().div_ceil(BLOCK_SIZE);
    let mut kv = PagedKvCache::new(model.config(), dtype, blocks, BLOCK_SIZE)?;
    let table: Vec<BlockId> = (0..blocks as u32).map(BlockId).collect();
    let mut out = Vec::with_capacity(tokens.len().saturating_sub(1));
    for (c, chunk) in tokens.chunks(CHUNK).enumerate() {
        let start_pos = c * CHUNK;
        let rows = model
            .forward(&mut kv, &[SeqChunk { tokens: chunk, start_pos, block_table: &table, logits: LogitsFor::All }])?;
        for (i, row) in rows.iter().enumerate() {
            if let Some(&next) = tokens.get(start_pos + i + 1) {
                let (next_logprob, top) = sampler::score(row, next, 2);
                out.push(Prediction { top1: top[0].0, margin: top[0].1 - top[1].1, next_logprob });
            }
        }
    }
    Ok(out)
}
