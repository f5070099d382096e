//! The grader's workloads: small, so a check takes seconds on two cores,
//! and each built to exercise one part of a block manager's life.

use kvscope_core::rng::SplitMix64 as Rng;
use kvscope_core::{RequestId, TokenId};

/// One request of a workload.
#[derive(Clone, Debug)]
pub struct GradedRequest {
    pub id: RequestId,
    pub prompt: Vec<TokenId>,
    pub max_tokens: usize,
    /// Submitted before this engine step runs.
    pub at_step: u64,
}

#[derive(Clone, Debug)]
pub struct Workload {
    pub name: &'static str,
    /// What it exercises, for the report.
    pub purpose: &'static str,
    pub num_blocks: usize,
    pub block_size: usize,
    pub max_running: usize,
    pub max_batched_tokens: usize,
    pub requests: Vec<GradedRequest>,
    /// `(request, step)`: aborted before that step runs.
    pub aborts: Vec<(RequestId, u64)>,
}

const BLOCK: usize = 4;

/// Token ids in a range every supported model has.
fn tokens(rng: &mut Rng, n: usize) -> Vec<TokenId> {
    (0..n).map(|_| 200 + (rng.next_u64() % 20_000) as TokenId).collect()
}

fn request(id: u64, prompt: Vec<TokenId>, max_tokens: usize, at_step: u64) -> GradedRequest {
    GradedRequest { id: RequestId(id), prompt, max_tokens, at_step }
}

pub fn all(seed: u64) -> Vec<Workload> {
    let mut rng = Rng::new(seed);
    vec![short(&mut rng), long(&mut rng), shared_prefix(&mut rng), preemption(&mut rng), abort(&mut rng)]
}

fn short(rng: &mut Rng) -> Workload {
    let requests = (0..6)
        .map(|i| {
            let n = 5 + (i as usize * 3) % 8;
            request(i, tokens(rng, n), 6 + (i as usize % 3) * 2, 0)
        })
        .collect();
    Workload {
        name: "short",
        purpose: "short prompts decoded together: allocate, may_append across block boundaries, deallocate",
        num_blocks: 48,
        block_size: BLOCK,
        max_running: 8,
        max_batched_tokens: 128,
        requests,
        aborts: Vec::new(),
    }
}

fn long(rng: &mut Rng) -> Workload {
    Workload {
        name: "long",
        purpose: "long prompts prefilled in chunks (the table must cover the whole prompt from admission)",
        num_blocks: 64,
        block_size: BLOCK,
        max_running: 4,
        max_batched_tokens: 32,
        requests: vec![request(0, tokens(rng, 70), 6, 0), request(1, tokens(rng, 90), 6, 0)],
        aborts: Vec::new(),
    }
}

/// A shared system prompt of three full blocks: hits on blocks still held
/// (second request of the first wave) and on blocks already released
/// (second wave); plus a prompt whose first block holds the same tokens as
/// another's in a different order, which only a real token comparison
/// (through the chained hash) keeps apart.
fn shared_prefix(rng: &mut Rng) -> Workload {
    let system = tokens(rng, 3 * BLOCK);
    let with_tail = |rng: &mut Rng, n: usize| {
        let mut p = system.clone();
        p.extend(tokens(rng, n));
        p
    };
    let mut requests = vec![
        request(0, with_tail(rng, 3), 6, 0),
        request(1, with_tail(rng, 5), 6, 2),
        request(2, with_tail(rng, 2), 5, 2),
        request(3, with_tail(rng, 6), 6, 20),
        request(4, with_tail(rng, 1), 4, 20),
    ];
    let mut shuffled = system.clone();
    shuffled[..BLOCK].reverse();
    shuffled.extend(tokens(rng, 3));
    requests.push(request(5, shuffled, 5, 30));
    Workload {
        name: "shared_prefix",
        purpose: "a shared system prompt: prefix hits on held and on released blocks, and a permuted look-alike block",
        num_blocks: 40,
        block_size: BLOCK,
        max_running: 8,
        max_batched_tokens: 128,
        requests,
        aborts: Vec::new(),
    }
}

fn preemption(rng: &mut Rng) -> Workload {
    let requests = (0..3).map(|i| request(i, tokens(rng, 6), 14, 0)).collect();
    Workload {
        name: "preemption",
        purpose:
            "a pool too small for everyone's decode: can_append says no, the newest request is preempted and recomputed",
        num_blocks: 10,
        block_size: BLOCK,
        max_running: 4,
        max_batched_tokens: 64,
        requests,
        aborts: Vec::new(),
    }
}

fn abort(rng: &mut Rng) -> Workload {
    let requests = (0..5).map(|i| request(i, tokens(rng, 6 + i as usize), 10, 0)).collect();
    Workload {
        name: "abort",
        purpose: "requests aborted while decoding and while waiting: their blocks must come back at once",
        num_blocks: 32,
        block_size: BLOCK,
        max_running: 3,
        max_batched_tokens: 64,
        requests,
        aborts: vec![(RequestId(1), 4), (RequestId(4), 2)],
    }
}
