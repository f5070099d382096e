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
//! llama-server (no vocabulary, blocks, queue times or KV usage) gets its
//! gaps filled and listed from what its scrapes held, blank in
//! capacity.csv; a load sweep and a failure search run against it; an
//! engine counting preemptions gets them searched and cited; knobs
//! only the engine can change are refused naming the engine's flag. The
//! target is also read as a replica behind a load balancer
//! (`--replica-metrics`, beside a replica that is down). Every
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
            // The search's runs against the CPU model cost more than the
            // cases; the fake llama-server below runs it.
            .args(["--failure-budget", "0"])
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
    // kvscope serve exports all but the stalls: those fields are empty.
    let rows = csv_rows(&csv);
    assert_eq!(rows[0]["stall_time_share_no_free_blocks"], "", "{csv}");
    assert_eq!(rows[0]["stalled_s"], "", "{csv}");
    assert_ne!(rows[0]["preemptions"], "", "{csv}");
    assert_ne!(rows[0]["live_requests_max"], "", "{csv}");
    let metrics = std::fs::read_to_string(out_dir.join("metrics.csv")).unwrap();
    assert!(metrics.starts_with("t_s,kvscope:num_requests_running,"), "{metrics}");
    assert!(metrics.lines().count() > 2, "the poller kept samples: {metrics}");
}

/// capacity.csv's rows, each a map from column to field.
fn csv_rows(csv: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut lines = csv.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(str::to_string).collect();
    // The explanation (last, quoted, with commas) is not read here.
    lines.map(|l| header.iter().cloned().zip(l.split(',').map(str::to_string)).collect()).collect()
}

fn check_tags(report: &str) {
    for tag in [
        // The lab's own capacity table (the shared template), tagged.
        "| case | prompt_len (tokens) [engine usage.prompt_tokens; token-exact: the client sent these ids] | concurrency [",
        "| TTFT p50 / p90 / p99 (s) [client-measured] |",
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
    // The table as the template writes it: the dead replica's row all "—",
    // the live one's hits the same figure as target.json's.
    let dead_row = format!("| shared_prefix | 1 ({}) |{}", rows[1]["url"].as_str().unwrap(), " — |".repeat(10));
    assert!(report.contains(&format!("{dead_row}\n")), "{report}");
    let hits = cases[3]["deltas"]["PrefixHits"].as_f64().unwrap();
    let live_row = report.lines().find(|l| l.starts_with("| shared_prefix | 0 (")).unwrap();
    assert!(live_row.contains(&format!(" | {hits:.0} | ")), "{live_row}");
    // The capacity table's engine half gains the replicas' column.
    assert!(report.contains("| per replica: live requests mean / max, peak KV usage, prefix hits"), "{report}");
    let engine_row = report.lines().find(|l| l.starts_with("| shared_prefix | 8 (0 failed) |")).unwrap();
    assert!(engine_row.ends_with(&format!(", {hits:.0}; r1 —, —, — |")), "{engine_row}");
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
    // A sweep of an engine knob: refused the same way; the client's load
    // is swept only on a target.
    let out = run_with_timeout(
        kvscope().args(["lab", "--target", "http://127.0.0.1:9", "--engine", "sglang", "--sweep", "max-running=4,8"]),
        Duration::from_secs(30),
    );
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("SGLang --max-running-requests"), "{err}");
    let out = run_with_timeout(kvscope().args(["lab", "--sweep", "concurrency=1,4"]), Duration::from_secs(30));
    assert!(!out.status.success() && stderr(&out).contains("add --target URL"), "{}", stderr(&out));
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

/// What a fake engine's /metrics shows, given how many requests it has
/// preempted so far.
type MetricsPageOf = fn(u64) -> String;

/// A stand-in for llama.cpp's llama-server: `llamacpp:` metrics without
/// blocks, queue times or KV events, no vocabulary in /v1/models, and
/// completions streamed as `max_tokens` chunks, with a usage chunk when
/// `usage` (older llama-server builds send none).
fn llamacpp_like_engine(usage: bool) -> u16 {
    fake_engine(usage, |_| {
        "llamacpp:requests_processing 1\nllamacpp:requests_deferred 0\nllamacpp:prompt_tokens_total 10\nllamacpp:tokens_predicted_total 5\n".into()
    })
}

/// A fake engine answering /v1/models, /metrics (`page`) and streamed
/// completions; every completion whose prompt has at least
/// [`PREEMPTED_FROM_WORDS`] words counts as one preemption, whatever the
/// load, so a search's preemption threshold is known in advance.
fn fake_engine(usage: bool, page: MetricsPageOf) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let preempted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let preempted = preempted.clone();
            std::thread::spawn(move || {
                let (head, body) = read_request(&mut stream);
                let answer = fake_answer(&head, &body, usage, page, &preempted);
                let _ = stream.write_all(answer.as_bytes());
            });
        }
    });
    port
}

