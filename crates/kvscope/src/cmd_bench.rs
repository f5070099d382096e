//! `kvscope bench throughput`: the in-process benchmark in the spirit of
//! `vllm bench throughput` and `llama-batched-bench`. C sequences with
//! distinct L-token prompts each generate O tokens. S_PP = C·L / time of
//! the prompt phase; S_TG = C·O / time of the generation phase — the same
//! definitions as llama-batched-bench, so the figures compare directly.

use anyhow::Context;
use kvscope_core::{
    Clock, Engine, EngineConfig, PoolConfig, RequestId, SamplingParams, SchedulerConfig, WallClock, DEFAULT_BLOCK_SIZE,
};
use kvscope_experiment::workload::{CaseSpec, PromptSource, Scale};
use kvscope_model::LoadedModel;
use kvscope_model::ModelArgs;
use serde::Serialize;

// Parsed once per process: the size of the larger variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// In-process throughput: prompt processing and generation speed.
    Throughput(ThroughputArgs),
    /// Load generator against a running server (TTFT, TPOT, ITL, E2E).
    Serve(ServeBenchArgs),
}

#[derive(clap::Args, Debug)]
pub struct ServeBenchArgs {
    #[command(flatten)]
    pub bench: kvscope_client::BenchArgs,
    /// Send one of the lab's workloads (its prompts as token ids, its
    /// output lengths) instead of --dataset-name; `shared_prefix_chats`
    /// (the fleet experiment's) sends its prompts as text, in send order,
    /// drawn with --seed, as `kvscope sim --replicas N --seed` draws them.
    #[arg(long, value_parser = lab_workload_names())]
    pub lab_workload: Option<String>,
    /// The lab's quick sizes for --lab-workload.
    #[arg(long)]
    pub quick: bool,
    /// The GGUF whose tokenizer turns --lab-workload's prompts into ids
    /// (default: the default model). `--model` is the served model's name,
    /// as in vLLM's bench, whose tokenizer flag is also `--tokenizer`.
    #[arg(long)]
    pub tokenizer: Option<std::path::PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ThroughputArgs {
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 128)]
    pub prompt_len: usize,
    #[arg(long, default_value_t = 128)]
    pub output_len: usize,
    /// Repeat the measurement and report medians.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Serialize, Debug, Clone)]
pub struct ThroughputResult {
    pub concurrency: usize,
    pub prompt_len: usize,
    pub output_len: usize,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    /// Time to the first token of the first sequence (s).
    pub ttft_s: f64,
    pub threads: usize,
    pub runs: usize,
    /// The linear-layer kernels and instruction set, e.g. "int8 (avx512-vnni)".
    pub kernels: String,
    /// How the KV cache stored K and V.
    pub kv_dtype: kvscope_core::KvDtype,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Throughput(args) => throughput(args),
        BenchCommand::Serve(args) => serve_bench(args),
    }
}

/// The lab's capacity cases and the fleet experiment's.
fn lab_workload_names() -> [&'static str; 4] {
    let [a, b, c] = kvscope_experiment::CASE_NAMES;
    [a, b, c, kvscope_experiment::CHATS_CASE]
}

fn serve_bench(args: ServeBenchArgs) -> anyhow::Result<()> {
    let requests = match &args.lab_workload {
        Some(name) if name == kvscope_experiment::CHATS_CASE => Some(chats_requests(&args)),
        Some(name) => {
            // The lab's prompts are tokenized with the served model's tokenizer.
            let model = LoadedModel::load(&ModelArgs { model: args.tokenizer.clone(), ..Default::default() })?;
            let scale = if args.quick { Scale::Quick } else { Scale::Lab };
            let spec = CaseSpec::named(name, scale, 0, 2026).expect("clap checked the name");
            let tokenize = |t: &str| model.tokenizer.encode(t).unwrap_or_default();
            let reqs = spec.generate(&PromptSource::Generated { tokenize: &tokenize });
            Some(
                reqs.into_iter()
                    .map(|r| kvscope_client::BenchRequest {
                        prompt: kvscope_client::BenchPrompt::Tokens(r.prompt.to_vec()),
                        output_len: r.max_tokens,
                    })
                    .collect(),
            )
        }
        None => None,
    };
    let report = kvscope_client::run_bench_serve_with(&args.bench, requests)?;
    println!("{}", report.table());
    Ok(())
}

