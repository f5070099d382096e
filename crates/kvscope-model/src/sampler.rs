//! Choosing the next token from logits: greedy, or temperature / top-k /
//! top-p sampling from a per-request random stream.
//!
//! The random draw for a request's output token `i` is a pure function of
//! `(seed, i)`, so a seeded request yields the same tokens however it was
//! batched, chunked or preempted and recomputed.

use kvscope_core::executor::SampledToken;
use kvscope_core::ids::TokenId;
use kvscope_core::request::{InvalidParams, SamplingParams};

/// SplitMix64's output function: a strong 64-bit mixer.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The uniform draw in `[0, 1)` for output token `index` of a request.
pub fn uniform(seed: u64, index: usize) -> f64 {
    let bits = mix64(mix64(seed) ^ mix64(index as u64 ^ 0x005E_ED0F_7E57));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Greedy choice: the largest logit, the lowest id among equals. NaNs never win.
pub fn argmax(logits: &[f32]) -> TokenId {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best as TokenId
}

/// Orders candidates most likely first, lowest id first among equals.
fn by_logit_desc(a: &(TokenId, f32), b: &(TokenId, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The `k` largest logits as `(id, logit)`, most likely first.
fn top_candidates(logits: &[f32], k: usize) -> Vec<(TokenId, f32)> {
    let mut c: Vec<(TokenId, f32)> =
        logits.iter().enumerate().filter(|(_, v)| !v.is_nan()).map(|(i, &v)| (i as TokenId, v)).collect();
    if k < c.len() {
        c.select_nth_unstable_by(k, by_logit_desc);
        c.truncate(k);
        // Give back the vocabulary-sized buffer: the result is kept per
        // scored token (collected in place by the callers), and 5 entries
        // holding 49152 slots' worth made a 2000-token scored prompt hold
        // ~0.8 GB.
        c.shrink_to_fit();
    }
    c.sort_unstable_by(by_logit_desc);
    c
}

/// `log_softmax` normaliser of the raw logits, in f64.
fn log_sum_exp(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().filter(|v| !v.is_nan()).fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().filter(|v| !v.is_nan()).map(|&v| (v as f64 - max).exp()).sum();
    max + sum.ln()
}

/// Log-probability of `token` under the raw logits, and the top `k`
/// alternatives: how a prompt token is scored.
pub fn score(logits: &[f32], token: TokenId, k: usize) -> (f32, Vec<(TokenId, f32)>) {
    let lse = log_sum_exp(logits);
    let top = top_candidates(logits, k).into_iter().map(|(id, v)| (id, (v as f64 - lse) as f32)).collect();
    ((logits[token as usize] as f64 - lse) as f32, top)
}

/// Pick the next token for output position `index` of a request whose random
/// stream is `seed`. Log-probabilities (of the raw, untempered distribution)
/// are filled in when `params.logprobs > 0`.
pub fn sample(logits: &[f32], params: &SamplingParams, seed: u64, index: usize) -> Result<SampledToken, InvalidParams> {
    params.validate()?;
    let token = if params.is_greedy() { argmax(logits) } else { sample_random(logits, params, uniform(seed, index)) };
    let mut out = SampledToken::plain(token);
    if params.logprobs > 0 {
        let lse = log_sum_exp(logits);
        out.logprob = Some((logits[token as usize] as f64 - lse) as f32);
        out.top_logprobs =
            top_candidates(logits, params.logprobs).into_iter().map(|(id, v)| (id, (v as f64 - lse) as f32)).collect();
    }
    Ok(out)
}

fn sample_random(logits: &[f32], params: &SamplingParams, u: f64) -> TokenId {
    let k = params.top_k.unwrap_or(logits.len()).min(logits.len());
    let cands = top_candidates(logits, k);
    if cands.is_empty() {
        return 0;
    }
    let t = params.temperature as f64;
    let max = cands[0].1 as f64 / t;
    let probs: Vec<f64> = cands.iter().map(|&(_, v)| (v as f64 / t - max).exp()).collect();
    let total: f64 = probs.iter().sum();
    // Nucleus: the smallest most-likely-first prefix whose mass reaches top_p.
    let mut keep = probs.len();
    if params.top_p < 1.0 {
        let target = params.top_p as f64 * total;
        let mut cum = 0.0;
        for (i, p) in probs.iter().enumerate() {
            cum += p;
            if cum >= target {
                keep = i + 1;
                break;
            }
        }
    }
    let kept: f64 = probs[..keep].iter().sum();
    let mut r = u * kept;
    for (i, p) in probs[..keep].iter().enumerate() {
        if r < *p {
            return cands[i].0;
        }
        r -= p;
    }
    cands[keep - 1].0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_top_lists_do_not_hold_a_vocabulary_sized_buffer() {
        let logits: Vec<f32> = (0..50_000).map(|i| (i % 97) as f32).collect();
        let (_, top) = score(&logits, 3, 5);
        assert_eq!(top.len(), 5);
        assert!(top.capacity() < 64, "capacity {} for 5 entries", top.capacity());
        let p = SamplingParams { logprobs: 5, ..params(0.0) };
        let sampled = sample(&logits, &p, 0, 0).unwrap();
        assert!(sampled.top_logprobs.capacity() < 64, "capacity {}", sampled.top_logprobs.capacity());
    }

    fn params(temperature: f32) -> SamplingParams {
        SamplingParams { temperature, ..Default::default() }
    }

    #[test]
    fn greedy_takes_the_max_and_the_lowest_id_on_ties() {
        assert_eq!(argmax(&[0.1, 3.0, -1.0, 3.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 1.0, 0.5]), 1);
        let s = sample(&[0.0, 2.0, 2.0], &params(0.0), 1, 0).unwrap();
        assert_eq!(s, SampledToken::plain(1));
    }

    #[test]
    fn draws_depend_only_on_seed_and_index() {
        assert_eq!(uniform(7, 3), uniform(7, 3));
        assert_ne!(uniform(7, 3), uniform(7, 4));
        assert_ne!(uniform(7, 3), uniform(8, 3));
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.7).sin()).collect();
        let p = params(1.0);
        let a: Vec<_> = (0..20).map(|i| sample(&logits, &p, 42, i).unwrap().token).collect();
        let b: Vec<_> = (0..20).map(|i| sample(&logits, &p, 42, i).unwrap().token).collect();
        assert_eq!(a, b);
        assert!(a.iter().any(|&t| t != a[0]), "a temperature-1 stream should vary");
    }

    #[test]
    fn top_k_one_and_tiny_top_p_are_greedy() {
        let logits = [0.5f32, 1.5, 1.4, -2.0];
        for i in 0..50 {
            let k1 = SamplingParams { top_k: Some(1), ..params(2.0) };
            assert_eq!(sample(&logits, &k1, 9, i).unwrap().token, 1);
            let p = SamplingParams { top_p: 1e-6, ..params(2.0) };
            assert_eq!(sample(&logits, &p, 9, i).unwrap().token, 1);
        }
    }

    #[test]
    fn top_k_restricts_the_support_and_frequencies_follow_probabilities() {
        let logits = [1.0f32, 0.0, 2.0, -1.0];
        let p = SamplingParams { top_k: Some(2), ..params(1.0) };
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            counts[sample(&logits, &p, 5, i).unwrap().token as usize] += 1;
        }
        assert_eq!(counts[1] + counts[3], 0);
        // P(2) = e / (e + 1) ≈ 0.731
        let f = counts[2] as f64 / 4000.0;
        assert!((f - 0.731).abs() < 0.03, "{f}");
    }

    #[test]
    fn logprobs_are_log_softmax_of_raw_logits() {
        let logits = [0.0f32, (2.0f32).ln(), (5.0f32).ln()]; // probs 1/8, 2/8, 5/8
        let p = SamplingParams { logprobs: 2, ..params(0.0) };
        let s = sample(&logits, &p, 0, 0).unwrap();
        assert_eq!(s.token, 2);
        assert!((s.logprob.unwrap() - (0.625f32).ln()).abs() < 1e-6);
        assert_eq!(s.top_logprobs.len(), 2);
        assert_eq!(s.top_logprobs[1].0, 1);
        assert!((s.top_logprobs[1].1 - (0.25f32).ln()).abs() < 1e-6);
    }

    #[test]
    fn invalid_params_are_rejected() {
        assert!(sample(&[0.0], &params(-1.0), 0, 0).is_err());
        let p = SamplingParams { top_p: 0.0, ..params(1.0) };
        assert!(sample(&[0.0], &p, 0, 0).is_err());
    }
}
