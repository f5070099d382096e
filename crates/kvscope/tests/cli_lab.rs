//! The main job end to end: `kvscope lab --quick` on the real model (fetched
//! by the same code path a user's first run takes), then the artifacts are
//! read back the way a student or a script would read them.

use kvscope_core::replay::Replay;
use kvscope_core::EventRecord;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn kvscope() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kvscope"))
}

#[test]
fn quick_lab_writes_consistent_artifacts_and_measures_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("lab");
    let status = kvscope().args(["lab", "--quick", "--lang", "en", "--out"]).arg(&out).status().unwrap();
    assert!(status.success(), "kvscope lab --quick failed");
    for f in [
        "report.md",
        "capacity.csv",
        "capacity.json",
        "lifecycle.svg",
        "lifecycle.mmd",
        "events.jsonl",
        "stats.csv",
        "probe.json",
        "causal_chain.svg",
        "causal_chain.json",
        "kv_dtype.csv",
        "kv_dtype.json",
        "kv_dtype.svg",
        "failure.csv",
        "failure.json",
        "failure.png",
        "lifecycle.png",
        "report.html",
    ] {
        assert!(out.join(f).metadata().map(|m| m.len() > 0).unwrap_or(false), "{f} missing or empty");
    }
    check_events(&out);
    check_capacity(&out);
    check_probe(&out);
    check_report(&out);
    check_kv_precision(&out);
    check_failure(&out);
    for svg in ["lifecycle.svg", "causal_chain.svg", "timeline_long_ctx.svg", "stats_mixed_ctx.svg"] {
        let text = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"), "{svg} is not an SVG document");
    }
    assert!(std::fs::read_to_string(out.join("lifecycle.mmd")).unwrap().starts_with("stateDiagram-v2"));
}

/// The same pool bytes hold more tokens in narrower formats, and the
/// narrower formats keep the model's decisive choices (a wrong scale or a
/// misplaced row would not).
fn check_kv_precision(out: &Path) {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("kv_dtype.json")).unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["kv_dtype"].as_str().unwrap()).collect();
    assert_eq!(names, ["f32", "f16", "int8"]);
    let slots: Vec<u64> = rows.iter().map(|r| r["token_slots"].as_u64().unwrap()).collect();
    assert!(slots[0] < slots[1] && slots[1] < slots[2], "{slots:?}");
    let live = |i: usize| rows[i]["capacity"]["live_requests"].as_f64().unwrap();
    assert!(live(0) < live(2), "int8's pool holds more requests at once than f32's");
    assert!(rows[0]["accuracy"].is_null(), "f32 is the reference");
    for r in &rows[1..] {
        let a = &r["accuracy"];
        assert!(a["positions"].as_u64().unwrap() > 100);
        assert!(a["top1_agreement"].as_f64().unwrap() > 0.9, "{a}");
        assert!(a["decisive_top1_agreement"].as_f64().unwrap() >= 0.98, "{a}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("Extension: KV precision") && report.contains("What this measurement does not show"));
    let csv = std::fs::read_to_string(out.join("kv_dtype.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "a header and one line per format");
}

/// Every line has the required fields; per case, the stream alone rebuilds
/// consistent reference counts and ends with every block free.
fn check_events(out: &Path) {
    let text = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    let mut by_case: BTreeMap<String, Vec<EventRecord>> = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        for key in ["event", "t", "step", "site"] {
            assert!(v.get(key).is_some(), "{key} missing: {line}");
        }
        let case = v["case"].as_str().unwrap().to_string();
        by_case.entry(case).or_default().push(serde_json::from_value(v).unwrap());
    }
    assert_eq!(by_case.keys().collect::<Vec<_>>(), ["long_ctx", "mixed_ctx", "short_ctx"]);
    for (case, events) in by_case {
        let replay = Replay::run(events.iter()).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(replay.held_blocks(), 0, "{case}: blocks leaked");
        assert_eq!(replay.finished.len(), replay.arrived.len(), "{case}: every request finished");
    }
}

/// The measured direction of the chain: under the same pool and load, long
/// contexts have fewer live requests and wait longer than short ones.
fn check_capacity(out: &Path) {
    let csv = std::fs::read_to_string(out.join("capacity.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    for col in
        ["case", "prompt_len", "concurrency", "live_requests", "estimated_kv", "ttft", "queue_wait", "explanation"]
    {
        assert!(header.contains(col), "capacity.csv lacks {col}");
    }
    let json: Value = serde_json::from_str(&std::fs::read_to_string(out.join("capacity.json")).unwrap()).unwrap();
    let row = |name: &str| json["rows"].as_array().unwrap().iter().find(|r| r["case"] == name).unwrap().clone();
    let (short, long) = (row("short_ctx"), row("long_ctx"));
    assert!(long["live_requests_max"].as_u64() < short["live_requests_max"].as_u64());
    assert!(long["live_requests"].as_f64() < short["live_requests"].as_f64());
    assert!(long["queue_wait"]["p50"].as_f64() > short["queue_wait"]["p50"].as_f64());
    assert!(long["estimated_kv"].as_f64() > short["estimated_kv"].as_f64());
    assert_eq!(long["explanation"].as_str().unwrap().split(':').next().unwrap(), "binding constraint = no_free_blocks");
    assert!(json["pool"]["bytes_per_token"].as_u64().unwrap() > 0);
}

/// The probe's potential is reported apart from the realized reuse.
fn check_probe(out: &Path) {
    let probe: Value = serde_json::from_str(&std::fs::read_to_string(out.join("probe.json")).unwrap()).unwrap();
    let potential = probe["potential"]["potential_hit_blocks"].as_u64().unwrap();
    let realized = probe["realized"]["hit_blocks"].as_u64().unwrap();
    assert!(potential > 0, "the shared system prompt is potential overlap");
    assert!(realized <= potential, "the real cache cannot beat an unbounded one");
    assert!(probe["realized"]["prefill_tokens_computed"].as_u64() < probe["prefill_tokens_computed_off"].as_u64());
}

fn check_report(out: &Path) {
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for section in ["12.1", "12.2", "12.3", "12.4", "12.5", "12.6", "short_ctx", "long_ctx", "mixed_ctx"] {
        assert!(report.contains(section), "report lacks {section}");
    }
    assert!(report.contains("not a realized reuse benefit"));
    assert!(report.contains("Approximation limits"));
    assert!(report.contains("block_manager::allocate") || report.contains("scheduler::admit_waiting"));
}

/// The failure conditions: each sweep length × condition, and the real
/// engine settled some of them (the simulator only narrowed the range).
fn check_failure(out: &Path) {
    let csv = std::fs::read_to_string(out.join("failure.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("prompt_len_tokens,condition,load_kind,load,reached,source"));
    assert_eq!(lines.len(), 1 + 3 * 3, "{csv}");
    assert!(lines.iter().any(|l| l.contains(",real,")), "no threshold settled on the real engine:\n{csv}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("### Failure conditions") && report.contains("![failure conditions](failure.svg)"));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && !html.contains("src=\"failure.svg\""), "report.html inlines its SVGs");
}
