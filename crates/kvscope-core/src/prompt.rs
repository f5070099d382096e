//! A request's prompt: its tokens, given outright or drawn from a seed the
//! first time anyone reads them.
//!
//! A simulated workload's prompts are random token ids whose only job is to
//! be distinct keys for the prefix cache. A hundred thousand of them
//! arriving at once would hold 1.6 GB of tokens in the waiting queue,
//! unread until each request reaches the queue's head. Drawn on first read,
//! only the requests being admitted or run hold tokens, a finished request's
//! memory is reused by the next, and memory no longer grows with the number
//! of requests. The tokens are the same whenever they are drawn: a prompt is
//! a value, not a stream.

use crate::ids::TokenId;
use crate::rng::WyRand;
use std::sync::{Arc, OnceLock};

/// The tokens of a prompt (see the module documentation). Reads as a
/// `[TokenId]`; `len` and `is_empty` never draw.
#[derive(Clone)]
pub struct Prompt {
    len: usize,
    tokens: OnceLock<Box<[TokenId]>>,
    /// How to draw the tokens, if they were not given.
    recipe: Option<RandomTokens>,
}

/// A prompt of random token ids: a shared prefix, then a first token of the
/// caller's choosing, then ids uniform below `vocab` drawn from `seed`.
///
/// Only the prefix is shared: the tokens from `first` on are this request's
/// own, and the prefix cache offers no block holding any of them to another
/// request (the request itself gets them back after a preemption). A
/// workload's random tokens stand for each user's own text; before this was
/// a rule, a workload made `first` distinct per request so that no two
/// prompts shared a block by accident, and the rule lets the block manager
/// keep such blocks out of its index instead of hashing, indexing and
/// evicting millions of keys no lookup can find.
#[derive(Clone, Debug, PartialEq)]
pub struct RandomTokens {
    pub prefix: Arc<[TokenId]>,
    pub first: TokenId,
    pub vocab: u32,
    pub seed: u64,
}

