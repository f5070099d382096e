//! A sequence as a block manager sees it: its tokens, to read
//! ([`SeqView`]), and its place in the pool, to write ([`SeqKv`]). The
//! rest of a [`Sequence`](crate::Sequence) — its status, sampling
//! parameters, outputs' log-probabilities, timeline — is none of a block
//! manager's business, and the seam does not hand it over.

use crate::ids::{BlockId, RequestId, TokenId};
use crate::prefix_hash::BlockHash;
use crate::prompt::Prompt;
use std::borrow::Cow;

/// What a block manager reads of a sequence: who it is and its tokens,
/// prompt then output.
#[derive(Clone, Copy, Debug)]
pub struct SeqView<'a> {
    pub id: RequestId,
    pub prompt: &'a Prompt,
    pub output: &'a [TokenId],
    /// Whether leading blocks may come from the prefix cache: not for a
    /// request that scores its prompt, which needs logits at every prompt
    /// position.
    pub takes_prefix_hits: bool,
}

impl<'a> SeqView<'a> {
    pub fn len(&self) -> usize {
        self.prompt.len() + self.output.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn token_at(&self, pos: usize) -> TokenId {
        if pos < self.prompt.len() {
            self.prompt[pos]
        } else {
            self.output[pos - self.prompt.len()]
        }
    }

    /// Every token of the sequence: prompt then output.
    pub fn all_tokens(&self) -> impl Iterator<Item = TokenId> + 'a {
        self.prompt.iter().chain(self.output.iter()).copied()
    }

    /// Every token as one slice: the prompt itself while there is no
    /// output (a waiting request's usual case, checked every step), a copy
    /// after a preemption.
    fn token_slice(&self) -> Cow<'a, [TokenId]> {
        if self.output.is_empty() {
            Cow::Borrowed(&self.prompt[..])
        } else {
            Cow::Owned(self.all_tokens().collect())
        }
    }

    /// The tokens the prefix cache may share with other requests: every
    /// token, or a random prompt's prefix (read without drawing the rest).
    pub fn shareable_tokens(&self) -> Cow<'a, [TokenId]> {
        match self.prompt.private_from() {
            Some(_) => Cow::Borrowed(self.prompt.shareable()),
            None => self.token_slice(),
        }
    }

    /// The first position whose KV is this request's own (`usize::MAX`
    /// when every token is shareable).
    pub fn private_from(&self) -> usize {
        self.prompt.private_from().unwrap_or(usize::MAX)
    }
}

/// A sequence's place in the KV pool: the block manager writes it, the
/// scheduler advances `num_computed` after each step, everyone else reads.
#[derive(Clone, Debug, Default)]
pub struct SeqKv {
    /// Physical blocks holding this sequence's KV, in position order.
    pub block_table: Vec<BlockId>,
    /// Tokens (from the start) whose KV exists in `block_table`.
    pub num_computed: usize,
    /// The native block manager's own bookkeeping (a plug-in neither sees
    /// nor needs it): leading blocks already known to be full (and, with
    /// prefix caching, hashed), and the chain hash of the last of them, so
    /// committing KV resumes here instead of walking the whole table.
    pub(crate) full_blocks: usize,
    pub(crate) last_full_hash: Option<BlockHash>,
    /// After a preemption, the blocks that held this sequence's private
    /// KV (the tokens from `Prompt::private_from` on), by position: no
    /// index lists them, so a readmission looks here, and the block
    /// manager trusts an entry only while that block still says it holds
    /// this sequence's KV at that position. Empty for given prompts.
    pub(crate) private_blocks: Vec<BlockId>,
}
