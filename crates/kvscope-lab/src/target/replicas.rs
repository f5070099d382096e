//! `--replica-metrics URL1,URL2,…` (and `--replica-kv-events EP1,EP2,…`):
//! a target behind a load balancer, each replica watched as the target is —
//! its `/metrics` polled (one poller per replica, time-stamped, bounded:
//! poller.rs) and its KV events read (watch.rs), plus a scrape of every
//! replica just before and just after each case for the counters' deltas.
//!
//! A replica that is down, or whose page carries no known metric family, is
//! a named gap: its columns stay blank and the report says why; the run
//! goes on with the others.

use super::case::CaseResult;
use super::poller::{scrape, MetricsSample, PollLog};
use super::replica_case::{ReplicaCase, ReplicaWindow};
use super::watch::{KvEventsSummary, Watch, WatchPlan};
use kvscope_client::CompletionClient;
use kvscope_wire::{EngineFamily, MetricsPage, Quantity};
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What to watch besides the target: one `/metrics` base URL per replica
/// and, optionally, its KV-event PUB endpoint (same order).
#[derive(Clone, Debug, Default)]
pub struct ReplicaPlan {
    pub metrics: Vec<String>,
    pub kv_events: Vec<String>,
}

/// One replica being watched.
pub struct Replica {
    pub url: String,
    client: CompletionClient,
    pub family: Option<EngineFamily>,
    pub kv_events: Option<String>,
    watch: Watch,
    /// Why this replica's figures are blank (down, not an engine page).
    pub gap: Option<String>,
}

/// Every replica's watch, running while the cases run.
pub struct ReplicaWatch {
    pub replicas: Vec<Replica>,
}

impl ReplicaWatch {
    /// Identifies each replica's metric family from one scrape and starts
    /// its poller (and KV-event subscriber). A replica that cannot be read
    /// is watched without a poller, its gap named; `Err` only when no HTTP
    /// client can be built at all.
    pub async fn start(
        plan: &ReplicaPlan,
        interval: Duration,
        timeout: Duration,
        started: Instant,
    ) -> anyhow::Result<ReplicaWatch> {
        anyhow::ensure!(
            plan.kv_events.is_empty() || plan.kv_events.len() == plan.metrics.len(),
            "{} --replica-kv-events endpoints for {} --replica-metrics URLs: give one endpoint per replica, in the same order",
            plan.kv_events.len(),
            plan.metrics.len()
        );
        let mut replicas = Vec::with_capacity(plan.metrics.len());
        for (i, url) in plan.metrics.iter().enumerate() {
            let url = url.trim_end_matches('/').to_string();
            let kv_events = plan.kv_events.get(i).cloned();
            replicas.push(Replica::start(url, kv_events, interval, timeout, started).await?);
        }
        Ok(ReplicaWatch { replicas })
    }

    /// One scrape of every replica now (`None`: not read), for the
    /// counters' deltas across a case.
    pub async fn scrape_all(&self, started: Instant) -> Vec<Option<MetricsSample>> {
        let mut out = Vec::with_capacity(self.replicas.len());
        for r in &self.replicas {
            let t = started.elapsed().as_secs_f64();
            out.push(match r.family {
                Some(f) => scrape(&r.client, f, t).await.ok(),
                None => None,
            });
        }
        out
    }

    /// Stops every poller and subscriber; each replica's KV-event summary.
    pub fn stop(&self) -> Vec<Option<KvEventsSummary>> {
        self.replicas.iter().map(|r| r.watch.stop(r.kv_events.as_ref())).collect()
    }

