//! `kvscope lab`'s arguments, the local lab's and `--target`'s (with
//! `--fleet`'s from fleet_lab_args.rs): a file of their own, read by
//! `cmd_lab`, `cmd_lab_target`, `cmd_lab_fleet` and `sim_args`, so that
//! none of those needs another's code.

use crate::arg_values::{base_url, kv_events_endpoint, positive_rate, positive_seconds};
use kvscope_experiment::workload::Scale;
use kvscope_lab::knob_sweep::{Knob, KnobSweep};
use kvscope_lab::target::load_sweep::{LoadKnob, LoadSweep};
use kvscope_model::ModelArgs;
use std::path::PathBuf;

/// `--slo-ttft`'s default (seconds of TTFT p90).
pub const DEFAULT_SLO_TTFT: f64 = 2.0;
/// `--failure-budget`'s default (runs per context length).
pub const DEFAULT_FAILURE_BUDGET: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorKind {
    Real,
    Sim,
}

/// The workloads' sizes (see kvscope-experiment's `Scale`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleArg {
    /// The quick lab's sizes (CPU model, about a minute).
    Quick,
    /// The full lab's sizes (CPU model).
    Lab,
    /// The same cases grown to a GPU's KV pool (4096-token long prompts,
    /// about twice as many requests as the pool holds).
    Gpu,
}

