//! `kvscope generate`: one prompt through the real engine (the same
//! scheduler, paged KV and executor the lab and the server use).

use anyhow::{bail, Context};
use kvscope_core::{
    Clock, Engine, EngineConfig, PoolConfig, RequestId, SamplingParams, SchedulerConfig, WallClock, DEFAULT_BLOCK_SIZE,
};
use kvscope_model::chat_template::ChatMessage;
use kvscope_model::LoadedModel;
use kvscope_model::ModelArgs;
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    #[arg(long)]
    pub prompt: String,
    /// Wrap the prompt as a user turn in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// 0 is greedy (the default, reproducible without a seed).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Also return the top-K (token id, log-probability) pairs per token.
    #[arg(long, default_value_t = 0)]
    pub logprobs: usize,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let mut params = SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
        max_tokens: args.max_tokens,
        stop_token_ids: Vec::new(),
        ignore_eos: false,
        logprobs: args.logprobs,
        prompt_logprobs: None,
    };
    // Flags are checked before the model loads, the request before the KV pool exists.
    params.validate()?;
    let model = LoadedModel::load(&args.model)?;
    let prompt_text = if args.chat {
        let template = model.chat_template.as_ref().context("this model file has no chat template: drop --chat")?;
        template.render(&[ChatMessage::new("user", &args.prompt)], true)?
    } else {
        args.prompt.clone()
    };
    let prompt = model.tokenizer.encode(&prompt_text)?;
    params.stop_token_ids = model.tokenizer.eog_ids().to_vec();
    let block_size = DEFAULT_BLOCK_SIZE;
    let config = model.llama.config();
    let num_blocks = prompt.len().saturating_add(args.max_tokens).div_ceil(block_size) + 1;
    let engine_config = EngineConfig::new(
        SchedulerConfig::new(1, 2048, config.context_length),
        PoolConfig::new(num_blocks, block_size, model.kv_bytes_per_token(), false),
        Some(config.vocab_size),
    );
    crate::preflight::check_engine_config(&engine_config)?;
    engine_config.check_request(&prompt, &params)?;
    let executor = model.executor(&engine_config.pool)?;
    let mut engine = Engine::new(engine_config, executor, WallClock::new())?;
    engine.submit(RequestId(0), prompt.clone(), params).map_err(|e| anyhow::anyhow!("{e}"))?;

    let mut shown = 0;
    let mut output = Vec::new();
    let mut finished = None;
    while engine.has_work() {
        let outcome = engine.step()?;
        output.extend(outcome.new_tokens.iter().map(|(_, t)| t.token));
        if !args.json {
            // Print only text that is complete UTF-8; a character split
            // across tokens waits for its last byte.
            let text = model.tokenizer.decode(&output, true)?;
            if !text.ends_with('\u{fffd}') && text.len() > shown {
                print!("{}", &text[shown..]);
                std::io::stdout().flush()?;
                shown = text.len();
            }
        }
        finished = outcome.finished.into_iter().next().or(finished);
    }
    let Some(seq) = finished else { bail!("the request did not finish") };
    let elapsed = engine.clock().now();
    let text = model.tokenizer.decode(&seq.output, true)?;
    if args.json {
        let t = &seq.timeline;
        let logprobs: Vec<_> = seq
            .output_logprobs
            .iter()
            .map(|s| serde_json::json!({"token_id": s.token, "logprob": s.logprob, "top": s.top_logprobs}))
            .collect();
        let mut out = serde_json::json!({
            "model": model.name(),
            "kernels": model.llama.kernels().name(),
            "isa": model.llama.kernels().isa_name(),
            "kv_dtype": model.kv_dtype,
            "prompt_text": prompt_text,
            "prompt_token_ids": prompt,
            "token_ids": seq.output,
            "text": text,
            "finish_reason": seq.finish_reason().map(|r| r.as_str()),
            "timing": {
                "ttft_s": t.ttft(),
                "total_s": elapsed,
                "decode_tokens_per_s": seq.tpot().map(|x| 1.0 / x),
            },
        });
        if args.logprobs > 0 {
            out["logprobs"] = serde_json::Value::Array(logprobs);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        if shown < text.len() {
            print!("{}", &text[shown..]);
        }
        println!();
        eprintln!(
            "[{} prompt tokens, {} generated, {:.2} s, finish: {}]",
            seq.prompt.len(),
            seq.output.len(),
            elapsed,
            seq.finish_reason().map_or("?", |r| r.as_str())
        );
    }
    Ok(())
}
