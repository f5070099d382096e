//! The simulator on the lab's side: a backend whose executor is the
//! calibrated `cpu` cost model of the default model.

use crate::lab_backends::SimBackend;
use crate::real_model::LoadedModel;
use anyhow::Context;
use kvscope_core::stats::StatsCollector;
use kvscope_core::{SamplingParams, WallClock};
use kvscope_sim::{
    calibrate, default_calibration_path, find_max_rate, fit, hardware_preset, model_preset, poisson_arrival_times,
    run_arrivals, Arrival, CalibrationFile, CalibrationPlan, CostModel, RunSummary, SimConfig, SplitMix64,
};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The default model's preset with KV stored as the real executor stores it
/// (f32), priced by the `cpu` profile fitted by `kvscope sim --calibrate`.
pub fn lab_sim_backend(model: LoadedModel) -> anyhow::Result<SimBackend> {
    let path = default_calibration_path()?;
    let file = CalibrationFile::load_if_present(&path)?
        .with_context(|| format!("no CPU calibration at {}: run `kvscope sim --calibrate` first", path.display()))?;
    let preset = model_preset("smollm2-135m").context("the smollm2-135m preset is missing")?.with_kv_dtype_bytes(4);
    let hardware =
        hardware_preset("cpu").context("the cpu profile is missing")?.with_calibration(file.fit.coefficients.clone());
    Ok(SimBackend {
        kv_bytes_per_token: preset.kv_bytes_per_token(),
        cost: CostModel::new(preset, hardware),
        description: format!("calibrated `cpu` profile from {} ({})", path.display(), file.description),
        model,
    })
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// About 256-token prompts.
    #[value(name = "short_ctx")]
    Short,
    /// About 4096-token prompts (or `--prompt-len`).
    #[value(name = "long_ctx")]
    Long,
    /// Short and long prompts alternating.
    #[value(name = "mixed_ctx")]
    Mixed,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Short => "short_ctx",
            Workload::Long => "long_ctx",
            Workload::Mixed => "mixed_ctx",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Model preset (e.g. qwen3-0.6b, smollm2-135m).
    #[arg(long, default_value = "qwen3-0.6b")]
    pub model_preset: String,
    /// Hardware preset (e.g. h100, cpu).
    #[arg(long, default_value = "h100")]
    pub hardware: String,
    #[arg(long, value_enum, default_value = "short_ctx")]
    pub workload: Workload,
    #[arg(long, default_value_t = 200)]
    pub num_requests: usize,
    /// Poisson arrival rate, requests per simulated second; 0: all at once.
    #[arg(long, default_value_t = 5.0)]
    pub request_rate: f64,
    /// Prompt length in tokens (long_ctx's, or short_ctx's; mixed_ctx: the long one).
    #[arg(long)]
    pub prompt_len: Option<usize>,
    /// Output length in tokens.
    #[arg(long, default_value_t = 128)]
    pub output_len: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write capacity.json, capacity.csv and stats.csv here.
    #[arg(long)]
    pub out: Option<PathBuf>,
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
    /// Print the capacity table as JSON.
    #[arg(long)]
    pub json: bool,
}

const SHORT_PROMPT: usize = 256;
const LONG_PROMPT: usize = 4096;

/// One row of the capacity table. Times in simulated seconds.
#[derive(Clone, Debug, Serialize)]
pub struct CapacityRow {
    pub case: String,
    pub prompt_len: usize,
    pub output_len: usize,
    pub rate: String,
    pub requests: usize,
    pub rejected: usize,
    pub live_mean: f64,
    pub live_max: usize,
    pub kv_bytes_per_request: u64,
    pub ttft_p50_s: f64,
    pub ttft_p90_s: f64,
    pub ttft_p99_s: f64,
    pub queue_p50_s: f64,
    pub queue_p90_s: f64,
    pub queue_p99_s: f64,
    pub preemptions: u64,
    pub makespan_s: f64,
}

fn prompt_lengths(args: &SimArgs) -> (usize, usize) {
    match args.workload {
        Workload::Short => {
            let l = args.prompt_len.unwrap_or(SHORT_PROMPT);
            (l, l)
        }
        Workload::Long => {
            let l = args.prompt_len.unwrap_or(LONG_PROMPT);
            (l, l)
        }
        Workload::Mixed => (SHORT_PROMPT, args.prompt_len.unwrap_or(LONG_PROMPT)),
    }
}

