//! Every figure of the fleet report (templates/fleet.{zh,en}.md.j2),
//! formatted once, with the metric each comes from; the templates only
//! place them and word them in their language.

use super::chain::Verdict;
use super::fault::FaultReport;
use super::policy::{PolicyRun, ReplicaFigures};
use super::results::FleetResults;
use kvscope_wire::metric_family::source;
use kvscope_wire::{EngineFamily, Quantity};
use serde::Serialize;

#[derive(Serialize)]
pub struct FleetModel {
    pub replicas: usize,
    pub scale: String,
    pub conversations: usize,
    pub turns: usize,
    pub system_words: usize,
    pub turn_words: usize,
    pub output_tokens: usize,
    pub rate: String,
    pub seed: u64,
    pub gateway: String,
    pub gateway_flags: String,
    pub interval_ms: u64,
    pub tags: Tags,
    pub policies: Vec<PolicyRow>,
    pub replica_rows: Vec<ReplicaRow>,
    pub chains: Vec<ChainRow>,
    pub faults: Vec<FaultRow>,
    pub problems: Vec<String>,
}

/// The replicas' metric names, for the tables' headers.
#[derive(Serialize)]
pub struct Tags {
    pub running: &'static str,
    pub kv_usage: &'static str,
    pub cached: &'static str,
    pub hits: &'static str,
    pub queries: &'static str,
    pub prompt: &'static str,
    pub evictions: &'static str,
    pub preemptions: &'static str,
    pub queue: &'static str,
}

#[derive(Serialize)]
pub struct PolicyRow {
    pub policy: String,
    pub requests: usize,
    pub failed: usize,
    pub ttft_p50: String,
    pub ttft_p90: String,
    pub queue_p50: String,
    pub queue_p90: String,
    pub prompt_tokens: String,
    pub hit_tokens: String,
    pub prefill_tokens: String,
    pub hit_rate: String,
    pub blocks_on_several: String,
}

#[derive(Serialize)]
pub struct ReplicaRow {
    pub policy: String,
    pub replica: usize,
    pub url: String,
    pub live: String,
    pub kv_peak: String,
    pub cached_peak: String,
    pub hits: String,
    pub queries: String,
    pub evicted: String,
    pub preemptions: String,
    /// Why its figures are blank (empty: read).
    pub gap: String,
    /// It died during the run: its counters end at its last answered
    /// poll, this many seconds in (empty: read to the end).
    pub counted_until: String,
}

#[derive(Serialize)]
pub struct ChainRow {
    pub aware: String,
    pub blind: String,
    pub holds: bool,
    pub links: Vec<LinkRow>,
}

#[derive(Serialize)]
pub struct LinkRow {
    pub id: &'static str,
    pub aware: String,
    pub blind: String,
    pub source: String,
    pub supported: bool,
}

#[derive(Serialize)]
pub struct FaultRow {
    pub policy: String,
    pub replica: usize,
    pub url: String,
    pub planned_s: String,
    pub killed_at: String,
    pub requests: usize,
    pub failed: usize,
    pub first_error: String,
    pub retries: String,
    pub retries_exhausted: String,
    pub retries_source: String,
    pub survivors: Vec<SurvivorRow>,
}

#[derive(Serialize)]
pub struct SurvivorRow {
    pub replica: usize,
    pub polls: usize,
    pub kv_last: String,
    pub kv_peak: String,
    pub running_peak: String,
    pub hits: String,
}

fn metric(q: Quantity) -> &'static str {
    source(EngineFamily::Kvscope, q).map_or("not exposed", |s| s.metric_name())
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("—".into(), |v| format!("{v:.digits$}"))
}

fn pct(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{:.1} %", v * 100.0))
}

impl FleetModel {
    pub fn of(res: &FleetResults) -> FleetModel {
        let case = &res.case;
        FleetModel {
            replicas: res.replicas,
            scale: res.scale.clone(),
            conversations: case.conversations,
            turns: case.turns,
            system_words: case.system_words,
            turn_words: case.turn_words,
            output_tokens: case.output_tokens,
            rate: format!("{}", case.rate),
            seed: case.seed,
            gateway: res.gateway.clone(),
            gateway_flags: res.gateway_flags.join(" "),
            interval_ms: res.metrics_interval_ms,
            tags: Tags {
                running: metric(Quantity::RunningRequests),
                kv_usage: metric(Quantity::KvUsage),
                cached: metric(Quantity::CachedBlocks),
                hits: metric(Quantity::PrefixHits),
                queries: metric(Quantity::PrefixQueries),
                prompt: metric(Quantity::PromptTokens),
                evictions: metric(Quantity::Evictions),
                preemptions: metric(Quantity::Preemptions),
                queue: metric(Quantity::QueueTime),
            },
            policies: res.policies.iter().map(policy_row).collect(),
            replica_rows: res
                .policies
                .iter()
                .flat_map(|p| p.replicas.iter().map(|r| replica_row(&p.policy, r)))
                .collect(),
            chains: res.chains.iter().map(chain_row).collect(),
            faults: res.policies.iter().filter_map(|p| p.fault.as_ref().map(|f| fault_row(&p.policy, f))).collect(),
            problems: res.problems.iter().cloned().chain(policy_problems(&res.policies)).collect(),
        }
    }
}

fn policy_problems(runs: &[PolicyRun]) -> impl Iterator<Item = String> + '_ {
    runs.iter().flat_map(|r| r.problems.iter().map(move |p| format!("{}: {p}", r.policy)))
}

