//! `kvscope fleet`: N `kvscope serve` replicas behind the SGLang Model
//! Gateway. kvscope only starts and stops processes; the gateway routes.
//!
//! Each replica is this binary's `serve` on a free loopback port with its
//! own KV pool and its share of the CPU threads; the gateway comes from
//! PyPI, installed on first use (gateway.rs). Every process runs in a
//! process group of its own and is ended with it (child.rs) when the
//! launcher stops: on Ctrl-C, SIGTERM, an error, or any child dying.

pub mod child;
pub mod gateway;

use anyhow::Context;
use child::GroupChild;
use gateway::{GatewayPlan, Policy};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct FleetArgs {
    /// How many `kvscope serve` replicas to start.
    #[arg(long, default_value_t = 2)]
    pub replicas: usize,
    /// The gateway's routing policy.
    #[arg(long, value_enum, default_value = "cache_aware")]
    pub policy: Policy,
    /// The gateway's port (0: any free port); replicas take free ports.
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// A GGUF file to serve instead of the default model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// CPU threads for all replicas together, split evenly (default: all).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Longest wait for every replica and the gateway to answer, in seconds.
    #[arg(long, default_value_t = 300)]
    pub startup_timeout_s: u64,
    /// Options for every replica's `kvscope serve`, after `--` (e.g.
    /// `-- --kv-blocks 256 --max-num-seqs 8`).
    #[arg(last = true)]
    pub serve_args: Vec<String>,
    /// Give every replica a KV-event endpoint of its own (`kvscope lab
    /// --fleet` subscribes to them); not a flag of `kvscope fleet`.
    #[arg(skip)]
    pub replica_kv_events: bool,
    /// More flags for the gateway (`kvscope lab --fleet`: its retry and
    /// circuit-breaker settings); not a flag of `kvscope fleet`.
    #[arg(skip)]
    pub gateway_args: Vec<String>,
    /// Each child's output into `DIR/replica_<i>.log` and `DIR/gateway.log`
    /// instead of this terminal (`kvscope lab --fleet`, whose own progress
    /// would drown in theirs); not a flag of `kvscope fleet`.
    #[arg(skip)]
    pub log_dir: Option<PathBuf>,
}

/// A started fleet. Dropping it stops the gateway, then every replica.
pub struct Fleet {
    gateway: GroupChild,
    pub gateway_url: String,
    /// The gateway's own Prometheus page (its `--prometheus-port`).
    pub gateway_metrics_url: String,
    replicas: Vec<GroupChild>,
    pub replica_urls: Vec<String>,
    /// Each replica's KV-event endpoint, with `replica_kv_events`.
    pub replica_kv_events: Vec<String>,
    /// Replicas killed on purpose (`kill_replica`): their death is the
    /// experiment's, not a reason to stop the fleet.
    killed: Vec<usize>,
}

pub fn run(args: FleetArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        // A signal while starting drops the half-started fleet, which stops
        // what had started.
        let mut fleet = tokio::select! {
            fleet = Fleet::start(&args) => fleet?,
            _ = tokio::signal::ctrl_c() => return stopped("SIGINT while starting"),
            _ = terminate.recv() => return stopped("SIGTERM while starting"),
        };
        fleet.print();
        let why = fleet.supervise(&mut terminate).await;
        drop(fleet);
        stopped(&why)
    })
}

/// After the fleet is gone: a signal is a normal end, a death an error.
fn stopped(why: &str) -> anyhow::Result<()> {
    eprintln!("kvscope fleet: {why}; every process is stopped");
    if why.starts_with("SIG") {
        Ok(())
    } else {
        Err(anyhow::anyhow!("the fleet stopped: {why}"))
    }
}

