//! Property tests: random mixes of requests (shared prefixes, random
//! lengths, aborts, pools small enough to force preemption) driven through
//! the scheduler, block manager and a paged test executor, with the pool's
//! invariants checked after every step.

mod common;

use common::rig_limited;
use kvscope_core::replay::Replay;
use kvscope_core::{Clock, KvBlockManager, Prompt, RandomTokens, RequestId, SamplingParams, Sequence};
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
struct Req {
    shared_prefix: usize,
    prompt_len: usize,
    max_tokens: usize,
    seed: u64,
    /// Abort after this many steps, if any.
    abort_after: Option<usize>,
    /// Submit after this many steps.
    arrive_at: usize,
}

fn req() -> impl Strategy<Value = Req> {
    (0usize..3, 1usize..40, 1usize..12, any::<u64>(), proptest::option::weighted(0.15, 0usize..20), 0usize..15)
        .prop_map(|(shared_prefix, prompt_len, max_tokens, seed, abort_after, arrive_at)| Req {
            shared_prefix,
            prompt_len,
            max_tokens,
            seed,
            abort_after,
            arrive_at,
        })
}

fn prompt(r: &Req) -> Vec<u32> {
    // Three families of shared prefixes (family 0: none), then own tokens.
    let mut p: Vec<u32> = match r.shared_prefix {
        0 => vec![],
        f => (0..24).map(|i| (f as u32 * 100 + i) % common::VOCAB).collect(),
    };
    p.extend((0..r.prompt_len).map(|i| ((r.seed >> (i % 48)) as u32 ^ i as u32) % common::VOCAB));
    p
}

struct Setup {
    num_blocks: usize,
    block_size: usize,
    prefix_caching: bool,
    max_running: usize,
    budget: usize,
    /// Long-prefill token threshold (0: none).
    cap: usize,
    /// Partial-prefill limit (0: none), never above `max_running`.
    partial: usize,
}

/// The same request as a random prompt: its family's prefix (`shared_prefix`
/// 1 and 2 share 13 tokens, not a whole number of most block sizes; 3 none),
/// then its own tokens drawn from its seed, the first one its index.
fn random_prompt(i: usize, r: &Req) -> Prompt {
    let prefix: Vec<u32> = match r.shared_prefix {
        0 => vec![],
        f => (0..13).map(|t| (f as u32 * 100 + t) % common::VOCAB).collect(),
    };
    let len = prefix.len() + r.prompt_len;
    Prompt::random(len, RandomTokens { prefix: prefix.into(), first: i as u32, vocab: common::VOCAB, seed: r.seed })
}

/// Each finished request's output tokens, by id.
type Outputs = BTreeMap<u64, Vec<u32>>;

/// Runs the workload, checking invariants at every step. Returns the
/// outputs of requests that were not aborted.
fn drive(reqs: &[Req], s: &Setup) -> Result<Outputs, TestCaseError> {
    drive_prompts(reqs, s, |_, q| prompt(q).into()).map(|(outputs, _)| outputs)
}

