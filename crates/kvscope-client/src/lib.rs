//! kvscope-client: the client side of serving.
//!
//! - [`completion`]: [`CompletionClient`] sends one streaming completion to
//!   an OpenAI-compatible server (kvscope's, vLLM's, SGLang's) and returns
//!   its [`RequestTiming`] on the client's clock: TTFT, every inter-token
//!   gap, end-to-end latency, and the server's `usage` counts.
//! - [`replay`]: sends a list of requests on an arrival schedule (the
//!   experiment layer's arrivals), optionally capped at a concurrency.
//! - [`bench`]: `kvscope bench serve`, a load generator in the spirit of
//!   `vllm bench serve`, built on the two: its flags ([`BenchArgs`]), its
//!   datasets ([`dataset`]) and its report ([`BenchReport`], vLLM's keys).

#![forbid(unsafe_code)]

pub mod bench;
pub mod bench_args;
pub mod completion;
pub mod dataset;
pub mod replay;
pub mod report;

pub use bench::{run_bench_serve, run_bench_serve_with};
pub use bench_args::{BenchArgs, DatasetName};
pub use completion::{BenchPrompt, CompletionClient, CompletionRequest, Endpoint, ModelCard, RequestTiming};
pub use dataset::{load_dataset, BenchRequest};
pub use replay::{replay, Replayed};
pub use report::{BenchReport, Stats};