/// `shared_prefix_chats` at the lab's sizes (quick with --quick) as text:
/// the server (or the gateway in front of replicas) sees the same prompts
/// the fleet test sends, and the gateway's cache-aware policy, which
/// matches request text, can route them. Arrivals are the bench's own
/// (--request-rate, --seed), which draw the same times as the case's.
fn chats_requests(args: &ServeBenchArgs) -> Vec<kvscope_client::BenchRequest> {
    let scale = if args.quick { Scale::Quick } else { Scale::Lab };
    kvscope_experiment::ChatsCase::at(scale, args.bench.seed)
        .turns()
        .into_iter()
        .map(|t| kvscope_client::BenchRequest {
            prompt: kvscope_client::BenchPrompt::Text(t.prompt),
            output_len: t.max_tokens,
        })
        .collect()
}

fn throughput(args: ThroughputArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.concurrency > 0 && args.prompt_len > 0 && args.output_len > 0,
        "concurrency, prompt length and output length must be at least 1"
    );
    let model = LoadedModel::load(&args.model)?;
    let mut runs: Vec<ThroughputResult> =
        (0..args.repeat.max(1)).map(|i| once(&model, &args, i as u32)).collect::<anyhow::Result<_>>()?;
    // The project's one percentile rule: an even --repeat gives the mean of
    // the two middle runs.
    let median = |f: fn(&ThroughputResult) -> f64, runs: &mut Vec<ThroughputResult>| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        kvscope_experiment::dist::percentile_of_sorted(&v, 50.0)
    };
    let result = ThroughputResult {
        prefill_seconds: median(|r| r.prefill_seconds, &mut runs),
        decode_seconds: median(|r| r.decode_seconds, &mut runs),
        prefill_tokens_per_s: median(|r| r.prefill_tokens_per_s, &mut runs),
        decode_tokens_per_s: median(|r| r.decode_tokens_per_s, &mut runs),
        ttft_s: median(|r| r.ttft_s, &mut runs),
        runs: runs.len(),
        ..runs[0].clone()
    };
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!(
            "C={} L={} O={}: prefill {:.1} tok/s ({:.3} s), decode {:.1} tok/s ({:.3} s), TTFT {:.3} s, median of {} run(s), {} threads, {} kernels, {} KV",
            result.concurrency, result.prompt_len, result.output_len, result.prefill_tokens_per_s, result.prefill_seconds,
            result.decode_tokens_per_s, result.decode_seconds, result.ttft_s, result.runs, result.threads, result.kernels, result.kv_dtype
        );
    }
    Ok(())
}

fn once(model: &LoadedModel, args: &ThroughputArgs, run: u32) -> anyhow::Result<ThroughputResult> {
    let (c, l, o) = (args.concurrency, args.prompt_len, args.output_len);
    let block_size = DEFAULT_BLOCK_SIZE;
    let config = model.llama.config();
    // O decode steps after the prompt phase (whose step yields token 1).
    let per_seq = l.saturating_add(o).saturating_add(1).div_ceil(block_size);
    let num_blocks = c.saturating_mul(per_seq);
    let engine_config = EngineConfig::new(
        SchedulerConfig::new(c, c.saturating_mul(l).saturating_add(c), config.context_length),
        PoolConfig::new(num_blocks, block_size, model.kv_bytes_per_token(), false),
        Some(config.vocab_size),
    );
    // Distinct prompts: no accidental sharing between sequences.
    let prompt = |i: usize| -> Vec<u32> {
        (0..l).map(|p| ((p * 7919 + i * 104_729 + run as usize * 31) % 40_000 + 100) as u32).collect()
    };
    let params = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(o + 1) };
    crate::preflight::check_engine_config(&engine_config).with_context(|| {
        format!("the pool holds all {c} sequences of {l} + {o} tokens at once: lower --concurrency, --prompt-len or --output-len")
    })?;
    engine_config.check_request(&prompt(0), &params)?;
    let executor = model.executor(&engine_config.pool)?;
    let mut engine = Engine::new(engine_config, executor, WallClock::new())?;
    for i in 0..c {
        engine.submit(RequestId(i as u64), prompt(i), params.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let start = engine.clock().now();
    let mut first_tokens = 0;
    let mut ttft = None;
    while first_tokens < c {
        let outcome = engine.step()?;
        first_tokens += outcome.new_tokens.len();
        ttft.get_or_insert(engine.clock().now() - start);
    }
    let prefill_end = engine.clock().now();
    while engine.has_work() {
        engine.step()?;
    }
    let end = engine.clock().now();
    let (pp, tg) = (prefill_end - start, end - prefill_end);
    Ok(ThroughputResult {
        concurrency: c,
        prompt_len: l,
        output_len: o,
        prefill_seconds: pp,
        decode_seconds: tg,
        prefill_tokens_per_s: (c * l) as f64 / pp,
        decode_tokens_per_s: (c * o) as f64 / tg,
        ttft_s: ttft.unwrap_or(pp),
        threads: kvscope_model::kernels::threads(),
        runs: 1,
        kernels: model.kernels(),
        kv_dtype: model.kv_dtype,
    })
}
