//! `kvscope bench serve`: a load generator in the spirit of `vllm bench
//! serve`. Requests arrive as a Poisson process (gamma intervals for
//! burstiness) or all at once, optionally capped at a concurrency; each is
//! streamed, and TTFT, TPOT, ITL and end-to-end latency are measured from
//! the chunks as they arrive.

mod dataset;
mod report;
mod runner;

pub use dataset::{load_dataset, BenchPrompt, BenchRequest};
pub use report::{BenchReport, Stats};

use std::path::PathBuf;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/completions`
    Completions,
    /// `/v1/chat/completions`
    Chat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetName {
    /// Random token-id prompts of `--random-input-len` tokens.
    Random,
    /// A ShareGPT JSON file (`--dataset-path`): first human turn as prompt,
    /// the reply's length (about 4 characters a token) as output length.
    Sharegpt,
    /// One JSON object a line: `{"prompt": "text" | [ids], "output_len": n}`
    /// (how the lab's workloads are exported).
    Jsonl,
}

/// Most requests one benchmark sends.
const MAX_PROMPTS: usize = 1_000_000;
/// Most random prompt tokens drawn up front (1 GiB of token ids).
const MAX_RANDOM_TOKENS: usize = 1 << 28;

#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// The server to load.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub base_url: String,
    #[arg(long, value_enum, default_value_t = Endpoint::Completions)]
    pub endpoint: Endpoint,
    /// Model name sent with each request (default: the server's first model).
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long, value_enum, default_value_t = DatasetName::Random)]
    pub dataset_name: DatasetName,
    #[arg(long)]
    pub dataset_path: Option<PathBuf>,
    #[arg(long, default_value_t = 100)]
    pub num_prompts: usize,
    #[arg(long, default_value_t = 128)]
    pub random_input_len: usize,
    #[arg(long, default_value_t = 32)]
    pub random_output_len: usize,
    /// Lengths are drawn from [len·(1−r), len·(1+r)].
    #[arg(long, default_value_t = 0.0)]
    pub random_range_ratio: f64,
    /// Override every request's output length.
    #[arg(long)]
    pub output_len: Option<usize>,
    /// Requests per second; `inf` sends them all at once.
    #[arg(long, default_value_t = f64::INFINITY)]
    pub request_rate: f64,
    /// Gamma shape of the arrival intervals: 1 is Poisson, below 1 burstier.
    #[arg(long, default_value_t = 1.0)]
    pub burstiness: f64,
    /// Most requests in flight at once.
    #[arg(long)]
    pub max_concurrency: Option<usize>,
    /// Generate exactly the output length (sends `ignore_eos`).
    #[arg(long)]
    pub ignore_eos: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to write the JSON result.
    #[arg(long)]
    pub result_file: Option<PathBuf>,
    /// Sent as `Authorization: Bearer KEY` (a server started with --api-key).
    #[arg(long, env = "KVSCOPE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

impl Default for BenchArgs {
    fn default() -> Self {
        BenchArgs {
            base_url: "http://127.0.0.1:8000".into(),
            endpoint: Endpoint::Completions,
            model: None,
            dataset_name: DatasetName::Random,
            dataset_path: None,
            num_prompts: 100,
            random_input_len: 128,
            random_output_len: 32,
            random_range_ratio: 0.0,
            output_len: None,
            request_rate: f64::INFINITY,
            burstiness: 1.0,
            max_concurrency: None,
            ignore_eos: false,
            seed: 0,
            result_file: None,
            api_key: None,
        }
    }
}

/// Runs the benchmark with the dataset the arguments name. Builds its own
/// tokio runtime: call it from synchronous code.
pub fn run_bench_serve(args: &BenchArgs) -> anyhow::Result<BenchReport> {
    run_bench_serve_with(args, None)
}

/// Runs the benchmark on the given requests (say, a lab workload's), or on
/// the dataset the arguments name when `None`.
pub fn run_bench_serve_with(args: &BenchArgs, requests: Option<Vec<BenchRequest>>) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(args.request_rate > 0.0, "--request-rate must be > 0 (or inf), got {}", args.request_rate);
    anyhow::ensure!(args.burstiness > 0.0, "--burstiness must be > 0, got {}", args.burstiness);
    anyhow::ensure!(args.max_concurrency != Some(0), "--max-concurrency must be at least 1");
    anyhow::ensure!(
        (1..=MAX_PROMPTS).contains(&args.num_prompts),
        "--num-prompts must be between 1 and {MAX_PROMPTS}, got {}",
        args.num_prompts
    );
    if requests.is_none() && args.dataset_name == DatasetName::Random {
        // Every prompt is drawn before the first is sent: check what they
        // would hold before drawing them.
        let longest = (args.random_input_len as f64 * (1.0 + args.random_range_ratio.max(0.0))).ceil();
        let tokens = longest * args.num_prompts as f64;
        anyhow::ensure!(
            tokens <= MAX_RANDOM_TOKENS as f64,
            "--num-prompts {} × --random-input-len {} (range ratio {}) is up to {tokens:.0} prompt tokens to hold at once; at most {MAX_RANDOM_TOKENS} (1 GiB): lower either",
            args.num_prompts,
            args.random_input_len,
            args.random_range_ratio
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let report = runtime.block_on(runner::run(args, requests))?;
    if let Some(path) = &args.result_file {
        std::fs::write(path, serde_json::to_string_pretty(&report.to_json())?)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(report)
}
