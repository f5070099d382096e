//! The fleet-level causal chain, checked on the numbers as the
//! single-engine chain is (causal.rs): routing that ignores KV state → a
//! prefix's blocks on several replicas → a lower realized hit rate → more
//! prefill tokens computed → a higher TTFT.
//!
//! Each KV-blind policy (round_robin, power_of_two) is compared with the
//! KV-aware one (cache_aware) of the same run. A link is `supported` only
//! when the two policies' numbers show it, in the claimed direction;
//! otherwise, or when a number is missing, it is `not_shown`. Hits are the
//! engines' own counters (realized reuse); the gateway's routing is never
//! counted as a hit.

use super::policy::PolicyRun;
use kvscope_wire::metric_family::source;
use kvscope_wire::{EngineFamily, Quantity};
use serde::Serialize;

/// The policy that routes by (its approximation of) the replicas' KV.
pub const KV_AWARE: &str = "cache_aware";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Supported,
    NotShown,
}

/// One link: its id (the templates word it), the two policies' figures
/// and where they come from.
#[derive(Clone, Debug, Serialize)]
pub struct Link {
    pub id: &'static str,
    pub aware: Option<f64>,
    pub blind: Option<f64>,
    pub source: String,
    pub verdict: Verdict,
}

/// The chain for one KV-blind policy against the KV-aware one.
#[derive(Clone, Debug, Serialize)]
pub struct FleetChain {
    pub aware: String,
    pub blind: String,
    pub links: Vec<Link>,
    /// Every link supported.
    pub holds: bool,
}

/// `blind` larger than `aware` (or smaller, with `lower`): the link's
/// direction; a missing figure shows nothing.
fn link(id: &'static str, source: String, aware: Option<f64>, blind: Option<f64>, lower: bool) -> Link {
    let shown = match (aware, blind) {
        (Some(a), Some(b)) if lower => b < a,
        (Some(a), Some(b)) => b > a,
        _ => false,
    };
    Link { id, aware, blind, source, verdict: if shown { Verdict::Supported } else { Verdict::NotShown } }
}

/// The chain of each KV-blind policy in `runs` against cache_aware's run;
/// empty when cache_aware was not run (nothing to compare with).
pub fn chains(runs: &[PolicyRun]) -> Vec<FleetChain> {
    let Some(aware) = runs.iter().find(|r| r.policy == KV_AWARE) else { return Vec::new() };
    runs.iter().filter(|r| r.policy != KV_AWARE).map(|blind| chain(aware, blind)).collect()
}

/// The replicas' (kvscope serve's) metric name for `q`.
fn metric(q: Quantity) -> &'static str {
    source(EngineFamily::Kvscope, q).map_or("not exposed", |s| s.metric_name())
}

fn chain(aware: &PolicyRun, blind: &PolicyRun) -> FleetChain {
    let spread = |r: &PolicyRun| r.blocks_on_several.map(|n| n as f64);
    let ttft = |r: &PolicyRun| (r.ttft.n > 0).then_some(r.ttft.p50);
    let (hits, queries, prompt) =
        (metric(Quantity::PrefixHits), metric(Quantity::PrefixQueries), metric(Quantity::PromptTokens));
    let links = vec![
        link(
            "blocks_on_several",
            "KV events: BlockStored hashes per replica".into(),
            spread(aware),
            spread(blind),
            false,
        ),
        link("hit_rate", format!("engine metrics {hits} / {queries}"), aware.hit_rate, blind.hit_rate, true),
        link(
            "prefill_tokens",
            format!("engine metrics {prompt} − {hits}"),
            Some(aware.prefill_tokens),
            Some(blind.prefill_tokens),
            false,
        ),
        link("ttft_p50", "client-measured".into(), ttft(aware), ttft(blind), false),
    ];
    let holds = links.iter().all(|l| l.verdict == Verdict::Supported);
    FleetChain { aware: aware.policy.clone(), blind: blind.policy.clone(), links, holds }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::policy::fixtures::run;

    #[test]
    fn every_link_is_supported_when_the_blind_policy_is_worse_on_each() {
        let c = chains(&[run("cache_aware", 1200.0, Some(2), 0.2), run("round_robin", 600.0, Some(20), 0.3)]);
        assert_eq!(c.len(), 1);
        assert!(c[0].holds, "{:?}", c[0].links);
    }

    #[test]
    fn a_link_the_numbers_do_not_show_is_not_shown() {
        // Round-robin happened to be as fast: the TTFT link is not shown,
        // the others still are.
        let c = chains(&[run("cache_aware", 1200.0, None, 0.3), run("round_robin", 600.0, None, 0.3)]);
        let verdict = |id: &str| c[0].links.iter().find(|l| l.id == id).unwrap().verdict;
        assert_eq!(verdict("ttft_p50"), Verdict::NotShown);
        assert_eq!(verdict("blocks_on_several"), Verdict::NotShown, "no KV events: no evidence");
        assert_eq!(verdict("hit_rate"), Verdict::Supported);
        assert_eq!(verdict("prefill_tokens"), Verdict::Supported);
        assert!(!c[0].holds);
    }

    #[test]
    fn without_cache_aware_there_is_nothing_to_compare_with() {
        assert!(chains(&[run("round_robin", 600.0, None, 0.3)]).is_empty());
    }
}
