//! A server with no real model, for looking at the web view: a paged test
//! executor slowed to a few milliseconds a step, a character-level
//! tokenizer, and a background load of overlapping requests (some sharing
//! a prefix) so the pool grid, the queues and the curves move.
//!
//! `cargo run -p kvscope-server --example demo -- 8011` then open
//! http://127.0.0.1:8011/

use kvscope_core::testing::PagedTokenExecutor;
use kvscope_core::{
    BatchOutput, EngineConfig, Executor, ExecutorError, PoolConfig, ScheduledBatch, SchedulerConfig, TokenId,
};
use kvscope_server::{ChatMessage, ServerConfig, TextModel};
use std::sync::Arc;
use std::time::Duration;

struct Chars;

impl TextModel for Chars {
    fn model_name(&self) -> String {
        "demo".into()
    }
    fn tokenize(&self, text: &str) -> anyhow::Result<Vec<TokenId>> {
        Ok(text.bytes().map(|b| u32::from(b.clamp(32, 126) - 32)).collect())
    }
    fn detokenize(&self, ids: &[TokenId]) -> anyhow::Result<String> {
        Ok(ids.iter().filter(|&&i| i < 95).map(|&i| char::from_u32(i + 32).unwrap()).collect())
    }
    fn render_chat(&self, messages: &[ChatMessage]) -> anyhow::Result<String> {
        Ok(messages.iter().map(|m| format!("{}: {}\n", m.role, m.content)).collect())
    }
    fn eos_token_ids(&self) -> Vec<TokenId> {
        Vec::new()
    }
    fn vocab_size(&self) -> usize {
        95
    }
    fn max_context(&self) -> usize {
        512
    }
}

struct Slow(PagedTokenExecutor);

impl Executor for Slow {
    fn execute(&mut self, batch: &ScheduledBatch) -> Result<BatchOutput, ExecutorError> {
        std::thread::sleep(Duration::from_millis(8));
        self.0.execute(batch)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::args().nth(1).map(|p| p.parse()).transpose()?.unwrap_or(8011);
    let (blocks, block_size) = (192, 8);
    let config = ServerConfig {
        addr: ([127, 0, 0, 1], port).into(),
        max_waiting: 64,
        served_model_name: None,
        limits: kvscope_server::limits::Limits::default(),
        api_key: None,
        kv_events: None,
        engine: EngineConfig {
            scheduler: SchedulerConfig {
                max_running: 8,
                max_batched_tokens: 256,
                max_model_len: 512,
                long_prefill_token_threshold: 0,
                max_num_partial_prefills: 0,
            },
            pool: PoolConfig { num_blocks: blocks, block_size, enable_prefix_caching: true, bytes_per_block: 0 },
            vocab_size: Some(95),
        },
    };
    let server = kvscope_server::start(config, Arc::new(Chars), move || {
        Ok(Slow(PagedTokenExecutor::new(blocks, block_size, 95)))
    })
    .await?;
    let base = format!("http://{}", server.addr);
    eprintln!("demo server on {base}/");
    let client = reqwest::Client::new();
    for worker in 0..12u64 {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            let system = "You are a helpful assistant that explains the KV cache in detail. ".repeat(2);
            for i in 0u64.. {
                let prompt =
                    format!("{system}Question {worker}-{i}: {}", "why? ".repeat(((worker * 7 + i * 3) % 40) as usize));
                let body = serde_json::json!({"prompt": prompt, "max_tokens": 40 + (worker * 13 + i * 5) % 120, "ignore_eos": true});
                let _ = client
                    .post(format!("{base}/v1/completions"))
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await;
            }
        });
    }
    server.wait().await
}
