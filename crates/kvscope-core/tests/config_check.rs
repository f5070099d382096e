//! Every configuration is either refused with a message or runs its
//! requests to completion: random engine configurations (zeros, absurd
//! block sizes, budgets below the running limit included) and random
//! requests, on the paged test executor, with a bounded number of steps.

use kvscope_core::testing::PagedTokenExecutor;
use kvscope_core::{
    Engine, EngineConfig, KvBlockManager, PoolConfig, RequestId, SamplingParams, SchedulerConfig, SimClock,
};
use proptest::prelude::*;

const VOCAB: u32 = 500;

fn config() -> impl Strategy<Value = EngineConfig> {
    (0usize..6, 0usize..48, 0usize..200, 0usize..24, 0usize..300, any::<bool>(), 0usize..20, 0usize..8).prop_map(
        |(
            max_running,
            budget,
            max_model_len,
            num_blocks,
            block_size,
            caching,
            long_prefill_token_threshold,
            partial,
        )| {
            EngineConfig {
                scheduler: SchedulerConfig {
                    max_running,
                    max_batched_tokens: budget,
                    max_model_len,
                    long_prefill_token_threshold,
                    max_num_partial_prefills: partial,
                },
                pool: PoolConfig { num_blocks, block_size, enable_prefix_caching: caching, bytes_per_block: 64 },
                vocab_size: Some(VOCAB as usize),
            }
        },
    )
}

/// (prompt length, max_tokens, seed) per request.
fn requests() -> impl Strategy<Value = Vec<(usize, usize, u64)>> {
    prop::collection::vec((1usize..60, 1usize..20, any::<u64>()), 1..5)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn refused_with_a_message_or_runs_to_completion(config in config(), reqs in requests()) {
        if let Err(e) = config.validate_within(Some(1 << 30)) {
            prop_assert!(!e.to_string().is_empty());
            return Ok(());
        }
        let executor = PagedTokenExecutor::new(config.pool.num_blocks, config.pool.block_size, VOCAB);
        let mut engine = Engine::new(config.clone(), executor, SimClock::new()).unwrap();
        let mut accepted = 0;
        let mut work = 0;
        for (i, &(prompt_len, max_tokens, seed)) in reqs.iter().enumerate() {
            let prompt: Vec<u32> = (0..prompt_len).map(|p| ((seed >> (p % 40)) as u32 ^ p as u32) % VOCAB).collect();
            let params = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(max_tokens) };
            // The config-only check and the engine agree on every request.
            let early = config.check_request(&prompt, &params);
            let submitted = engine.submit(RequestId(i as u64), prompt, params);
            prop_assert_eq!(&early, &submitted);
            match submitted {
                Ok(()) => {
                    accepted += 1;
                    work += prompt_len + max_tokens;
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
        // Every step computes at least one token; preemption recomputes, so
        // allow generously — but finitely — many steps.
        let bound = 50 * work + 10;
        let mut finished = 0;
        let mut steps = 0;
        while engine.has_work() {
            prop_assert!(steps < bound, "no progress after {steps} steps with {config:?}");
            let outcome = engine.step().expect("the test executor does not fail");
            finished += outcome.finished.len();
            steps += 1;
        }
        prop_assert_eq!(finished, accepted);
        prop_assert_eq!(engine.scheduler().block_manager().free_blocks(), config.pool.num_blocks);
    }
}
