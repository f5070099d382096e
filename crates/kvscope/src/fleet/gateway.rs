//! The SGLang Model Gateway (PyPI `sglang-router`, a Rust router packaged
//! for Python), installed on first use into a virtual environment in
//! kvscope's cache, as the default model is.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The gateway release whose worker protocol kvscope serve implements
/// (see kvscope-server's worker_api.rs).
pub const GATEWAY_PACKAGE: &str = "sglang-router==0.3.2";
const GATEWAY_VERSION: &str = "0.3.2";

/// The start of the message when the gateway cannot be installed (the
/// fleet test looks for it to tell "offline" from a broken fleet).
pub const INSTALL_FAILED: &str = "cannot install the SGLang Model Gateway";

/// The routing policies the gateway offers that a fleet may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[clap(rename_all = "snake_case")]
pub enum Policy {
    CacheAware,
    RoundRobin,
    PowerOfTwo,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::CacheAware => "cache_aware",
            Policy::RoundRobin => "round_robin",
            Policy::PowerOfTwo => "power_of_two",
        }
    }
}

/// `$KVSCOPE_GATEWAY_VENV`, else `$XDG_CACHE_HOME/kvscope/sglang-router-venv`,
/// else `~/.cache/kvscope/sglang-router-venv`.
pub fn venv_dir() -> anyhow::Result<PathBuf> {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = non_empty("KVSCOPE_GATEWAY_VENV") {
        return Ok(d);
    }
    let cache = non_empty("XDG_CACHE_HOME")
        .or_else(|| non_empty("HOME").map(|h| h.join(".cache")))
        .ok_or_else(|| anyhow::anyhow!("no cache directory for the gateway: set KVSCOPE_GATEWAY_VENV or HOME"))?;
    Ok(cache.join("kvscope").join("sglang-router-venv"))
}

fn python_in(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// Whether `venv` holds the gateway release kvscope speaks to.
fn installed(venv: &Path) -> bool {
    Command::new(python_in(venv))
        .args(["-c", "import sglang_router.version as v; print(v.__version__)"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == GATEWAY_VERSION)
}

/// The venv's Python, installing the gateway first when it is missing.
/// The install goes to a scratch directory renamed into place only when it
/// worked, so a failed or concurrent install never leaves a half venv.
pub fn ensure_installed() -> anyhow::Result<PathBuf> {
    let venv = venv_dir()?;
    if installed(&venv) {
        return Ok(python_in(&venv));
    }
    let parent = venv.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let scratch = parent.join(format!(".sglang-router-venv.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    eprintln!("kvscope fleet: installing the SGLang Model Gateway ({GATEWAY_PACKAGE}, ~30 MB) into {}", venv.display());
    let result = install_into(&scratch);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&scratch);
        anyhow::bail!(
            "{INSTALL_FAILED} ({GATEWAY_PACKAGE} into {}): {e}. Are you offline? Connect and run again, or install it yourself: python3 -m venv {} && {} -m pip install {GATEWAY_PACKAGE}",
            venv.display(),
            venv.display(),
            python_in(&venv).display()
        );
    }
    // Another launcher may have finished first and be running from its
    // copy: keep that one. Otherwise a broken leftover makes way.
    if installed(&venv) {
        let _ = std::fs::remove_dir_all(&scratch);
    } else {
        let _ = std::fs::remove_dir_all(&venv);
        if std::fs::rename(&scratch, &venv).is_err() {
            let _ = std::fs::remove_dir_all(&scratch);
        }
    }
    anyhow::ensure!(
        installed(&venv),
        "{INSTALL_FAILED}: {} does not import sglang_router after the install",
        venv.display()
    );
    Ok(python_in(&venv))
}

fn install_into(dir: &Path) -> anyhow::Result<()> {
    run_quietly(Command::new("python3").args(["-m", "venv"]).arg(dir), "python3 -m venv")?;
    run_quietly(
        Command::new(python_in(dir)).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            GATEWAY_PACKAGE,
        ]),
        "pip install",
    )
}

fn run_quietly(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = command.stdin(Stdio::null()).output().map_err(|e| anyhow::anyhow!("{what} could not start: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
        anyhow::bail!("{what} failed: {}", last.trim());
    }
    Ok(())
}

/// The retry and circuit-breaker settings `kvscope lab --fleet` starts the
/// gateway with, as sglang-router 0.3.2's `launch_router --help` names
/// them (its defaults in brackets): at most 3 attempts per request [5]; a
/// worker's breaker opens after 3 failures [10] and stays open for the
/// rest of a lab run [60 s]; health checks every 2 s [60 s] take a worker
/// out after 2 failures [3]. A replica killed mid-run is then out within
/// seconds, in runs that last tens of seconds; every policy runs with the
/// same settings.
pub const LAB_RESILIENCE: [&str; 10] = [
    "--retry-max-retries",
    "3",
    "--cb-failure-threshold",
    "3",
    "--cb-timeout-duration-secs",
    "600",
    "--health-check-interval-secs",
    "2",
    "--health-failure-threshold",
    "2",
];

/// Where the gateway listens and what it routes to.
pub struct GatewayPlan<'a> {
    pub python: &'a Path,
    pub host: &'a str,
    pub port: u16,
    pub metrics_port: u16,
    pub policy: Policy,
    pub worker_urls: &'a [String],
}

/// The gateway's command line: its own Prometheus port (so two fleets do
/// not collide on its default), warnings only, workers checked at once.
pub fn command(plan: &GatewayPlan) -> Command {
    let mut command = Command::new(plan.python);
    command
        .args(["-m", "sglang_router.launch_router", "--worker-urls"])
        .args(plan.worker_urls)
        .args(["--policy", plan.policy.name(), "--host", plan.host, "--port", &plan.port.to_string()])
        .args(["--prometheus-host", "127.0.0.1", "--prometheus-port", &plan.metrics_port.to_string()])
        .args(["--log-level", "warn", "--worker-startup-check-interval", "1"])
        .stdin(Stdio::null());
    command
}