impl Fleet {
    /// Installs the gateway if needed, starts the replicas, waits for
    /// them, then starts the gateway and waits for it.
    pub async fn start(args: &FleetArgs) -> anyhow::Result<Fleet> {
        check_replicas(args.replicas, "--replicas")?;
        let model = args.model.clone();
        let (python, model) = tokio::task::spawn_blocking(move || {
            anyhow::Ok((gateway::ensure_installed()?, kvscope_model::fetch::resolve_model(model.as_deref())?))
        })
        .await??;
        let total = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let threads_each = (total / args.replicas).max(1);
        let deadline = Instant::now() + Duration::from_secs(args.startup_timeout_s);
        let mut replicas = Vec::with_capacity(args.replicas);
        let mut replica_urls = Vec::with_capacity(args.replicas);
        let mut replica_kv_events = Vec::new();
        for i in 0..args.replicas {
            let port = free_port()?;
            let mut serve = Command::new(std::env::current_exe()?);
            serve.args(["serve", "--host", "127.0.0.1", "--port", &port.to_string(), "--model"]).arg(&model);
            if args.replica_kv_events {
                let endpoint = format!("tcp://127.0.0.1:{}", free_port()?);
                serve.args(["--kv-events-endpoint", &endpoint]);
                replica_kv_events.push(endpoint);
            }
            serve.args(&args.serve_args).env("RAYON_NUM_THREADS", threads_each.to_string());
            serve.stdin(Stdio::null()).stdout(Stdio::null());
            if let Some(log) = log_file(args, &format!("replica_{i}"))? {
                serve.stderr(log);
            }
            replicas.push(GroupChild::spawn(&format!("replica {i}"), serve)?);
            replica_urls.push(format!("http://127.0.0.1:{port}"));
        }
        for (child, url) in replicas.iter_mut().zip(&replica_urls) {
            wait_until_ok(child, &format!("{url}/health"), deadline).await?;
        }
        let gateway_port = if args.port == 0 { free_port()? } else { args.port };
        let metrics_port = free_port()?;
        let plan = GatewayPlan {
            python: &python,
            host: "127.0.0.1",
            port: gateway_port,
            metrics_port,
            policy: args.policy,
            worker_urls: &replica_urls,
        };
        let mut command = gateway::command(&plan);
        command.args(&args.gateway_args);
        if let Some(log) = log_file(args, "gateway")? {
            command.stdout(log.try_clone()?).stderr(log);
        }
        let mut gateway = GroupChild::spawn("gateway", command)?;
        let gateway_url = format!("http://127.0.0.1:{gateway_port}");
        wait_until_ok(&mut gateway, &format!("{gateway_url}/readiness"), deadline).await?;
        let gateway_metrics_url = format!("http://127.0.0.1:{metrics_port}");
        Ok(Fleet {
            gateway,
            gateway_url,
            gateway_metrics_url,
            replicas,
            replica_urls,
            replica_kv_events,
            killed: Vec::new(),
        })
    }

    /// Kills replica `i` at once (SIGKILL to its process group), on
    /// purpose: the fleet goes on with the others and the gateway's retries
    /// and circuit breaker take it out.
    pub fn kill_replica(&mut self, i: usize) -> anyhow::Result<()> {
        let replica = self.replicas.get_mut(i).ok_or_else(|| {
            anyhow::anyhow!(
                "there is no replica {i} to kill: the fleet has replicas 0 to {}",
                self.replica_urls.len() - 1
            )
        })?;
        replica.kill_now();
        self.killed.push(i);
        Ok(())
    }

    /// The URLs, one per line on stdout (scripts and the fleet test read them).
    pub fn print(&self) {
        for line in self.processes() {
            println!("{line}");
        }
        println!("kvscope fleet: ready; send requests to the gateway, Ctrl-C stops every process");
    }

    /// `replica I: URL (pid N)` per replica, then `gateway: URL (pid N)`.
    pub fn processes(&self) -> Vec<String> {
        let replicas = self.replica_urls.iter().zip(&self.replicas).enumerate();
        replicas
            .map(|(i, (url, child))| format!("replica {i}: {url} (pid {})", child.id()))
            .chain(std::iter::once(format!("gateway: {} (pid {})", self.gateway_url, self.gateway.id())))
            .collect()
    }

    /// Waits for Ctrl-C, SIGTERM or a child's death; says which.
    pub async fn supervise(&mut self, terminate: &mut tokio::signal::unix::Signal) -> String {
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return "SIGINT".into(),
                _ = terminate.recv() => return "SIGTERM".into(),
                () = tokio::time::sleep(Duration::from_millis(250)) => {
                    if let Some(dead) = self.first_dead() {
                        return dead;
                    }
                }
            }
        }
    }

    /// The first process that ended on its own (a replica killed on
    /// purpose is not one); `kvscope fleet` stops everything on it.
    pub fn first_dead(&mut self) -> Option<String> {
        let killed = &self.killed;
        let replicas = self.replicas.iter_mut().enumerate().filter(|(i, _)| !killed.contains(i)).map(|(_, r)| r);
        std::iter::once(&mut self.gateway)
            .chain(replicas)
            .find_map(|child| child.exited().map(|status| format!("the {} ended ({status})", child.name)))
    }
}

/// The file a child's output goes to, with `log_dir`.
fn log_file(args: &FleetArgs, name: &str) -> anyhow::Result<Option<std::fs::File>> {
    let Some(dir) = &args.log_dir else { return Ok(None) };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the log folder {}", dir.display()))?;
    let path = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Some(file))
}

/// The most replicas one machine's fleet may have: each is a whole
/// `kvscope serve` with the model loaded and its own KV pool.
pub const MAX_REPLICAS: usize = 16;

/// Refuses a fleet size out of range, naming the flag that gave it.
pub fn check_replicas(n: usize, flag: &str) -> anyhow::Result<()> {
    anyhow::ensure!((1..=MAX_REPLICAS).contains(&n), "{flag} {n} is out of range: give 1 to {MAX_REPLICAS}");
    Ok(())
}

/// Polls `url` until it answers 2xx, the child dies, or the deadline passes.
async fn wait_until_ok(child: &mut GroupChild, url: &str, deadline: Instant) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    loop {
        if let Some(status) = child.exited() {
            anyhow::bail!("the {} ended while starting ({status}); its messages are above", child.name);
        }
        if http.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "the {} did not answer {url} within --startup-timeout-s; raise it on a slow machine",
                child.name
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A loopback port nobody listens on now (the OS's choice).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
