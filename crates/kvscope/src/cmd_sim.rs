//! `kvscope sim`: the lab's cases (or a custom workload) on model and
//! hardware presets, priced by the cost model. The workload, the runner,
//! the capacity row and the artifacts are the experiment layer's and the
//! lab's; this file parses arguments and prints.

use crate::cmd_lab::{LangArg, ScaleArg};
use crate::machine::{commit, cpu_flags, machine_description, ram, today};
use anyhow::Context;
use kvscope_experiment::workload::{Arrival, CaseSpec, Lengths, PromptSource, CASE_NAMES};
use kvscope_experiment::{CapacityRow, CaseRun, Detail, Dist, RunOptions, Stop, Throughput};
use kvscope_lab::report::{Environment, Lang, ReportContext};
use kvscope_sim::{find_max_rate, SimConfig};
use std::path::PathBuf;

/// Most requests one simulation takes (see the check in [`run`]).
const MAX_REQUESTS: usize = 10_000_000;

#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Model preset (e.g. qwen3-0.6b, smollm2-135m).
    #[arg(long, default_value = "qwen3-0.6b")]
    pub model_preset: String,
    /// Hardware preset (e.g. h100, a100-40g, l4, rtx-4070-laptop, cpu).
    #[arg(long, default_value = "h100")]
    pub hardware: String,
    /// One of the lab's cases.
    #[arg(long, value_parser = CASE_NAMES, default_value = "short_ctx")]
    pub workload: String,
    /// Sizes of the case: the lab's (quick, lab) or grown to the GPU's pool.
    #[arg(long, value_enum, default_value = "gpu")]
    pub scale: ScaleArg,
    /// Number of requests (default: the case's at this scale). With
    /// --replicas: at least this many, as whole conversations (an odd
    /// number of them).
    #[arg(long)]
    pub num_requests: Option<usize>,
    /// Requests per simulated second, Poisson (gamma with --burstiness);
    /// `inf` sends them all at once (default: the case's own arrival, all
    /// at once).
    #[arg(long, value_parser = parse_rate)]
    pub request_rate: Option<f64>,
    /// Gamma shape of the arrival gaps: 1 is Poisson, below 1 burstier.
    #[arg(long, default_value_t = 1.0)]
    pub burstiness: f64,
    /// Every prompt this many tokens (a custom case).
    #[arg(long, conflicts_with = "prompt_len_range")]
    pub prompt_len: Option<usize>,
    /// Prompt lengths uniform in MIN-MAX tokens (a custom case).
    #[arg(long, value_parser = parse_range)]
    pub prompt_len_range: Option<(usize, usize)>,
    /// Every output this many tokens (a custom case).
    #[arg(long, conflicts_with = "output_len_range")]
    pub output_len: Option<usize>,
    /// Output lengths uniform in MIN-MAX tokens (a custom case).
    #[arg(long, value_parser = parse_range)]
    pub output_len_range: Option<(usize, usize)>,
    /// Accepted for nano-vLLM's bench.py command lines: the simulator always
    /// generates exactly the asked output length.
    #[arg(long)]
    pub ignore_eos: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Turn the prefix cache off (vLLM's --no-enable-prefix-caching).
    #[arg(long)]
    pub no_prefix_caching: bool,
    /// `--kv-dtype` (f32, f16, bf16, int8 or fp8 on a preset; default: the
    /// preset's own, bf16 on the GPU presets, the CPU engine's f16 for
    /// smollm2-135m; the pool's token count follows), and for `--calibrate`
    /// the model and kernels that are timed.
    #[command(flatten)]
    pub model: kvscope_model::ModelArgs,
    /// Write capacity.csv/json, stats.csv and report.md (labelled
    /// simulated) here, in the lab's schema.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Language of report.md.
    #[arg(long, value_enum, default_value = "zh")]
    pub lang: LangArg,
    /// Bisect the request rate for the highest one meeting --slo-ttft-p99.
    #[arg(long, requires = "slo_ttft_p99")]
    pub find_max_rate: bool,
    /// p99 TTFT objective in seconds (with --find-max-rate).
    #[arg(long)]
    pub slo_ttft_p99: Option<f64>,
    /// Upper end of the rate search, requests per second.
    #[arg(long, default_value_t = 200.0)]
    pub max_rate_hi: f64,
    /// Measure the real default model on this CPU and fit the `cpu` profile.
    #[arg(long)]
    pub calibrate: bool,
    /// Print the result as JSON (vLLM's benchmark keys and the capacity rows).
    #[arg(long)]
    pub json: bool,
    /// Run every engine step on its own instead of advancing runs of
    /// identical decode steps at once (same figures, slower; for checking).
    #[arg(long)]
    pub step_by_step: bool,
    /// Simulate a fleet of this many replicas behind --router, on the
    /// fleet experiment's workload (shared_prefix_chats at --scale).
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// The fleet's routing policy: round_robin, least_load, power_of_two or
    /// cache_aware (modelled on the SGLang Model Gateway 0.3.2).
    #[arg(long, default_value = "cache_aware")]
    pub router: kvscope_sim::RouterKind,
    /// With --replicas: turn shared_prefix_chats' prompt texts into ids
    /// with this GGUF's tokenizer, as a real fleet serving that model does
    /// (`bench serve --lab-workload shared_prefix_chats` sends the texts);
    /// default: random ids of the same shape, a word standing for a token.
    #[arg(long, requires = "replicas")]
    pub tokenizer: Option<PathBuf>,
    /// Most requests running at once per engine (vLLM's max_num_seqs;
    /// default 256; `kvscope serve`'s replicas run 16).
    #[arg(long)]
    pub max_num_seqs: Option<usize>,
    /// Most tokens in one engine step (vLLM's max_num_batched_tokens;
    /// default 8192; `kvscope serve`'s replicas run 512).
    #[arg(long)]
    pub max_num_batched_tokens: Option<usize>,
    /// Exactly this many KV blocks per engine instead of sizing the pool
    /// from memory (`kvscope serve`'s replicas run 512).
    #[arg(long)]
    pub kv_blocks: Option<usize>,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 => Ok(r),
        _ => Err(format!("expected a positive number of requests per second or `inf`, got {s:?}")),
    }
}

