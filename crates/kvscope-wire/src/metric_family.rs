//! Each engine's `/metrics` names for the lab's quantities, and which
//! engine a page comes from.
//!
//! Names are as exposed (a Prometheus counter gains `_total`). Where an
//! engine renamed a metric, the newer name comes first and the older one
//! is read when the newer is absent. Read from each engine's source:
//!
//! - vLLM, `vllm/v1/metrics/loggers.py` (`PrometheusStatLogger`) at
//!   vllm-project/vllm 005a810bc40faa25b8870fbc8559c3462581eee3. Block size
//!   and block count are labels of `vllm:cache_config_info` (the
//!   `CacheConfig` fields). The `vllm:gpu_*` names are the pre-0.9 ones.
//! - SGLang, `python/sglang/srt/metrics/collector.py`
//!   (`SchedulerMetricsCollector`, `TokenizerMetricsCollector`) at
//!   sgl-project/sglang 00ae9c1590d2d0bb6c0bfff39e312c34ae3dd538. SGLang
//!   sizes its pool in tokens (`max_total_num_tokens`) and exports no page
//!   size; a retraction is its preemption; prefix-cache queries are its
//!   prompt tokens (every prompt token is looked up), hits its
//!   `cached_tokens_total` (summed over `cache_source`).
//! - llama.cpp's `llama-server` (`--metrics`), the metrics handler of
//!   `tools/server` (ggml-org/llama.cpp; `server_metrics` at
//!   fb4026604c67c682f552337ec9b91eced0abd35a). Its slots are its running
//!   requests, deferred tasks its waiting ones. `kv_cache_usage_ratio` is
//!   exported by older builds only, `prompt_tokens_cached_total` by newer
//!   ones; it has no preemption, queue-time or block metrics. Checked on a
//!   running `llama-server --metrics` built from the llama.cpp vendored in
//!   `llama-cpp-python==0.3.36` (commit 0c1e570): its page holds
//!   `prompt_tokens_total`, `prompt_tokens_cached_total`,
//!   `prompt_seconds_total`, `tokens_predicted_total`,
//!   `tokens_predicted_seconds_total`, `n_decode_total`, `n_tokens_max`,
//!   three `spec_decode_*` counters, `prompt_tokens_seconds`,
//!   `predicted_tokens_seconds`, `requests_processing`,
//!   `requests_deferred` and `n_busy_slots_per_decode` — no KV usage.
//! - kvscope, `crates/kvscope-server/src/metrics.rs` (vLLM's names under
//!   `kvscope:`; a server test checks every name below is on its page).

use crate::prometheus_text::{HistogramSample, MetricsPage};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EngineFamily {
    Vllm,
    Sglang,
    LlamaCpp,
    Kvscope,
}

impl EngineFamily {
    pub const ALL: [EngineFamily; 4] =
        [EngineFamily::Vllm, EngineFamily::Sglang, EngineFamily::LlamaCpp, EngineFamily::Kvscope];

    /// The prefix every metric of the family starts with.
    pub fn prefix(self) -> &'static str {
        match self {
            EngineFamily::Vllm => "vllm:",
            EngineFamily::Sglang => "sglang:",
            EngineFamily::LlamaCpp => "llamacpp:",
            EngineFamily::Kvscope => "kvscope:",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EngineFamily::Vllm => "vllm",
            EngineFamily::Sglang => "sglang",
            EngineFamily::LlamaCpp => "llamacpp",
            EngineFamily::Kvscope => "kvscope",
        }
    }

    /// The family most of the page's names belong to; `None` when no name
    /// has a known prefix.
    pub fn detect(page: &MetricsPage) -> Option<EngineFamily> {
        let count = |f: EngineFamily| page.names().filter(|n| n.starts_with(f.prefix())).count();
        EngineFamily::ALL
            .into_iter()
            .map(|f| (count(f), f))
            .filter(|(n, _)| *n > 0)
            .max_by_key(|(n, _)| *n)
            .map(|(_, f)| f)
    }
}

/// What the lab reads from an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Quantity {
    RunningRequests,
    WaitingRequests,
    /// Share of the KV pool in use, 0 to 1.
    KvUsage,
    TotalBlocks,
    BlockSize,
    /// The pool's size in tokens, where the engine says it in tokens.
    PoolTokens,
    /// Prompt tokens looked up in the prefix cache (counter).
    PrefixQueries,
    /// Prompt tokens served from it (counter).
    PrefixHits,
    /// Requests whose KV was taken back (counter).
    Preemptions,
    /// Time in the waiting queue (histogram, seconds).
    QueueTime,
    /// Prompt tokens processed (counter).
    PromptTokens,
    /// Tokens generated (counter).
    GenerationTokens,
    /// Cached-free blocks reclaimed for other KV (counter, blocks): kvscope
    /// exports it; no eviction counter of the other families is mapped.
    Evictions,
    /// Blocks kept for reuse by no request (the prefix cache's retained
    /// blocks; gauge): kvscope exports it, the others no such gauge.
    CachedBlocks,
}

