//! `kvscope sim` and `kvscope lab --executor sim --model-preset` from the
//! command line: no model file needed, every figure simulated.

use serde_json::Value;
use std::process::Command;

fn kvscope() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kvscope"))
}

#[test]
fn offline_batch_mode_reports_vllm_result_keys() {
    // nano-vLLM's bench.py command line, on its own benchmark machine.
    let out = kvscope()
        .args(["sim", "--model-preset", "qwen3-0.6b", "--hardware", "rtx-4070-laptop", "--num-requests", "64"])
        .args(["--prompt-len-range", "100-1024", "--output-len-range", "100-1024", "--request-rate", "inf"])
        .args(["--ignore-eos", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["completed"], 64);
    assert_eq!(v["simulated"], true);
    let (input, output, duration) = (
        v["total_input_tokens"].as_f64().unwrap(),
        v["total_output_tokens"].as_f64().unwrap(),
        v["duration"].as_f64().unwrap(),
    );
    assert!((64.0 * 100.0..=64.0 * 1024.0).contains(&input) && (64.0 * 100.0..=64.0 * 1024.0).contains(&output));
    assert!(duration > 0.0);
    assert!((v["output_throughput"].as_f64().unwrap() - output / duration).abs() < 1e-6 * output / duration);
    assert!((v["request_throughput"].as_f64().unwrap() - 64.0 / duration).abs() < 1e-9 * 64.0 / duration);
    assert_eq!(v["capacity"][0]["case"], "custom");
}

#[test]
fn sim_out_writes_the_labs_capacity_schema_labelled_simulated() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sim-out");
    let status = kvscope()
        .args(["sim", "--model-preset", "qwen3-0.6b", "--hardware", "l4", "--workload", "long_ctx"])
        .args(["--scale", "lab", "--lang", "en", "--out"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    let csv = std::fs::read_to_string(dir.join("capacity.csv")).unwrap();
    assert!(csv.starts_with("case,prompt_len_tokens,concurrency_requests,live_requests_mean,"), "{csv}");
    assert!(csv.lines().nth(1).unwrap().starts_with("long_ctx,"));
    let json: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("capacity.json")).unwrap()).unwrap();
    assert_eq!(json["simulated"], true);
    assert_eq!(json["units"]["ttft"], "simulated seconds");
    assert_eq!(json["rows"][0]["concurrency"], 12, "the lab's long_ctx: 12 requests");
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("**Simulated**") && report.contains("TTFT p50 / p90 / p99 (simulated s)"));
    assert!(std::fs::read_to_string(dir.join("stats.csv")).unwrap().lines().count() > 2);
}

#[test]
fn the_lab_runs_on_a_preset_and_the_pool_binds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab-preset");
    let status = kvscope()
        .args(["lab", "--executor", "sim", "--model-preset", "qwen3-0.6b", "--hardware", "rtx-4070-laptop"])
        .args(["--lang", "en", "--out"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    let json: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("capacity.json")).unwrap()).unwrap();
    assert_eq!(json["simulated"], true);
    let rows = json["rows"].as_array().unwrap();
    let long = rows.iter().find(|r| r["case"] == "long_ctx").unwrap();
    // The GPU scale offers twice what the pool holds: the pool, not the
    // offered load, limits how many run.
    assert!(long["live_requests_max"].as_u64().unwrap() < long["concurrency"].as_u64().unwrap());
    assert!(long["stall_time_share_no_free_blocks"].as_f64().unwrap() > 0.0);
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("**Simulated**") && report.contains("qwen3-0.6b on rtx-4070-laptop"));
    // KV precision on a GPU preset: bf16 (vLLM's auto) against fp8, the
    // pool math follows; the simulator measures no accuracy and says so.
    let kv: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("kv_dtype.json")).unwrap()).unwrap();
    let rows = kv["rows"].as_array().unwrap();
    assert_eq!(rows.iter().map(|r| r["kv_dtype"].as_str().unwrap()).collect::<Vec<_>>(), ["bf16", "fp8"]);
    assert_eq!(rows[0]["bytes_per_token"], 114_688);
    assert_eq!(rows[1]["bytes_per_token"], 57_344);
    assert!(rows[1]["token_slots"].as_u64().unwrap() >= 2 * rows[0]["token_slots"].as_u64().unwrap() - 16);
    assert!(rows.iter().all(|r| r["accuracy"].is_null()));
    assert!(report.contains("the accuracy cost is not measured here"));
}