const PREEMPTED_FROM_WORDS: usize = 100;

fn fake_answer(
    head: &str,
    body: &str,
    usage: bool,
    page: MetricsPageOf,
    preempted: &std::sync::atomic::AtomicU64,
) -> String {
    use std::sync::atomic::Ordering::SeqCst;
    let ok = |kind: &str, body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    if head.starts_with("GET /v1/models") {
        return ok("application/json", r#"{"data":[{"id":"fake.gguf","owned_by":"fake"}]}"#);
    }
    if head.starts_with("GET /metrics") {
        return ok("text/plain", &page(preempted.load(SeqCst)));
    }
    if head.starts_with("GET /props") {
        // llama-server's build as its /props names it (0c1e570 checked).
        return ok("application/json", r#"{"build_info":"b1-0c1e570","total_slots":4}"#);
    }
    if !head.starts_with("POST /v1/completions") {
        return "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into();
    }
    let request: Value = serde_json::from_str(body).unwrap_or_default();
    let max_tokens = request["max_tokens"].as_u64().unwrap_or(1);
    let words = request["prompt"].as_str().map_or(0, |p| p.split_whitespace().count());
    if words >= PREEMPTED_FROM_WORDS {
        preempted.fetch_add(1, SeqCst);
    }
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

/// An engine exporting vLLM's preemption counter (and its running and
/// waiting gauges, nothing else): the failure search looks for preemptions
/// there, finds them at every load from [`PREEMPTED_FROM_WORDS`] prompt
/// words up and never below, and cites the counter as their source.
#[test]
fn the_failure_search_finds_preemptions_where_the_engine_counts_them() {
    let port = fake_engine(true, |preempted| {
        format!("vllm:num_requests_running 0\nvllm:num_requests_waiting 0\nvllm:num_preemptions_total {preempted}\n")
    });
    let tmp = tempfile::tempdir().unwrap();
    let out = run_with_timeout(
        kvscope()
            .args(["lab", "--quick", "--lang", "en", "--target", &format!("http://127.0.0.1:{port}")])
            .args(["--request-timeout-s", "20", "--failure-budget", "4", "--slo-ttft", "1000"])
            .arg("--out")
            .arg(tmp.path()),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report = std::fs::read_to_string(tmp.path().join("report.md")).unwrap();
    assert!(report.contains(" preempted [engine metric vllm:num_preemptions_total])"), "{report}");
    let failure: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("failure.json")).unwrap()).unwrap();
    let points = failure["points"].as_array().unwrap();
    assert!(points.iter().any(|p| p["prompt_len"].as_u64() < Some(PREEMPTED_FROM_WORDS as u64)), "{failure}");
    for p in points {
        let preemption = &p["preemption"];
        if p["prompt_len"].as_u64().unwrap() >= PREEMPTED_FROM_WORDS as u64 {
            // Every load preempts: the threshold is the ladder's first
            // rung, or an upper bound on it if the budget ran out first.
            assert!(preemption["load"].is_number(), "{p}");
            assert!(["real", "real_upper_bound"].contains(&preemption["source"].as_str().unwrap()), "{p}");
        } else {
            assert!(preemption["load"].is_null(), "no load preempts below {PREEMPTED_FROM_WORDS} words: {p}");
        }
        assert_eq!(p["admission_stall"]["source"], "not_exposed", "{p}");
    }
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
            // The client's load swept; a failure search of one run per
            // length, with an SLO every request misses.
            .args(["--sweep", "concurrency=1,4", "--failure-budget", "1", "--slo-ttft", "0.000001"])
            .arg("--out")
            .arg(tmp.path().join("llamacpp")),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report = std::fs::read_to_string(tmp.path().join("llamacpp/report.md")).unwrap();
    for needle in [
        "metric family `llamacpp`, detected from the names on /metrics",
        "- Engine: fake b1-0c1e570 (metric family",
        "sent as text; lengths are the engine's usage.prompt_tokens",
        "[estimated: TTFT − the case's TTFT at concurrency 1]",
        "(`QueueTime`): queue wait = TTFT − the case's TTFT at concurrency 1",
        "(`TotalBlocks`): pool capacity in requests left blank",
        "(`Preemptions`): preemptions left blank",
        "engine metric llamacpp:requests_processing",
        "--model-config",
        "KV events: ",
        // In the family's table, but on no page this build served.
        "KV usage (`KvUsage`): peak KV usage left blank (the family exports it as `llamacpp:kv_cache_usage_ratio` in some builds; no scrape of this one held it)",
        // The shared capacity table: unknown is "—", never 0.
        "| live_requests (mean / max) [engine metric llamacpp:requests_processing] | estimated_kv (per request) [estimated] |",
        "| — (— block-rounded) |",
        // The load sweep, each column tagged.
        "## Load sweep: concurrency",
        "| concurrency | case | TTFT p50 / p90 s [client-measured] | queue wait p50 / p90 s [estimated: TTFT − the case's TTFT at concurrency 1] |",
        "| peak KV usage [not exposed] | preemptions [not exposed] |",
        "| 4 | long_ctx | ",
        // The failure search: the SLO's first miss, its evidence tagged.
        "## Failure conditions",
        "(measured, upper bound: TTFT p90 ",
        " > 0.000001 s [client-measured])",
        "? (not exposed by the engine)",
        // A paragraph of its own, not run into the table.
        "the client does not know the engine's cap on running requests.\n\n| prompt_len |",
    ] {
        assert!(report.contains(needle), "report.md lacks {needle:?}:\n{report}");
    }
    let csv = std::fs::read_to_string(tmp.path().join("llamacpp/capacity.csv")).unwrap();
    for row in csv_rows(&csv) {
        for unknown in ["estimated_kv_bytes", "stall_time_share_max_running", "stalled_s", "preemptions"] {
            assert_eq!(row[unknown], "", "{unknown} is not exposed: empty, not 0:\n{csv}");
        }
        assert_ne!(row["live_requests_mean"], "", "{csv}");
    }
    assert!(tmp.path().join("llamacpp/failure.csv").exists());
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
            .args(["--sweep", "rate=20,50", "--failure-budget", "1", "--slo-ttft", "1000"])
            .arg("--out")
            .arg(tmp.path().join("llamacpp-zh")),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let zh = std::fs::read_to_string(tmp.path().join("llamacpp-zh/report.md")).unwrap();
    for needle in [
        "## 该引擎未公开的量",
        "(`QueueTime`): 排队 = TTFT − 该用例在并发 1 时的 TTFT",
        "由 /metrics 中的名字识别",
        "## 证据规则",
        "streams carried no usage",
        "| live_requests (均值 / 最大) [engine metric llamacpp:requests_processing] |",
        "## 负载扫描: rate",
        "| 50 req/s | short_ctx | ",
        "**在预算内没有出现任何条件**",
        "阶梯从 --arrival-rate 的八分之一到八倍。\n\n**在预算内没有出现任何条件**",
        "KV 使用率 (`KvUsage`): KV 使用率峰值留空 (该指标族在某些版本中以 `llamacpp:kv_cache_usage_ratio` 公开",
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
