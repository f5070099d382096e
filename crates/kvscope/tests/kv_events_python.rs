//! `kvscope serve --kv-events-endpoint` decoded by vLLM's own schema: the
//! real binary serves the default model, and
//! `crates/kvscope-wire/tests/python/decode_vllm_events.py` (msgspec mirrors
//! of vLLM's classes, pyzmq) subscribes, sends completions and decodes every
//! frame strictly.
//!
//! pyzmq and msgspec go into a venv under the target directory on first use
//! (`python3 -m venv`, `pip install pyzmq msgspec`). Without python3 or the
//! package index the test says why and passes, unless
//! `KVSCOPE_REQUIRE_PYTHON=1` is set: then it fails. Every step
//! has a deadline, and the server is killed when the test ends.

mod common;

use common::{serve_with_kv_events, ServeWithEvents};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BLOCK_SIZE: usize = 16;

/// Runs `cmd` to completion or kills it at `limit`.
fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| e.to_string())?;
    let start = Instant::now();
    loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            return child.wait_with_output().map_err(|e| e.to_string());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            return Err(format!("timed out after {limit:?}; stderr:\n{}", String::from_utf8_lossy(&out.stderr)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Python is missing or could not be set up: skip, or fail when required.
fn unavailable(why: &str) {
    if std::env::var("KVSCOPE_REQUIRE_PYTHON").as_deref() == Ok("1") {
        panic!("KVSCOPE_REQUIRE_PYTHON=1 but {why}");
    }
    eprintln!(
        "skipping the vLLM-schema check of the KV events: {why} (set KVSCOPE_REQUIRE_PYTHON=1 to make this fail)"
    );
}

/// A venv with pyzmq and msgspec, made on first use; its python.
fn python_with_zmq() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kv-events-venv");
    let python = venv.join("bin").join("python");
    let ready = |python: &Path| {
        run_with_timeout(Command::new(python).args(["-c", "import zmq, msgspec"]), Duration::from_secs(60))
            .is_ok_and(|o| o.status.success())
    };
    if python.exists() && ready(&python) {
        return Ok(python);
    }
    let made = run_with_timeout(Command::new("python3").arg("-m").arg("venv").arg(&venv), Duration::from_secs(120))
        .map_err(|e| format!("python3 -m venv failed: {e}"))?;
    if !made.status.success() {
        return Err(format!("python3 -m venv failed: {}", String::from_utf8_lossy(&made.stderr)));
    }
    let pip = run_with_timeout(
        Command::new(&python).args(["-m", "pip", "install", "--quiet", "pyzmq", "msgspec"]),
        Duration::from_secs(300),
    )
    .map_err(|e| format!("pip install pyzmq msgspec failed: {e}"))?;
    if !pip.status.success() || !ready(&python) {
        return Err(format!("pip install pyzmq msgspec failed: {}", String::from_utf8_lossy(&pip.stderr)));
    }
    Ok(python)
}

#[test]
fn published_kv_events_decode_with_vllms_msgspec_schema() {
    if run_with_timeout(Command::new("python3").arg("--version"), Duration::from_secs(30)).is_err() {
        return unavailable("python3 is not installed");
    }
    let python = match python_with_zmq() {
        Ok(p) => p,
        Err(why) => return unavailable(&why),
    };
    // Loading (and on first use fetching) the model takes a while.
    let ServeWithEvents { server, http, endpoint, replay_endpoint } =
        serve_with_kv_events(64, BLOCK_SIZE, Stdio::inherit());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kvscope-wire/tests/python/decode_vllm_events.py");
    let out = run_with_timeout(
        Command::new(&python).arg(&script).args([
            &format!("http://127.0.0.1:{http}"),
            &endpoint,
            &replay_endpoint,
            &BLOCK_SIZE.to_string(),
        ]),
        Duration::from_secs(180),
    )
    .unwrap_or_else(|e| panic!("the decoding script did not finish: {e}"));
    drop(server);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the script failed:\n{stdout}\n{stderr}");
    assert!(stdout.starts_with("ok:"), "{stdout}");
    eprintln!("{stdout}");
}
