//! What a benchmark run measured, as vLLM's `bench serve` reports it.

use crate::bench_args::BenchArgs;
use crate::completion::RequestTiming;
use crate::replay::Replayed;
use kvscope_experiment::Dist;
use serde::Serialize;
use serde_json::{json, Value};
use std::time::Instant;

/// Mean, spread, median and tail of one latency, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    pub mean: f64,
    /// Population standard deviation (numpy's default `np.std`, as vLLM's
    /// `std_*_ms` keys).
    pub std: f64,
    pub median: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Stats {
    /// From samples in seconds, with the one percentile convention of every
    /// kvscope table (linear interpolation, numpy's and vLLM's).
    pub fn of_seconds(samples: &[f64]) -> Stats {
        let d = Dist::of(samples.iter().copied()).scaled(1000.0);
        let n = samples.len().max(1) as f64;
        let std = (samples.iter().map(|x| (x * 1000.0 - d.mean).powi(2)).sum::<f64>() / n).sqrt();
        Stats { mean: d.mean, std, median: d.p50, p90: d.p90, p99: d.p99 }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct BenchReport {
    pub completed: usize,
    pub failed: usize,
    /// Wall time from the first request sent to the last answer, seconds.
    pub duration_s: f64,
    pub total_input_tokens: usize,
    pub total_output_tokens: usize,
    pub request_throughput: f64,
    pub output_throughput: f64,
    pub total_token_throughput: f64,
    pub request_rate: f64,
    pub burstiness: f64,
    pub max_concurrency: Option<usize>,
    /// Time to first token.
    pub ttft_ms: Stats,
    /// Time per output token after the first, per request.
    pub tpot_ms: Stats,
    /// Inter-token (inter-chunk) latency, over all chunks.
    pub itl_ms: Stats,
    /// End-to-end latency.
    pub e2el_ms: Stats,
    /// The first few failures' messages.
    pub errors: Vec<String>,
    /// Every request in the order given, with `--save-detailed`.
    pub requests: Option<Vec<RequestDetail>>,
}

/// One request's figures as `--save-detailed` writes them, in seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RequestDetail {
    /// When it was sent, after the schedule's start (a request held back
    /// by `--max-concurrency` is sent after its arrival time).
    pub start_time: f64,
    /// The server's `usage.prompt_tokens` (0 where no usage came).
    pub input_len: usize,
    /// The server's `usage.completion_tokens` (0 where no usage came).
    pub output_len: usize,
    /// `None` where no token came (a failed request): blank, not 0.
    pub ttft: Option<f64>,
    pub itl: Vec<f64>,
}

impl RequestDetail {
    fn of(timing: &RequestTiming, start: Instant) -> RequestDetail {
        RequestDetail {
            start_time: timing.sent.saturating_duration_since(start).as_secs_f64(),
            input_len: timing.prompt_tokens,
            output_len: timing.output_tokens,
            ttft: timing.ttft,
            itl: timing.itl.clone(),
        }
    }
}

impl BenchReport {
    /// Flat JSON with vLLM's key names (`mean_ttft_ms`, `p99_itl_ms`, …).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "completed": self.completed,
            "failed": self.failed,
            "duration": self.duration_s,
            "total_input_tokens": self.total_input_tokens,
            "total_output_tokens": self.total_output_tokens,
            "request_throughput": self.request_throughput,
            "output_throughput": self.output_throughput,
            "total_token_throughput": self.total_token_throughput,
            "request_rate": if self.request_rate.is_finite() { json!(self.request_rate) } else { json!("inf") },
            "burstiness": self.burstiness,
            "max_concurrency": self.max_concurrency,
            "errors": self.errors,
        });
        for (name, s) in [("ttft", self.ttft_ms), ("tpot", self.tpot_ms), ("itl", self.itl_ms), ("e2el", self.e2el_ms)]
        {
            v[format!("mean_{name}_ms")] = json!(s.mean);
            v[format!("std_{name}_ms")] = json!(s.std);
            v[format!("median_{name}_ms")] = json!(s.median);
            v[format!("p90_{name}_ms")] = json!(s.p90);
            v[format!("p99_{name}_ms")] = json!(s.p99);
        }
        if let Some(requests) = &self.requests {
            let each = |f: fn(&RequestDetail) -> Value| Value::Array(requests.iter().map(f).collect());
            v["start_times"] = each(|r| json!(r.start_time));
            v["input_lens"] = each(|r| json!(r.input_len));
            v["output_lens"] = each(|r| json!(r.output_len));
            v["ttfts"] = each(|r| json!(r.ttft));
            v["itls"] = each(|r| json!(r.itl));
        }
        v
    }

    /// The human-readable summary `vllm bench serve` prints.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("{k:<40}{v:>12}\n"));
        line("============ Serving Benchmark Result ============", String::new());
        line("Successful requests:", self.completed.to_string());
        line("Failed requests:", self.failed.to_string());
        line("Benchmark duration (s):", format!("{:.2}", self.duration_s));
        line("Total input tokens:", self.total_input_tokens.to_string());
        line("Total generated tokens:", self.total_output_tokens.to_string());
        line("Request throughput (req/s):", format!("{:.2}", self.request_throughput));
        line("Output token throughput (tok/s):", format!("{:.2}", self.output_throughput));
        line("Total token throughput (tok/s):", format!("{:.2}", self.total_token_throughput));
        for (title, name, s) in [
            ("Time to First Token", "TTFT", self.ttft_ms),
            ("Time per Output Token (excl. 1st token)", "TPOT", self.tpot_ms),
            ("Inter-token Latency", "ITL", self.itl_ms),
            ("End-to-end Latency", "E2EL", self.e2el_ms),
        ] {
            line(&format!("{:-^50}", title), String::new());
            line(&format!("Mean {name} (ms):"), format!("{:.2}", s.mean));
            line(&format!("Median {name} (ms):"), format!("{:.2}", s.median));
            line(&format!("P90 {name} (ms):"), format!("{:.2}", s.p90));
            line(&format!("P99 {name} (ms):"), format!("{:.2}", s.p99));
        }
        line(&"=".repeat(50), String::new());
        out
    }
}

