//! The logs: one structured line per request that ends in the engine and
//! one per refusal, through `tracing` (captured here by a global subscriber
//! writing into a buffer; this test binary holds no other test).

mod common;

use common::{config, start, Client};
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_per_request_and_per_refusal() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("kvscope_server=info")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    // 10 ms a step: a stop string is seen long before max_tokens.
    let server = start(config(32, 4, 4, 8), Duration::from_millis(10)).await;
    let client = Client::new(server.addr);
    let (status, answer) = client
        .post("/v1/completions", &json!({"prompt": "hello", "max_tokens": 3, "ignore_eos": true}).to_string())
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = client.post("/v1/completions", &json!({"prompt": "hi", "top_p": 0}).to_string()).await;
    assert_eq!(status, 400);
    // Ended by a stop string: the engine aborts it, the log says "stop" as
    // the client was told. The stop is the first character the same greedy
    // request produces without one (request 2); request 3 stops on it.
    let body = json!({"prompt": "stop me", "max_tokens": 40, "ignore_eos": true, "temperature": 0});
    let (_, free) = client.post("/v1/completions", &body.to_string()).await;
    let first = free["choices"][0]["text"].as_str().unwrap().chars().next().expect("some text").to_string();
    let mut stopped = body.clone();
    stopped["stop"] = json!([first]);
    let (status, answer) = client.post("/v1/completions", &stopped.to_string()).await;
    assert_eq!((status, answer["choices"][0]["finish_reason"].as_str()), (200, Some("stop")), "{answer}");
    let ended = common::eventually(100, || async { captured.text().contains("request ended") }).await;
    let logs = captured.text();
    assert!(ended, "{logs}");
    let line = logs.lines().find(|l| l.contains("request ended")).unwrap();
    for field in [
        "request_id=1",
        "prompt_tokens=5",
        "completion_tokens=3",
        "queue_wait_s=",
        "ttft_s=",
        "finish_reason=\"length\"",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    let stop_logged = common::eventually(100, || async { captured.text().contains("request_id=3 ") }).await;
    let logs = captured.text();
    assert!(stop_logged, "{logs}");
    let line = logs.lines().find(|l| l.contains("request_id=3 ")).unwrap();
    assert!(line.contains("finish_reason=\"stop\""), "{line}");
    let refused = logs.lines().find(|l| l.contains("request refused")).unwrap_or_else(|| panic!("{logs}"));
    assert!(refused.contains("status=400") && refused.contains("top_p"), "{refused}");
    server.shutdown().await.unwrap();
}