impl Prompt {
    /// A prompt of `len` random tokens (`len` > the recipe's prefix), drawn
    /// on first read.
    pub fn random(len: usize, recipe: RandomTokens) -> Prompt {
        assert!(len > recipe.prefix.len(), "a random prompt has its own first token after the prefix");
        assert!(recipe.vocab > 0, "random tokens need a vocabulary");
        Prompt { len, tokens: OnceLock::new(), recipe: Some(recipe) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tokens, drawn now if they were not yet.
    pub fn tokens(&self) -> &[TokenId] {
        self.tokens.get_or_init(|| {
            let recipe = self.recipe.as_ref().expect("a prompt without tokens has a recipe");
            recipe.draw(self.len).into_boxed_slice()
        })
    }

    /// Where the tokens that are this request's own begin, if any are: a
    /// random prompt shares its prefix and nothing after it (see
    /// [`RandomTokens`]); given tokens are all shareable (`None`).
    pub fn private_from(&self) -> Option<usize> {
        self.recipe.as_ref().map(|r| r.prefix.len())
    }

    /// The leading tokens other requests may share: all of them, or a
    /// random prompt's prefix, read without drawing the rest.
    pub fn shareable(&self) -> &[TokenId] {
        match &self.recipe {
            Some(r) => &r.prefix,
            None => self.tokens(),
        }
    }

    /// Whether the tokens exist yet (given, or drawn by an earlier read).
    pub fn is_drawn(&self) -> bool {
        self.tokens.get().is_some()
    }

    /// A token at or above `limit`, if the prompt has one. A random prompt
    /// whose vocabulary lies below `limit` answers without drawing.
    pub fn token_at_or_above(&self, limit: TokenId) -> Option<TokenId> {
        match (&self.recipe, self.tokens.get()) {
            (Some(r), None) if r.vocab <= limit => r.prefix.iter().chain([&r.first]).copied().find(|&t| t >= limit),
            _ => first_at_or_above(self.tokens(), limit),
        }
    }
}

/// A token at or above `limit` in `tokens`, if any: a branch-free count
/// first (a loop the compiler vectorises; a simulation checks hundreds of
/// millions of tokens), the culprit only if there is one.
pub(crate) fn first_at_or_above(tokens: &[TokenId], limit: TokenId) -> Option<TokenId> {
    if tokens.iter().fold(0usize, |n, &t| n + usize::from(t >= limit)) == 0 {
        return None;
    }
    tokens.iter().copied().find(|&t| t >= limit)
}

impl RandomTokens {
    /// The prompt's `len` tokens: two per draw, each half of the draw scaled
    /// into range by a multiply, written in place (no capacity check per
    /// token: a simulation draws hundreds of millions).
    fn draw(&self, len: usize) -> Vec<TokenId> {
        let scale = |half: u64| ((half * u64::from(self.vocab)) >> 32) as TokenId;
        let mut rng = WyRand::new(self.seed);
        let mut tokens = vec![0; len];
        let (given, drawn) = tokens.split_at_mut(self.prefix.len() + 1);
        given[..self.prefix.len()].copy_from_slice(&self.prefix);
        given[self.prefix.len()] = self.first;
        let mut pairs = drawn.chunks_exact_mut(2);
        for pair in &mut pairs {
            let x = rng.next_u64();
            pair[0] = scale(x >> 32);
            pair[1] = scale(x & 0xffff_ffff);
        }
        if let [last] = pairs.into_remainder() {
            *last = scale(rng.next_u64() >> 32);
        }
        tokens
    }
}

impl std::ops::Deref for Prompt {
    type Target = [TokenId];
    fn deref(&self) -> &[TokenId] {
        self.tokens()
    }
}

impl From<Vec<TokenId>> for Prompt {
    fn from(tokens: Vec<TokenId>) -> Prompt {
        Prompt { len: tokens.len(), tokens: OnceLock::from(tokens.into_boxed_slice()), recipe: None }
    }
}

impl FromIterator<TokenId> for Prompt {
    fn from_iter<I: IntoIterator<Item = TokenId>>(tokens: I) -> Prompt {
        tokens.into_iter().collect::<Vec<_>>().into()
    }
}

/// As its tokens (a random prompt is drawn to be written).
impl serde::Serialize for Prompt {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.tokens().serialize(serializer)
    }
}

impl PartialEq for Prompt {
    fn eq(&self, other: &Prompt) -> bool {
        self.len == other.len && self.tokens() == other.tokens()
    }
}

/// Shows the tokens only once they exist: printing a prompt must not draw it.
impl std::fmt::Debug for Prompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.tokens.get(), &self.recipe) {
            (Some(tokens), _) => f.debug_list().entries(tokens.iter()).finish(),
            (None, Some(recipe)) => f.debug_struct("Prompt").field("len", &self.len).field("random", recipe).finish(),
            (None, None) => unreachable!("a prompt has its tokens or a recipe"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(seed: u64) -> RandomTokens {
        RandomTokens { prefix: Arc::from(vec![7, 8, 9]), first: 4, vocab: 1000, seed }
    }

    #[test]
    fn a_random_prompt_is_drawn_on_first_read_and_the_same_every_time() {
        let p = Prompt::random(21, recipe(5));
        assert_eq!(p.len(), 21);
        assert!(!p.is_drawn(), "len does not draw");
        let copy = p.clone();
        let tokens = p.tokens().to_vec();
        assert!(p.is_drawn());
        assert_eq!(tokens.len(), 21);
        assert_eq!(&tokens[..4], &[7, 8, 9, 4]);
        assert!(tokens.iter().all(|&t| t < 1000));
        assert_eq!(copy.tokens(), &tokens[..], "a clone drawn later draws the same tokens");
        assert_ne!(Prompt::random(21, recipe(6)).tokens(), &tokens[..], "another seed, other tokens");
        assert_eq!(Prompt::random(22, recipe(5)).tokens()[..21], tokens[..], "odd and even lengths agree");
    }

    #[test]
    fn the_vocabulary_check_does_not_draw_a_random_prompt_it_can_vouch_for() {
        let p = Prompt::random(4096, RandomTokens { prefix: Arc::from(vec![7, 1500]), ..recipe(1) });
        assert_eq!(p.token_at_or_above(1600), None);
        assert_eq!(p.token_at_or_above(1200), Some(1500), "the prefix is checked");
        assert!(!p.is_drawn());
        // A vocabulary smaller than the recipe's: the tokens themselves decide.
        let found = p.token_at_or_above(500);
        assert!(p.is_drawn());
        assert_eq!(found, Some(1500));
        let q = Prompt::random(4096, recipe(1));
        assert!(q.token_at_or_above(500).is_some_and(|t| t >= 500), "about half the draws are above 500");
        assert_eq!(Prompt::from(vec![1, 2, 3]).token_at_or_above(3), Some(3));
        assert_eq!(Prompt::from(vec![1, 2, 3]).token_at_or_above(4), None);
    }
}
