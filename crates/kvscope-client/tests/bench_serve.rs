//! `bench serve` against a live test server.

// The server's own test fixture (a character-level model on the paged
// test executor): one fixture for every test that needs a live server.
#[path = "../../kvscope-server/tests/common/mod.rs"]
mod common;

use common::*;
use kvscope_client::{run_bench_serve, run_bench_serve_with, BenchArgs, BenchPrompt, BenchRequest, Endpoint};
use std::time::Duration;

#[test]
fn bench_serve_measures_every_request() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(start(config(64, 4, 4, 64), Duration::from_millis(1)));
    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("result.json");
    let args = BenchArgs {
        base_url: format!("http://{}", server.addr),
        num_prompts: 12,
        random_input_len: 20,
        random_output_len: 6,
        request_rate: 200.0,
        burstiness: 0.5,
        max_concurrency: Some(3),
        ignore_eos: true,
        result_file: Some(result.clone()),
        ..Default::default()
    };
    let report = run_bench_serve(&args).unwrap();
    assert_eq!(report.completed, 12, "{:?}", report.errors);
    assert_eq!(report.failed, 0);
    assert_eq!(report.total_input_tokens, 12 * 20);
    assert_eq!(report.total_output_tokens, 12 * 6);
    assert!(report.ttft_ms.mean > 0.0 && report.e2el_ms.p99 >= report.e2el_ms.median);
    assert!(report.table().contains("Mean TTFT (ms):"));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    for key in
        ["mean_ttft_ms", "p99_tpot_ms", "median_itl_ms", "p90_e2el_ms", "request_throughput", "output_throughput"]
    {
        assert!(json.get(key).is_some(), "{key} missing");
    }

    // Chat with given text prompts, everything at once.
    let chat = BenchArgs {
        endpoint: Endpoint::Chat,
        request_rate: f64::INFINITY,
        max_concurrency: None,
        result_file: None,
        ..args
    };
    let requests =
        (0..4).map(|i| BenchRequest { prompt: BenchPrompt::Text(format!("question {i}")), output_len: 5 }).collect();
    let report = run_bench_serve_with(&chat, Some(requests)).unwrap();
    assert_eq!(report.completed, 4, "{:?}", report.errors);
    assert_eq!(report.total_output_tokens, 20);
    rt.block_on(server.shutdown()).unwrap();
}

#[test]
fn bench_serve_sends_the_api_key() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cfg = config(64, 4, 4, 64);
    cfg.api_key = Some("sekrit".into());
    let server = rt.block_on(start(cfg, Duration::from_millis(0)));
    let args = BenchArgs {
        base_url: format!("http://{}", server.addr),
        num_prompts: 2,
        random_input_len: 5,
        random_output_len: 2,
        ..Default::default()
    };
    let without = run_bench_serve(&args).unwrap();
    assert_eq!(without.failed, 2, "no key: refused");
    let with = run_bench_serve(&BenchArgs { api_key: Some("sekrit".into()), ..args }).unwrap();
    assert_eq!((with.completed, with.failed), (2, 0), "{:?}", with.errors);
    rt.block_on(server.shutdown()).unwrap();
}
