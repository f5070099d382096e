//! `kvscope lab --target`: the lab against a running engine, end to end.
//!
//! The real `kvscope serve` (the default model, KV events on) is started,
//! `lab --quick --target --kv-events` runs against it, and the report is
//! read back: the capacity table, the KV-event block statistics, the
//! source tags, and the figures that must agree with the local lab's
//! workload exactly (requests, prompt tokens sent and counted by the
//! engine, output tokens: deterministic, so the run-to-run noise allowed is
//! zero) and the realized prefix reuse of the shared-prefix case on a
//! fresh server. Also: a target with nothing listening fails within
//! seconds with a clear message and a partial report; a target answering
//! errors and garbage metrics gets a partial report; an engine shaped like
//! llama-server (no vocabulary, blocks or queue times) gets its gaps filled
//! and listed; knobs only the engine can change are refused naming the
//! engine's flag. The target is also read as a replica behind a load
//! balancer (`--replica-metrics`, beside a replica that is down). Every
//! process and wait is bounded.

mod common;

use common::{free_port, serve_with_kv_events, ServeWithEvents};
use kvscope_experiment::workload::{shared_prefix_case, standard_cases, Scale};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn kvscope() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kvscope"))
}

/// Runs `cmd` to completion or kills it at `limit` (then panics).
fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawns");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("timed out after {limit:?}; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn quick_lab_on_a_kvscope_serve_target_with_kv_events() {
    let ServeWithEvents { server: _server, http, endpoint, replay_endpoint } =
        serve_with_kv_events(512, 16, Stdio::null());
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("target-lab");
    // The target read again as a replica behind a load balancer, beside a
    // replica that is down: the per-replica table must agree with the
    // target's own counters, and the dead one be a named gap.
    let replicas = format!("http://127.0.0.1:{http},http://127.0.0.1:{}", free_port());
    let out = run_with_timeout(
        kvscope()
            .args(["lab", "--quick", "--lang", "en", "--target", &format!("http://127.0.0.1:{http}")])
            .args(["--kv-events", &endpoint, "--kv-events-replay", &replay_endpoint, "--request-timeout-s", "120"])
            .args(["--replica-metrics", &replicas])
            .arg("--out")
            .arg(&out_dir),
        Duration::from_secs(400),
    );
    assert!(out.status.success(), "lab --target failed:\n{}", stderr(&out));
    let report = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    let json: Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("target.json")).unwrap()).unwrap();
    check_tags(&report);
    check_against_the_local_workload(&json);
    check_kv_events(&json, &report, &out_dir);
    check_replicas(&json, &report, &out_dir);
    let csv = std::fs::read_to_string(out_dir.join("capacity.csv")).unwrap();
    assert!(csv.starts_with("case,prompt_len_tokens,"), "{csv}");
    assert_eq!(csv.lines().count(), 1 + 4, "{csv}");
    let metrics = std::fs::read_to_string(out_dir.join("metrics.csv")).unwrap();
    assert!(metrics.starts_with("t_s,kvscope:num_requests_running,"), "{metrics}");
    assert!(metrics.lines().count() > 2, "the poller kept samples: {metrics}");
}

fn check_tags(report: &str) {
    for tag in [
        "[client-measured]",
        "engine metric kvscope:num_requests_running",
        "engine metric kvscope:request_queue_time_seconds",
        "engine metric kvscope:prefix_cache_hits_total",
        "engine metric kvscope:cache_config_info{num_gpu_blocks} × kvscope:cache_config_info{block_size}",
        "[estimated]",
        "[KV events]",
        "inferred",
        "## What this engine does not expose",
        "no capacity claim is made",
        "Engine: kvscope",
        "sent as token ids (token-exact)",
    ] {
        assert!(report.contains(tag), "report.md lacks {tag:?}:\n{report}");
    }
    for case in ["short_ctx", "long_ctx", "mixed_ctx", "shared_prefix"] {
        assert!(report.contains(&format!("| {case} | ")), "no row for {case}:\n{report}");
    }
}

