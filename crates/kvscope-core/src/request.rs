//! What a client asks for: a prompt and how to sample its continuation.

use crate::ids::{RequestId, Seconds, TokenId};
use crate::prompt::Prompt;
use serde::{Deserialize, Serialize};

/// How to pick each next token. Greedy when `temperature == 0`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// 0 means greedy (argmax); otherwise logits are divided by it.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens; `None` keeps all.
    pub top_k: Option<usize>,
    /// Nucleus sampling: keep the smallest set whose probability reaches `p`.
    pub top_p: f32,
    /// Seed of this request's own random stream; with the same seed the same
    /// tokens come out however the request was batched or preempted.
    pub seed: Option<u64>,
    /// Generate at most this many tokens.
    pub max_tokens: usize,
    /// Tokens that end generation (the model's end-of-generation ids and any
    /// the client adds). Ignored when `ignore_eos` is set.
    pub stop_token_ids: Vec<TokenId>,
    /// Generate exactly `max_tokens` tokens (benchmarks do this).
    pub ignore_eos: bool,
    /// How many top log-probabilities to return per token (0: none).
    pub logprobs: usize,
    /// Also score the prompt: the log-probability of every prompt token
    /// given the tokens before it, with this many top alternatives. Such a
    /// request computes its whole prompt (no prefix-cache hits), because a
    /// reused block has KV but no logits.
    #[serde(default)]
    pub prompt_logprobs: Option<usize>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: None,
            top_p: 1.0,
            seed: None,
            max_tokens: 64,
            stop_token_ids: Vec::new(),
            ignore_eos: false,
            logprobs: 0,
            prompt_logprobs: None,
        }
    }
}

/// Most log-probabilities one token may ask for (OpenAI's limit is 20).
pub const MAX_LOGPROBS: usize = 20;

/// A sampling parameter is out of its range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidParams {
    #[error("temperature must be a finite number >= 0, got {0}")]
    Temperature(f32),
    #[error("top_p must be in (0, 1], got {0}")]
    TopP(f32),
    #[error("top_k must be >= 1 when given, got 0")]
    TopK,
    #[error("max_tokens must be >= 1, got 0")]
    MaxTokens,
    #[error("logprobs must be at most {MAX_LOGPROBS}, got {0}")]
    Logprobs(usize),
}

impl SamplingParams {
    pub fn greedy(max_tokens: usize) -> Self {
        SamplingParams { max_tokens, ..Default::default() }
    }

    pub fn validate(&self) -> Result<(), InvalidParams> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(InvalidParams::Temperature(self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(InvalidParams::TopP(self.top_p));
        }
        if self.top_k == Some(0) {
            return Err(InvalidParams::TopK);
        }
        if self.max_tokens == 0 {
            return Err(InvalidParams::MaxTokens);
        }
        if self.logprobs > MAX_LOGPROBS {
            return Err(InvalidParams::Logprobs(self.logprobs));
        }
        if let Some(k) = self.prompt_logprobs.filter(|k| *k > MAX_LOGPROBS) {
            return Err(InvalidParams::Logprobs(k));
        }
        Ok(())
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

/// A request as submitted to the engine.
#[derive(Clone, Debug)]
pub struct Request {
    pub id: RequestId,
    pub prompt: Prompt,
    pub params: SamplingParams,
    /// When it arrived on the engine clock; queue wait and TTFT start here.
    pub arrival: Seconds,
}
