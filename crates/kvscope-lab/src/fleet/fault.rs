//! A replica killed mid-run (`kvscope lab --fleet N --kill-replica-after
//! S`): what the lab reports of it. The CLI kills the process; this file
//! only measures: the requests that failed (client), the retries the
//! gateway made (its own Prometheus counters, read before and after the
//! run), and the surviving replicas' KV state after the kill (their polls).

use crate::target::poller::MetricsSample;
use crate::target::TargetResults;
use kvscope_client::CompletionClient;
use kvscope_wire::{MetricsPage, Quantity};
use serde::Serialize;

/// The SGLang Model Gateway's retry counters (sglang-router 0.3.2, crate
/// sgl-model-gateway: names as its Prometheus exporter writes them,
/// summed over their `worker_type` / `endpoint` labels). The exporter
/// writes a counter only once it was first counted, so a page without
/// one, read fine, means none.
pub const RETRIES: &str = "smg_worker_retries_total";
pub const RETRIES_EXHAUSTED: &str = "smg_worker_retries_exhausted_total";

/// Which replica is killed, and when (seconds after the run's start).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct FaultPlan {
    pub replica: usize,
    pub after_s: f64,
}

/// The gateway's counters at one moment; `None` when its page could not
/// be read (the error says why).
#[derive(Clone, Debug, Default)]
pub struct GatewayCounters {
    pub retries: Option<f64>,
    pub exhausted: Option<f64>,
    pub error: Option<String>,
}

/// Reads the gateway's Prometheus page (`client` is for its
/// `--prometheus-port`, not its routing port).
pub async fn gateway_counters(client: &CompletionClient) -> GatewayCounters {
    match client.get_text("/metrics").await {
        Ok((200, text)) => {
            let page = MetricsPage::parse(&text);
            let read = |name| Some(page.value(name).unwrap_or(0.0));
            GatewayCounters { retries: read(RETRIES), exhausted: read(RETRIES_EXHAUSTED), error: None }
        }
        Ok((status, _)) => GatewayCounters { error: Some(format!("HTTP {status}")), ..Default::default() },
        Err(e) => GatewayCounters { error: Some(format!("{e:#}")), ..Default::default() },
    }
}

/// One surviving replica's KV state after the kill (its polls).
#[derive(Clone, Debug, Serialize)]
pub struct SurvivorState {
    pub replica: usize,
    pub url: String,
    pub polls_after_kill: usize,
    /// Share of its KV pool in use, 0 to 1: at its last poll, and the peak
    /// after the kill.
    pub kv_usage_last: Option<f64>,
    pub kv_usage_peak_after: Option<f64>,
    pub running_peak_after: Option<f64>,
    /// Realized prefix hits (tokens) at its last poll, since the run began.
    pub prefix_hit_tokens_after: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FaultReport {
    pub plan: FaultPlan,
    pub url: String,
    /// When the kill happened (seconds after the start); `None`: the run
    /// ended first, nothing was killed.
    pub killed_at_s: Option<f64>,
    pub requests: usize,
    /// Client-measured: requests that got an error or a broken stream.
    pub failed_requests: usize,
    pub first_error: Option<String>,
    /// The gateway's counters' deltas over the run (`None`: not read).
    pub retries: Option<f64>,
    pub retries_exhausted: Option<f64>,
    /// Where the retries come from, or why they are not known.
    pub retries_source: String,
    pub survivors: Vec<SurvivorState>,
}

impl FaultReport {
    pub fn of(
        plan: FaultPlan,
        killed_at_s: Option<f64>,
        res: &TargetResults,
        gateway: (&GatewayCounters, &GatewayCounters),
    ) -> FaultReport {
        let case = res.cases.first();
        let replicas = res.replicas.as_ref();
        let url = replicas.and_then(|r| r.replicas.get(plan.replica)).map_or(String::new(), |r| r.url.clone());
        let (before, after) = gateway;
        let delta = |b: Option<f64>, a: Option<f64>| Some(a? - b?);
        let retries_source = match (&before.error, &after.error) {
            (None, None) => format!("gateway metrics {RETRIES}, {RETRIES_EXHAUSTED}"),
            (Some(e), _) | (_, Some(e)) => {
                format!("not observable: the gateway's metrics page was not read ({e}); client-side failures only")
            }
        };
        let survivors = replicas.map_or(Vec::new(), |r| {
            let kill = killed_at_s.unwrap_or(f64::INFINITY);
            let others = r.replicas.iter().filter(|info| info.index != plan.replica);
            let samples = |i: usize| r.samples.get(i).map_or(&[][..], Vec::as_slice);
            others.map(|info| survivor(info.index, &info.url, samples(info.index), kill)).collect()
        });
        FaultReport {
            plan,
            url,
            killed_at_s,
            requests: case.map_or(0, |c| c.requests),
            failed_requests: case.map_or(0, |c| c.failed),
            first_error: case.and_then(|c| c.first_error.clone()),
            retries: delta(before.retries, after.retries),
            retries_exhausted: delta(before.exhausted, after.exhausted),
            retries_source,
            survivors,
        }
    }
}

fn survivor(replica: usize, url: &str, samples: &[MetricsSample], killed_at: f64) -> SurvivorState {
    let after: Vec<&MetricsSample> = samples.iter().filter(|s| s.t >= killed_at).collect();
    let peak = |q| after.iter().filter_map(|s| s.get(q)).reduce(f64::max);
    let last = samples.last();
    SurvivorState {
        replica,
        url: url.to_string(),
        polls_after_kill: after.len(),
        kv_usage_last: last.and_then(|s| s.get(Quantity::KvUsage)),
        kv_usage_peak_after: peak(Quantity::KvUsage),
        running_peak_after: peak(Quantity::RunningRequests),
        prefix_hit_tokens_after: last.and_then(|s| s.get(Quantity::PrefixHits)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::poller::POLLED;

    #[test]
    fn a_survivor_is_read_from_its_polls_after_the_kill() {
        let sample = |t: f64, usage: f64| {
            let mut values = vec![None; POLLED.len()];
            values[POLLED.iter().position(|q| *q == Quantity::KvUsage).unwrap()] = Some(usage);
            MetricsSample { t, values, queue_time: None, found: Default::default() }
        };
        let samples = [sample(1.0, 0.9), sample(3.0, 0.4), sample(4.0, 0.2)];
        let s = survivor(1, "http://r1", &samples, 2.0);
        assert_eq!(s.polls_after_kill, 2);
        assert_eq!(s.kv_usage_peak_after, Some(0.4));
        assert_eq!(s.kv_usage_last, Some(0.2));
    }
}
