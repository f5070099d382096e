//! `ModelExecutor` behind kvscope-core's `Executor` trait: greedy decoding
//! through scheduled batches follows the reference, seeded sampling does not
//! depend on batching, and bad batches are errors, not panics.

mod common;

use common::blocks;
use kvscope_core::executor::{Executor, ScheduledBatch, ScheduledSeq};
use kvscope_core::ids::{BlockId, RequestId};
use kvscope_core::request::SamplingParams;
use kvscope_model::ModelExecutor;
use std::sync::Arc;

const BS: usize = 16;

fn executor(num_blocks: usize) -> ModelExecutor {
    // Every executor shares one read-only copy of the weights.
    static M: std::sync::OnceLock<Arc<kvscope_model::llama::LlamaModel>> = std::sync::OnceLock::new();
    let m = M.get_or_init(|| {
        let g = kvscope_model::gguf::Gguf::open(&common::model_path()).unwrap();
        Arc::new(kvscope_model::llama::LlamaModel::load(&g).unwrap())
    });
    ModelExecutor::new(m.clone(), kvscope_core::KvDtype::F32, num_blocks, BS, 1234).unwrap()
}

fn seq(
    id: u64,
    tokens: Vec<u32>,
    start_pos: usize,
    table: &[BlockId],
    output_index: usize,
    sampling: &SamplingParams,
) -> ScheduledSeq {
    ScheduledSeq {
        request_id: RequestId(id),
        is_prefill: start_pos == 0,
        next_prompt_token: None,
        num_tokens: tokens.len(),
        tokens,
        start_pos,
        block_table: table.to_vec(),
        sample: true,
        output_index,
        sampling: std::sync::Arc::new(sampling.clone()),
    }
}

/// Run requests to `n` output tokens each, all in the same batches.
fn generate(
    ex: &mut ModelExecutor,
    prompts: &[Vec<u32>],
    first_id: u64,
    n: usize,
    sampling: &SamplingParams,
) -> Vec<Vec<u32>> {
    let tables: Vec<Vec<BlockId>> = (0..prompts.len() as u32).map(|i| blocks(8 * i, 8)).collect();
    let mut outs: Vec<Vec<u32>> = vec![vec![]; prompts.len()];
    let mut pos = vec![0usize; prompts.len()];
    let mut next = prompts.to_vec();
    for _ in 0..n {
        let batch = ScheduledBatch {
            seqs: (0..prompts.len())
                .map(|i| seq(first_id + i as u64, next[i].clone(), pos[i], &tables[i], outs[i].len(), sampling))
                .collect(),
        };
        let sampled = ex.execute(&batch).unwrap().sampled;
        for (i, s) in sampled.into_iter().enumerate() {
            let t = s.unwrap().token;
            pos[i] += next[i].len();
            outs[i].push(t);
            next[i] = vec![t];
        }
    }
    outs
}

#[test]
fn greedy_generation_through_batches_follows_transformers() {
    let g = common::transformers();
    let ids = ["en_factual_qa", "json_fragment"];
    let prompts: Vec<Vec<u32>> = ids.iter().map(|id| common::prompt(g, id).prompt_token_ids.clone()).collect();
    let mut ex = executor(16);
    let outs = generate(&mut ex, &prompts, 1, 16, &SamplingParams::greedy(16));
    for (id, out) in ids.iter().zip(&outs) {
        let p = common::prompt(g, id);
        let first_tie = p.top5_per_step.iter().position(|t| common::margin(t) < 0.1).unwrap_or(48).min(16);
        assert_eq!(out[..first_tie], p.generated_token_ids[..first_tie], "{id}");
    }
}

#[test]
fn seeded_sampling_is_the_same_alone_and_batched() {
    let g = common::llamacpp();
    let prompts: Vec<Vec<u32>> =
        ["story_opening", "zh_question"].iter().map(|id| common::prompt(g, id).prompt_token_ids.clone()).collect();
    let sampling = SamplingParams {
        temperature: 0.9,
        top_k: Some(40),
        top_p: 0.95,
        seed: Some(77),
        logprobs: 3,
        prompt_logprobs: None,
        ..Default::default()
    };
    let together = generate(&mut executor(16), &prompts, 10, 8, &sampling);
    for (i, p) in prompts.iter().enumerate() {
        let alone = generate(&mut executor(16), std::slice::from_ref(p), 10 + i as u64, 8, &sampling);
        assert_eq!(alone[0], together[i]);
    }
    // Unseeded requests draw from a per-request stream of the engine seed.
    let unseeded = SamplingParams { seed: None, ..sampling };
    let a = generate(&mut executor(16), &prompts, 10, 8, &unseeded);
    let b = generate(&mut executor(16), &prompts, 10, 8, &unseeded);
    assert_eq!(a, b);
}

#[test]
fn logprobs_are_reported_when_asked() {
    let p = common::prompt(common::llamacpp(), "en_factual_qa").prompt_token_ids.clone();
    let mut ex = executor(4);
    let sampling = SamplingParams { logprobs: 5, ..SamplingParams::greedy(1) };
    let out = ex.execute(&ScheduledBatch { seqs: vec![seq(1, p, 0, &blocks(0, 4), 0, &sampling)] }).unwrap();
    let t = out.sampled[0].as_ref().unwrap();
    assert_eq!(t.top_logprobs.len(), 5);
    assert_eq!(t.top_logprobs[0].0, t.token);
    assert_eq!(t.logprob, Some(t.top_logprobs[0].1));
    assert!(t.top_logprobs.windows(2).all(|w| w[0].1 >= w[1].1) && t.top_logprobs[0].1 < 0.0);
}

#[test]
fn bad_batches_are_errors_naming_the_request() {
    let mut ex = executor(4);
    let greedy = SamplingParams::greedy(1);
    let cases = [
        (vec![1, 2, 3], 0, blocks(0, 0)),      // no blocks for the tokens
        (vec![1, 2, 3], 0, vec![BlockId(99)]), // a block outside the pool
        (vec![49_152], 0, blocks(0, 1)),       // a token outside the vocabulary
        (vec![1], 8192, blocks(0, 4)),         // beyond the context length
        (vec![], 0, blocks(0, 1)),             // nothing to compute
    ];
    for (tokens, start, table) in cases {
        let batch = ScheduledBatch { seqs: vec![seq(42, tokens.clone(), start, &table, 0, &greedy)] };
        let err = ex.execute(&batch).unwrap_err();
        assert!(err.to_string().contains("request 42"), "{err}");
    }
    let bad = SamplingParams { top_p: 2.0, ..greedy };
    let batch = ScheduledBatch { seqs: vec![seq(7, vec![1], 0, &blocks(0, 1), 0, &bad)] };
    assert!(ex.execute(&batch).unwrap_err().to_string().contains("top_p"));
    assert!(ex.execute(&ScheduledBatch::default()).unwrap().sampled.is_empty());
}
