//! `kvscope sim`: the lab's cases (or a custom workload) on model and
//! hardware presets, priced by the cost model. The workload, the runner,
//! the capacity row and the artifacts are the experiment layer's and the
//! lab's; this file parses arguments and prints.

use crate::lab_args::LangArg;
use crate::machine::{commit, cpu_flags, machine_description, ram, today};
use crate::rate_search::{highest_rate, Probe};
use crate::sim_args::SimArgs;
use anyhow::Context;
use kvscope_experiment::workload::{Arrival, CaseSpec, Lengths, PromptSource};
use kvscope_experiment::{CapacityRow, CaseRun, Detail, Dist, RunOptions, Stop, Throughput};
use kvscope_lab::report::{Environment, Lang, ReportContext};
use kvscope_sim::SimConfig;

/// Most requests one simulation takes (see the check in [`run`]).
const MAX_REQUESTS: usize = 10_000_000;

/// The case the arguments name, at its scale, with their overrides. Any
/// length override makes it a `custom` case.
fn case_spec(args: &SimArgs, pool_tokens: usize) -> CaseSpec {
    let named =
        CaseSpec::named(&args.workload, args.scale.into(), pool_tokens, args.seed).expect("clap checked the case name");
    let prompt_lengths = match (args.prompt_len, args.prompt_len_range) {
        (Some(tokens), _) => Some(Lengths::Fixed { tokens }),
        (_, Some((min, max))) => Some(Lengths::Uniform { min, max }),
        _ => None,
    };
    let output_lengths = match (args.output_len, args.output_len_range) {
        (Some(tokens), _) => Some(Lengths::Fixed { tokens }),
        (_, Some((min, max))) => Some(Lengths::Uniform { min, max }),
        _ => None,
    };
    let custom = prompt_lengths.is_some() || output_lengths.is_some();
    CaseSpec {
        name: if custom { "custom".into() } else { named.name.clone() },
        num_requests: args.num_requests.unwrap_or(named.num_requests),
        prompt_lengths: prompt_lengths.unwrap_or(named.prompt_lengths),
        output_lengths: output_lengths.unwrap_or(named.output_lengths),
        arrival: args.request_rate.map_or(named.arrival, |rate| Arrival::from_rate(rate, args.burstiness)),
        ..named
    }
}

/// Everything one simulation needs, built once.
struct Simulation {
    config: SimConfig,
    spec: CaseSpec,
    detail: Detail,
}

impl Simulation {
    /// Runs `spec`, drawing its requests as they arrive.
    fn run(&self, spec: &CaseSpec, stop: Stop) -> anyhow::Result<CaseRun> {
        let source = PromptSource::Synthetic { vocab: self.config.model.vocab as u32 };
        Ok(self.config.run(spec, spec.requests(&source), RunOptions { detail: self.detail, stop })?)
    }

    /// The same workload at `rate` requests per second. The seed draws the
    /// same uniforms at every rate, so the arrival times scale with 1/rate.
    fn at_rate(&self, rate: f64, burstiness: f64) -> CaseSpec {
        CaseSpec { arrival: Arrival::from_rate(rate, burstiness), ..self.spec.clone() }
    }
}

pub fn run(args: SimArgs) -> anyhow::Result<()> {
    if args.calibrate {
        return crate::sim_calibrate::run(&args.model);
    }
    if let Some(n) = args.num_requests {
        anyhow::ensure!(
            (1..=MAX_REQUESTS).contains(&n),
            "--num-requests must be between 1 and {MAX_REQUESTS} (each request keeps about 1 KB of state while it waits or after it finished: 10 million all at once take about 11 GB), got {n}"
        );
    }
    anyhow::ensure!(args.burstiness > 0.0, "--burstiness must be > 0, got {}", args.burstiness);
    anyhow::ensure!(
        !args.save_detailed || args.replicas != 1,
        "--save-detailed writes a simulated fleet's requests: give --replicas 2 or more"
    );
    let mut config = calibrated(SimConfig::from_names(&args.model_preset, &args.hardware)?)?;
    config.enable_prefix_caching = !args.no_prefix_caching;
    if let Some(dtype) = args.model.kv_dtype {
        config.model = config.model.with_kv_dtype(dtype);
    }
    config.max_running = args.max_num_seqs.unwrap_or(config.max_running);
    config.max_batched_tokens = args.max_num_batched_tokens.unwrap_or(config.max_batched_tokens);
    config.kv_blocks = args.kv_blocks.or(config.kv_blocks);
    let plan = config.pool_plan()?;
    if args.json {
        eprintln!("{plan}");
    } else {
        println!("{plan}");
    }
    // Any count but one is the fleet's to take or refuse (0 is refused
    // there, not quietly run as one engine).
    if args.replicas != 1 {
        return crate::sim_fleet::run(config, &args);
    }
    let spec = case_spec(&args, plan.num_blocks * plan.block_size);
    let detail = if args.step_by_step { Detail::StepByStep } else { Detail::Summary };
    let sim = Simulation { config, spec, detail };
    if args.find_max_rate {
        let slo = args.slo_ttft_p99.context("--find-max-rate needs --slo-ttft-p99")?;
        return max_rate(&sim, &args, slo);
    }
    let started = std::time::Instant::now();
    let run = sim.run(&sim.spec, Stop::AtTheEnd)?;
    let wall = started.elapsed().as_secs_f64();
    report(&sim, &sim.spec, &run, &args)?;
    eprintln!(
        "simulated {} engine steps ({} decode runs advanced at once) in {wall:.2} s of wall time",
        run.steps, run.decode_runs
    );
    Ok(())
}

