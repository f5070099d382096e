//! A sequence's logits are bit-identical however it is run: alone or batched
//! with others, prefilled whole or in chunks of any size, with its prefix KV
//! computed now or reused from another request's blocks — for every KV
//! storage format (f32, f16, int8).

mod common;

use common::{argmax, bits, blocks};
use kvscope_core::ids::BlockId;
use kvscope_core::KvDtype;
use kvscope_model::kv_storage::PagedKvCache;
use kvscope_model::llama::{LogitsFor, SeqChunk};

const BS: usize = 16;

fn prompts() -> Vec<Vec<u32>> {
    let g = common::llamacpp();
    ["en_factual_qa", "story_opening", "code_python_header", "zh_question"]
        .iter()
        .map(|id| common::prompt(g, id).prompt_token_ids.clone())
        .collect()
}

const STEPS: usize = 6;

/// Prefill then greedy-decode `STEPS` tokens alone in a fresh pool; the
/// logits after the prompt and after each decoded token.
fn alone(prompt: &[u32], dtype: KvDtype) -> Vec<Vec<u32>> {
    let m = common::llama();
    let mut kv = PagedKvCache::new(m.config(), dtype, 8, BS).unwrap();
    let table = blocks(0, 8);
    let mut out = vec![];
    let mut logits = m
        .forward(&mut kv, &[SeqChunk { tokens: prompt, start_pos: 0, block_table: &table, logits: LogitsFor::Last }])
        .unwrap();
    for pos in prompt.len()..prompt.len() + STEPS {
        out.push(bits(&logits[0]));
        let t = [argmax(&logits[0])];
        logits = m
            .forward(&mut kv, &[SeqChunk { tokens: &t, start_pos: pos, block_table: &table, logits: LogitsFor::Last }])
            .unwrap();
    }
    out.push(bits(&logits[0]));
    out
}

#[test]
fn batched_prefill_and_decode_equal_each_sequence_alone() {
    for dtype in KvDtype::CPU {
        batched_equals_alone(dtype);
    }
}

fn batched_equals_alone(dtype: KvDtype) {
    let m = common::llama();
    let prompts = prompts();
    let want: Vec<_> = prompts.iter().map(|p| alone(p, dtype)).collect();

    // One pool, 8 blocks per sequence. The last sequence joins two steps
    // late, so its prefill shares a batch with the others' decodes.
    let mut kv = PagedKvCache::new(m.config(), dtype, 8 * prompts.len(), BS).unwrap();
    let tables: Vec<Vec<BlockId>> = (0..prompts.len() as u32).map(|i| blocks(8 * i, 8)).collect();
    let late = prompts.len() - 1;
    let mut pos = vec![0usize; prompts.len()];
    let mut next: Vec<Vec<u32>> = prompts.clone();
    let mut got: Vec<Vec<Vec<u32>>> = vec![vec![]; prompts.len()];
    for step in 0..STEPS + 3 {
        let active: Vec<usize> =
            (0..prompts.len()).filter(|&i| (i != late || step >= 2) && got[i].len() <= STEPS).collect();
        let chunks: Vec<SeqChunk> = active
            .iter()
            .map(|&i| SeqChunk {
                tokens: &next[i],
                start_pos: pos[i],
                block_table: &tables[i],
                logits: LogitsFor::Last,
            })
            .collect();
        let logits = m.forward(&mut kv, &chunks).unwrap();
        for (&i, l) in active.iter().zip(&logits) {
            pos[i] += next[i].len();
            got[i].push(bits(l));
            next[i] = vec![argmax(l)];
        }
    }
    for i in 0..prompts.len() {
        assert_eq!(got[i].len(), STEPS + 1);
        for s in 0..=STEPS {
            assert!(got[i][s] == want[i][s], "{dtype} KV, sequence {i} step {s}: batched logits differ from alone");
        }
    }
}

