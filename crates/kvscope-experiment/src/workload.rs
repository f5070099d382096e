//! Workloads: how many requests, how long their prompts and outputs are,
//! and when each arrives. Deterministic under a seed.
//!
//! A case name means one experiment everywhere: `long_ctx` is the same
//! shape (long prompts, jittered by an eighth, arriving together) in the
//! lab, the simulator and the bench; only its [`Scale`] — the sizes — says
//! whether it is the quick lab, the full lab on the CPU model, or the same
//! case grown to a GPU's KV pool.

use crate::textgen::{passage, Rng};
use kvscope_core::{Prompt, RandomTokens, Seconds, TokenId};
use rand_distr::Distribution;
use serde::Serialize;
use std::sync::Arc;

/// The lab's capacity cases, in table order.
pub const CASE_NAMES: [&str; 3] = ["short_ctx", "long_ctx", "mixed_ctx"];

/// When requests arrive.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Arrival {
    /// Everyone at t = 0: the offered concurrency is the number of requests.
    AllAtOnce,
    /// A Poisson process at `rate` requests per second.
    Poisson { rate: f64 },
    /// Gamma-distributed gaps with mean `1 / rate` and shape `shape` (below
    /// 1: burstier than Poisson), as `vllm bench serve --burstiness`.
    Gamma { rate: f64, shape: f64 },
}

impl Arrival {
    /// From a request rate (`inf` or non-positive: all at once) and a gamma
    /// shape (1: Poisson).
    pub fn from_rate(rate: f64, burstiness: f64) -> Arrival {
        if !(rate.is_finite() && rate > 0.0) {
            Arrival::AllAtOnce
        } else if burstiness == 1.0 {
            Arrival::Poisson { rate }
        } else {
            Arrival::Gamma { rate, shape: burstiness }
        }
    }

    /// `n` arrival times drawn from `seed`, the first at t = 0 (for a load
    /// generator that sends prompts it did not draw itself).
    pub fn times(&self, n: usize, seed: u64) -> Vec<Seconds> {
        let mut rng = Rng::new(seed);
        let mut t = 0.0;
        (0..n)
            .map(|i| {
                if i > 0 {
                    t += self.gap(&mut rng);
                }
                t
            })
            .collect()
    }

    /// The gap before the next arrival.
    fn gap(&self, rng: &mut Rng) -> Seconds {
        match *self {
            Arrival::AllAtOnce => 0.0,
            Arrival::Poisson { rate } => rng.exponential(rate),
            Arrival::Gamma { rate, shape } => {
                rand_distr::Gamma::new(shape, 1.0 / (rate * shape)).map_or(0.0, |g| g.sample(&mut RandAdapter(rng)))
            }
        }
    }

    /// For tables: "all at once", "Poisson 2.00 req/s", …
    pub fn label(&self) -> String {
        match *self {
            Arrival::AllAtOnce => "all at once".into(),
            Arrival::Poisson { rate } => format!("Poisson {rate:.2} req/s"),
            Arrival::Gamma { rate, shape } => format!("gamma {rate:.2} req/s, shape {shape}"),
        }
    }
}

/// Lengths (prompt or output, in tokens) of a case's requests.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Lengths {
    Fixed {
        tokens: usize,
    },
    /// About `tokens` (uniform within ±`jitter`).
    Around {
        tokens: usize,
        jitter: usize,
    },
    /// Uniform in `min..=max`.
    Uniform {
        min: usize,
        max: usize,
    },
    /// `first`, `second`, `first`, `second`, … by request index.
    Alternating {
        first: usize,
        second: usize,
    },
}

impl Lengths {
    /// Length of request `i`; draws from `rng` only when random.
    fn draw(&self, i: usize, rng: &mut Rng) -> usize {
        match *self {
            Lengths::Fixed { tokens } => tokens.max(1),
            Lengths::Around { tokens, jitter } => {
                let j = if jitter == 0 { 0 } else { rng.below(2 * jitter + 1) };
                (tokens + j).saturating_sub(jitter).max(1)
            }
            Lengths::Uniform { min, max } => rng.range(min as u64, max.max(min) as u64) as usize,
            Lengths::Alternating { first, second } => {
                if i.is_multiple_of(2) {
                    first
                } else {
                    second
                }
            }
        }
    }
}

