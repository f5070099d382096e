//! The KV lifecycle, scenario by scenario: what a user of the engine sees.

mod common;

use common::{rig, run_to_end};
use kvscope_core::replay::Replay;
use kvscope_core::{
    FinishReason, KvBlockManager, KvEvent, ReleaseReason, RequestId, SamplingParams, StallReason, SubmitError,
};

fn greedy(max_tokens: usize) -> SamplingParams {
    SamplingParams { ignore_eos: true, ..SamplingParams::greedy(max_tokens) }
}

#[test]
fn prefill_decode_finish_releases_every_block() {
    let mut r = rig(16, 4, false, 8, 64);
    r.engine.submit(RequestId(1), (1..=10).collect(), greedy(5)).unwrap();
    let done = run_to_end(&mut r);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].output.len(), 5);
    assert_eq!(done[0].finish_reason(), Some(FinishReason::Length));
    assert_eq!(r.engine.scheduler().block_manager().used_blocks(), 0);
    let events = &r.recorder.lock().unwrap().events;
    let kinds: Vec<&str> = events.iter().map(|e| e.event.kind()).collect();
    assert_eq!(&kinds[..4], &["arrived", "admitted", "prefill", "first_token"]);
    // 10 prompt tokens use 3 blocks of 4; the 14th token needs a 4th.
    assert_eq!(kinds.iter().filter(|k| **k == "block_appended").count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == "decode").count(), 4);
    assert!(matches!(events[events.len() - 2].event, KvEvent::Released { reason: ReleaseReason::Finished, .. }));
    assert!(Replay::run(events.iter()).unwrap().held_blocks() == 0);
}

#[test]
fn stop_token_ends_generation_early() {
    let mut r = rig(16, 4, false, 8, 64);
    r.engine.submit(RequestId(1), vec![1, 2, 3], greedy(50)).unwrap();
    let first = run_to_end(&mut r).remove(0).output;
    // The same request, told that its 3rd token is a stop token.
    let mut r = rig(16, 4, false, 8, 64);
    let params = SamplingParams { stop_token_ids: vec![first[2]], ignore_eos: false, ..SamplingParams::greedy(50) };
    r.engine.submit(RequestId(1), vec![1, 2, 3], params).unwrap();
    let seq = run_to_end(&mut r).remove(0);
    assert_eq!(seq.output, first[..3]);
    assert_eq!(seq.finish_reason(), Some(FinishReason::Stop));
}

#[test]
fn requests_that_can_never_run_are_refused_at_submission() {
    let mut r = rig(4, 4, false, 8, 64);
    let err = r.engine.submit(RequestId(1), vec![1; 10], greedy(10)).unwrap_err();
    assert!(matches!(err, SubmitError::NeverFitsPool { needed_blocks: 5, total_blocks: 4, .. }), "{err}");
    assert!(err.to_string().contains("enlarge the KV pool"));
    let err = r.engine.submit(RequestId(2), vec![1; 4000], greedy(200)).unwrap_err();
    assert!(matches!(err, SubmitError::ContextExceeded { .. }));
    assert_eq!(r.engine.submit(RequestId(3), vec![], greedy(1)), Err(SubmitError::EmptyPrompt));
    assert!(matches!(
        r.engine.submit(RequestId(4), vec![common::VOCAB], greedy(1)),
        Err(SubmitError::TokenOutOfVocab { .. })
    ));
    let bad = SamplingParams { temperature: -1.0, ..greedy(1) };
    assert!(matches!(r.engine.submit(RequestId(5), vec![1], bad), Err(SubmitError::InvalidParams(_))));
    // Nothing was queued by any of them.
    assert!(!r.engine.has_work());
    // Exactly the pool is fine: 16 slots hold prompt + max_tokens - 1.
    r.engine.submit(RequestId(6), vec![1; 10], greedy(7)).unwrap();
    assert_eq!(run_to_end(&mut r).len(), 1);
}

