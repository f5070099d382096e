//! Random prompts drawn on first read: waiting requests hold no tokens, and
//! a drawn prompt runs exactly like the same tokens given outright.

mod common;

use common::{rig, run_to_end, run_to_end_observing, VOCAB};
use kvscope_core::events::KvEvent;
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

/// A workload's prompts: a shared prefix of two blocks (of 4 tokens), then
/// each request's own tokens from its own recipe.
fn workload_prompt(i: u64) -> Prompt {
    let recipe =
        RandomTokens { prefix: Arc::from(vec![3, 1, 4, 1, 5, 9, 2, 6]), first: i as u32, vocab: VOCAB, seed: 1000 + i };
    Prompt::random(9 + (i as usize * 5) % 23, recipe)
}

fn event_lines(r: &common::Rig) -> Vec<String> {
    r.recorder.lock().unwrap().events.iter().map(|e| format!("{e:?}")).collect()
}

/// The old way and the new on the same workload: given tokens are indexed
/// block by block; a random prompt's own blocks are kept without an index
/// entry. Prefix hits, readmissions that take back their own cached
/// blocks, evictions and `released.cached` counts must all agree, event
/// for event — and the paged executor, which reads KV back through the
/// block tables, must produce the same tokens.
#[test]
fn a_drawn_prompt_runs_exactly_like_the_same_tokens_given() {
    let mut lazy = rig(24, 4, true, 4, 16);
    let mut given = rig(24, 4, true, 4, 16);
    let params = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(14) };
    for i in 0..40 {
        let prompt = workload_prompt(i);
        given.engine.submit_at(RequestId(i), prompt.to_vec(), params.clone(), 0.0).unwrap();
        lazy.engine.submit_at(RequestId(i), prompt, params.clone(), 0.0).unwrap();
    }
    let outputs = |done: Vec<Sequence>| done.into_iter().map(|s| (s.id, s.output)).collect::<Vec<_>>();
    assert_eq!(outputs(run_to_end(&mut lazy)), outputs(run_to_end(&mut given)));
    assert_eq!(event_lines(&lazy), event_lines(&given), "the same events, prefix hits and evictions included");
    // The workload exercised what the two ways could disagree on.
    let events = lazy.recorder.lock().unwrap().events.clone();
    let count = |f: &dyn Fn(&KvEvent) -> bool| events.iter().filter(|e| f(&e.event)).count();
    assert!(count(&|e| matches!(e, KvEvent::Evicted { .. })) > 0, "no eviction");
    assert!(
        count(&|e| matches!(e, KvEvent::Admitted { readmission: false, cached_blocks: 2, .. })) > 0,
        "no prefix hit"
    );
    assert!(
        count(&|e| matches!(e, KvEvent::Admitted { readmission: true, cached_blocks, .. } if *cached_blocks > 2)) > 0,
        "no readmission took back its own blocks past the prefix"
    );
    assert!(
        count(&|e| matches!(e, KvEvent::Admitted { readmission: true, cached_blocks, .. } if *cached_blocks <= 2)) > 0,
        "no readmission found its own blocks evicted"
    );
}

/// The rule the index relies on: two requests drawn from the same recipe
/// have the same tokens, but share only the prefix's blocks; the same
/// tokens given outright share every full block.
#[test]
fn a_random_prompt_shares_only_its_prefix() {
    let hits = |as_given: bool| {
        let mut r = rig(32, 4, true, 1, 64);
        for i in 0..2 {
            let prompt = workload_prompt(7);
            let prompt = if as_given { Prompt::from(prompt.to_vec()) } else { prompt };
            r.engine.submit_at(RequestId(i), prompt, params(), 0.0).unwrap();
        }
        run_to_end(&mut r);
        let events = r.recorder.lock().unwrap().events.clone();
        let admitted = events.iter().filter_map(|e| match &e.event {
            KvEvent::Admitted { request_id: RequestId(1), cached_blocks, .. } => Some(*cached_blocks),
            _ => None,
        });
        admitted.collect::<Vec<_>>()
    };
    // 9 + 35 % 23 = 21 tokens: 5 full blocks, the first 2 the prefix's.
    assert_eq!(hits(true), vec![5]);
    assert_eq!(hits(false), vec![2]);
}

