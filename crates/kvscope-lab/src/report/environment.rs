//! What a reader needs beside the machine's name to judge a run's times:
//! memory, the CPU features the kernels choose from, the build, the
//! workload's seed and how busy the machine was. A 2-core box at load 3.4
//! gives times half as fast as the same box idle; the report must say so
//! rather than leave the reader to guess.

use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Environment {
    /// Total memory (`/proc/meminfo`), e.g. "125.8 GiB"; "unknown" where
    /// the system does not say.
    pub ram: String,
    /// The SIMD features the kernels choose between that this CPU has
    /// (`/proc/cpuinfo`), e.g. "avx2 fma f16c avx512f avx512_vnni".
    pub cpu_flags: String,
    /// The commit kvscope was built from (`git rev-parse` at build time);
    /// `None`: not built from a git checkout.
    pub commit: Option<String>,
    /// The workload's seed (`--seed`): the same seed, the same requests.
    pub seed: Option<u64>,
    pub load: Option<Load>,
}

/// The 1-minute load average before the run and sampled during it.
#[derive(Clone, Debug, Serialize)]
pub struct Load {
    pub logical_cpus: usize,
    pub before: String,
    pub during_mean: String,
    pub during_max: String,
    pub samples: usize,
    /// Other work competed for the CPUs: the load before the run reached
    /// the logical CPU count, or during it exceeded it (the lab's own
    /// threads never outnumber the CPUs).
    pub busy: bool,
}

impl Load {
    /// `before` and `during` are 1-minute load averages; `None` when
    /// nothing was sampled during the run.
    pub fn new(logical_cpus: usize, before: f64, during: &[f64]) -> Option<Load> {
        if during.is_empty() {
            return None;
        }
        let mean = during.iter().sum::<f64>() / during.len() as f64;
        let max = during.iter().copied().fold(f64::MIN, f64::max);
        let cpus = logical_cpus.max(1) as f64;
        Some(Load {
            logical_cpus,
            before: format!("{before:.2}"),
            during_mean: format!("{mean:.2}"),
            during_max: format!("{max:.2}"),
            samples: during.len(),
            // The lab's own threads keep every core busy, so during the run
            // only a load above the core count is someone else's; before it,
            // a 1-minute average still decaying from a finished build (1.8
            // on 2 cores, seen) is no competitor, a full core count is.
            busy: before >= cpus || mean > cpus,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Load;

    #[test]
    fn a_box_loaded_beyond_its_cores_is_busy_and_an_idle_one_is_not() {
        // Issue 22's run: load 3.4 on 2 cores.
        assert!(Load::new(2, 3.4, &[3.4, 3.6]).unwrap().busy);
        // Idle before; during, the lab's own 2 threads on 2 cores.
        assert!(!Load::new(2, 0.1, &[1.2, 1.9]).unwrap().busy);
        // Started right after a build had finished: its average still decays.
        assert!(!Load::new(2, 1.76, &[1.70, 1.91]).unwrap().busy);
        // Another process kept a core busy all along.
        assert!(Load::new(2, 2.2, &[2.9, 3.1]).unwrap().busy);
        assert!(Load::new(2, 0.1, &[]).is_none());
    }
}
