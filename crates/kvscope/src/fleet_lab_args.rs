//! `kvscope lab --fleet N`'s arguments, flattened into `lab`'s (a file of
//! their own, read by `lab_args` and `cmd_lab_fleet`).

use crate::arg_values::positive_seconds;
use crate::fleet::gateway::Policy;

#[derive(clap::Args, Debug, Default)]
pub struct FleetLabArgs {
    /// The fleet experiment: N `kvscope serve` replicas behind the SGLang
    /// Model Gateway, started fresh for each routing policy, with
    /// shared_prefix_chats sent through the gateway (1 to 16).
    #[arg(long, value_name = "N", conflicts_with = "target")]
    pub fleet: Option<usize>,
    /// The routing policies to compare, in order.
    #[arg(
        long,
        requires = "fleet",
        value_enum,
        value_delimiter = ',',
        default_value = "cache_aware,round_robin,power_of_two"
    )]
    pub policies: Vec<Policy>,
    /// A fault: kill (SIGKILL) one replica this many seconds into each
    /// policy's run; the gateway's retries and circuit breaker take it out.
    #[arg(long, requires = "fleet", value_parser = positive_seconds, value_name = "SECONDS")]
    pub kill_replica_after: Option<f64>,
    /// The replica --kill-replica-after kills.
    #[arg(long, requires = "kill_replica_after", default_value_t = 0)]
    pub kill_replica: usize,
    /// CPU threads for all replicas together, split evenly (default: all).
    #[arg(long, requires = "fleet")]
    pub fleet_threads: Option<usize>,
}
