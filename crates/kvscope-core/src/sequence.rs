//! The per-request state object. A `Sequence` is what the KV cache is bound
//! to: its `kv` (a [`SeqKv`]) says which physical blocks hold its KV and how
//! many of its tokens already have KV there.

use crate::events::FinishReason;
use crate::executor::{PromptLogprob, SampledToken};
use crate::ids::{RequestId, Seconds, TokenId};
use crate::prompt::Prompt;
use crate::request::{Request, SamplingParams};
use crate::seq_kv::{SeqKv, SeqView};
use serde::Serialize;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SequenceStatus {
    /// In the waiting queue, holding no KV (new, or preempted).
    Waiting,
    /// Admitted: holds blocks, being prefilled or decoded.
    Running,
    Finished(FinishReason),
}

/// Timestamps on the engine clock. Latency metrics are differences of these.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timeline {
    pub arrival: Seconds,
    /// First admission (later readmissions after preemption do not move it).
    pub first_admitted: Option<Seconds>,
    pub first_token: Option<Seconds>,
    pub last_token: Option<Seconds>,
    pub finished: Option<Seconds>,
}

impl Timeline {
    /// Time spent in the waiting queue before the first admission.
    pub fn queue_wait(&self) -> Option<Seconds> {
        self.first_admitted.map(|t| t - self.arrival)
    }
    /// Time to first token, from arrival.
    pub fn ttft(&self) -> Option<Seconds> {
        self.first_token.map(|t| t - self.arrival)
    }
    pub fn e2e(&self) -> Option<Seconds> {
        self.finished.map(|t| t - self.arrival)
    }
}

#[derive(Clone, Debug)]
pub struct Sequence {
    pub id: RequestId,
    pub status: SequenceStatus,
    pub prompt: Prompt,
    pub output: Vec<TokenId>,
    /// Log-probabilities of each output token, when the request asked.
    pub output_logprobs: Vec<SampledToken>,
    /// Log-probabilities of prompt tokens 1.. (token 0 has no context),
    /// when the request asked to score its prompt and the engine keeps
    /// them (see `Engine::set_keep_prompt_logprobs`).
    pub prompt_logprobs: Vec<PromptLogprob>,
    /// The last prompt position scored so far (0: none): a recompute after
    /// a preemption scores the same positions again, and they are not
    /// reported twice.
    pub prompt_scored: usize,
    pub params: Arc<SamplingParams>,
    /// Which blocks hold this sequence's KV and how much of it is computed.
    pub kv: SeqKv,
    /// Of the prompt tokens, how many came from the prefix cache at the first
    /// admission. Recomputation after preemption never adds to it.
    pub num_cached_prompt_tokens: usize,
    /// Times this sequence was preempted.
    pub preemptions: u32,
    /// Monotonic admission stamp; preemption picks the highest.
    pub admitted_order: u64,
    pub timeline: Timeline,
}

impl Sequence {
    pub fn new(request: Request) -> Self {
        Sequence {
            id: request.id,
            status: SequenceStatus::Waiting,
            prompt: request.prompt,
            output: Vec::new(),
            output_logprobs: Vec::new(),
            prompt_logprobs: Vec::new(),
            prompt_scored: 0,
            params: Arc::new(request.params),
            kv: SeqKv::default(),
            num_cached_prompt_tokens: 0,
            preemptions: 0,
            admitted_order: 0,
            timeline: Timeline { arrival: request.arrival, ..Default::default() },
        }
    }

    /// What a block manager reads of this sequence.
    pub fn view(&self) -> SeqView<'_> {
        view(self.id, &self.prompt, &self.output, &self.params)
    }

    /// What a block manager gets of this sequence: its tokens to read and
    /// its place in the pool to write.
    pub fn split_kv(&mut self) -> (SeqView<'_>, &mut SeqKv) {
        (view(self.id, &self.prompt, &self.output, &self.params), &mut self.kv)
    }

    pub fn len(&self) -> usize {
        self.view().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the tokens at positions `range` to `out`: the prompt's part
    /// and the output's part each as one slice copy (a prefill chunk copies
    /// thousands of tokens; one branch per token would dominate).
    pub fn extend_with_tokens(&self, range: std::ops::Range<usize>, out: &mut Vec<TokenId>) {
        let plen = self.prompt.len();
        out.extend_from_slice(&self.prompt[range.start.min(plen)..range.end.min(plen)]);
        out.extend_from_slice(&self.output[range.start.saturating_sub(plen)..range.end.saturating_sub(plen)]);
    }

    /// Tokens still without KV. During prefill (first time or recompute)
    /// that is many; during decode it is exactly one, the newest token.
    pub fn num_uncomputed(&self) -> usize {
        self.len() - self.kv.num_computed
    }

    /// True while the sequence still has prompt-like work (its KV lags by
    /// more than the one token decode would add).
    pub fn in_prefill(&self) -> bool {
        self.num_uncomputed() > 1 || self.output.is_empty()
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        match self.status {
            SequenceStatus::Finished(r) => Some(r),
            _ => None,
        }
    }

    /// Latency of each output token after the first, averaged (TPOT).
    pub fn tpot(&self) -> Option<Seconds> {
        let (first, last) = (self.timeline.first_token?, self.timeline.last_token?);
        let n = self.output.len();
        (n > 1).then(|| (last - first) / (n - 1) as f64)
    }
}

/// The block manager's view of a sequence's parts (borrowed field by field,
/// so that `split_kv` can lend `kv` beside it).
fn view<'a>(id: RequestId, prompt: &'a Prompt, output: &'a [TokenId], params: &SamplingParams) -> SeqView<'a> {
    SeqView { id, prompt, output, takes_prefix_hits: params.prompt_logprobs.is_none() }
}
