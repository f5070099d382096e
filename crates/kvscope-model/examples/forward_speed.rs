//! A quick throughput figure for the forward pass (not a benchmark suite):
//! `cargo run --release -p kvscope-model --example forward_speed [MODEL [KV_DTYPE]]`.
//! Prints prefill tokens/s for one 512-token prompt and decode tokens/s for
//! 1 and 16 sequences with 512 tokens of context each.

use kvscope_core::ids::BlockId;
use kvscope_model::kv_storage::PagedKvCache;
use kvscope_model::llama::{LlamaModel, LogitsFor, SeqChunk};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = kvscope_model::fetch::resolve_model(std::env::args().nth(1).map(std::path::PathBuf::from).as_deref())?;
    let g = kvscope_model::gguf::Gguf::open(&path)?;
    let t = Instant::now();
    let m = LlamaModel::load(&g)?;
    println!(
        "isa {:?}, {} threads, load {:.2} s, weights {:.0} MB",
        kvscope_model::kernels::isa(),
        rayon::current_num_threads(),
        t.elapsed().as_secs_f64(),
        m.weight_bytes() as f64 / 1e6
    );

    let (bs, prompt_len, seqs, steps) = (16usize, 512usize, 16usize, 16usize);
    let per_seq = (prompt_len + steps).div_ceil(bs);
    let dtype: kvscope_core::KvDtype = std::env::args().nth(2).as_deref().unwrap_or("f32").parse()?;
    let mut kv = PagedKvCache::new(m.config(), dtype, per_seq * seqs, bs)?;
    let tables: Vec<Vec<BlockId>> =
        (0..seqs).map(|s| (0..per_seq).map(|b| BlockId((s * per_seq + b) as u32)).collect()).collect();
    let prompt: Vec<u32> = (0..prompt_len as u32).map(|i| 100 + (i * 7919) % 40000).collect();

    let t = Instant::now();
    m.forward(
        &mut kv,
        &[SeqChunk { tokens: &prompt, start_pos: 0, block_table: &tables[0], logits: LogitsFor::Last }],
    )?;
    let dt = t.elapsed().as_secs_f64();
    println!("prefill {prompt_len} tokens: {:.2} s = {:.0} tok/s", dt, prompt_len as f64 / dt);
    // Give the other sequences the same 512-token context (untimed).
    for table in &tables[1..] {
        m.forward(&mut kv, &[SeqChunk { tokens: &prompt, start_pos: 0, block_table: table, logits: LogitsFor::Last }])?;
    }

    for n in [1usize, 16] {
        let tok = [42u32];
        let t = Instant::now();
        for s in 0..steps / 2 {
            let chunks: Vec<SeqChunk> = tables[..n]
                .iter()
                .map(|table| SeqChunk {
                    tokens: &tok,
                    start_pos: prompt_len + s,
                    block_table: table,
                    logits: LogitsFor::Last,
                })
                .collect();
            m.forward(&mut kv, &chunks)?;
        }
        let dt = t.elapsed().as_secs_f64();
        println!(
            "decode {n:2} seqs (context {prompt_len}): {:.1} steps/s, {:.1} tok/s",
            (steps / 2) as f64 / dt,
            (n * steps / 2) as f64 / dt
        );
    }
    Ok(())
}