#[test]
fn admission_stalls_name_their_reason() {
    // max_running = 1: the second request waits for the first.
    let mut r = rig(64, 4, false, 1, 64);
    r.engine.submit(RequestId(1), vec![1; 8], greedy(3)).unwrap();
    r.engine.submit(RequestId(2), vec![2; 8], greedy(3)).unwrap();
    r.engine.step().unwrap();
    assert_eq!(r.engine.scheduler().last_stall().unwrap().reason, StallReason::MaxRunning);

    // A pool too small for both prompts at once.
    let mut r = rig(4, 4, false, 8, 64);
    r.engine.submit(RequestId(1), vec![1; 12], greedy(2)).unwrap();
    r.engine.submit(RequestId(2), vec![2; 12], greedy(2)).unwrap();
    r.engine.step().unwrap();
    let stall = r.engine.scheduler().last_stall().unwrap();
    assert_eq!((stall.reason, stall.request_id, stall.needed_blocks), (StallReason::NoFreeBlocks, RequestId(2), 3));

    // A token budget smaller than the first prompt: chunked prefill.
    let mut r = rig(64, 4, false, 8, 5);
    r.engine.submit(RequestId(1), vec![1; 12], greedy(2)).unwrap();
    r.engine.submit(RequestId(2), vec![2; 3], greedy(2)).unwrap();
    r.engine.step().unwrap();
    assert_eq!(r.engine.scheduler().last_stall().unwrap().reason, StallReason::TokenBudget);
    let events = r.recorder.lock().unwrap().events.clone();
    assert!(events.iter().any(|e| matches!(e.event, KvEvent::Prefill { tokens: 5, computed: 5, .. })));
    run_to_end(&mut r);
}

#[test]
fn chunked_prefill_gives_the_same_tokens() {
    let prompt: Vec<u32> = (0..37).collect();
    let mut outputs = Vec::new();
    for budget in [1, 3, 16, 64] {
        let mut r = rig(32, 4, false, 4, budget);
        r.engine.submit(RequestId(9), prompt.clone(), greedy(6)).unwrap();
        outputs.push(run_to_end(&mut r).remove(0).output);
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]), "{outputs:?}");
}

#[test]
fn prefix_cache_reuses_blocks_after_finish_and_counts_hits() {
    let mut r = rig(32, 4, true, 4, 64);
    let shared: Vec<u32> = (100..120).collect(); // five full blocks
    let mut a = shared.clone();
    a.extend([1, 2]);
    let mut b = shared.clone();
    b.extend([3]);
    r.engine.submit(RequestId(1), a, greedy(3)).unwrap();
    run_to_end(&mut r);
    // 22 prompt + 3 output tokens, 24 with KV: six full blocks stay indexed.
    assert_eq!(r.engine.scheduler().block_manager().cached_free_blocks(), 6);
    r.engine.submit(RequestId(2), b.clone(), greedy(3)).unwrap();
    let seq = run_to_end(&mut r).remove(0);
    assert_eq!(seq.num_cached_prompt_tokens, 20);
    let counters = r.engine.scheduler().block_manager().counters();
    assert_eq!((counters.queried_tokens, counters.hit_tokens), (22 + 21, 20));

    // Same output as without the cache.
    let mut cold = rig(32, 4, false, 4, 64);
    cold.engine.submit(RequestId(2), b, greedy(3)).unwrap();
    assert_eq!(run_to_end(&mut cold).remove(0).output, seq.output);
}

#[test]
fn eviction_takes_the_least_recently_released_last_block_first() {
    let mut r = rig(6, 4, true, 4, 64);
    r.engine.submit(RequestId(1), (0..13).collect(), greedy(1)).unwrap(); // blocks for 13 tokens: 4
    run_to_end(&mut r);
    // Three full blocks are cached-free, three clean. A 16-token request with
    // other content needs 4: the clean ones go first, then one eviction.
    r.engine.submit(RequestId(2), (500..516).collect(), greedy(1)).unwrap();
    run_to_end(&mut r);
    let events = r.recorder.lock().unwrap().events.clone();
    let released_first: Vec<_> = events
        .iter()
        .find_map(|e| match &e.event {
            KvEvent::Released { request_id: RequestId(1), blocks, .. } => Some(blocks.clone()),
            _ => None,
        })
        .unwrap();
    let evicted: Vec<_> = events
        .iter()
        .filter_map(|e| match e.event {
            KvEvent::Evicted { block } => Some(block),
            _ => None,
        })
        .collect();
    assert_eq!(evicted, vec![released_first[2]], "the last full block of request 1 is evicted first");
    // Request 1's first two blocks are still reusable.
    r.engine.submit(RequestId(3), (0..9).collect(), greedy(1)).unwrap();
    assert_eq!(run_to_end(&mut r).remove(0).num_cached_prompt_tokens, 8);
}