/// The remote run sent the local lab's workload (same cases, scale and
/// seed from the experiment layer), and the engine counted exactly those
/// tokens: zero noise on these deterministic figures.
fn check_against_the_local_workload(json: &Value) {
    let mut local = standard_cases(Scale::Quick, 0, 2026);
    local.push(shared_prefix_case(Scale::Quick, 2026));
    let cases = json["cases"].as_array().unwrap();
    assert_eq!(cases.len(), local.len());
    let sum = |v: &Value| v.as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).sum::<u64>();
    for (remote, spec) in cases.iter().zip(&local) {
        assert_eq!(remote["case"], spec.name.as_str());
        assert_eq!(remote["requests"].as_u64().unwrap() as usize, spec.num_requests);
        assert_eq!(remote["failed"], 0, "{remote}");
        assert_eq!(sum(&remote["engine_prompt_tokens"]), sum(&remote["sent_prompt_tokens"]), "{}", spec.name);
        assert_eq!(sum(&remote["output_tokens"]), sum(&remote["max_tokens"]), "{}", spec.name);
        assert!(remote["ttft"]["n"].as_u64().unwrap() as usize == spec.num_requests);
    }
    // Realized prefix reuse on a fresh server: every shared-prefix request
    // after the first finds the 128-token prefix (8 blocks of 16) cached,
    // as in the local lab. Measured: 7 × 128 in each of 6 runs (noise 0);
    // one request's prefix is allowed, for a request that would arrive
    // before the first one's prefill is committed on a loaded machine.
    let shared = &cases[3];
    let hits = shared["deltas"]["PrefixHits"].as_f64().unwrap();
    assert!((6.0 * 128.0..=7.0 * 128.0).contains(&hits), "{shared}");
}

/// `--replica-metrics`: replica 0 is the target itself, so its counters'
/// deltas per case are the target's (nothing else runs on it between the
/// scrapes); replica 1 is down: a named gap with blank cells.
fn check_replicas(json: &Value, report: &str, out_dir: &std::path::Path) {
    let replicas = &json["replicas"];
    let gap = replicas["replicas"][1]["gap"].as_str().unwrap_or_default();
    assert!(gap.contains("is the replica up?"), "{replicas}");
    let cases = json["cases"].as_array().unwrap();
    let rows = replicas["cases"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * cases.len(), "a row per case and replica");
    for case in cases {
        let own = rows.iter().find(|r| r["case"] == case["case"] && r["replica"] == 0).unwrap();
        assert_eq!(own["deltas"]["PrefixHits"], case["deltas"]["PrefixHits"], "{}", case["case"]);
        assert_eq!(own["deltas"]["PromptTokens"], case["deltas"]["PromptTokens"], "{}", case["case"]);
    }
    assert!(report.contains("## KV state per replica") && report.contains("gap: replica 1"), "{report}");
    let csv = std::fs::read_to_string(out_dir.join("replicas.csv")).unwrap();
    assert!(csv.lines().next().unwrap().contains("prefix_hits_tokens [kvscope:prefix_cache_hits_total]"), "{csv}");
    assert_eq!(csv.lines().count(), 1 + rows.len(), "{csv}");
}

fn check_kv_events(json: &Value, report: &str, out_dir: &std::path::Path) {
    let events = &json["kv_events"];
    assert!(events["batches"].as_u64().unwrap() > 0, "{events}");
    assert_eq!(events["block_size"], 16);
    assert_eq!(events["malformed"], 0);
    let blocks = &json["case_blocks"][3];
    assert_eq!(blocks["requests_bound"], 8, "{blocks}");
    assert_eq!(blocks["shared_blocks"], 8, "the prefix's 8 blocks bound to several requests: {blocks}");
    assert!(report.contains("| shared_prefix | "), "{report}");
    assert!(report.contains("```mermaid\nstateDiagram-v2"), "{report}");
    let mmd = std::fs::read_to_string(out_dir.join("kv_lifecycle.mmd")).unwrap();
    assert!(mmd.starts_with("stateDiagram-v2") && mmd.contains("[*] --> Cached : BlockStored ×"), "{mmd}");
}

