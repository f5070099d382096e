//! The simulator's fast path against its step-by-step path: runs of
//! identical decode-only steps advanced in one go (their cost summed in
//! closed form) must give the same capacity table and the same per-request
//! latencies as stepping one by one, on the lab's workloads.
//!
//! Counts (steps, live maximum, stalls, preemptions, tokens) must be equal;
//! times may differ only by the rounding of a closed-form sum against a
//! running sum (relative 1e-9).

use kvscope_experiment::capacity::CapacityRow;
use kvscope_experiment::workload::{shared_prefix_case, standard_cases, Arrival, Lengths, PromptSource, Scale};
use kvscope_experiment::{CaseRun, CaseSpec, Detail, Dist, RunOptions, Stop};
use kvscope_sim::{hardware_preset, model_preset, LinearCoefficients, SimConfig};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) + 1e-12
}

fn assert_dist(what: &str, a: &Dist, b: &Dist) {
    for (x, y) in [(a.mean, b.mean), (a.p50, b.p50), (a.p90, b.p90), (a.p99, b.p99), (a.max, b.max)] {
        assert!(close(x, y), "{what}: step by step {a:?}, decode runs {b:?}");
    }
}

fn assert_same(step: &CaseRun, fast: &CaseRun) {
    let name = &step.spec.name;
    assert_eq!(step.steps, fast.steps, "{name}: steps");
    assert_eq!(step.requests.len(), fast.requests.len(), "{name}: finished requests");
    assert_eq!(step.rejected, fast.rejected, "{name}: rejected");
    assert_eq!(step.prefix, fast.prefix, "{name}: prefix-cache counters");
    assert!(close(step.duration, fast.duration), "{name}: duration {} vs {}", step.duration, fast.duration);
    for (a, b) in step.requests.iter().zip(&fast.requests) {
        assert_eq!(
            (a.request_id, a.output_tokens, a.cached_prompt_tokens, a.preemptions, a.peak_blocks),
            (b.request_id, b.output_tokens, b.cached_prompt_tokens, b.preemptions, b.peak_blocks),
            "{name}"
        );
        let tpot = |t: Option<f64>| t.unwrap_or(-1.0);
        for (x, y) in [(a.ttft, b.ttft), (a.queue_wait, b.queue_wait), (a.e2e, b.e2e), (tpot(a.tpot), tpot(b.tpot))] {
            assert!(close(x, y), "{name}, request {}: {x} vs {y}", a.request_id);
        }
    }
    let (a, b) = (CapacityRow::from_run(step, false), CapacityRow::from_run(fast, false));
    assert_eq!(
        (a.concurrency, a.live_requests_max, a.stalled_steps, a.preemptions, a.binding_constraint()),
        (b.concurrency, b.live_requests_max, b.stalled_steps, b.preemptions, b.binding_constraint()),
        "{name}"
    );
    for (what, x, y) in [
        ("prompt_len", a.prompt_len, b.prompt_len),
        ("estimated_kv", a.estimated_kv, b.estimated_kv),
        ("estimated_kv_block_rounded", a.estimated_kv_block_rounded, b.estimated_kv_block_rounded),
        ("live_requests", a.live_requests, b.live_requests),
        ("stall_time_share_no_free_blocks", a.stall_time_share_no_free_blocks, b.stall_time_share_no_free_blocks),
        ("stall_time_share_max_running", a.stall_time_share_max_running, b.stall_time_share_max_running),
        ("stall_time_share_token_budget", a.stall_time_share_token_budget, b.stall_time_share_token_budget),
        ("stall_step_share_no_free_blocks", a.stall_step_share_no_free_blocks, b.stall_step_share_no_free_blocks),
        ("stall_step_share_max_running", a.stall_step_share_max_running, b.stall_step_share_max_running),
        ("stall_step_share_token_budget", a.stall_step_share_token_budget, b.stall_step_share_token_budget),
        ("stalled_seconds", a.stalled_seconds, b.stalled_seconds),
        ("peak_block_occupancy", a.peak_block_occupancy, b.peak_block_occupancy),
    ] {
        assert!(close(x, y), "{name}: {what} {x} vs {y}");
    }
    assert_dist(&format!("{name}: ttft"), &a.ttft, &b.ttft);
    assert_dist(&format!("{name}: queue_wait"), &a.queue_wait, &b.queue_wait);
    assert_eq!(a.members.len(), b.members.len(), "{name}: members");
    for (x, y) in a.members.iter().zip(&b.members) {
        assert_eq!(
            (x.requests, x.live_at_max, x.blocks_at_max),
            (y.requests, y.live_at_max, y.blocks_at_max),
            "{name}"
        );
        assert_dist(&format!("{name} {}: ttft", x.member), &x.ttft, &y.ttft);
    }
    assert_eq!(a.explanation, b.explanation, "{name}");
}