/// Poisson arrivals of distinct synthetic prompts (request `i` alternates
/// short/long for mixed_ctx).
fn arrivals(args: &SimArgs, rate: f64, vocab: usize) -> Vec<Arrival> {
    let (short, long) = prompt_lengths(args);
    let mut rng = SplitMix64::new(args.seed ^ 0x5eed_5eed);
    let vocab = vocab.max(2) as u64;
    poisson_arrival_times(args.num_requests, rate, args.seed)
        .into_iter()
        .enumerate()
        .map(|(i, at)| {
            let len = if i % 2 == 0 { short } else { long };
            // A distinct first token per request keeps prompts from sharing prefixes.
            let mut prompt: Vec<u32> = Vec::with_capacity(len);
            prompt.push((i as u64 % vocab) as u32);
            prompt.extend((1..len).map(|_| rng.range(0, vocab - 1) as u32));
            let params = SamplingParams { max_tokens: args.output_len, ignore_eos: true, ..Default::default() };
            Arrival { at, prompt, params }
        })
        .collect()
}

struct Run {
    summary: RunSummary,
    stats: StatsCollector,
}

fn simulate(config: &SimConfig, args: &SimArgs, rate: f64) -> anyhow::Result<Run> {
    let (mut engine, _plan) = config.build()?;
    let stats = Arc::new(Mutex::new(StatsCollector::default()));
    engine.add_observer(Box::new(stats.clone()));
    let arrivals = arrivals(args, rate, config.model.vocab);
    let summary = run_arrivals(&mut engine, &arrivals)?;
    drop(engine);
    let stats = stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(Run { summary, stats })
}

fn rate_label(rate: f64) -> String {
    if rate > 0.0 && rate.is_finite() {
        format!("{rate:.3} req/s")
    } else {
        "all at t=0".into()
    }
}

fn rows(config: &SimConfig, args: &SimArgs, rate: f64, run: &Run) -> Vec<CapacityRow> {
    let (short, long) = prompt_lengths(args);
    let mut lens = vec![short];
    if long != short {
        lens.push(long);
    }
    let kv = config.model.kv_bytes_per_token();
    let s = &run.summary;
    lens.into_iter()
        .map(|len| {
            let reqs: Vec<_> = s.requests.iter().filter(|r| r.prompt_tokens == len).collect();
            let q = |metric: fn(&kvscope_sim::RequestMetrics) -> f64, p: f64| {
                let mut v: Vec<f64> = reqs.iter().map(|r| metric(r)).collect();
                kvscope_sim::quantile(&mut v, p)
            };
            let case = if args.workload == Workload::Mixed {
                format!("{}/{}", args.workload.name(), len)
            } else {
                args.workload.name().to_string()
            };
            CapacityRow {
                case,
                prompt_len: len,
                output_len: args.output_len,
                rate: rate_label(rate),
                requests: reqs.len(),
                rejected: s.rejected.len(),
                live_mean: run.stats.time_weighted_mean_running(),
                live_max: run.stats.max_running(),
                kv_bytes_per_request: kv * (len + args.output_len).saturating_sub(1) as u64,
                ttft_p50_s: q(|r| r.ttft, 0.5),
                ttft_p90_s: q(|r| r.ttft, 0.9),
                ttft_p99_s: q(|r| r.ttft, 0.99),
                queue_p50_s: q(|r| r.queue_wait, 0.5),
                queue_p90_s: q(|r| r.queue_wait, 0.9),
                queue_p99_s: q(|r| r.queue_wait, 0.99),
                preemptions: reqs.iter().map(|r| u64::from(r.preemptions)).sum(),
                makespan_s: s.makespan,
            }
        })
        .collect()
}

fn human_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.1} kB", b / 1e3)
    }
}

fn print_table(rows: &[CapacityRow]) {
    println!("Capacity (times in simulated seconds; live = running requests per step):");
    println!(
        "{:<16} {:>7} {:>12} {:>5} {:>9} {:>8} {:>11} {:>26} {:>26} {:>7} {:>10}",
        "case",
        "prompt",
        "rate",
        "done",
        "live mean",
        "live max",
        "KV/request",
        "TTFT p50/p90/p99 (s)",
        "queue p50/p90/p99 (s)",
        "preempt",
        "makespan s"
    );
    for r in rows {
        println!(
            "{:<16} {:>7} {:>12} {:>5} {:>9.1} {:>8} {:>11} {:>26} {:>26} {:>7} {:>10.3}",
            r.case,
            r.prompt_len,
            r.rate,
            r.requests,
            r.live_mean,
            r.live_max,
            human_bytes(r.kv_bytes_per_request),
            format!("{:.4}/{:.4}/{:.4}", r.ttft_p50_s, r.ttft_p90_s, r.ttft_p99_s),
            format!("{:.4}/{:.4}/{:.4}", r.queue_p50_s, r.queue_p90_s, r.queue_p99_s),
            r.preemptions,
            r.makespan_s
        );
    }
}