/// Logits at every position of `tokens`, prefilled in chunks of `chunk`.
fn chunked(tokens: &[u32], chunk: usize, dtype: KvDtype) -> Vec<Vec<u32>> {
    let m = common::llama();
    let nb = tokens.len().div_ceil(BS) as u32;
    let mut kv = PagedKvCache::new(m.config(), dtype, nb as usize, BS).unwrap();
    let table = blocks(0, nb);
    let mut out = vec![];
    for (i, c) in tokens.chunks(chunk).enumerate() {
        let ch = SeqChunk { tokens: c, start_pos: i * chunk, block_table: &table, logits: LogitsFor::All };
        out.extend(m.forward(&mut kv, &[ch]).unwrap().iter().map(|l| bits(l)));
    }
    out
}

#[test]
fn chunked_prefill_equals_whole_prefill_at_every_position() {
    let tokens = &common::prompt(common::llamacpp(), "digits_punct_invoice").prompt_token_ids;
    for dtype in KvDtype::CPU {
        let whole = chunked(tokens, tokens.len(), dtype);
        assert_eq!(whole.len(), tokens.len());
        for size in [1, 7, 64] {
            let got = chunked(tokens, size, dtype);
            for (p, (a, b)) in got.iter().zip(&whole).enumerate() {
                assert!(a == b, "{dtype} KV, chunk size {size}: logits at position {p} differ from the whole prefill");
            }
        }
    }
}

#[test]
fn prefix_reuse_through_shared_blocks_equals_recompute() {
    for dtype in KvDtype::CPU {
        prefix_reuse_equals_recompute(dtype);
    }
}

fn prefix_reuse_equals_recompute(dtype: KvDtype) {
    let m = common::llama();
    let g = common::llamacpp();
    let a = &common::prompt(g, "code_rust").prompt_token_ids; // 54 tokens: 3 full blocks + 6
    let shared = 3 * BS;
    let suffix = &common::prompt(g, "en_factual_qa").prompt_token_ids[..10];
    let b: Vec<u32> = a[..shared].iter().chain(suffix).copied().collect();

    let mut kv = PagedKvCache::new(m.config(), dtype, 16, BS).unwrap();
    // Request A fills blocks 0..4.
    let table_a = blocks(0, 4);
    m.forward(&mut kv, &[SeqChunk { tokens: a, start_pos: 0, block_table: &table_a, logits: LogitsFor::Last }])
        .unwrap();
    // Request B reuses A's 3 full blocks and computes only its suffix, into block 9.
    let table_b: Vec<BlockId> = vec![BlockId(0), BlockId(1), BlockId(2), BlockId(9)];
    let reused = m
        .forward(
            &mut kv,
            &[SeqChunk { tokens: suffix, start_pos: shared, block_table: &table_b, logits: LogitsFor::All }],
        )
        .unwrap();
    // The same request recomputed from scratch in blocks 10..14.
    let table_c = blocks(10, 4);
    let fresh = m
        .forward(&mut kv, &[SeqChunk { tokens: &b, start_pos: 0, block_table: &table_c, logits: LogitsFor::All }])
        .unwrap();
    for (i, (r, f)) in reused.iter().zip(&fresh[shared..]).enumerate() {
        assert!(bits(r) == bits(f), "{dtype} KV, suffix position {i}: prefix reuse differs from recompute");
    }
    // And the next decode step agrees too.
    let t = [argmax(reused.last().unwrap())];
    let pos = b.len();
    let r = m
        .forward(&mut kv, &[SeqChunk { tokens: &t, start_pos: pos, block_table: &table_b, logits: LogitsFor::Last }])
        .unwrap();
    let f = m
        .forward(&mut kv, &[SeqChunk { tokens: &t, start_pos: pos, block_table: &table_c, logits: LogitsFor::Last }])
        .unwrap();
    assert!(bits(&r[0]) == bits(&f[0]));
}
