//! `kvscope bench serve`'s flags, vLLM's `bench serve` spellings.

use crate::completion::Endpoint;
use std::path::PathBuf;

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
pub(crate) const MAX_PROMPTS: usize = 1_000_000;
/// Most random prompt tokens drawn up front (1 GiB of token ids).
pub(crate) const MAX_RANDOM_TOKENS: usize = 1 << 28;

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
    /// Also write every request's figures into the result (vLLM's
    /// `--save-detailed` keys: `input_lens`, `output_lens`, `start_times`,
    /// `ttfts`, `itls`), so that percentiles can be taken over several runs
    /// pooled, not only per run.
    #[arg(long, requires = "result_file")]
    pub save_detailed: bool,
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
            save_detailed: false,
            api_key: None,
        }
    }
}
