//! Random prompts drawn on first read: waiting requests hold no tokens, and
//! a drawn prompt runs exactly like the same tokens given outright.

mod common;

use common::{rig, run_to_end, run_to_end_observing, VOCAB};
use kvscope_core::{Prompt, RandomTokens, RequestId, SamplingParams, Sequence, SubmitError};
use std::sync::Arc;

fn random_prompt(i: u64, len: usize, vocab: u32) -> Prompt {
    let recipe = RandomTokens { prefix: Arc::from(vec![3, 1, 4]), first: i as u32 % vocab, vocab, seed: 1000 + i };
    Prompt::random(len, recipe)
}

fn params() -> SamplingParams {
    SamplingParams { ignore_eos: true, ..SamplingParams::greedy(6) }
}

#[test]
fn only_the_head_of_the_waiting_queue_has_drawn_its_prompt() {
    let mut r = rig(16, 4, true, 2, 64);
    for i in 0..200 {
        r.engine.submit_at(RequestId(i), random_prompt(i, 9 + i as usize % 13, VOCAB), params(), 0.0).unwrap();
    }
    let drawn_while_waiting = |r: &common::Rig| {
        let s = r.engine.scheduler();
        s.waiting_ids().filter(|&id| s.sequence(id).is_some_and(|seq| seq.prompt.is_drawn())).count()
    };
    assert_eq!(drawn_while_waiting(&r), 0, "submission checks the vocabulary without drawing");
    let mut most = 0;
    let done = run_to_end_observing(&mut r, |r| most = most.max(drawn_while_waiting(r)));
    assert_eq!(done.len(), 200);
    assert!(most <= 1, "{most} waiting requests held their tokens at once; only the head is ever read");
}

#[test]
fn a_drawn_prompt_runs_exactly_like_the_same_tokens_given() {
    let mut lazy = rig(24, 4, true, 3, 16);
    let mut given = rig(24, 4, true, 3, 16);
    for i in 0..30 {
        let prompt = random_prompt(i % 7, 6 + (i as usize * 5) % 17, VOCAB);
        given.engine.submit_at(RequestId(i), prompt.to_vec(), params(), 0.0).unwrap();
        lazy.engine.submit_at(RequestId(i), prompt, params(), 0.0).unwrap();
    }
    let outputs = |done: Vec<Sequence>| done.into_iter().map(|s| (s.id, s.output)).collect::<Vec<_>>();
    assert_eq!(outputs(run_to_end(&mut lazy)), outputs(run_to_end(&mut given)));
    let events =
        |r: &common::Rig| r.recorder.lock().unwrap().events.iter().map(|e| format!("{e:?}")).collect::<Vec<_>>();
    assert_eq!(events(&lazy), events(&given), "the same events, prefix hits included");
}

#[test]
fn a_random_prompt_from_a_larger_vocabulary_is_refused_at_submission() {
    let mut r = rig(16, 4, true, 2, 64);
    let err = r.engine.submit_at(RequestId(1), random_prompt(1, 40, 50 * VOCAB), params(), 0.0).unwrap_err();
    assert!(matches!(err, SubmitError::TokenOutOfVocab { vocab_size, .. } if vocab_size == VOCAB as usize));
    assert!(!r.engine.has_work(), "nothing was queued");
}
