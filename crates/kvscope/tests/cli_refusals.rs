//! Configurations that can never work are refused with a message naming
//! the flag, before any KV is allocated (and, where the model is not
//! needed to judge, before it loads) — instead of hanging, spinning,
//! panicking or being OOM-killed. Each run is bounded in memory (ulimit -v)
//! and time, so a regression fails the test instead of taking the machine.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `kvscope ARGS` under an 8 GB address-space limit for at most 120 s;
/// returns (success, stderr).
fn run_bounded(args: &[&str]) -> (bool, String) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 8000000; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_kvscope"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kvscope {args:?} still running after 120 s: the configuration was not refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (status.success(), stderr)
}

fn assert_refused(args: &[&str], names: &str) {
    let (ok, stderr) = run_bounded(args);
    assert!(!ok, "kvscope {args:?} should be refused");
    assert!(stderr.contains(names), "kvscope {args:?}: the error should name {names:?}:\n{stderr}");
    assert!(!stderr.contains("panicked"), "kvscope {args:?} panicked:\n{stderr}");
}

#[test]
fn serve_refuses_unworkable_flags_before_loading_the_model() {
    for (args, names) in [
        (&["serve", "--max-num-seqs", "0"][..], "--max-num-seqs"),
        (&["serve", "--max-num-batched-tokens", "0"], "--max-num-batched-tokens"),
        (&["serve", "--max-num-seqs", "64", "--max-num-batched-tokens", "32"], "at least 64"),
        (&["serve", "--max-num-partial-prefills", "1"], "--long-prefill-token-threshold"),
        (
            &[
                "serve",
                "--max-num-seqs",
                "4",
                "--long-prefill-token-threshold",
                "64",
                "--max-num-partial-prefills",
                "5",
            ],
            "at most 4",
        ),
        (&["serve", "--kv-blocks", "0"], "--kv-blocks"),
        (&["serve", "--block-size", "100000"], "--block-size"),
        (&["serve", "--block-size", "0"], "--block-size"),
        (&["serve", "--host", "no such host name.invalid"], "--host"),
        // localhost and ::1 parse: the refusal is about the next bad flag.
        (&["serve", "--host", "localhost", "--kv-blocks", "0"], "--kv-blocks"),
        (&["serve", "--host", "::1", "--kv-blocks", "0"], "--kv-blocks"),
        (&["serve", "--header-timeout-s", "0"], "--header-timeout-s"),
        (&["serve", "--kv-dtype", "fp8"], "--kv-dtype f32, f16 or int8"),
        (&["serve", "--kv-cache-dtype", "int4"], "unknown KV dtype"),
        (&["generate", "--prompt", "hi", "--kv-dtype", "bf16"], "--kv-dtype f32, f16 or int8"),
        (&["lab", "--quick", "--kv-dtype", "fp8"], "--kv-dtype f32, f16 or int8"),
    ] {
        // A model path that does not exist: had the model been loaded
        // first, the error would be about it instead of the flag.
        let mut args = args.to_vec();
        args.extend(["--model", "/nonexistent/kvscope-test.gguf"]);
        let (ok, stderr) = run_bounded(&args);
        assert!(!ok, "kvscope {args:?} should be refused");
        assert!(stderr.contains(names), "kvscope {args:?}: the error should name {names:?}:\n{stderr}");
        assert!(!stderr.contains("kvscope-test.gguf"), "kvscope {args:?} loaded the model before refusing:\n{stderr}");
    }
}

#[test]
fn a_pool_larger_than_memory_is_refused_before_allocation() {
    assert_refused(&["serve", "--port", "0", "--kv-blocks", "100000000000"], "MiB of memory are available");
}

#[test]
fn lab_refuses_zero_limits_a_device_dataset_and_a_bad_out_before_running() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = dir.join("out");
    let out = out.to_str().unwrap();
    assert_refused(&["lab", "--quick", "--out", out, "--max-running", "0"], "--max-running");
    assert_refused(&["lab", "--quick", "--out", out, "--max-batched-tokens", "0"], "--max-batched-tokens");
    assert_refused(&["lab", "--quick", "--out", out, "--kv-blocks", "0"], "--kv-blocks");
    assert_refused(&["lab", "--quick", "--out", out, "--dataset", "/dev/zero"], "not a regular file");
    let file = dir.join("a-file");
    std::fs::write(&file, "x").unwrap();
    assert_refused(&["lab", "--quick", "--out", file.to_str().unwrap()], "is a file, not a directory");
}

