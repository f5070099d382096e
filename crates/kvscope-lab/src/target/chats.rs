//! `shared_prefix_chats` (the fleet experiment's case, kvscope-experiment's
//! [`ChatsCase`]) as the target path sends it: text, because a gateway's
//! cache-aware policy matches request text, not token ids.
//!
//! The turns' texts are numbered word by word with the stand-in tokenizer
//! (words.rs), so the case runs through the same case runner and arrival
//! loop as every other, and the client sends them back as text: each turn
//! is its conversation's last turn plus one user message, so the texts
//! keep the case's shared prefixes. Prompt lengths in tokens are then the
//! engine's `usage.prompt_tokens`.

use kvscope_core::TokenId;
use kvscope_experiment::workload::{Arrival, CaseSpec, Lengths, PromptSource, Scale, WorkloadRequest};
use kvscope_experiment::ChatsCase;

/// The case's spec and requests at `scale`, drawn with `seed`; arrivals
/// at the case's own rate, or `rate` when given (`--arrival-rate`).
pub fn case(
    scale: Scale,
    seed: u64,
    rate: Option<f64>,
    tokenize: &dyn Fn(&str) -> Vec<TokenId>,
) -> (CaseSpec, Vec<WorkloadRequest>) {
    let mut chats = ChatsCase::at(scale, seed);
    if let Some(rate) = rate {
        chats.rate = rate;
    }
    let requests = chats.requests(&PromptSource::Generated { tokenize });
    let lengths: Vec<usize> = requests.iter().map(|r| r.prompt.len()).collect();
    let spec = CaseSpec {
        name: chats.name.clone(),
        num_requests: requests.len(),
        prompt_lengths: Lengths::Uniform {
            min: lengths.iter().copied().min().unwrap_or(0),
            max: lengths.iter().copied().max().unwrap_or(0),
        },
        output_lengths: Lengths::Fixed { tokens: chats.output_tokens },
        arrival: Arrival::Poisson { rate: chats.rate },
        shared_prefix_tokens: 0,
        seed,
    };
    (spec, requests)
}

#[cfg(test)]
mod tests {
    use crate::target::words::Words;

    #[test]
    fn each_turn_extends_its_conversations_last_turn_as_text() {
        let words = Words::default();
        let (spec, reqs) = super::case(kvscope_experiment::Scale::Quick, 7, None, &|t| words.tokenize(t));
        let chats = kvscope_experiment::ChatsCase::at(kvscope_experiment::Scale::Quick, 7);
        assert_eq!(reqs.len(), chats.conversations * chats.turns);
        assert_eq!(spec.name, kvscope_experiment::CHATS_CASE);
        let (first, second) = (words.text(&reqs[0].prompt), words.text(&reqs[chats.conversations].prompt));
        let kept = first.trim_end_matches("Assistant:");
        assert!(second.starts_with(kept), "turn 2 keeps turn 1's text as its prefix");
        assert!(reqs.windows(2).all(|w| w[1].arrival >= w[0].arrival));
    }
}