#[test]
fn a_random_prompt_from_a_larger_vocabulary_is_refused_at_submission() {
    let mut r = rig(16, 4, true, 2, 64);
    let err = r.engine.submit_at(RequestId(1), random_prompt(1, 40, 50 * VOCAB), params(), 0.0).unwrap_err();
    assert!(matches!(err, SubmitError::TokenOutOfVocab { vocab_size, .. } if vocab_size == VOCAB as usize));
    assert!(!r.engine.has_work(), "nothing was queued");
}

/// The rarest thing the index decided: a readmitted request that misses its
/// shared prefix (another request's copy was evicted) recomputes its own
/// blocks while the copies it left at its preemption are still cached. The
/// index kept the old copy (the new one's key was taken); the private tag
/// must do the same, or `released.cached` would count the new copy too.
/// Driven call by call on the block manager, once with the tokens given and
/// once drawn.
#[test]
fn a_recomputed_private_block_leaves_its_cached_copy_the_kept_one() {
    use kvscope_core::block_manager::BlockManager;
    use kvscope_core::events::{EventLog, ReleaseReason};
    use kvscope_core::{KvBlockManager, PoolConfig, Request};

    let run = |drawn: bool| {
        let mut pool = BlockManager::new(PoolConfig::new(8, 4, 1, true));
        let mut log = EventLog::new();
        let prompt = |seed: u64, first: u32, len: usize| {
            let recipe = RandomTokens { prefix: Arc::from(vec![5, 6, 7, 8]), first, vocab: VOCAB, seed };
            let p = Prompt::random(len, recipe);
            if drawn {
                p
            } else {
                Prompt::from(p.to_vec())
            }
        };
        let seq = |id: u64, prompt: Prompt| {
            Sequence::new(Request { id: RequestId(id), prompt, params: SamplingParams::greedy(1), arrival: 0.0 })
        };
        let admit = |pool: &mut BlockManager, log: &mut EventLog, s: &mut Sequence| {
            let (view, kv) = s.split_kv();
            let plan = pool.can_allocate(view, kv).expect("the pool has room");
            pool.allocate(view, kv, plan, log)
        };
        let commit = |pool: &mut BlockManager, s: &mut Sequence, computed: usize| {
            s.kv.num_computed = computed;
            let (view, kv) = s.split_kv();
            pool.commit_computed(view, kv);
        };
        let release = |pool: &mut BlockManager, log: &mut EventLog, s: &mut Sequence, reason: ReleaseReason| {
            let (view, kv) = s.split_kv();
            pool.release(view, kv, reason, log);
        };
        // R and S share the prefix block and are admitted before either
        // computed it: S's copy of it is a duplicate, R's the indexed one.
        let (mut r, mut s) = (seq(1, prompt(11, 1, 13)), seq(2, prompt(22, 2, 13)));
        admit(&mut pool, &mut log, &mut r);
        admit(&mut pool, &mut log, &mut s);
        for x in [&mut r, &mut s] {
            commit(&mut pool, x, 13);
        }
        release(&mut pool, &mut log, &mut r, ReleaseReason::Finished);
        release(&mut pool, &mut log, &mut s, ReleaseReason::Preempted);
        // T takes every clean block and the three oldest cached ones (R's),
        // then leaves without computing anything.
        let mut t = seq(3, Prompt::from(vec![9; 24]));
        admit(&mut pool, &mut log, &mut t);
        release(&mut pool, &mut log, &mut t, ReleaseReason::Aborted);
        // S misses its prefix and recomputes everything; its two own blocks
        // from before are still cached.
        let missed = admit(&mut pool, &mut log, &mut s);
        commit(&mut pool, &mut s, 13);
        release(&mut pool, &mut log, &mut s, ReleaseReason::Preempted);
        let released = format!("{:?}", log.pending().last().unwrap().event);
        // Preempted again, S finds its new prefix block and its old copies.
        let found = admit(&mut pool, &mut log, &mut s);
        (missed, released, found, log.pending().iter().map(|e| format!("{:?}", e.event)).collect::<Vec<_>>())
    };
    let (given, drawn) = (run(false), run(true));
    assert_eq!(given.0, 0, "the first readmission missed its prefix");
    assert!(given.1.contains("cached: 1"), "only the recomputed prefix block was newly kept: {}", given.1);
    assert_eq!(given.2, 3, "the second readmission found the prefix block and both old copies");
    assert_eq!(drawn, given);
}
