//! Same seed, same configuration: the same event stream, byte for byte.

use kvscope_core::rng::SplitMix64;
use kvscope_core::{Clock, RequestId, SamplingParams};
use kvscope_experiment::workload::{Arrival, CaseSpec, WorkloadRequest};
use kvscope_experiment::RunOptions;
use kvscope_sim::SimConfig;

/// Shared prefixes (prefix-cache hits), a pool small enough to stall and
/// preempt, Poisson arrivals.
fn workload(seed: u64) -> (CaseSpec, Vec<WorkloadRequest>) {
    let spec = CaseSpec::uniform("determinism", 300, (8, 300), (1, 200), Arrival::Poisson { rate: 400.0 }, seed);
    let mut rng = SplitMix64::new(seed);
    let system: Vec<u32> = (0..64).map(|_| rng.range(0, 150_000) as u32).collect();
    let mut requests = spec.generate(&kvscope_experiment::PromptSource::Synthetic { vocab: 150_000 });
    // Half of the requests start with the same system prompt.
    for r in requests.iter_mut().filter(|_| rng.range(0, 1) == 0) {
        r.prompt = system.iter().chain(r.prompt.iter()).copied().collect();
    }
    (spec, requests)
}

fn run(seed: u64) -> (Vec<u8>, u64) {
    let mut config = SimConfig::from_names("qwen3-0.6b", "h100").unwrap();
    config.kv_blocks = Some(400);
    config.max_running = 64;
    config.max_batched_tokens = 1024;
    let (spec, requests) = workload(seed);
    let run = config.run(&spec, requests, RunOptions::EVERY_STEP).unwrap();
    assert_eq!(run.requests.len(), 300);
    assert!(run.rejected.is_empty());
    let mut bytes = Vec::new();
    for e in &run.events {
        serde_json::to_writer(&mut bytes, e).unwrap();
        bytes.push(b'\n');
    }
    (bytes, run.stats.preemptions)
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
    for i in 0..50 {
        // ignore_eos stays false: stop tokens are live.
        let params = SamplingParams { max_tokens: 10 + i, stop_token_ids: stop.clone(), ..Default::default() };
        engine.submit(RequestId(i as u64), vec![1, 2, 3], params).unwrap();
    }
    let mut finished = Vec::new();
    while engine.has_work() {
        finished.extend(engine.step().unwrap().finished);
    }
    assert_eq!(finished.len(), 50);
    for seq in &finished {
        assert_eq!(seq.output.len(), 10 + seq.id.0 as usize);
    }
    assert!(engine.clock().now() > 0.0);
}

/// FNV-1a, 64 bit: a digest of the stream that needs no dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The block manager's hot paths are tuned for the simulator's speed; this
/// pins what they decide (hits, evictions, preemptions, which block goes to
/// whom, in which order) so that a faster manager is also the same manager.
/// A change that means to alter behaviour updates the digest and says why
/// in its commit.
#[test]
fn the_event_stream_is_pinned_across_block_manager_changes() {
    let (bytes, _) = run(7);
    // Clock times are left out: they come from the cost model's floating
    // point, which this test is not about.
    let mut decisions = Vec::new();
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let mut event: serde_json::Value = serde_json::from_slice(line).unwrap();
        event.as_object_mut().unwrap().remove("t");
        serde_json::to_writer(&mut decisions, &event).unwrap();
        decisions.push(b'\n');
    }
    assert_eq!(
        fnv1a(&decisions),
        PINNED_DIGEST,
        "the event stream changed; {} bytes, digest {}",
        decisions.len(),
        fnv1a(&decisions)
    );
}

const PINNED_DIGEST: u64 = 14_129_691_784_419_304_206;
