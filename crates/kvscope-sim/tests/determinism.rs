//! Same seed, same configuration: the same event stream, byte for byte.

use kvscope_core::events::JsonlObserver;
use kvscope_core::SamplingParams;
use kvscope_sim::{poisson_arrival_times, run_arrivals, Arrival, SimConfig, SplitMix64};
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Shared prefixes (prefix-cache hits), a pool small enough to stall and
/// preempt, Poisson arrivals.
fn workload(seed: u64) -> Vec<Arrival> {
    let mut rng = SplitMix64::new(seed);
    let system: Vec<u32> = (0..64).map(|_| rng.range(0, 150_000) as u32).collect();
    poisson_arrival_times(300, 400.0, seed)
        .into_iter()
        .map(|at| {
            let mut prompt = if rng.range(0, 1) == 0 { system.clone() } else { Vec::new() };
            prompt.extend((0..rng.range(8, 300)).map(|_| rng.range(0, 150_000) as u32));
            let params =
                SamplingParams { max_tokens: rng.range(1, 200) as usize, ignore_eos: true, ..Default::default() };
            Arrival { at, prompt, params }
        })
        .collect()
}

fn run(seed: u64) -> (Vec<u8>, u64) {
    let mut config = SimConfig::from_names("qwen3-0.6b", "h100").unwrap();
    config.kv_blocks = Some(400);
    config.max_running = 64;
    config.max_batched_tokens = 1024;
    let (mut engine, _) = config.build().unwrap();
    let buf = SharedBuf::default();
    engine.add_observer(Box::new(JsonlObserver::new(buf.clone())));
    let summary = run_arrivals(&mut engine, &workload(seed)).unwrap();
    assert_eq!(summary.requests.len(), 300);
    assert!(summary.rejected.is_empty());
    let preemptions = engine.scheduler().num_preemptions();
    drop(engine);
    let bytes = buf.0.lock().unwrap().clone();
    (bytes, preemptions)
}

#[test]
fn same_seed_gives_the_same_event_stream_byte_for_byte() {
    let (a, preemptions) = run(7);
    let (b, _) = run(7);
    assert!(preemptions > 0, "the workload should exercise preemption");
    assert!(a.len() > 10_000);
    assert!(a == b, "event streams differ between identical runs");
    let text = String::from_utf8(a.clone()).unwrap();
    assert!(text.contains("\"site\":\"sim::execute\""));
    assert!(text.contains("\"event\":\"evicted\"") || text.contains("\"cached_blocks\":"));
    let (c, _) = run(8);
    assert!(a != c, "a different seed should give a different run");
}

#[test]
fn outputs_have_exactly_the_workload_lengths_even_with_stop_tokens() {
    let config = SimConfig::from_names("smollm2-135m", "cpu").unwrap();
    let (mut engine, _) = config.build().unwrap();
    // 4 % of the vocabulary are stop tokens: about 70 of the ~1700 sampled
    // tokens would hit one by chance, yet generation runs to max_tokens
    // because the simulator never samples a stop token.
    let stop: Vec<u32> = (0..2000).map(|i| i * 24).collect();
    let arrivals: Vec<Arrival> = (0..50)
        .map(|i| Arrival {
            at: i as f64 * 0.01,
            // ignore_eos stays false: stop tokens are live.
            prompt: vec![1, 2, 3],
            params: SamplingParams { max_tokens: 10 + i, stop_token_ids: stop.clone(), ..Default::default() },
        })
        .collect();
    let summary = run_arrivals(&mut engine, &arrivals).unwrap();
    for r in &summary.requests {
        assert_eq!(r.output_tokens, 10 + r.index);
    }
    assert!(summary.makespan > 0.0);
}