fn parse_range(s: &str) -> Result<(usize, usize), String> {
    let parse = |x: &str| x.trim().parse::<usize>().ok().filter(|&n| n > 0);
    match s.split_once('-').and_then(|(a, b)| Some((parse(a)?, parse(b)?))) {
        Some((lo, hi)) if lo <= hi => Ok((lo, hi)),
        _ => Err(format!("expected MIN-MAX with 1 <= MIN <= MAX tokens, e.g. 100-1024, got {s:?}")),
    }
}

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
    let mut config = SimConfig::from_names(&args.model_preset, &args.hardware)?;
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
    if args.replicas > 1 {
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
    let p99 = |rate: f64| -> f64 {
        let stop = Stop::WhenTtftAbove { seconds: slo, count: misses };
        match sim.run(&sim.at_rate(rate, args.burstiness), stop) {
            Ok(run) if run.stopped_early => {
                eprintln!("  rate {rate:.3} req/s: p99 TTFT above {slo} s ({misses} first tokens later; run stopped)");
                f64::INFINITY
            }
            Ok(run) if run.rejected.is_empty() => {
                let p = Dist::of(run.requests.iter().map(|r| r.ttft)).p99;
                eprintln!("  rate {rate:.3} req/s: p99 TTFT {p:.4} s (simulated)");
                p
            }
            Ok(run) => {
                eprintln!("  rate {rate:.3} req/s: {} requests rejected", run.rejected.len());
                f64::INFINITY
            }
            Err(e) => {
                eprintln!("  rate {rate:.3} req/s: {e}");
                f64::INFINITY
            }
        }
    };
    let lo = 0.01;
    let Some(rate) = find_max_rate(p99, slo, lo, args.max_rate_hi, 0.005) else {
        println!("even {lo} req/s misses p99 TTFT <= {slo} s");
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