impl Quantity {
    /// Every quantity, in the order above.
    pub const ALL: [Quantity; 14] = [
        Quantity::RunningRequests,
        Quantity::WaitingRequests,
        Quantity::KvUsage,
        Quantity::TotalBlocks,
        Quantity::BlockSize,
        Quantity::PoolTokens,
        Quantity::PrefixQueries,
        Quantity::PrefixHits,
        Quantity::Preemptions,
        Quantity::QueueTime,
        Quantity::PromptTokens,
        Quantity::GenerationTokens,
        Quantity::Evictions,
        Quantity::CachedBlocks,
    ];
}

/// Where a quantity lives on a family's page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricSource {
    /// A gauge or counter; the first name present is read.
    Value(&'static [&'static str]),
    Histogram(&'static str),
    /// A label of an info metric (value 1).
    Label {
        metric: &'static str,
        label: &'static str,
    },
}

impl MetricSource {
    /// The metric name a report cites as the source.
    pub fn metric_name(self) -> &'static str {
        match self {
            MetricSource::Value(names) => names[0],
            MetricSource::Histogram(name) | MetricSource::Label { metric: name, .. } => name,
        }
    }

    /// The quantity's value on `page` (a histogram's count).
    pub fn read(self, page: &MetricsPage) -> Option<f64> {
        match self {
            MetricSource::Value(names) => names.iter().find_map(|n| page.value(n)),
            MetricSource::Histogram(name) => page.histogram(name).map(|h| h.count),
            MetricSource::Label { metric, label } => page.label(metric, label)?.parse().ok(),
        }
    }

    /// How the report cites the quantity as `page` held it: the name found
    /// (an older name where the newer is absent), `metric{label}` for a
    /// label; `None` when the page does not hold it. Whether an engine
    /// exposes a quantity is decided by this, not by the table above:
    /// builds of one engine differ (llama-server at llama.cpp 0c1e570 has
    /// no `llamacpp:kv_cache_usage_ratio`).
    pub fn found_on(self, page: &MetricsPage) -> Option<String> {
        match self {
            MetricSource::Value(names) => names.iter().find(|n| page.value(n).is_some()).map(|n| n.to_string()),
            MetricSource::Histogram(name) => page.histogram(name).map(|_| name.to_string()),
            MetricSource::Label { metric, label } => page.label(metric, label).map(|_| format!("{metric}{{{label}}}")),
        }
    }

    pub fn read_histogram(self, page: &MetricsPage) -> Option<HistogramSample> {
        match self {
            MetricSource::Histogram(name) => page.histogram(name),
            MetricSource::Value(_) | MetricSource::Label { .. } => None,
        }
    }
}

/// Where `family` exports `quantity`; `None`: it does not.
pub fn source(family: EngineFamily, quantity: Quantity) -> Option<MetricSource> {
    match family {
        EngineFamily::Vllm => vllm(quantity),
        EngineFamily::Sglang => sglang(quantity),
        EngineFamily::LlamaCpp => llamacpp(quantity),
        EngineFamily::Kvscope => kvscope(quantity),
    }
}

fn vllm(q: Quantity) -> Option<MetricSource> {
    use MetricSource::*;
    Some(match q {
        Quantity::RunningRequests => Value(&["vllm:num_requests_running"]),
        Quantity::WaitingRequests => Value(&["vllm:num_requests_waiting"]),
        Quantity::KvUsage => Value(&["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"]),
        Quantity::TotalBlocks => Label { metric: "vllm:cache_config_info", label: "num_gpu_blocks" },
        Quantity::BlockSize => Label { metric: "vllm:cache_config_info", label: "block_size" },
        Quantity::PoolTokens => return None,
        Quantity::PrefixQueries => Value(&["vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"]),
        Quantity::PrefixHits => Value(&["vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"]),
        Quantity::Preemptions => Value(&["vllm:num_preemptions_total"]),
        Quantity::QueueTime => Histogram("vllm:request_queue_time_seconds"),
        Quantity::PromptTokens => Value(&["vllm:prompt_tokens_total"]),
        Quantity::GenerationTokens => Value(&["vllm:generation_tokens_total"]),
        Quantity::Evictions | Quantity::CachedBlocks => return None,
    })
}

fn sglang(q: Quantity) -> Option<MetricSource> {
    use MetricSource::*;
    Some(match q {
        Quantity::RunningRequests => Value(&["sglang:num_running_reqs"]),
        Quantity::WaitingRequests => Value(&["sglang:num_queue_reqs"]),
        Quantity::KvUsage => Value(&["sglang:token_usage"]),
        Quantity::TotalBlocks | Quantity::BlockSize => return None,
        Quantity::PoolTokens => Value(&["sglang:max_total_num_tokens"]),
        Quantity::PrefixQueries => Value(&["sglang:prompt_tokens_total"]),
        Quantity::PrefixHits => Value(&["sglang:cached_tokens_total"]),
        Quantity::Preemptions => Value(&["sglang:num_retracted_requests_total"]),
        Quantity::QueueTime => Histogram("sglang:queue_time_seconds"),
        Quantity::PromptTokens => Value(&["sglang:prompt_tokens_total"]),
        Quantity::GenerationTokens => Value(&["sglang:generation_tokens_total"]),
        Quantity::Evictions | Quantity::CachedBlocks => return None,
    })
}

