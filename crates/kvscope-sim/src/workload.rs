//! Small deterministic building blocks for synthetic workloads: a seeded
//! generator and Poisson arrival times.

use kvscope_core::Seconds;

pub use kvscope_core::rng::SplitMix64;

/// `n` arrival times of a Poisson process with `rate` requests per second,
/// starting at 0 (exponential gaps). A non-positive or infinite rate puts
/// every arrival at t = 0.
pub fn poisson_arrival_times(n: usize, rate: f64, seed: u64) -> Vec<Seconds> {
    let mut rng = SplitMix64::new(seed);
    let mut t = 0.0;
    (0..n)
        .map(|_| {
            if rate.is_finite() && rate > 0.0 {
                t += -(1.0 - rng.next_f64()).ln() / rate;
            }
            t
        })
        .collect()
}

/// `n` Poisson arrivals of distinct random prompts, lengths uniform in
/// `prompt_tokens` and `output_tokens` (inclusive), token ids below
/// `vocab`; outputs run to their length (`ignore_eos`).
pub fn random_arrivals(
    n: usize,
    rate: f64,
    prompt_tokens: (usize, usize),
    output_tokens: (usize, usize),
    vocab: u32,
    seed: u64,
) -> Vec<crate::driver::Arrival> {
    let mut rng = SplitMix64::new(seed ^ 0x5eed_5eed);
    poisson_arrival_times(n, rate, seed)
        .into_iter()
        .map(|at| {
            let len = rng.range(prompt_tokens.0 as u64, prompt_tokens.1 as u64);
            let prompt = (0..len).map(|_| rng.range(0, u64::from(vocab.max(1)) - 1) as u32).collect();
            let params = kvscope_core::SamplingParams {
                max_tokens: rng.range(output_tokens.0 as u64, output_tokens.1 as u64) as usize,
                ignore_eos: true,
                ..Default::default()
            };
            crate::driver::Arrival { at, prompt, params }
        })
        .collect()
}
