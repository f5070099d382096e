//! One run of the simulator-speed workload (see benches/sim_speed.rs):
//! `cargo run --release -p kvscope-sim --example sim_speed [requests] [rate] [step-by-step]`.

use kvscope_experiment::workload::{Arrival, CaseSpec, Lengths, PromptSource};
use kvscope_experiment::{run_case, Detail, Dist};
use kvscope_sim::SimConfig;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rate: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(250.0);
    let detail = if args.next().as_deref() == Some("step-by-step") { Detail::EveryStep } else { Detail::Summary };
    let config = SimConfig::from_names("qwen3-0.6b", "h100").unwrap();
    let spec = CaseSpec {
        name: "random".into(),
        num_requests: n,
        prompt_lengths: Lengths::Uniform { min: 32, max: 512 },
        output_lengths: Lengths::Uniform { min: 16, max: 256 },
        arrival: Arrival::Poisson { rate },
        shared_prefix_tokens: 0,
        seed: 42,
    };
    let requests = spec.generate(&PromptSource::Synthetic { vocab: 151_936 });
    let (engine_config, plan) = config.engine_config().unwrap();
    println!("{plan}");
    let (executor, clock) = config.executor();
    let start = Instant::now();
    let (run, executor) =
        run_case(executor, clock, &engine_config, &spec, requests.iter().cloned(), detail, &mut |_, _| {}).unwrap();
    let wall = start.elapsed().as_secs_f64();
    let totals = executor.totals();
    println!(
        "{n} requests at {rate}/s: {} steps ({} decode runs), {:.1} simulated s, {} prefill + {} decode tokens, wall {wall:.3} s",
        run.steps, run.decode_runs, run.duration, totals.prefill_tokens, totals.decode_tokens
    );
    let ttft = Dist::of(run.requests.iter().map(|r| r.ttft));
    println!("TTFT p50 {:.4} s p99 {:.4} s; preemptions {}", ttft.p50, ttft.p99, run.stats.preemptions);
}