/// Runs every case both ways; returns how many decode runs the fast path took.
fn check(config: &SimConfig, cases: &[CaseSpec]) -> u64 {
    let vocab = config.model.vocab as u32;
    let mut runs = 0;
    for spec in cases {
        let requests = spec.generate(&PromptSource::Synthetic { vocab });
        let go =
            |detail| config.run(spec, requests.iter().cloned(), RunOptions { detail, stop: Stop::AtTheEnd }).unwrap();
        let (step, fast, plain) = (go(Detail::EveryStep), go(Detail::Summary), go(Detail::StepByStep));
        assert_eq!(step.decode_runs + plain.decode_runs, 0);
        assert!(plain.events.is_empty(), "step by step without events keeps none");
        assert_same(&step, &fast);
        assert_same(&step, &plain);
        runs += fast.decode_runs;
    }
    runs
}

/// The lab's cases and its probe case, all at once and as Poisson arrivals.
fn lab_cases(scale: Scale, pool_tokens: usize, rate: f64) -> Vec<CaseSpec> {
    let mut cases = standard_cases(scale, pool_tokens, 2026);
    let poisson: Vec<CaseSpec> = cases
        .iter()
        .map(|c| CaseSpec { name: format!("{}_poisson", c.name), arrival: Arrival::Poisson { rate }, ..c.clone() })
        .collect();
    cases.extend(poisson);
    cases.push(shared_prefix_case(scale, 2026));
    cases
}

/// The lab's pool on the CPU model: `kv_memory` of f32 SmolLM2 KV.
fn lab_sim(kv_memory: u64, max_running: usize, calibrated: bool) -> SimConfig {
    let model = model_preset("smollm2-135m").unwrap().with_kv_dtype(kvscope_core::KvDtype::F32);
    let mut hardware = hardware_preset("cpu").unwrap();
    if calibrated {
        // Coefficients of the order `kvscope sim --calibrate` fits here.
        hardware = hardware.with_calibration(LinearCoefficients::from_array(
            "smollm2-135m",
            [4e-3, 1.5e-4, 2e-3, 2e-9, 3e-7, 6e-4],
            4,
        ));
    }
    let mut config = SimConfig::new(model.clone(), hardware);
    config.kv_blocks = Some((kv_memory / (model.kv_bytes_per_token() * 16)) as usize);
    config.max_running = max_running;
    config.max_batched_tokens = 512;
    config
}

#[test]
fn quick_lab_on_the_cpu_profile_roofline_and_calibrated() {
    for calibrated in [false, true] {
        let runs = check(&lab_sim(48 << 20, 16, calibrated), &lab_cases(Scale::Quick, 0, 4.0));
        assert!(runs > 0, "the fast path was never taken");
    }
}

#[test]
fn full_lab_on_the_cpu_profile() {
    let runs = check(&lab_sim(256 << 20, 32, true), &lab_cases(Scale::Lab, 0, 2.0));
    assert!(runs > 0, "the fast path was never taken");
}

#[test]
fn gpu_scale_on_an_h100_with_a_small_pool_and_prefix_caching_off() {
    let mut config = SimConfig::from_names("qwen3-0.6b", "h100").unwrap();
    // A pool of 40k tokens keeps the request counts (twice the pool) small.
    config.kv_blocks = Some(2500);
    let pool_tokens = 2500 * 16;
    assert!(check(&config, &lab_cases(Scale::Gpu, pool_tokens, 20.0)) > 0);
    config.enable_prefix_caching = false;
    config.max_running = 16;
    assert!(check(&config, &lab_cases(Scale::Gpu, pool_tokens, 20.0)[..3]) > 0);
}

mod random_configurations {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Any pool, limits, caching, lengths and arrivals: the same table.
        #[test]
        fn decode_runs_match_stepping(
            pool_tokens in 1200usize..6000,
            block_size in prop::sample::select(vec![4usize, 8, 16, 32]),
            max_running in 1usize..64,
            max_batched_tokens in prop::sample::select(vec![8usize, 16, 32, 256, 2048]),
            caching in any::<bool>(),
            prompts in (1usize..300, 0usize..300),
            outputs in (1usize..120, 0usize..120),
            shared_prefix in prop::sample::select(vec![0usize, 16, 100]),
            rate in prop::sample::select(vec![0.0, 5.0, 50.0, 500.0]),
            seed in any::<u64>(),
        ) {
            let mut config = SimConfig::from_names("qwen3-0.6b", "l4").unwrap();
            config.kv_blocks = Some(pool_tokens / block_size);
            config.block_size = block_size;
            config.max_running = max_running;
            // A budget below the running limit is refused by the engine's
            // configuration check (as vLLM refuses it), so never drawn here.
            config.max_batched_tokens = max_batched_tokens.max(max_running);
            config.enable_prefix_caching = caching;
            let spec = CaseSpec {
                name: "random".into(),
                num_requests: 40,
                prompt_lengths: Lengths::Uniform { min: prompts.0 + shared_prefix, max: prompts.0 + prompts.1 + shared_prefix },
                output_lengths: Lengths::Uniform { min: outputs.0, max: outputs.0 + outputs.1 },
                arrival: Arrival::from_rate(rate, 1.0),
                shared_prefix_tokens: shared_prefix,
                seed,
            };
            prop_assert!(check(&config, &[spec]) < u64::MAX);
        }
    }
}