fn write_outputs(dir: &std::path::Path, rows: &[CapacityRow], stats: &StatsCollector) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(rows)?;
    std::fs::write(dir.join("capacity.json"), json + "\n")?;
    let mut csv = String::from(
        "case,prompt_len,output_len,rate,requests,rejected,live_mean,live_max,kv_bytes_per_request,\
         ttft_p50_s,ttft_p90_s,ttft_p99_s,queue_p50_s,queue_p90_s,queue_p99_s,preemptions,makespan_s\n",
    );
    for r in rows {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.case,
            r.prompt_len,
            r.output_len,
            r.rate,
            r.requests,
            r.rejected,
            r.live_mean,
            r.live_max,
            r.kv_bytes_per_request,
            r.ttft_p50_s,
            r.ttft_p90_s,
            r.ttft_p99_s,
            r.queue_p50_s,
            r.queue_p90_s,
            r.queue_p99_s,
            r.preemptions,
            r.makespan_s
        ));
    }
    std::fs::write(dir.join("capacity.csv"), csv)?;
    let file = std::fs::File::create(dir.join("stats.csv"))?;
    stats.write_csv(std::io::BufWriter::new(file))?;
    Ok(())
}

pub fn run(args: SimArgs) -> anyhow::Result<()> {
    if args.calibrate {
        return run_calibrate();
    }
    anyhow::ensure!(args.num_requests > 0, "--num-requests must be positive");
    let config = SimConfig::from_names(&args.model_preset, &args.hardware)?;
    let plan = config.pool_plan()?;
    if args.json {
        eprintln!("{plan}");
    } else {
        println!("{plan}");
        println!();
    }

    if args.find_max_rate {
        let slo = args.slo_ttft_p99.context("--find-max-rate needs --slo-ttft-p99")?;
        let p99 = |rate: f64| -> f64 {
            match simulate(&config, &args, rate) {
                Ok(run) => {
                    let p = run.summary.quantile(0.99, |r| r.ttft);
                    eprintln!("  rate {rate:.3} req/s: p99 TTFT {p:.4} s");
                    if run.summary.rejected.is_empty() {
                        p
                    } else {
                        f64::INFINITY
                    }
                }
                Err(e) => {
                    eprintln!("  rate {rate:.3} req/s: {e}");
                    f64::INFINITY
                }
            }
        };
        let lo = 0.01;
        match find_max_rate(p99, slo, lo, args.max_rate_hi, 0.005) {
            Some(rate) => {
                if args.json {
                    println!("{}", serde_json::json!({ "max_rate": rate, "slo_ttft_p99_s": slo }));
                } else {
                    println!("highest request rate with p99 TTFT <= {slo} s: {rate:.3} req/s");
                }
                let run = simulate(&config, &args, rate)?;
                let rows = rows(&config, &args, rate, &run);
                if !args.json {
                    print_table(&rows);
                }
                if let Some(dir) = &args.out {
                    write_outputs(dir, &rows, &run.stats)?;
                }
            }
            None => println!("even {lo} req/s misses p99 TTFT <= {slo} s"),
        }
        return Ok(());
    }

    let run = simulate(&config, &args, args.request_rate)?;
    let rows = rows(&config, &args, args.request_rate, &run);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_table(&rows);
        if !run.summary.rejected.is_empty() {
            println!(
                "{} requests rejected at submission (e.g. {:?})",
                run.summary.rejected.len(),
                run.summary.rejected[0].1
            );
        }
        println!("{} engine steps", run.summary.steps);
    }
    if let Some(dir) = &args.out {
        write_outputs(dir, &rows, &run.stats)?;
        eprintln!("wrote capacity.json, capacity.csv, stats.csv to {}", dir.display());
    }
    Ok(())
}

fn run_calibrate() -> anyhow::Result<()> {
    let model = LoadedModel::load(&crate::ModelArg::default())?;
    let plan = CalibrationPlan::default();
    let mut executor =
        kvscope_model::ModelExecutor::new(model.llama.clone(), plan.required_blocks(), plan.block_size, 0)
            .map_err(|e| anyhow::anyhow!("building the executor: {e}"))?;
    let clock = WallClock::new();
    eprintln!("calibrating {} on this CPU ({} blocks of {})", model.name(), plan.required_blocks(), plan.block_size);
    let samples = calibrate(&mut executor, &clock, &plan, |done, total| {
        eprint!("\r  step {done}/{total}");
        if done == total {
            eprintln!();
        }
    })?;
    let fitted = fit("smollm2-135m", &samples)?;
    let description = format!("{} on {}", model.name(), crate::cmd_lab::machine_description());
    let path = default_calibration_path()?;
    CalibrationFile::new(description, fitted.clone(), samples).save(&path)?;
    println!("coefficients: {:#?}", fitted.coefficients);
    println!(
        "fit: rms relative error {:.1}%, max relative error {:.1}%",
        100.0 * fitted.rms_relative_error,
        100.0 * fitted.max_relative_error
    );
    println!("saved to {}", path.display());
    Ok(())
}