#[test]
fn preemption_recomputes_and_changes_nothing() {
    // A pool that fits both prompts but not both generations.
    let run = |num_blocks| {
        let mut r = rig(num_blocks, 4, false, 8, 64);
        r.engine.submit(RequestId(1), (0..8).collect(), greedy(12)).unwrap();
        r.engine.submit(RequestId(2), (50..58).collect(), greedy(12)).unwrap();
        let mut done = run_to_end(&mut r);
        done.sort_by_key(|s| s.id);
        let preemptions = r.engine.scheduler().num_preemptions();
        (done.into_iter().map(|s| (s.output, s.preemptions)).collect::<Vec<_>>(), preemptions, r)
    };
    let (roomy, p0, _) = run(64);
    let (tight, p1, r) = run(7);
    assert_eq!(p0, 0);
    assert!(p1 > 0);
    assert_eq!(roomy[0].0, tight[0].0);
    assert_eq!(roomy[1].0, tight[1].0);
    // The most recently admitted request was the victim.
    assert!(tight[1].1 > 0 && tight[0].1 == 0);
    let events = r.recorder.lock().unwrap().events.clone();
    let replay = Replay::run(events.iter()).unwrap();
    assert_eq!(replay.preemptions as u64, p1);
    assert_eq!(replay.held_blocks(), 0);
}

#[test]
fn abort_releases_blocks_at_any_time() {
    let mut r = rig(32, 4, true, 8, 64);
    r.engine.submit(RequestId(1), (0..10).collect(), greedy(20)).unwrap();
    r.engine.submit(RequestId(2), (0..10).collect(), greedy(20)).unwrap();
    r.engine.step().unwrap();
    r.engine.step().unwrap();
    let aborted = r.engine.abort(RequestId(1)).unwrap();
    assert_eq!(aborted.finish_reason(), Some(FinishReason::Abort));
    assert!(aborted.kv.block_table.is_empty());
    assert!(r.engine.abort(RequestId(1)).is_none(), "aborting twice is a no-op");
    r.engine.scheduler().check_invariants().unwrap();
    // Abort while waiting.
    r.engine.submit(RequestId(3), (0..10).collect(), greedy(20)).unwrap();
    r.engine.abort(RequestId(3)).unwrap();
    run_to_end(&mut r);
    assert_eq!(r.engine.scheduler().block_manager().used_blocks(), 0);
    let events = r.recorder.lock().unwrap().events.clone();
    assert!(events.iter().any(|e| matches!(
        e.event,
        KvEvent::Released { request_id: RequestId(1), reason: ReleaseReason::Aborted, .. }
    )));
    assert!(events
        .iter()
        .any(|e| matches!(e.event, KvEvent::Finished { request_id: RequestId(3), reason: FinishReason::Abort, .. })));
}

#[test]
fn seeded_sampling_does_not_depend_on_batching() {
    let params =
        |seed| SamplingParams { seed: Some(seed), temperature: 1.0, ignore_eos: true, ..SamplingParams::greedy(8) };
    let mut alone = rig(64, 4, false, 8, 64);
    alone.engine.submit(RequestId(1), vec![5; 9], params(42)).unwrap();
    let a = run_to_end(&mut alone).remove(0).output;
    let mut together = rig(64, 4, false, 8, 64);
    together.engine.submit(RequestId(7), vec![6; 3], params(1)).unwrap();
    together.engine.submit(RequestId(1), vec![5; 9], params(42)).unwrap();
    let done = run_to_end(&mut together);
    assert_eq!(done.iter().find(|s| s.id == RequestId(1)).unwrap().output, a);
}

