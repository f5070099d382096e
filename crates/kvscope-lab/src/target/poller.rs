//! The target's `/metrics`, read every interval while the lab runs: each
//! scrape time-stamped on the client's clock and mapped onto the lab's
//! quantities through the engine's metric family (kvscope-wire).
//!
//! Memory is bounded: past [`MAX_SAMPLES`] samples every other one is
//! dropped and the interval between kept samples doubles, so a long run
//! keeps its whole span at a coarser grain. A scrape that fails or reads
//! no known name is counted, never fatal.

use super::exposed::Exposed;
use kvscope_client::CompletionClient;
use kvscope_wire::metric_family::source;
use kvscope_wire::{EngineFamily, HistogramSample, MetricsPage, Quantity};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The most samples kept at once (about 27 minutes at 100 ms).
pub const MAX_SAMPLES: usize = 16_384;

/// The gauges and counters the lab reads, as one scrape gave them.
pub const POLLED: [Quantity; 11] = [
    Quantity::RunningRequests,
    Quantity::WaitingRequests,
    Quantity::KvUsage,
    Quantity::PrefixQueries,
    Quantity::PrefixHits,
    Quantity::Preemptions,
    Quantity::PromptTokens,
    Quantity::GenerationTokens,
    Quantity::PoolTokens,
    Quantity::Evictions,
    Quantity::CachedBlocks,
];

/// One scrape: seconds since the lab's start, each polled quantity's
/// value (`None`: not on the page), and the queue-time histogram.
#[derive(Clone, Debug, Serialize)]
pub struct MetricsSample {
    pub t: f64,
    pub values: Vec<Option<f64>>,
    #[serde(skip)]
    pub queue_time: Option<HistogramSample>,
    /// What this page held (merged into the log's, then dropped).
    #[serde(skip)]
    pub found: Exposed,
}

impl MetricsSample {
    pub fn get(&self, q: Quantity) -> Option<f64> {
        POLLED.iter().position(|p| *p == q).and_then(|i| self.values[i])
    }

    /// Reads `page` as `family` exports it.
    pub fn read(t: f64, family: EngineFamily, page: &MetricsPage) -> MetricsSample {
        let values = POLLED.iter().map(|&q| source(family, q).and_then(|s| s.read(page))).collect();
        let queue_time = source(family, Quantity::QueueTime).and_then(|s| s.read_histogram(page));
        MetricsSample { t, values, queue_time, found: Exposed::of(family, page) }
    }
}

/// What the poller saw, shared with the lab's run.
#[derive(Debug, Default)]
pub struct PollLog {
    pub samples: Vec<MetricsSample>,
    /// Scrapes that failed (unreachable, an HTTP error, no known name).
    pub failed: u64,
    pub last_error: Option<String>,
    /// Every `stride`-th scrape is kept (1 until the log first fills).
    pub stride: u64,
    scrapes: u64,
    /// Every quantity some scrape held, kept or not.
    pub exposed: Exposed,
}

impl PollLog {
    /// Counts what `sample`'s page held as exposed.
    pub fn note(&mut self, sample: &MetricsSample) {
        self.exposed.merge(&sample.found);
    }

    fn push(&mut self, mut sample: MetricsSample) {
        self.note(&sample);
        sample.found = Exposed::default();
        self.scrapes += 1;
        self.stride = self.stride.max(1);
        if !self.scrapes.is_multiple_of(self.stride) {
            return;
        }
        if self.samples.len() >= MAX_SAMPLES {
            let mut i = 0;
            self.samples.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride *= 2;
        }
        self.samples.push(sample);
    }

    fn fail(&mut self, why: String) {
        self.failed += 1;
        self.last_error = Some(why);
    }

    /// The most recent sample at or before `t`.
    pub fn at(&self, t: f64) -> Option<&MetricsSample> {
        self.samples.iter().rev().find(|s| s.t <= t)
    }

    /// Samples from `from` to `to` (seconds since the start).
    pub fn between(&self, from: f64, to: f64) -> impl Iterator<Item = &MetricsSample> {
        self.samples.iter().filter(move |s| s.t >= from && s.t <= to)
    }
}

/// One scrape of the target, read as `family`; an error names what failed.
pub async fn scrape(client: &CompletionClient, family: EngineFamily, t: f64) -> Result<MetricsSample, String> {
    let (status, text) = client.get_text("/metrics").await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("{}/metrics answered HTTP {status}", client.base_url()));
    }
    let page = MetricsPage::parse(&text);
    if !page.names().any(|n| n.starts_with(family.prefix())) {
        return Err(format!(
            "{}/metrics has no {} metric (garbage, or another engine: try --engine)",
            client.base_url(),
            family.prefix()
        ));
    }
    Ok(MetricsSample::read(t, family, &page))
}

/// Scrapes every `interval` until the returned handle is aborted.
pub fn spawn(
    client: CompletionClient,
    family: EngineFamily,
    start: Instant,
    interval: Duration,
    log: Arc<Mutex<PollLog>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let t = start.elapsed().as_secs_f64();
            let got = scrape(&client, family, t).await;
            let mut log = log.lock().expect("poll log");
            match got {
                Ok(sample) => log.push(sample),
                Err(why) => log.fail(why),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_stays_bounded_and_keeps_its_span() {
        let mut log = PollLog::default();
        for i in 0..(3 * MAX_SAMPLES) {
            let found = Exposed::default();
            log.push(MetricsSample { t: i as f64, values: vec![None; POLLED.len()], queue_time: None, found });
        }
        assert!(log.samples.len() <= MAX_SAMPLES);
        assert_eq!(log.samples[0].t, 0.0);
        assert!(log.samples.last().unwrap().t > (2 * MAX_SAMPLES) as f64);
    }

    #[test]
    fn reads_the_kvscope_family() {
        let page = MetricsPage::parse("kvscope:num_requests_running 3\nkvscope:prefix_cache_hits_total 32\n");
        let s = MetricsSample::read(1.0, EngineFamily::Kvscope, &page);
        assert_eq!(s.get(Quantity::RunningRequests), Some(3.0));
        assert_eq!(s.get(Quantity::PrefixHits), Some(32.0));
        assert_eq!(s.get(Quantity::WaitingRequests), None);
    }
}