#[test]
fn a_target_with_nothing_listening_fails_within_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = run_with_timeout(
        kvscope()
            .args(["lab", "--quick", "--target", &format!("http://127.0.0.1:{}", free_port())])
            .arg("--out")
            .arg(tmp.path().join("down")),
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not answer /v1/models"), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(60));
    let report = std::fs::read_to_string(tmp.path().join("down/report.md")).unwrap();
    assert!(report.contains("Partial report"), "{report}");
}

#[test]
fn knobs_only_the_engine_can_change_are_refused_naming_its_flag() {
    for (knob, value, engine, flag) in [
        ("--block-size", "32", "vllm", "vLLM --block-size"),
        ("--kv-memory", "1000000", "vllm", "vLLM --gpu-memory-utilization"),
        ("--max-running", "4", "vllm", "vLLM --max-num-seqs"),
        ("--kv-blocks", "64", "kvscope", "kvscope serve --kv-blocks"),
    ] {
        let out = run_with_timeout(
            kvscope().args(["lab", "--target", "http://127.0.0.1:9", "--engine", engine, knob, value]),
            Duration::from_secs(30),
        );
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains(flag) && err.contains("cannot be changed from the client"), "{knob}: {err}");
    }
}

/// A fake engine: /v1/models answers, /metrics is garbage, every
/// completion is an HTTP 500. Serves until the test ends.
fn garbage_engine() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer_garbage(stream));
        }
    });
    port
}

fn answer_garbage(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let (status, body) = if head.starts_with("GET /v1/models") {
        ("200 OK", r#"{"data":[{"id":"m","vocab_size":1000}]}"#)
    } else if head.starts_with("GET /metrics") {
        ("200 OK", "<html>not prometheus {{{ 1 2 3\n")
    } else {
        ("500 Internal Server Error", r#"{"error":{"message":"boom"}}"#)
    };
    let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
}

#[test]
fn a_target_answering_errors_and_garbage_metrics_gets_a_partial_report() {
    let port = garbage_engine();
    let tmp = tempfile::tempdir().unwrap();
    let out = run_with_timeout(
        kvscope()
            .args(["lab", "--quick", "--lang", "en", "--target", &format!("http://127.0.0.1:{port}")])
            .args(["--request-timeout-s", "10"])
            .arg("--out")
            .arg(tmp.path().join("garbage")),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report = std::fs::read_to_string(tmp.path().join("garbage/report.md")).unwrap();
    assert!(report.contains("Missing and failed (partial report)"), "{report}");
    assert!(report.contains("requests failed"), "{report}");
    assert!(report.contains("no vllm:, sglang:, llamacpp: or kvscope: metric"), "{report}");
}

/// Reads a request's head and body (by Content-Length), bounded.
fn read_request(stream: &mut TcpStream) -> (String, String) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 && stream.read(&mut byte).is_ok_and(|n| n == 1) {
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0usize);
    let mut body = vec![0u8; length.min(1 << 20)];
    let _ = stream.read_exact(&mut body);
    (head, String::from_utf8_lossy(&body).into_owned())
}

/// A stand-in for llama.cpp's llama-server: `llamacpp:` metrics without
/// blocks, queue times or KV events, no vocabulary in /v1/models, and
/// completions streamed as `max_tokens` chunks, with a usage chunk when
/// `usage` (older llama-server builds send none).
fn llamacpp_like_engine(usage: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let (head, body) = read_request(&mut stream);
                let answer = llamacpp_answer(&head, &body, usage);
                let _ = stream.write_all(answer.as_bytes());
            });
        }
    });
    port
}

