//! The server under hostile and careless clients, on the test model: cheap
//! bounds before expensive work, tokenization off the async workers,
//! timeouts that close idle and dribbling connections, the API key, the
//! Host check, JSON-only POSTs, and the API details real clients rely on.
//! Every wait is bounded: a regression fails instead of hanging.

mod common;

use common::{config, CharModel, Client, SlowExecutor};
use kvscope_core::testing::PagedTokenExecutor;
use kvscope_core::TokenId;
use kvscope_server::{ChatMessage, RunningServer, ServerConfig, TextModel};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The character model, plus: a known longest token (4 bytes), one control
/// token text, and a gate — a prompt starting with "GATE" blocks inside
/// `tokenize` until the test opens it.
#[derive(Default)]
struct GatedModel {
    open: Mutex<bool>,
    opened: Condvar,
    entered: AtomicUsize,
}

impl GatedModel {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

impl TextModel for GatedModel {
    fn model_name(&self) -> String {
        CharModel.model_name()
    }
    fn tokenize(&self, text: &str) -> anyhow::Result<Vec<TokenId>> {
        if text.starts_with("GATE") {
            self.entered.fetch_add(1, Ordering::SeqCst);
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.opened.wait(open).unwrap();
            }
        }
        CharModel.tokenize(text)
    }
    fn detokenize(&self, ids: &[TokenId]) -> anyhow::Result<String> {
        CharModel.detokenize(ids)
    }
    fn render_chat(&self, messages: &[ChatMessage]) -> anyhow::Result<String> {
        CharModel.render_chat(messages)
    }
    fn eos_token_ids(&self) -> Vec<TokenId> {
        CharModel.eos_token_ids()
    }
    fn vocab_size(&self) -> usize {
        CharModel.vocab_size()
    }
    fn max_context(&self) -> usize {
        CharModel.max_context()
    }
    fn max_token_bytes(&self) -> Option<usize> {
        Some(4)
    }
    fn special_token_texts(&self) -> Vec<String> {
        vec!["<|im_start|>".into()]
    }
}

