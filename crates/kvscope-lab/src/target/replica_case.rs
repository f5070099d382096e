//! One case as one replica behind the load balancer saw it: its live
//! requests and KV usage over the case (its poller's samples), and its
//! counters' deltas across the case (prefix-cache queries and hits in
//! tokens, evictions in blocks, preemptions, prompt tokens), with its
//! queue-time histogram's delta. Pure: built from samples, no I/O.

use super::case::{by_name, deltas, series, Series};
use super::poller::MetricsSample;
use kvscope_wire::{HistogramSample, Quantity};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct ReplicaCase {
    pub case: String,
    pub replica: usize,
    pub url: String,
    /// Its metric family's name (`None`: not read; the replica's gap says why).
    pub family: Option<&'static str>,
    pub running: Option<Series>,
    pub waiting: Option<Series>,
    /// Share of its KV pool in use, 0 to 1.
    pub kv_usage: Option<Series>,
    /// Blocks kept for reuse by no request (its prefix cache), where exported.
    pub cached_blocks: Option<Series>,
    /// Counter deltas across the case (empty: never read).
    #[serde(serialize_with = "by_name")]
    pub deltas: Vec<(Quantity, f64)>,
    /// The scrape after the case failed (the replica died during it): the
    /// deltas end at its last poll that answered, this many seconds after
    /// the start.
    pub deltas_end_at_last_poll: Option<f64>,
    #[serde(skip)]
    pub queue_time: Option<HistogramSample>,
    /// KV events in the case's window: blocks stored, removed, most cached.
    pub blocks: Option<(usize, usize, i64)>,
}

/// Where the case's figures of one replica come from.
pub struct ReplicaWindow<'a> {
    pub case: &'a str,
    pub replica: usize,
    pub url: &'a str,
    pub family: Option<&'static str>,
    pub before: Option<&'a MetricsSample>,
    pub after: Option<&'a MetricsSample>,
    /// The poller's samples inside the case.
    pub samples: Vec<&'a MetricsSample>,
    pub blocks: Option<(usize, usize, i64)>,
}

impl ReplicaCase {
    pub fn of(w: ReplicaWindow) -> ReplicaCase {
        let mut window = w.samples;
        window.extend(w.after);
        let last_poll = w.after.is_none().then(|| window.last().copied()).flatten();
        let after = w.after.or(last_poll);
        let queue_time = w.before.zip(after).and_then(|(b, a)| {
            let empty = HistogramSample::default();
            a.queue_time.as_ref().map(|q| q.since(b.queue_time.as_ref().unwrap_or(&empty)))
        });
        ReplicaCase {
            case: w.case.to_string(),
            replica: w.replica,
            url: w.url.to_string(),
            family: w.family,
            running: series(&window, Quantity::RunningRequests),
            waiting: series(&window, Quantity::WaitingRequests),
            kv_usage: series(&window, Quantity::KvUsage),
            cached_blocks: series(&window, Quantity::CachedBlocks),
            deltas: deltas(w.before, after),
            deltas_end_at_last_poll: last_poll.map(|s| s.t),
            queue_time,
            blocks: w.blocks,
        }
    }

    pub fn delta(&self, q: Quantity) -> Option<f64> {
        self.deltas.iter().find(|(d, _)| *d == q).map(|(_, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::poller::POLLED;

    fn sample(t: f64, running: f64, usage: f64, hits: f64) -> MetricsSample {
        let mut values = vec![None; POLLED.len()];
        let mut set = |q: Quantity, v: f64| values[POLLED.iter().position(|p| *p == q).unwrap()] = Some(v);
        set(Quantity::RunningRequests, running);
        set(Quantity::KvUsage, usage);
        set(Quantity::PrefixHits, hits);
        set(Quantity::Evictions, hits / 16.0);
        MetricsSample { t, values, queue_time: None, found: Default::default() }
    }

    #[test]
    fn a_replica_case_takes_gauge_peaks_and_counter_deltas() {
        let (before, after) = (sample(0.0, 0.0, 0.0, 32.0), sample(3.0, 0.0, 0.1, 160.0));
        let inside = [sample(1.0, 2.0, 0.4, 64.0), sample(2.0, 1.0, 0.2, 96.0)];
        let case = ReplicaCase::of(ReplicaWindow {
            case: "shared_prefix_chats",
            replica: 1,
            url: "http://r1",
            family: Some("kvscope"),
            before: Some(&before),
            after: Some(&after),
            samples: inside.iter().collect(),
            blocks: None,
        });
        assert_eq!(case.running.unwrap().max, 2.0);
        assert!((case.kv_usage.unwrap().max - 0.4).abs() < 1e-12);
        assert_eq!(case.delta(Quantity::PrefixHits), Some(128.0));
        assert_eq!(case.delta(Quantity::Evictions), Some(8.0));
    }

    #[test]
    fn a_replica_that_died_counts_up_to_its_last_poll() {
        let before = sample(0.0, 0.0, 0.0, 0.0);
        let inside = [sample(1.0, 3.0, 0.5, 16.0)];
        let case = ReplicaCase::of(ReplicaWindow {
            case: "c",
            replica: 0,
            url: "http://r0",
            family: Some("kvscope"),
            before: Some(&before),
            after: None,
            samples: inside.iter().collect(),
            blocks: None,
        });
        assert_eq!(case.delta(Quantity::PrefixHits), Some(16.0));
        assert_eq!(case.deltas_end_at_last_poll, Some(1.0));
        assert_eq!(case.running.unwrap().max, 3.0);
    }
}