/// On the `cpu` preset, the fit `kvscope sim --calibrate` saved, when there
/// is one (what the lab's simulated backend runs on), for one engine and
/// for a fleet alike: a simulation is checked against the real engine on
/// this machine.
fn calibrated(config: SimConfig) -> anyhow::Result<SimConfig> {
    if config.hardware.name != "cpu" {
        return Ok(config);
    }
    let (hardware, used) = kvscope_sim::cpu_profile(None)?;
    match used {
        Some(path) => eprintln!("cpu profile: the calibration in {}", path.display()),
        None => eprintln!("cpu profile: uncalibrated (run `kvscope sim --calibrate` to fit it to this machine)"),
    }
    Ok(SimConfig { hardware, ..config })
}

/// Prints (and with --out writes) what one run measured.
fn report(sim: &Simulation, spec: &CaseSpec, run: &CaseRun, args: &SimArgs) -> anyhow::Result<()> {
    let rows = vec![CapacityRow::from_run(run, args.lang == LangArg::Zh)];
    let throughput = Throughput::of(run);
    if args.json {
        let mut json = serde_json::to_value(throughput)?;
        json["simulated"] = serde_json::Value::Bool(true);
        json["rejected"] = serde_json::json!(run.rejected.len());
        json["capacity"] = serde_json::to_value(&rows)?;
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!("{} requests, {} ({}):", spec.num_requests, spec.name, spec.arrival.label());
        crate::capacity_table::print(&rows, true);
        // nano-vLLM's bench.py line, in simulated time.
        println!(
            "Total: {} tok, Time: {:.2} s (simulated), Throughput: {:.2} tok/s (simulated)",
            throughput.total_output_tokens, throughput.duration, throughput.output_throughput
        );
        if let Some((index, reason)) = run.rejected.first() {
            println!("{} requests rejected at submission (e.g. request {index}: {reason})", run.rejected.len());
        }
    }
    if let Some(dir) = &args.out {
        let ctx = ReportContext {
            date: today(),
            kvscope_version: env!("CARGO_PKG_VERSION").into(),
            machine: machine_description(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            sim_validation: None,
            block_manager: None,
            // Simulated times do not depend on the machine's load.
            environment: Environment {
                ram: ram(),
                cpu_flags: cpu_flags(),
                commit: commit(),
                seed: Some(args.seed),
                load: None,
            },
        };
        let lang = if args.lang == LangArg::Zh { Lang::Zh } else { Lang::En };
        let backend = format!("{} on {} (simulated)", sim.config.model.name, sim.config.hardware.name);
        let written =
            kvscope_lab::artifacts::write_simulated(&rows, std::slice::from_ref(run), &backend, dir, &ctx, lang)
                .with_context(|| format!("writing into {}", dir.display()))?;
        for p in written {
            eprintln!("wrote {}", p.display());
        }
    }
    Ok(())
}

/// The highest Poisson rate whose p99 TTFT meets `slo`, then that rate's run.
fn max_rate(sim: &Simulation, args: &SimArgs, slo: f64) -> anyhow::Result<()> {
    let n = sim.spec.num_requests;
    // With this many TTFTs above the objective the p99 (interpolated at
    // rank 0.99·(n−1)) is above it whatever the others are: stop there.
    let misses = n - (0.99 * (n - 1) as f64).floor() as usize;
    let probe = |rate: f64| {
        let stop = Stop::WhenTtftAbove { seconds: slo, count: misses };
        match sim.run(&sim.at_rate(rate, args.burstiness), stop) {
            Ok(run) if run.stopped_early => {
                Probe::StoppedEarly(format!("p99 TTFT above {slo} s ({misses} first tokens later; run stopped)"))
            }
            Ok(run) if run.rejected.is_empty() => Probe::P99(Dist::of(run.requests.iter().map(|r| r.ttft)).p99),
            Ok(run) => Probe::Rejected(run.rejected.len()),
            Err(e) => Probe::Failed(e.to_string()),
        }
    };
    let Some(rate) = highest_rate(slo, args.max_rate_hi, probe) else {
        return Ok(());
    };
    if args.json {
        println!("{}", serde_json::json!({ "max_rate": rate, "slo_ttft_p99_s": slo, "simulated": true }));
    } else {
        println!("highest request rate with p99 TTFT <= {slo} s (simulated): {rate:.3} req/s");
    }
    let spec = sim.at_rate(rate, args.burstiness);
    let run = sim.run(&spec, Stop::AtTheEnd)?;
    if !args.json {
        report(sim, &spec, &run, args)?;
    }
    Ok(())
}
