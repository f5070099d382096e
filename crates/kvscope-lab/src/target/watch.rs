//! What watches the target while the cases run: the `/metrics` poller
//! and the KV-event subscriber, started before the first case and stopped
//! (aborted) after the last, so neither can outlive the run.

use super::block_events::{self, BlockLog};
use super::poller::{self, PollLog};
use kvscope_client::CompletionClient;
use kvscope_wire::{EngineFamily, SubscriberConfig};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

#[derive(Clone, Debug, Serialize)]
pub struct KvEventsSummary {
    pub endpoint: String,
    pub batches: u64,
    pub stored: u64,
    pub removed: u64,
    pub cleared: u64,
    pub block_size: Option<usize>,
    pub missed: u64,
    pub malformed: u64,
    pub error: Option<String>,
}

/// The poller and the subscriber, running while the cases run.
pub struct Watch {
    pub polls: Arc<Mutex<PollLog>>,
    pub blocks: Arc<Mutex<BlockLog>>,
    poller: Option<tokio::task::JoinHandle<()>>,
    subscriber: Option<tokio::task::JoinHandle<()>>,
}

/// What to watch: the metric family to poll (none: no poller), how often,
/// and the KV-event endpoints to subscribe to (none: no subscriber).
pub struct WatchPlan {
    pub family: Option<EngineFamily>,
    pub interval: Duration,
    pub kv_events: Option<String>,
    pub kv_events_replay: Option<String>,
}

impl Watch {
    pub fn start(client: &CompletionClient, plan: &WatchPlan, started: Instant) -> Watch {
        let polls = Arc::new(Mutex::new(PollLog::default()));
        let blocks = Arc::new(Mutex::new(BlockLog::default()));
        let poller = plan.family.map(|f| poller::spawn(client.clone(), f, started, plan.interval, polls.clone()));
        let subscriber = plan.kv_events.as_ref().map(|endpoint| {
            let mut sub = SubscriberConfig::new(endpoint.clone());
            sub.replay_endpoint = plan.kv_events_replay.clone();
            let start_wall = SystemTime::now() - started.elapsed();
            block_events::spawn(sub, start_wall, blocks.clone())
        });
        Watch { polls, blocks, poller, subscriber }
    }

    /// Stops both; the KV events' summary when `endpoint` was subscribed.
    pub fn stop(&self, endpoint: Option<&String>) -> Option<KvEventsSummary> {
        self.poller.iter().chain(&self.subscriber).for_each(|h| h.abort());
        let endpoint = endpoint?.clone();
        let log = self.blocks.lock().expect("block log");
        Some(KvEventsSummary {
            endpoint,
            batches: log.batches,
            stored: log.stored,
            removed: log.removed,
            cleared: log.cleared,
            block_size: log.block_size,
            missed: log.missed,
            malformed: log.malformed,
            error: log.error.clone(),
        })
    }
}