    fn polls(&self, i: usize) -> std::sync::MutexGuard<'_, PollLog> {
        self.replicas[i].watch.polls.lock().expect("poll log")
    }

    /// Each replica's figures for `case`, `before` being the scrapes taken
    /// just before it ran; scrapes them again now for the deltas.
    pub async fn case_figures(
        &self,
        case: &CaseResult,
        before: &[Option<MetricsSample>],
        started: Instant,
    ) -> Vec<ReplicaCase> {
        let after = self.scrape_all(started).await;
        let mut out = Vec::with_capacity(self.replicas.len());
        for (i, r) in self.replicas.iter().enumerate() {
            let polls = self.polls(i);
            let blocks =
                r.kv_events.as_ref().map(|_| r.watch.blocks.lock().expect("block log").window(case.from, case.to));
            out.push(ReplicaCase::of(ReplicaWindow {
                case: &case.case,
                replica: i,
                url: &r.url,
                family: r.family.map(EngineFamily::name),
                before: before.get(i).and_then(Option::as_ref),
                after: after.get(i).and_then(Option::as_ref),
                samples: polls.between(case.from, case.to).collect(),
                blocks,
            }));
        }
        out
    }

    /// Stops the watch; what it found (`None` when no replica was given).
    pub fn finish(&self, cases: Vec<ReplicaCase>) -> Option<ReplicaResults> {
        if self.replicas.is_empty() {
            return None;
        }
        let kv_events = self.stop();
        let blocks_on_several = self.blocks_on_several(&cases);
        let replicas = self
            .replicas
            .iter()
            .zip(kv_events)
            .enumerate()
            .map(|(i, (r, kv_events))| {
                let polls = self.polls(i);
                ReplicaInfo {
                    index: i,
                    url: r.url.clone(),
                    family: r.family.map(EngineFamily::name),
                    gap: r.gap.clone(),
                    kv_events,
                    metrics_samples: polls.samples.len(),
                    metrics_failed: polls.failed,
                    metrics_last_error: polls.last_error.clone(),
                }
            })
            .collect();
        let samples = (0..self.replicas.len()).map(|i| self.polls(i).samples.clone()).collect();
        Some(ReplicaResults { replicas, cases, blocks_on_several, samples })
    }

    /// Distinct blocks (by their prefix hash) that the KV events show
    /// stored on two or more replicas (`held_on_several`), from every
    /// replica subscribed to; `cases` tell which replicas computed prompt
    /// tokens.
    pub fn blocks_on_several(&self, cases: &[ReplicaCase]) -> Option<usize> {
        let prompted = |i: usize| {
            cases.iter().filter(|c| c.replica == i).any(|c| c.delta(Quantity::PromptTokens).is_none_or(|t| t > 0.0))
        };
        let subscribed: Vec<SubscribedReplica> = (self.replicas.iter().enumerate())
            .filter(|(_, r)| r.kv_events.is_some())
            .map(|(i, r)| {
                let log = r.watch.blocks.lock().expect("block log");
                SubscribedReplica { batches: log.batches, prompted: prompted(i), stored: log.stored_hashes().collect() }
            })
            .collect();
        held_on_several(&subscribed)
    }
}

/// One replica's KV events, as `held_on_several` weighs them.
struct SubscribedReplica {
    batches: u64,
    /// Its counters show prompt tokens computed (or were not read).
    prompted: bool,
    stored: Vec<u64>,
}

/// Blocks stored on two replicas or more: the same prefix's KV held in
/// several places. `None` unless at least two replicas are subscribed and
/// every one that computed prompt tokens sent events: a replica the router
/// never used rightly sent none (routing kept every prefix elsewhere), one
/// that worked yet sent none would make the count too low.
fn held_on_several(replicas: &[SubscribedReplica]) -> Option<usize> {
    if replicas.len() < 2 || replicas.iter().any(|r| r.batches == 0 && r.prompted) {
        return None;
    }
    let mut holders: HashMap<u64, usize> = HashMap::new();
    for hash in replicas.iter().flat_map(|r| &r.stored) {
        *holders.entry(*hash).or_default() += 1;
    }
    Some(holders.values().filter(|&&n| n >= 2).count())
}

/// What the replicas showed over the run.
#[derive(Debug, Serialize)]
pub struct ReplicaResults {
    pub replicas: Vec<ReplicaInfo>,
    /// Case by case, each case's replicas in order.
    pub cases: Vec<ReplicaCase>,
    /// Distinct blocks stored on two replicas or more (KV events).
    pub blocks_on_several: Option<usize>,
    /// Every kept scrape, per replica (replicas.csv's time series and the
    /// fleet's figure; not in target.json).
    #[serde(skip)]
    pub samples: Vec<Vec<MetricsSample>>,
}

