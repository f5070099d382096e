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

/// Whether `e` is a keep-alive connection the server had closed: hyper's
/// "connection closed before message completed", with no response begun.
fn stale_connection(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_incomplete_message) {
            return true;
        }
        source = cause.source();
    }
    false
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
        let mut builder = reqwest::Client::builder().default_headers(headers);
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
        let post = || self.http.post(&url).header("content-type", "application/json").body(request.body().to_string());
        let resp = match post().send().await {
            // The server closed the pooled connection as the request went
            // out (llama-server's cpp-httplib does): it never read it, so
            // sending it once more on a new connection is safe. The time
            // lost is in this request's latencies.
            Err(e) if stale_connection(&e) => post().send().await,
            other => other,
        };
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
    use std::io::{Read, Write};

    /// Reads one HTTP request (head and Content-Length body) from `s`.
    fn read_request(s: &mut std::net::TcpStream) {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).to_lowercase();
        let len = head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
        s.read_exact(&mut vec![0u8; len]).unwrap();
    }

    /// A server that answers one request on a connection and closes it
    /// when the next arrives there, as llama-server's cpp-httplib did: the
    /// second request is sent again on a new connection, not failed.
    #[test]
    fn a_request_on_a_connection_the_server_closed_is_sent_again() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sse = "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: [DONE]\n\n";
        let answer =
            format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n{sse}", sse.len());
        let server = std::thread::spawn(move || {
            let (mut first, _) = listener.accept().unwrap();
            read_request(&mut first);
            first.write_all(answer.as_bytes()).unwrap();
            read_request(&mut first); // the client reuses the connection...
            drop(first); // ...which closes unanswered
            let (mut second, _) = listener.accept().unwrap();
            read_request(&mut second);
            second.write_all(answer.as_bytes()).unwrap();
        });
        let client = CompletionClient::new(&format!("http://127.0.0.1:{port}"), None).unwrap();
        let request = CompletionRequest {
            endpoint: Endpoint::Completions,
            model: "m".into(),
            prompt: BenchPrompt::Text("hi".into()),
            max_tokens: 1,
            ignore_eos: false,
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let timings = runtime.block_on(async { [client.send(&request).await, client.send(&request).await] });
        for t in timings {
            assert_eq!(t.error, None);
            assert!(t.ttft.is_some(), "the text chunk arrived");
        }
        // Joined only once the client succeeded: without the retry the
        // server would wait for a second connection forever.
        server.join().unwrap();
    }

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
