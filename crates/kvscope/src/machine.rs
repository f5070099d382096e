//! What the reports say about the machine and the day of a run.

/// CPU model and core count, as the reports' environment line.
pub fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cpu}, {cores} logical CPUs, {}", std::env::consts::OS)
}

/// Today's date (`date +%Y-%m-%d`), empty when unknown.
pub fn today() -> String {
    std::process::Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Total memory from `/proc/meminfo`, e.g. "125.8 GiB".
pub fn ram() -> String {
    kvscope_model::host_memory::total_bytes()
        .map_or_else(|| "unknown".into(), |bytes| format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64))
}

/// The SIMD features the kernels choose between (kvscope-model's
/// `Kernels`), as far as `/proc/cpuinfo` lists them; the whole flag list
/// would bury these few in a hundred others.
pub fn cpu_flags() -> String {
    const RELEVANT: [&str; 8] = ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "amx_int8", "neon"];
    let flags = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("flags") || l.starts_with("Features"))
                .map(|l| l.split(':').nth(1).unwrap_or("").split_whitespace().map(String::from).collect::<Vec<_>>())
        })
        .unwrap_or_default();
    let found: Vec<&str> = RELEVANT.into_iter().filter(|f| flags.iter().any(|x| x == f)).collect();
    if found.is_empty() {
        "none of avx2 / avx512 / amx / neon listed".into()
    } else {
        found.join(" ")
    }
}

/// The commit this binary was built from (build.rs), if it was built from
/// a git checkout.
pub fn commit() -> Option<String> {
    option_env!("KVSCOPE_COMMIT").filter(|c| !c.is_empty()).map(String::from)
}

/// The 1-minute load average (`/proc/loadavg`), where the system has one.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// Samples the load average before a run and every few seconds during it
/// (from the lab's progress callback), for the report's 12.1: a run on a
/// busy machine must say it was.
pub struct LoadSampler {
    before: Option<f64>,
    during: Vec<f64>,
    last: std::time::Instant,
}

impl LoadSampler {
    /// Seconds between samples: the average itself moves over a minute.
    const EVERY: std::time::Duration = std::time::Duration::from_secs(2);

    pub fn start() -> LoadSampler {
        LoadSampler { before: load_average(), during: Vec::new(), last: std::time::Instant::now() }
    }

    pub fn tick(&mut self) {
        if self.last.elapsed() >= Self::EVERY {
            self.last = std::time::Instant::now();
            self.during.extend(load_average());
        }
    }

    /// The samples, with one taken now so a run shorter than the interval
    /// still has one.
    pub fn finish(mut self) -> Option<kvscope_lab::report::Load> {
        self.during.extend(load_average());
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        kvscope_lab::report::Load::new(cpus, self.before?, &self.during)
    }
}
