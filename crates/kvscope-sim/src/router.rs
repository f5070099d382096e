//! The routing policies of a simulated fleet, modelled on the SGLang Model
//! Gateway (crate `sgl-model-gateway` 0.3.2, sgl-project/sglang,
//! `sgl-model-gateway/src/policies/{cache_aware,round_robin,power_of_two}.rs`).
//!
//! `cache_aware`, as that file documents and does: the system is
//! *imbalanced* when `max_load − min_load > balance_abs_threshold` and
//! `max_load > balance_rel_threshold × min_load` (load = the requests a
//! worker is serving); then the least-loaded worker is chosen. Otherwise the
//! request's prefix is matched against an approximate tree per worker of
//! the prompts routed there; a match rate (matched / prompt length) above
//! `cache_threshold` picks the best-matching worker, anything else the
//! least-loaded one (the first on ties: what the 0.3.2 code does, and what
//! the loopback fleet showed). Either way the prompt is inserted into the
//! chosen worker's tree. Defaults are the gateway's (`router_args.py`):
//! 0.3, 64, 1.5.
//!
//! Approximations, stated: the gateway's tree holds request *text*
//! characters; here it holds token ids, in grains of [`GRAIN`] tokens (a
//! match is counted in whole grains); its LRU eviction (every 60 s, beyond
//! 2^26 nodes) is not modelled, so a tree only grows.
//!
//! `power_of_two` (`policies/power_of_two.rs`) draws two distinct workers
//! and takes the one with fewer `/get_load` tokens, the first drawn on
//! ties. Those tokens are not live: the gateway polls `/get_load` every
//! 30 s and the policy reads the last poll; while a worker has no polled
//! figure both fall back to the gateway's own in-flight request counts,
//! which the gateway does not keep under this policy (both 0: the first
//! drawn). The fleet ([`crate::fleet`]) supplies exactly that view
//! ([`crate::load_monitor`]).

use kvscope_core::rng::SplitMix64;
use kvscope_core::TokenId;
use rustc_hash::{FxHashSet, FxHasher};
use std::hash::Hasher;

/// Tokens per step of the approximate tree.
pub const GRAIN: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouterKind {
    RoundRobin,
    /// Fewest requests in flight (the first on ties).
    LeastLoad,
    /// Two workers drawn at random; the one with fewer tokens of load.
    PowerOfTwo,
    CacheAware,
}

impl RouterKind {
    pub const NAMES: [&'static str; 4] = ["round_robin", "least_load", "power_of_two", "cache_aware"];
    pub fn name(self) -> &'static str {
        match self {
            RouterKind::RoundRobin => "round_robin",
            RouterKind::LeastLoad => "least_load",
            RouterKind::PowerOfTwo => "power_of_two",
            RouterKind::CacheAware => "cache_aware",
        }
    }
}

impl std::str::FromStr for RouterKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let all = [RouterKind::RoundRobin, RouterKind::LeastLoad, RouterKind::PowerOfTwo, RouterKind::CacheAware];
        all.into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("no router {s:?}: give one of {}", RouterKind::NAMES.join(", ")))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct CacheAwareConfig {
    pub cache_threshold: f64,
    pub balance_abs_threshold: usize,
    pub balance_rel_threshold: f64,
}

impl Default for CacheAwareConfig {
    fn default() -> Self {
        CacheAwareConfig { cache_threshold: 0.3, balance_abs_threshold: 64, balance_rel_threshold: 1.5 }
    }
}

/// A worker's load as the router sees it when a request is routed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerLoad {
    /// Requests running or waiting (the gateway's own in-flight count;
    /// 0 under policies for which the gateway keeps none).
    pub requests: usize,
    /// `/get_load`'s `num_tokens` (KV held plus prompts waiting) at the
    /// gateway's last poll; `None` before the first.
    pub polled_tokens: Option<usize>,
}

pub struct Router {
    kind: RouterKind,
    config: CacheAwareConfig,
    next: usize,
    rng: SplitMix64,
    /// Per worker: the hashes of every grain-aligned prefix routed there.
    trees: Vec<FxHashSet<u64>>,
}

impl Router {
    pub fn new(kind: RouterKind, workers: usize, config: CacheAwareConfig, seed: u64) -> Router {
        Router { kind, config, next: 0, rng: SplitMix64::new(seed), trees: vec![FxHashSet::default(); workers] }
    }

    /// The worker for a request of `prompt_len` tokens whose first tokens
    /// are `shareable` (a random prompt's own tokens match nobody's, so
    /// they are neither drawn nor inserted), given every worker's load.
    pub fn route(&mut self, shareable: &[TokenId], prompt_len: usize, loads: &[WorkerLoad]) -> usize {
        let n = loads.len();
        match self.kind {
            RouterKind::RoundRobin => {
                self.next += 1;
                (self.next - 1) % n
            }
            RouterKind::LeastLoad => least_loaded(loads),
            RouterKind::PowerOfTwo => {
                let a = self.rng.below(n);
                let b = if n > 1 { (a + 1 + self.rng.below(n - 1)) % n } else { a };
                let (load_a, load_b) = match (loads[a].polled_tokens, loads[b].polled_tokens) {
                    (Some(ta), Some(tb)) => (ta, tb),
                    _ => (loads[a].requests, loads[b].requests),
                };
                if load_b < load_a {
                    b
                } else {
                    a
                }
            }
            RouterKind::CacheAware => self.cache_aware(shareable, prompt_len, loads),
        }
    }

