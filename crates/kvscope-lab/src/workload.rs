//! The lab's workloads: how many requests, how long their prompts are, how
//! many tokens each generates, and when each arrives. Deterministic under a
//! seed.

use crate::textgen::{passage, Rng};
use kvscope_core::TokenId;
use serde::Serialize;

/// When requests arrive.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Arrival {
    /// Everyone at t = 0: the offered concurrency is the number of requests.
    Burst,
    /// A Poisson process at `rate` requests per second.
    Poisson { rate: f64 },
}

/// Prompt lengths of a case, in tokens.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PromptLengths {
    /// Every prompt about `tokens` long (±`jitter` tokens).
    Around { tokens: usize, jitter: usize },
    /// Long and short prompts interleaved: long, short, long, short, …
    Interleaved { long: usize, short: usize },
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseSpec {
    pub name: String,
    pub num_requests: usize,
    pub prompt_lengths: PromptLengths,
    /// Tokens each request generates (the lab ignores end-of-sequence so
    /// that output lengths, and thus KV growth, follow the workload).
    pub output_tokens: usize,
    pub arrival: Arrival,
    /// Tokens of a system prompt every request starts with (0: none).
    pub shared_prefix_tokens: usize,
    pub seed: u64,
}

/// One request of a generated workload.
#[derive(Clone, Debug)]
pub struct LabRequest {
    pub index: usize,
    pub arrival: f64,
    pub prompt: Vec<TokenId>,
    pub max_tokens: usize,
}

/// Where prompt text comes from.
pub enum TextSource<'a> {
    /// kvscope's seeded prose generator.
    Generated,
    /// Texts from a dataset file, used in order (cycled if too few).
    Dataset(&'a [String]),
}

impl CaseSpec {
    /// Nominal prompt length of request `i`.
    pub fn prompt_len(&self, i: usize, rng: &mut Rng) -> usize {
        match self.prompt_lengths {
            PromptLengths::Around { tokens, jitter } => {
                let j = if jitter == 0 { 0 } else { rng.below(2 * jitter + 1) };
                (tokens + j).saturating_sub(jitter).max(1)
            }
            PromptLengths::Interleaved { long, short } => {
                if i.is_multiple_of(2) {
                    long
                } else {
                    short
                }
            }
        }
    }

    /// Mean nominal prompt length, for tables.
    pub fn mean_prompt_len(&self) -> f64 {
        match self.prompt_lengths {
            PromptLengths::Around { tokens, .. } => tokens as f64,
            PromptLengths::Interleaved { long, short } => {
                let longs = self.num_requests.div_ceil(2);
                (long * longs + short * (self.num_requests - longs)) as f64 / self.num_requests.max(1) as f64
            }
        }
    }

    /// Builds the requests: real text, tokenized by the model's tokenizer and
    /// cut to the exact target length.
    pub fn generate(&self, tokenize: &dyn Fn(&str) -> Vec<TokenId>, source: &TextSource) -> Vec<LabRequest> {
        let mut rng = Rng::new(self.seed);
        let prefix = if self.shared_prefix_tokens > 0 {
            let mut sys_rng = Rng::new(self.seed ^ 0x5157_u64);
            let mut text = String::from("You are a careful assistant for a small coastal town. Background:\n");
            text.push_str(&passage(&mut sys_rng, self.shared_prefix_tokens));
            exact_tokens(tokenize, &text, self.shared_prefix_tokens, &mut sys_rng)
        } else {
            Vec::new()
        };
        let mut t = 0.0;
        (0..self.num_requests)
            .map(|i| {
                let len = self.prompt_len(i, &mut rng).max(prefix.len() + 1);
                let own = len - prefix.len();
                let text = match source {
                    TextSource::Generated => passage(&mut rng, own),
                    TextSource::Dataset(texts) if !texts.is_empty() => texts[i % texts.len()].clone(),
                    TextSource::Dataset(_) => passage(&mut rng, own),
                };
                let mut prompt = prefix.clone();
                prompt.extend(exact_tokens(tokenize, &text, own, &mut rng));
                if let Arrival::Poisson { rate } = self.arrival {
                    if i > 0 {
                        t += rng.exponential(rate);
                    }
                }
                LabRequest { index: i, arrival: t, prompt, max_tokens: self.output_tokens }
            })
            .collect()
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

/// The three cases of the lab, at full size or quick size.
pub fn standard_cases(quick: bool, seed: u64) -> Vec<CaseSpec> {
    let (short, long, n_short, n_long, n_mixed, out) =
        if quick { (48, 384, 10, 5, 8, 16) } else { (128, 1536, 32, 12, 24, 64) };
    vec![
        CaseSpec {
            name: "short_ctx".into(),
            num_requests: n_short,
            prompt_lengths: PromptLengths::Around { tokens: short, jitter: short / 4 },
            output_tokens: out,
            arrival: Arrival::Burst,
            shared_prefix_tokens: 0,
            seed,
        },
        CaseSpec {
            name: "long_ctx".into(),
            num_requests: n_long,
            prompt_lengths: PromptLengths::Around { tokens: long, jitter: long / 8 },
            output_tokens: out,
            arrival: Arrival::Burst,
            shared_prefix_tokens: 0,
            seed: seed + 1,
        },
        CaseSpec {
            name: "mixed_ctx".into(),
            num_requests: n_mixed,
            prompt_lengths: PromptLengths::Interleaved { long, short },
            output_tokens: out,
            arrival: Arrival::Burst,
            shared_prefix_tokens: 0,
            seed: seed + 2,
        },
    ]
}

/// The prefix-sharing variant: every request starts with the same long
/// system prompt, so prefix reuse can happen.
pub fn shared_prefix_case(quick: bool, seed: u64) -> CaseSpec {
    let (n, prefix, own, out) = if quick { (8, 128, 32, 8) } else { (24, 512, 96, 32) };
    CaseSpec {
        name: "shared_prefix".into(),
        num_requests: n,
        prompt_lengths: PromptLengths::Around { tokens: prefix + own, jitter: own / 2 },
        output_tokens: out,
        arrival: Arrival::Poisson { rate: if quick { 4.0 } else { 2.0 } },
        shared_prefix_tokens: prefix,
        seed: seed + 3,
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
        let case = &standard_cases(true, 7)[2];
        let a = case.generate(&words, &TextSource::Generated);
        let b = case.generate(&words, &TextSource::Generated);
        assert_eq!(a.len(), 8);
        assert_eq!(a[0].prompt.len(), 384);
        assert_eq!(a[1].prompt.len(), 48);
        assert!(a.iter().zip(&b).all(|(x, y)| x.prompt == y.prompt && x.arrival == y.arrival));
    }

    #[test]
    fn shared_prefix_case_shares_its_prefix() {
        let case = shared_prefix_case(true, 1);
        let reqs = case.generate(&words, &TextSource::Generated);
        assert!(reqs.iter().all(|r| r.prompt[..128] == reqs[0].prompt[..128]));
        assert!(reqs.windows(2).all(|w| w[1].arrival >= w[0].arrival));
    }
}
