//! `/metrics`: Prometheus gauges, counters and histograms with vLLM's names
//! and meanings under the `kvscope:` prefix. Fed only by the KV event stream
//! and the engine's step snapshots.

use crate::series::Series;
use kvscope_core::replay::Replay;
use kvscope_core::{EventRecord, KvEvent, Observer, StepSnapshot};
use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct Metrics {
    registry: Registry,
    pub num_requests_running: IntGauge,
    pub num_requests_waiting: IntGauge,
    pub kv_cache_usage_perc: Gauge,
    pub kv_cache_token_usage_perc: Gauge,
    pub kv_cache_cached_free_blocks: IntGauge,
    pub prefix_cache_queries: IntCounter,
    pub prefix_cache_hits: IntCounter,
    pub num_preemptions: IntCounter,
    pub evicted_blocks: IntCounter,
    pub prompt_tokens: IntCounter,
    pub generation_tokens: IntCounter,
    pub request_success: IntCounterVec,
    pub time_to_first_token_seconds: Histogram,
    pub request_queue_time_seconds: Histogram,
    pub time_per_output_token_seconds: Histogram,
    pub e2e_request_latency_seconds: Histogram,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0,
];
const TPOT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0,
];

impl Metrics {
    pub fn new(model_name: &str) -> Self {
        let registry =
            Registry::new_custom(None, Some(HashMap::from([("model_name".to_string(), model_name.to_string())])))
                .expect("a valid label");
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(format!("kvscope:{name}"), help).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let fgauge = |name: &str, help: &str| {
            let g = Gauge::new(format!("kvscope:{name}"), help).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(format!("kvscope:{name}_total"), help).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let h = Histogram::with_opts(HistogramOpts::new(format!("kvscope:{name}"), help).buckets(buckets.to_vec()))
                .expect("valid metric");
            registry.register(Box::new(h.clone())).expect("unique metric");
            h
        };
        let request_success = IntCounterVec::new(
            Opts::new("kvscope:request_success_total", "Requests that ended, by finish reason (stop, length, abort)."),
            &["finished_reason"],
        )
        .expect("valid metric");
        registry.register(Box::new(request_success.clone())).expect("unique metric");
        Metrics {
            num_requests_running: gauge("num_requests_running", "Requests holding KV blocks (running)."),
            num_requests_waiting: gauge("num_requests_waiting", "Requests in the waiting queue (new or preempted)."),
            kv_cache_usage_perc: fgauge(
                "kv_cache_usage_perc",
                "KV cache usage by blocks: held blocks / all blocks (1 = full).",
            ),
            kv_cache_token_usage_perc: fgauge(
                "kv_cache_token_usage_perc",
                "KV cache usage by token slots: slots holding KV / all slots; below the block usage by partly filled blocks.",
            ),
            kv_cache_cached_free_blocks: gauge(
                "kv_cache_cached_free_blocks",
                "Free blocks whose KV is still indexed for prefix reuse (evictable).",
            ),
            prefix_cache_queries: counter(
                "prefix_cache_queries",
                "Prompt tokens looked up in the prefix cache at first admission (recomputation never counted).",
            ),
            prefix_cache_hits: counter(
                "prefix_cache_hits",
                "Prompt tokens served from the prefix cache at first admission (recomputation never counted).",
            ),
            num_preemptions: counter("num_preemptions", "Preemptions: running requests whose KV was taken back."),
            evicted_blocks: counter(
                "evicted_blocks",
                "Cached-free blocks reclaimed (their prefix entries gone): for other requests' KV, or by POST /flush_cache.",
            ),
            prompt_tokens: counter("prompt_tokens", "Prompt tokens of admitted requests, counted at first admission."),
            generation_tokens: counter("generation_tokens", "Generated tokens, counted when each request ends."),
            request_success,
            time_to_first_token_seconds: histogram(
                "time_to_first_token_seconds",
                "Time from arrival to the first generated token.",
                LATENCY_BUCKETS,
            ),
            request_queue_time_seconds: histogram(
                "request_queue_time_seconds",
                "Time in the waiting queue before the first admission.",
                LATENCY_BUCKETS,
            ),
            time_per_output_token_seconds: histogram(
                "time_per_output_token_seconds",
                "Mean time between output tokens after the first, per finished request.",
                TPOT_BUCKETS,
            ),
            e2e_request_latency_seconds: histogram(
                "e2e_request_latency_seconds",
                "Time from arrival to the end of a finished request.",
                LATENCY_BUCKETS,
            ),
            registry,
        }
    }