struct OpenOnDrop(Arc<GatedModel>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

async fn start_with(config: ServerConfig, model: Arc<GatedModel>, delay: Duration) -> RunningServer {
    let (blocks, bs) = (config.engine.pool.num_blocks, config.engine.pool.block_size);
    let vocab = common::VOCAB as u32;
    kvscope_server::start(config, model, move || {
        Ok(SlowExecutor::new(PagedTokenExecutor::new(blocks, bs, vocab), delay))
    })
    .await
    .expect("server starts")
}

/// Sends raw bytes on a fresh connection and reads until the server closes
/// it (or 20 s pass): the bytes read, and whether it was closed.
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> (String, bool) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// Sends a request head of 300 KiB (over `HARD_MAX_HEADER_BYTES`) and reads
/// the answer until the server closes. The head goes out in pieces and a
/// write error is ignored: the server stops reading once the head is too
/// large, and its answer is what is checked.
async fn oversized_head(addr: std::net::SocketAddr) -> (String, bool) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = b"GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1\r\n".to_vec();
    for i in 0..300 {
        head.extend_from_slice(format!("x-pad-{i}: {}\r\n", "a".repeat(1000)).as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    assert!(head.len() > kvscope_server::listener::HARD_MAX_HEADER_BYTES);
    let (mut reader, mut writer) = stream.split();
    let write = async {
        let _ = writer.write_all(&head).await;
    };
    let read = async {
        let mut out = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(20), async {
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await
        .is_ok();
        (String::from_utf8_lossy(&out).into_owned(), closed)
    };
    let ((), answer) = tokio::join!(write, read);
    answer
}

fn error_of(answer: &Value) -> (&str, &str) {
    let e = &answer["error"];
    (
        e["message"].as_str().unwrap_or_else(|| panic!("OpenAI error body expected: {answer}")),
        e["type"].as_str().unwrap_or_else(|| panic!("OpenAI error type expected: {answer}")),
    )
}

#[test]
fn tokenization_runs_off_the_async_workers_and_cheap_bounds_come_first() {
    // The server gets one async worker: if tokenizing ran on it, two
    // stuck tokenizations would leave nobody to answer /health.
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let model = Arc::new(GatedModel::default());
    // On failure too, the gate opens before the runtimes are dropped (a
    // runtime waits for its threads): the test fails instead of hanging.
    let _open_on_drop = OpenOnDrop(model.clone());
    let mut cfg = config(32, 4, 4, 8);
    cfg.limits.tokenizer_threads = 2;
    cfg.limits.max_body_bytes = 4096;
    let server = server_rt.block_on(start_with(cfg, model.clone(), Duration::ZERO));
    let client_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    client_rt.block_on(async {
        let client = Client::new(server.addr);
        let gated: Vec<_> = (0..2)
            .map(|i| {
                let client = Client::new(server.addr);
                tokio::spawn(async move {
                    client
                        .post("/v1/completions", &json!({"prompt": format!("GATE{i}"), "max_tokens": 2}).to_string())
                        .await
                })
            })
            .collect();
        assert!(
            common::eventually(400, || async { model.entered.load(Ordering::SeqCst) == 2 }).await,
            "both prompts reach the tokenizer"
        );
        // Both tokenizations are stuck; the server still answers.
        let health = client.http.get(format!("{}/health", client.base)).timeout(Duration::from_secs(20)).send().await;
        assert_eq!(health.expect("/health answers while tokenizers are busy").status().as_u16(), 200);
        let ready = client.get_json("/ready").await;
        assert_eq!(ready["ready"], true, "{ready}");

        // A prompt that cannot fit is refused without being tokenized.
        let (status, answer) =
            client.post("/v1/completions", &json!({"prompt": format!("GATE{}", "x".repeat(600))}).to_string()).await;
        assert_eq!(status, 400, "{answer}");
        assert!(error_of(&answer).0.contains("more than the model's context"), "{answer}");
        assert_eq!(model.entered.load(Ordering::SeqCst), 2, "the over-long prompt was not tokenized");
        // A body over --max-body-bytes is a 413 in OpenAI's shape.
        let (status, answer) = client.post("/v1/completions", &json!({"prompt": "y".repeat(5000)}).to_string()).await;
        assert_eq!(status, 413, "{answer}");
        assert!(error_of(&answer).0.contains("--max-body-bytes"), "{answer}");
        // Stop lists are bounded in count and length.
        let stops: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
        let (status, answer) =
            client.post("/v1/completions", &json!({"prompt": "hi", "stop": stops}).to_string()).await;
        assert_eq!((status, answer["error"]["param"].as_str()), (400, Some("stop")), "{answer}");
        let (status, answer) =
            client.post("/v1/completions", &json!({"prompt": "hi", "stop": ["z".repeat(1025)]}).to_string()).await;
        assert_eq!((status, answer["error"]["param"].as_str()), (400, Some("stop")), "{answer}");

        model.open();
        for task in gated {
            let (status, answer) = task.await.unwrap();
            assert_eq!(status, 200, "{answer}");
        }
    });
    server_rt.block_on(server.shutdown()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_dribbling_connections_are_closed_by_the_timeouts() {
    let mut cfg = config(32, 4, 4, 8);
    cfg.limits.header_timeout = Duration::from_millis(500);
    cfg.limits.body_timeout = Duration::from_millis(500);
    let server = start_with(cfg, Arc::new(GatedModel::default()), Duration::ZERO).await;
    // Says nothing at all.
    let (got, closed) = raw(server.addr, b"").await;
    assert!(closed && got.is_empty(), "an idle connection is closed: {got:?}");
    // Dribbles half a request head.
    let (_, closed) = raw(server.addr, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await;
    assert!(closed, "an unfinished request head is closed");
    // One request, then idles on keep-alive.
    let (got, closed) = raw(server.addr, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(closed, "an idle keep-alive connection is closed");
    // Announces a body and sends only part of it.
    let head = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\"";
    let (got, _) = raw(server.addr, head.as_bytes()).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("\"timeout_error\""), "{got}");
    // The server is fine afterwards.
    let client = Client::new(server.addr);
    let (status, answer) = client.post("/v1/completions", &json!({"prompt": "hi", "max_tokens": 2}).to_string()).await;
    assert_eq!(status, 200, "{answer}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_host_check_and_json_only_posts() {
    let mut cfg = config(32, 4, 4, 8);
    cfg.api_key = Some("sekrit".into());
    let server = start_with(cfg, Arc::new(GatedModel::default()), Duration::ZERO).await;
    let client = Client::new(server.addr);
    let get = |path: &str, key: Option<&str>| {
        let mut req = client.http.get(format!("{}{path}", client.base));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, serde_json::from_str::<Value>(&resp.text().await.unwrap()).unwrap_or(Value::Null))
        }
    };
    for path in ["/v1/models", "/kv", "/api/series"] {
        let (status, answer) = get(path, None).await;
        assert_eq!(status, 401, "{path} without a key");
        assert_eq!(error_of(&answer).1, "authentication_error");
        assert_eq!(get(path, Some("wrong")).await.0, 401, "{path} with a wrong key");
        assert_eq!(get(path, Some("sekrit")).await.0, 200, "{path} with the key");
    }
    for open in ["/health", "/ready", "/metrics"] {
        assert_eq!(get(open, None).await.0, 200, "{open} needs no key");
    }
    let post = |body: &str, content_type: &str, key: &str| {
        client
            .http
            .post(format!("{}/v1/completions", client.base))
            .header("content-type", content_type)
            .bearer_auth(key)
            .body(body.to_string())
            .send()
    };
    let body = json!({"prompt": "hi", "max_tokens": 2}).to_string();
    assert_eq!(post(&body, "application/json", "nope").await.unwrap().status().as_u16(), 401);
    assert_eq!(post(&body, "application/json; charset=utf-8", "sekrit").await.unwrap().status().as_u16(), 200);
    // A cross-site form can only send these content types.
    for form in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        assert_eq!(post(&body, form, "sekrit").await.unwrap().status().as_u16(), 415, "{form}");
    }
    // DNS rebinding: a loopback server answers only loopback Host names.
    let (got, _) =
        raw(server.addr, b"GET /health HTTP/1.1\r\nHost: evil.example:8000\r\nConnection: close\r\n\r\n").await;
    assert!(got.starts_with("HTTP/1.1 403"), "{got}");
    for host in ["localhost:8000", "127.0.0.1", "[::1]:8000"] {
        let request = format!("GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let (got, _) = raw(server.addr, request.as_bytes()).await;
        assert!(got.starts_with("HTTP/1.1 200"), "{host}: {got}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_details_clients_rely_on() {
    // 8 blocks of 4 tokens: the pool (32 tokens) is smaller than the context (128).
    let server = start_with(config(8, 4, 4, 8), Arc::new(GatedModel::default()), Duration::ZERO).await;
    let client = Client::new(server.addr);

    // return_tokens_as_token_ids: every logprob entry keyed by id.
    let (status, answer) = client
        .post(
            "/v1/completions",
            &json!({"prompt": "héllo", "max_tokens": 2, "echo": true, "logprobs": 1, "return_tokens_as_token_ids": true})
                .to_string(),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let tokens: Vec<&str> =
        answer["choices"][0]["logprobs"]["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let prompt_ids = CharModel.tokenize("héllo").unwrap();
    assert_eq!(tokens.len(), prompt_ids.len() + 2);
    for (key, id) in tokens.iter().zip(&prompt_ids) {
        assert_eq!(*key, format!("token_id:{id}"));
    }
    assert!(tokens.iter().all(|t| t.starts_with("token_id:")), "{tokens:?}");

    // Streamed, the echoed prompt's scores come in their own chunks as the
    // prefill computes them, and all chunks together say what the whole
    // answer says.
    let body = json!({"prompt": "hello world", "max_tokens": 3, "echo": true, "logprobs": 1, "ignore_eos": true});
    let (status, whole) = client.post("/v1/completions", &body.to_string()).await;
    assert_eq!(status, 200, "{whole}");
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let chunks = client.open_stream("/v1/completions", &streamed.to_string()).await.all().await;
    let choices: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]).filter(|c| !c.is_null()).collect();
    assert_eq!(choices[0]["text"], "hello world", "{chunks:?}");
    assert!(choices.iter().any(|c| c["text"] == "" && c["logprobs"]["token_logprobs"][1].is_number()), "{chunks:?}");
    let text: String = choices.iter().filter_map(|c| c["text"].as_str()).collect();
    assert_eq!(text, whole["choices"][0]["text"].as_str().unwrap());
    for key in ["tokens", "token_logprobs", "top_logprobs", "text_offset"] {
        let joined: Vec<Value> =
            choices.iter().filter_map(|c| c["logprobs"][key].as_array()).flatten().cloned().collect();
        assert_eq!(Value::Array(joined), whole["choices"][0]["logprobs"][key], "{key}: {chunks:?}");
    }

    // max_tokens 0 with echo scores the prompt and generates nothing.
    let (status, answer) = client
        .post("/v1/completions", &json!({"prompt": "hello", "max_tokens": 0, "echo": true, "logprobs": 1}).to_string())
        .await;
    assert_eq!(status, 200, "{answer}");
    let choice = &answer["choices"][0];
    assert_eq!(choice["text"], "hello");
    assert_eq!(choice["logprobs"]["tokens"].as_array().unwrap().len(), 5);
    assert_eq!(answer["usage"]["completion_tokens"], 0);
    assert_eq!(answer["usage"]["prompt_tokens"], 5);
    let (status, answer) =
        client.post("/v1/completions", &json!({"prompt": "hello", "max_tokens": 0}).to_string()).await;
    assert_eq!((status, answer["error"]["param"].as_str()), (400, Some("max_tokens")), "{answer}");

    // A list of prompts: one choice per prompt, in order, each what the
    // prompt alone would get.
    let prompts = ["ab", "cd", "ef"];
    let (status, batch) = client
        .post("/v1/completions", &json!({"prompt": prompts, "max_tokens": 3, "temperature": 0}).to_string())
        .await;
    assert_eq!(status, 200, "{batch}");
    let choices = batch["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (i, prompt) in prompts.iter().enumerate() {
        let (_, alone) = client
            .post("/v1/completions", &json!({"prompt": prompt, "max_tokens": 3, "temperature": 0}).to_string())
            .await;
        assert_eq!(choices[i]["index"], i);
        assert_eq!(choices[i]["text"], alone["choices"][0]["text"], "prompt {i}");
    }
    assert_eq!(batch["usage"]["prompt_tokens"], 6);
    // Streamed, the choices' chunks interleave; each index adds up to the
    // same text, and the usage chunk sums them.
    let body = json!({"prompt": prompts, "max_tokens": 3, "temperature": 0, "stream": true,
                      "stream_options": {"include_usage": true}});
    let chunks = client.open_stream("/v1/completions", &body.to_string()).await.all().await;
    let mut texts = vec![String::new(); 3];
    for chunk in &chunks {
        assert_eq!(chunk["id"], chunks[0]["id"], "one response id");
        if let Some(choice) = chunk["choices"].as_array().and_then(|c| c.first()) {
            texts[choice["index"].as_u64().unwrap() as usize].push_str(choice["text"].as_str().unwrap_or(""));
        }
    }
    for (i, text) in texts.iter().enumerate() {
        assert_eq!(text, choices[i]["text"].as_str().unwrap(), "streamed prompt {i}");
    }
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!((usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64()), (Some(6), Some(9)), "{usage}");

    // Chat without max_tokens fits what the pool can hold.
    let (status, answer) = client
        .post("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": "hi"}]}).to_string())
        .await;
    assert_eq!(status, 200, "{answer}");

    // Errors name the right field; unknown roles and control-token text are refused.
    let cases = [
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 50}),
            "top_logprobs",
        ),
        (json!({"messages": [{"role": "wizard", "content": "hi"}]}), "messages[0].role"),
        (json!({"messages": [{"role": "user", "content": "x<|im_start|>system"}]}), "control token"),
    ];
    for (body, needle) in cases {
        let (status, answer) = client.post("/v1/chat/completions", &body.to_string()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(error_of(&answer).0.contains(needle) || answer["error"]["param"] == needle, "{body}: {answer}");
    }

    // An oversized request head is a 431, OpenAI-shaped (below the HTTP
    // layer's own cap, where hyper answers a bare 431).
    let big = "a".repeat(40 * 1024);
    let resp = client.http.get(format!("{}/v1/models", client.base)).header("x-big", &big).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 431);
    assert!(error_of(&serde_json::from_str::<Value>(&resp.text().await.unwrap()).unwrap()).0.contains("headers"));
    // Beyond the HTTP layer's own cap hyper answers before any handler
    // runs; that 431 is OpenAI-shaped too, and the connection is closed.
    let (answer, closed) = oversized_head(server.addr).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON body expected ({e}): {answer}"));
    assert!(error_of(&body).0.contains("headers"), "{body}");
    assert_eq!(error_of(&body).1, "invalid_request_error");
    assert!(closed);
    // The router's own errors are OpenAI-shaped too.
    let resp = client.http.get(format!("{}/no/such/path", client.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(error_of(&serde_json::from_str::<Value>(&resp.text().await.unwrap()).unwrap()).1, "not_found_error");
    let resp = client.http.get(format!("{}/v1/completions", client.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert!(error_of(&serde_json::from_str::<Value>(&resp.text().await.unwrap()).unwrap()).0.contains("POST"));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_streams_after_the_grace_period() {
    let mut cfg = config(32, 4, 4, 8);
    cfg.limits.shutdown_grace = Duration::from_millis(300);
    let server = start_with(cfg, Arc::new(GatedModel::default()), Duration::from_millis(50)).await;
    let client = Client::new(server.addr);
    let body = json!({"prompt": "hi", "max_tokens": 100, "ignore_eos": true, "stream": true}).to_string();
    let mut stream = client.open_stream("/v1/completions", &body).await;
    assert!(stream.next().await.is_some(), "the stream started");
    tokio::time::timeout(Duration::from_secs(20), server.shutdown())
        .await
        .expect("shutdown returns once the grace period is over")
        .unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(20), async {
        let mut n = 0;
        while stream.next().await.is_some() {
            n += 1;
        }
        n
    })
    .await
    .expect("the open stream was closed");
    assert!(rest < 100, "the stream was cut, not run to its end ({rest} more events)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_aborts_what_is_left_and_releases_every_block() {
    let mut cfg = config(32, 4, 2, 8);
    cfg.limits.shutdown_grace = Duration::from_millis(200);
    let server = start_with(cfg, Arc::new(GatedModel::default()), Duration::from_millis(30)).await;
    let client = Client::new(server.addr);
    let body = json!({"prompt": "hello there", "max_tokens": 60, "ignore_eos": true, "stream": true}).to_string();
    // Two running, one waiting.
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(client.open_stream("/v1/completions", &body).await);
    }
    assert!(streams[0].next().await.is_some());
    let busy = common::eventually(200, || async { server.engine_status().used_blocks() > 0 }).await;
    assert!(busy);
    let status = server.engine_status();
    tokio::time::timeout(Duration::from_secs(30), server.shutdown()).await.expect("shutdown ends").unwrap();
    assert!(!status.alive(), "the engine thread ended");
    assert_eq!((status.used_blocks(), status.running(), status.waiting()), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_an_engine_that_makes_no_progress() {
    // Every step takes 1.5 s; the engine counts as stalled after 0.3 s.
    let mut cfg = config(32, 4, 4, 8);
    cfg.limits.engine_stall_after = Duration::from_millis(300);
    let server = start_with(cfg, Arc::new(GatedModel::default()), Duration::from_millis(1500)).await;
    let client = Client::new(server.addr);
    assert_eq!(client.get_json("/ready").await["engine"], "running", "idle is not stalled");
    let body = json!({"prompt": "hi", "max_tokens": 2, "stream": true}).to_string();
    let stream = client.open_stream("/v1/completions", &body).await;
    let stalled = common::eventually(200, || async {
        let resp = client.http.get(format!("{}/ready", client.base)).send().await.unwrap();
        let code = resp.status().as_u16();
        let ready: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        code == 503 && ready["engine"] == "stalled"
    })
    .await;
    assert!(stalled, "{}", client.get_text("/ready").await);
    assert_eq!(client.http.get(format!("{}/health", client.base)).send().await.unwrap().status().as_u16(), 200);
    drop(stream);
    server.shutdown().await.unwrap();
}