/// The sizes of the named cases. `Quick` and `Lab` are the lab's own on
/// the CPU model; `Gpu` grows the same cases to a GPU's KV pool: longer
/// prompts and outputs, and about twice as many requests as the pool holds
/// at once, so the pool still decides how many run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    Quick,
    Lab,
    Gpu,
}

/// What a [`Scale`] sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Sizes {
    pub short_prompt: usize,
    pub long_prompt: usize,
    pub output_tokens: usize,
    pub short_requests: usize,
    pub long_requests: usize,
    pub mixed_requests: usize,
}

impl Scale {
    /// The sizes for a pool of `pool_tokens` token slots (only `Gpu`
    /// depends on it).
    pub fn sizes(self, pool_tokens: usize) -> Sizes {
        match self {
            Scale::Quick => Sizes {
                short_prompt: 48,
                long_prompt: 384,
                output_tokens: 16,
                short_requests: 10,
                long_requests: 5,
                mixed_requests: 8,
            },
            Scale::Lab => Sizes {
                short_prompt: 128,
                long_prompt: 1536,
                output_tokens: 64,
                short_requests: 32,
                long_requests: 12,
                mixed_requests: 24,
            },
            Scale::Gpu => {
                let (short, long, out) = (512, 4096, 128);
                let twice_the_pool = |len: usize| (2 * pool_tokens / (len + out)).max(8);
                Sizes {
                    short_prompt: short,
                    long_prompt: long,
                    output_tokens: out,
                    short_requests: twice_the_pool(short),
                    long_requests: twice_the_pool(long),
                    mixed_requests: twice_the_pool((short + long) / 2),
                }
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CaseSpec {
    pub name: String,
    pub num_requests: usize,
    pub prompt_lengths: Lengths,
    /// Tokens each request generates (end-of-sequence is ignored, so that
    /// output lengths, and thus KV growth, follow the workload).
    pub output_lengths: Lengths,
    pub arrival: Arrival,
    /// Tokens of a system prompt every request starts with (0: none).
    pub shared_prefix_tokens: usize,
    pub seed: u64,
}

/// One request of a generated workload.
#[derive(Clone, Debug)]
pub struct WorkloadRequest {
    pub index: usize,
    pub arrival: Seconds,
    /// Synthetic prompts are drawn on first read (see [`Prompt`]).
    pub prompt: Prompt,
    pub max_tokens: usize,
}

/// Where prompt tokens come from.
pub enum PromptSource<'a> {
    /// Prose from kvscope's seeded generator, tokenized by the model's
    /// tokenizer and cut to the exact length.
    Generated { tokenize: &'a dyn Fn(&str) -> Vec<TokenId> },
    /// Texts from a dataset file, in order (cycled if too few), tokenized
    /// and cut or extended with generated prose to the exact length.
    Dataset { tokenize: &'a dyn Fn(&str) -> Vec<TokenId>, texts: &'a [String] },
    /// Random token ids below `vocab`, with a distinct first token per
    /// request so that no two prompts share a prefix by accident (the
    /// simulator, which needs no text).
    Synthetic { vocab: u32 },
}

impl CaseSpec {
    /// The named case `name` at `scale` (see [`CASE_NAMES`]).
    pub fn named(name: &str, scale: Scale, pool_tokens: usize, seed: u64) -> Option<CaseSpec> {
        standard_cases(scale, pool_tokens, seed).into_iter().find(|c| c.name == name)
    }

    /// A custom case: prompt and output lengths uniform in the given
    /// inclusive ranges, no shared prefix.
    pub fn uniform(
        name: &str,
        num_requests: usize,
        prompt: (usize, usize),
        output: (usize, usize),
        arrival: Arrival,
        seed: u64,
    ) -> CaseSpec {
        CaseSpec {
            name: name.into(),
            num_requests,
            prompt_lengths: Lengths::Uniform { min: prompt.0, max: prompt.1 },
            output_lengths: Lengths::Uniform { min: output.0, max: output.1 },
            arrival,
            shared_prefix_tokens: 0,
            seed,
        }
    }

    /// Builds the requests, in arrival order.
    pub fn generate(&self, source: &PromptSource) -> Vec<WorkloadRequest> {
        self.requests(source).collect()
    }

    /// The requests one by one, in arrival order, drawn as they are taken
    /// (a simulation of 100,000 long prompts never holds them all).
    pub fn requests<'a>(&'a self, source: &'a PromptSource<'a>) -> impl Iterator<Item = WorkloadRequest> + 'a {
        let mut rng = Rng::new(self.seed);
        let prefix: Arc<[TokenId]> = self.shared_prefix(source).into();
        let mut t = 0.0;
        (0..self.num_requests).map(move |i| {
            let len = self.prompt_lengths.draw(i, &mut rng).max(prefix.len() + 1);
            let own = len - prefix.len();
            let prompt = match source {
                PromptSource::Generated { tokenize } => {
                    let text = passage(&mut rng, own);
                    [&prefix[..], &exact_tokens(*tokenize, &text, own, &mut rng)].concat().into()
                }
                PromptSource::Dataset { tokenize, texts } => {
                    let text = if texts.is_empty() { passage(&mut rng, own) } else { texts[i % texts.len()].clone() };
                    [&prefix[..], &exact_tokens(*tokenize, &text, own, &mut rng)].concat().into()
                }
                // Drawn when the engine first reads them: 100,000 waiting
                // prompts of 4,096 tokens would otherwise hold 1.6 GB.
                PromptSource::Synthetic { vocab } => {
                    let vocab = (*vocab).max(2);
                    let first = (i as u64 % u64::from(vocab)) as TokenId;
                    Prompt::random(len, RandomTokens { prefix: prefix.clone(), first, vocab, seed: rng.next_u64() })
                }
            };
            let max_tokens = self.output_lengths.draw(i, &mut rng);
            if i > 0 {
                t += self.arrival.gap(&mut rng);
            }
            WorkloadRequest { index: i, arrival: t, prompt, max_tokens }
        })
    }

    /// The system prompt every request starts with (empty when none).
    fn shared_prefix(&self, source: &PromptSource) -> Vec<TokenId> {
        if self.shared_prefix_tokens == 0 {
            return Vec::new();
        }
        let mut rng = Rng::new(self.seed ^ 0x5157_u64);
        match source {
            PromptSource::Generated { tokenize } | PromptSource::Dataset { tokenize, .. } => {
                let mut text = String::from("You are a careful assistant for a small coastal town. Background:\n");
                text.push_str(&passage(&mut rng, self.shared_prefix_tokens));
                exact_tokens(*tokenize, &text, self.shared_prefix_tokens, &mut rng)
            }
            PromptSource::Synthetic { vocab } => {
                let vocab = (*vocab).max(2);
                (0..self.shared_prefix_tokens).map(|_| rng.below(vocab as usize) as TokenId).collect()
            }
        }
    }
}

/// Tokens of `text`, extended with more generated prose until there are
/// `n`, then cut to exactly `n`.
fn exact_tokens(tokenize: &dyn Fn(&str) -> Vec<TokenId>, text: &str, n: usize, rng: &mut Rng) -> Vec<TokenId> {
    let mut text = text.to_string();
    loop {
        let mut ids = tokenize(&text);
        if ids.len() >= n {
            ids.truncate(n);
            return ids;
        }
        text.push(' ');
        text.push_str(&passage(rng, n - ids.len()));
    }
}

/// The lab's three capacity cases at `scale`; `pool_tokens` sizes the
/// `Gpu` scale.
pub fn standard_cases(scale: Scale, pool_tokens: usize, seed: u64) -> Vec<CaseSpec> {
    let s = scale.sizes(pool_tokens);
    let output_lengths = Lengths::Fixed { tokens: s.output_tokens };
    let case = |name: &str, num_requests, prompt_lengths, seed| CaseSpec {
        name: name.into(),
        num_requests,
        prompt_lengths,
        output_lengths: output_lengths.clone(),
        arrival: Arrival::AllAtOnce,
        shared_prefix_tokens: 0,
        seed,
    };
    vec![
        case(
            "short_ctx",
            s.short_requests,
            Lengths::Around { tokens: s.short_prompt, jitter: s.short_prompt / 4 },
            seed,
        ),
        case(
            "long_ctx",
            s.long_requests,
            Lengths::Around { tokens: s.long_prompt, jitter: s.long_prompt / 8 },
            seed + 1,
        ),
        case(
            "mixed_ctx",
            s.mixed_requests,
            Lengths::Alternating { first: s.long_prompt, second: s.short_prompt },
            seed + 2,
        ),
    ]
}

/// The prefix-sharing variant: every request starts with the same long
/// system prompt, so prefix reuse can happen.
pub fn shared_prefix_case(scale: Scale, seed: u64) -> CaseSpec {
    let (n, prefix, own, out, rate) = match scale {
        Scale::Quick => (8, 128, 32, 8, 4.0),
        Scale::Lab => (24, 512, 96, 32, 2.0),
        Scale::Gpu => (256, 2048, 256, 128, 20.0),
    };
    CaseSpec {
        name: "shared_prefix".into(),
        num_requests: n,
        prompt_lengths: Lengths::Around { tokens: prefix + own, jitter: own / 2 },
        output_lengths: Lengths::Fixed { tokens: out },
        arrival: Arrival::Poisson { rate },
        shared_prefix_tokens: prefix,
        seed: seed + 3,
    }
}

/// The fleet experiment's case name (see [`ChatsCase`]).
pub const CHATS_CASE: &str = "shared_prefix_chats";

/// `shared_prefix_chats`: several conversations, each with its own long
/// system prompt and several user turns. Turn k's prompt is the
/// conversation's system prompt and its user turns 1..=k, so each turn
/// extends the last one's prefix; the model's answers are not replayed, so
/// every prompt is known before the run and the same in the lab, the
/// simulator and the fleet. Requests go turn by turn (turn 1 of every
/// conversation, then turn 2, ...), one after another: where a
/// conversation's next turn lands is then the router's choice alone.
/// Conversations are odd in number, so round-robin over an even number of
/// replicas does not keep a conversation on one replica by coincidence.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatsCase {
    pub name: String,
    pub conversations: usize,
    pub turns: usize,
    /// Size of each system prompt and each user turn, in words of prose
    /// (about 1.3 tokens each with SmolLM2's tokenizer).
    pub system_words: usize,
    pub turn_words: usize,
    pub output_tokens: usize,
    /// Mean requests per second when the simulator replays the case open
    /// loop (Poisson arrivals in send order); the fleet test sends each
    /// turn after the last one's answer instead.
    pub rate: f64,
    pub seed: u64,
}

/// One request of [`ChatsCase`], in send order.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatTurn {
    pub conversation: usize,
    pub turn: usize,
    pub prompt: String,
    pub max_tokens: usize,
}