impl BenchReport {
    /// The run's figures from every request's timing.
    pub fn from_replayed(args: &BenchArgs, replayed: Replayed) -> BenchReport {
        let Replayed { start, timings, duration_s } = replayed;
        let requests = args.save_detailed.then(|| timings.iter().map(|t| RequestDetail::of(t, start)).collect());
        let (ok, failed): (Vec<RequestTiming>, Vec<RequestTiming>) =
            timings.into_iter().partition(|o| o.error.is_none());
        let ttft: Vec<f64> = ok.iter().filter_map(|o| o.ttft).collect();
        let tpot: Vec<f64> = ok
            .iter()
            .filter(|o| o.output_tokens > 1)
            .filter_map(|o| o.ttft.map(|t| (o.e2e - t) / (o.output_tokens - 1) as f64))
            .collect();
        let itl: Vec<f64> = ok.iter().flat_map(|o| o.itl.iter().copied()).collect();
        let e2e: Vec<f64> = ok.iter().map(|o| o.e2e).collect();
        let input: usize = ok.iter().map(|o| o.prompt_tokens).sum();
        let output: usize = ok.iter().map(|o| o.output_tokens).sum();
        let per_s = |x: f64| if duration_s > 0.0 { x / duration_s } else { 0.0 };
        BenchReport {
            completed: ok.len(),
            failed: failed.len(),
            duration_s,
            total_input_tokens: input,
            total_output_tokens: output,
            request_throughput: per_s(ok.len() as f64),
            output_throughput: per_s(output as f64),
            total_token_throughput: per_s((input + output) as f64),
            request_rate: args.request_rate,
            burstiness: args.burstiness,
            max_concurrency: args.max_concurrency,
            ttft_ms: Stats::of_seconds(&ttft),
            tpot_ms: Stats::of_seconds(&tpot),
            itl_ms: Stats::of_seconds(&itl),
            e2el_ms: Stats::of_seconds(&e2e),
            errors: failed.into_iter().filter_map(|o| o.error).take(5).collect(),
            requests,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let s = Stats::of_seconds(&[0.001, 0.002, 0.003, 0.004]);
        assert!((s.mean - 2.5).abs() < 1e-9);
        assert!((s.median - 2.5).abs() < 1e-9);
        assert!((s.p90 - 3.7).abs() < 1e-9);
    }

    #[test]
    fn std_and_the_keys_follow_numpy_and_vllm() {
        // np.mean / np.std / np.percentile([0.1, 0.2, 0.4, 0.7]) · 1000
        let s = Stats::of_seconds(&[0.1, 0.2, 0.4, 0.7]);
        assert!((s.mean - 350.0).abs() < 1e-9 && (s.median - 300.0).abs() < 1e-9);
        assert!((s.std - 229.128_784_747_792).abs() < 1e-6, "{}", s.std);
        let json = BenchReport { ttft_ms: s, ..BenchReport::default() }.to_json();
        for key in ["mean_ttft_ms", "std_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "std_e2el_ms"] {
            assert!(json.get(key).is_some(), "{key}");
        }
    }

    #[test]
    fn save_detailed_writes_every_request_in_order_and_a_failure_blank() {
        let start = Instant::now();
        let ok = RequestTiming {
            sent: start + std::time::Duration::from_millis(250),
            error: None,
            prompt_tokens: 7,
            output_tokens: 3,
            ttft: Some(0.05),
            itl: vec![0.01, 0.02],
            e2e: 0.08,
        };
        let failed = RequestTiming::failed(start + std::time::Duration::from_millis(500), "HTTP 500".into());
        let replayed = || Replayed { start, timings: vec![ok.clone(), failed.clone()], duration_s: 1.0 };
        let plain = BenchReport::from_replayed(&BenchArgs::default(), replayed()).to_json();
        assert!(plain.get("ttfts").is_none(), "only with --save-detailed");
        let args = BenchArgs { save_detailed: true, ..BenchArgs::default() };
        let json = BenchReport::from_replayed(&args, replayed()).to_json();
        assert_eq!(json["ttfts"], json!([0.05, null]), "no first token: null, not 0");
        assert_eq!(json["input_lens"], json!([7, 0]));
        assert_eq!(json["output_lens"], json!([3, 0]));
        assert_eq!(json["itls"], json!([[0.01, 0.02], []]));
        let starts: Vec<f64> = json["start_times"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert!((starts[0] - 0.25).abs() < 1e-9 && (starts[1] - 0.5).abs() < 1e-9, "{starts:?}");
        assert_eq!((json["completed"].as_u64(), json["failed"].as_u64()), (Some(1), Some(1)));
    }
}
