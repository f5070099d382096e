//! `kvscope sim --replicas N --router R`: the fleet experiment's workload
//! (`shared_prefix_chats` at `--scale`) on N simulated replicas behind a
//! router modelled on the SGLang Model Gateway (kvscope-sim's router.rs).

use crate::cmd_sim::SimArgs;
use kvscope_experiment::workload::{ChatsCase, PromptSource};
use kvscope_sim::{run_fleet, CacheAwareConfig, FleetRun, Router, SimConfig};
use serde_json::json;

/// Most replicas one simulated fleet takes.
const MAX_REPLICAS: usize = 1024;

pub fn run(config: &SimConfig, args: &SimArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_REPLICAS).contains(&args.replicas),
        "--replicas must be between 1 and {MAX_REPLICAS}, got {}",
        args.replicas
    );
    let case = ChatsCase::at(args.scale.into(), args.seed);
    let requests = case.requests(&PromptSource::Synthetic { vocab: config.model.vocab as u32 });
    let total = requests.len();
    let engines = (0..args.replicas).map(|_| config.build().map(|(engine, _)| engine)).collect::<Result<_, _>>()?;
    let mut router = Router::new(args.router, args.replicas, CacheAwareConfig::default(), args.seed);
    let fleet = run_fleet(engines, &mut router, args.router, requests)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&as_json(&fleet, &case))?);
    } else {
        print_table(&fleet, &case, total, args);
    }
    Ok(())
}

fn print_table(fleet: &FleetRun, case: &ChatsCase, total: usize, args: &SimArgs) {
    println!(
        "fleet (simulated): {} replicas of {} on {}, router {}, workload {} ({} conversations × {} turns = {total} requests)",
        args.replicas,
        args.model_preset,
        args.hardware,
        args.router.name(),
        case.name,
        case.conversations,
        case.turns
    );
    println!("replica  requests  prefix-hit tokens  queried tokens  evictions  TTFT p50 (s)  TTFT p90 (s)");
    for (i, r) in fleet.replicas.iter().enumerate() {
        let ttft = kvscope_experiment::Dist::of(r.requests.iter().map(|q| q.ttft));
        println!(
            "{i:>7}  {:>8}  {:>17}  {:>14}  {:>9}  {:>12.3}  {:>12.3}",
            r.requests.len(),
            r.prefix.hit_tokens,
            r.prefix.queried_tokens,
            r.prefix.evictions,
            ttft.p50,
            ttft.p90
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

fn as_json(fleet: &FleetRun, case: &ChatsCase) -> serde_json::Value {
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
            })
        })
        .collect();
    json!({
        "simulated": true,
        "router": fleet.router,
        "workload": case,
        "replicas": replicas,
        "prefix_hit_tokens": fleet.hit_tokens(),
        "prefill_tokens": fleet.prefill_tokens(),
        "ttft": fleet.ttft(),
        "queue_wait": fleet.queue_wait(),
        "rejected": fleet.rejected.len(),
    })
}
