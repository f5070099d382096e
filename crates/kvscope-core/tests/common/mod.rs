#![allow(dead_code)]
//! Helpers shared by the state-layer tests.

use kvscope_core::events::EventRecorder;
use kvscope_core::testing::PagedTokenExecutor;
use kvscope_core::{Engine, EngineConfig, PoolConfig, SchedulerConfig, Sequence, SimClock};
use std::sync::{Arc, Mutex};

pub const VOCAB: u32 = 1000;

pub struct Rig {
    pub engine: Engine<PagedTokenExecutor, SimClock>,
    pub recorder: Arc<Mutex<EventRecorder>>,
}

pub fn rig(num_blocks: usize, block_size: usize, prefix_caching: bool, max_running: usize, budget: usize) -> Rig {
    rig_capped(num_blocks, block_size, prefix_caching, max_running, budget, 0)
}

/// [`rig`] with a long-prefill token threshold (0: none).
pub fn rig_capped(
    num_blocks: usize,
    block_size: usize,
    prefix_caching: bool,
    max_running: usize,
    budget: usize,
    long_prefill_token_threshold: usize,
) -> Rig {
    rig_limited(num_blocks, block_size, prefix_caching, max_running, budget, long_prefill_token_threshold, 0)
}

/// [`rig_capped`] with a partial-prefill limit (0: none).
pub fn rig_limited(
    num_blocks: usize,
    block_size: usize,
    prefix_caching: bool,
    max_running: usize,
    budget: usize,
    long_prefill_token_threshold: usize,
    max_num_partial_prefills: usize,
) -> Rig {
    let config = EngineConfig {
        scheduler: SchedulerConfig {
            max_running,
            max_batched_tokens: budget,
            max_model_len: 4096,
            long_prefill_token_threshold,
            max_num_partial_prefills,
        },
        pool: PoolConfig { num_blocks, block_size, enable_prefix_caching: prefix_caching, bytes_per_block: 1024 },
        vocab_size: Some(VOCAB as usize),
    };
    let clock = SimClock::new();
    let mut engine = Engine::new(config, PagedTokenExecutor::new(num_blocks, block_size, VOCAB), clock).unwrap();
    let recorder = Arc::new(Mutex::new(EventRecorder::default()));
    engine.add_observer(Box::new(recorder.clone()));
    Rig { engine, recorder }
}

/// Steps until the engine is idle, checking the invariants after every step
/// and handing the rig to `each_step`; returns the finished sequences.
/// Panics after 20,000 steps: a test's engine that does not drain is a bug.
pub fn run_to_end_observing(r: &mut Rig, mut each_step: impl FnMut(&Rig)) -> Vec<Sequence> {
    let mut done = Vec::new();
    for _ in 0..20_000 {
        if !r.engine.has_work() {
            return done;
        }
        done.extend(r.engine.step().unwrap().finished);
        r.engine.scheduler().check_invariants().unwrap();
        each_step(r);
    }
    panic!("engine did not drain");
}

pub fn run_to_end(r: &mut Rig) -> Vec<Sequence> {
    run_to_end_observing(r, |_| ())
}
