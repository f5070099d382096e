//! `kvscope bench serve`: a load generator in the spirit of `vllm bench
//! serve`. Requests arrive as a Poisson process (gamma intervals for
//! burstiness) or all at once, optionally capped at a concurrency; each is
//! streamed, and TTFT, TPOT, ITL and end-to-end latency are measured from
//! the chunks as they arrive.

use crate::bench_args::{BenchArgs, DatasetName, MAX_PROMPTS, MAX_RANDOM_TOKENS};
use crate::completion::{CompletionClient, CompletionRequest};
use crate::dataset::{load_dataset, BenchRequest};
use crate::replay::replay;
use crate::report::BenchReport;
use kvscope_experiment::Arrival;

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
    let report = runtime.block_on(run(args, requests))?;
    if let Some(path) = &args.result_file {
        std::fs::write(path, serde_json::to_string_pretty(&report.to_json())?)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(report)
}

/// Asks the server for its model, draws the dataset (unless given),
/// replays the arrival schedule and sums the timings up.
async fn run(args: &BenchArgs, requests: Option<Vec<BenchRequest>>) -> anyhow::Result<BenchReport> {
    let client = CompletionClient::new(&args.base_url, args.api_key.as_deref())?;
    let card = client.first_model().await?;
    let model = args.model.clone().or(card.id).unwrap_or_default();
    let requests = match requests {
        Some(r) => r,
        None => load_dataset(args, card.vocab_size.unwrap_or(1000))?,
    };
    let requests: Vec<CompletionRequest> = requests
        .into_iter()
        .map(|r| CompletionRequest {
            endpoint: args.endpoint,
            model: model.clone(),
            prompt: r.prompt,
            max_tokens: r.output_len,
            ignore_eos: args.ignore_eos,
        })
        .collect();
    // The experiment layer's arrival process: Poisson, gamma with
    // --burstiness, or all at once for an infinite rate.
    let arrivals = Arrival::from_rate(args.request_rate, args.burstiness).times(requests.len(), args.seed);
    let replayed = replay(&client, requests, &arrivals, args.max_concurrency).await?;
    Ok(BenchReport::from_replayed(args, replayed))
}
