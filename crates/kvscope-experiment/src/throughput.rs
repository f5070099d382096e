//! A run's throughput, under the key names of vLLM's benchmark results
//! (`vllm bench serve --save-result`, `benchmark_throughput.py`) so that
//! scripts read kvscope's figures like vLLM's. nano-vLLM's `bench.py`
//! prints the same output-token throughput and total time.

use crate::driver::CaseRun;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Throughput {
    /// Seconds from the first arrival to the last finish (engine clock:
    /// simulated seconds for the simulator).
    pub duration: f64,
    /// Requests that finished.
    pub completed: usize,
    pub total_input_tokens: usize,
    pub total_output_tokens: usize,
    /// Output tokens per second.
    pub output_throughput: f64,
    /// Finished requests per second.
    pub request_throughput: f64,
    /// Input and output tokens per second.
    pub total_token_throughput: f64,
}

impl Throughput {
    pub fn of(run: &CaseRun) -> Throughput {
        let input: usize = run.requests.iter().map(|r| r.prompt_tokens).sum();
        let output: usize = run.requests.iter().map(|r| r.output_tokens).sum();
        let start = run.requests.iter().map(|r| r.arrival).fold(f64::INFINITY, f64::min);
        let duration = if start.is_finite() { run.duration - start } else { 0.0 };
        let per_second = |x: usize| if duration > 0.0 { x as f64 / duration } else { 0.0 };
        Throughput {
            duration,
            completed: run.requests.len(),
            total_input_tokens: input,
            total_output_tokens: output,
            output_throughput: per_second(output),
            request_throughput: per_second(run.requests.len()),
            total_token_throughput: per_second(input + output),
        }
    }
}
