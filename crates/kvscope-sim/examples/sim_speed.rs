//! One run of the simulator-speed workload (see benches/sim_speed.rs):
//! `cargo run --release -p kvscope-sim --example sim_speed [requests] [rate]`.

use kvscope_sim::{random_arrivals, run_arrivals, SimConfig};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rate: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(250.0);
    let config = SimConfig::from_names("qwen3-0.6b", "h100").unwrap();
    let workload = random_arrivals(n, rate, (32, 512), (16, 256), 151_936, 42);
    let (mut engine, plan) = config.build().unwrap();
    println!("{plan}");
    let start = Instant::now();
    let summary = run_arrivals(&mut engine, &workload).unwrap();
    let wall = start.elapsed().as_secs_f64();
    let totals = engine.executor().totals();
    println!(
        "{n} requests at {rate}/s: {} steps, {:.1} simulated s, {} prefill + {} decode tokens, wall {wall:.3} s",
        summary.steps, summary.makespan, totals.prefill_tokens, totals.decode_tokens
    );
    println!(
        "TTFT p50 {:.4} s p99 {:.4} s; max running {}; preemptions {}",
        summary.quantile(0.5, |r| r.ttft),
        summary.quantile(0.99, |r| r.ttft),
        config.max_running,
        engine.scheduler().num_preemptions()
    );
}
