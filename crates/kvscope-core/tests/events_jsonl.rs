//! The event stream of a run with preemption and prefix hits, written as
//! `events.jsonl`, read back, and replayed into consistent reference counts.

mod common;

use kvscope_core::events::{EventRecord, JsonlObserver};
use kvscope_core::replay::Replay;
use kvscope_core::{RequestId, SamplingParams};
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
