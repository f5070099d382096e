//! What the state layer costs per engine step, without any model: one
//! scheduler step (decode bookkeeping for N running sequences, with block
//! appends) and block allocation/release with prefix lookups.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kvscope_core::events::EventLog;
use kvscope_core::{
    BatchOutput, BlockManager, Engine, EngineConfig, Executor, ExecutorError, KvBlockManager, PoolConfig, RequestId,
    SampledToken, SamplingParams, ScheduledBatch, SchedulerConfig, Sequence, SimClock,
};

/// Costs nothing, so a step measures the state layer alone.
struct NullExecutor;

impl Executor for NullExecutor {
    fn execute(&mut self, batch: &ScheduledBatch) -> Result<BatchOutput, ExecutorError> {
        Ok(BatchOutput::sampled(batch.seqs.iter().map(|s| s.sample.then(|| SampledToken::plain(7))).collect()))
    }
}

fn engine_with_running(n: usize) -> Engine<NullExecutor, SimClock> {
    let block_size = 16;
    let num_blocks = n * 48;
    let config = EngineConfig {
        scheduler: SchedulerConfig {
            max_running: n,
            max_batched_tokens: 8192 * 4,
            max_model_len: 1 << 20,
            long_prefill_token_threshold: 0,
            max_num_partial_prefills: 0,
        },
        pool: PoolConfig { num_blocks, block_size, enable_prefix_caching: true, bytes_per_block: 0 },
        vocab_size: None,
    };
    let mut engine = Engine::new(config, NullExecutor, SimClock::new()).unwrap();
    for i in 0..n as u64 {
        submit(&mut engine, i);
    }
    engine.step().unwrap(); // prefill everyone
    engine
}

/// A 128-token prompt generating 512 tokens: finishing requests are
/// replaced, so the benchmark measures a steady state with admissions.
fn submit(engine: &mut Engine<NullExecutor, SimClock>, i: u64) {
    let prompt: Vec<u32> = (0..128).map(|t| (t * 7 + i as u32) % 50_000).collect();
    let params = SamplingParams { max_tokens: 512, ignore_eos: true, ..SamplingParams::greedy(1) };
    engine.submit(RequestId(i), prompt, params).unwrap();
}

fn scheduler_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("scheduler_step_decode");
    for n in [16usize, 64, 256] {
        let mut engine = engine_with_running(n);
        let mut next_id = n as u64;
        // One whole engine step with a free executor: scheduling, slot
        // appends (one block every 16 steps per sequence), batch assembly,
        // commits, events and the pool snapshot.
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let outcome = engine.step().unwrap();
                for _ in outcome.finished {
                    submit(&mut engine, next_id);
                    next_id += 1;
                }
            })
        });
    }
    group.finish();
}

fn allocate_release(c: &mut Criterion) {
    let block_size = 16;
    let mut pool =
        BlockManager::new(PoolConfig { num_blocks: 4096, block_size, enable_prefix_caching: true, bytes_per_block: 0 });
    let shared: Vec<u32> = (0..512).collect();
    let mut log = EventLog::new();
    let mut id = 0u64;
    c.bench_function("allocate_release_512_tokens_prefix_hit", |b| {
        b.iter(|| {
            id += 1;
            let mut prompt = shared.clone();
            prompt.extend([id as u32 % 1000, 7, 8]);
            let mut seq = Sequence::new(kvscope_core::Request {
                id: RequestId(id),
                prompt: prompt.into(),
                params: SamplingParams::greedy(1),
                arrival: 0.0,
            });
            let (view, kv) = seq.split_kv();
            let plan = pool.plan_admission(view, kv);
            pool.allocate(view, kv, plan, &mut log);
            kv.num_computed = view.len();
            pool.commit_computed(view, kv);
            pool.release(view, kv, kvscope_core::ReleaseReason::Finished, &mut log);
            log.drain().count()
        })
    });
}

criterion_group!(benches, scheduler_step, allocate_release);
criterion_main!(benches);
