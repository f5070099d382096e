//! The event stream of a run with preemption and prefix hits, written as
//! `events.jsonl`, read back, and replayed into consistent reference counts;
//! the events of KV work name the executor's site.

mod common;

use kvscope_core::events::{EventRecord, EventRecorder, JsonlObserver};
use kvscope_core::replay::Replay;
use kvscope_core::testing::PagedTokenExecutor;
use kvscope_core::{
    BatchOutput, Engine, EngineConfig, Executor, ExecutorError, KvEvent, PoolConfig, RequestId, SamplingParams,
    ScheduledBatch, SchedulerConfig, SimClock,
};
use std::sync::{Arc, Mutex};

struct SharedBuf(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn event_stream_round_trips_and_replays_consistently() {
    let mut r = common::rig(14, 4, true, 8, 32);
    let buf = Arc::new(Mutex::new(Vec::new()));
    r.engine.add_observer(Box::new(JsonlObserver::new(SharedBuf(buf.clone()))));
    let system: Vec<u32> = (500..516).collect();
    for i in 0..6u64 {
        let mut prompt = system.clone();
        prompt.extend([i as u32, 7, 7]);
        let params = SamplingParams { ignore_eos: true, seed: Some(i), ..SamplingParams::greedy(20) };
        r.engine.submit(RequestId(i), prompt, params).unwrap();
        r.engine.step().unwrap();
    }
    while r.engine.has_work() {
        r.engine.step().unwrap();
    }
    let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    let records: Vec<EventRecord> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records, r.recorder.lock().unwrap().events, "JSONL is lossless");

    // Required fields, as DESIGN.md specifies them.
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for key in ["event", "t", "step", "site"] {
            assert!(v.get(key).is_some(), "{key} missing in {line}");
        }
        if v["event"] != "evicted" {
            assert!(v["request_id"].is_string(), "request_id is a string: {line}");
        }
    }
    let replay = Replay::run(records.iter()).unwrap();
    assert!(replay.preemptions > 0, "the pool was small enough to preempt");
    assert!(replay.prefix_hit_blocks > 0, "the shared system prompt was reused");
    assert!(replay.max_ref_count >= 2, "blocks were shared");
    assert_eq!(replay.held_blocks(), 0);
    assert_eq!(replay.finished.len(), 6);
    for i in 0..6 {
        assert!(replay.ttft(RequestId(i)).unwrap() >= replay.queue_wait(RequestId(i)).unwrap());
    }
}

/// The test executor under another KV site, as the model and the simulator
/// name theirs.
struct NamedSite(PagedTokenExecutor);

impl Executor for NamedSite {
    const KV_SITE: &'static str = "named::forward";

    fn execute(&mut self, batch: &ScheduledBatch) -> Result<BatchOutput, ExecutorError> {
        self.0.execute(batch)
    }
}

#[test]
fn prefill_and_decode_events_name_the_executors_kv_site() {
    let config = EngineConfig {
        scheduler: SchedulerConfig::new(4, 64, 256),
        pool: PoolConfig { num_blocks: 8, block_size: 4, enable_prefix_caching: true, bytes_per_block: 0 },
        vocab_size: Some(common::VOCAB as usize),
    };
    let mut engine =
        Engine::new(config, NamedSite(PagedTokenExecutor::new(8, 4, common::VOCAB)), SimClock::new()).unwrap();
    let recorder = Arc::new(Mutex::new(EventRecorder::default()));
    engine.add_observer(Box::new(recorder.clone()));
    let params = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(3) };
    engine.submit(RequestId(1), vec![5, 6, 7, 8, 9], params).unwrap();
    while engine.has_work() {
        engine.step().unwrap();
    }
    let events = &recorder.lock().unwrap().events;
    let kv_work: Vec<&EventRecord> =
        events.iter().filter(|r| matches!(r.event, KvEvent::Prefill { .. } | KvEvent::Decode { .. })).collect();
    assert!(kv_work.iter().any(|r| matches!(r.event, KvEvent::Decode { .. })), "the run decoded");
    assert!(kv_work.iter().all(|r| r.site == "named::forward"), "{kv_work:?}");
}
