//! `kvscope sim`'s arguments: one file of their own, read by `cmd_sim`
//! (one engine) and `sim_fleet` (replicas behind a router) alike.

use crate::lab_args::{LangArg, ScaleArg};
use kvscope_experiment::workload::CASE_NAMES;
use std::path::PathBuf;

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
    /// With --json and --replicas: every request's figures too, in request
    /// order (`start_times`, `input_lens`, `ttfts`, `queue_waits`, `e2els`,
    /// `cached_input_lens`, `routed_to`), the keys `bench serve
    /// --save-detailed` writes for a real fleet, so both can be pooled over
    /// runs the same way.
    #[arg(long, requires = "json")]
    pub save_detailed: bool,
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
    /// The seed of the router's own draws (power_of_two), apart from the
    /// workload's --seed (default: --seed): a random policy is compared
    /// with a real gateway over many draws, not one.
    #[arg(long, requires = "replicas")]
    pub router_seed: Option<u64>,
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
