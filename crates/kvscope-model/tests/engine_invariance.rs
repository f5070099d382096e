//! Through the real scheduler and the real model: each request's greedy
//! tokens and their log-probabilities are bit-identical whether it runs
//! alone in a roomy pool, or batched with others in a pool so small that
//! requests are preempted and recomputed, with prefix-cache hits and
//! chunked prefill — for every KV storage format.

mod common;

use kvscope_core::{
    Engine, EngineConfig, KvDtype, PoolConfig, RequestId, SamplingParams, SchedulerConfig, Sequence, SimClock,
};
use kvscope_model::executor::ModelExecutor;
use std::collections::BTreeMap;
use std::sync::Arc;

const BLOCK: usize = 16;
const OUTPUT: usize = 20;

fn model() -> Arc<kvscope_model::llama::LlamaModel> {
    static M: std::sync::OnceLock<Arc<kvscope_model::llama::LlamaModel>> = std::sync::OnceLock::new();
    M.get_or_init(|| {
        let g = kvscope_model::gguf::Gguf::open(&common::model_path()).unwrap();
        Arc::new(kvscope_model::llama::LlamaModel::load(&g).unwrap())
    })
    .clone()
}

/// Four prompts sharing a two-block prefix, each with its own tail.
fn prompts() -> Vec<Vec<u32>> {
    let g = common::llamacpp();
    let prefix = &common::prompt(g, "code_rust").prompt_token_ids[..2 * BLOCK];
    ["en_factual_qa", "story_opening", "zh_question", "digits_punct_invoice"]
        .iter()
        .map(|id| prefix.iter().chain(&common::prompt(g, id).prompt_token_ids[..12]).copied().collect())
        .collect()
}

/// Runs every prompt to completion; the finished sequences by request.
fn run(dtype: KvDtype, prompts: &[Vec<u32>], num_blocks: usize, budget: usize) -> BTreeMap<u64, Sequence> {
    let config = EngineConfig {
        scheduler: SchedulerConfig {
            max_running: prompts.len(),
            max_batched_tokens: budget,
            max_model_len: 8192,
            long_prefill_token_threshold: 0,
            max_num_partial_prefills: 0,
        },
        pool: PoolConfig { num_blocks, block_size: BLOCK, enable_prefix_caching: true, bytes_per_block: 0 },
        vocab_size: Some(49152),
    };
    let executor = ModelExecutor::new(model(), dtype, num_blocks, BLOCK, 0).unwrap();
    let mut engine = Engine::new(config, executor, SimClock::new()).unwrap();
    let params = SamplingParams { logprobs: 1, ignore_eos: true, ..SamplingParams::greedy(OUTPUT) };
    for (i, p) in prompts.iter().enumerate() {
        engine.submit(RequestId(i as u64), p.clone(), params.clone()).unwrap();
    }
    let mut done = BTreeMap::new();
    for _ in 0..10_000 {
        if !engine.has_work() {
            break;
        }
        for seq in engine.step().unwrap().finished {
            done.insert(seq.id.0, seq);
        }
    }
    assert_eq!(done.len(), prompts.len(), "every request finished");
    done
}

fn fingerprint(seq: &Sequence) -> Vec<(u32, u32)> {
    seq.output_logprobs.iter().map(|t| (t.token, t.logprob.unwrap().to_bits())).collect()
}

#[test]
fn preemption_prefix_hits_and_batching_change_no_bit_in_any_kv_format() {
    let prompts = prompts();
    for dtype in KvDtype::CPU {
        // Alone: each request in its own roomy pool, prefill in one step.
        let alone: Vec<Vec<(u32, u32)>> =
            prompts.iter().map(|p| fingerprint(&run(dtype, std::slice::from_ref(p), 64, 512)[&0])).collect();
        // Together: 9 blocks for four requests of ~4 blocks each, a token
        // budget that chunks the prompts.
        let together = run(dtype, &prompts, 9, 24);
        let preemptions: u32 = together.values().map(|s| s.preemptions).sum();
        let cached: usize = together.values().map(|s| s.num_cached_prompt_tokens).sum();
        assert!(preemptions > 0 && cached > 0, "{dtype}: the test must preempt ({preemptions}) and hit ({cached})");
        for (i, want) in alone.iter().enumerate() {
            assert!(&fingerprint(&together[&(i as u64)]) == want, "{dtype} KV, request {i}: outputs differ from alone");
        }
    }
}
