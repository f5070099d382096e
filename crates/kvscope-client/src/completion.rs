//! One streaming completion against an OpenAI-compatible server, timed on
//! the client's clock: when it was sent, the first token, every gap
//! between tokens, the end, and the server's `usage` counts.

use kvscope_core::TokenId;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Which OpenAI route a request goes to.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/completions`
    Completions,
    /// `/v1/chat/completions`
    Chat,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Completions => "/v1/completions",
            Endpoint::Chat => "/v1/chat/completions",
        }
    }
}

/// A request's prompt: text, or token ids (completions only).
#[derive(Clone, Debug, PartialEq)]
pub enum BenchPrompt {
    Text(String),
    Tokens(Vec<TokenId>),
}

/// One greedy streaming completion to send.
#[derive(Clone, Debug, PartialEq)]
pub struct CompletionRequest {
    pub endpoint: Endpoint,
    /// The served model's name (`model` in the body).
    pub model: String,
    pub prompt: BenchPrompt,
    /// `max_tokens` sent with the request.
    pub max_tokens: usize,
    /// Generate exactly `max_tokens` (sends `ignore_eos`).
    pub ignore_eos: bool,
}

impl CompletionRequest {
    /// The JSON body: greedy, streamed, with the usage chunk asked for.
    /// Token ids cannot go to the chat route ([`Self::check`]).
    fn body(&self) -> Value {
        let mut body = json!({
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": 0.0,
            "stream": true,
            "stream_options": {"include_usage": true},
            "ignore_eos": self.ignore_eos,
        });
        match (&self.prompt, self.endpoint) {
            (BenchPrompt::Text(t), Endpoint::Completions) => body["prompt"] = json!(t),
            (BenchPrompt::Tokens(ids), _) => body["prompt"] = json!(ids),
            (BenchPrompt::Text(t), Endpoint::Chat) => body["messages"] = json!([{"role": "user", "content": t}]),
        }
        body
    }

    /// Refuses what the route cannot take (token ids on the chat route).
    pub fn check(&self) -> anyhow::Result<()> {
        if self.endpoint == Endpoint::Chat && matches!(self.prompt, BenchPrompt::Tokens(_)) {
            anyhow::bail!("the chat endpoint takes text prompts; use --endpoint completions for token-id prompts");
        }
        Ok(())
    }
}

/// What one request measured, in seconds on the client's clock.
#[derive(Clone, Debug)]
pub struct RequestTiming {
    /// When the request left the client.
    pub sent: Instant,
    /// Why it failed (HTTP status, a broken stream, an error chunk).
    pub error: Option<String>,
    /// `usage.prompt_tokens` of the last usage chunk (0 if none came).
    pub prompt_tokens: usize,
    /// `usage.completion_tokens` of the last usage chunk (0 if none came).
    pub output_tokens: usize,
    /// Sent → the first chunk with text.
    pub ttft: Option<f64>,
    /// Gaps between consecutive chunks with text.
    pub itl: Vec<f64>,
    /// Sent → the end of the stream.
    pub e2e: f64,
}

impl RequestTiming {
    fn new(sent: Instant) -> Self {
        RequestTiming { sent, error: None, prompt_tokens: 0, output_tokens: 0, ttft: None, itl: Vec::new(), e2e: 0.0 }
    }

    /// A request that never got an answer.
    pub fn failed(sent: Instant, error: String) -> Self {
        RequestTiming { error: Some(error), ..RequestTiming::new(sent) }
    }

    fn fail(mut self, error: String) -> Self {
        self.error = Some(error);
        self
    }
}

/// What `/v1/models` says about the first model served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelCard {
    pub id: Option<String>,
    pub vocab_size: Option<usize>,
    /// `owned_by`: which engine serves it (vLLM says `vllm`, kvscope `kvscope`).
    pub owned_by: Option<String>,
    pub max_model_len: Option<usize>,
}

/// An error with its causes (reqwest's own message hides them: "error
/// sending request for url …" is a refused connection, a reset or a
/// stale keep-alive connection, said only by its source).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl ModelCard {
    /// One entry of `/v1/models`' `data`. The vocabulary and the context
    /// are vLLM's and kvscope's `vocab_size` / `max_model_len`, else
    /// llama-server's `meta.n_vocab` / `meta.n_ctx` (its context per slot;
    /// read on a 0c1e570 build), so that llama-server gets token-id prompts.
    pub fn from_json(card: &Value) -> ModelCard {
        let number = |a: &Value, b: &Value| a.as_u64().or_else(|| b.as_u64()).map(|v| v as usize);
        let meta = &card["meta"];
        ModelCard {
            id: card["id"].as_str().map(str::to_string),
            vocab_size: number(&card["vocab_size"], &meta["n_vocab"]),
            owned_by: card["owned_by"].as_str().map(str::to_string),
            max_model_len: number(&card["max_model_len"], &meta["n_ctx"]),
        }
    }
}

/// An HTTP client for one server (cheap to clone: the connection pool is shared).
#[derive(Clone, Debug)]
pub struct CompletionClient {
    http: reqwest::Client,
    base: String,
}

impl CompletionClient {
    /// A client for the server at `base_url`, sending `Authorization:
    /// Bearer KEY` when a (non-empty) key is given.
    pub fn new(base_url: &str, api_key: Option<&str>) -> anyhow::Result<Self> {
        Self::with_timeout(base_url, api_key, None)
    }

    /// As [`Self::new`], with every request (connect, stream and all)
    /// given up after `timeout`: a target that stops answering becomes a
    /// failed request, not a hang (the lab's `--target`).
    pub fn with_timeout(base_url: &str, api_key: Option<&str>, timeout: Option<Duration>) -> anyhow::Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = api_key.filter(|k| !k.is_empty()) {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| anyhow::anyhow!("--api-key holds characters a header cannot carry"))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        // A fresh connection per request: llama-server (cpp-httplib)
        // closes pooled connections under a client that reuses them,
        // failing the request with "connection closed before message
        // completed" (2 of 40 sweep requests on 0c1e570, also with a 2 s
        // idle limit). A loopback connect adds tens of microseconds to a
        // TTFT; a remote one, its round trip (the report's TTFT is the
        // client's, connect included).
        let mut builder = reqwest::Client::builder().default_headers(headers).pool_max_idle_per_host(0);
        if let Some(timeout) = timeout {
            builder = builder.timeout(timeout).connect_timeout(timeout.min(Duration::from_secs(5)));
        }
        let http = builder.build()?;
        Ok(CompletionClient { http, base: base_url.trim_end_matches('/').to_string() })
    }

    /// The server's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET path` (e.g. `/metrics`, `/version`): the status and the body
    /// as text; an unreachable server is an error naming the URL.
    pub async fn get_text(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let url = format!("{}{path}", self.base);
        let resp = self.http.get(&url).send().await.map_err(|e| anyhow::anyhow!("cannot reach {url}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| anyhow::anyhow!("reading {url}: {e}"))?;
        Ok((status, text))
    }

    /// The server's first model (`/v1/models`, `data[0]`).
    pub async fn first_model(&self) -> anyhow::Result<ModelCard> {
        let base = &self.base;
        let resp = self
            .http
            .get(format!("{base}/v1/models"))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the server at {base}: {e}"))?;
        let models: Value = serde_json::from_str(&resp.text().await?)
            .map_err(|e| anyhow::anyhow!("{base}/v1/models is not JSON: {e}"))?;
        Ok(ModelCard::from_json(&models["data"][0]))
    }

    /// Sends one request and reads its stream to the end. Never fails:
    /// what went wrong is the timing's `error`.
    pub async fn send(&self, request: &CompletionRequest) -> RequestTiming {
        let url = format!("{}{}", self.base, request.endpoint.path());
        let sent = Instant::now();
        let resp = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(request.body().to_string())
            .send()
            .await;
        let timing = RequestTiming::new(sent);
        match resp {
            Err(e) => timing.fail(with_causes(&e)),
            Ok(resp) if !resp.status().is_success() => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                timing.fail(format!("{status}: {text}"))
            }
            Ok(resp) => read_stream(resp, timing).await,
        }
    }
}

