//! `kvscope lab --fleet N`: the fleet experiment (kvscope-lab's `fleet`
//! module). This file starts and stops processes only — a fresh fleet per
//! routing policy (fleet/), the target path run through its gateway with
//! every replica's metrics and KV events, and with --kill-replica-after
//! one replica killed on purpose; kvscope-lab measures and reports.

use crate::fleet::gateway::{self, Policy, GATEWAY_PACKAGE, LAB_RESILIENCE};
use crate::fleet::{check_replicas, Fleet, FleetArgs};
use crate::lab_args::{ExecutorKind, LabArgs, LangArg, ScaleArg, DEFAULT_FAILURE_BUDGET, DEFAULT_SLO_TTFT};
use anyhow::Context;
use kvscope_client::CompletionClient;
use kvscope_experiment::ChatsCase;
use kvscope_lab::fleet::fault::{gateway_counters, FaultPlan, FaultReport};
use kvscope_lab::fleet::files;
use kvscope_lab::fleet::policy::PolicyRun;
use kvscope_lab::fleet::results::FleetResults;
use kvscope_lab::report::Lang;
use kvscope_lab::target::replicas::ReplicaPlan;
use kvscope_lab::target::{run_target, TargetConfig, TargetResults, TargetWorkload};
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, Signal, SignalKind};

pub fn run(args: &LabArgs) -> anyhow::Result<()> {
    let n = args.fleet.fleet.expect("called with --fleet");
    check_replicas(n, "--fleet")?;
    refuse_unsupported(args, n)?;
    crate::preflight::check_out_dir(&args.out)?;
    let scale = args.scale.unwrap_or(if args.quick { ScaleArg::Quick } else { ScaleArg::Lab });
    let lang = if args.lang == LangArg::Zh { Lang::Zh } else { Lang::En };
    let mut results = planned(args, n, scale);
    eprintln!("kvscope lab --fleet {n}: scale {scale:?}, policies {}", results.policies_asked.join(", "));
    let runtime = tokio::runtime::Runtime::new()?;
    let mut terminate = runtime.block_on(async { signal(SignalKind::terminate()) })?;
    for &policy in &args.fleet.policies {
        eprintln!("  policy {} (a fresh fleet)", policy.name());
        let run = match runtime.block_on(policy_or_signal(args, n, policy, &results, &mut terminate)) {
            Turn::Ran(run) => *run,
            Turn::Stopped(signal) => {
                let name = policy.name();
                results.problems.push(format!("{name}: stopped by {signal}; the policies after it were not run"));
                write(&results, args, lang)?;
                anyhow::bail!("stopped by {signal} during {name}: the partial report is in {}", args.out.display());
            }
        };
        match run {
            Ok(run) => results.push(run),
            Err(e) if format!("{e:#}").contains(gateway::INSTALL_FAILED) => {
                results.problems.push(format!("{e:#}"));
                write(&results, args, lang)?;
                return Err(e);
            }
            Err(e) => results.problems.push(format!("{}: not run ({e:#})", policy.name())),
        }
        write(&results, args, lang)?;
    }
    summarize(&results);
    eprintln!("wrote {}", args.out.join("report.md").display());
    Ok(())
}

/// The results before any policy ran: the plan, as the report states it.
fn planned(args: &LabArgs, n: usize, scale: ScaleArg) -> FleetResults {
    FleetResults {
        replicas: n,
        scale: format!("{scale:?}").to_lowercase(),
        case: ChatsCase::at(scale.into(), args.seed),
        gateway: GATEWAY_PACKAGE.to_string(),
        gateway_flags: LAB_RESILIENCE.iter().map(|s| s.to_string()).collect(),
        metrics_interval_ms: args.target.metrics_interval_ms,
        policies_asked: args.fleet.policies.iter().map(|p| p.name().to_string()).collect(),
        fault: args.fleet.kill_replica_after.map(|after_s| FaultPlan { replica: args.fleet.kill_replica, after_s }),
        policies: Vec::new(),
        chains: Vec::new(),
        problems: Vec::new(),
    }
}