impl ChatsCase {
    pub fn at(scale: Scale, seed: u64) -> ChatsCase {
        let (conversations, turns, system_words, turn_words, output_tokens, rate) = match scale {
            Scale::Quick => (3, 3, 120, 16, 4, 2.0),
            Scale::Lab => (5, 4, 400, 48, 32, 1.0),
            Scale::Gpu => (33, 8, 1600, 200, 128, 20.0),
        };
        let name = CHATS_CASE.into();
        ChatsCase { name, conversations, turns, system_words, turn_words, output_tokens, rate, seed }
    }

    /// The turns as token requests, with Poisson arrivals at `rate` in send
    /// order: the texts tokenized, or (synthetic) random ids of the same
    /// shape, a word standing for a token.
    pub fn requests(&self, source: &PromptSource) -> Vec<WorkloadRequest> {
        let turns = self.turns();
        let arrivals = Arrival::Poisson { rate: self.rate }.times(turns.len(), self.seed);
        let prompts: Vec<Vec<TokenId>> = match source {
            PromptSource::Generated { tokenize } | PromptSource::Dataset { tokenize, .. } => {
                turns.iter().map(|t| tokenize(&t.prompt)).collect()
            }
            PromptSource::Synthetic { vocab } => self.synthetic_prompts((*vocab).max(2)),
        };
        prompts
            .into_iter()
            .zip(arrivals)
            .enumerate()
            .map(|(index, (prompt, arrival))| WorkloadRequest {
                index,
                arrival,
                prompt: prompt.into(),
                max_tokens: self.output_tokens,
            })
            .collect()
    }

