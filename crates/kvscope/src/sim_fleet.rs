//! `kvscope sim --replicas N --router R`: the fleet experiment's workload
//! (`shared_prefix_chats` at `--scale`) on N simulated replicas behind a
//! router modelled on the SGLang Model Gateway (kvscope-sim's router.rs).

use crate::rate_search::{highest_rate, Probe};
use crate::sim_args::SimArgs;
use anyhow::Context;
use kvscope_core::TokenId;
use kvscope_experiment::workload::{ChatsCase, PromptSource};
use kvscope_experiment::{Dist, RequestResult};
use kvscope_sim::{run_fleet, CacheAwareConfig, FleetRun, Router, SimConfig};
use serde_json::json;

/// Most replicas one simulated fleet takes.
const MAX_REPLICAS: usize = 1024;

pub fn run(config: SimConfig, args: &SimArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_REPLICAS).contains(&args.replicas),
        "--replicas must be between 1 and {MAX_REPLICAS}, got {}",
        args.replicas
    );
    let config = &config;
    let mut case = ChatsCase::at(args.scale.into(), args.seed);
    if let Some(rate) = args.request_rate {
        case.rate = rate;
    }
    if let Some(n) = args.num_requests {
        case.conversations = conversations_for(n, case.turns);
    }
    let tokenizer = match &args.tokenizer {
        Some(path) => {
            Some(read_tokenizer(path).with_context(|| format!("reading the tokenizer of {}", path.display()))?)
        }
        None => None,
    };
    let tokenize = |text: &str| -> Vec<TokenId> {
        tokenizer.as_ref().map_or_else(Vec::new, |t| t.encode(text).unwrap_or_default())
    };
    let source = match tokenizer {
        Some(_) => PromptSource::Generated { tokenize: &tokenize },
        None => PromptSource::Synthetic { vocab: config.model.vocab as u32 },
    };
    if args.find_max_rate {
        let slo = args.slo_ttft_p99.context("--find-max-rate needs --slo-ttft-p99")?;
        return max_rate(config, args, &case, &source, slo);
    }
    let fleet = simulate(config, args, &case, &source)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&as_json(&fleet, &case, args.save_detailed))?);
    } else {
        print_table(&fleet, &case, args);
    }
    Ok(())
}

/// Whole conversations for at least `requests` requests, odd in number
/// (as the case's own: round-robin over an even number of replicas must
/// not keep a conversation on one replica by coincidence).
fn conversations_for(requests: usize, turns: usize) -> usize {
    (requests.div_ceil(turns.max(1)) | 1).max(1)
}

fn read_tokenizer(path: &std::path::Path) -> anyhow::Result<kvscope_model::tokenizer::Tokenizer> {
    let gguf = kvscope_model::gguf::Gguf::open(path)?;
    Ok(kvscope_model::tokenizer::Tokenizer::from_gguf(&gguf)?)
}

/// One run of `case` on a fresh fleet.
fn simulate(config: &SimConfig, args: &SimArgs, case: &ChatsCase, source: &PromptSource) -> anyhow::Result<FleetRun> {
    let requests = case.requests(source);
    let engines = (0..args.replicas).map(|_| config.build().map(|(engine, _)| engine)).collect::<Result<_, _>>()?;
    let mut router =
        Router::new(args.router, args.replicas, CacheAwareConfig::default(), args.router_seed.unwrap_or(args.seed));
    Ok(run_fleet(engines, &mut router, args.router, requests)?)
}

/// The highest Poisson rate at which the fleet's p99 TTFT meets `slo` (the
/// same arrival draws scaled at every rate), then that rate's run.
fn max_rate(
    config: &SimConfig,
    args: &SimArgs,
    case: &ChatsCase,
    source: &PromptSource,
    slo: f64,
) -> anyhow::Result<()> {
    let probe = |rate: f64| match simulate(config, args, &ChatsCase { rate, ..case.clone() }, source) {
        Ok(fleet) if fleet.rejected.is_empty() => Probe::P99(fleet.ttft().p99),
        Ok(fleet) => Probe::Rejected(fleet.rejected.len()),
        Err(e) => Probe::Failed(e.to_string()),
    };
    let Some(rate) = highest_rate(slo, args.max_rate_hi, probe) else {
        return Ok(());
    };
    let at = ChatsCase { rate, ..case.clone() };
    let fleet = simulate(config, args, &at, source)?;
    if args.json {
        let mut out = as_json(&fleet, &at, args.save_detailed);
        out["max_rate"] = json!(rate);
        out["slo_ttft_p99_s"] = json!(slo);
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("highest request rate with p99 TTFT <= {slo} s (simulated): {rate:.3} req/s");
        print_table(&fleet, &at, args);
    }
    Ok(())
}