    fn cache_aware(&mut self, shareable: &[TokenId], prompt_len: usize, loads: &[WorkerLoad]) -> usize {
        let max = loads.iter().map(|l| l.requests).max().unwrap_or(0);
        let min = loads.iter().map(|l| l.requests).min().unwrap_or(0);
        let imbalanced = max - min > self.config.balance_abs_threshold
            && max as f64 > self.config.balance_rel_threshold * min as f64;
        let prefixes = grain_hashes(shareable);
        let chosen = if imbalanced {
            least_loaded(loads)
        } else {
            let matched = |tree: &FxHashSet<u64>| prefixes.iter().take_while(|h| tree.contains(h)).count() * GRAIN;
            let (best, best_len) =
                self.trees
                    .iter()
                    .map(matched)
                    .enumerate()
                    .fold((0, 0), |acc, (i, m)| if m > acc.1 { (i, m) } else { acc });
            let rate = if prompt_len == 0 { 0.0 } else { best_len as f64 / prompt_len as f64 };
            if rate > self.config.cache_threshold {
                best
            } else {
                least_loaded(loads)
            }
        };
        self.trees[chosen].extend(prefixes);
        chosen
    }
}

fn least_loaded(loads: &[WorkerLoad]) -> usize {
    (0..loads.len()).min_by_key(|&i| loads[i].requests).unwrap_or(0)
}

/// A chained hash of each whole grain-aligned prefix of `prompt`.
fn grain_hashes(prompt: &[TokenId]) -> Vec<u64> {
    let mut h = FxHasher::default();
    prompt
        .chunks_exact(GRAIN)
        .map(|grain| {
            for &t in grain {
                h.write_u32(t);
            }
            h.finish()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(n: usize) -> Vec<WorkerLoad> {
        vec![WorkerLoad::default(); n]
    }

    #[test]
    fn cache_aware_follows_the_prefix_while_balanced() {
        let mut r = Router::new(RouterKind::CacheAware, 2, CacheAwareConfig::default(), 1);
        let a: Vec<TokenId> = (0..160).collect();
        let b: Vec<TokenId> = (1000..1160).collect();
        let busy_first = [WorkerLoad { requests: 1, polled_tokens: None }, WorkerLoad::default()];
        assert_eq!(r.route(&a, a.len(), &idle(2)), 0, "no match: the least loaded, the first on ties");
        assert_eq!(r.route(&b, b.len(), &busy_first), 1, "no match: the least loaded");
        let a2 = [&a[..], &[7; 40]].concat();
        assert_eq!(
            r.route(&a2, a2.len(), &[WorkerLoad::default(), WorkerLoad { requests: 3, polled_tokens: None }]),
            0
        );
        let b2 = [&b[..], &[9; 40]].concat();
        assert_eq!(r.route(&b2, b2.len(), &busy_first), 1, "its prefix lives on worker 1");
    }

    #[test]
    fn cache_aware_balances_when_loads_drift_apart() {
        let mut r = Router::new(RouterKind::CacheAware, 2, CacheAwareConfig::default(), 1);
        let a: Vec<TokenId> = (0..160).collect();
        assert_eq!(r.route(&a, a.len(), &idle(2)), 0);
        let skewed =
            [WorkerLoad { requests: 100, polled_tokens: None }, WorkerLoad { requests: 10, polled_tokens: None }];
        assert_eq!(r.route(&a, a.len(), &skewed), 1, "100 − 10 > 64 and 100 > 1.5 × 10");
    }

    #[test]
    fn round_robin_cycles_and_power_of_two_prefers_the_lighter() {
        let mut r = Router::new(RouterKind::RoundRobin, 3, CacheAwareConfig::default(), 1);
        let picks: Vec<usize> = (0..6).map(|_| r.route(&[1], 1, &idle(3))).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        let mut p = Router::new(RouterKind::PowerOfTwo, 2, CacheAwareConfig::default(), 1);
        let loads =
            [WorkerLoad { requests: 0, polled_tokens: Some(500) }, WorkerLoad { requests: 0, polled_tokens: Some(5) }];
        assert!((0..20).all(|_| p.route(&[1], 1, &loads) == 1), "two draws of two workers always see both");
    }

    #[test]
    fn power_of_two_falls_back_to_request_counts_without_a_poll_for_both() {
        let mut p = Router::new(RouterKind::PowerOfTwo, 2, CacheAwareConfig::default(), 1);
        let half_polled =
            [WorkerLoad { requests: 4, polled_tokens: Some(5) }, WorkerLoad { requests: 1, polled_tokens: None }];
        assert!((0..20).all(|_| p.route(&[1], 1, &half_polled) == 1), "tokens are compared only when both have them");
        let stale =
            [WorkerLoad { requests: 4, polled_tokens: Some(0) }, WorkerLoad { requests: 1, polled_tokens: Some(0) }];
        let picks: Vec<usize> = (0..40).map(|_| p.route(&[1], 1, &stale)).collect();
        assert!(picks.contains(&0) && picks.contains(&1), "equal polled tokens: the first drawn, whatever runs now");
    }
}