/// [`drive`] with the prompts `make` builds; also returns every event, as
/// text.
fn drive_prompts(
    reqs: &[Req],
    s: &Setup,
    make: impl Fn(usize, &Req) -> Prompt,
) -> Result<(Outputs, Vec<String>), TestCaseError> {
    let partial = s.partial.min(s.max_running);
    let mut r = rig_limited(s.num_blocks, s.block_size, s.prefix_caching, s.max_running, s.budget, s.cap, partial);
    let mut outputs = BTreeMap::new();
    let mut submitted = vec![false; reqs.len()];
    let mut accepted = vec![false; reqs.len()];
    let mut finished: Vec<Sequence> = Vec::new();
    for step in 0..5_000 {
        for (i, q) in reqs.iter().enumerate() {
            if !submitted[i] && q.arrive_at <= step {
                submitted[i] = true;
                let params =
                    SamplingParams { seed: Some(q.seed), ignore_eos: true, ..SamplingParams::greedy(q.max_tokens) };
                let now = r.engine.clock().now();
                accepted[i] = r.engine.submit_at(RequestId(i as u64), make(i, q), params, now).is_ok();
            }
            if q.abort_after == Some(step) && accepted[i] {
                if let Some(seq) = r.engine.abort(RequestId(i as u64)) {
                    prop_assert!(seq.kv.block_table.is_empty());
                }
            }
        }
        finished.extend(r.engine.step().map_err(|e| TestCaseError::fail(e.to_string()))?.finished);
        r.engine.scheduler().check_invariants().map_err(TestCaseError::fail)?;
        let snap = r.engine.snapshot();
        prop_assert_eq!(snap.used_blocks + snap.free_blocks, snap.total_blocks);
        if submitted.iter().all(|s| *s) && !r.engine.has_work() {
            break;
        }
    }
    prop_assert!(!r.engine.has_work(), "every request that fits finishes");
    prop_assert_eq!(r.engine.scheduler().block_manager().used_blocks(), 0, "at the end every block is free");
    for seq in finished {
        prop_assert!(seq.kv.block_table.is_empty());
        if reqs[seq.id.0 as usize].abort_after.is_none() {
            prop_assert_eq!(seq.output.len(), reqs[seq.id.0 as usize].max_tokens);
        }
        outputs.insert(seq.id.0, seq.output);
    }
    for (i, q) in reqs.iter().enumerate() {
        if accepted[i] && q.abort_after.is_none() {
            prop_assert!(outputs.contains_key(&(i as u64)), "request {} never finished", i);
        }
    }
    let events = r.recorder.lock().unwrap().events.clone();
    let replay = Replay::run(events.iter()).map_err(TestCaseError::fail)?;
    prop_assert_eq!(replay.held_blocks(), 0);
    let outputs = outputs.into_iter().filter(|(id, _)| reqs[*id as usize].abort_after.is_none()).collect();
    Ok((outputs, events.iter().map(|e| format!("{e:?}")).collect()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_under_random_load(
        reqs in proptest::collection::vec(req(), 1..14),
        num_blocks in 12usize..40,
        block_size in prop_oneof![Just(1usize), Just(2), Just(4), Just(8)],
        prefix_caching in any::<bool>(),
        max_running in 1usize..6,
        budget in 1usize..64,
        cap in prop_oneof![Just(0usize), 1usize..20],
        partial in prop_oneof![Just(0usize), 1usize..4],
    ) {
        drive(&reqs, &Setup { num_blocks, block_size, prefix_caching, max_running, budget, cap, partial })?;
    }

    /// The next token depends only on the token history, so prefix caching,
    /// preemption, chunking (the budget, the long-prefill cap), the
    /// partial-prefill limit (which reorders admissions) and batching must
    /// not change any output.
    #[test]
    fn outputs_do_not_depend_on_caching_preemption_or_batching(
        reqs in proptest::collection::vec(req().prop_map(|r| Req { abort_after: None, ..r }), 1..10),
        block_size in prop_oneof![Just(2usize), Just(4), Just(8)],
        budget in 1usize..48,
        cap in prop_oneof![Just(0usize), 1usize..16],
        partial in prop_oneof![Just(0usize), 1usize..3],
    ) {
        let roomy =
            Setup { num_blocks: 400, block_size, prefix_caching: false, max_running: 64, budget: 4096, cap: 0, partial: 0 };
        let reference = drive(&reqs, &roomy)?;
        // Big enough for the largest single request, small enough to preempt.
        let largest = reqs.iter().map(|r| prompt(r).len() + r.max_tokens).max().unwrap();
        let tight_blocks = largest.div_ceil(block_size) + 2;
        for prefix_caching in [false, true] {
            for (num_blocks, max_running) in [(tight_blocks, 8), (400, 1), (400, 64)] {
                let setup = Setup { num_blocks, block_size, prefix_caching, max_running, budget, cap, partial };
                let got = drive(&reqs, &setup)?;
                prop_assert_eq!(&got, &reference);
            }
        }
    }

    /// A random prompt's own blocks are kept without an index entry (only
    /// its request can take them back); given tokens are indexed block by
    /// block. With each request's own tokens its own, the two must decide
    /// the same: hits, readmissions, evictions, `released.cached`, event
    /// for event, with the same outputs.
    #[test]
    fn random_prompts_run_like_their_tokens_given(
        reqs in proptest::collection::vec(req(), 1..14),
        num_blocks in 12usize..40,
        block_size in prop_oneof![Just(1usize), Just(2), Just(4), Just(8)],
        max_running in 1usize..6,
        budget in 1usize..64,
        cap in prop_oneof![Just(0usize), 1usize..20],
    ) {
        let setup = Setup { num_blocks, block_size, prefix_caching: true, max_running, budget, cap, partial: 0 };
        let lazy = drive_prompts(&reqs, &setup, random_prompt)?;
        let given = drive_prompts(&reqs, &setup, |i, q| random_prompt(i, q).to_vec().into())?;
        prop_assert_eq!(lazy, given);
    }
}