/// Times every chunk with text as it arrives, until `[DONE]`.
async fn read_stream(mut resp: reqwest::Response, mut out: RequestTiming) -> RequestTiming {
    let mut buf = String::new();
    let mut last = None::<Instant>;
    let mut done = false;
    while !done {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => return out.fail(with_causes(&e)),
        };
        let now = Instant::now();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            for data in event.lines().filter_map(|l| l.strip_prefix("data: ")) {
                if data == "[DONE]" {
                    done = true;
                    continue;
                }
                let Ok(v) = serde_json::from_str::<Value>(data) else { continue };
                if let Some(e) = v.get("error") {
                    return out.fail(e.to_string());
                }
                if read_chunk(&v, &mut out) {
                    match last {
                        None => out.ttft = Some((now - out.sent).as_secs_f64()),
                        Some(prev) => out.itl.push((now - prev).as_secs_f64()),
                    }
                    last = Some(now);
                }
            }
        }
    }
    out.e2e = out.sent.elapsed().as_secs_f64();
    if !done {
        return out.fail("the stream ended without [DONE]".into());
    }
    out
}

/// Takes a chunk's usage counts; true when the chunk carries text.
fn read_chunk(v: &Value, out: &mut RequestTiming) -> bool {
    if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
        out.prompt_tokens = u["prompt_tokens"].as_u64().unwrap_or(0) as usize;
        out.output_tokens = u["completion_tokens"].as_u64().unwrap_or(0) as usize;
    }
    let choice = &v["choices"][0];
    let text = choice["text"].as_str().or_else(|| choice["delta"]["content"].as_str()).unwrap_or("");
    !text.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_card_reads_vllm_and_llama_server_shapes() {
        let vllm = serde_json::json!({"id": "Qwen/Qwen3-0.6B", "owned_by": "vllm", "max_model_len": 40960});
        let card = ModelCard::from_json(&vllm);
        assert_eq!((card.vocab_size, card.max_model_len), (None, Some(40960)));
        // llama-server (0c1e570) as it answered, trimmed.
        let llama = serde_json::json!({
            "id": "/models/SmolLM2-135M-Instruct.Q4_1.gguf",
            "owned_by": "llamacpp",
            "meta": {"vocab_type": 2, "n_vocab": 49152, "n_ctx": 2048, "n_ctx_train": 8192}
        });
        let card = ModelCard::from_json(&llama);
        assert_eq!(card.vocab_size, Some(49152));
        assert_eq!(card.max_model_len, Some(2048), "the slot's context, not the training one");
        assert_eq!(card.owned_by.as_deref(), Some("llamacpp"));
        let kvscope =
            serde_json::json!({"id": "m", "vocab_size": 49152, "max_model_len": 8192, "meta": {"n_vocab": 1}});
        assert_eq!(ModelCard::from_json(&kvscope).vocab_size, Some(49152), "the engine's own field first");
    }
}
