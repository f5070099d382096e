//! The contract between the state layer and whatever computes the model: a
//! real forward pass, a cost model, or a test double.
//!
//! The scheduler decides *which* tokens run and *where* their KV lives (the
//! block table); the executor only writes and reads KV at those places and
//! samples. It never decides block ownership.

use crate::ids::{BlockId, RequestId, Seconds, TokenId};
use crate::kv_geometry::KvGeometry;
use crate::request::SamplingParams;
use std::sync::Arc;

/// One sequence's share of an engine step.
#[derive(Clone, Debug)]
pub struct ScheduledSeq {
    pub request_id: RequestId,
    /// The tokens whose KV this step computes: a prefill chunk, or the one
    /// newest token for decode (empty for executors that do not read the
    /// batch's contents, see [`Executor::reads_batch_contents`]).
    pub tokens: Vec<TokenId>,
    /// How many positions this step computes: `tokens.len()` whenever the
    /// tokens are filled in.
    pub num_tokens: usize,
    /// Position of the chunk's first token in the sequence; KV for
    /// positions `0..start_pos` already exists in the blocks of `block_table`.
    pub start_pos: usize,
    /// The request's block table, covering at least `start_pos + num_tokens`
    /// positions (empty for executors that do not read the batch's
    /// contents). Position `p` lives in block `block_table[p / block_size]`
    /// at slot `p % block_size`.
    pub block_table: Vec<BlockId>,
    /// Whether a token must be sampled after this chunk (its last position
    /// is the sequence's newest token: end of prompt, or decode).
    pub sample: bool,
    /// How many output tokens the request already has; the sampler uses it
    /// to make seeded sampling independent of batching and preemption.
    pub output_index: usize,
    /// Shared with the request's state: scheduling a step copies no parameters.
    pub sampling: Arc<SamplingParams>,
    /// True when this chunk is prompt work (first time or recompute after
    /// preemption), false for decode.
    pub is_prefill: bool,
    /// For requests that score their prompt: the prompt token right after
    /// this chunk, which the chunk's last position predicts.
    pub next_prompt_token: Option<TokenId>,
}

impl ScheduledSeq {
    /// Number of positions whose KV is read by attention this step.
    pub fn context_tokens(&self) -> usize {
        self.start_pos + self.num_tokens
    }
}

/// Everything one engine step asks the executor to do.
#[derive(Clone, Debug, Default)]
pub struct ScheduledBatch {
    pub seqs: Vec<ScheduledSeq>,
}

impl ScheduledBatch {
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }
    pub fn num_tokens(&self) -> usize {
        self.seqs.iter().map(|s| s.num_tokens).sum()
    }
    pub fn prefill_tokens(&self) -> usize {
        self.seqs.iter().filter(|s| s.is_prefill).map(|s| s.num_tokens).sum()
    }
    pub fn decode_seqs(&self) -> usize {
        self.seqs.iter().filter(|s| !s.is_prefill).count()
    }
}

/// A sampled token, with optional log-probabilities for inspection.
#[derive(Clone, Debug, PartialEq)]
pub struct SampledToken {
    pub token: TokenId,
    /// Log-probability of `token` under the model's (untempered) distribution,
    /// when the request asked for log-probabilities.
    pub logprob: Option<f32>,
    /// Top-k `(token, logprob)` pairs, most likely first, when asked for.
    pub top_logprobs: Vec<(TokenId, f32)>,
}

impl SampledToken {
    pub fn plain(token: TokenId) -> Self {
        SampledToken { token, logprob: None, top_logprobs: Vec::new() }
    }
}

/// The log-probability of prompt token `position` given the tokens before it.
#[derive(Clone, Debug, PartialEq)]
pub struct PromptLogprob {
    pub position: usize,
    pub token: TokenId,
    pub logprob: f32,
    /// Top `(token, logprob)` alternatives at that position, most likely first.
    pub top_logprobs: Vec<(TokenId, f32)>,
}

