//! One request's output as text pieces: engine tokens go through the
//! streaming detokenizer and the stop-string matcher. Streaming and
//! non-streaming answers both read this, so they cannot disagree.

use crate::detok::IncrementalDetokenizer;
use crate::engine_loop::{Finish, Submitted, Update};
use crate::model::TextModel;
use crate::stop::StopMatcher;
use kvscope_core::{FinishReason, PromptLogprob, SampledToken, TokenId};
use std::sync::Arc;

/// A piece of the answer: the text that became final, the token that
/// produced it (if any), and the end once it comes — or, before any of
/// that, scores of prompt positions as the engine computes them.
#[derive(Debug, Default)]
pub struct Piece {
    pub text: String,
    pub token: Option<SampledToken>,
    pub finish: Option<Finish>,
    pub prompt_scores: Vec<PromptLogprob>,
}

pub struct Generation {
    submitted: Submitted,
    model: Arc<dyn TextModel>,
    detok: IncrementalDetokenizer,
    stop: StopMatcher,
    stop_token_ids: Vec<TokenId>,
    ignore_eos: bool,
    prompt_tokens: usize,
    output_tokens: usize,
    done: bool,
}

impl Generation {
    pub fn new(
        submitted: Submitted,
        model: Arc<dyn TextModel>,
        stop: Vec<String>,
        stop_token_ids: Vec<TokenId>,
        ignore_eos: bool,
        prompt_tokens: usize,
    ) -> Self {
        Generation {
            submitted,
            model,
            detok: IncrementalDetokenizer::new(),
            stop: StopMatcher::new(stop),
            stop_token_ids,
            ignore_eos,
            prompt_tokens,
            output_tokens: 0,
            done: false,
        }
    }

    pub fn request_id(&self) -> kvscope_core::RequestId {
        self.submitted.id
    }

    /// The next piece, or `None` after the end. An executor failure is an
    /// `Err` with its message.
    pub async fn next(&mut self) -> Option<Result<Piece, String>> {
        if self.done {
            return None;
        }
        let update = match self.submitted.updates.recv().await {
            Some(update) => update,
            None => {
                self.done = true;
                return Some(Err("the engine stopped".into()));
            }
        };
        Some(Ok(match update {
            Update::PromptScores(scores) => Piece { prompt_scores: scores, ..Piece::default() },
            Update::Token(token) => {
                self.output_tokens += 1;
                let is_stop_token = !self.ignore_eos && self.stop_token_ids.contains(&token.token);
                let text = if is_stop_token { String::new() } else { self.detok.push(&*self.model, token.token) };
                let (text, stopped) = self.stop.push(&text);
                if stopped {
                    // The engine does not know about stop strings: end it here.
                    self.submitted.stop();
                    self.done = true;
                    let finish = Finish {
                        reason: FinishReason::Stop,
                        prompt_tokens: self.prompt_tokens,
                        output_tokens: self.output_tokens,
                        cached_tokens: 0,
                    };
                    Piece { text, token: Some(token), finish: Some(finish), ..Piece::default() }
                } else {
                    Piece { text, token: Some(token), ..Piece::default() }
                }
            }
            Update::Finished(finish) => {
                self.submitted.mark_done();
                self.done = true;
                let rest = self.detok.flush(&*self.model);
                let (mut text, stopped) = self.stop.push(&rest);
                text.push_str(&self.stop.flush());
                let mut finish = finish;
                if stopped {
                    finish.reason = FinishReason::Stop;
                }
                Piece { text, finish: Some(finish), ..Piece::default() }
            }
            Update::Failed(message) => {
                self.submitted.mark_done();
                self.done = true;
                return Some(Err(message));
            }
        }))
    }
}
