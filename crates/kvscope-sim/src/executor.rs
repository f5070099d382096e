//! The simulated executor: the same `Executor` contract as the real model,
//! but a step computes nothing. It prices the batch with the cost model and
//! moves the simulated clock forward by that much, so the engine's TTFT,
//! queue wait and throughput come out in simulated seconds.
//!
//! Sampled tokens are synthetic: a hash of (request, output index, seed),
//! below the model's vocabulary. They are never one of the request's stop
//! tokens, so a request ends only when it reaches `max_tokens`: output
//! lengths are decided by the workload, as in benchmarks run with
//! `ignore_eos`.

use crate::batch_shape::BatchShape;
use crate::cost::CostModel;
use kvscope_core::{
    BatchOutput, Clock, DecodeRun, DecodeRunOutput, Executor, ExecutorError, SampledToken, ScheduledBatch, SimClock,
    TokenId,
};

/// Running totals of what the simulator priced.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SimTotals {
    /// Steps executed.
    pub steps: u64,
    /// Simulated seconds spent in steps.
    pub busy_s: f64,
    pub prefill_tokens: u64,
    pub decode_tokens: u64,
}

pub struct SimExecutor {
    cost: CostModel,
    clock: SimClock,
    vocab: u32,
    totals: SimTotals,
}

impl SimExecutor {
    /// `clock` must be (a clone of) the clock the engine reads.
    pub fn new(cost: CostModel, clock: SimClock) -> Self {
        let vocab = cost.model().vocab.clamp(2, u32::MAX as usize) as u32;
        SimExecutor { cost, clock, vocab, totals: SimTotals::default() }
    }

    pub fn cost_model(&self) -> &CostModel {
        &self.cost
    }

    pub fn totals(&self) -> SimTotals {
        self.totals
    }
}

impl Executor for SimExecutor {
    fn execute(&mut self, batch: &ScheduledBatch) -> Result<BatchOutput, ExecutorError> {
        let shape = BatchShape::of(batch);
        let dt = self.cost.step_seconds(&shape);
        self.clock.advance(dt);
        self.totals.steps += 1;
        self.totals.busy_s += dt;
        self.totals.prefill_tokens += shape.prefill_tokens;
        self.totals.decode_tokens += shape.decode_seqs;
        let sampled = batch
            .seqs
            .iter()
            .map(|s| {
                s.sample.then(|| {
                    let seed = s.sampling.seed.unwrap_or(0);
                    SampledToken::plain(synthetic_token(
                        s.request_id.0,
                        s.output_index as u64,
                        seed,
                        self.vocab,
                        &s.sampling.stop_token_ids,
                    ))
                })
            })
            .collect();
        Ok(BatchOutput::sampled(sampled))
    }

    const KV_SITE: &'static str = "sim::execute";

    /// The cost depends on counts and positions, never on token ids or on
    /// where KV lives.
    fn reads_batch_contents(&self) -> bool {
        false
    }

    /// The fast path: the run's steps priced in closed form, its tokens
    /// drawn as a step-by-step run would draw them.
    fn execute_decode_run(&mut self, run: &DecodeRun) -> Option<Result<DecodeRunOutput, ExecutorError>> {
        let seqs = run.seqs.len() as u64;
        let context: u64 = run.seqs.iter().map(|s| s.context_tokens as u64).sum();
        let within = run.start_before - self.clock.now();
        let steps = self.cost.decode_run_steps_within(seqs, context, run.max_steps as u64, within).max(1);
        let dt = self.cost.decode_run_seconds(seqs, context, steps);
        self.clock.advance(dt);
        self.totals.steps += steps;
        self.totals.busy_s += dt;
        self.totals.decode_tokens += seqs * steps;
        let mut tokens = Vec::with_capacity((seqs * steps) as usize);
        for s in run.seqs {
            let seed = s.sampling.seed.unwrap_or(0);
            tokens.extend((0..steps).map(|j| {
                let index = s.output_index as u64 + j;
                synthetic_token(s.request_id.0, index, seed, self.vocab, &s.sampling.stop_token_ids)
            }));
        }
        Some(Ok(DecodeRunOutput { steps: steps as usize, tokens }))
    }
}

/// A deterministic token for (request, position, seed) that is not a stop
/// token (stepping to the next id until it is not one).
fn synthetic_token(request: u64, index: u64, seed: u64, vocab: u32, stop: &[TokenId]) -> TokenId {
    let mut h = request.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ index.wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ seed;
    h ^= h >> 31;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 29;
    let mut token = (h % u64::from(vocab)) as TokenId;
    // At most `stop.len()` steps: there are fewer stop tokens than ids.
    for _ in 0..=stop.len() {
        if !stop.contains(&token) {
            break;
        }
        token = (token + 1) % vocab;
    }
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_tokens_avoid_stop_tokens_and_stay_in_vocab() {
        let stop: Vec<u32> = (0..9).collect();
        for i in 0..1000 {
            let t = synthetic_token(i, i * 3, 7, 10, &stop);
            assert_eq!(t, 9);
        }
        for i in 0..1000 {
            assert!(synthetic_token(i, 0, 0, 50, &[]) < 50);
        }
    }
}
