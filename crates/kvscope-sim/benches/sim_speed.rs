//! How fast the simulator itself runs: 100,000 requests of Qwen3-0.6B on
//! one H100, Poisson arrivals, through the real scheduler and block
//! manager. Reports wall time per whole run.

use criterion::{criterion_group, criterion_main, Criterion};
use kvscope_core::SamplingParams;
use kvscope_sim::{poisson_arrival_times, run_arrivals, Arrival, SimConfig, SplitMix64};
use std::time::Duration;

pub const REQUESTS: usize = 100_000;
/// Requests per second: near what the simulated H100 sustains for this mix,
/// so batches are large and the pool is busy.
pub const RATE: f64 = 100.0;

/// Prompts of 32–512 tokens and outputs of 16–256, all distinct.
pub fn arrivals(n: usize, rate: f64, seed: u64) -> Vec<Arrival> {
    let mut rng = SplitMix64::new(seed ^ 0x5eed);
    poisson_arrival_times(n, rate, seed)
        .into_iter()
        .map(|at| {
            let len = rng.range(32, 512) as usize;
            let prompt = (0..len).map(|_| rng.range(0, 151_935) as u32).collect();
            let params = SamplingParams { max_tokens: rng.range(16, 256) as usize, ignore_eos: true, ..Default::default() };
            Arrival { at, prompt, params }
        })
        .collect()
}

fn sim_100k(c: &mut Criterion) {
    let config = SimConfig::from_names("qwen3-0.6b", "h100").unwrap();
    let workload = arrivals(REQUESTS, RATE, 42);
    let mut group = c.benchmark_group("sim");
    group.sample_size(10).measurement_time(Duration::from_secs(30)).warm_up_time(Duration::from_secs(1));
    group.bench_function("qwen3-0.6b_h100_100k_requests", |b| {
        b.iter(|| {
            let (mut engine, _) = config.build().unwrap();
            let summary = run_arrivals(&mut engine, &workload).unwrap();
            assert_eq!(summary.requests.len(), REQUESTS);
            summary.steps
        })
    });
    group.finish();
}

criterion_group!(benches, sim_100k);
criterion_main!(benches);