    /// Random ids shaped like [`Self::turns`]: per conversation a system
    /// prompt of `system_words` ids and turns of `turn_words`, each turn's
    /// prompt the system prompt and the turns so far.
    fn synthetic_prompts(&self, vocab: u32) -> Vec<Vec<TokenId>> {
        let mut rng = Rng::new(self.seed ^ 0xc4a7);
        let mut draw = |n: usize| -> Vec<TokenId> { (0..n).map(|_| rng.below(vocab as usize) as TokenId).collect() };
        let histories: Vec<Vec<Vec<TokenId>>> = (0..self.conversations)
            .map(|_| {
                std::iter::once(self.system_words)
                    .chain(std::iter::repeat_n(self.turn_words, self.turns))
                    .map(&mut draw)
                    .collect()
            })
            .collect();
        (0..self.turns).flat_map(|turn| histories.iter().map(move |h| h[..turn + 2].concat())).collect()
    }

    /// Every turn's prompt text, in send order.
    pub fn turns(&self) -> Vec<ChatTurn> {
        let mut rng = Rng::new(self.seed ^ 0xc4a7);
        let histories: Vec<Vec<String>> = (0..self.conversations)
            .map(|c| {
                let system = format!(
                    "System: you are assistant {c} of {}, and you answer from this background only.\n{}",
                    self.name,
                    passage(&mut rng, self.system_words)
                );
                let users = (0..self.turns).map(|_| format!("\nUser: {}", passage(&mut rng, self.turn_words)));
                std::iter::once(system).chain(users).collect()
            })
            .collect();
        let mut out = Vec::with_capacity(self.conversations * self.turns);
        for turn in 0..self.turns {
            for (conversation, history) in histories.iter().enumerate() {
                let prompt = format!("{}\nAssistant:", history[..turn + 2].concat());
                out.push(ChatTurn { conversation, turn, prompt, max_tokens: self.output_tokens });
            }
        }
        out
    }
}