#[test]
fn lab_refuses_bad_repeats_sweeps_slo_and_compare_dirs_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = dir.join("out");
    let out = out.to_str().unwrap();
    assert_refused(&["lab", "--quick", "--out", out, "--repeat", "0"], "--repeat");
    assert_refused(&["lab", "--quick", "--out", out, "--sweep", "bogus=1,2"], "unknown knob");
    assert_refused(&["lab", "--quick", "--out", out, "--sweep", "block-size=8"], "at least two values");
    assert_refused(&["lab", "--quick", "--out", out, "--sweep", "kv-memory=lots,64MiB"], "not a size");
    assert_refused(&["lab", "--quick", "--out", out, "--slo-ttft", "0"], "--slo-ttft");
    let d = dir.to_str().unwrap();
    assert_refused(&["lab", "compare", d, d], "no lab.json");
    // A knob value whose pool cannot hold a request: refused before any run.
    assert_refused(&["lab", "--quick", "--out", out, "--sweep", "kv-memory=1MiB,64MiB"], "--sweep kv-memory=1MiB");
}

/// `lab --fleet` refuses what it cannot run before any process starts:
/// no gateway is installed, no replica spawned (each refusal is immediate).
#[test]
fn lab_fleet_refuses_a_bad_size_a_missing_replica_and_local_only_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let out = out.to_str().unwrap();
    assert_refused(&["lab", "--fleet", "0", "--out", out], "--fleet 0 is out of range: give 1 to 16");
    assert_refused(&["lab", "--fleet", "17", "--out", out], "--fleet 17 is out of range");
    assert_refused(
        &["lab", "--fleet", "2", "--out", out, "--kill-replica-after", "1", "--kill-replica", "2"],
        "replicas 0 to 1",
    );
    assert_refused(&["lab", "--fleet", "2", "--out", out, "--repeat", "2"], "--repeat is not available with --fleet");
    assert_refused(
        &["lab", "--fleet", "2", "--out", out, "--kv-memory", "67108864"],
        "--kv-memory is not available with --fleet",
    );
    assert_refused(&["lab", "--fleet", "2", "--target", "http://127.0.0.1:9"], "cannot be used with");
    assert_refused(&["lab", "--quick", "--replica-metrics", "http://127.0.0.1:9"], "--target");
    assert_refused(
        &["lab", "--fleet", "2", "--out", out, "--policies", "round_robin,cache_aware,round_robin"],
        "--policies lists round_robin twice",
    );
    assert_refused(
        &["lab", "--fleet", "2", "--out", out, "--executor", "sim"],
        "--executor sim is not available with --fleet",
    );
    assert_refused(&["lab", "--fleet", "2", "--out", out, "--slo-ttft", "1"], "not available with --fleet");
}

#[test]
fn lab_target_refuses_urls_and_endpoints_of_the_wrong_form_before_running() {
    let url = "expected a base URL http://HOST:PORT";
    assert_refused(&["lab", "--target", "notaurl"], url);
    assert_refused(&["lab", "--target", "http://127.0.0.1:9", "--replica-metrics", "http://127.0.0.1:9,r2:8000"], url);
    let endpoint = "is not tcp://HOST:PORT";
    assert_refused(&["lab", "--target", "http://127.0.0.1:9", "--kv-events", "garbage"], endpoint);
    let replica_events = ["--replica-metrics", "http://127.0.0.1:9", "--replica-kv-events", "127.0.0.1:5557"];
    assert_refused(&[&["lab", "--target", "http://127.0.0.1:9"][..], &replica_events[..]].concat(), endpoint);
}

#[test]
fn generate_and_bench_check_the_request_against_the_context_before_allocating() {
    assert_refused(&["generate", "--prompt", "hi", "--max-tokens", "100000"], "exceeds the model's context");
    assert_refused(&["generate", "--prompt", "hi", "--top-p", "0"], "top_p");
    assert_refused(&["bench", "throughput", "--prompt-len", "100000"], "exceeds the model's context");
    assert_refused(&["bench", "throughput", "--concurrency", "100000000", "--prompt-len", "16"], "lower --concurrency");
}

#[test]
fn request_counts_that_would_not_fit_in_memory_are_refused_before_anything_is_drawn() {
    assert_refused(&["sim", "--num-requests", "1000000000"], "--num-requests must be between 1 and 10000000");
    // No server is listening there: the refusal comes before any connection.
    let url = ["--base-url", "http://127.0.0.1:9"];
    assert_refused(&[&["bench", "serve", "--num-prompts", "0"][..], &url].concat(), "--num-prompts");
    assert_refused(&[&["bench", "serve", "--num-prompts", "5000000"][..], &url].concat(), "--num-prompts");
    assert_refused(
        &[&["bench", "serve", "--num-prompts", "100000", "--random-input-len", "100000"][..], &url].concat(),
        "prompt tokens to hold at once",
    );
}

#[test]
fn every_subcommand_parses_its_own_flags() {
    // clap checks its argument definitions when a command is built: a
    // duplicated flag name makes the command panic on every invocation.
    for cmd in [&["bench", "serve"][..], &["bench", "throughput"], &["serve"], &["lab"], &["generate"], &["sim"]] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let (ok, stderr) = run_bounded(&args);
        assert!(ok, "kvscope {args:?}:\n{stderr}");
    }
}
