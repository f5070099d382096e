//! One run of the simulator-speed workload (see benches/sim_speed.rs):
//! `cargo run --release -p kvscope-sim --example sim_speed [requests] [rate] [step-by-step]`.

use kvscope_experiment::workload::{Arrival, CaseSpec, PromptSource};
use kvscope_experiment::{run_case, Detail, Dist, RunOptions, Stop};
use kvscope_sim::SimConfig;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rate: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(250.0);
    let detail = if args.next().as_deref() == Some("step-by-step") { Detail::EveryStep } else { Detail::Summary };
    let config = SimConfig::from_names("qwen3-0.6b", "h100").unwrap();
    let spec = CaseSpec::uniform("random", n, (32, 512), (16, 256), Arrival::Poisson { rate }, 42);
    let source = PromptSource::Synthetic { vocab: 151_936 };
    let (engine_config, plan) = config.engine_config().unwrap();
    println!("{plan}");
    let (executor, clock) = config.executor();
    let start = Instant::now();
    let (run, executor) = run_case(
        executor,
        clock,
        &engine_config,
        &spec,
        spec.requests(&source),
        RunOptions { detail, stop: Stop::AtTheEnd },
        &mut |_, _| {},
    )
    .unwrap();
    let wall = start.elapsed().as_secs_f64();
    let totals = executor.totals();
    println!(
        "{n} requests at {rate}/s: {} steps ({} decode runs), {:.1} simulated s, {} prefill + {} decode tokens, wall {wall:.3} s",
        run.steps, run.decode_runs, run.duration, totals.prefill_tokens, totals.decode_tokens
    );
    let ttft = Dist::of(run.requests.iter().map(|r| r.ttft));
    println!("TTFT p50 {:.4} s p99 {:.4} s; preemptions {}", ttft.p50, ttft.p99, run.stats.preemptions);
}
