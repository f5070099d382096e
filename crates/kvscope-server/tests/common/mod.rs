//! A tiny character-level model and a client for the end-to-end tests.
#![allow(dead_code)]

use kvscope_core::testing::PagedTokenExecutor;
use kvscope_core::{
    BatchOutput, EngineConfig, Executor, ExecutorError, PoolConfig, ScheduledBatch, SchedulerConfig, TokenId,
};
use kvscope_server::{ChatMessage, ServerConfig, TextModel};
use serde_json::Value;
use std::time::Duration;

/// Ids 0..95 are printable ASCII, 96 is "é", 97 is "中" (multi-byte
/// characters as whole tokens), 98 is the end-of-sequence token.
pub struct CharModel;

pub const EOS: TokenId = 98;
pub const VOCAB: usize = 99;

impl TextModel for CharModel {
    fn model_name(&self) -> String {
        "char-test".into()
    }
    fn tokenize(&self, text: &str) -> anyhow::Result<Vec<TokenId>> {
        Ok(text
            .chars()
            .map(|c| match c {
                ' '..='~' => c as u32 - 32,
                'é' => 96,
                '中' => 97,
                _ => '?' as u32 - 32,
            })
            .collect())
    }
    fn detokenize(&self, ids: &[TokenId]) -> anyhow::Result<String> {
        Ok(ids
            .iter()
            .filter_map(|&id| match id {
                0..=94 => Some(char::from_u32(id + 32).unwrap()),
                96 => Some('é'),
                97 => Some('中'),
                _ => None,
            })
            .collect())
    }
    fn render_chat(&self, messages: &[ChatMessage]) -> anyhow::Result<String> {
        let mut s = String::new();
        for m in messages {
            s.push_str(&format!("<{}>{}\n", m.role, m.content));
        }
        s.push_str("<assistant>");
        Ok(s)
    }
    fn eos_token_ids(&self) -> Vec<TokenId> {
        vec![EOS]
    }
    fn vocab_size(&self) -> usize {
        VOCAB
    }
    fn max_context(&self) -> usize {
        128
    }
}

/// The paged test executor, slowed down per step so that a client can
/// disconnect while its request is still generating.
pub struct SlowExecutor {
    inner: PagedTokenExecutor,
    delay: Duration,
}

impl SlowExecutor {
    pub fn new(inner: PagedTokenExecutor, delay: Duration) -> Self {
        SlowExecutor { inner, delay }
    }
}

impl Executor for SlowExecutor {
    fn execute(&mut self, batch: &ScheduledBatch) -> Result<BatchOutput, ExecutorError> {
        std::thread::sleep(self.delay);
        self.inner.execute(batch)
    }
}

pub fn config(num_blocks: usize, block_size: usize, max_running: usize, max_waiting: usize) -> ServerConfig {
    ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        max_waiting,
        served_model_name: None,
        limits: kvscope_server::limits::Limits::default(),
        api_key: None,
        kv_events: None,
        engine: EngineConfig {
            scheduler: SchedulerConfig {
                max_running,
                max_batched_tokens: 256,
                max_model_len: 128,
                long_prefill_token_threshold: 0,
                max_num_partial_prefills: 0,
            },
            pool: PoolConfig { num_blocks, block_size, enable_prefix_caching: true, bytes_per_block: 0 },
            vocab_size: Some(VOCAB),
        },
    }
}

pub async fn start(config: ServerConfig, delay: Duration) -> kvscope_server::RunningServer {
    let (blocks, bs) = (config.engine.pool.num_blocks, config.engine.pool.block_size);
    kvscope_server::start(config, std::sync::Arc::new(CharModel), move || {
        Ok(SlowExecutor { inner: PagedTokenExecutor::new(blocks, bs, VOCAB as u32), delay })
    })
    .await
    .expect("server starts")
}

pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
}

impl Client {
    pub fn new(addr: std::net::SocketAddr) -> Self {
        Client {
            base: format!("http://{addr}"),
            http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
        }
    }
    async fn send_post(&self, path: &str, body: &str) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }
    pub async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let resp = self.send_post(path, body).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
    pub async fn get_text(&self, path: &str) -> String {
        self.http.get(format!("{}{path}", self.base)).send().await.unwrap().text().await.unwrap()
    }
    pub async fn get_json(&self, path: &str) -> Value {
        serde_json::from_str(&self.get_text(path).await).unwrap()
    }
    pub async fn open_stream(&self, path: &str, body: &str) -> SseReader {
        let resp = self.send_post(path, body).await;
        assert_eq!(resp.status().as_u16(), 200, "stream should open");
        SseReader { resp, buf: String::new() }
    }
    /// A metric's value (the first sample whose name and labels start so).
    pub async fn metric(&self, query: &str) -> f64 {
        let text = self.get_text("/metrics").await;
        metric_in(&text, query).unwrap_or_else(|| panic!("no metric {query} in\n{text}"))
    }
    /// A labelled counter that has not been touched yet reads 0.
    pub async fn counter(&self, query: &str) -> f64 {
        metric_in(&self.get_text("/metrics").await, query).unwrap_or(0.0)
    }
}

/// A sample's value: `query` is a metric name, optionally followed by
/// `{label="value"` to pick one labelled sample.
pub fn metric_in(text: &str, query: &str) -> Option<f64> {
    let (name, label) = match query.split_once('{') {
        Some((n, l)) => (n, Some(l)),
        None => (query, None),
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.starts_with(name) && l[name.len()..].starts_with([' ', '{']) && label.is_none_or(|lab| l.contains(lab))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub struct SseReader {
    resp: reqwest::Response,
    buf: String,
}

impl SseReader {
    /// The next `data:` payload, or `None` at the end of the stream.
    pub async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..end + 2).collect();
                let data: Vec<&str> = event.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
                if data.is_empty() {
                    continue; // keep-alive comment or named event without data
                }
                return Some(data.join("\n"));
            }
            let chunk = self.resp.chunk().await.ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    /// Every JSON chunk until `[DONE]`.
    pub async fn all(mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(data) = self.next().await {
            if data == "[DONE]" {
                return out;
            }
            out.push(serde_json::from_str(&data).unwrap());
        }
        panic!("stream ended without [DONE]; got {out:?}");
    }
}

/// Polls until `check` holds, at most `tries` times.
pub async fn eventually<F, Fut>(tries: usize, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..tries {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// An SSE reader over any response (for `/events`).
pub struct SseReaderExt;

impl SseReaderExt {
    pub fn from(resp: reqwest::Response) -> SseReader {
        SseReader { resp, buf: String::new() }
    }
}