    /// vLLM's `cache_config_info`: a gauge of 1 whose labels describe the
    /// KV pool (block size, storage format, blocks, bytes per block), so a
    /// dashboard can turn block counts into bytes.
    pub fn record_cache_config(&self, pool: &kvscope_core::PoolConfig, kv_dtype: Option<kvscope_core::KvDtype>) {
        let labels = [
            ("block_size", pool.block_size.to_string()),
            ("cache_dtype", kv_dtype.map_or_else(|| "unknown".to_string(), |d| d.to_string())),
            ("num_gpu_blocks", pool.num_blocks.to_string()),
            ("bytes_per_block", pool.bytes_per_block.to_string()),
            ("enable_prefix_caching", pool.enable_prefix_caching.to_string()),
        ];
        let mut opts = Opts::new("kvscope:cache_config_info", "Information of the KV cache configuration (value 1).");
        for (k, v) in labels {
            opts = opts.const_label(k, v);
        }
        let gauge = IntGauge::with_opts(opts).expect("valid metric");
        gauge.set(1);
        // Registered once per server; a second call keeps the first.
        let _ = self.registry.register(Box::new(gauge));
    }

    /// Adds a metric kept elsewhere (the KV-event publisher's drop counter).
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) -> prometheus::Result<()> {
        self.registry.register(collector)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        prometheus::TextEncoder::new().encode_to_string(&families).unwrap_or_default()
    }
}

/// Feeds [`Metrics`] and the web view's [`Series`] from the event stream;
/// each request's arrival, admission and first token are read from the one
/// per-request tracker ([`Replay`]), which forgets a request once it ends.
pub struct MetricsObserver {
    metrics: Arc<Metrics>,
    series: Arc<Mutex<Series>>,
    block_size: usize,
    requests: Replay,
}

impl MetricsObserver {
    pub fn new(metrics: Arc<Metrics>, series: Arc<Mutex<Series>>, block_size: usize) -> Self {
        MetricsObserver { metrics, series, block_size, requests: Replay::default() }
    }
}

impl Observer for MetricsObserver {
    fn on_event(&mut self, record: &EventRecord) {
        // Its first admission: a readmission (recompute) is never counted.
        let first_admission = match &record.event {
            KvEvent::Admitted { request_id, readmission, .. } => {
                !*readmission && !self.requests.first_admitted.contains_key(request_id)
            }
            _ => false,
        };
        // The engine's stream is consistent (its own tests replay it); the
        // figures below need only the times, which are taken in either way.
        let _ = self.requests.apply(record);
        let r = &self.requests;
        let m = &self.metrics;
        let t = record.t;
        match &record.event {
            KvEvent::Admitted { request_id, cached_blocks, .. } if first_admission => {
                let (Some(arrived), Some(prompt_tokens)) = (r.arrived.get(request_id), r.prompt_tokens.get(request_id))
                else {
                    return;
                };
                m.prefix_cache_queries.inc_by(*prompt_tokens as u64);
                m.prefix_cache_hits.inc_by((cached_blocks * self.block_size) as u64);
                m.prompt_tokens.inc_by(*prompt_tokens as u64);
                let wait = t - arrived;
                m.request_queue_time_seconds.observe(wait);
                lock(&self.series).record_queue_wait(t, wait);
            }
            KvEvent::FirstToken { request_id } => {
                let Some(ttft) = r.ttft(*request_id) else { return };
                m.time_to_first_token_seconds.observe(ttft);
                lock(&self.series).record_ttft(t, ttft);
            }
            KvEvent::Preempted { .. } => m.num_preemptions.inc(),
            KvEvent::Evicted { .. } => m.evicted_blocks.inc(),
            KvEvent::Finished { request_id, reason, output_tokens, .. } => {
                m.generation_tokens.inc_by(*output_tokens as u64);
                m.request_success.with_label_values(&[reason.as_str()]).inc();
                let (arrived, first_token) =
                    (r.arrived.get(request_id).copied(), r.first_token.get(request_id).copied());
                self.requests.forget(*request_id);
                let Some(arrived) = arrived else { return };
                if *reason != kvscope_core::FinishReason::Abort {
                    m.e2e_request_latency_seconds.observe(t - arrived);
                    if let (Some(first), true) = (first_token, *output_tokens > 1) {
                        m.time_per_output_token_seconds.observe((t - first) / (*output_tokens - 1) as f64);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_step(&mut self, s: &StepSnapshot) {
        let m = &self.metrics;
        m.num_requests_running.set(s.running as i64);
        m.num_requests_waiting.set(s.waiting as i64);
        m.kv_cache_usage_perc.set(s.block_occupancy());
        m.kv_cache_token_usage_perc.set(s.token_occupancy());
        m.kv_cache_cached_free_blocks.set(s.cached_free_blocks as i64);
        lock(&self.series).record_step(s);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