/// Lets `rand_distr` draw from kvscope's one seeded generator.
struct RandAdapter<'a>(&'a mut Rng);

impl rand::RngCore for RandAdapter<'_> {
    fn next_u32(&mut self) -> u32 {
        (self.0.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            chunk.copy_from_slice(&self.0.next_u64().to_le_bytes()[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<TokenId> {
        text.split_whitespace().map(|w| w.len() as TokenId).collect()
    }

    #[test]
    fn prompts_have_exact_lengths_and_are_reproducible() {
        let case = &standard_cases(Scale::Quick, 0, 7)[2];
        let source = PromptSource::Generated { tokenize: &words };
        let a = case.generate(&source);
        let b = case.generate(&source);
        assert_eq!(a.len(), 8);
        assert_eq!(a[0].prompt.len(), 384);
        assert_eq!(a[1].prompt.len(), 48);
        assert!(a.iter().zip(&b).all(|(x, y)| x.prompt == y.prompt && x.arrival == y.arrival));
    }

    #[test]
    fn shared_prefix_case_shares_its_prefix() {
        for source in [PromptSource::Generated { tokenize: &words }, PromptSource::Synthetic { vocab: 1000 }] {
            let reqs = shared_prefix_case(Scale::Quick, 1).generate(&source);
            assert!(reqs.iter().all(|r| r.prompt[..128] == reqs[0].prompt[..128]));
            assert!(reqs.windows(2).all(|w| w[1].arrival > w[0].arrival));
        }
    }

    #[test]
    fn synthetic_prompts_share_no_first_token_and_stay_in_vocab() {
        let case = CaseSpec {
            prompt_lengths: Lengths::Uniform { min: 10, max: 20 },
            output_lengths: Lengths::Uniform { min: 1, max: 5 },
            arrival: Arrival::from_rate(10.0, 0.5),
            ..CaseSpec::named("short_ctx", Scale::Quick, 0, 3).unwrap()
        };
        let reqs = case.generate(&PromptSource::Synthetic { vocab: 50 });
        assert!(reqs.iter().all(|r| (10..=20).contains(&r.prompt.len()) && (1..=5).contains(&r.max_tokens)));
        assert!(reqs.iter().all(|r| r.prompt.iter().all(|&t| t < 50)));
        assert!(reqs.iter().enumerate().all(|(i, r)| r.prompt[0] == i as u32));
        assert!(reqs.windows(2).all(|w| w[1].arrival >= w[0].arrival) && reqs.last().unwrap().arrival > 0.0);
    }

    #[test]
    fn gamma_arrivals_keep_their_mean_rate_and_burstiness_shows_in_the_gaps() {
        let gaps = |shape: f64| -> Vec<f64> {
            let t = Arrival::from_rate(10.0, shape).times(20_001, 9);
            t.windows(2).map(|w| w[1] - w[0]).collect()
        };
        let cv = |g: &[f64]| {
            let mean = g.iter().sum::<f64>() / g.len() as f64;
            let var = g.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / g.len() as f64;
            (mean, var.sqrt() / mean)
        };
        let (poisson_mean, poisson_cv) = cv(&gaps(1.0));
        let (bursty_mean, bursty_cv) = cv(&gaps(0.25));
        // Mean gap 1/rate either way; coefficient of variation 1/sqrt(shape).
        assert!((poisson_mean - 0.1).abs() < 0.005 && (bursty_mean - 0.1).abs() < 0.01);
        assert!((poisson_cv - 1.0).abs() < 0.05 && (bursty_cv - 2.0).abs() < 0.15, "{poisson_cv} {bursty_cv}");
        assert_eq!(Arrival::from_rate(f64::INFINITY, 1.0).times(3, 1), vec![0.0; 3]);
    }

    #[test]
    fn each_chat_turn_extends_its_conversations_last_prompt() {
        let case = ChatsCase::at(Scale::Quick, 5);
        let turns = case.turns();
        assert_eq!(turns.len(), case.conversations * case.turns);
        assert_eq!(turns, ChatsCase::at(Scale::Quick, 5).turns(), "reproducible");
        for t in &turns {
            assert_eq!(
                t.conversation,
                turns.iter().position(|u| u == t).unwrap() % case.conversations,
                "turn-major order"
            );
            if t.turn > 0 {
                let prev = turns.iter().find(|u| u.conversation == t.conversation && u.turn == t.turn - 1).unwrap();
                let shared = prev.prompt.strip_suffix("\nAssistant:").unwrap();
                assert!(
                    t.prompt.starts_with(shared),
                    "turn {} of {} extends turn {}",
                    t.turn,
                    t.conversation,
                    prev.turn
                );
            }
        }
        let first_words = |c: usize| turns[c].prompt.split_whitespace().take(12).collect::<Vec<_>>();
        assert_ne!(first_words(0), first_words(1), "each conversation has its own system prompt");
        assert_eq!(case.conversations % 2, 1);
    }

    #[test]
    fn the_gpu_scale_offers_about_twice_the_pool() {
        let s = Scale::Gpu.sizes(100_000);
        assert_eq!(s.long_requests, 2 * 100_000 / (4096 + 128));
        assert_eq!(Scale::Lab.sizes(100_000), Scale::Lab.sizes(0));
    }
}