fn print_table(fleet: &FleetRun, case: &ChatsCase, args: &SimArgs) {
    let total = fleet.replicas.iter().map(|r| r.requests.len()).sum::<usize>() + fleet.rejected.len();
    println!(
        "fleet (simulated): {} replicas of {} on {}, router {}, workload {} ({} conversations × {} turns = {total} requests, {:.3} req/s Poisson)",
        args.replicas,
        args.model_preset,
        args.hardware,
        args.router.name(),
        case.name,
        case.conversations,
        case.turns,
        case.rate
    );
    println!("replica  requests  prefix-hit tokens  queried tokens  evictions  TTFT p50 (s)  TTFT p90 (s)  queue p50 (s)  queue p90 (s)");
    for (i, r) in fleet.replicas.iter().enumerate() {
        let ttft = Dist::of(r.requests.iter().map(|q| q.ttft));
        let queue = Dist::of(r.requests.iter().map(|q| q.queue_wait));
        println!(
            "{i:>7}  {:>8}  {:>17}  {:>14}  {:>9}  {:>12.3}  {:>12.3}  {:>13.3}  {:>13.3}",
            r.requests.len(),
            r.prefix.hit_tokens,
            r.prefix.queried_tokens,
            r.prefix.evictions,
            ttft.p50,
            ttft.p90,
            queue.p50,
            queue.p90
        );
    }
    let (ttft, queue) = (fleet.ttft(), fleet.queue_wait());
    println!(
        "fleet: prefix-hit tokens {}, prefill tokens computed {}, TTFT p50 {:.3} s p90 {:.3} s, queue wait p50 {:.3} s p90 {:.3} s",
        fleet.hit_tokens(),
        fleet.prefill_tokens(),
        ttft.p50,
        ttft.p90,
        queue.p50,
        queue.p90
    );
}

/// The run's figures; with `detailed`, every request's too.
fn as_json(fleet: &FleetRun, case: &ChatsCase, detailed: bool) -> serde_json::Value {
    let replicas: Vec<_> = fleet
        .replicas
        .iter()
        .map(|r| {
            json!({
                "requests": r.requests.len(),
                "prefix_hit_tokens": r.prefix.hit_tokens,
                "prefix_queried_tokens": r.prefix.queried_tokens,
                "evictions": r.prefix.evictions,
                "duration": r.duration,
                "ttft": Dist::of(r.requests.iter().map(|q| q.ttft)),
                "queue_wait": Dist::of(r.requests.iter().map(|q| q.queue_wait)),
            })
        })
        .collect();
    let mut out = json!({
        "simulated": true,
        "router": fleet.router,
        "workload": case,
        "replicas": replicas,
        "prefix_hit_tokens": fleet.hit_tokens(),
        "prefill_tokens": fleet.prefill_tokens(),
        "rate": case.rate,
        "ttft": fleet.ttft(),
        "queue_wait": fleet.queue_wait(),
        "rejected": fleet.rejected.len(),
    });
    if detailed {
        add_requests(&mut out, fleet);
    }
    out
}

/// Every request's figures, in request order, under `bench serve
/// --save-detailed`'s keys (and the simulator's own: queue wait, end-to-end
/// latency, cached prompt tokens, the replica it was routed to).
fn add_requests(out: &mut serde_json::Value, fleet: &FleetRun) {
    let mut all: Vec<_> = fleet
        .replicas
        .iter()
        .enumerate()
        .flat_map(|(replica, r)| r.requests.iter().map(move |q| (replica, q)))
        .collect();
    all.sort_by_key(|(_, q)| q.request_id);
    let each = |f: &dyn Fn(usize, &RequestResult) -> serde_json::Value| {
        serde_json::Value::Array(all.iter().map(|(replica, q)| f(*replica, q)).collect())
    };
    out["start_times"] = each(&|_, q| json!(q.arrival));
    out["input_lens"] = each(&|_, q| json!(q.prompt_tokens));
    out["ttfts"] = each(&|_, q| json!(q.ttft));
    out["queue_waits"] = each(&|_, q| json!(q.queue_wait));
    out["e2els"] = each(&|_, q| json!(q.e2e));
    out["cached_input_lens"] = each(&|_, q| json!(q.cached_prompt_tokens));
    out["routed_to"] = each(&|replica, _| json!(replica));
}

#[cfg(test)]
mod tests {
    use super::conversations_for;

    #[test]
    fn requests_become_an_odd_number_of_whole_conversations() {
        assert_eq!(conversations_for(264, 8), 33);
        assert_eq!(conversations_for(8000, 8), 1001);
        assert_eq!(conversations_for(1, 8), 1);
        assert_eq!(conversations_for(17, 8), 3);
    }
}