#[derive(Debug, Serialize)]
pub struct ReplicaInfo {
    pub index: usize,
    pub url: String,
    pub family: Option<&'static str>,
    /// Why its figures are blank, when they are.
    pub gap: Option<String>,
    pub kv_events: Option<KvEventsSummary>,
    pub metrics_samples: usize,
    pub metrics_failed: u64,
    pub metrics_last_error: Option<String>,
}

impl Replica {
    async fn start(
        url: String,
        kv_events: Option<String>,
        interval: Duration,
        timeout: Duration,
        started: Instant,
    ) -> anyhow::Result<Replica> {
        let client = CompletionClient::with_timeout(&url, None, Some(timeout))?;
        let (family, gap) = match identify(&client).await {
            Ok(f) => (Some(f), None),
            Err(why) => (None, Some(why)),
        };
        let plan = WatchPlan { family, interval, kv_events: kv_events.clone(), kv_events_replay: None };
        let watch = Watch::start(&client, &plan, started);
        Ok(Replica { url, client, family, kv_events, watch, gap })
    }
}

/// The replica's metric family, from the names on its `/metrics`; the
/// error names what was wrong, for the report's gap line.
async fn identify(client: &CompletionClient) -> Result<EngineFamily, String> {
    let url = format!("{}/metrics", client.base_url());
    match client.get_text("/metrics").await {
        Ok((200, text)) => EngineFamily::detect(&MetricsPage::parse(&text))
            .ok_or_else(|| format!("{url} carries no vLLM, SGLang, llama.cpp or kvscope metric")),
        Ok((status, _)) => Err(format!("{url} answered HTTP {status}")),
        Err(e) => Err(format!("{url} does not answer ({e:#}): is the replica up?")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_that_is_down_is_a_named_gap_not_a_failure() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // Nothing listens there any more.
        let plan = ReplicaPlan { metrics: vec![format!("http://127.0.0.1:{port}/")], kv_events: Vec::new() };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let results = runtime.block_on(async {
            let watch = ReplicaWatch::start(&plan, Duration::from_millis(50), Duration::from_secs(2), Instant::now())
                .await
                .unwrap();
            watch.finish(Vec::new())
        });
        let replica = &results.unwrap().replicas[0];
        assert_eq!(replica.url, format!("http://127.0.0.1:{port}"));
        assert!(replica.gap.as_deref().unwrap().contains("is the replica up?"), "{replica:?}");
        assert_eq!(replica.family, None);
    }

    fn subscribed(batches: u64, prompted: bool, stored: &[u64]) -> SubscribedReplica {
        SubscribedReplica { batches, prompted, stored: stored.to_vec() }
    }

    #[test]
    fn a_replica_the_router_never_used_holds_no_shared_block() {
        // Cache-aware routing kept every prefix on replica 0: zero shared
        // blocks is the finding, not a missing figure.
        let kept = [subscribed(4, true, &[1, 2, 3]), subscribed(0, false, &[])];
        assert_eq!(held_on_several(&kept), Some(0));
        let scattered = [subscribed(4, true, &[1, 2, 3]), subscribed(3, true, &[1, 2, 9])];
        assert_eq!(held_on_several(&scattered), Some(2));
    }

    #[test]
    fn a_working_replica_without_events_leaves_the_count_unknown() {
        let silent = [subscribed(4, true, &[1, 2]), subscribed(0, true, &[])];
        assert_eq!(held_on_several(&silent), None, "its blocks are unseen: a count would be too low");
        assert_eq!(held_on_several(&[subscribed(4, true, &[1])]), None, "one replica shares nothing by definition");
    }

    #[test]
    fn kv_event_endpoints_must_match_the_replicas() {
        let plan =
            ReplicaPlan { metrics: vec!["http://a".into(), "http://b".into()], kv_events: vec!["tcp://x:1".into()] };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let err = runtime
            .block_on(ReplicaWatch::start(&plan, Duration::from_millis(50), Duration::from_secs(1), Instant::now()))
            .err()
            .unwrap();
        assert!(err.to_string().contains("give one endpoint per replica"), "{err}");
    }
}