#[test]
fn queue_wait_and_ttft_come_from_the_timeline() {
    let mut r = rig(64, 4, false, 1, 64);
    r.engine.submit(RequestId(1), vec![1; 4], greedy(3)).unwrap();
    r.engine.submit(RequestId(2), vec![2; 4], greedy(3)).unwrap();
    let done = run_to_end(&mut r);
    let events = r.recorder.lock().unwrap().events.clone();
    let replay = Replay::run(events.iter()).unwrap();
    for seq in &done {
        assert_eq!(seq.timeline.queue_wait(), replay.queue_wait(seq.id));
        assert_eq!(seq.timeline.ttft(), replay.ttft(seq.id));
    }
}

/// The step at which each request got its first token, for a 96-token
/// prompt submitted first and a 4-token one submitted one step later.
fn first_token_steps(cap: usize) -> (u64, u64, Vec<u32>) {
    let mut r = common::rig_capped(64, 4, false, 8, 32, cap);
    r.engine.submit(RequestId(1), (0..96).collect(), greedy(3)).unwrap();
    let mut first = std::collections::BTreeMap::new();
    let mut long_output = Vec::new();
    for step in 1..100u64 {
        if step == 2 {
            r.engine.submit(RequestId(2), vec![7, 8, 9, 10], greedy(3)).unwrap();
        }
        let outcome = r.engine.step().unwrap();
        for (id, _) in &outcome.new_tokens {
            first.entry(id.0).or_insert(step);
        }
        for seq in outcome.finished {
            if seq.id == RequestId(1) {
                long_output = seq.output;
            }
        }
        r.engine.scheduler().check_invariants().unwrap();
        if !r.engine.has_work() {
            break;
        }
    }
    (first[&1], first[&2], long_output)
}

#[test]
fn a_long_prefill_cap_admits_a_short_request_between_chunks() {
    // No cap: the long prompt takes the whole 32-token budget for three
    // steps, and the short request waits until its prefill is done.
    let (long, short, uncapped) = first_token_steps(0);
    assert_eq!(long, 3);
    assert!(short > long, "without a cap the short request waits: {short} vs {long}");
    // Cap 8: the long prompt takes 8 tokens a step while the short one is
    // around, so the short one is admitted at once and answers first.
    let (long, short, capped) = first_token_steps(8);
    assert_eq!(short, 2, "the short request is admitted in the step it arrives");
    assert!(long > short);
    assert_eq!(capped, uncapped, "the cap changes the chunking, not the tokens");
}