fn llamacpp_answer(head: &str, body: &str, usage: bool) -> String {
    let ok = |kind: &str, body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    if head.starts_with("GET /v1/models") {
        return ok("application/json", r#"{"data":[{"id":"fake.gguf","owned_by":"llamacpp"}]}"#);
    }
    if head.starts_with("GET /metrics") {
        return ok("text/plain", "llamacpp:requests_processing 1\nllamacpp:requests_deferred 0\nllamacpp:prompt_tokens_total 10\nllamacpp:tokens_predicted_total 5\n");
    }
    if !head.starts_with("POST /v1/completions") {
        return "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into();
    }
    let request: Value = serde_json::from_str(body).unwrap_or_default();
    let max_tokens = request["max_tokens"].as_u64().unwrap_or(1);
    let words = request["prompt"].as_str().map_or(0, |p| p.split_whitespace().count());
    let mut sse = String::new();
    for _ in 0..max_tokens {
        sse.push_str("data: {\"choices\":[{\"text\":\"a\"}]}\n\n");
    }
    if usage {
        sse.push_str(&format!(
            "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":{words},\"completion_tokens\":{max_tokens}}}}}\n\n"
        ));
    }
    sse.push_str("data: [DONE]\n\n");
    ok("text/event-stream", &sse)
}

/// An engine like llama-server (no vocabulary, no blocks, no queue-time
/// metric): text prompts counted by the engine, queue wait estimated from
/// TTFT alone, and each gap listed in "What this engine does not expose".
#[test]
fn an_engine_without_blocks_or_queue_times_gets_its_gaps_filled_and_listed() {
    let port = llamacpp_like_engine(true);
    let tmp = tempfile::tempdir().unwrap();
    let out = run_with_timeout(
        kvscope()
            .args(["lab", "--quick", "--lang", "en", "--target", &format!("http://127.0.0.1:{port}")])
            .args(["--request-timeout-s", "20"])
            // Nothing publishes there: a gap in the report, not a hang.
            .args(["--kv-events", &format!("tcp://127.0.0.1:{}", free_port())])
            .arg("--out")
            .arg(tmp.path().join("llamacpp")),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report = std::fs::read_to_string(tmp.path().join("llamacpp/report.md")).unwrap();
    for needle in [
        "metric family `llamacpp`, detected from the names on /metrics",
        "sent as text; lengths are the engine's usage.prompt_tokens",
        "[estimated: TTFT − the case's TTFT at concurrency 1]",
        "QueueTime: queue wait = TTFT − the case's TTFT at concurrency 1",
        "TotalBlocks: pool capacity in requests left blank",
        "Preemptions: preemptions left blank",
        "engine metric llamacpp:requests_processing",
        "--model-config",
        "KV events: ",
    ] {
        assert!(report.contains(needle), "report.md lacks {needle:?}:\n{report}");
    }
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("llamacpp/target.json")).unwrap()).unwrap();
    for case in json["cases"].as_array().unwrap() {
        assert_eq!(case["failed"], 0, "{case}");
    }
    assert!(json["solo_ttft"].as_array().unwrap().iter().all(|t| t.is_number()), "{}", json["solo_ttft"]);
    // The same report in Chinese, from an engine whose streams carry no
    // usage: output tokens are the chunks counted at the client.
    let port = llamacpp_like_engine(false);
    let out = run_with_timeout(
        kvscope()
            .args(["lab", "--quick", "--lang", "zh", "--target", &format!("http://127.0.0.1:{port}")])
            .args(["--request-timeout-s", "20", "--arrival-rate", "50"])
            .arg("--out")
            .arg(tmp.path().join("llamacpp-zh")),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let zh = std::fs::read_to_string(tmp.path().join("llamacpp-zh/report.md")).unwrap();
    for needle in [
        "## 该引擎未公开的量",
        "QueueTime: 排队 = TTFT − 该用例在并发 1 时的 TTFT",
        "由 /metrics 中的名字识别",
        "## 证据规则",
        "streams carried no usage",
    ] {
        assert!(zh.contains(needle), "report.md (zh) lacks {needle:?}:\n{zh}");
    }
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("llamacpp-zh/target.json")).unwrap()).unwrap();
    for case in json["cases"].as_array().unwrap() {
        let sum = |k: &str| case[k].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).sum::<u64>();
        assert_eq!(sum("output_tokens"), sum("max_tokens"), "{case}");
    }
}
