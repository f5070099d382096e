//! How fast the simulator itself runs: 100,000 requests of Qwen3-0.6B on
//! one H100 through the real scheduler and block manager, with the fast
//! path (decode runs summed in closed form) and, for comparison, step by
//! step. Reports wall time per whole run. `examples/sim_speed.rs` runs the
//! same workload once and prints what it simulated.

use criterion::{criterion_group, criterion_main, Criterion};
use kvscope_experiment::workload::{Arrival, CaseSpec, PromptSource};
use kvscope_experiment::{Detail, RunOptions, Stop};
use kvscope_sim::SimConfig;
use std::time::Duration;

fn sim_100k(c: &mut Criterion) {
    let config = SimConfig::from_names("qwen3-0.6b", "h100").unwrap();
    // Prompts of 32–512 tokens, outputs of 16–256, all distinct, at 250
    // req/s: below the ~320 req/s the simulated H100 sustains for this mix,
    // so the queue stays short and batches are large.
    let spec = CaseSpec::uniform("random", 100_000, (32, 512), (16, 256), Arrival::Poisson { rate: 250.0 }, 42);
    let requests = spec.generate(&PromptSource::Synthetic { vocab: 151_936 });
    let mut group = c.benchmark_group("sim");
    group.sample_size(10).measurement_time(Duration::from_secs(30)).warm_up_time(Duration::from_secs(1));
    for (name, detail) in [("decode_runs", Detail::Summary), ("step_by_step", Detail::EveryStep)] {
        group.bench_function(format!("qwen3-0.6b_h100_100k_requests_{name}"), |b| {
            b.iter(|| {
                let run =
                    config.run(&spec, requests.iter().cloned(), RunOptions { detail, stop: Stop::AtTheEnd }).unwrap();
                assert_eq!(run.requests.len(), 100_000);
                run.steps
            })
        });
    }
    group.finish();
}

criterion_group!(benches, sim_100k);
criterion_main!(benches);