/// Two 96-token prompts and then a 4-token one, all submitted before the
/// first step, with a long-prefill cap of 16 in a 32-token budget and a
/// partial-prefill limit of `limit`: the step of each request's first
/// token, the outputs, and the stall reasons seen.
fn behind_two_long_prompts(limit: usize) -> (Vec<u64>, Vec<Vec<u32>>, Vec<StallReason>) {
    let mut r = common::rig_limited(128, 4, false, 8, 32, 16, limit);
    r.engine.submit(RequestId(0), (0..96).collect(), greedy(3)).unwrap();
    r.engine.submit(RequestId(1), (100..196).collect(), greedy(3)).unwrap();
    r.engine.submit(RequestId(2), vec![7, 8, 9, 10], greedy(3)).unwrap();
    let mut first = std::collections::BTreeMap::new();
    let mut outputs = std::collections::BTreeMap::new();
    for step in 1..100u64 {
        let outcome = r.engine.step().unwrap();
        for (id, _) in &outcome.new_tokens {
            first.entry(id.0).or_insert(step);
        }
        for seq in outcome.finished {
            outputs.insert(seq.id.0, seq.output);
        }
        r.engine.scheduler().check_invariants().unwrap();
        if !r.engine.has_work() {
            break;
        }
    }
    let stalls = r
        .recorder
        .lock()
        .unwrap()
        .events
        .iter()
        .filter_map(|e| match e.event {
            KvEvent::Stalled { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    (first.into_values().collect(), outputs.into_values().collect(), stalls)
}

#[test]
fn a_partial_prefill_limit_lets_a_short_request_past_two_long_prompts() {
    // No limit: both long prompts take 16 tokens a step until their
    // prefills are done, and the short one waits for the budget.
    let (unlimited, outputs, stalls) = behind_two_long_prompts(0);
    assert_eq!(unlimited, vec![6, 6, 7]);
    assert!(stalls.iter().all(|r| *r == StallReason::TokenBudget), "{stalls:?}");
    // Limit 1: the second long prompt would be left part-way, so it waits
    // (a stall of its own reason); the short one, done in one step, is
    // admitted past it and answers at once.
    let (limited, limited_outputs, stalls) = behind_two_long_prompts(1);
    assert_eq!(limited[2], 1, "the short request gets its first token in the first step: {limited:?}");
    assert!(limited[1] > limited[0], "the second long prompt starts after the first: {limited:?}");
    assert!(stalls.contains(&StallReason::MaxPartialPrefills), "{stalls:?}");
    assert_eq!(limited_outputs, outputs, "the limit changes the order, not the tokens");
}

/// Prompt scores of a 40-token prompt (k = 2) under a budget of `budget`
/// tokens and a pool of `num_blocks` blocks of 4, behind a request that
/// decodes 40 tokens (admitted first, so the scored one is preempted when
/// the pool runs out): what each step handed out, what the finished
/// sequence kept, and whether a preemption happened.
type Scores = Vec<kvscope_core::PromptLogprob>;
fn prompt_scores(budget: usize, num_blocks: usize, keep: bool) -> (Vec<Vec<usize>>, Scores, bool) {
    let mut r = common::rig(num_blocks, 4, false, 4, budget);
    r.engine.set_keep_prompt_logprobs(keep);
    r.engine.submit(RequestId(2), (500..504).collect(), greedy(40)).unwrap();
    let params = SamplingParams { prompt_logprobs: Some(2), ..greedy(6) };
    r.engine.submit(RequestId(1), (0..40).collect(), params).unwrap();
    let (mut per_step, mut kept) = (Vec::new(), Vec::new());
    let mut streamed = Vec::new();
    while r.engine.has_work() {
        let outcome = r.engine.step().unwrap();
        r.engine.scheduler().check_invariants().unwrap();
        for (id, scores) in outcome.prompt_logprobs {
            assert_eq!(id, RequestId(1));
            per_step.push(scores.iter().map(|p| p.position).collect());
            streamed.extend(scores);
        }
        for seq in outcome.finished.into_iter().filter(|s| s.id == RequestId(1)) {
            kept = seq.prompt_logprobs;
        }
    }
    if keep {
        assert_eq!(kept, streamed, "what a step hands out is what the sequence keeps");
    } else {
        assert!(kept.is_empty(), "not kept when the caller streams them");
    }
    (per_step, streamed, r.engine.scheduler().num_preemptions() > 0)
}

#[test]
fn prompt_scores_come_out_as_each_chunk_computes_them_once_each() {
    let (whole_steps, whole, _) = prompt_scores(4096, 64, true);
    assert_eq!(whole_steps.len(), 1, "one prefill step, one batch of scores");
    assert_eq!(whole.iter().map(|p| p.position).collect::<Vec<_>>(), (1..40).collect::<Vec<_>>());
    // Chunks of 8: the scores come out step by step, in order, each once.
    let (chunk_steps, chunked, _) = prompt_scores(8, 64, false);
    assert!(chunk_steps.len() >= 5, "{chunk_steps:?}");
    assert_eq!(chunked, whole, "the same scores, whatever the chunking");
    // A pool too small for both: preemption and recompute score positions
    // again, and none is handed out twice.
    let (_, recomputed, preempted) = prompt_scores(8, 13, true);
    assert!(preempted, "the workload should preempt the scored request");
    assert_eq!(recomputed, whole);
}