fn llamacpp(q: Quantity) -> Option<MetricSource> {
    use MetricSource::*;
    Some(match q {
        Quantity::RunningRequests => Value(&["llamacpp:requests_processing"]),
        Quantity::WaitingRequests => Value(&["llamacpp:requests_deferred"]),
        Quantity::KvUsage => Value(&["llamacpp:kv_cache_usage_ratio"]),
        Quantity::PrefixHits => Value(&["llamacpp:prompt_tokens_cached_total"]),
        Quantity::PromptTokens => Value(&["llamacpp:prompt_tokens_total"]),
        Quantity::GenerationTokens => Value(&["llamacpp:tokens_predicted_total"]),
        Quantity::TotalBlocks
        | Quantity::BlockSize
        | Quantity::PoolTokens
        | Quantity::PrefixQueries
        | Quantity::Preemptions
        | Quantity::QueueTime
        | Quantity::Evictions
        | Quantity::CachedBlocks => return None,
    })
}

fn kvscope(q: Quantity) -> Option<MetricSource> {
    use MetricSource::*;
    Some(match q {
        Quantity::RunningRequests => Value(&["kvscope:num_requests_running"]),
        Quantity::WaitingRequests => Value(&["kvscope:num_requests_waiting"]),
        Quantity::KvUsage => Value(&["kvscope:kv_cache_usage_perc"]),
        Quantity::TotalBlocks => Label { metric: "kvscope:cache_config_info", label: "num_gpu_blocks" },
        Quantity::BlockSize => Label { metric: "kvscope:cache_config_info", label: "block_size" },
        Quantity::PoolTokens => return None,
        Quantity::PrefixQueries => Value(&["kvscope:prefix_cache_queries_total"]),
        Quantity::PrefixHits => Value(&["kvscope:prefix_cache_hits_total"]),
        Quantity::Preemptions => Value(&["kvscope:num_preemptions_total"]),
        Quantity::QueueTime => Histogram("kvscope:request_queue_time_seconds"),
        Quantity::PromptTokens => Value(&["kvscope:prompt_tokens_total"]),
        Quantity::GenerationTokens => Value(&["kvscope:generation_tokens_total"]),
        Quantity::Evictions => Value(&["kvscope:evicted_blocks_total"]),
        Quantity::CachedBlocks => Value(&["kvscope:kv_cache_cached_free_blocks"]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_family_with_most_names() {
        let page = MetricsPage::parse(
            "sglang:num_running_reqs 1\nsglang:num_queue_reqs 2\nvllm:num_requests_running 0\nprocess_cpu_seconds_total 3\n",
        );
        assert_eq!(EngineFamily::detect(&page), Some(EngineFamily::Sglang));
        assert_eq!(EngineFamily::detect(&MetricsPage::parse("go_goroutines 7\n")), None);
    }

    #[test]
    fn reads_each_source_kind_and_falls_back_to_old_names() {
        let page = MetricsPage::parse(
            "vllm:gpu_cache_usage_perc{engine=\"0\"} 0.25\nvllm:cache_config_info{block_size=\"16\",num_gpu_blocks=\"100\"} 1\n",
        );
        let read = |q| source(EngineFamily::Vllm, q).and_then(|s| s.read(&page));
        assert_eq!(read(Quantity::KvUsage), Some(0.25));
        assert_eq!(read(Quantity::BlockSize), Some(16.0));
        assert_eq!(read(Quantity::TotalBlocks), Some(100.0));
        assert_eq!(read(Quantity::Preemptions), None);
        assert_eq!(source(EngineFamily::LlamaCpp, Quantity::QueueTime), None);
        let found = |q| source(EngineFamily::Vllm, q).and_then(|s| s.found_on(&page));
        assert_eq!(found(Quantity::KvUsage).as_deref(), Some("vllm:gpu_cache_usage_perc"), "the name on the page");
        assert_eq!(found(Quantity::TotalBlocks).as_deref(), Some("vllm:cache_config_info{num_gpu_blocks}"));
        assert_eq!(found(Quantity::Preemptions), None);
    }

    #[test]
    fn every_family_names_running_and_waiting_under_its_prefix() {
        for family in EngineFamily::ALL {
            for q in [Quantity::RunningRequests, Quantity::WaitingRequests] {
                assert!(source(family, q).unwrap().metric_name().starts_with(family.prefix()));
            }
        }
    }
}