fn policy_row(r: &PolicyRun) -> PolicyRow {
    PolicyRow {
        policy: r.policy.clone(),
        requests: r.requests,
        failed: r.failed,
        ttft_p50: format!("{:.3}", r.ttft.p50),
        ttft_p90: format!("{:.3}", r.ttft.p90),
        queue_p50: opt(r.queue_wait.map(|q| q.p50), 3),
        queue_p90: opt(r.queue_wait.map(|q| q.p90), 3),
        prompt_tokens: format!("{:.0}", r.prompt_tokens),
        hit_tokens: format!("{:.0}", r.hit_tokens),
        prefill_tokens: format!("{:.0}", r.prefill_tokens),
        hit_rate: pct(r.hit_rate),
        blocks_on_several: r.blocks_on_several.map_or("—".into(), |n| n.to_string()),
    }
}

fn replica_row(policy: &str, r: &ReplicaFigures) -> ReplicaRow {
    ReplicaRow {
        policy: policy.to_string(),
        replica: r.replica,
        url: r.url.clone(),
        live: match (r.live_requests_mean, r.live_requests_max) {
            (Some(mean), Some(max)) => format!("{mean:.1} / {max:.0}"),
            _ => "—".into(),
        },
        kv_peak: pct(r.kv_usage_peak),
        cached_peak: opt(r.cached_blocks_peak, 0),
        hits: opt(r.prefix_hit_tokens, 0),
        queries: opt(r.prefix_query_tokens, 0),
        evicted: opt(r.evicted_blocks, 0),
        preemptions: opt(r.preemptions, 0),
        gap: r.gap.clone().unwrap_or_default(),
        counted_until: r.counted_until_s.map_or(String::new(), |t| format!("{t:.1}")),
    }
}

fn chain_row(c: &super::chain::FleetChain) -> ChainRow {
    let links = c
        .links
        .iter()
        .map(|l| {
            let digits = if l.id == "hit_rate" || l.id == "ttft_p50" { 3 } else { 0 };
            LinkRow {
                id: l.id,
                aware: opt(l.aware, digits),
                blind: opt(l.blind, digits),
                source: l.source.clone(),
                supported: l.verdict == Verdict::Supported,
            }
        })
        .collect();
    ChainRow { aware: c.aware.clone(), blind: c.blind.clone(), holds: c.holds, links }
}

fn fault_row(policy: &str, f: &FaultReport) -> FaultRow {
    FaultRow {
        policy: policy.to_string(),
        replica: f.plan.replica,
        url: f.url.clone(),
        planned_s: format!("{:.1}", f.plan.after_s),
        killed_at: opt(f.killed_at_s, 2),
        requests: f.requests,
        failed: f.failed_requests,
        first_error: f.first_error.clone().unwrap_or_default(),
        retries: opt(f.retries, 0),
        retries_exhausted: opt(f.retries_exhausted, 0),
        retries_source: f.retries_source.clone(),
        survivors: f
            .survivors
            .iter()
            .map(|s| SurvivorRow {
                replica: s.replica,
                polls: s.polls_after_kill,
                kv_last: pct(s.kv_usage_last),
                kv_peak: pct(s.kv_usage_peak_after),
                running_peak: opt(s.running_peak_after, 0),
                hits: opt(s.prefix_hit_tokens_after, 0),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::chain::chains;
    use crate::fleet::fault::FaultPlan;
    use crate::fleet::policy::fixtures::run;
    use crate::lang::Lang;

    fn results() -> FleetResults {
        let mut blind = run("round_robin", 600.0, Some(12), 0.3);
        blind.fault = Some(FaultReport {
            plan: FaultPlan { replica: 0, after_s: 1.5 },
            url: "http://r0".into(),
            killed_at_s: Some(1.52),
            requests: 9,
            failed_requests: 2,
            first_error: Some("stream broke".into()),
            retries: Some(3.0),
            retries_exhausted: Some(0.0),
            retries_source: "gateway metrics smg_worker_retries_total".into(),
            survivors: Vec::new(),
        });
        blind.replicas = vec![
            ReplicaFigures { replica: 0, url: "http://r0".into(), counted_until_s: Some(1.42), ..Default::default() },
            ReplicaFigures { replica: 1, url: "http://r1".into(), gap: Some("down".into()), ..Default::default() },
        ];
        let policies = vec![run("cache_aware", 1200.0, Some(3), 0.2), blind];
        FleetResults {
            replicas: 2,
            scale: "quick".into(),
            case: kvscope_experiment::ChatsCase::at(kvscope_experiment::Scale::Quick, 1),
            gateway: "sglang-router==0.3.2".into(),
            gateway_flags: vec!["--retry-max-retries".into(), "3".into()],
            metrics_interval_ms: 100,
            policies_asked: vec!["cache_aware".into(), "round_robin".into()],
            fault: None,
            chains: chains(&policies),
            policies,
            problems: vec!["power_of_two: not run".into()],
        }
    }

    #[test]
    fn both_languages_render_every_section() {
        let model = FleetModel::of(&results());
        for (lang, words) in [
            (
                Lang::En,
                [
                    "## Per replica",
                    "## The causal chain at fleet level",
                    "## Fault",
                    "compares faulted runs",
                    "supported",
                    "power_of_two: not run",
                ],
            ),
            (
                Lang::Zh,
                ["## 每个副本", "## 舰队层面的因果链", "## 故障", "有故障的运行", "成立", "power_of_two: not run"],
            ),
        ] {
            let md = crate::template::render_fleet(&model, lang);
            for w in words {
                assert!(md.contains(w), "{lang:?} lacks {w:?}:\n{md}");
            }
            assert!(md.contains("| round_robin | 1 (http://r1) |") && md.contains("down"), "{md}");
            assert!(md.contains("t = 1.4"), "the killed replica's counters end at its last poll: {md}");
            assert!(!md.contains("\n\n\n"), "no double blank line: {md}");
        }
    }
}