/// One sequence of a decode run (see [`Executor::execute_decode_run`]).
#[derive(Clone, Debug)]
pub struct DecodeRunSeq {
    pub request_id: RequestId,
    /// KV positions its first step reads (its context then); each later
    /// step reads one more.
    pub context_tokens: usize,
    /// Output tokens it has before the run.
    pub output_index: usize,
    pub sampling: Arc<SamplingParams>,
}

/// Consecutive decode-only steps of the same sequences, offered to an
/// executor in one call. Nothing changes the schedule between them: no
/// arrival, admission, finish or preemption.
#[derive(Clone, Debug)]
pub struct DecodeRun<'a> {
    /// In batch order, as every step of the run would schedule them.
    pub seqs: &'a [DecodeRunSeq],
    /// Most steps the run may take.
    pub max_steps: usize,
    /// No step may start at or after this engine-clock time (the next
    /// arrival, which would change the schedule).
    pub start_before: Seconds,
}

/// What an executor did with a decode run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecodeRunOutput {
    /// Steps executed: at least 1, at most `max_steps`.
    pub steps: usize,
    /// Sampled tokens, sequence-major: sequence `i`'s token of step `j` is
    /// `tokens[i * steps + j]`.
    pub tokens: Vec<TokenId>,
}

/// An executor failed for reasons that are not the request's fault.
#[derive(Debug, thiserror::Error)]
#[error("executor failed: {0}")]
pub struct ExecutorError(pub String);

/// What an executor returns for one [`ScheduledBatch`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchOutput {
    /// One entry per scheduled sequence, in batch order: `Some(token)` where
    /// the sequence's `sample` is true, else `None`.
    pub sampled: Vec<Option<SampledToken>>,
    /// Prompt log-probabilities this batch computed, for the requests whose
    /// sampling asks for them (empty from executors that cannot score).
    /// Returned with the step rather than fetched after it, so no score can
    /// be left behind for the next step to pick up.
    pub prompt_logprobs: Vec<(RequestId, Vec<PromptLogprob>)>,
}

impl BatchOutput {
    /// Sampled tokens and no prompt scores.
    pub fn sampled(sampled: Vec<Option<SampledToken>>) -> Self {
        BatchOutput { sampled, prompt_logprobs: Vec::new() }
    }
}

/// Computes one engine step.
///
/// Used as a generic parameter (`Engine<E: Executor, _>`), never as a trait
/// object: its KV site is a constant of the type.
pub trait Executor {
    /// The `module::function` that writes and reads KV, named in `prefill`
    /// and `decode` events.
    const KV_SITE: &'static str = "executor::execute";

    /// Write KV for every scheduled token into its slot, run attention over
    /// each sequence's block table, sample where asked, and score prompt
    /// chunks of requests that ask for prompt log-probabilities.
    fn execute(&mut self, batch: &ScheduledBatch) -> Result<BatchOutput, ExecutorError>;

    /// Whether `execute` reads the scheduled tokens and block tables. An
    /// executor that prices steps by their shape alone (the simulator) says
    /// no, and the scheduler fills in only the counts instead of copying
    /// every prompt chunk and every table (most of a simulated step's work).
    fn reads_batch_contents(&self) -> bool {
        true
    }

    /// The layout of the KV storage this executor writes (`None`: it holds
    /// no KV, as the simulator). [`Engine::new`](crate::Engine::new)
    /// refuses an executor whose layout is not the pool's.
    fn kv_geometry(&self) -> Option<KvGeometry> {
        None
    }

    /// Executes a run of identical decode-only steps at once, as many of
    /// `run.max_steps` as start before `run.start_before` (at least one).
    /// Only an executor whose cost can be summed without computing each step
    /// (the simulator) does this; the default declines with `None`, and the
    /// engine steps one by one.
    fn execute_decode_run(&mut self, _run: &DecodeRun) -> Option<Result<DecodeRunOutput, ExecutorError>> {
        None
    }
}