/// How one policy's turn ended: its run, or a signal that stopped it.
enum Turn {
    Ran(Box<anyhow::Result<PolicyRun>>),
    Stopped(&'static str),
}

/// One policy's run, unless SIGINT or SIGTERM comes first: the run is
/// then dropped, and with it its fleet (every child stopped), so a Ctrl-C
/// never leaves replicas or a gateway behind.
async fn policy_or_signal(
    args: &LabArgs,
    n: usize,
    policy: Policy,
    results: &FleetResults,
    terminate: &mut Signal,
) -> Turn {
    tokio::select! {
        run = run_policy(args, n, policy, results) => Turn::Ran(Box::new(run)),
        _ = tokio::signal::ctrl_c() => Turn::Stopped("SIGINT"),
        _ = terminate.recv() => Turn::Stopped("SIGTERM"),
    }
}

fn write(results: &FleetResults, args: &LabArgs, lang: Lang) -> anyhow::Result<()> {
    files::write(results, &args.out, lang)
        .with_context(|| format!("writing the fleet report into {}", args.out.display()))?;
    Ok(())
}

/// What the fleet path does not run, refused with what to do instead.
fn refuse_unsupported(args: &LabArgs, n: usize) -> anyhow::Result<()> {
    if let Some(kill) = args.fleet.kill_replica_after.map(|_| args.fleet.kill_replica) {
        anyhow::ensure!(kill < n, "--kill-replica {kill}: the fleet has replicas 0 to {}", n - 1);
    }
    // Each policy's files and chain are named by it: a second run would
    // overwrite the first.
    let policies = &args.fleet.policies;
    if let Some(twice) = policies.iter().enumerate().find(|(i, p)| policies[..*i].contains(p)).map(|(_, p)| p) {
        anyhow::bail!("--policies lists {} twice: give each policy once", twice.name());
    }
    anyhow::ensure!(
        args.executor != ExecutorKind::Sim,
        "--executor sim is not available with --fleet: the fleet runs real kvscope serve replicas (simulate a fleet with `kvscope sim --replicas N --router POLICY`)"
    );
    // The fleet compares routing on one workload; it searches no failure
    // condition, so an SLO would be silently unused.
    anyhow::ensure!(
        args.slo_ttft == DEFAULT_SLO_TTFT && args.failure_budget == DEFAULT_FAILURE_BUDGET,
        "--slo-ttft and --failure-budget are not available with --fleet: drop them (the fleet runs no failure search)"
    );
    let kv_memory = args.kv_memory.is_some().then_some("--kv-memory");
    if let Some(flag) = args.first_local_only_flag().or(kv_memory) {
        anyhow::bail!("{flag} is not available with --fleet: drop it (the fleet runs shared_prefix_chats once per policy; size each replica's pool with --kv-blocks)");
    }
    Ok(())
}

/// The replicas' `kvscope serve` options from lab's engine knobs.
fn serve_args(args: &LabArgs) -> Vec<String> {
    let mut out = Vec::new();
    let mut pass = |flag: &str, v: Option<String>| out.extend(v.map(|v| [flag.to_string(), v]).into_iter().flatten());
    pass("--kv-blocks", args.kv_blocks.map(|v| v.to_string()));
    pass("--block-size", args.block_size.map(|v| v.to_string()));
    pass("--max-num-seqs", args.max_running.map(|v| v.to_string()));
    pass("--max-num-batched-tokens", args.max_batched_tokens.map(|v| v.to_string()));
    out
}

fn fleet_args(args: &LabArgs, n: usize, policy: Policy) -> FleetArgs {
    FleetArgs {
        replicas: n,
        policy,
        port: 0,
        model: args.model.model.clone(),
        threads: args.fleet.fleet_threads,
        startup_timeout_s: 300,
        serve_args: serve_args(args),
        replica_kv_events: true,
        gateway_args: LAB_RESILIENCE.iter().map(|s| s.to_string()).collect(),
        log_dir: Some(log_dir(args, policy)),
    }
}

/// Where a policy's replicas and gateway write their output.
fn log_dir(args: &LabArgs, policy: Policy) -> std::path::PathBuf {
    args.out.join("logs").join(policy.name())
}

fn target_config(args: &LabArgs, fleet: &Fleet, results: &FleetResults) -> TargetConfig {
    TargetConfig {
        url: fleet.gateway_url.clone(),
        api_key: None,
        engine: None,
        model_config: None,
        metrics_interval: Duration::from_millis(args.target.metrics_interval_ms),
        kv_events: None,
        kv_events_replay: None,
        scale: args.scale.unwrap_or(if args.quick { ScaleArg::Quick } else { ScaleArg::Lab }).into(),
        seed: results.case.seed,
        arrival_rate: args.arrival_rate,
        request_timeout: Duration::from_secs(args.target.request_timeout_s),
        local_model: None,
        // The fleet compares routing policies on one workload: no load
        // sweep and no failure search through the gateway.
        sweeps: Vec::new(),
        slo_ttft: args.slo_ttft,
        failure_budget: 0,
        replicas: ReplicaPlan { metrics: fleet.replica_urls.clone(), kv_events: fleet.replica_kv_events.clone() },
        workload: TargetWorkload::Chats,
    }
}

/// One policy on a fresh fleet, stopped (every process) before returning.
async fn run_policy(args: &LabArgs, n: usize, policy: Policy, results: &FleetResults) -> anyhow::Result<PolicyRun> {
    let logs = log_dir(args, policy);
    let mut fleet = Fleet::start(&fleet_args(args, n, policy))
        .await
        .with_context(|| format!("starting the fleet (each process's output is in {})", logs.display()))?;
    eprintln!("    the processes' output: {}", logs.display());
    fleet.processes().iter().for_each(|line| eprintln!("    {line}"));
    let cfg = target_config(args, &fleet, results);
    let gateway_page = CompletionClient::with_timeout(&fleet.gateway_metrics_url, None, Some(Duration::from_secs(10)))?;
    let before = gateway_counters(&gateway_page).await;
    let (res, killed_at) = run_with_fault(&cfg, &mut fleet, results.fault).await;
    let after = gateway_counters(&gateway_page).await;
    let died = fleet.first_dead();
    drop(fleet);
    let res = res.map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut run = PolicyRun::from_target(policy.name(), &res);
    if let Some(plan) = results.fault {
        run.fault = Some(FaultReport::of(plan, killed_at, &res, (&before, &after)));
    }
    run.problems.extend(died.map(|why| format!("{why} during the run, not on purpose")));
    Ok(run)
}

/// The target run, with the planned replica killed beside it; a run that
/// ends before the kill's time kills nothing. The kill's time is seconds
/// after the run began, on the same clock as the polls (to a few ms).
async fn run_with_fault(
    cfg: &TargetConfig,
    fleet: &mut Fleet,
    fault: Option<FaultPlan>,
) -> (Result<TargetResults, kvscope_lab::target::TargetError>, Option<f64>) {
    let started = Instant::now();
    let mut progress = |case: &str| eprintln!("    case {case}");
    let target = run_target(cfg, &mut progress);
    let Some(plan) = fault else { return (target.await, None) };
    tokio::pin!(target);
    tokio::select! {
        res = &mut target => (res, None),
        () = tokio::time::sleep(Duration::from_secs_f64(plan.after_s)) => {
            let killed = fleet.kill_replica(plan.replica).map(|()| started.elapsed().as_secs_f64());
            match &killed {
                Ok(t) => eprintln!("    killed replica {} at t = {t:.2} s", plan.replica),
                Err(e) => eprintln!("warning: {e:#}"),
            }
            (target.await, killed.ok())
        }
    }
}

/// One line per policy on stderr: realized hits, TTFT, the chain.
fn summarize(results: &FleetResults) {
    for run in &results.policies {
        let per_replica: Vec<String> =
            run.replicas.iter().map(|r| r.prefix_hit_tokens.map_or("—".into(), |h| format!("{h:.0}"))).collect();
        eprintln!(
            "  {}: realized prefix-hit tokens {:.0} (per replica {}), TTFT p50 {:.3} s p90 {:.3} s, {} of {} failed",
            run.policy,
            run.hit_tokens,
            per_replica.join(" / "),
            run.ttft.p50,
            run.ttft.p90,
            run.failed,
            run.requests
        );
    }
    for chain in &results.chains {
        let held = chain.links.iter().filter(|l| l.verdict == kvscope_lab::fleet::chain::Verdict::Supported).count();
        eprintln!("  chain {} vs {}: {held} of {} links supported", chain.blind, chain.aware, chain.links.len());
    }
    for p in &results.problems {
        eprintln!("warning: {p}");
    }
}
