//! Flushing the prefix cache (SGLang's `/flush_cache`): every block kept
//! only for reuse is freed and reported as evicted; a held block is never
//! touched, so a running request goes on as if nothing happened.

mod common;

use common::{rig, run_to_end, Rig};
use kvscope_core::replay::Replay;
use kvscope_core::{KvBlockManager, KvEvent, RequestId, SamplingParams};

fn greedy(max_tokens: usize) -> SamplingParams {
    SamplingParams { ignore_eos: true, ..SamplingParams::greedy(max_tokens) }
}

/// A 12-token shared prefix (3 blocks of 4) and a private tail.
fn prompt(tail: u32) -> Vec<u32> {
    let mut p: Vec<u32> = (1..=12).collect();
    p.extend([100 + tail, 200 + tail]);
    p
}

fn evicted(r: &Rig) -> Vec<u32> {
    let events = &r.recorder.lock().unwrap().events;
    events
        .iter()
        .filter_map(|e| match e.event {
            KvEvent::Evicted { block } => Some(block.0),
            _ => None,
        })
        .collect()
}

#[test]
fn flush_frees_every_cached_block_and_reports_each_as_evicted() {
    let mut r = rig(32, 4, true, 4, 64);
    r.engine.submit(RequestId(1), prompt(1), greedy(3)).unwrap();
    run_to_end(&mut r);
    let pool = r.engine.scheduler().block_manager();
    let cached = pool.cached_free_blocks();
    assert!(cached >= 3, "the finished request's full blocks stay cached");
    let evictions_before = pool.counters().evictions;

    let freed = r.engine.flush_prefix_cache();

    assert_eq!(freed, cached);
    let pool = r.engine.scheduler().block_manager();
    assert_eq!(pool.cached_free_blocks(), 0);
    assert_eq!(pool.free_blocks(), pool.total_blocks(), "the whole pool is free and clean");
    assert_eq!(pool.counters().evictions, evictions_before + freed as u64);
    assert_eq!(evicted(&r).len(), freed);
    r.engine.scheduler().check_invariants().unwrap();
    let events = r.recorder.lock().unwrap().events.clone();
    assert!(events
        .iter()
        .filter(|e| matches!(e.event, KvEvent::Evicted { .. }))
        .all(|e| e.site == "block_manager::flush_cached"));
    assert_eq!(Replay::run(events.iter()).unwrap().held_blocks(), 0);

    // The same prefix now finds nothing to reuse.
    r.engine.submit(RequestId(2), prompt(2), greedy(3)).unwrap();
    let done = run_to_end(&mut r);
    assert_eq!(done[0].num_cached_prompt_tokens, 0);
    assert!(r.engine.flush_prefix_cache() > 0, "its blocks are cached again");
}

#[test]
fn flush_never_touches_a_block_a_running_request_holds() {
    let mut r = rig(32, 4, true, 4, 64);
    r.engine.submit(RequestId(1), prompt(1), greedy(3)).unwrap();
    run_to_end(&mut r);
    // Request 2 reuses the cached prefix and is mid-decode when the flush comes.
    r.engine.submit(RequestId(2), prompt(2), greedy(6)).unwrap();
    r.engine.step().unwrap();
    r.engine.step().unwrap();
    let pool = r.engine.scheduler().block_manager();
    let (used, cached) = (pool.used_blocks(), pool.cached_free_blocks());
    assert!(used > 0 && cached > 0, "one held prefix, one cached tail");

    let freed = r.engine.flush_prefix_cache();

    assert_eq!(freed, cached);
    assert_eq!(r.engine.scheduler().block_manager().used_blocks(), used, "held blocks stay held");
    r.engine.scheduler().check_invariants().unwrap();
    let done = run_to_end(&mut r);
    assert_eq!(done[0].output.len(), 6);

    // Its output is the one it would have had without the flush.
    let mut fresh = rig(32, 4, true, 4, 64);
    fresh.engine.submit(RequestId(1), prompt(1), greedy(3)).unwrap();
    run_to_end(&mut fresh);
    fresh.engine.submit(RequestId(2), prompt(2), greedy(6)).unwrap();
    assert_eq!(run_to_end(&mut fresh)[0].output, done[0].output);
}

#[test]
fn flush_of_an_empty_cache_frees_nothing_and_says_nothing() {
    let mut r = rig(8, 4, true, 4, 64);
    assert_eq!(r.engine.flush_prefix_cache(), 0);
    assert!(evicted(&r).is_empty());
    let mut off = rig(8, 4, false, 4, 64);
    off.engine.submit(RequestId(1), prompt(1), greedy(2)).unwrap();
    run_to_end(&mut off);
    assert_eq!(off.engine.flush_prefix_cache(), 0, "without prefix caching nothing is kept");
}