#[test]
fn sim_kv_dtype_sizes_the_pool() {
    let plan = |dtype: &str| {
        let out = kvscope()
            .args([
                "sim",
                "--model-preset",
                "llama-3.1-8b",
                "--hardware",
                "h100",
                "--num-requests",
                "8",
                "--kv-dtype",
                dtype,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(plan("bf16").contains("KV per token 131072 B (bf16)"));
    assert!(plan("fp8").contains("KV per token 65536 B (fp8)"));
    let bad = kvscope().args(["sim", "--kv-dtype", "int4"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown KV dtype \"int4\""));
}

#[test]
fn a_simulated_fleet_shows_what_cache_aware_routing_keeps() {
    let fleet = |router: &str| -> Value {
        let out = kvscope()
            .args(["sim", "--hardware", "l4", "--scale", "lab", "--replicas", "2", "--router", router, "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (aware, robin) = (fleet("cache_aware"), fleet("round_robin"));
    assert_eq!(aware["simulated"], true);
    assert_eq!(aware["workload"]["name"], "shared_prefix_chats");
    assert_eq!(aware["replicas"].as_array().unwrap().len(), 2);
    let hits = |v: &Value| v["prefix_hit_tokens"].as_u64().unwrap();
    assert!(hits(&aware) > hits(&robin), "{aware}\n{robin}");
    let refused = kvscope().args(["sim", "--replicas", "2", "--router", "nearest"]).output().unwrap();
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cache_aware"), "names the routers");
}

/// power_of_two draws at random: `--router-seed` changes the draws and
/// nothing of the workload, so many draws can be set against a real
/// gateway's runs.
#[test]
fn the_router_seed_changes_power_of_two_draws_not_the_workload() {
    let fleet = |router_seed: &str| -> Value {
        let out = kvscope()
            .args(["sim", "--hardware", "l4", "--scale", "lab", "--replicas", "2", "--router", "power_of_two"])
            .args(["--seed", "3", "--router-seed", router_seed, "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let per_replica = |v: &Value| -> Vec<u64> {
        v["replicas"].as_array().unwrap().iter().map(|r| r["requests"].as_u64().unwrap()).collect()
    };
    let runs: Vec<Value> = (0..6).map(|s| fleet(&s.to_string())).collect();
    let queried = |v: &Value| -> u64 {
        v["replicas"].as_array().unwrap().iter().map(|r| r["prefix_queried_tokens"].as_u64().unwrap()).sum()
    };
    assert!(runs.iter().all(|r| queried(r) == queried(&runs[0])), "the same prompts in every run");
    assert!(runs.iter().any(|r| per_replica(r) != per_replica(&runs[0])), "other draws, other routes");
}

/// `--save-detailed` writes every request, in request order, and the
/// per-request figures add up to the fleet's own counters.
#[test]
fn a_simulated_fleet_writes_every_request_with_save_detailed() {
    let out = kvscope()
        .args(["sim", "--hardware", "l4", "--scale", "lab", "--replicas", "2", "--router", "power_of_two"])
        .args(["--json", "--save-detailed"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = |key: &str| -> Vec<f64> { v[key].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
    let n = v["ttft"]["n"].as_u64().unwrap() as usize;
    for key in ["start_times", "input_lens", "ttfts", "queue_waits", "e2els", "cached_input_lens", "routed_to"] {
        assert_eq!(list(key).len(), n, "{key}: one per request");
    }
    let starts = list("start_times");
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "request order is arrival order: {starts:?}");
    let cached: f64 = list("cached_input_lens").iter().sum();
    assert_eq!(cached as u64, v["prefix_hit_tokens"].as_u64().unwrap(), "hits per request add up to the fleet's");
    let input: f64 = list("input_lens").iter().sum();
    assert_eq!(input as u64, v["prefill_tokens"].as_u64().unwrap() + cached as u64);
    let routed = list("routed_to");
    for (i, replica) in v["replicas"].as_array().unwrap().iter().enumerate() {
        let here = routed.iter().filter(|&&r| r as usize == i).count() as u64;
        assert_eq!(here, replica["requests"].as_u64().unwrap(), "replica {i}");
    }
    let refused = kvscope().args(["sim", "--json", "--save-detailed"]).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--replicas 2 or more"));
}

#[test]
fn a_simulated_fleet_finds_the_rate_it_sustains_under_a_ttft_slo() {
    let out = kvscope()
        .args(["sim", "--hardware", "l4", "--scale", "lab", "--replicas", "2", "--router", "cache_aware"])
        .args(["--find-max-rate", "--slo-ttft-p99", "0.5", "--max-rate-hi", "50", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rate = v["max_rate"].as_f64().unwrap();
    assert!(rate > 0.01 && rate <= 50.0, "{v}");
    assert_eq!(v["rate"].as_f64().unwrap(), rate, "the run shown is the one at that rate");
    assert!(v["ttft"]["p99"].as_f64().unwrap() <= 0.5, "{v}");
    let replica = &v["replicas"][0];
    assert!(replica["queue_wait"]["p90"].as_f64().unwrap() >= replica["queue_wait"]["p50"].as_f64().unwrap());
}

#[test]
fn a_simulated_fleet_takes_the_replicas_limits() {
    let fleet = |extra: &[&str]| -> Value {
        let out = kvscope()
            .args(["sim", "--hardware", "l4", "--scale", "lab", "--replicas", "2", "--request-rate", "inf", "--json"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (roomy, one_at_a_time) = (fleet(&[]), fleet(&["--max-num-seqs", "1", "--max-num-batched-tokens", "256"]));
    let queue_p90 = |v: &Value| v["queue_wait"]["p90"].as_f64().unwrap();
    assert!(queue_p90(&one_at_a_time) > queue_p90(&roomy), "{one_at_a_time}\n{roomy}");
    let small = kvscope()
        .args(["sim", "--hardware", "l4", "--scale", "lab", "--replicas", "2", "--kv-blocks", "64", "--json"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&small.stderr).contains("64 blocks = 1024 tokens of KV"), "{small:?}");
}

#[test]
fn zero_replicas_is_refused_not_run_as_one_engine() {
    let out = kvscope()
        .args(["sim", "--model-preset", "qwen3-0.6b", "--hardware", "h100", "--replicas", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--replicas must be between 1 and"), "{err}");
}

/// One engine on the `cpu` preset is priced by the saved calibration, as a
/// fleet and the lab's simulated backend are (it once ignored it).
#[test]
fn one_simulated_engine_on_cpu_takes_the_saved_calibration() {
    let cache = tempfile::tempdir().unwrap();
    let duration = |cache: &std::path::Path| -> (f64, String) {
        let out = kvscope()
            .env("XDG_CACHE_HOME", cache)
            .args(["sim", "--model-preset", "smollm2-135m", "--hardware", "cpu", "--scale", "quick", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (v["duration"].as_f64().unwrap(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (uncalibrated, said) = duration(cache.path());
    assert!(said.contains("uncalibrated"), "{said}");
    // A fit in which every step costs one second more than the roofline's.
    let fit = serde_json::json!({
        "version": 1, "description": "a test's fit", "samples": [],
        "fit": {"rms_relative_error": 0.0, "max_relative_error": 0.0, "coefficients": {
            "model": "smollm2-135m", "overhead_s": 1.0, "per_prefill_token_s": 0.0, "per_decode_seq_s": 0.0,
            "per_prefill_attention_pair_s": 0.0, "per_decode_context_token_s": 0.0, "per_row_tile_s": 0.0, "row_tile": 4}}
    });
    std::fs::create_dir_all(cache.path().join("kvscope")).unwrap();
    std::fs::write(cache.path().join("kvscope/sim-cpu-calibration.json"), fit.to_string()).unwrap();
    let (calibrated, said) = duration(cache.path());
    assert!(said.contains("sim-cpu-calibration.json"), "{said}");
    assert_ne!(calibrated, uncalibrated, "the saved fit must price the steps");
}
