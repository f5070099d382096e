//! A step's batch as its cost sees it: counts, not contents.

use kvscope_core::ScheduledBatch;
use serde::{Deserialize, Serialize};

/// How many features a shape has for the calibrated model (and how many
/// coefficients it fits).
pub const FEATURES: usize = 6;

/// What a step's cost depends on, counted from its batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchShape {
    /// Prompt tokens computed this step (first prefill or recompute).
    pub prefill_tokens: u64,
    /// Sequences decoding one token each.
    pub decode_seqs: u64,
    /// Sequences that sample a token (the LM head runs for these).
    pub sampled: u64,
    /// (query, key) pairs attention scores for prefill chunks: a chunk of
    /// `n` tokens starting at position `s` has `n·s + n(n+1)/2`.
    pub prefill_attention_pairs: u64,
    /// Context tokens (KV positions) read by decoding sequences.
    pub decode_context_tokens: u64,
    /// Context tokens read by every sequence of the batch (KV traffic).
    pub context_tokens_read: u64,
}

impl BatchShape {
    pub fn of(batch: &ScheduledBatch) -> Self {
        let mut shape = BatchShape::default();
        for seq in &batch.seqs {
            let n = seq.num_tokens as u64;
            let s = seq.start_pos as u64;
            if seq.is_prefill {
                shape.prefill_tokens += n;
                shape.prefill_attention_pairs += n * s + n * (n + 1) / 2;
            } else {
                shape.decode_seqs += 1;
                shape.decode_context_tokens += s + n;
            }
            shape.context_tokens_read += s + n;
            shape.sampled += u64::from(seq.sample);
        }
        shape
    }

    /// A single prefill chunk of `tokens` starting at `start_pos`, sampling
    /// at its end.
    pub fn prefill(start_pos: u64, tokens: u64) -> Self {
        BatchShape {
            prefill_tokens: tokens,
            sampled: 1,
            prefill_attention_pairs: tokens * start_pos + tokens * (tokens + 1) / 2,
            context_tokens_read: start_pos + tokens,
            ..Default::default()
        }
    }

    /// `seqs` sequences decoding one token each over `context` positions.
    pub fn decode(seqs: u64, context: u64) -> Self {
        BatchShape {
            decode_seqs: seqs,
            sampled: seqs,
            decode_context_tokens: seqs * context,
            context_tokens_read: seqs * context,
            ..Default::default()
        }
    }

    /// Tokens whose KV this step writes.
    pub fn tokens_computed(&self) -> u64 {
        self.prefill_tokens + self.decode_seqs
    }

    /// Two steps run as one (both batches together).
    pub fn merged(self, o: BatchShape) -> Self {
        BatchShape {
            prefill_tokens: self.prefill_tokens + o.prefill_tokens,
            decode_seqs: self.decode_seqs + o.decode_seqs,
            sampled: self.sampled + o.sampled,
            prefill_attention_pairs: self.prefill_attention_pairs + o.prefill_attention_pairs,
            decode_context_tokens: self.decode_context_tokens + o.decode_context_tokens,
            context_tokens_read: self.context_tokens_read + o.context_tokens_read,
        }
    }

    /// The calibrated model's features, in coefficient order (the first is
    /// the constant 1 for the per-step overhead), for kernels that run
    /// `row_tile` tokens per pass over the weights.
    pub fn features(&self, row_tile: u64) -> [f64; FEATURES] {
        [
            1.0,
            self.prefill_tokens as f64,
            self.decode_seqs as f64,
            self.prefill_attention_pairs as f64,
            self.decode_context_tokens as f64,
            self.tokens_computed().div_ceil(row_tile.max(1)) as f64,
        ]
    }
}
