//! The endpoints the SGLang Model Gateway asks a worker for, with the
//! fields it reads (see src/worker_api.rs), and `POST /flush_cache`.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_load_carry_the_fields_the_gateway_reads() {
    let server = start(config(64, 4, 4, 8), Duration::from_millis(0)).await;
    let client = Client::new(server.addr);

    for path in ["/server_info", "/get_server_info"] {
        let info = client.get_json(path).await;
        assert_eq!(info["served_model_name"], "char-test", "{path}: {info}");
        assert_eq!(info["model_id"], "char-test");
        assert_eq!(info["max_total_tokens"], 64 * 4, "the KV pool in tokens");
        assert_eq!(info["kv_cache"]["num_blocks"], 64);
        assert_eq!(info["kv_cache"]["block_size"], 4);
        assert_eq!(info["max_running_requests"], 4);
        assert_eq!(info["context_length"], 128);
        assert_eq!(info["dp_size"], 1);
    }
    for path in ["/model_info", "/get_model_info"] {
        let info = client.get_json(path).await;
        assert_eq!(info["is_generation"], true, "{path}: {info}");
        assert_eq!(info["max_model_len"], 128);
    }
    let load = client.get_json("/get_load").await;
    assert_eq!(load, json!([{"dp_rank": 0, "num_reqs": 0, "num_waiting_reqs": 0, "num_tokens": 0}]));
    let health = client.http.get(format!("{}/health_generate", client.base)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    // vLLM's /version, which the lab's --target report names the engine by.
    assert_eq!(client.get_json("/version").await, json!({"version": env!("CARGO_PKG_VERSION")}));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_cache_frees_cached_blocks_and_is_refused_while_requests_run() {
    let server = start(config(64, 4, 4, 8), Duration::from_millis(5)).await;
    let client = Client::new(server.addr);
    let body = json!({"prompt": "a shared system prompt, long enough for blocks", "max_tokens": 2}).to_string();
    let (status, _) = client.post("/v1/completions", &body).await;
    assert_eq!(status, 200);
    let cached = client.get_json("/kv").await["cached_free_blocks"].as_u64().unwrap();
    assert!(cached > 0, "the finished prompt's full blocks stay cached");

    // As the gateway sends it: POST, no body, no Content-Type.
    let flushed = client.http.post(format!("{}/flush_cache", client.base)).send().await.unwrap();
    assert_eq!(flushed.status().as_u16(), 200);
    let flushed: serde_json::Value = serde_json::from_str(&flushed.text().await.unwrap()).unwrap();
    assert_eq!(flushed["freed_blocks"], cached, "{flushed}");
    let kv = client.get_json("/kv").await;
    assert_eq!(kv["cached_free_blocks"], 0);
    assert_eq!(kv["free_blocks"], 64);

    // While a request runs, a plain flush is refused; a forced one frees
    // only what no request holds.
    let long = json!({"prompt": "occupy the engine", "max_tokens": 100, "ignore_eos": true, "stream": true});
    let mut running = client.open_stream("/v1/completions", &long.to_string()).await;
    running.next().await.expect("the request runs");
    let (status, refused) = client.post("/flush_cache", "{}").await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("force=true"), "{refused}");
    let used = client.get_json("/kv").await["used_blocks"].as_u64().unwrap();
    let (status, forced) = client.post("/flush_cache?force=true", "{}").await;
    assert_eq!(status, 200, "{forced}");
    assert_eq!(forced["live_requests"], 1);
    assert!(client.get_json("/kv").await["used_blocks"].as_u64().unwrap() >= used, "held blocks stay held");
    drop(running);
    let idle = eventually(200, || async { client.get_json("/kv").await["used_blocks"] == 0 }).await;
    assert!(idle, "the aborted request releases everything");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_cache_needs_the_api_key_when_one_is_set() {
    let mut cfg = config(16, 4, 2, 4);
    cfg.api_key = Some("secret".into());
    let server = start(cfg, Duration::from_millis(0)).await;
    let client = Client::new(server.addr);
    let url = format!("{}/flush_cache", client.base);
    assert_eq!(client.http.post(&url).send().await.unwrap().status().as_u16(), 401);
    let ok = client.http.post(&url).bearer_auth("secret").send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    // A POST with a body still has to be JSON.
    let form = client.http.post(&url).bearer_auth("secret").body("a=1").send().await.unwrap();
    assert_eq!(form.status().as_u16(), 415);
    server.shutdown().await.unwrap();
}
