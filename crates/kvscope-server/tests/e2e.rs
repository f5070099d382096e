//! The server end to end on a loopback port: concurrent streaming and
//! non-streaming requests, clients that hang up mid-stream, the metrics
//! and the pool afterwards, and every kind of bad request.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn text_of_stream(chunks: &[Value], chat: bool) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .filter_map(|ch| if chat { ch["delta"]["content"].as_str() } else { ch["text"].as_str() })
        .collect()
}

async fn assert_pool_idle(client: &Client) {
    let settled = eventually(200, || async {
        client.metric("kvscope:num_requests_running").await == 0.0
            && client.metric("kvscope:num_requests_waiting").await == 0.0
    })
    .await;
    assert!(settled, "running and waiting return to zero");
    let kv = client.get_json("/kv").await;
    assert_eq!(kv["requests"].as_array().unwrap().len(), 0, "no live request: {kv}");
    assert_eq!(kv["used_blocks"], 0);
    for block in kv["blocks"].as_array().unwrap() {
        assert_eq!(block["ref_count"], 0, "block leaked: {block}");
        assert!(block["holders"].as_array().unwrap().is_empty());
        assert_ne!(block["state"], "held");
    }
    let cached = kv["cached_free_blocks"].as_f64().unwrap();
    assert_eq!(client.metric("kvscope:kv_cache_usage_perc").await, 0.0, "usage falls back to zero held blocks");
    assert_eq!(
        client.metric("kvscope:kv_cache_cached_free_blocks").await,
        cached,
        "and the cached level is what /kv shows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_streams_aborts_metrics_and_no_leak() {
    let server = start(config(64, 4, 4, 64), Duration::from_millis(5)).await;
    let client = std::sync::Arc::new(Client::new(server.addr));

    assert_eq!(client.http.get(format!("{}/health", client.base)).send().await.unwrap().status().as_u16(), 200);
    let models = client.get_json("/v1/models").await;
    assert_eq!(models["data"][0]["id"], "char-test");
    assert!(client.get_text("/").await.contains("kvscope"));

    let mut tasks = Vec::new();
    // Non-streaming completions against streaming ones with the same prompt:
    // the same tokens must come out as the same text.
    for i in 0..4 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"model": "char-test", "prompt": format!("hello number {i}"), "max_tokens": 12, "ignore_eos": true, "seed": i, "unknown_field": [1, 2]});
            let (status, full) = c.post("/v1/completions", &body.to_string()).await;
            assert_eq!(status, 200, "{full}");
            let mut sbody = body.clone();
            sbody["stream"] = json!(true);
            sbody["stream_options"] = json!({"include_usage": true});
            let chunks = c.open_stream("/v1/completions", &sbody.to_string()).await.all().await;
            assert_eq!(full["choices"][0]["text"].as_str().unwrap(), text_of_stream(&chunks, false));
            assert_eq!(full["choices"][0]["finish_reason"], "length");
            assert_eq!(full["usage"]["completion_tokens"], 12);
            assert_eq!(full["usage"]["prompt_tokens"], format!("hello number {i}").len());
            let usage = &chunks.last().unwrap()["usage"];
            assert_eq!(usage["completion_tokens"], 12, "the usage chunk closes the stream");
            assert!(chunks.last().unwrap()["choices"].as_array().unwrap().is_empty());
        }));
    }
    // Streaming chat with usage.
    for i in 0..3 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"messages": [{"role": "user", "content": format!("hi {i}")}], "max_tokens": 10, "stream": true,
                              "stream_options": {"include_usage": true}, "ignore_eos": true});
            let chunks = c.open_stream("/v1/chat/completions", &body.to_string()).await.all().await;
            assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
            assert_eq!(chunks[0]["object"], "chat.completion.chunk");
            let finish = chunks.iter().filter_map(|c| c["choices"].get(0)).filter_map(|c| c["finish_reason"].as_str()).next_back();
            assert_eq!(finish, Some("length"));
            assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 10);
            let (status, full) = c.post("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": format!("hi {i}")}], "max_tokens": 10, "ignore_eos": true}).to_string()).await;
            assert_eq!(status, 200);
            assert_eq!(full["choices"][0]["message"]["content"].as_str().unwrap(), text_of_stream(&chunks, true));
        }));
    }
    // Clients that hang up after three chunks of a long answer.
    for i in 0..3 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let body =
                json!({"prompt": format!("a long story {i}"), "max_tokens": 100, "ignore_eos": true, "stream": true});
            let mut reader = c.open_stream("/v1/completions", &body.to_string()).await;
            for _ in 0..3 {
                let data = reader.next().await.expect("a chunk");
                assert_ne!(data, "[DONE]");
            }
            drop(reader);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let aborted = eventually(200, || async {
        client.counter("kvscope:request_success_total{finished_reason=\"abort\"").await == 3.0
    })
    .await;
    assert!(aborted, "the three hung-up streams were aborted:\n{}", client.get_text("/metrics").await);
    assert_pool_idle(&client).await;

    // Prefix caching: the same long prompt twice, one after the other.
    let prompt = "The KV cache is state: it is created by prefill and read by decode.";
    let body = json!({"prompt": prompt, "max_tokens": 2});
    let (_, first) = client.post("/v1/completions", &body.to_string()).await;
    let (_, second) = client.post("/v1/completions", &body.to_string()).await;
    assert_eq!(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let cached = second["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
    assert!(cached >= 60, "the second request reuses the first one's full blocks, got {cached}");
    assert!(client.metric("kvscope:prefix_cache_hits_total").await >= cached as f64);
    assert!(client.metric("kvscope:prefix_cache_queries_total").await >= 2.0 * prompt.len() as f64);

    let metrics = client.get_text("/metrics").await;
    for name in [
        "kvscope:num_requests_running",
        "kvscope:num_requests_waiting",
        "kvscope:kv_cache_usage_perc",
        "kvscope:kv_cache_token_usage_perc",
        "kvscope:prefix_cache_queries_total",
        "kvscope:prefix_cache_hits_total",
        "kvscope:num_preemptions_total",
        "kvscope:evicted_blocks_total",
        "kvscope:prompt_tokens_total",
        "kvscope:generation_tokens_total",
        "kvscope:time_to_first_token_seconds_count",
        "kvscope:request_queue_time_seconds_count",
        "kvscope:time_per_output_token_seconds_count",
        "kvscope:e2e_request_latency_seconds_count",
    ] {
        assert!(metric_in(&metrics, name).is_some(), "{name} missing from\n{metrics}");
    }
    let info = metrics.lines().find(|l| l.starts_with("kvscope:cache_config_info{")).expect("cache_config_info");
    assert!(info.contains("block_size=") && info.contains("bytes_per_block=") && info.ends_with(" 1"), "{info}");
    // 8 + 6 finished requests before the prefix pair, each counted once.
    assert_eq!(metric_in(&metrics, "kvscope:e2e_request_latency_seconds_count"), Some(16.0));
    assert_eq!(metric_in(&metrics, "kvscope:time_to_first_token_seconds_count"), Some(19.0));
    assert_pool_idle(&client).await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_errors() {
    let server = start(config(16, 4, 1, 2), Duration::from_millis(0)).await;
    let client = Client::new(server.addr);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("/v1/completions", "{not json".into(), 400, "not valid JSON"),
        ("/v1/completions", "".into(), 400, "empty"),
        ("/v1/completions", json!({"prompt": "hi", "max_tokens": "ten"}).to_string(), 400, "invalid"),
        ("/v1/completions", json!({"max_tokens": 3}).to_string(), 400, "prompt"),
        ("/v1/completions", json!({"prompt": "hi", "max_tokens": 0}).to_string(), 400, "max_tokens"),
        ("/v1/completions", json!({"prompt": "hi", "temperature": -1}).to_string(), 400, "temperature"),
        ("/v1/completions", json!({"prompt": "hi", "top_p": 0}).to_string(), 400, "top_p"),
        ("/v1/completions", json!({"prompt": "hi", "n": 2}).to_string(), 400, "n must be 1"),
        ("/v1/completions", json!({"prompt": "hi", "logprobs": 50}).to_string(), 400, "logprobs must be at most 20"),
        ("/v1/completions", json!({"prompt": ""}).to_string(), 400, "empty"),
        ("/v1/completions", json!({"prompt": [1, 2, 500]}).to_string(), 400, "outside the vocabulary"),
        ("/v1/completions", json!({"prompt": "x".repeat(200)}).to_string(), 400, "exceeds the model's context"),
        // 16 blocks of 4 tokens: 80 tokens fit the context but never the pool.
        ("/v1/completions", json!({"prompt": "x".repeat(80), "max_tokens": 4}).to_string(), 400, "could never run"),
        ("/v1/completions", json!({"prompt": "hi", "model": "gpt-9"}).to_string(), 404, "does not exist"),
        ("/v1/chat/completions", json!({"messages": []}).to_string(), 400, "messages"),
        ("/v1/chat/completions", json!({"messages": [{"role": "user"}]}).to_string(), 400, "content"),
        ("/v1/chat/completions", json!({"messages": "hi"}).to_string(), 400, "invalid"),
    ];
    for (path, body, status, needle) in cases {
        let (got, answer) = client.post(path, &body).await;
        assert_eq!(got, status, "{path} {body}: {answer}");
        let message =
            answer["error"]["message"].as_str().unwrap_or_else(|| panic!("OpenAI error body for {body}: {answer}"));
        assert!(message.contains(needle), "{body}: message {message:?} should mention {needle:?}");
        assert!(answer["error"]["type"].is_string());
    }
    // The server is still healthy and idle afterwards.
    assert_eq!(client.metric("kvscope:num_requests_waiting").await, 0.0);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_waiting_queue_answers_503_and_recovers() {
    // One request runs at a time and two may wait.
    let server = start(config(32, 4, 1, 2), Duration::from_millis(5)).await;
    let client = Client::new(server.addr);
    let long = json!({"prompt": "occupy", "max_tokens": 100, "ignore_eos": true, "stream": true}).to_string();
    let mut running = client.open_stream("/v1/completions", &long).await;
    running.next().await.expect("the first request runs");
    let w1 = client.open_stream("/v1/completions", &long).await;
    let w2 = client.open_stream("/v1/completions", &long).await;
    let queued =
        eventually(200, || async { client.get_json("/kv").await["waiting"].as_array().unwrap().len() == 2 }).await;
    assert!(queued, "two requests wait behind the running one");
    let (status, answer) =
        client.post("/v1/completions", &json!({"prompt": "one more", "max_tokens": 2}).to_string()).await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("overloaded"));
    // Readiness says so too (published by the engine thread after its
    // current step), without waiting for a step itself; liveness is fine.
    let unready = eventually(200, || async {
        let ready = client.http.get(format!("{}/ready", client.base)).send().await.unwrap();
        let code = ready.status().as_u16();
        let ready: serde_json::Value = serde_json::from_str(&ready.text().await.unwrap()).unwrap();
        code == 503 && ready["ready"] == false && ready["waiting"] == 2
    })
    .await;
    assert!(unready, "{}", client.get_text("/ready").await);
    assert_eq!(client.http.get(format!("{}/health", client.base)).send().await.unwrap().status().as_u16(), 200);
    // Waiting requests whose clients leave are removed from the queue too.
    drop((running, w1, w2));
    let drained = eventually(200, || async {
        let kv = client.get_json("/kv").await;
        kv["requests"].as_array().unwrap().is_empty() && kv["used_blocks"] == 0
    })
    .await;
    assert!(drained, "hung-up requests release everything: {}", client.get_json("/kv").await);
    let (status, _) = client.post("/v1/completions", &json!({"prompt": "one more", "max_tokens": 2}).to_string()).await;
    assert_eq!(status, 200, "the server takes requests again");
    assert_eq!(client.get_json("/ready").await["ready"], true);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_live_in_the_jsonl_schema_and_stop_strings_cut() {
    let server = start(config(32, 4, 4, 8), Duration::from_millis(0)).await;
    let client = Client::new(server.addr);
    let resp = client.http.get(format!("{}/events", client.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // Let the subscription register before the request arrives.
    let subscribed = eventually(100, || async { true }).await;
    assert!(subscribed);
    let (status, full) = client
        .post("/v1/completions", &json!({"prompt": "abc", "max_tokens": 8, "ignore_eos": true}).to_string())
        .await;
    assert_eq!(status, 200);
    let text = full["choices"][0]["text"].as_str().unwrap().to_string();
    let mut reader = common::SseReaderExt::from(resp);
    let mut kinds = Vec::new();
    while let Some(data) = reader.next().await {
        let v: Value = serde_json::from_str(&data).unwrap();
        for field in ["event", "t", "step", "site"] {
            assert!(v.get(field).is_some(), "{field} missing in {v}");
        }
        let kind = v["event"].as_str().unwrap().to_string();
        kinds.push(kind.clone());
        if kind == "finished" {
            assert_eq!(v["reason"], "length");
            assert_eq!(v["output_tokens"], 8);
            break;
        }
    }
    assert_eq!(kinds.first().map(String::as_str), Some("arrived"));
    assert!(kinds.contains(&"admitted".to_string()) && kinds.contains(&"released".to_string()), "{kinds:?}");

    // A stop string taken from the known answer cuts the text before it.
    if let Some(cut) = text.char_indices().nth(3).map(|(i, _)| i) {
        let stop: String = text[cut..].chars().take(2).collect();
        let expected = &text[..text.find(&stop).unwrap()];
        let (status, stopped) = client
            .post(
                "/v1/completions",
                &json!({"prompt": "abc", "max_tokens": 8, "ignore_eos": true, "stop": [stop]}).to_string(),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(stopped["choices"][0]["text"], expected);
        assert_eq!(stopped["choices"][0]["finish_reason"], "stop");
    }
    // Echo puts the prompt in front; logprobs are reported per token.
    let (status, echoed) = client
        .post(
            "/v1/completions",
            &json!({"prompt": "abc", "max_tokens": 8, "ignore_eos": true, "echo": true, "logprobs": 2}).to_string(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(echoed["choices"][0]["text"].as_str().unwrap(), format!("abc{text}"));
    assert_eq!(echoed["choices"][0]["logprobs"]["tokens"].as_array().unwrap().len(), 3 + 8);
    let eventually_idle = eventually(100, || async { client.get_json("/kv").await["used_blocks"] == 0 }).await;
    assert!(eventually_idle);
    // Graceful shutdown waits for open streams.
    drop(reader);
    server.shutdown().await.unwrap();
}
