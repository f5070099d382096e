//! Scoring a prompt: every prompt token's log-probability given the tokens
//! before it, computed by the real model through the engine, whatever the
//! chunking — and equal to what decoding that token would have reported.

mod common;

use kvscope_core::{Engine, EngineConfig, PoolConfig, RequestId, SamplingParams, SchedulerConfig, Sequence, SimClock};
use kvscope_model::executor::ModelExecutor;
use std::sync::Arc;

fn run(prompt: &[u32], params: SamplingParams, budget: usize) -> Sequence {
    let llama = Arc::new(
        kvscope_model::llama::LlamaModel::load(&kvscope_model::gguf::Gguf::open(&common::model_path()).unwrap())
            .unwrap(),
    );
    let config = EngineConfig {
        scheduler: SchedulerConfig {
            max_running: 4,
            max_batched_tokens: budget,
            max_model_len: 8192,
            long_prefill_token_threshold: 0,
            max_num_partial_prefills: 0,
        },
        pool: PoolConfig { num_blocks: 16, block_size: 16, enable_prefix_caching: true, bytes_per_block: 0 },
        vocab_size: Some(49152),
    };
    let mut engine =
        Engine::new(config, ModelExecutor::new(llama, kvscope_core::KvDtype::F32, 16, 16, 0).unwrap(), SimClock::new())
            .unwrap();
    engine.submit(RequestId(1), prompt.to_vec(), params).unwrap();
    loop {
        if let Some(seq) = engine.step().unwrap().finished.into_iter().next() {
            return seq;
        }
    }
}

#[test]
fn prompt_scores_cover_every_position_and_do_not_depend_on_chunking() {
    let prompt: Vec<u32> = common::prompt(common::llamacpp(), "en_factual_qa").prompt_token_ids.clone();
    let params = SamplingParams { prompt_logprobs: Some(2), logprobs: 1, ..SamplingParams::greedy(1) };
    let whole = run(&prompt, params.clone(), 512);
    let chunked = run(&prompt, params.clone(), 5);
    let positions: Vec<usize> = whole.prompt_logprobs.iter().map(|p| p.position).collect();
    assert_eq!(positions, (1..prompt.len()).collect::<Vec<_>>());
    assert!(whole
        .prompt_logprobs
        .iter()
        .all(|p| p.token == prompt[p.position] && p.logprob <= 0.0 && p.top_logprobs.len() == 2));
    assert_eq!(whole.prompt_logprobs, chunked.prompt_logprobs, "bit-identical under chunked prefill");

    // Append the greedy answer to the prompt: its score as a prompt token is
    // exactly the log-probability decoding reported for it.
    let answer = whole.output_logprobs[0].clone();
    let mut extended = prompt.clone();
    extended.push(answer.token);
    let scored = run(&extended, params, 512);
    let last = scored.prompt_logprobs.last().unwrap();
    assert_eq!((last.position, last.token), (prompt.len(), answer.token));
    assert_eq!(last.logprob.to_bits(), answer.logprob.unwrap().to_bits());
}