impl From<ScaleArg> for Scale {
    fn from(s: ScaleArg) -> Scale {
        match s {
            ScaleArg::Quick => Scale::Quick,
            ScaleArg::Lab => Scale::Lab,
            ScaleArg::Gpu => Scale::Gpu,
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LangArg {
    Zh,
    En,
}

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LabArgs {
    #[command(subcommand)]
    pub action: Option<LabAction>,
    /// Where the artifacts go.
    #[arg(long, default_value = "lab-out")]
    pub out: PathBuf,
    /// Small workloads (about a minute on 2 cores); the tests use this.
    #[arg(long)]
    pub quick: bool,
    /// Language of report.md.
    #[arg(long, value_enum, default_value = "zh")]
    pub lang: LangArg,
    #[arg(long, value_enum, default_value = "real")]
    pub executor: ExecutorKind,
    /// With `--executor sim`: run the lab on this model preset (e.g.
    /// qwen3-0.6b) instead of the calibrated CPU model; needs --hardware.
    #[arg(long, requires = "hardware")]
    pub model_preset: Option<String>,
    /// With --model-preset: the GPU (e.g. h100, rtx-4070-laptop, l4); the
    /// KV pool is what its memory leaves.
    #[arg(long, requires = "model_preset")]
    pub hardware: Option<String>,
    /// Workload sizes (default: quick with --quick, gpu with a preset, else lab).
    #[arg(long, value_enum)]
    pub scale: Option<ScaleArg>,
    /// KV pool size in blocks (overrides --kv-memory).
    #[arg(long, conflicts_with = "kv_memory", value_parser = clap::value_parser!(u64).range(1..))]
    pub kv_blocks: Option<u64>,
    /// KV pool size in bytes (default: 128 MiB, 24 MiB with --quick).
    #[arg(long)]
    pub kv_memory: Option<u64>,
    /// Tokens per KV block (default 16).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub block_size: Option<u64>,
    /// Most requests running at once (default 32, 16 with --quick).
    #[arg(long)]
    pub max_running: Option<usize>,
    /// Token budget of one engine step (chunked prefill splits longer
    /// prompts; default 512 on the CPU model, vLLM's 8192 at the gpu scale).
    #[arg(long)]
    pub max_batched_tokens: Option<usize>,
    /// Prompts from a dataset file (JSONL with "prompt"/"text", or ShareGPT JSON).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Poisson arrivals at this many requests per second (default: each
    /// case's requests all arrive at once).
    #[arg(long, value_parser = positive_rate)]
    pub arrival_rate: Option<f64>,
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Run every case, sweep point and probe this many times, each on a
    /// fresh engine; tables give the median and the min–max range.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub repeat: u64,
    /// A knob sweep, e.g. `block-size=8,16,32`, `kv-memory=32MiB,64MiB,128MiB`,
    /// `max-running=4,8,16` (repeatable): the three cases at each value.
    /// With --target, the client's load instead: `concurrency=1,4,16`
    /// (most requests in flight) or `rate=0.5,1,2` (Poisson, requests/s).
    #[arg(long = "sweep", value_name = "KNOB=V1,V2,...")]
    pub sweeps: Vec<SweepArg>,
    /// The TTFT p90 (seconds) whose excess is a failure condition.
    #[arg(long, default_value_t = DEFAULT_SLO_TTFT, value_parser = positive_seconds)]
    pub slo_ttft: f64,
    /// Runs of the lab's own engine (with --target: of the target) per
    /// context length in the failure-condition search (0: no search). On
    /// the real model a simulator narrows the range first.
    #[arg(long, default_value_t = DEFAULT_FAILURE_BUDGET)]
    pub failure_budget: usize,
    /// Run the lab on a student's nano-vLLM-style Python BlockManager
    /// (`kvscope exercise init` writes the skeleton) instead of kvscope's.
    #[arg(long, value_name = "FILE.py")]
    pub block_manager: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub fleet: crate::fleet_lab_args::FleetLabArgs,
}

impl LabArgs {
    /// The first flag given that only the local lab runs (it sweeps,
    /// repeats or reshapes the workload and the engine in-process);
    /// `--target` and `--fleet` refuse it, each saying what it runs instead.
    pub fn first_local_only_flag(&self) -> Option<&'static str> {
        let local_only = [
            ("--sweep", !self.sweeps.is_empty()),
            ("--dataset", self.dataset.is_some()),
            ("--block-manager", self.block_manager.is_some()),
            ("--model-preset", self.model_preset.is_some()),
            ("--repeat", self.repeat > 1),
        ];
        local_only.into_iter().find(|(_, given)| *given).map(|(flag, _)| flag)
    }
}

/// `kvscope lab compare`.
#[derive(clap::Subcommand, Debug)]
pub enum LabAction {
    /// Two runs' capacity tables and chains side by side, with the deltas
    /// (refuses runs of different workloads unless --force).
    Compare(CompareArgs),
}

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// The first run's folder (`kvscope lab --out DIR_A`).
    pub dir_a: PathBuf,
    /// The second run's folder.
    pub dir_b: PathBuf,
    /// Compare even if the two runs' workloads differ.
    #[arg(long)]
    pub force: bool,
    /// Also write compare.md and compare.json into this folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args, Debug, Default)]
pub struct TargetArgs {
    /// Run the lab's cases against a running OpenAI-compatible engine at
    /// this base URL (http://HOST:PORT): vLLM, SGLang, llama.cpp's
    /// llama-server or kvscope serve.
    #[arg(long, value_name = "URL", value_parser = base_url)]
    pub target: Option<String>,
    /// The target's API key (sent as `Authorization: Bearer KEY`).
    #[arg(long, requires = "target", env = "KVSCOPE_TARGET_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The target's metric family: auto (detected from /metrics), vllm,
    /// sglang, llamacpp or kvscope.
    #[arg(long, requires = "target", default_value = "auto")]
    pub engine: String,
    /// The served model's Hugging Face config.json: KV per token (an
    /// estimate) and the vocabulary for token-id prompts. Without it, and
    /// when the engine does not say its KV size, a target serving the
    /// local model (`--model`, or the cached default) is estimated from
    /// that GGUF's header.
    #[arg(long, requires = "target", value_name = "FILE")]
    pub model_config: Option<std::path::PathBuf>,
    /// How often the target's /metrics is read, in milliseconds.
    #[arg(long, requires = "target", default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..))]
    pub metrics_interval_ms: u64,
    /// The target's KV-event PUB endpoint (vLLM's --kv-events-config
    /// endpoint, kvscope serve --kv-events-endpoint), e.g. tcp://HOST:5557.
    #[arg(long, requires = "target", value_name = "tcp://HOST:PORT", value_parser = kv_events_endpoint)]
    pub kv_events: Option<String>,
    /// Its replay (ROUTER) endpoint, to recover missed batches.
    #[arg(long, requires = "kv_events", value_name = "tcp://HOST:PORT", value_parser = kv_events_endpoint)]
    pub kv_events_replay: Option<String>,
    /// Each request (and scrape) is given up after this many seconds.
    #[arg(long, requires = "target", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_s: u64,
    /// A target behind a load balancer: each replica's base URL
    /// (http://HOST:PORT), comma-separated; its /metrics is read beside the
    /// target's and the report gains a per-replica table (replicas.csv).
    #[arg(long, requires = "target", value_delimiter = ',', value_name = "URL1,URL2,...", value_parser = base_url)]
    pub replica_metrics: Vec<String>,
    /// Each replica's KV-event PUB endpoint, in --replica-metrics' order.
    #[arg(long, requires = "replica_metrics", value_delimiter = ',', value_name = "tcp://HOST:PORT,...", value_parser = kv_events_endpoint)]
    pub replica_kv_events: Vec<String>,
}

/// One `--sweep KNOB=V1,V2,...`: a knob of the lab's own engine, or the
/// load a client offers a `--target` (each command refuses the other's).
#[derive(Clone, Debug, PartialEq)]
pub enum SweepArg {
    Engine(KnobSweep),
    Load(LoadSweep),
}

impl std::str::FromStr for SweepArg {
    type Err = String;

    fn from_str(s: &str) -> Result<SweepArg, String> {
        let name = s.split_once('=').map_or(s, |(n, _)| n).trim();
        if LoadKnob::ALL.iter().any(|k| k.name() == name) {
            return s.parse().map(SweepArg::Load);
        }
        if Knob::ALL.iter().any(|k| k.name() == name) {
            return s.parse().map(SweepArg::Engine);
        }
        let engine = Knob::ALL.map(Knob::name).join(", ");
        let load = LoadKnob::ALL.map(LoadKnob::name).join(", ");
        Err(format!(
            "unknown knob {name:?} in {s:?}: give KNOB=V1,V2,... with a knob of the lab's engine ({engine}) or, with --target, of the client's load ({load})"
        ))
    }
}

impl LabArgs {
    /// The `--sweep`s of the lab's own engine.
    pub fn engine_sweeps(&self) -> Vec<KnobSweep> {
        self.sweeps.iter().filter_map(|s| if let SweepArg::Engine(k) = s { Some(k.clone()) } else { None }).collect()
    }

    /// The `--sweep`s of a target's load.
    pub fn load_sweeps(&self) -> Vec<LoadSweep> {
        self.sweeps.iter().filter_map(|s| if let SweepArg::Load(l) = s { Some(l.clone()) } else { None }).collect()
    }
}
