//! Building a step's batch over the last step's entries.
//!
//! A step schedules mostly the sequences the last one did, each as a
//! [`ScheduledSeq`] of about a hundred bytes with two buffers inside. The
//! writer overwrites the last batch's entries in place, in order, and only
//! takes an entry from the spare stack (or makes one) when this batch is
//! longer; leftovers go back to the stack. A simulated step of 156
//! sequences then allocates nothing and moves no entry.

use crate::executor::{ScheduledBatch, ScheduledSeq};
use crate::sequence::Sequence;
use std::sync::Arc;

pub(crate) struct BatchWriter {
    /// Entries `..len` are this step's; the rest are the last step's.
    seqs: Vec<ScheduledSeq>,
    len: usize,
    /// Whether entries carry their tokens and block table (see
    /// `Executor::reads_batch_contents`).
    with_contents: bool,
}

impl BatchWriter {
    /// A writer over `last` (the previous batch's entries, or none).
    pub(crate) fn over(last: Vec<ScheduledSeq>, with_contents: bool) -> Self {
        BatchWriter { seqs: last, len: 0, with_contents }
    }

    /// Appends `n` tokens of `seq`, starting at its first uncomputed one.
    pub(crate) fn push(&mut self, seq: &Sequence, n: usize, spare: &mut Vec<ScheduledSeq>) {
        match self.seqs.get_mut(self.len) {
            Some(entry) => fill(entry, seq, n, self.with_contents),
            None => {
                let mut entry = spare.pop().unwrap_or_else(|| empty_entry(seq));
                fill(&mut entry, seq, n, self.with_contents);
                self.seqs.push(entry);
            }
        }
        self.len += 1;
    }

    /// This step's entries so far.
    pub(crate) fn written(&self) -> &[ScheduledSeq] {
        &self.seqs[..self.len]
    }

    /// The batch; the last step's entries it did not reuse go to `spare`.
    pub(crate) fn finish(mut self, spare: &mut Vec<ScheduledSeq>) -> ScheduledBatch {
        spare.extend(self.seqs.drain(self.len..));
        ScheduledBatch { seqs: self.seqs }
    }
}

fn empty_entry(seq: &Sequence) -> ScheduledSeq {
    ScheduledSeq {
        request_id: seq.id,
        tokens: Vec::new(),
        num_tokens: 0,
        start_pos: 0,
        block_table: Vec::new(),
        sample: false,
        output_index: 0,
        sampling: Arc::clone(&seq.params),
        is_prefill: false,
        next_prompt_token: None,
    }
}

/// Writes the chunk of `seq` to run this step into `entry`, reusing its
/// buffers (and its sampling parameters, when they are `seq`'s: the entry
/// held the same sequence last step, and no reference count moves).
fn fill(entry: &mut ScheduledSeq, seq: &Sequence, n: usize, with_contents: bool) {
    let start = seq.kv.num_computed;
    let end = start + n;
    entry.tokens.clear();
    entry.block_table.clear();
    if with_contents {
        seq.extend_with_tokens(start..end, &mut entry.tokens);
        entry.block_table.extend_from_slice(&seq.kv.block_table);
    }
    if !Arc::ptr_eq(&entry.sampling, &seq.params) {
        entry.sampling = Arc::clone(&seq.params);
    }
    entry.request_id = seq.id;
    entry.num_tokens = n;
    entry.start_pos = start;
    entry.sample = end == seq.len();
    entry.output_index = seq.output.len();
    entry.is_prefill = seq.in_prefill();
    entry.next_prompt_token = seq.params.prompt_logprobs.and_then(|_| seq.prompt.get(end).copied());
}
