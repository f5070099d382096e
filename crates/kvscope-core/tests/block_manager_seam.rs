//! The block-manager seam: a manager plugged in through `KvBlockManager`
//! drives the same scheduler. The native manager itself, plugged in as a
//! plug-in, must give the very same event stream and outputs as the
//! default path — so the seam adds nothing and loses nothing — and a
//! plug-in's failure must stop the step with its message.

use kvscope_core::block_manager::{AdmissionPlan, BlockView, PrefixCacheCounters};
use kvscope_core::events::{EventLog, EventRecorder};
use kvscope_core::testing::PagedTokenExecutor;
use kvscope_core::{
    BlockId, BlockManager, Engine, EngineConfig, KvBlockManager, PoolConfig, ReleaseReason, RequestId, SamplingParams,
    SchedulerConfig, SeqKv, SeqView, SimClock, TokenId,
};
use std::sync::{Arc, Mutex};

fn config() -> EngineConfig {
    EngineConfig {
        scheduler: SchedulerConfig {
            max_running: 4,
            max_batched_tokens: 24,
            max_model_len: 4096,
            long_prefill_token_threshold: 0,
            max_num_partial_prefills: 0,
        },
        pool: PoolConfig { num_blocks: 14, block_size: 4, enable_prefix_caching: true, bytes_per_block: 0 },
        vocab_size: Some(1000),
    }
}

/// Shared prefixes, chunked prefill and a pool small enough to preempt.
fn run<B: KvBlockManager>(
    mut engine: Engine<PagedTokenExecutor, SimClock, B>,
) -> (Vec<String>, Vec<(RequestId, Vec<TokenId>)>) {
    let recorder = Arc::new(Mutex::new(EventRecorder::default()));
    engine.add_observer(Box::new(recorder.clone()));
    for i in 0..6u64 {
        let mut prompt: Vec<TokenId> = (1..=9).collect();
        prompt.extend((0..(i as u32 % 3 + 1)).map(|t| 100 + t + i as u32));
        let params = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(10) };
        engine.submit(RequestId(i), prompt, params).unwrap();
    }
    let mut outputs = Vec::new();
    while engine.has_work() {
        for seq in engine.step().unwrap().finished {
            outputs.push((seq.id, seq.output));
        }
        engine.scheduler().check_invariants().unwrap();
    }
    let events = recorder.lock().unwrap().events.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
    (events, outputs)
}

fn executor() -> PagedTokenExecutor {
    PagedTokenExecutor::new(14, 4, 1000)
}

#[test]
fn the_native_manager_behind_the_seam_behaves_exactly_as_the_default() {
    let native = run(Engine::new(config(), executor(), SimClock::new()).unwrap());
    // Boxed as the lab boxes a manager chosen at run time.
    let plugged: Box<dyn KvBlockManager> = Box::new(BlockManager::new(config().pool));
    let through_seam = run(Engine::with_block_manager(config(), plugged, executor(), SimClock::new()).unwrap());
    assert!(native.0.iter().any(|e| e.contains("\"preempted\"")), "the workload must preempt");
    assert!(native.0.iter().any(|e| e.contains("\"cached_blocks\":2")), "the workload must hit the prefix cache");
    assert_eq!(native, through_seam);
}

/// A plug-in that fails at its first admission.
#[derive(Debug)]
struct Failing(BlockManager);

impl KvBlockManager for Failing {
    fn config(&self) -> &PoolConfig {
        self.0.config()
    }
    fn free_blocks(&self) -> usize {
        self.0.free_blocks()
    }
    fn used_blocks(&self) -> usize {
        self.0.used_blocks()
    }
    fn cached_free_blocks(&self) -> usize {
        0
    }
    fn used_tokens(&self) -> usize {
        0
    }
    fn counters(&self) -> PrefixCacheCounters {
        PrefixCacheCounters::default()
    }
    fn view(&self) -> Vec<BlockView> {
        self.0.view()
    }
    fn indexed_tokens(&self, _: BlockId) -> Option<&[TokenId]> {
        None
    }
    fn can_allocate(&mut self, seq: SeqView<'_>, _: &SeqKv) -> Result<AdmissionPlan, usize> {
        Err(seq.len())
    }
    fn allocate(&mut self, _: SeqView<'_>, _: &mut SeqKv, _: AdmissionPlan, _: &mut EventLog) -> usize {
        unreachable!("never admits")
    }
    fn append_slot(&mut self, _: SeqView<'_>, _: &mut SeqKv, _: &mut EventLog) -> Option<()> {
        None
    }
    fn commit_computed(&mut self, _: SeqView<'_>, _: &mut SeqKv) {}
    fn release(&mut self, _: SeqView<'_>, kv: &mut SeqKv, _: ReleaseReason, _: &mut EventLog) {
        kv.block_table.clear();
    }
    fn count_prefix_query(&mut self, _: usize, _: usize) {}
    fn failure(&self) -> Option<String> {
        Some("can_allocate raised ValueError".into())
    }
}

#[test]
fn a_failed_plug_in_stops_the_step_with_its_message() {
    let plugged = Box::new(Failing(BlockManager::new(config().pool)));
    let mut engine = Engine::with_block_manager(config(), plugged, executor(), SimClock::new()).unwrap();
    engine.submit(RequestId(1), vec![1, 2, 3], SamplingParams::greedy(2)).unwrap();
    let err = engine.step().unwrap_err().to_string();
    assert!(err.contains("block manager failed: can_allocate raised ValueError"), "{err}");
    assert!(engine.scheduler().native_block_manager().is_none());
}
